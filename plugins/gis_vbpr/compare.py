"""gis's VBPR beside cornac's VBPR, DVBPR and popularity, on one split and one set of features.

``python -m gis_vbpr.compare --out runs/vbpr/compare.json`` measures, with DVBPR's protocol
(``gis_dvbpr.metrics``: each user's held-out validation/test item against 100 sampled
negatives, the same negatives for every model, and against all items):

* ``gis vbpr``: the shipped checkpoint (or ``--checkpoint``), evaluated afresh;
* ``cornac VBPR``: ``cornac.models.VBPR`` (pip install cornac==3.0.1) trained on the same
  training interactions with the same features f_i (the checkpoint's spec, divided by the same
  ``feature_scale``) and the same K, D, learning rate, batch size, L2 weights and epochs, with
  cornac's own sampler and loop; items cornac never saw in training (no factors there) are
  scored by its visual part, theta_u . E f_i + beta' . f_i, as gis does;
* ``dvbpr``: the shipped DVBPR checkpoint, evaluated afresh;
* ``popularity``: training-interaction counts.

Writes one JSON (``--out``) with the AUCs, the settings, the machine and the times.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gis.errors import GisUsageError


def cornac_vbpr(dataset, features: np.ndarray, *, k: int, d: int, epochs: int,
                batch_size: int, lr: float, lambda_w: float, lambda_b: float, lambda_e: float,
                seed: int, verbose: bool = False):
    """Train ``cornac.models.VBPR`` on ``dataset.train`` with item features (N, F) (rows by
    item index). Returns (model, score_fn): score_fn(user rows (B,) long, cold=False) -> (B, N)
    scores over every catalogue item (cornac's own ``score`` for items it trained on, the
    visual part for the others; ``cold``: the visual part for every item)."""
    try:
        import cornac
    except ImportError:
        raise GisUsageError("cornac is not installed: pip install cornac==3.0.1") from None
    uir = [(str(u), str(i), 1.0) for u, i in dataset.train.tolist()]
    train_set = cornac.data.Dataset.build(uir, seed=seed)
    item_ids = [str(i) for i in range(dataset.num_items)]
    image = cornac.data.ImageModality(features=features.astype(np.float32), ids=item_ids,
                                      normalized=False)
    image.build(id_map=train_set.iid_map)
    train_set.add_modalities(item_image=image)
    model = cornac.models.VBPR(k=k, k2=d, n_epochs=epochs, batch_size=batch_size,
                               learning_rate=lr, lambda_w=lambda_w, lambda_b=lambda_b,
                               lambda_e=lambda_e, use_gpu=False, seed=seed, verbose=verbose)
    model.fit(train_set)
    # cornac item index -> catalogue index; user row -> cornac user index
    known = np.array([int(i) for i in train_set.iid_map], dtype=np.int64)
    known_idx = np.array(list(train_set.iid_map.values()), dtype=np.int64)
    user_idx = np.full(dataset.num_users, -1, dtype=np.int64)
    for u, idx in train_set.uid_map.items():
        user_idx[int(u)] = idx
    cold_visual = features @ model.emb_matrix                                    # (N, D)
    cold_bias = (features @ model.beta_prime).ravel()                            # (N,)

    def score(rows: torch.Tensor, cold: bool = False) -> torch.Tensor:
        out = np.empty((len(rows), dataset.num_items), dtype=np.float64)
        for b, u in enumerate(rows.tolist()):
            cu = user_idx[u]
            if cu < 0:
                raise GisUsageError(f"user row {u} has no training interaction")
            out[b] = cold_bias + cold_visual @ model.theta_user[cu]
            if not cold:
                out[b, known] = model.score(int(cu))[known_idx]
        return torch.from_numpy(out)

    return model, score


def run(*, data: str = "fashion-colors", checkpoint: str | None = None, epochs: int = 20,
        seed: int = 0, eval_negatives: int = 100, dvbpr: bool = True,
        features_cache: str | None = None) -> dict[str, Any]:
    """Every model's AUCs on ``data``'s split (see the module docstring); a JSON-able dict."""
    from gis_dvbpr.metrics import AUCEvaluator, popularity_auc, user_positives

    import gis
    from gis.training import machine_info

    from .trainer import catalogue_features

    ds = gis.get_dataset(data)
    rec = gis.get_recommender("vbpr", **({"checkpoint": checkpoint} if checkpoint else {}))
    card = rec.card
    hyper = dict(card.to_dict().get("hyperparameters") or {})
    positives = user_positives(ds.num_users, ds.train, (ds.val, ds.test))
    evals = {"val": AUCEvaluator(ds.val, positives, ds.num_items, num_negatives=eval_negatives,
                                 seed=seed + 1),
             "test": AUCEvaluator(ds.test, positives, ds.num_items,
                                  num_negatives=eval_negatives, seed=seed + 2)}

    def measure(score_fn) -> dict[str, float]:
        out = {}
        for split, ev in evals.items():
            r = ev(score_fn)
            out[f"{split}_auc"], out[f"{split}_auc_all"] = r["auc"], r["auc_all"]
        return out

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    raw = catalogue_features(rec.spec, ds.images, Path(features_cache) if features_cache else None,
                             write=lambda m: None)
    timings["features_s"] = time.perf_counter() - t0
    results: dict[str, Any] = {}
    with torch.no_grad():
        results["gis vbpr"] = {
            **measure(lambda rows: rec.catalogue_scores(rows, raw)),
            "test_auc_cold": evals["test"](lambda rows: rec.catalogue_scores(
                rows, raw, cold=True))["auc"],
            "checkpoint": str(card.get("checkpoint")), "epochs": card["training"]["best_epoch"]}
    fn = rec.factors.normalise(raw).numpy().astype(np.float64)
    t0 = time.perf_counter()
    _, cscore = cornac_vbpr(ds, fn, k=rec.factors.k, d=rec.factors.d, epochs=epochs,
                            batch_size=int(hyper.get("batch_size", 128)),
                            lr=float(hyper.get("lr", 5e-3)),
                            lambda_w=float(hyper.get("lambda_w", 0.01)),
                            lambda_b=float(hyper.get("lambda_b", 0.01)),
                            lambda_e=float(hyper.get("lambda_e", 0.0)), seed=seed)
    timings["cornac_train_s"] = time.perf_counter() - t0
    import cornac

    results["cornac VBPR"] = {**measure(cscore), "test_auc_cold": evals["test"](
        lambda rows: cscore(rows, cold=True))["auc"], "version": cornac.__version__,
                              "epochs": epochs}
    if dvbpr:
        from gis_dvbpr.trainer import ItemImages, embed_all

        d = gis.get_recommender("dvbpr")
        emb = embed_all(d, ItemImages(ds.images, d.image_size, torch.device("cpu")))
        theta = d.user_vectors.detach()
        results["dvbpr"] = {**measure(lambda rows: theta[rows] @ emb.T),
                            "checkpoint": str(d.card.get("checkpoint"))}
    results["popularity"] = {f"{s}_{k}": v for s, ev in evals.items()
                             for k, v in popularity_auc(ev, ds.train).items() if k != "users"}
    return {"dataset": data, "users_evaluated": int(len(evals["test"].users)),
            "protocol": f"DVBPR's: held-out item vs {eval_negatives} sampled negatives (auc; "
                        "the same negatives for every model) and vs all non-interacted items "
                        "(auc_all), ties 1/2; test_auc_cold: visual part only",
            "features": rec.spec.name, "k": rec.factors.k, "d": rec.factors.d,
            "settings": {**hyper, "cornac_epochs": epochs, "seed": seed},
            "results": results, "seconds": {k: round(v, 1) for k, v in timings.items()},
            "machine": machine_info("cpu")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis_vbpr.compare", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--data", default="fashion-colors")
    p.add_argument("--checkpoint", default=None, help="gis VBPR checkpoint (default: shipped)")
    p.add_argument("--epochs", type=int, default=20, help="cornac's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features-cache", default=None,
                   help="features.safetensors of a training run (reused when it matches)")
    p.add_argument("--no-dvbpr", action="store_true")
    a = p.parse_args(argv)
    from gis.io import write_json

    try:
        result = run(data=a.data, checkpoint=a.checkpoint, epochs=a.epochs, seed=a.seed,
                     dvbpr=not a.no_dvbpr, features_cache=a.features_cache)
    except GisUsageError as exc:
        p.exit(2, f"error: {exc}\n")
    write_json(a.out, result)
    for name, r in result["results"].items():
        print(f"{name:12s} test AUC {r['test_auc']:.4f} (all {r['test_auc_all']:.4f})  val "
              f"{r['val_auc']:.4f}")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

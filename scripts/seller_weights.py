"""Compare shifting loss weights on a few (item, user set) pairs: how the seller recipe's
weights were chosen (docs/ENGINE.md, "The seller recipe"). A small CPU measurement, not the
100-pair acceptance run.

    python scripts/seller_weights.py --items 4 --user-sets 2 --steps 100 \
        --out docs/results/seller_weights_cpu.json [--generator progan] [--threads 1]
        [--config NAME=JSON ...]   # weights merged into the paper recipe's, e.g.
                                   # --config 'both-3={"identity": 3, "silhouette": 3}'

Per (item, 10 users outside the item's interactions, config) it records, over the n
variants: the recommender's gain over the base G(z*) (mean aggregation; mean and best
variant), LPIPS (AlexNet) to the real item, the smallest pairwise LPIPS, the generator's own
realism scores, and the dataset's hidden truth as a judge only: the true utility gain over
the base (category read by the domain classifier), the share of variants the domain
classifier puts in the item's category, and the share the realism truth accepts (when the
dataset defines one). The item is inverted once and shared by every config. Resumable: rows
already in --out are kept.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

CONFIGS = {
    "paper": {},
    "identity=1,silhouette=1": {"identity": 1.0, "silhouette": 1.0},
    "identity=3": {"identity": 3.0},
    "silhouette=3": {"silhouette": 3.0},
    "identity=3,silhouette=3": {"identity": 3.0, "silhouette": 3.0},
    "identity=10,silhouette=10": {"identity": 10.0, "silhouette": 10.0},
}


def draw(dataset, items: int, user_sets: int, users: int, seed: int):
    """[(item index, [user rows] x user_sets)]: users who never interacted with the item."""
    rng = np.random.default_rng(seed)
    items_of = dataset.user_items()
    out = []
    for i in rng.choice(dataset.num_items, items, replace=False):
        sets = []
        for _ in range(user_sets):
            rows: list[int] = []
            while len(rows) < users:
                u = int(rng.integers(dataset.num_users))
                seen = set(items_of[u].tolist()) | {int(dataset.val[u]), int(dataset.test[u])}
                if int(i) not in seen and u not in rows:
                    rows.append(u)
            sets.append(rows)
        out.append((int(i), sets))
    return out


def judge(res, item01, users, cat, truth, clf, gen) -> dict:
    """What one shifting result achieved (see the module docstring)."""
    from gis.metrics.lpips_metric import variant_distances

    s = res.scores["mean"]
    gains = np.array(s["variants"]) - s["base"][0]
    best = int(np.argmax(s["variants"]))
    x = torch.cat([res.base_image, res.images])  # [0, 1]
    pred = clf.predict_proba(x * 2 - 1).argmax(1).cpu().numpy()
    util = truth.utility(x * 2 - 1, np.asarray(users), pred).mean(0)
    dist = variant_distances(res.images, res.base_image, item01)
    row = {"gain_mean": float(gains.mean()), "gain_best": float(gains[best]), "best": best,
           "lpips_to_item": float(np.mean(dist["to_item"])),
           "min_pairwise": dist["min_pairwise"], "mean_pairwise": dist["mean_pairwise"],
           "category_kept": float((pred[1:] == cat).mean()),
           "base_keeps_category": bool(pred[0] == cat),
           "category_as_base": float((pred[1:] == pred[0]).mean()),
           "best_keeps_category": bool(pred[1 + best] == cat),
           "true_gain_mean": float((util[1:] - util[0]).mean()),
           "best_true_gain": float(util[1 + best] - util[0])}
    verdict = truth.realism(x, value_range=(0.0, 1.0)) if hasattr(truth, "realism") else None
    if verdict is not None:
        ok = np.asarray(verdict.realistic, dtype=bool)
        row.update(base_realistic=bool(ok[0]), realistic=float(ok[1:].mean()),
                   best_realistic=bool(ok[1 + best]))
    lo, hi = gen.output_range
    with torch.no_grad():
        xs = res.images.to(gen.device) * (hi - lo) + lo
        for kind in gen.realism_kinds:
            r = gen.realism(images=xs, latents=res.latents.to(gen.device), kind=kind,
                            labels=None if gen.num_classes == 0 else torch.full(
                                (len(xs),), cat, device=gen.device))
            row[f"gen_realism_{kind}"] = float(r.mean())
    return row


def summary(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, float | bool) and k != "seconds"]
    out = {}
    for name in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == name]
        out[name] = {"runs": len(mine), **{k: float(np.mean([r[k] for r in mine if k in r]))
                                           for k in keys if any(k in r for r in mine)},
                     "min_pairwise_lowest": float(min(r["min_pairwise"] for r in mine)),
                     "seconds": float(np.mean([r["seconds"] for r in mine]))}
    return out


def main(argv=None) -> None:
    import gis
    from gis.engine import invert, shift, shift_settings
    from gis.engine.settings import InvertSettings
    from gis.io import write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=4)
    p.add_argument("--user-sets", type=int, default=2)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generator", default="progan")
    p.add_argument("--recommender", default="dvbpr")
    p.add_argument("--data", default="fashion-colors")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--config", action="append", default=[],
                   help="NAME=JSON weights merged into the paper recipe (default: a grid)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    configs = {c[:c.index("={")]: json.loads(c[c.index("={") + 1:]) for c in a.config} \
        if a.config else CONFIGS  # NAME may hold "=": the JSON starts at the first "={"
    ds = gis.get_dataset(a.data)
    gen, rec = gis.get_generator(a.generator), gis.get_recommender(a.recommender)
    truth = ds.ground_truth
    clf = truth.category_classifier()
    done = json.loads(a.out.read_text())["rows"] if a.out.is_file() else []
    have = {(r["item"], r["user_set"], r["config"]) for r in done}
    rows = list(done)
    for item, sets in draw(ds, a.items, a.user_sets, a.users, a.seed):
        cat = int(ds.categories[item])
        labels = torch.tensor([cat]) if gen.num_classes else None
        inv = None
        for j, users in enumerate(sets):
            for name, weights in configs.items():
                if (ds.item_ids[item], j, name) in have:
                    continue
                if inv is None:
                    inv = invert(ds.image_tensor([item]), gen, settings=InvertSettings(),
                                 labels=labels)
                t0 = time.perf_counter()
                res = shift(inv.latent, torch.tensor(users), gen, rec, labels=labels,
                            settings=shift_settings(steps=a.steps, losses=weights))
                row = {"item": ds.item_ids[item], "category": ds.category_names[cat],
                       "user_set": j, "config": name, "weights": weights,
                       "seconds": time.perf_counter() - t0,
                       **judge(res, inv.target, users, cat, truth, clf, gen)}
                rows.append(row)
                write_json(a.out, {"command": " ".join(["scripts/seller_weights.py",
                                                        *(argv or [])]),
                                   "settings": vars(a) | {"out": str(a.out)},
                                   "summary": summary(rows), "rows": rows})
                print(f"{row['item']} set {j} {name}: gain {row['gain_mean']:+.2f}, "
                      f"true {row['true_gain_mean']:+.2f}, LPIPS item "
                      f"{row['lpips_to_item']:.3f}, kept {row['category_kept']:.2f}, "
                      f"real {row.get('realistic', float('nan')):.2f}, min pair "
                      f"{row['min_pairwise']:.3f} ({row['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

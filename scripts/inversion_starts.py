"""How the inversion's starts change what it recovers (docs/ENGINE.md, "Inversion").

    python scripts/inversion_starts.py --items 16 --out docs/results/inversion_starts_16.json

For the first N catalogue items of the 100-pair trust measurement (``gis.evaluation.trust``,
seed 0) it inverts each item with the seller recipe's inversion under several start settings
(``InvertSettings.init_samples``, lr) and records the LPIPS (AlexNet) of the base G(z*) to the
item, whether the dataset's domain classifier (a judge only) reads the base in the item's
category, and the seconds. One thread, the inversion seed of the trust run (seed + pair index).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

CONFIGS = {"random": dict(init_samples=0), "best-of-256": dict(init_samples=256),
           "best-of-1024": dict(init_samples=1024),
           "best-of-1024-lr0.03-cosine": dict(init_samples=1024, lr=0.03,
                                              lr_schedule="cosine")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--generator", default="progan")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import gis
    from gis.data import load_dataset
    from gis.engine.invert import invert
    from gis.engine.settings import invert_settings
    from gis.evaluation.trust import draw_pairs
    from gis.io import write_json
    from gis.metrics.lpips_metric import lpips_distance

    torch.set_num_threads(1)
    ds = load_dataset("fashion-colors")
    gen = gis.get_generator(a.generator)
    clf = ds.ground_truth.category_classifier()
    pairs = draw_pairs(ds, 100, 10, 0)[:a.items]
    rows = {}
    for name, overrides in CONFIGS.items():
        lp, kept, secs = [], [], []
        for k, (item, _) in enumerate(pairs):
            x = ds.image_tensor([item])
            t0 = time.perf_counter()
            r = invert(x, gen, settings=invert_settings("seller", seed=k, **overrides))
            secs.append(time.perf_counter() - t0)
            lp.append(float(lpips_distance(r.image, (x + 1) / 2, value_range=(0, 1))[0]))
            kept.append(int(clf.predict_proba(r.image * 2 - 1).argmax(1)[0])
                        == int(ds.categories[item]))
        rows[name] = {"settings": overrides, "lpips_alex": lp, "base_keeps_category": kept,
                      "seconds": secs, "median_lpips": float(np.median(lp)),
                      "share_base_keeps_category": float(np.mean(kept))}
        print(f"{name}: LPIPS median {np.median(lp):.3f} p90 {np.quantile(lp, 0.9):.3f}, "
              f"base keeps category {np.mean(kept):.2f}, {np.mean(secs):.1f} s", flush=True)
    write_json(a.out, {"command": "python scripts/inversion_starts.py --items "
                                  f"{a.items} --out {a.out}", "torch": torch.__version__,
                       "items": [ds.item_ids[i] for i, _ in pairs], "configs": rows})


if __name__ == "__main__":
    main()

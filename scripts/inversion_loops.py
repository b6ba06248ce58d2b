"""Issue 17: how inversion fidelity depends on its loop (steps, lr, schedule, precision).

Final LPIPS(VGG) and MSE of the kept start for 8 catalogue items (rng seed 1), shipped progan,
1 thread: `python scripts/inversion_loops.py [OUT.json]` prints one line per loop. The eighth
session's output is docs/results/inversion_loops_issue17.txt (docs/ENGINE.md, "Speed").
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

import gis
from gis.data import load_dataset
from gis.engine.invert import invert
from gis.engine.pipeline import build_terms
from gis.engine.settings import invert_settings

LOOPS = {
    "v7": dict(steps=200, lr=0.01, lr_schedule="constant", precision="float32"),
    "v7-bf16": dict(steps=200, lr=0.01, lr_schedule="constant", precision="bfloat16"),
    "c200-0.03": dict(steps=200, lr=0.03, lr_schedule="cosine", precision="bfloat16"),
    "c100-0.03": dict(steps=100, lr=0.03, lr_schedule="cosine", precision="bfloat16"),
    "c100-0.05": dict(steps=100, lr=0.05, lr_schedule="cosine", precision="bfloat16"),
    "c60-0.05": dict(steps=60, lr=0.05, lr_schedule="cosine", precision="bfloat16"),
    "c100-0.1": dict(steps=100, lr=0.1, lr_schedule="cosine", precision="bfloat16"),
}


def main(out: str | None = None) -> None:
    torch.set_num_threads(1)
    ds = load_dataset("fashion-colors")
    gen = gis.get_generator("progan")
    terms = build_terms(gen, None, invert_settings=invert_settings())
    items = np.random.default_rng(1).choice(ds.num_items, 8, replace=False)
    results = {}
    for name, loop in LOOPS.items():
        t0 = time.perf_counter()
        vals = np.array([[r.losses["lpips"], r.losses["mse"]] for r in (
            invert(ds.image_tensor([int(i)]), gen, settings=invert_settings(**loop),
                   terms=terms) for i in items)])
        seconds = time.perf_counter() - t0
        results[name] = {"loop": loop, "lpips": vals[:, 0].tolist(), "mse": vals[:, 1].tolist(),
                         "seconds": seconds}
        print(f"{name:12s} lpips mean {vals[:, 0].mean():.4f} median "
              f"{np.median(vals[:, 0]):.4f}  mse {vals[:, 1].mean():.4f}  total "
              f"{vals.sum(1).mean():.4f}  {seconds:.0f}s", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""Realism in the fashion-colors world: is an image a product a simulated user could buy?

A product of this world (``simulation.render``) is one Fashion-MNIST garment, tinted with one
colour and shaded by its grey texture, on a flat off-white background with a 2-pixel empty
margin. Every pixel is therefore a mix of the background colour and one tint, scaled by the
shading: it lies in the plane spanned by the background and the tint in RGB. Three
measures follow, each in 0..255 pixel units on the uint8 image (``measures``):

``chroma_noise``   the speckle measure: the RMS, over the garment's pixels, of the
                   high-frequency part (pixel minus its 3x3 mean) of each pixel's distance
                   *off* that plane (the tint found as the principal direction of the garment
                   pixels once the background direction is projected out). Smooth shading,
                   texture and even a slow two-tone drift barely move it; colour speckle does.
``background``     the mean, over the 2-pixel margin, of each pixel's largest channel
                   difference from the margin's median (a clean product photo has 0).
``coverage``       the share of pixels inked (largest channel difference from the
                   background >= 24), the garment's size.

Calibration (docs/RESULTS.md, "Realism"): on every catalogue and held-out item the first two
are below 0.4 and 0.0 and coverage lies in 0.07..0.70. Generated images never reach those
values exactly (a GAN's background is never perfectly flat), so the thresholds below were set
by looking at 512 random samples of each shipped generator sorted by the measure: colour
speckle is visible in most images above a chroma noise of about 10 and in almost none below
8; backgrounds only show blotches or stray objects above about 12. An image is realistic when
``chroma_noise <= 10``, ``background <= 12`` and ``0.05 <= coverage <= 0.75``. The band
8..11 holds both clean and mildly speckled samples: the check catches clear speckle, not
every faint one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gis.images import to_uint8
from gis.interfaces import RealismVerdict
from gis.io import write_json

#: thresholds of ``judge`` (0..255 pixel units; coverage a share of the pixels)
MAX_CHROMA_NOISE = 10.0
MAX_BACKGROUND = 12.0
COVERAGE_RANGE = (0.05, 0.75)
#: width of the empty margin of a rendered product (``simulation.MARGIN``)
MARGIN = 2
#: largest channel difference from the background from which a pixel counts as garment
INK = 24.0


def measures(images, *, value_range: tuple[float, float] | None = (-1.0, 1.0)
             ) -> dict[str, np.ndarray]:
    """The realism measures (see the module docstring) of images: uint8 (N, H, W, 3), or a
    float tensor/array (N, 3, H, W) in ``value_range``. Returns float64 arrays (N,) named
    ``chroma_noise``, ``background`` (0..255 units) and ``coverage`` (0..1)."""
    arr = torch.from_numpy(to_uint8(images, value_range)).double()   # (N, H, W, 3)
    n, h, w, _ = arr.shape
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[MARGIN:h - MARGIN, MARGIN:w - MARGIN] = False
    border = arr[:, ring]                                             # (N, P, 3)
    bg = border.median(dim=1).values                                  # (N, 3)
    background = (border - bg[:, None]).abs().amax(-1).mean(1)
    flat = arr.reshape(n, -1, 3)
    mask = (flat - bg[:, None]).abs().amax(-1) >= INK                 # (N, HW) garment
    count = mask.sum(1).clamp(min=1)
    # project out the background direction; the tint is the principal remaining direction
    b = bg / bg.norm(dim=1, keepdim=True).clamp(min=1e-6)
    q = flat - (flat * b[:, None]).sum(-1, keepdim=True) * b[:, None]
    qm = q * mask[..., None]
    tint = torch.linalg.eigh(qm.transpose(1, 2) @ qm).eigenvectors[..., -1]  # (N, 3)
    off = q - (q * tint[:, None]).sum(-1, keepdim=True) * tint[:, None]    # off-plane part
    field = off.reshape(n, h, w, 3).permute(0, 3, 1, 2)
    local = F.avg_pool2d(F.pad(field, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    high = (field - local).norm(dim=1).reshape(n, -1)
    chroma = ((high.square() * mask).sum(1) / count).sqrt()
    return {"chroma_noise": chroma.numpy(), "background": background.numpy(),
            "coverage": (mask.sum(1) / (h * w)).double().numpy()}


def judge(images, *, value_range: tuple[float, float] | None = (-1.0, 1.0)) -> RealismVerdict:
    """``RealismVerdict`` of images (as for ``measures``) with the module's thresholds."""
    m = measures(images, value_range=value_range)
    lo, hi = COVERAGE_RANGE
    reasons = []
    for c, b, cov in zip(m["chroma_noise"], m["background"], m["coverage"], strict=True):
        why = []
        if c > MAX_CHROMA_NOISE:
            why.append(f"speckle: chroma noise {c:.1f} > {MAX_CHROMA_NOISE:g}")
        if b > MAX_BACKGROUND:
            why.append(f"stained background {b:.1f} > {MAX_BACKGROUND:g}")
        if not lo <= cov <= hi:
            why.append(f"no product shape: coverage {cov:.2f} outside {lo:g}..{hi:g}")
        reasons.append("; ".join(why))
    return RealismVerdict(realistic=np.array([not r for r in reasons]), reasons=reasons,
                          measures=m)


def calibrate(*, generators=("progan", "dvbpr-gan"), n: int = 512, seed: int = 0,
              out: str | None = None) -> dict:
    """The figures behind the thresholds: the measures' range over every real catalogue and
    held-out item, and each generator's ``n`` seeded random samples (share judged realistic,
    measure percentiles). With ``out``, also writes per generator a PNG grid of 48 samples
    sorted by chroma noise, labelled with it (what the thresholds were read from)."""
    from pathlib import Path

    import gis
    from gis.data import load_dataset
    from gis.images import make_grid_png

    ds = load_dataset("fashion-colors")

    def summary(v: RealismVerdict) -> dict:
        pct = {k: np.percentile(a, [0, 1, 50, 99, 100]).round(3).tolist()
               for k, a in v.measures.items()}
        return {"n": len(v.reasons), "share_realistic": float(v.realistic.mean()),
                "percentiles_0_1_50_99_100": pct}

    doc = {"thresholds": {"max_chroma_noise": MAX_CHROMA_NOISE,
                          "max_background": MAX_BACKGROUND, "coverage": list(COVERAGE_RANGE)},
           "catalogue": summary(judge(ds.image_tensor(np.arange(ds.num_items)))),
           "heldout": summary(judge(ds.heldout_tensor(np.arange(ds.num_heldout))))}
    for name in generators:
        gen = gis.get_generator(name)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = gen.sample_latents(n, generator=g)
            labels = torch.arange(n) % gen.num_classes if gen.num_classes else None
            x = gen.to_unit(gen.synthesize(z, labels=labels))
        verdict = judge(x, value_range=(0.0, 1.0))
        doc[name] = summary(verdict)
        if out is not None:
            c = verdict.measures["chroma_noise"]
            idx = np.argsort(c)[np.linspace(0, n - 1, 48).astype(int)]
            make_grid_png(x[idx], Path(out) / f"realism_{name}.png", value_range=(0, 1),
                          labels=[f"{c[i]:.1f}" + ("" if verdict.realistic[i] else " x")
                                  for i in idx], nrow=8, tile=96)
    return doc


if __name__ == "__main__":  # python -m gis_fashion_colors.realism OUT_DIR
    import json
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    folder.mkdir(parents=True, exist_ok=True)
    result = calibrate(out=str(folder))
    write_json(folder / "realism_calibration.json", result)
    print(json.dumps(result, indent=2))

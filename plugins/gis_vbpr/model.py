"""VBPR (He & McAuley, AAAI 2016) behind gis's Recommender interface, and its checkpoints.

Score of user u for catalogue item i (the paper's eq. 2, with its visual bias beta'):

    x(u, i) = beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i

f_i (F,) is a frozen ImageNet CNN feature of the item's image (``gis_vbpr.features``), divided
by a fixed per-dimension scale ``feature_scale`` taken from the training catalogue (its std
times sqrt(F): unit-free features, one learning rate for every layer's channels; per trunk
layer instead with ``--feature-norm layer``); E (F, D)
projects it to D visual factors; gamma (K latent factors) and beta_i (item bias) are the
non-visual part learned per catalogue item; theta_u (D,) is the user's visual taste.

**A new image X** (gis's variants, any image outside the catalogue) has no gamma_X and no
beta_X. As for VBPR's cold-start items, their value is the prior's: gamma_X = 0, beta_X = 0
(the L2 penalties are zero-mean Gaussian priors; an item with no interaction keeps them), so

    x(u, X) = theta_u . (E f(X)) + beta' . f(X)           (the visual part only)

and gis's engine, which scores ``theta_u . phi(X)``, sees exactly that through

    phi(X) = [E f(X), beta' . f(X)]   (D + 1,)     user_vectors = [theta_u, 1]   (U, D + 1)

(the constant last user coordinate carries the visual bias, as cornac's VBPR does for its
ANN index). ``item_bias`` is therefore None: the bias is already inside phi, and every gis
path (shift, design, ranks, evaluate) reads phi . theta only. A model trained without the
visual bias (``visual_bias=False``) has phi = E f(X) and theta_u (D,). Catalogue items keep
their full score in :meth:`VBPR.catalogue_scores` (the AUC).

Checkpoints are ``.safetensors`` (no pickle): tensors ``beta_item``, ``gamma_user``,
``gamma_item``, ``theta``, ``E``, ``beta_prime``, ``feature_scale``; the JSON meta holds
``format="gis.vbpr"``, the feature spec, K, D, the user ids and the model card. The trunk's
weights are not stored: they are gis's LPIPS asset (``gis.assets``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gis.errors import CheckpointError
from gis.interfaces import ModelCard, Recommender

from .features import FeatureSpec, VisualFeatures

FORMAT = "gis.vbpr"
FORMAT_VERSION = 1
TENSORS = ("beta_item", "gamma_user", "gamma_item", "theta", "E", "beta_prime",
           "feature_scale")


class VBPRFactors(nn.Module):
    """VBPR's learned parameters (everything but the frozen trunk).

    Shapes: beta_item (N,), gamma_user (U, K), gamma_item (N, K), theta (U, D), E (F, D),
    beta_prime (F,) (zeros and frozen when ``visual_bias`` is False), buffer feature_scale (F,).
    """

    def __init__(self, num_users: int, num_items: int, feature_dim: int, k: int = 20,
                 d: int = 20, visual_bias: bool = True):
        super().__init__()
        self.k, self.d, self.visual_bias = int(k), int(d), bool(visual_bias)
        self.beta_item = nn.Parameter(torch.zeros(num_items))
        self.gamma_user = nn.Parameter(torch.zeros(num_users, k))
        self.gamma_item = nn.Parameter(torch.zeros(num_items, k))
        self.theta = nn.Parameter(torch.zeros(num_users, d))
        self.E = nn.Parameter(torch.zeros(feature_dim, d))
        self.beta_prime = nn.Parameter(torch.zeros(feature_dim), requires_grad=visual_bias)
        self.register_buffer("feature_scale", torch.ones(feature_dim))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform gamma, theta, E (and beta' when used), zero item biases (cornac's
        initialisation of the same model)."""
        with torch.no_grad():
            for p in (self.gamma_user, self.gamma_item, self.theta, self.E):
                bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                p.uniform_(-bound, bound, generator=generator)
            self.beta_item.zero_()
            self.beta_prime.zero_()
            if self.visual_bias:
                bound = math.sqrt(6.0 / (self.beta_prime.shape[0] + 1))
                self.beta_prime.uniform_(-bound, bound, generator=generator)

    def trainable(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "beta_prime" or self.visual_bias]

    def normalise(self, f: torch.Tensor) -> torch.Tensor:
        """Raw features (B, F) -> the unit-free features the factors read."""
        return f / self.feature_scale

    def visual(self, fn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E f (B, D), beta' . f (B,)) of normalised features fn (B, F)."""
        return fn @ self.E, fn @ self.beta_prime

    def pair_scores(self, u: torch.Tensor, i: torch.Tensor, fn_i: torch.Tensor) -> torch.Tensor:
        """x(u, i) (B,) for user rows u (B,), catalogue items i (B,) with features fn_i (B, F)."""
        ef, vb = self.visual(fn_i)
        return (self.beta_item[i] + (self.gamma_user[u] * self.gamma_item[i]).sum(1)
                + (self.theta[u] * ef).sum(1) + vb)

    def all_scores(self, users: torch.Tensor, fn: torch.Tensor, *,
                   cold: bool = False) -> torch.Tensor:
        """x(u, i) (B, N) of user rows (B,) for every catalogue item (features fn (N, F));
        ``cold``: the visual part only (as for a new image)."""
        ef, vb = self.visual(fn)
        s = self.theta[users] @ ef.T + vb[None]
        if not cold:
            s = s + self.beta_item[None] + self.gamma_user[users] @ self.gamma_item.T
        return s


class VBPR(Recommender):
    """A VBPR model (factors + the frozen ImageNet feature trunk) as a gis Recommender.

    ``image_size`` is the feature side (images are resized to it by ``prepare``);
    ``input_range`` (-1, 1); ``embedding_dim`` D + 1 with the visual bias, else D. Built by
    the plugin factory in eval mode with its parameters frozen; ``embed`` stays
    differentiable with respect to the images.
    """

    input_range = (-1.0, 1.0)

    def __init__(self, spec: FeatureSpec, factors: VBPRFactors, user_ids: list[str],
                 card: dict[str, Any] | None = None, features: VisualFeatures | None = None):
        super().__init__()
        if factors.theta.shape[0] != len(user_ids):
            raise CheckpointError(f"{len(user_ids)} user ids for {factors.theta.shape[0]} "
                                  "user vectors")
        self.spec = spec
        self.image_size = int(spec.side)
        self.factors = factors
        self.features = features if features is not None else VisualFeatures(spec)
        self.user_ids = [str(u) for u in user_ids]
        self.embedding_dim = factors.d + (1 if factors.visual_bias else 0)
        self.card = ModelCard.from_dict(card)

    def train(self, mode: bool = True) -> VBPR:
        super().train(mode)
        self.features.eval()
        return self

    def raw_features(self, images: torch.Tensor) -> torch.Tensor:
        """f(X) (B, F) of images (B, 3, S, S) in [-1, 1], before ``feature_scale``."""
        return self.features(images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """phi(X) = [E f(X), beta' . f(X)]: images (B, 3, S, S) in [-1, 1] -> (B, D + 1)
        ((B, D) without the visual bias). Differentiable in the images."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != self.image_size \
                or images.shape[-2] != self.image_size:
            raise ValueError(f"VBPR expects images (B, 3, {self.image_size}, "
                             f"{self.image_size}); got {tuple(images.shape)} (use .prepare() "
                             "to resize)")
        fn = self.factors.normalise(self.features(images.to(self.factors.E.dtype)))
        ef, vb = self.factors.visual(fn)
        return torch.cat([ef, vb[:, None]], 1) if self.factors.visual_bias else ef

    @property
    def user_vectors(self) -> torch.Tensor:
        """[theta_u, 1] (U, D + 1) (theta (U, D) without the visual bias)."""
        theta = self.factors.theta
        if not self.factors.visual_bias:
            return theta
        return torch.cat([theta, theta.new_ones(theta.shape[0], 1)], 1)

    def item_bias(self, images: torch.Tensor) -> None:  # noqa: ARG002
        """None: the visual bias beta' . f(X) is phi's last coordinate (module docstring)."""
        return None

    def catalogue_scores(self, users: torch.Tensor, catalogue_features: torch.Tensor, *,
                         cold: bool = False) -> torch.Tensor:
        """Full VBPR scores (B, N) of the trained-on catalogue for user rows (B,), from its raw
        features (N, F) (``cold``: visual part only, as ``score`` of the same images)."""
        return self.factors.all_scores(users, self.factors.normalise(catalogue_features),
                                       cold=cold)

    def extra_repr(self) -> str:
        f = self.factors
        return (f"features={self.spec.name}, K={f.k}, D={f.d}, visual_bias={f.visual_bias}, "
                f"users={self.num_users}, items={f.beta_item.shape[0]}")


# ---------------------------------------------------------------------------- checkpoints

def factors_meta(factors: VBPRFactors, spec: FeatureSpec) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "features": spec.to_dict(),
            "k": factors.k, "d": factors.d, "visual_bias": factors.visual_bias,
            "num_users": int(factors.theta.shape[0]),
            "num_items": int(factors.beta_item.shape[0])}


def save_vbpr(factors: VBPRFactors, spec: FeatureSpec, user_ids: list[str],
              path: str | os.PathLike, *, card: dict[str, Any] | None = None) -> Path:
    """Write a gis VBPR checkpoint (safetensors, float32, atomically)."""
    from gis.training import save_checkpoint

    tensors = {k: v.detach().float().cpu().contiguous()
               for k, v in factors.state_dict().items()}
    meta = {**factors_meta(factors, spec), "user_ids": [str(u) for u in user_ids],
            "card": dict(card or {})}
    return save_checkpoint(path, tensors, meta)


def load_vbpr(path: str | os.PathLike, *, features: VisualFeatures | None = None) -> VBPR:
    """Load a gis VBPR ``.safetensors`` checkpoint; a file that is not one, or whose tensors do
    not fit its own meta, is a one-line ``CheckpointError`` naming the key or shape."""
    from gis.training import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VBPR checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: VBPR checkpoints are .safetensors files written by "
                              "`gis train recommender vbpr`")
    tensors, meta = load_checkpoint(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a VBPR checkpoint (format {meta.get('format')!r},"
                              f" expected {FORMAT!r})")
    try:
        spec = FeatureSpec.from_dict(meta["features"])
        k, d, vb = int(meta["k"]), int(meta["d"]), bool(meta["visual_bias"])
        user_ids = [str(u) for u in meta["user_ids"]]
        num_items = int(meta["num_items"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed VBPR meta ({type(exc).__name__}: {exc})"
                              ) from None
    factors = VBPRFactors(len(user_ids), num_items, spec.dim, k=k, d=d, visual_bias=vb)
    expected = factors.state_dict()
    missing = [n for n in expected if n not in tensors]
    unexpected = [n for n in tensors if n not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:4])}"] if unexpected else [])
        raise CheckpointError(f"{path} does not fit VBPR ({spec.name}, K={k}, D={d}): "
                              + "; ".join(parts))
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{path} does not fit VBPR ({spec.name}, K={k}, D={d}, "
                                  f"{len(user_ids)} users, {num_items} items): {name} has shape "
                                  f"{tuple(got.shape)}, expected {tuple(want.shape)}")
    factors.load_state_dict({n: v.float() for n, v in tensors.items()})
    if features is not None and features.spec != spec:
        features = None
    card = {**dict(meta.get("card") or {}), "checkpoint": str(path)}
    return VBPR(spec, factors, user_ids, card=card, features=features)

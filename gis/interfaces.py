"""What every registered generator and recommender must provide.

Methods (inversion, shifting, the DVBPR design baseline, evaluation) only ever use these
interfaces; they never branch on which plugin they hold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import UnknownUserError


class Generator(nn.Module):
    """A pretrained image generator G: latent -> image.

    Subclasses set ``latent_dim`` (int), ``resolution`` (output side in pixels),
    ``output_range`` ((low, high) of the synthesised pixel values, e.g. (-1, 1)),
    ``num_classes`` (0 for unconditional generators) and implement ``synthesize``.
    """

    latent_dim: int
    resolution: int
    output_range: tuple[float, float] = (-1.0, 1.0)
    num_classes: int = 0
    #: free-form facts recorded in results (training data, checkpoint, ...)
    card: dict[str, Any]

    def sample_latents(self, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        """n latents from the prior, shape (n, latent_dim)."""
        device = device if device is not None else self.device
        return torch.randn(n, self.latent_dim, generator=generator, device="cpu").to(device)

    def synthesize(self, z: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (n, 3, resolution, resolution) in ``output_range`` from latents (n, latent_dim).

        ``labels`` (n,) long holds class indices for conditional generators, else is ignored.
        Must be differentiable with respect to ``z``.
        """
        raise NotImplementedError

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesize(z, labels=labels)

    def discriminate(self, images: torch.Tensor, *,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's output (n,) for images in ``output_range``, when the plugin ships its
        discriminator (the DVBPR design baseline's realism term needs it)."""
        raise NotImplementedError(f"{type(self).__name__} ships no discriminator")

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Map synthesised images to [0, 1] (clamped)."""
        lo, hi = self.output_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


class Recommender(nn.Module):
    """A visual recommender: x(u, X) = theta_u . phi(X).

    Subclasses set ``image_size`` (input side), ``input_range`` (pixel range it expects),
    ``embedding_dim`` (K) and provide ``embed`` and ``user_vectors``. ``user_ids`` lists the
    external ids of the users, in the order of the rows of ``user_vectors``.
    """

    image_size: int
    input_range: tuple[float, float] = (-1.0, 1.0)
    embedding_dim: int
    user_ids: list[str]
    card: dict[str, Any]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """phi: images (B, 3, image_size, image_size) in ``input_range`` -> (B, K).

        Deterministic (eval mode) and differentiable with respect to the images.
        """
        raise NotImplementedError

    @property
    def user_vectors(self) -> torch.Tensor:
        """theta: (U, K), row i for ``user_ids[i]``."""
        raise NotImplementedError

    def item_bias(self, images: torch.Tensor) -> torch.Tensor | None:  # noqa: ARG002
        """Optional per-image additive score term (VBPR-style); None when absent."""
        return None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def user_index(self, users) -> torch.Tensor:
        """Row indices (long) of external user ids; raises UnknownUserError naming the culprit."""
        lookup = getattr(self, "_user_lookup", None)
        if lookup is None or len(lookup) != len(self.user_ids):
            lookup = {str(u): i for i, u in enumerate(self.user_ids)}
            self._user_lookup = lookup
        idx = []
        for u in users:
            key = str(u)
            if key not in lookup:
                example = ", ".join(self.user_ids[:3])
                raise UnknownUserError(
                    f"unknown user id {key!r}: this recommender knows {len(lookup)} users "
                    f"(e.g. {example}); list them with `gis data info`"
                )
            idx.append(lookup[key])
        return torch.tensor(idx, dtype=torch.long)

    def prepare(self, images: torch.Tensor, source_range: tuple[float, float]) -> torch.Tensor:
        """Bridge images from another model: resize (bilinear) and rescale value range."""
        lo, hi = source_range
        x = (images - lo) / (hi - lo)
        if x.shape[-1] != self.image_size:
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size),
                                          mode="bilinear", align_corners=False, antialias=True)
        a, b = self.input_range
        return x * (b - a) + a

    def score(self, images: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, U) of images (in ``input_range``) for user rows ``users`` (all if None)."""
        phi = self.embed(images)
        theta = self.user_vectors if users is None else self.user_vectors[users]
        s = phi @ theta.to(phi.dtype).T
        bias = self.item_bias(images)
        return s if bias is None else s + bias[:, None]

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

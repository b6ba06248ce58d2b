"""The shift predictor Theta_s of GIS (Kumar, Sharma & Narayan 2025; docs/METHOD.md).

From each shifted image it predicts which of the n shifts made it (class logits, trained with
cross-entropy against the shift's index) and the shift itself (regression, trained with mean
absolute error). Optimised jointly with the shifts, it pushes the n variants apart.

Architecture as in the authors' code: torchvision ResNet-18 with random initialisation (no
ImageNet weights), conv1 replaced by ``Conv2d(3, 64, 7, 2, 3)``, the 512-d average-pooled
features feeding two heads ``Linear(512, n)`` and ``Linear(512, latent_dim)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import GisUsageError


class ShiftPredictor(nn.Module):
    """ResNet-18 trunk + (index logits, shift regression) heads.

    Any input side works (down to a few pixels: the average pool is adaptive); in training mode
    its batch norms need more than one image per batch.

    ``seed``: draw the initial weights from this seed. torchvision's layers draw from the global
    generator, so they are built inside ``torch.random.fork_rng`` (CPU): the caller's RNG state
    is left as it was. ``None`` draws from the global generator as it stands.
    """

    def __init__(self, n: int, latent_dim: int, *, seed: int | None = None):
        super().__init__()
        if n < 1 or latent_dim < 1:
            raise GisUsageError(f"n and latent_dim must be >= 1 (got {n}, {latent_dim})")
        self.n = n
        self.latent_dim = latent_dim
        if seed is None:
            self._build()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                self._build()

    def _build(self) -> None:
        from torchvision.models import resnet18

        trunk = resnet18(weights=None)
        trunk.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        trunk.fc = nn.Identity()  # keep the 512-d pooled features
        self.trunk = trunk
        self.class_head = nn.Linear(512, self.n)
        self.shift_head = nn.Linear(512, self.latent_dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 512) pooled features of images (B, 3, H, W) (or (B, 1, H, W), replicated)."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise GisUsageError(f"the shift predictor reads (B, 3, H, W) images, got "
                                f"{tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] -> (logits (B, n), predicted shifts (B, latent_dim))."""
        f = self.features(images)
        return self.class_head(f), self.shift_head(f)

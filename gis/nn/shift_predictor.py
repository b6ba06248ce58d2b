"""The shift predictor Theta_s of GIS (Kumar, Sharma & Narayan 2025).

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


class ShiftPredictor(nn.Module):
    """ResNet-18 trunk + (index logits, shift regression) heads.

    Any input side works (down to a few pixels: the average pool is adaptive); in training mode
    its batch norms need more than one image per batch.
    """

    def __init__(self, n: int, latent_dim: int):
        super().__init__()
        from torchvision.models import resnet18

        if n < 1 or latent_dim < 1:
            raise ValueError(f"n and latent_dim must be >= 1 (got {n}, {latent_dim})")
        trunk = resnet18(weights=None)
        trunk.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        trunk.fc = nn.Identity()  # keep the 512-d pooled features
        self.trunk = trunk
        self.n = n
        self.latent_dim = latent_dim
        self.class_head = nn.Linear(512, n)
        self.shift_head = nn.Linear(512, latent_dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 512) pooled features of images (B, 3, H, W) (or (B, 1, H, W), replicated)."""
        assert images.ndim == 4 and images.shape[1] in (1, 3), (
            f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] -> (logits (B, n), predicted shifts (B, latent_dim))."""
        f = self.features(images)
        return self.class_head(f), self.shift_head(f)

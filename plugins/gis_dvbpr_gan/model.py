"""Kang et al. (2017) conditional LSGAN ("DVBPR personalized design"), scaled to 32x32.

Original (64x64): z (256) concatenated with a one-hot category -> linear to 4x4x256 ->
3x3 transposed convs with 256, 256, 256, 256, 128, 64 channels (BN + LeakyReLU 0.2) -> tanh;
D: 5x5 stride-2 convs 64/128/256/512 with the label tiled in, LeakyReLU, linear to 1.

Adaptation to ``resolution`` = 4 * 2**d. The six hidden transposed convs keep their channels;
d of them double the resolution (stride 2, padding 1, output padding 1), the others keep it
(stride 1, padding 1). Doublings are placed at layers 0, 2, 4 first, then 5, 3, 1, so the
network alternates "grow, refine":

* 32x32 (d = 3): strides 2, 1, 2, 1, 2, 1  -> 4 -> 8 -> 8 -> 16 -> 16 -> 32 -> 32
* 64x64 (d = 4): strides 2, 1, 2, 1, 2, 2  -> 4 -> 8 -> 8 -> 16 -> 16 -> 32 -> 64

A final 3x3 transposed conv (stride 1) maps the 64 channels to RGB, followed by tanh; it has
no BN. The linear layer is followed by BN + LeakyReLU too.

Discriminator: the one-hot label is tiled to (C, H, W) and concatenated to the image
channels; four 5x5 stride-2 convs (padding 2) with 64/128/256/512 channels and LeakyReLU
(BatchNorm after convs 2-4, as in DCGAN/LSGAN, switchable with ``d_batchnorm``); the
one-hot label is concatenated once more to the flattened features before the final linear
layer to one raw score (LSGAN targets: real 1, fake 0). At 32x32 the last feature map is
2x2x512.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import CheckpointError

G_CHANNELS = [256, 256, 256, 256, 128, 64]
D_CHANNELS = [64, 128, 256, 512]
_DOUBLING_ORDER = [0, 2, 4, 5, 3, 1]


def default_strides(resolution: int, n_layers: int = 6) -> list[int]:
    """Stride of each hidden transposed conv for a 4x4 start and ``resolution`` output."""
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    d = int(math.log2(resolution // 4))
    if d > n_layers:
        raise ValueError(f"{n_layers} layers cannot reach {resolution}px from 4x4")
    order = [i for i in _DOUBLING_ORDER if i < n_layers]
    order += [i for i in range(n_layers) if i not in order]
    strides = [1] * n_layers
    for i in order[:d]:
        strides[i] = 2
    return strides


@dataclass
class DVBPRGANConfig:
    num_classes: int
    latent_dim: int = 256
    resolution: int = 32
    base_channels: int = 256
    g_channels: list[int] = field(default_factory=lambda: list(G_CHANNELS))
    g_strides: list[int] | None = None
    d_channels: list[int] = field(default_factory=lambda: list(D_CHANNELS))
    d_batchnorm: bool = True
    leaky: float = 0.2
    image_channels: int = 3

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise CheckpointError(f"dvbpr-gan needs num_classes >= 1, got {self.num_classes}")
        if self.g_strides is None:
            self.g_strides = default_strides(self.resolution, len(self.g_channels))
        self.g_strides = [int(s) for s in self.g_strides]
        if len(self.g_strides) != len(self.g_channels):
            raise CheckpointError("dvbpr-gan config: g_strides and g_channels differ in length")
        if 4 * math.prod(self.g_strides) != self.resolution:
            raise CheckpointError(
                f"dvbpr-gan config: strides {self.g_strides} give {4 * math.prod(self.g_strides)}"
                f"px, not {self.resolution}px")
        if self.resolution % 2 ** len(self.d_channels):
            raise CheckpointError(
                f"dvbpr-gan config: {len(self.d_channels)} stride-2 convs do not divide "
                f"{self.resolution}px")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DVBPRGANConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise CheckpointError(f"dvbpr-gan config has unknown fields {unknown}")
        return cls(**d)


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).to(dtype)


class DVBPRGenerator(nn.Module):
    """G(z, onehot) -> images (N, 3, r, r) in [-1, 1]."""

    def __init__(self, cfg: DVBPRGANConfig):
        super().__init__()
        self.cfg = cfg
        b = cfg.base_channels
        self.fc = nn.Linear(cfg.latent_dim + cfg.num_classes, 16 * b)
        self.bn0 = nn.BatchNorm2d(b)
        layers: list[nn.Module] = []
        prev = b
        for ch, s in zip(cfg.g_channels, cfg.g_strides, strict=True):
            layers += [nn.ConvTranspose2d(prev, ch, 3, stride=s, padding=1, output_padding=s - 1),
                       nn.BatchNorm2d(ch), nn.LeakyReLU(cfg.leaky)]
            prev = ch
        self.body = nn.Sequential(*layers)
        self.to_rgb = nn.ConvTranspose2d(prev, cfg.image_channels, 3, stride=1, padding=1)
        for m in self.modules():  # DCGAN initialisation
            if isinstance(m, nn.ConvTranspose2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, y], dim=1)).view(-1, self.cfg.base_channels, 4, 4)
        h = F.leaky_relu(self.bn0(h), self.cfg.leaky)
        return torch.tanh(self.to_rgb(self.body(h)))


class DVBPRDiscriminator(nn.Module):
    """D(x, onehot) -> raw scores (N,)."""

    def __init__(self, cfg: DVBPRGANConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        prev = cfg.image_channels + cfg.num_classes
        for i, ch in enumerate(cfg.d_channels):
            layers.append(nn.Conv2d(prev, ch, 5, stride=2, padding=2))
            if cfg.d_batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(cfg.leaky))
            prev = ch
        self.body = nn.Sequential(*layers)
        side = cfg.resolution // 2 ** len(cfg.d_channels)
        self.fc = nn.Linear(prev * side * side + cfg.num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        tiled = y[:, :, None, None].expand(n, y.shape[1], h, w)
        f = self.body(torch.cat([x, tiled.to(x.dtype)], dim=1)).flatten(1)
        return self.fc(torch.cat([f, y.to(f.dtype)], dim=1)).view(-1)


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2]."""
    return 0.5 * (d_real - 1.0).square().mean() + 0.5 * d_fake.square().mean()


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """0.5 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (d_fake - 1.0).square().mean()


@torch.no_grad()
def recalibrate_batchnorm(net: DVBPRGenerator, labels: torch.Tensor, *, n_batches: int = 100,
                          batch_size: int = 64, seed: int = 0) -> DVBPRGenerator:
    """"Standing statistics" for G's BatchNorm layers, in place: each running mean and
    variance becomes the plain average, over ``n_batches`` train-mode batches of fresh
    latents, of the batch statistics (unbiased variance), with categories drawn from
    ``labels`` (one entry per training item, so classes come at their data frequency).

    Needed after weight averaging (EMA): the running statistics tracked during training
    belong to the raw weights, not to their average. Weights are untouched; ``net`` is left
    in eval mode."""
    g = torch.Generator(device=labels.device).manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    dev = next(net.parameters()).device
    for _ in range(n_batches):
        y = labels[torch.randint(len(labels), (batch_size,), generator=g,
                                 device=labels.device)].to(dev)
        z = torch.randn(batch_size, net.cfg.latent_dim, generator=g,
                        device=labels.device).to(dev)
        net(z, one_hot(y, net.cfg.num_classes))
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    return net.eval()

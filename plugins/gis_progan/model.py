"""Progressive GAN (Karras et al., ICLR 2018) networks, laid out like pro_gan_pytorch.

Generator (one block per resolution 4, 8, ..., ``resolution``; ``channels[i]`` feature maps in
block i, 4x4 first)::

    block 0:  pixel-norm(z) -> 4x4 projection (a transposed 4x4 conv of the 1x1 latent, i.e. a
              dense layer; equalised-lr fan-in = latent_dim) -> LReLU(0.2) [-> pixel-norm when
              ``norm_after_projection``] -> conv 3x3 -> LReLU -> pixel-norm
    block i:  nearest x2 -> (conv 3x3 -> LReLU -> pixel-norm) x 2
    to_rgb i: conv 1x1 (linear), one per block

Output at stage ``s`` (resolution 4 * 2**s) with fade-in ``alpha``::

    alpha * to_rgb[s](block_s(h)) + (1 - alpha) * upsample(to_rgb[s-1](h))

The output is unbounded (no tanh), as in the paper; :class:`gis_progan.ProGAN` clamps it to
[-1, 1] at synthesis.

Discriminator: the mirror image: from_rgb 1x1 (+LReLU) per stage, blocks of
(conv 3x3 -> LReLU -> conv 3x3 -> LReLU -> avg-pool 2), and a 4x4 head: minibatch stddev
(one extra feature map; a zero map when ``mbstd_group`` is 0) -> conv 3x3 -> LReLU -> conv 4x4
(valid) -> LReLU -> linear -> score.

Every weight is stored N(0, 1) and scaled at run time by ``sqrt(2 / fan_in)`` (equalised
learning rate) when ``equalized`` is set; biases are added unscaled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import CheckpointError

# ----------------------------------------------------------------------------- config


def nf(stage: int, fmap_base: int, fmap_max: int, fmap_min: int = 1) -> int:
    """Feature maps at pro_gan_pytorch stage ``stage`` (1 = the 4x4 block):
    ``clip(fmap_base / 2**stage, fmap_min, fmap_max)``."""
    return int(min(max(int(fmap_base / 2.0**stage), fmap_min), fmap_max))


def default_channels(resolution: int, fmap_base: int = 2048, fmap_max: int = 192) -> list[int]:
    """Channels of each generator block (4x4 first) for ``resolution``; block i is
    pro_gan_pytorch stage i + 1. pro_gan_pytorch itself uses fmap_base 16384, fmap_max 512."""
    return [nf(i + 1, fmap_base, fmap_max) for i in range(num_blocks(resolution))]


def num_blocks(resolution: int) -> int:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"ProGAN resolution must be a power of two >= 4, got {resolution}")
    return int(math.log2(resolution)) - 1


@dataclass
class ProGANConfig:
    """Everything needed to rebuild the generator (stored in every checkpoint as JSON)."""

    latent_dim: int = 512
    resolution: int = 32
    channels: list[int] = field(default_factory=lambda: default_channels(32))
    image_channels: int = 3
    equalized: bool = True
    pixel_norm: bool = True
    #: pixel-norm right after the 4x4 projection (Karras / pytorch_GAN_zoo; pro_gan_pytorch: no)
    norm_after_projection: bool = False
    leaky: float = 0.2
    #: fade-in of the last block used at synthesis (1 = fully grown)
    alpha: float = 1.0
    #: minibatch-stddev group size of the discriminator; 0 switches it off (the extra feature
    #: map is then zero, so the layer shapes stay the same and each image is scored alone)
    mbstd_group: int = 4

    def __post_init__(self) -> None:
        self.channels = [int(c) for c in self.channels]
        if self.mbstd_group < 0:
            raise CheckpointError(f"ProGAN config: mbstd_group must be >= 0 (0: off), got "
                                  f"{self.mbstd_group}")
        n = num_blocks(self.resolution)
        if len(self.channels) != n:
            raise CheckpointError(
                f"ProGAN config: resolution {self.resolution} needs {n} blocks, "
                f"got {len(self.channels)} channel counts {self.channels}"
            )

    @property
    def num_stages(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProGANConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"ProGAN config has unknown fields {unknown}")
        return cls(**d)


# ----------------------------------------------------------------------------- layers


def he_scale(fan_in: int) -> float:
    """The equalised-learning-rate constant sqrt(2 / fan_in)."""
    return math.sqrt(2.0 / fan_in)


class EqualizedConv2d(nn.Module):
    """Conv2d whose N(0,1) weight is multiplied by sqrt(2 / (in * k * k)) at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 padding: int | None = None, equalized: bool = True):
        super().__init__()
        fan_in = in_channels * kernel_size * kernel_size
        self.scale = he_scale(fan_in) if equalized else 1.0
        init_std = 1.0 if equalized else he_scale(fan_in)
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size) * init_std)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, padding={self.padding}, scale={self.scale:.4g}"


class EqualizedProjection(nn.Module):
    """Latent (N, L) -> (N, C, 4, 4): a 4x4 transposed conv applied to a 1x1 input (as in
    pro_gan_pytorch), computed as one matmul. Weight (L, C, 4, 4) scaled by sqrt(2 / L) (the
    transposed conv's fan-in is its input channels only); bias per output pixel (C, 4, 4),
    which also holds pytorch_GAN_zoo's dense-layer bias."""

    def __init__(self, latent_dim: int, channels: int, *, equalized: bool = True):
        super().__init__()
        self.scale = he_scale(latent_dim) if equalized else 1.0
        init_std = 1.0 if equalized else he_scale(latent_dim)
        self.weight = nn.Parameter(torch.randn(latent_dim, channels, 4, 4) * init_std)
        self.bias = nn.Parameter(torch.zeros(channels, 4, 4))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        latent, c = self.weight.shape[:2]
        y = z @ (self.weight * self.scale).reshape(latent, c * 16)
        return y.view(-1, c, 4, 4) + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} -> {self.weight.shape[1]}x4x4, scale={self.scale:.4g}"


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each pixel's feature vector (dim 1) to unit root-mean-square."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x)


def _group_size(batch: int, group: int) -> int:
    """Largest divisor of ``batch`` that is <= ``group``."""
    g = max(1, min(group, batch))
    while batch % g:
        g -= 1
    return g


def minibatch_stddev(x: torch.Tensor, group: int = 4, eps: float = 1e-8) -> torch.Tensor:
    """Append one feature map: the standard deviation of each feature over a group of samples
    (samples i, i + M, i + 2M, ... form a group, M = N / group), averaged over features and
    pixels (Karras et al. 2018, section 3)."""
    n, c, h, w = x.shape
    g = _group_size(n, group)
    y = x.reshape(g, -1, c, h, w)                       # [G, M, C, H, W]
    y = y - y.mean(dim=0, keepdim=True)
    y = torch.sqrt(y.square().mean(dim=0) + eps)        # [M, C, H, W]
    y = y.mean(dim=(1, 2, 3), keepdim=True)             # [M, 1, 1, 1]
    y = y.repeat(g, 1, h, w)                            # [N, 1, H, W]
    return torch.cat([x, y], dim=1)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


# ----------------------------------------------------------------------------- generator


class InitialBlock(nn.Module):
    def __init__(self, cfg: ProGANConfig):
        super().__init__()
        c = cfg.channels[0]
        self.cfg_norm = cfg.pixel_norm
        self.norm_after_projection = cfg.norm_after_projection
        self.leaky = cfg.leaky
        self.project = EqualizedProjection(cfg.latent_dim, c, equalized=cfg.equalized)
        self.conv = EqualizedConv2d(c, c, 3, equalized=cfg.equalized)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.cfg_norm:
            z = pixel_norm(z)
        y = F.leaky_relu(self.project(z), self.leaky)
        if self.cfg_norm and self.norm_after_projection:
            y = pixel_norm(y)
        y = F.leaky_relu(self.conv(y), self.leaky)
        return pixel_norm(y) if self.cfg_norm else y


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: ProGANConfig):
        super().__init__()
        self.norm = cfg.pixel_norm
        self.leaky = cfg.leaky
        self.conv1 = EqualizedConv2d(cin, cout, 3, equalized=cfg.equalized)
        self.conv2 = EqualizedConv2d(cout, cout, 3, equalized=cfg.equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = upsample2(x)
        for conv in (self.conv1, self.conv2):
            y = F.leaky_relu(conv(y), self.leaky)
            if self.norm:
                y = pixel_norm(y)
        return y


class ProGANGenerator(nn.Module):
    """The synthesis network: ``forward(z, stage=None, alpha=1.0)`` -> (N, C, r, r) with
    r = 4 * 2**stage (stage None: the last one)."""

    def __init__(self, cfg: ProGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.blocks = nn.ModuleList(
            [InitialBlock(cfg)] + [UpBlock(ch[i - 1], ch[i], cfg) for i in range(1, len(ch))]
        )
        self.to_rgb = nn.ModuleList(
            [EqualizedConv2d(c, cfg.image_channels, 1, equalized=cfg.equalized) for c in ch]
        )

    def forward(self, z: torch.Tensor, stage: int | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        stage = len(self.blocks) - 1 if stage is None else stage
        h = self.blocks[0](z)
        for block in self.blocks[1:stage]:
            h = block(h)
        if stage == 0:
            return self.to_rgb[0](h)
        straight = self.to_rgb[stage](self.blocks[stage](h))
        if alpha >= 1.0:
            return straight
        residual = upsample2(self.to_rgb[stage - 1](h))
        return alpha * straight + (1.0 - alpha) * residual


# ----------------------------------------------------------------------------- discriminator


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: ProGANConfig):
        super().__init__()
        self.leaky = cfg.leaky
        self.conv1 = EqualizedConv2d(cin, cin, 3, equalized=cfg.equalized)
        self.conv2 = EqualizedConv2d(cin, cout, 3, equalized=cfg.equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(x), self.leaky)
        y = F.leaky_relu(self.conv2(y), self.leaky)
        return F.avg_pool2d(y, 2)


class FinalBlock(nn.Module):
    def __init__(self, c: int, cfg: ProGANConfig):
        super().__init__()
        self.leaky = cfg.leaky
        self.group = cfg.mbstd_group
        self.conv1 = EqualizedConv2d(c + 1, c, 3, equalized=cfg.equalized)
        self.conv2 = EqualizedConv2d(c, c, 4, padding=0, equalized=cfg.equalized)
        self.out = EqualizedConv2d(c, 1, 1, equalized=cfg.equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group > 0:
            y = minibatch_stddev(x, self.group)
        else:  # no minibatch std: a zero map in its place, each image is scored on its own
            y = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1)
        y = F.leaky_relu(self.conv1(y), self.leaky)
        y = F.leaky_relu(self.conv2(y), self.leaky)
        return self.out(y).view(-1)


class ProGANDiscriminator(nn.Module):
    """Critic ``forward(x, stage=None, alpha=1.0)`` -> scores (N,) for images at the stage's
    resolution."""

    def __init__(self, cfg: ProGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.from_rgb = nn.ModuleList(
            [EqualizedConv2d(cfg.image_channels, c, 1, equalized=cfg.equalized) for c in ch]
        )
        # blocks[i] takes stage-i features (channels[i]) down to stage i-1; blocks[0] is the head
        self.blocks = nn.ModuleList(
            [FinalBlock(ch[0], cfg)] + [DownBlock(ch[i], ch[i - 1], cfg) for i in range(1, len(ch))]
        )

    def forward(self, x: torch.Tensor, stage: int | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        stage = len(self.blocks) - 1 if stage is None else stage
        leaky = self.cfg.leaky
        h = F.leaky_relu(self.from_rgb[stage](x), leaky)
        if stage > 0:
            h = self.blocks[stage](h)
            if alpha < 1.0:
                low = F.leaky_relu(self.from_rgb[stage - 1](F.avg_pool2d(x, 2)), leaky)
                h = alpha * h + (1.0 - alpha) * low
            for i in range(stage - 1, 0, -1):
                h = self.blocks[i](h)
        return self.blocks[0](h)


# ----------------------------------------------------------------------------- losses


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP term mean((||grad_x critic(x_hat)||_2 - 1)^2), x_hat a random per-sample
    interpolation between ``real`` and ``fake`` (unweighted; multiply by lambda)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=real.device,
                     dtype=real.dtype)
    x_hat = torch.lerp(real.detach(), fake.detach(), eps).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return (norm - 1.0).square().mean()


def wgan_gp_losses(d_real: torch.Tensor, d_fake: torch.Tensor, gp: torch.Tensor, *,
                   gp_weight: float = 10.0, drift: float = 0.001) -> torch.Tensor:
    """Critic loss: E[D(fake)] - E[D(real)] + gp_weight * GP + drift * E[D(real)^2]."""
    return d_fake.mean() - d_real.mean() + gp_weight * gp + drift * d_real.square().mean()


def logistic_losses(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss of the logistic (non-saturating) GAN, Goodfellow et al. 2014:
    E[softplus(-D(real))] + E[softplus(D(fake))], D a logit. Its minimiser is
    D*(x) = log p_data(x) / p_G(x) (the density ratio Discriminator Rejection Sampling reads,
    Azadi et al., ICLR 2019)."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def r1_penalty(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 of Mescheder et al. (ICML 2018): E[||grad_x D(x)||^2] over real images ``real``
    (B, C, H, W), which must require grad, from their ``scores`` D(real) (B,) (unweighted:
    the loss adds gamma / 2 times it). Differentiable (``create_graph``) for the critic's step.
    """
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return grad.flatten(1).square().sum(1).mean()

"""BigGAN (Brock, Donahue & Simonyan, ICLR 2019), the 32x32 (CIFAR-style) architecture, small.

Generator G(z, c):

* **Shared class embedding**: one ``nn.Embedding(num_classes, shared_dim)`` e = E[c], used by
  every conditional BatchNorm (instead of one embedding per layer).
* **Hierarchical latents**: z (``latent_dim``) is split into ``len(g_channels)`` equal chunks;
  chunk 0 feeds the first linear layer (to a 4x4x``g_channels[0]`` map), chunk i (i >= 1) is
  concatenated with e and conditions block i's BatchNorms.
* **Residual up-blocks** (one per doubling): CBN, ReLU, nearest x2, conv3x3, CBN, ReLU, conv3x3,
  plus a nearest-x2 + conv1x1 shortcut. Conditional BatchNorm: BN without affine parameters,
  then ``(1 + gain(cond)) * x + bias(cond)`` with linear ``gain``, ``bias`` (spectrally
  normalised, as in the paper).
* **Self-attention** (SAGAN's, with BigGAN's max-pooled keys/values and a gate gamma starting
  at 0) after the block whose output has side ``attention`` (0: none).
* Output: BatchNorm, ReLU, conv3x3 to RGB, tanh: images in [-1, 1].

Discriminator D(x, c): residual down-blocks (the first without pre-activation), self-attention
at the same resolution, ReLU, global sum pooling h, and the **projection** output (Miyato &
Koyama 2018) ``linear(h) + <embed_D(c), h>``.

**Spectral normalisation** (Miyato et al. 2018) on every conv, linear and D's embedding, in G
and D (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per training
forward; in eval mode the stored singular vectors are used, so outputs are deterministic).
Losses: hinge (:func:`hinge_d_loss`, :func:`hinge_g_loss`); **orthogonal regularisation**,
BigGAN's variant (:func:`orthogonal_regularisation`). Orthogonal initialisation as in the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gis.errors import CheckpointError

G_CHANNELS = [256, 128, 128, 64]   # 4x4 input map, then the output of each up-block
D_CHANNELS = [64, 128, 128, 128]   # output of each down-block (the last keeps its side)


@dataclass
class BigGANConfig:
    """Architecture of gis's BigGAN. ``resolution`` = 4 * 2**(len(g_channels) - 1);
    ``latent_dim`` divisible by ``len(g_channels)`` (the hierarchical chunks);
    ``resolution / 2**(len(d_channels) - 1)`` = 4."""

    num_classes: int
    resolution: int = 32
    latent_dim: int = 128
    shared_dim: int = 64
    g_channels: list[int] = field(default_factory=lambda: list(G_CHANNELS))
    d_channels: list[int] = field(default_factory=lambda: list(D_CHANNELS))
    attention: int = 16
    bn_eps: float = 1e-5
    sn_eps: float = 1e-6
    image_channels: int = 3

    def __post_init__(self) -> None:
        self.g_channels = [int(c) for c in self.g_channels]
        self.d_channels = [int(c) for c in self.d_channels]
        if self.num_classes < 1:
            raise CheckpointError(f"biggan needs num_classes >= 1, got {self.num_classes}")
        if len(self.g_channels) < 2 or 4 * 2 ** (len(self.g_channels) - 1) != self.resolution:
            raise CheckpointError(
                f"biggan config: {len(self.g_channels)} generator widths give "
                f"{4 * 2 ** max(0, len(self.g_channels) - 1)}px, not {self.resolution}px")
        if self.latent_dim % len(self.g_channels):
            raise CheckpointError(
                f"biggan config: latent_dim {self.latent_dim} does not split into "
                f"{len(self.g_channels)} equal chunks")
        if len(self.d_channels) < 2 or self.resolution != 4 * 2 ** (len(self.d_channels) - 1):
            raise CheckpointError(
                f"biggan config: {len(self.d_channels)} discriminator widths do not bring "
                f"{self.resolution}px down to 4px")
        if min(self.g_channels + self.d_channels + [self.shared_dim, self.latent_dim]) < 1:
            raise CheckpointError("biggan config: widths must be >= 1")

    @property
    def chunk(self) -> int:
        return self.latent_dim // len(self.g_channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BigGANConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise CheckpointError(f"biggan config has unknown fields {unknown}")
        return cls(**d)


def _sn(module: nn.Module, eps: float) -> nn.Module:
    return spectral_norm(module, eps=eps)


def _init(module: nn.Module) -> nn.Module:
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def snconv(cin: int, cout: int, k: int, eps: float, bias: bool = True) -> nn.Module:
    return _sn(_init(nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)), eps)


def snlinear(cin: int, cout: int, eps: float, bias: bool = True) -> nn.Module:
    return _sn(_init(nn.Linear(cin, cout, bias=bias)), eps)


class ConditionalBatchNorm(nn.Module):
    """BN without affine parameters, then ``(1 + gain(y)) * x + bias(y)``; y (n, cond_dim)."""

    def __init__(self, channels: int, cond_dim: int, *, eps: float, sn_eps: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=eps)
        self.gain = snlinear(cond_dim, channels, sn_eps, bias=False)
        self.bias = snlinear(cond_dim, channels, sn_eps, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = 1.0 + self.gain(y)[:, :, None, None]
        b = self.bias(y)[:, :, None, None]
        return self.bn(x) * g + b


class SelfAttention(nn.Module):
    """SAGAN self-attention as BigGAN uses it: theta, phi (C/8), g (C/2) 1x1 convs, phi and g
    max-pooled 2x2, softmax(theta^T phi) applied to g, a 1x1 conv back to C, out = x + gamma *
    o with gamma (a scalar) starting at 0. Needs C >= 8 and an even side."""

    def __init__(self, channels: int, sn_eps: float):
        super().__init__()
        c8, c2 = max(1, channels // 8), max(1, channels // 2)
        self.theta = snconv(channels, c8, 1, sn_eps, bias=False)
        self.phi = snconv(channels, c8, 1, sn_eps, bias=False)
        self.g = snconv(channels, c2, 1, sn_eps, bias=False)
        self.o = snconv(c2, channels, 1, sn_eps, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2)                        # (n, C/8, hw)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)           # (n, C/8, hw/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)               # (n, C/2, hw/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, -1)   # (n, hw, hw/4)
        o = (g @ beta.transpose(1, 2)).view(n, -1, h, w)        # (n, C/2, h, w)
        return x + self.gamma * self.o(o)


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int, cfg: BigGANConfig):
        super().__init__()
        self.cbn1 = ConditionalBatchNorm(cin, cond_dim, eps=cfg.bn_eps, sn_eps=cfg.sn_eps)
        self.conv1 = snconv(cin, cout, 3, cfg.sn_eps)
        self.cbn2 = ConditionalBatchNorm(cout, cond_dim, eps=cfg.bn_eps, sn_eps=cfg.sn_eps)
        self.conv2 = snconv(cout, cout, 3, cfg.sn_eps)
        self.shortcut = snconv(cin, cout, 1, cfg.sn_eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.cbn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.cbn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class BigGANGenerator(nn.Module):
    """G(z, e) -> images (n, 3, r, r) in [-1, 1]; z (n, latent_dim), e (n, shared_dim) the
    shared class embedding (``embed(labels)``), so that a caller may move e as well."""

    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.g_channels
        cond = cfg.chunk + cfg.shared_dim
        self.shared = nn.Embedding(cfg.num_classes, cfg.shared_dim)
        nn.init.normal_(self.shared.weight, 0.0, 1.0)
        self.linear = snlinear(cfg.chunk, 16 * ch[0], cfg.sn_eps)
        self.blocks = nn.ModuleList(GBlock(ch[i], ch[i + 1], cond, cfg)
                                    for i in range(len(ch) - 1))
        self.attn_after = -1
        self.attn: nn.Module | None = None
        for i in range(len(ch) - 1):
            if cfg.attention == 8 * 2 ** i:
                self.attn_after, self.attn = i, SelfAttention(ch[i + 1], cfg.sn_eps)
        self.out_bn = nn.BatchNorm2d(ch[-1], eps=cfg.bn_eps)
        self.to_rgb = snconv(ch[-1], cfg.image_channels, 3, cfg.sn_eps)

    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        """The shared embedding (n, shared_dim) of class indices (n,)."""
        return self.shared(labels.long())

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        chunks = z.split(self.cfg.chunk, dim=1)
        h = self.linear(chunks[0]).view(len(z), self.cfg.g_channels[0], 4, 4)
        for i, block in enumerate(self.blocks):
            h = block(h, torch.cat([chunks[i + 1], e], dim=1))
            if i == self.attn_after:
                h = self.attn(h)
        return torch.tanh(self.to_rgb(F.relu(self.out_bn(h))))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: BigGANConfig, *, preactivation: bool,
                 downsample: bool):
        super().__init__()
        self.pre, self.down = preactivation, downsample
        self.conv1 = snconv(cin, cout, 3, cfg.sn_eps)
        self.conv2 = snconv(cout, cout, 3, cfg.sn_eps)
        self.learnable_sc = cin != cout or downsample
        self.shortcut = snconv(cin, cout, 1, cfg.sn_eps) if self.learnable_sc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.pre else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        sc = x
        if self.learnable_sc:
            if self.pre:        # conv, then pool
                sc = self.shortcut(sc)
                sc = F.avg_pool2d(sc, 2) if self.down else sc
            else:               # first block: pool, then conv
                sc = self.shortcut(F.avg_pool2d(sc, 2) if self.down else sc)
        return h + sc


class BigGANDiscriminator(nn.Module):
    """D(x, c) -> raw scores (n,) (hinge loss: > 1 confidently real, < -1 confidently fake);
    x (n, 3, r, r) in [-1, 1], c (n,) class indices."""

    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        self.cfg = cfg
        ch, prev, side = cfg.d_channels, cfg.image_channels, cfg.resolution
        blocks, self.attn_after, self.attn = [], -1, None
        for i, c in enumerate(ch):
            down = i < len(ch) - 1
            blocks.append(DBlock(prev, c, cfg, preactivation=i > 0, downsample=down))
            side = side // 2 if down else side
            if side == cfg.attention and self.attn is None and down:
                self.attn_after, self.attn = i, SelfAttention(c, cfg.sn_eps)
            prev = c
        self.blocks = nn.ModuleList(blocks)
        self.linear = snlinear(prev, 1, cfg.sn_eps)
        self.embed = _sn(_init(nn.Embedding(cfg.num_classes, prev)), cfg.sn_eps)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attn_after:
                h = self.attn(h)
        h = F.relu(h).sum(dim=(2, 3))                           # (n, C)
        return self.linear(h).view(-1) + (self.embed(labels.long()) * h).sum(1)


# ----------------------------------------------------------------------------- losses


def hinge_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; BigGAN)."""
    return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


def hinge_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -d_fake.mean()


def ortho_weights(net: nn.Module) -> list[torch.Tensor]:
    """The weights BigGAN regularises: every conv/linear weight matrix (the raw parameter
    under spectral norm), not the shared embedding, biases, gains or BatchNorm."""
    out = []
    for name, p in net.named_parameters():
        if p.ndim >= 2 and not name.startswith("shared."):
            out.append(p)
    return out


def orthogonal_regularisation(weights: list[torch.Tensor], beta: float) -> torch.Tensor:
    """BigGAN's orthogonal regularisation (Brock et al. 2019, eq. 3):
    R = beta * sum_W || W W^T (.) (1 - I) ||_F^2 with W reshaped to (out, fan_in), one row per
    filter: only the filters' pairwise cosines are pushed to 0, their norms are free.
    Its gradient is 4 beta ((W W^T) (.) (1 - I)) W. Returns a 0-d tensor (0 for no weights)."""
    total = None
    for w in weights:
        m = w.reshape(w.shape[0], -1)
        gram = m @ m.t()
        off = gram * (1.0 - torch.eye(m.shape[0], device=m.device, dtype=m.dtype))
        r = off.square().sum()
        total = r if total is None else total + r
    if total is None:
        return torch.zeros(())
    return beta * total


@torch.no_grad()
def standing_statistics(net: BigGANGenerator, labels: torch.Tensor, *, n_batches: int = 100,
                        batch_size: int = 64, seed: int = 0) -> BigGANGenerator:
    """BigGAN's "standing statistics", in place: every BatchNorm's running mean and variance
    become the plain average, over ``n_batches`` batches of fresh N(0, I) latents, of the batch
    statistics, with classes drawn from ``labels`` (one entry per training image). Needed for
    the weight average (EMA), whose running statistics belong to the raw weights. Only the
    BatchNorm layers run in training mode (spectral norm keeps its singular vectors); weights
    are untouched; ``net`` is left in eval mode."""
    g = torch.Generator(device=labels.device).manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    net.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    dev = next(net.parameters()).device
    for _ in range(n_batches):
        y = labels[torch.randint(len(labels), (batch_size,), generator=g,
                                 device=labels.device)].to(dev)
        z = torch.randn(batch_size, net.cfg.latent_dim, generator=g,
                        device=labels.device).to(dev)
        net(z, net.embed(y))
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    return net.eval()


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


"""StyleGAN2 networks in pure PyTorch (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", CVPR): mapping network, modulated/demodulated convolutions, noise inputs,
skip-architecture generator, residual discriminator.

No custom CUDA ops (NVIDIA's carry a non-commercial licence): FIR filtering (``upfirdn2d``)
is written with ``F.pad`` + depthwise ``F.conv2d``, the fused bias + leaky ReLU as plain ops.
The parametrisation is the one of the public PyTorch re-implementations (rosinality's
``stylegan2-pytorch``), so that its ``g_ema`` files map onto these modules tensor for tensor
(:mod:`gis_stylegan2.loaders`):

* equalised learning rate: weights stored N(0, 1) / ``lr_mul``, scaled at run time by
  ``lr_mul / sqrt(fan_in)``; biases scaled by ``lr_mul`` (the mapping network's 0.01);
* "fused" leaky ReLU: ``leaky_relu(x + b, 0.2) * sqrt(2)`` with a per-channel bias ``b``;
* FIR kernel [1, 3, 3, 1] (outer product, normalised to sum 1; times 4 when upsampling);
* modulation: style s = A(w) (bias initialised to 1); demodulation
  ``rsqrt(sum_{i,k} (scale * W * s_i)^2 + 1e-8)`` per output channel; toRGB is not
  demodulated;
* noise: ``x + strength * noise`` (per-layer scalar strength, initialised 0), before the
  activation's bias.

Shapes: z and w are (B, w_dim); the synthesis reads ws (B, num_ws, w_dim), num_ws =
2 log2(resolution) - 2; images are (B, 3, R, R), unbounded (about [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
BLUR = (1.0, 3.0, 3.0, 1.0)


@dataclass
class StyleGAN2Config:
    """Architecture. ``channels``: feature maps per resolution 4, 8, ..., ``resolution``
    (len = log2(resolution) - 1); ``d_channels`` the discriminator's (same order; default
    ``channels``)."""

    resolution: int = 32
    w_dim: int = 512
    n_mlp: int = 8
    lr_mlp: float = 0.01
    channels: list[int] = field(default_factory=lambda: [128, 128, 128, 64])
    d_channels: list[int] | None = None
    image_channels: int = 3

    def __post_init__(self) -> None:
        self.channels = [int(c) for c in self.channels]
        log = int(round(math.log2(self.resolution)))
        if 2 ** log != self.resolution or log < 2:
            raise ValueError(f"resolution must be a power of 2 >= 4, got {self.resolution}")
        if len(self.channels) != log - 1:
            raise ValueError(f"channels needs {log - 1} values (4 .. {self.resolution} px), "
                             f"got {len(self.channels)}")
        if self.d_channels is not None:
            self.d_channels = [int(c) for c in self.d_channels]
            if len(self.d_channels) != log - 1:
                raise ValueError(f"d_channels needs {log - 1} values")

    @property
    def num_ws(self) -> int:
        return 2 * int(round(math.log2(self.resolution))) - 2

    @property
    def num_noises(self) -> int:
        return self.num_ws - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleGAN2Config:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------- FIR filtering


def fir_kernel(k=BLUR, gain: float = 1.0) -> torch.Tensor:
    """2-D FIR kernel: the outer product of ``k`` with itself, normalised to sum ``gain``."""
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """``upfirdn2d(x, kernel, up=1, down=1, pad)``: pad (pad0 before, pad1 after on both
    axes), then a true convolution (flipped kernel) applied to every channel."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    w = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, w, groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``upfirdn2d(x, 4 * kernel, up=2, pad=(2, 1))`` for a 4-tap kernel: zero insertion then
    the FIR filter; (B, C, H, W) -> (B, C, 2H, 2W)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    p = kernel.shape[0] - 2
    return blur(up, kernel * 4, ((p + 1) // 2 + 1, p // 2))


def fused_lrelu(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)``, bias per channel (dim 1)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, 0.2) * SQRT2


# ----------------------------------------------------------------------------- layers


class EqualLinear(nn.Module):
    """Linear layer with equalised lr: y = x (W * lr_mul / sqrt(in))^T + b * lr_mul, then
    optionally the fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, *, lr_mul: float = 1.0,
                 bias_init: float = 0.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.scale)
        if self.activate:
            return fused_lrelu(y, self.bias * self.lr_mul)
        return y + self.bias * self.lr_mul


class MappingNetwork(nn.Module):
    """z (B, w_dim) -> w (B, w_dim): pixel norm of z, then ``n_mlp`` equalised linear layers
    with lr multiplier ``lr_mlp`` and the fused leaky ReLU."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.layers = nn.ModuleList(EqualLinear(cfg.w_dim, cfg.w_dim, lr_mul=cfg.lr_mlp,
                                                activate=True) for _ in range(cfg.n_mlp))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class ModulatedConv2d(nn.Module):
    """Modulated (and demodulated) convolution, optionally upsampling x2 (transposed conv with
    stride 2, then the FIR blur). Computed as scale-input / convolve / scale-output, which
    equals convolving with the per-sample weight ``W'_{oik} = scale W_{oik} s_i d_o``."""

    def __init__(self, in_ch: int, out_ch: int, k: int, w_dim: int, *, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.modulation = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * k * k)
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = k // 2
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.modulation(w)  # (B, in)
        weight = self.weight * self.scale
        x = x * s[:, :, None, None]
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            k = self.weight.shape[-1]
            p = (self.kernel.shape[0] - 2) - (k - 1)
            x = blur(x, self.kernel * 4, ((p + 1) // 2 + 1, p // 2 + 1))
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum(dim=(2, 3)).T + 1e-8)  # (B, out)
            x = x * d[:, :, None, None]
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise input (``x + strength * noise``), fused bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, *, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        x = x + self.noise_strength * noise
        return fused_lrelu(x, self.bias)


class ToRGB(nn.Module):
    """1x1 modulated conv (not demodulated) + bias; adds the upsampled skip image."""

    def __init__(self, in_ch: int, w_dim: int, image_channels: int = 3):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        y = self.conv(x, w) + self.bias[None, :, None, None]
        return y if skip is None else y + upsample2d(skip, self.kernel)


class Synthesis(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, C, R, R): learned 4x4 constant, one styled conv at
    4x4, then per resolution an upsampling styled conv and a styled conv; a toRGB after every
    resolution summed into the upsampled skip image. w index: conv i reads ws[:, i], the toRGB
    after conv i reads ws[:, i + 1].

    Noise: ``noise_mode="const"`` adds the fixed buffers ``noise_i`` (1, 1, r, r) (drawn once
    when the model is built and saved with it: synthesis is then deterministic);
    ``"random"`` draws fresh N(0, 1) noise (training, as published; ``rng`` seeds it);
    ``"none"`` adds none."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        ch, wd = cfg.channels, cfg.w_dim
        self.cfg = cfg
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.conv0 = StyledConv(ch[0], ch[0], wd)
        self.rgb0 = ToRGB(ch[0], wd, cfg.image_channels)
        self.convs = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        for i in range(1, len(ch)):
            self.convs.append(StyledConv(ch[i - 1], ch[i], wd, upsample=True))
            self.convs.append(StyledConv(ch[i], ch[i], wd))
            self.rgbs.append(ToRGB(ch[i], wd, cfg.image_channels))
        g = torch.Generator().manual_seed(1234)
        for i in range(cfg.num_noises):
            r = 4 * 2 ** ((i + 1) // 2)
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r, generator=g))

    def noises(self, batch: int, mode: str, rng: torch.Generator | None,
               device: torch.device) -> list[torch.Tensor | float]:
        out: list[torch.Tensor | float] = []
        for i in range(self.cfg.num_noises):
            buf = getattr(self, f"noise_{i}")
            if mode == "const":
                out.append(buf)
            elif mode == "random":
                out.append(torch.randn(batch, 1, *buf.shape[2:], generator=rng, device=device))
            elif mode == "none":
                out.append(0.0)
            else:
                raise ValueError(f"noise_mode must be const, random or none, got {mode!r}")
        return out

    def forward(self, ws: torch.Tensor, *, noise_mode: str = "const",
                rng: torch.Generator | None = None) -> torch.Tensor:
        noise = self.noises(ws.shape[0], noise_mode, rng, ws.device)
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.conv0(x, ws[:, 0], noise[0])
        img = self.rgb0(x, ws[:, 1])
        for j, rgb in enumerate(self.rgbs):
            i = 1 + 2 * j
            x = self.convs[2 * j](x, ws[:, i], noise[i])
            x = self.convs[2 * j + 1](x, ws[:, i + 1], noise[i + 1])
            img = rgb(x, ws[:, i + 2], img)
        return img


class StyleGAN2Generator(nn.Module):
    """Mapping + synthesis. ``forward(z)``: z (B, w_dim) -> images (B, C, R, R), one w for all
    layers. ``w_mean`` / ``w_std`` (w_dim,): per-dimension statistics of w = mapping(z),
    z ~ N(0, I) (for the whitened W / W+ spaces and truncation; zeros/ones until estimated)."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = Synthesis(cfg)
        self.register_buffer("w_mean", torch.zeros(cfg.w_dim))
        self.register_buffer("w_std", torch.ones(cfg.w_dim))

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor, *, noise_mode: str = "const",
                rng: torch.Generator | None = None) -> torch.Tensor:
        return self.synthesis(self.broadcast(self.mapping(z)), noise_mode=noise_mode, rng=rng)

    @torch.no_grad()
    def estimate_w_stats(self, n: int = 10_000, seed: int = 0, batch: int = 2000) -> None:
        """Set ``w_mean`` / ``w_std`` from ``n`` mapped samples z ~ N(0, I) (seeded: the same
        weights always give the same statistics)."""
        g = torch.Generator().manual_seed(seed)
        dev = self.w_mean.device
        s1 = torch.zeros(self.cfg.w_dim, dtype=torch.float64)
        s2 = torch.zeros_like(s1)
        done = 0
        while done < n:
            m = min(batch, n - done)
            w = self.mapping(torch.randn(m, self.cfg.w_dim, generator=g).to(dev)).double().cpu()
            s1 += w.sum(0)
            s2 += w.pow(2).sum(0)
            done += m
        mean = s1 / n
        std = (s2 / n - mean.pow(2)).clamp_min(1e-12).sqrt()
        self.w_mean.copy_(mean.float())
        self.w_std.copy_(std.float().clamp_min(1e-6))


# ----------------------------------------------------------------------------- discriminator


class EqualConv2d(nn.Module):
    """Conv with equalised lr (scale 1 / sqrt(fan_in)), optional FIR blur + stride-2
    downsampling, optional fused bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, k: int, *, downsample: bool = False,
                 bias: bool = True, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * k * k)
        self.downsample = downsample
        self.activate = activate
        self.k = k
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        if self.downsample:
            p = (self.kernel.shape[0] - 2) + (self.k - 1)
            x = F.conv2d(blur(x, self.kernel, ((p + 1) // 2, p // 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
        if self.activate:
            return fused_lrelu(x, self.bias)
        return x if self.bias is None else x + self.bias[None, :, None, None]


class ResBlock(nn.Module):
    """conv 3x3, conv 3x3 down; skip 1x1 down (no bias, linear); sum / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, in_ch, 3)
        self.conv2 = EqualConv2d(in_ch, out_ch, 3, downsample=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class StyleGAN2Discriminator(nn.Module):
    """Residual D: fromRGB 1x1, a ResBlock per resolution down to 4x4, minibatch std (group
    ``mbstd_group``, 1 feature), conv 3x3, dense, dense -> (B,) logits."""

    def __init__(self, cfg: StyleGAN2Config, mbstd_group: int = 4):
        super().__init__()
        ch = list(reversed(cfg.d_channels or cfg.channels))  # R px first
        self.from_rgb = EqualConv2d(cfg.image_channels, ch[0], 1)
        self.blocks = nn.Sequential(*(ResBlock(ch[i], ch[i + 1]) for i in range(len(ch) - 1)))
        self.mbstd_group = mbstd_group
        self.final_conv = EqualConv2d(ch[-1] + 1, ch[-1], 3)
        self.final_linear = EqualLinear(ch[-1] * 16, ch[-1], activate=True)
        self.out = EqualLinear(ch[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_rgb(x))
        b, c, h, w = x.shape
        g = min(b, self.mbstd_group)
        if b % g:
            g = 1
        y = x.view(g, -1, 1, c, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean(dim=(2, 3, 4))  # (B/g, 1)
        y = y.view(-1, 1, 1, 1).repeat(g, 1, h, w)
        x = self.final_conv(torch.cat([x, y], 1))
        return self.out(self.final_linear(x.flatten(1))).squeeze(1)

"""BigGAN-deep in the layout of the ``pytorch-pretrained-biggan`` package (0.1.x; Hugging
Face's port of DeepMind's TF-Hub BigGAN-deep 128/256/512), re-implemented from its computation.

What such a model is (read from the package's state dict and config, not its code):

* ``config.json``: ``z_dim``, ``num_classes``, ``channel_width`` (ch), ``layers`` (a list of
  (up-sample?, in, out) with widths in units of ch), ``attention_layer_position`` (index of
  ``layers`` before which a self-attention layer is inserted), ``eps`` (BatchNorm epsilon),
  ``n_stats`` (BatchNorm statistics stored per truncation), ``output_dim``.
* ``embeddings.weight`` (z_dim, num_classes): the class embedding e = W @ class_vector (a
  one-hot vector for a class index); the condition is concat(z, e) (2 z_dim), fed to every
  layer (BigGAN-deep does not split z).
* Every conv/linear except ``embeddings`` is spectrally normalised with torch's
  ``spectral_norm`` (``weight_orig``, ``weight_u``, ``weight_v``): in eval mode its weight is
  ``weight_orig / (u . (W v))`` with W = weight_orig as (out, fan_in). gis folds that into
  plain weights once, at load.
* ``generator.gen_z``: linear 2 z_dim -> 4*4*16ch, read as (4, 4, 16ch) channels-last.
* A block (``GenBlock``): conditional BN, ReLU, conv1x1 (in -> in/4), cBN, ReLU, [nearest x2],
  conv3x3, cBN, ReLU, conv3x3, cBN, ReLU, conv1x1 (-> out); shortcut: the first out channels of
  x when out != in, [nearest x2]; sum. Conditional BN: ``(x - m) / sqrt(v + eps) * (1 +
  scale(cond)) + offset(cond)`` with linear ``scale``/``offset`` (no bias) and (m, v) the
  stored statistics for the truncation.
* Statistics per truncation: ``running_means``/``running_vars`` (n_stats, C) for truncations
  0, 1/(n_stats-1), ..., 1. For t with t / (1/(n_stats-1)) = i + f (f the fractional part), the
  package uses ``stats[i] * f + stats[i + 1] * (1 - f)`` when f != 0, ``stats[i]`` otherwise;
  gis does exactly the same, so outputs agree with the package at every truncation.
* Self-attention: theta, phi (C/8) and g (C/2) 1x1 convs, phi and g max-pooled 2x2,
  softmax(theta^T phi) over the pooled positions, applied to g, a 1x1 conv back to C,
  out = x + gamma * o.
* Output: BN (affine, the truncation's statistics), ReLU, conv3x3 (ch -> ch) of which the first
  3 channels are kept, tanh: images in [-1, 1], side ``4 * 2**(number of up-sampling blocks)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gis.errors import CheckpointError, UntrustedFileError


@dataclass
class PretrainedConfig:
    z_dim: int
    num_classes: int
    channel_width: int
    layers: list[tuple[bool, int, int]]
    attention_layer_position: int
    eps: float = 1e-4
    n_stats: int = 51
    output_dim: int = 128

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainedConfig:
        try:
            cfg = cls(z_dim=int(d["z_dim"]), num_classes=int(d["num_classes"]),
                      channel_width=int(d["channel_width"]),
                      layers=[(bool(u), int(i), int(o)) for u, i, o in d["layers"]],
                      attention_layer_position=int(d["attention_layer_position"]),
                      eps=float(d.get("eps", 1e-4)), n_stats=int(d.get("n_stats", 51)),
                      output_dim=int(d.get("output_dim", 128)))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"not a pytorch-pretrained-biggan config ({exc!r})") from None
        side = 4 * 2 ** sum(u for u, _, _ in cfg.layers)
        if side != cfg.output_dim:
            raise CheckpointError(f"pytorch-pretrained-biggan config: its layers make {side}px "
                                  f"images, output_dim says {cfg.output_dim}")
        return cfg


class _Stats(nn.Module):
    """BatchNorm statistics stored per truncation, interpolated as the package does."""

    def __init__(self, n_stats: int, channels: int, eps: float):
        super().__init__()
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.eps = eps
        self.truncation = 1.0

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.running_means.shape[0]
        # t / (1 / (n - 1)) as the package computes it (not t * (n - 1), whose rounding
        # differs and which would pick other statistics at some truncations)
        frac, whole = math.modf(self.truncation / (1.0 / (n - 1)) if n > 1 else 0.0)
        i = int(whole)
        if frac != 0.0:
            m = self.running_means[i] * frac + self.running_means[i + 1] * (1 - frac)
            v = self.running_vars[i] * frac + self.running_vars[i + 1] * (1 - frac)
            return m, v
        return self.running_means[i], self.running_vars[i]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        m, v = self.stats()
        return (x - m[:, None, None]) / torch.sqrt(v[:, None, None] + self.eps)


class _CondBN(_Stats):
    def __init__(self, n_stats: int, channels: int, cond_dim: int, eps: float):
        super().__init__(n_stats, channels, eps)
        self.scale = nn.Linear(cond_dim, channels, bias=False)
        self.offset = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return (self.normalise(x) * (1 + self.scale(cond))[:, :, None, None]
                + self.offset(cond)[:, :, None, None])


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int, up: bool, cfg: PretrainedConfig):
        super().__init__()
        mid, n, eps = cin // 4, cfg.n_stats, cfg.eps
        self.up, self.drop = up, cin != cout
        self.bn_0, self.conv_0 = _CondBN(n, cin, cond_dim, eps), nn.Conv2d(cin, mid, 1)
        self.bn_1, self.conv_1 = _CondBN(n, mid, cond_dim, eps), nn.Conv2d(mid, mid, 3, padding=1)
        self.bn_2, self.conv_2 = _CondBN(n, mid, cond_dim, eps), nn.Conv2d(mid, mid, 3, padding=1)
        self.bn_3, self.conv_3 = _CondBN(n, mid, cond_dim, eps), nn.Conv2d(mid, cout, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, cond)))
        h = F.relu(self.bn_1(h, cond))
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_2(F.relu(self.bn_2(self.conv_1(h), cond)))
        h = self.conv_3(F.relu(self.bn_3(h, cond)))
        sc = x[:, :x.shape[1] // 2] if self.drop else x
        if self.up:
            sc = F.interpolate(sc, scale_factor=2, mode="nearest")
        return h + sc


class _Attention(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.snconv1x1_theta = nn.Conv2d(c, c // 8, 1, bias=False)
        self.snconv1x1_phi = nn.Conv2d(c, c // 8, 1, bias=False)
        self.snconv1x1_g = nn.Conv2d(c, c // 2, 1, bias=False)
        self.snconv1x1_o_conv = nn.Conv2d(c // 2, c, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.snconv1x1_theta(x).flatten(2)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)
        o = (g @ attn.transpose(1, 2)).view(n, -1, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(o)


class PretrainedBigGAN(nn.Module):
    """BigGAN-deep of the package's layout with its spectral norms folded into the weights.

    ``embed(labels (n,))`` -> (n, z_dim); ``forward(z (n, z_dim), e (n, z_dim))`` -> images
    (n, 3, output_dim, output_dim) in [-1, 1] (``forward_class_vector`` takes the package's
    (n, num_classes) class vectors). ``truncation`` in (0, 1] picks the BatchNorm statistics
    (the latents' truncation is the caller's, as with the package)."""

    def __init__(self, cfg: PretrainedConfig, truncation: float = 1.0):
        super().__init__()
        self.cfg, ch, cond = cfg, cfg.channel_width, 2 * cfg.z_dim
        self.embeddings = nn.Linear(cfg.num_classes, cfg.z_dim, bias=False)
        self.gen_z = nn.Linear(cond, 4 * 4 * 16 * ch)
        layers: list[nn.Module] = []
        for i, (up, cin, cout) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(_Attention(ch * cin))
            layers.append(_Block(ch * cin, ch * cout, cond, up, cfg))
        self.layers = nn.ModuleList(layers)
        self.bn = _Stats(cfg.n_stats, ch, cfg.eps)
        self.bn.weight = nn.Parameter(torch.ones(ch))
        self.bn.bias = nn.Parameter(torch.zeros(ch))
        self.conv_to_rgb = nn.Conv2d(ch, 3, 3, padding=1)
        self.set_truncation(truncation)

    def set_truncation(self, truncation: float) -> None:
        if not 0 < truncation <= 1:
            raise CheckpointError(f"truncation must lie in (0, 1], got {truncation}")
        self.truncation = float(truncation)
        for m in self.modules():
            if isinstance(m, _Stats):
                m.truncation = self.truncation

    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embeddings.weight.t()[labels.long()]

    def forward_class_vector(self, z: torch.Tensor, class_vector: torch.Tensor) -> torch.Tensor:
        return self.forward(z, self.embeddings(class_vector))

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([z, e], dim=1)
        h = self.gen_z(cond).view(len(z), 4, 4, -1).permute(0, 3, 1, 2)
        for layer in self.layers:
            h = layer(h, cond) if isinstance(layer, _Block) else layer(h)
        m, v = self.bn.stats()
        h = F.batch_norm(h, m, v, self.bn.weight, self.bn.bias, training=False,
                         eps=self.bn.eps)
        return torch.tanh(self.conv_to_rgb(F.relu(h)))


def fold_spectral_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``P.weight_orig``/``P.weight_u``/``P.weight_v`` -> ``P.weight = weight_orig / sigma``,
    sigma = u . (W v) with W = weight_orig as (out, fan_in) (torch's eval-mode spectral norm)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.endswith(("_u", "_v")) and k[:-2] + "_orig" in state:
            continue
        if k.endswith("weight_orig"):
            p = k[:-len("weight_orig")]
            w = v.float()
            try:
                u, vv = state[p + "weight_u"].float(), state[p + "weight_v"].float()
            except KeyError:
                raise CheckpointError(f"{k} has no weight_u/weight_v beside it") from None
            sigma = torch.dot(u, w.reshape(w.shape[0], -1) @ vv)
            out[p + "weight"] = w / sigma
        else:
            out[k] = v
    return out


def convert_state_dict(state: dict[str, torch.Tensor],
                       cfg: PretrainedConfig) -> dict[str, torch.Tensor]:
    """The package's state dict -> :class:`PretrainedBigGAN`'s."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    folded = fold_spectral_norm(state)
    out = {}
    for k, v in folded.items():
        k = k[len("generator."):] if k.startswith("generator.") else k
        if k.startswith("conv_to_rgb."):  # only the first 3 output channels are used
            v = v[:3]
        out[k] = v.float() if v.is_floating_point() else v
    return out


def _read_state(path: Path, trust: bool) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot read {path}: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - objects beyond tensors: a pickle to trust
        if not trust:
            raise UntrustedFileError(
                f"{path} holds more than tensors ({type(exc).__name__}); load it only if you "
                "trust it, with --trust (trust=True), or save its state dict as .safetensors"
            ) from None
        from gis_progan.common import load_trusted_pickle

        state = load_trusted_pickle(path, trust=True, what="pytorch-pretrained-biggan")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                         dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return dict(state)


def load_pretrained_biggan(path: str | Path, *, trust: bool = False, truncation: float = 1.0
                           ) -> tuple[PretrainedBigGAN, PretrainedConfig, dict[str, Any]]:
    """Read a ``pytorch-pretrained-biggan`` model: ``path`` is its state dict
    (``pytorch_model.bin`` as ``BigGAN.from_pretrained`` reads it, or any ``.bin``/``.pt``/
    ``.pth``/``.safetensors`` holding ``model.state_dict()``) with the package's
    ``config.json`` beside it. A plain state dict loads with ``weights_only=True``; a pickle
    holding other objects needs ``trust``. Returns (network in eval mode, config, card).
    Raises CheckpointError (no config.json, wrong keys or shapes), UntrustedFileError."""
    from gis_progan.common import load_state_strict

    path = Path(path)
    cfg_path = path.parent / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{path} is neither a gis biggan file nor a pytorch-pretrained-biggan model with "
            f"its config.json beside it ({cfg_path} is missing)")
    try:
        cfg = PretrainedConfig.from_dict(json.loads(cfg_path.read_text()))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not JSON: {exc}") from None
    net = PretrainedBigGAN(cfg, truncation)
    state = convert_state_dict(_read_state(path, trust), cfg)
    load_state_strict(net, state, f"pytorch-pretrained-biggan checkpoint {path}")
    card = {"name": "biggan", "description": "BigGAN-deep (pytorch-pretrained-biggan layout)",
            "checkpoint": str(path), "source_format": "pytorch-pretrained-biggan",
            "resolution": cfg.output_dim, "truncation": truncation,
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
    return net.eval().requires_grad_(False), cfg, card

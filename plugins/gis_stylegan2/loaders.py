"""Reading StyleGAN2 generators: gis's own files and rosinality's ``stylegan2-pytorch`` layout.

* gis (``.safetensors``, no pickle): ``{"format": "gis-stylegan2", "config": {...}}`` (the
  exported EMA generator, with its noise buffers and w statistics) or a training checkpoint
  (``"gis-stylegan2-train"``: its ``ema.*`` tensors).
* rosinality (``*.pt``, a pickled dict written by ``train.py``: ``{"g", "d", "g_ema",
  "g_optim", "d_optim", "args"}``; ``g_ema`` is preferred, then ``g``; a bare generator state
  dict is accepted too). Read only with ``trust=True`` (pickle can run code). Layout of its
  ``Generator(size, style_dim, n_mlp, channel_multiplier)``:
  ``style.{1..n_mlp}.{weight,bias}`` (index 0 is PixelNorm; EqualLinear with lr_mul 0.01:
  weight stored N(0,1)/lr_mul, run-time scale lr_mul/sqrt(in), bias * lr_mul, fused leaky
  ReLU); ``input.input`` (1, C, 4, 4); ``conv1`` and ``convs.{j}`` (StyledConv:
  ``conv.weight`` (1, out, in, 3, 3), ``conv.modulation.{weight,bias}``,
  ``conv.blur.kernel`` for the upsampling ones (the [1,3,3,1] kernel x 4), ``noise.weight``
  (1,), ``activate.bias`` (out,): FusedLeakyReLU, leaky 0.2 times sqrt(2)); ``to_rgb1`` and
  ``to_rgbs.{j}`` (``conv.weight`` (1, 3, in, 1, 1), ``conv.modulation.*``, ``bias``
  (1, 3, 1, 1), ``upsample.kernel``); ``noises.noise_{i}`` (1, 1, r, r), r = 2 ** ((i + 5) // 2).
  These conventions are gis's own (:mod:`gis_stylegan2.model`), so the import is a renaming;
  the blur kernels are checked against [1, 3, 3, 1]. ``lr_mlp`` is not stored in the file:
  rosinality's default 0.01 is assumed (``lr_mlp=`` to change it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from gis_progan.common import load_generator_file, load_trusted_pickle, strip_prefix

from gis.errors import CheckpointError

from .model import StyleGAN2Config, fir_kernel

GIS_FORMAT = "gis-stylegan2"
GIS_TRAIN_FORMAT = "gis-stylegan2-train"
SRC = "rosinality stylegan2-pytorch"


def load_stylegan2_file(path: str | Path, *, trust: bool = False, lr_mlp: float = 0.01
                        ) -> tuple[StyleGAN2Config, dict[str, torch.Tensor], dict[str, Any]]:
    """(config, generator state dict in gis layout, provenance) from any supported file.
    The state dict may lack ``w_mean`` / ``w_std`` (then the caller estimates them)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        for name in ("stylegan2.safetensors", "checkpoint.safetensors"):
            if (path / name).is_file():
                return load_stylegan2_file(path / name, trust=trust, lr_mlp=lr_mlp)
        raise CheckpointError(f"{path} holds no stylegan2.safetensors or checkpoint.safetensors")
    if path.suffix == ".safetensors":
        tensors, meta = load_generator_file(path, kind="StyleGAN2",
                                            accepted=(GIS_FORMAT, GIS_TRAIN_FORMAT))
        if meta["format"] == GIS_TRAIN_FORMAT:  # the EMA generator; its w statistics were
            # never estimated in training: left out, so that the loader estimates them
            tensors = {k[4:]: v for k, v in tensors.items()
                       if k.startswith("ema.") and k[4:] not in ("w_mean", "w_std")}
        try:
            cfg = StyleGAN2Config.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: broken StyleGAN2 config ({exc})") from None
        return cfg, tensors, {"source_format": meta["format"], "path": str(path)}
    obj = load_trusted_pickle(path, trust=trust, what="StyleGAN2")
    cfg, state, info = convert_rosinality(obj, lr_mlp=lr_mlp)
    info["path"] = str(path)
    return cfg, state, info


def _need(state: dict, key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{SRC} checkpoint lacks {key!r}")
    v = state[key]
    if not isinstance(v, torch.Tensor):
        raise CheckpointError(f"{SRC} checkpoint: {key!r} is not a tensor")
    if shape is not None and tuple(v.shape) != shape:
        raise CheckpointError(f"{SRC} checkpoint: {key} has shape {tuple(v.shape)}, expected "
                              f"{shape}")
    return v.detach().float()


def _check_kernel(state: dict, key: str) -> None:
    if key in state:
        k = state[key].detach().float()
        if k.shape != (4, 4) or not torch.allclose(k, fir_kernel(gain=4.0), atol=1e-6):
            raise CheckpointError(f"{SRC} checkpoint: {key} is not the [1, 3, 3, 1] blur "
                                  "kernel gis implements")


def _styled(state: dict, src: str, dst: str, in_ch: int, out: dict, w_dim: int) -> int:
    w = _need(state, f"{src}.conv.weight")
    if w.ndim != 5 or w.shape[0] != 1 or w.shape[2] != in_ch or w.shape[3:] != (3, 3):
        raise CheckpointError(f"{SRC} checkpoint: {src}.conv.weight has shape "
                              f"{tuple(w.shape)}, expected (1, out, {in_ch}, 3, 3)")
    o = int(w.shape[1])
    out[f"{dst}.conv.weight"] = w[0]
    out[f"{dst}.conv.modulation.weight"] = _need(state, f"{src}.conv.modulation.weight",
                                                 (in_ch, w_dim))
    out[f"{dst}.conv.modulation.bias"] = _need(state, f"{src}.conv.modulation.bias", (in_ch,))
    out[f"{dst}.noise_strength"] = _need(state, f"{src}.noise.weight", (1,)).reshape(())
    out[f"{dst}.bias"] = _need(state, f"{src}.activate.bias", (o,))
    _check_kernel(state, f"{src}.conv.blur.kernel")
    return o


def _to_rgb(state: dict, src: str, dst: str, in_ch: int, out: dict, w_dim: int) -> int:
    w = _need(state, f"{src}.conv.weight")
    if w.ndim != 5 or w.shape[0] != 1 or w.shape[2] != in_ch or w.shape[3:] != (1, 1):
        raise CheckpointError(f"{SRC} checkpoint: {src}.conv.weight has shape "
                              f"{tuple(w.shape)}, expected (1, 3, {in_ch}, 1, 1)")
    n_img = int(w.shape[1])
    out[f"{dst}.conv.weight"] = w[0]
    out[f"{dst}.conv.modulation.weight"] = _need(state, f"{src}.conv.modulation.weight",
                                                 (in_ch, w_dim))
    out[f"{dst}.conv.modulation.bias"] = _need(state, f"{src}.conv.modulation.bias", (in_ch,))
    out[f"{dst}.bias"] = _need(state, f"{src}.bias", (1, n_img, 1, 1)).reshape(n_img)
    _check_kernel(state, f"{src}.upsample.kernel")
    return n_img


def convert_rosinality(obj: Any, *, lr_mlp: float = 0.01
                       ) -> tuple[StyleGAN2Config, dict[str, torch.Tensor], dict[str, Any]]:
    """rosinality ``{"g_ema": state_dict, ...}`` (or a bare generator state dict) -> gis."""
    which = None
    if isinstance(obj, dict) and not any(k.startswith("style.") for k in obj):
        which = next((k for k in ("g_ema", "g") if k in obj), None)
        if which is None:
            keys = sorted(map(str, obj))[:8]
            raise CheckpointError(f"not a {SRC} checkpoint: no 'g_ema' or 'g' (found {keys})")
        state = obj[which]
    else:
        state = obj
    if not isinstance(state, dict):
        raise CheckpointError(f"{SRC} checkpoint: {which or 'the file'} is not a state dict")
    state = strip_prefix(state)
    mlp = sorted(int(m.group(1)) for k in state if (m := re.match(r"style\.(\d+)\.weight$", k)))
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(f"{SRC} checkpoint: mapping layers style.1..n expected, found "
                              f"{mlp}")
    w_dim = int(_need(state, "style.1.weight").shape[1])
    out: dict[str, torch.Tensor] = {}
    for i in mlp:
        out[f"mapping.layers.{i - 1}.weight"] = _need(state, f"style.{i}.weight", (w_dim, w_dim))
        out[f"mapping.layers.{i - 1}.bias"] = _need(state, f"style.{i}.bias", (w_dim,))
    const = _need(state, "input.input")
    if const.ndim != 4 or const.shape[0] != 1 or const.shape[2:] != (4, 4):
        raise CheckpointError(f"{SRC} checkpoint: input.input has shape {tuple(const.shape)}")
    out["synthesis.const"] = const
    c = int(const.shape[1])
    channels = [_styled(state, "conv1", "synthesis.conv0", c, out, w_dim)]
    n_img = _to_rgb(state, "to_rgb1", "synthesis.rgb0", channels[0], out, w_dim)
    n_rgbs = len({int(m.group(1)) for k in state if (m := re.match(r"to_rgbs\.(\d+)\.", k))})
    for j in range(n_rgbs):
        o = _styled(state, f"convs.{2 * j}", f"synthesis.convs.{2 * j}", channels[-1], out,
                    w_dim)
        o2 = _styled(state, f"convs.{2 * j + 1}", f"synthesis.convs.{2 * j + 1}", o, out, w_dim)
        if o2 != o:
            raise CheckpointError(f"{SRC} checkpoint: convs.{2 * j + 1} changes the channels")
        channels.append(o)
        _to_rgb(state, f"to_rgbs.{j}", f"synthesis.rgbs.{j}", o, out, w_dim)
    cfg = StyleGAN2Config(resolution=4 * 2 ** n_rgbs, w_dim=w_dim, n_mlp=len(mlp),
                          lr_mlp=lr_mlp, channels=channels, image_channels=n_img)
    for i in range(cfg.num_noises):
        r = 2 ** ((i + 5) // 2)
        out[f"synthesis.noise_{i}"] = _need(state, f"noises.noise_{i}", (1, 1, r, r))
    return cfg, out, {"source_format": "rosinality", "network": which or "state_dict"}

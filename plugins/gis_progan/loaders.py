"""Reading ProGAN generators: gis's own files and two public checkpoint formats.

* gis (``.safetensors``): tensors + JSON meta ``{"format": "gis-progan", "config": {...}}``
  (the exported EMA generator), or a resumable training checkpoint
  (``"format": "gis-progan-train"``; its ``ema.*`` tensors are used). No pickle.
* pro_gan_pytorch (PyPI ``pro-gan-pth`` 3.x, ``depth_7_epoch_50.bin``): a pickled dict
  ``{"generator" | "shadow_generator" | "discriminator": {"conf": {depth, num_channels,
  latent_size, use_eql}, "state_dict": ...}}``. The EMA ``shadow_generator`` is preferred.
* pytorch_GAN_zoo PGAN (torch.hub ``PGAN``): a pickled dict ``{"config": BaseConfig or dict,
  "netG", "netD", "avgG"}``; the averaged ``avgG`` is preferred. Its equalised layers scale
  the *output* (weight and bias): ``(W x + b) * c``; gis scales the weight only, so biases are
  multiplied by ``c`` on import. Its 4x4 "format layer" is a dense layer whose bias is per
  output pixel, and it pixel-normalises after it (``norm_after_projection``). Its blending
  factor counts the other way round (``alpha_gis = 1 - alpha_zoo``).

The pickle-based formats are read only with ``trust=True``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from gis.errors import CheckpointError

from .common import config_get, load_generator_file, load_trusted_pickle, strip_prefix
from .model import ProGANConfig

GIS_FORMAT = "gis-progan"
GIS_TRAIN_FORMAT = "gis-progan-train"
#: G, D and EMA in float16 with the schedule state, no optimiser: ``train_progan(init_from=)``
GIS_WARMSTART_FORMAT = "gis-progan-warmstart"


def load_progan_file(path: str | Path, *, trust: bool = False
                     ) -> tuple[ProGANConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """(config, generator state dict in gis layout, provenance) from any supported file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        for name in ("progan.safetensors", "checkpoint.safetensors"):
            if (path / name).is_file():
                return load_progan_file(path / name, trust=trust)
        raise CheckpointError(f"{path} holds no progan.safetensors or checkpoint.safetensors")
    if path.suffix == ".safetensors":
        tensors, meta = load_generator_file(path, kind="ProGAN",
                                            accepted=(GIS_FORMAT, GIS_TRAIN_FORMAT,
                                                      GIS_WARMSTART_FORMAT))
        if meta["format"] in (GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT):
            tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        try:
            cfg = ProGANConfig.from_dict(meta["config"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: broken ProGAN config ({exc})") from None
        return cfg, tensors, {"source_format": meta["format"], "path": str(path)}
    obj = load_trusted_pickle(path, trust=trust, what="ProGAN")
    if isinstance(obj, dict) and ({"generator", "shadow_generator"} & set(obj)):
        cfg, state, info = convert_pro_gan_pytorch(obj)
    elif isinstance(obj, dict) and ({"netG", "avgG"} & set(obj)):
        cfg, state, info = convert_gan_zoo(obj)
    elif isinstance(obj, dict) and "discriminator" in obj:
        raise CheckpointError(f"{path} holds only a discriminator: no generator to load")
    else:
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a ProGAN checkpoint gis knows (pro_gan_pytorch or pytorch_GAN_zoo "
            f"PGAN); found {keys}"
        )
    info["path"] = str(path)
    return cfg, state, info


def _need(state: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{source} checkpoint lacks {key!r}")
    v = state[key]
    if not isinstance(v, torch.Tensor):
        raise CheckpointError(f"{source} checkpoint: {key!r} is not a tensor")
    return v.detach().float()


def _check(cond: bool, source: str, message: str) -> None:
    if not cond:
        raise CheckpointError(f"{source} checkpoint: {message}")


# ----------------------------------------------------------------------------- pro_gan_pytorch


def convert_pro_gan_pytorch(obj: dict) -> tuple[ProGANConfig, dict, dict]:
    """pro_gan_pytorch ``{"shadow_generator"|"generator": {"conf", "state_dict"}}`` -> gis."""
    src = "pro_gan_pytorch"
    which = "shadow_generator" if "shadow_generator" in obj else "generator"
    entry = obj[which]
    _check(isinstance(entry, dict) and "state_dict" in entry and "conf" in entry, src,
           f"{which!r} must hold 'conf' and 'state_dict'")
    conf = entry["conf"]
    state = strip_prefix(entry["state_dict"])
    depth = int(conf["depth"])
    latent = int(conf["latent_size"])
    n_img = int(conf.get("num_channels", 3))
    use_eql = bool(conf.get("use_eql", True))
    n_blocks = depth - 1
    _check(depth >= 2, src, f"depth {depth} < 2")
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    rgb_ids = {int(m.group(1)) for k in state if (m := re.match(r"rgb_converters\.(\d+)\.", k))}
    _check(layer_ids == set(range(n_blocks)), src,
           f"conf depth {depth} needs layers 0..{n_blocks - 1}, found {sorted(layer_ids)}")
    _check(rgb_ids == set(range(n_blocks)), src,
           f"conf depth {depth} needs rgb_converters 0..{n_blocks - 1}, found {sorted(rgb_ids)}")

    w0 = _need(state, "layers.0.conv_1.weight", src)
    _check(w0.ndim == 4 and w0.shape[0] == latent and w0.shape[2:] == (4, 4), src,
           f"layers.0.conv_1.weight has shape {tuple(w0.shape)}; conf latent_size {latent} "
           f"needs ({latent}, C, 4, 4)")
    channels = [int(w0.shape[1])]
    out: dict[str, torch.Tensor] = {}
    c0 = channels[0]
    out["blocks.0.project.weight"] = w0
    b0 = _need(state, "layers.0.conv_1.bias", src)
    out["blocks.0.project.bias"] = b0.view(c0, 1, 1).expand(c0, 4, 4).clone()
    out["blocks.0.conv.weight"] = _need(state, "layers.0.conv_2.weight", src)
    out["blocks.0.conv.bias"] = _need(state, "layers.0.conv_2.bias", src)
    for i in range(1, n_blocks):
        w1 = _need(state, f"layers.{i}.conv_1.weight", src)
        _check(w1.shape[1] == channels[-1], src,
               f"layers.{i}.conv_1.weight takes {w1.shape[1]} channels, the previous block "
               f"gives {channels[-1]}")
        channels.append(int(w1.shape[0]))
        for j in (1, 2):
            out[f"blocks.{i}.conv{j}.weight"] = _need(state, f"layers.{i}.conv_{j}.weight", src)
            out[f"blocks.{i}.conv{j}.bias"] = _need(state, f"layers.{i}.conv_{j}.bias", src)
    for i in range(n_blocks):
        w = _need(state, f"rgb_converters.{i}.weight", src)
        _check(w.shape[0] == n_img, src,
               f"rgb_converters.{i} outputs {w.shape[0]} channels, conf num_channels is {n_img}")
        out[f"to_rgb.{i}.weight"] = w
        out[f"to_rgb.{i}.bias"] = _need(state, f"rgb_converters.{i}.bias", src)
    cfg = ProGANConfig(latent_dim=latent, resolution=2 ** depth, channels=channels,
                       image_channels=n_img, equalized=use_eql, pixel_norm=True,
                       norm_after_projection=False, alpha=1.0)
    return cfg, out, {"source_format": "pro_gan_pytorch", "network": which}


# ----------------------------------------------------------------------------- pytorch_GAN_zoo


def _zoo_key_map(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept both ``X.module.weight`` (current) and ``X.weight`` (old checkpoints)."""
    state = strip_prefix(state)
    out = {}
    for k, v in state.items():
        if ".module." not in k:
            k = re.sub(r"\.(weight|bias)$", r".module.\1", k)
        out[k] = v
    return out


def convert_gan_zoo(obj: dict) -> tuple[ProGANConfig, dict, dict]:
    """pytorch_GAN_zoo PGAN ``{"config", "netG", "netD", "avgG"}`` -> gis."""
    src = "pytorch_GAN_zoo PGAN"
    which = "avgG" if "avgG" in obj else "netG"
    config = obj.get("config", {})
    state = _zoo_key_map(obj[which])
    equalized = bool(config_get(config, "equalizedlR", True))
    pixnorm = bool(config_get(config, "perChannelNormalization", True))
    leaky = float(config_get(config, "leakyReluLeak", 0.2))
    zoo_alpha = float(config_get(config, "alpha", 0.0) or 0.0)

    def scale_of(w: torch.Tensor) -> float:
        return math.sqrt(2.0 / math.prod(w.shape[1:])) if equalized else 1.0

    fw = _need(state, "formatLayer.module.weight", src)        # (16 * C0, L)
    fb = _need(state, "formatLayer.module.bias", src)
    latent = int(fw.shape[1])
    cfg_latent = config_get(config, "latentVectorDim")
    if cfg_latent is not None:
        _check(int(cfg_latent) == latent, src,
               f"config latentVectorDim {cfg_latent} but formatLayer takes {latent} inputs")
    _check(fw.shape[0] % 16 == 0, src, f"formatLayer has {fw.shape[0]} outputs, not 16 * C")
    c0 = fw.shape[0] // 16
    depth0 = config_get(config, "depthScale0")
    if depth0 is not None:
        _check(int(depth0) == c0, src, f"config depthScale0 {depth0} but formatLayer gives {c0}")
    out: dict[str, torch.Tensor] = {}
    # dense (16*C0, L), output j = c*16 + h*4 + w  ->  transposed-conv weight (L, C0, 4, 4)
    out["blocks.0.project.weight"] = fw.view(c0, 4, 4, latent).permute(3, 0, 1, 2).contiguous()
    out["blocks.0.project.bias"] = (fb * scale_of(fw)).view(c0, 4, 4)
    g0 = _need(state, "groupScale0.0.module.weight", src)
    _check(tuple(g0.shape) == (c0, c0, 3, 3), src,
           f"groupScale0.0 has shape {tuple(g0.shape)}, expected {(c0, c0, 3, 3)}")
    out["blocks.0.conv.weight"] = g0
    out["blocks.0.conv.bias"] = _need(state, "groupScale0.0.module.bias", src) * scale_of(g0)
    scale_ids = sorted({int(m.group(1)) for k in state
                        if (m := re.match(r"scaleLayers\.(\d+)\.", k))})
    _check(scale_ids == list(range(len(scale_ids))), src,
           f"scaleLayers indices {scale_ids} are not 0..n-1")
    channels = [c0]
    for i in scale_ids:
        for j in (0, 1):
            w = _need(state, f"scaleLayers.{i}.{j}.module.weight", src)
            b = _need(state, f"scaleLayers.{i}.{j}.module.bias", src)
            if j == 0:
                _check(w.shape[1] == channels[-1], src,
                       f"scaleLayers.{i}.0 takes {w.shape[1]} channels, the previous scale "
                       f"gives {channels[-1]}")
                channels.append(int(w.shape[0]))
            out[f"blocks.{i + 1}.conv{j + 1}.weight"] = w
            out[f"blocks.{i + 1}.conv{j + 1}.bias"] = b * scale_of(w)
    rgb_ids = sorted({int(m.group(1)) for k in state
                      if (m := re.match(r"toRGBLayers\.(\d+)\.", k))})
    _check(rgb_ids == list(range(len(channels))), src,
           f"{len(channels)} scales need toRGBLayers 0..{len(channels) - 1}, found {rgb_ids}")
    n_img = None
    for i in rgb_ids:
        w = _need(state, f"toRGBLayers.{i}.module.weight", src)
        n_img = int(w.shape[0]) if n_img is None else n_img
        out[f"to_rgb.{i}.weight"] = w
        out[f"to_rgb.{i}.bias"] = _need(state, f"toRGBLayers.{i}.module.bias", src) * scale_of(w)
    cfg = ProGANConfig(latent_dim=latent, resolution=4 * 2 ** (len(channels) - 1),
                       channels=channels, image_channels=int(n_img or 3), equalized=equalized,
                       pixel_norm=pixnorm, norm_after_projection=pixnorm, leaky=leaky,
                       alpha=1.0 - zoo_alpha if len(channels) > 1 else 1.0)
    return cfg, out, {"source_format": "pytorch_GAN_zoo", "network": which}

"""The ``stylegan2`` generator as a :class:`gis.interfaces.Generator`, and its latent spaces.

Latent spaces (``latent_spaces``; gis picks one with ``--latent-space``, through
:meth:`StyleGAN2.in_latent_space`, never by the generator's name):

* ``z`` (the default, the generator itself): z (n, w_dim) ~ N(0, I); the mapping network
  pixel-normalises z, so only its direction matters.
* ``w``: one w for every layer, in WHITENED coordinates w_hat = (w - mu_w) / sigma_w (n, w_dim),
  with mu_w / sigma_w the per-dimension mean and std of w = mapping(z) over 10,000 z drawn
  with seed 0 (stored with the weights; estimated at load time when a file lacks them).
  The engine renormalises every latent row to mean 0 / std 1 (inversion, shifting), so a
  row in whitened coordinates stays a typical w instead of being pulled far from the mapped
  distribution (raw w rows have mean ~ mu_w and a per-dimension scale of their own).
* ``wplus`` (alias ``w+``): one whitened w per synthesis layer, flattened: (n, num_ws * w_dim),
  row = [w_hat_0, ..., w_hat_{num_ws-1}]; the engine renormalises the whole row.

Noise inputs are the model's fixed buffers (``noise_i``, saved with the weights), so that
``synthesize`` is deterministic: the same latent always gives the same image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gis.errors import GisUsageError
from gis.interfaces import Generator, ModelCard

from .model import StyleGAN2Config, StyleGAN2Generator

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "fashion-colors.safetensors"
TRAIN_COMMAND = ("gis train generator stylegan2 --data fashion-colors --out runs/stylegan2 "
                 "--minutes 10 --device cuda --batch-size 64")
SPACE_ALIASES = {"w+": "wplus", "W": "w", "W+": "wplus", "Z": "z"}


class StyleGAN2(Generator):
    """A trained StyleGAN2 generator (EMA weights), unconditional, in latent space Z.

    ``synthesize(z)``: z (n, w_dim) -> images (n, 3, R, R), clamped to [-1, 1] (``clamp``;
    with ``clamp=False`` the raw output of the skip architecture), fixed noise: deterministic.
    ``in_latent_space("w" | "wplus")`` gives the W / W+ views (module docstring).
    """

    output_range = (-1.0, 1.0)
    num_classes = 0
    latent_spaces = ("z", "w", "wplus")

    def __init__(self, config: StyleGAN2Config, *, card: dict[str, Any] | None = None,
                 clamp: bool = True):
        super().__init__()
        self.config = config
        self.net = StyleGAN2Generator(config)
        self.latent_dim = config.w_dim
        self.resolution = config.resolution
        self.num_ws = config.num_ws
        self.clamp = clamp
        self.card = ModelCard.from_dict(card)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x.clamp(-1.0, 1.0) if self.clamp else x

    def synthesize(self, z: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise GisUsageError(f"stylegan2 (space z) expects latents of shape "
                                f"(n, {self.latent_dim}), got {tuple(z.shape)}")
        return self._out(self.net(z, noise_mode="const"))

    def synthesize_ws(self, ws: torch.Tensor) -> torch.Tensor:
        """Images from raw (not whitened) ws (n, num_ws, w_dim), fixed noise."""
        return self._out(self.net.synthesis(ws, noise_mode="const"))

    def whiten(self, w: torch.Tensor) -> torch.Tensor:
        """Raw w (..., w_dim) -> whitened (w - mu_w) / sigma_w."""
        return (w - self.net.w_mean) / self.net.w_std

    def unwhiten(self, w_hat: torch.Tensor) -> torch.Tensor:
        return w_hat * self.net.w_std + self.net.w_mean

    def in_latent_space(self, name: str | None) -> Generator:
        """``self`` for None / "z"; a :class:`LatentSpaceView` for "w" and "wplus" ("w+");
        one-line GisUsageError naming z, w, wplus for any other name."""
        key = SPACE_ALIASES.get(name, name) if name is not None else None
        if key is None or key == "z":
            return self
        if key in ("w", "wplus"):
            return LatentSpaceView(self, key)
        raise GisUsageError(f"stylegan2 offers the latent spaces z, w, wplus (w+); got {name!r}")

    def save(self, path: str | Path, *, dtype: torch.dtype | None = torch.float16,
             card: dict[str, Any] | None = None) -> Path:
        """Write the gis format: .safetensors (weights in ``dtype``; noise buffers and the w
        statistics in float32) with ``{"format": "gis-stylegan2", "config"}`` meta, and the
        JSON card beside it."""
        from gis.io import write_json
        from gis.training import save_checkpoint

        from .loaders import GIS_FORMAT

        card = {**self.card, **(card or {})}
        tensors = {}
        for k, v in self.net.state_dict().items():
            keep = k.startswith(("synthesis.noise_", "w_"))
            tensors[k] = v.detach().float() if keep or dtype is None else v.detach().to(dtype)
        out = Path(save_checkpoint(path, tensors, {"format": GIS_FORMAT,
                                                   "config": self.config.to_dict()}))
        write_json(out.with_suffix(".json"), dict(card))
        return out


def load_stylegan2(checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu",
                   trust: bool = False, clamp: bool = True, lr_mlp: float = 0.01) -> StyleGAN2:
    """The generator from ``checkpoint`` (gis .safetensors, a run folder, or a rosinality
    ``.pt`` with ``trust=True``; :mod:`gis_stylegan2.loaders`) or, when None, the shipped
    fashion-colors weights. A file without w statistics (rosinality's) gets them estimated
    from 10,000 mapped z (seed 0) at load. Eval mode, frozen."""
    from gis_progan.common import load_state_strict, missing_default, read_card

    from .loaders import load_stylegan2_file

    if checkpoint is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise missing_default("stylegan2", DEFAULT_WEIGHTS, TRAIN_COMMAND)
        checkpoint = DEFAULT_WEIGHTS
    cfg, state, info = load_stylegan2_file(checkpoint, trust=trust, lr_mlp=lr_mlp)
    src = Path(info.get("path", checkpoint))
    card = read_card(src) if src.suffix == ".safetensors" else {}
    card = {**card, "checkpoint": str(checkpoint), **info}
    model = StyleGAN2(cfg, card=card, clamp=clamp)
    estimate = "w_mean" not in state or "w_std" not in state
    if estimate:
        state = {**state, "w_mean": model.net.w_mean, "w_std": model.net.w_std}
    load_state_strict(model.net, state, f"StyleGAN2 checkpoint {checkpoint}")
    model.eval().requires_grad_(False)
    if estimate:
        model.net.estimate_w_stats()
    return model.to(device)


class LatentSpaceView(Generator):
    """``base`` working in latent space ``space`` ("w" or "wplus", whitened coordinates; see
    the module docstring). ``latent_dim`` is w_dim ("w") or num_ws * w_dim ("wplus");
    ``sample_latents`` draws z ~ N(0, I) and returns its whitened mapped w (repeated per
    layer for "wplus"); ``synthesize(x)`` un-whitens and runs the synthesis with the fixed
    noise (deterministic, differentiable in x). ``latent_prior`` is None: the whitened w is
    not N(0, I), so the "latent-prior" realism is not offered here."""

    output_range = (-1.0, 1.0)
    num_classes = 0
    latent_prior = None

    def __init__(self, base: StyleGAN2, space: str):
        super().__init__()
        self.base = base
        self.space = space
        self.latent_spaces = (space,)
        self.resolution = base.resolution
        w_dim, n = base.config.w_dim, base.num_ws
        self.latent_dim = w_dim if space == "w" else n * w_dim
        self.card = ModelCard.from_dict({**base.card, "latent_space": space})
        self.train(base.training)

    def in_latent_space(self, name: str | None) -> Generator:
        key = SPACE_ALIASES.get(name, name) if name is not None else None
        return self if key in (None, self.space) else self.base.in_latent_space(name)

    def encode_w(self, w: torch.Tensor) -> torch.Tensor:
        """Raw w (n, w_dim) -> this space's latent (n, latent_dim)."""
        w_hat = self.base.whiten(w)
        if self.space == "w":
            return w_hat
        return w_hat[:, None, :].expand(-1, self.base.num_ws, -1).reshape(w.shape[0], -1)

    def to_ws(self, x: torch.Tensor) -> torch.Tensor:
        """This space's latent (n, latent_dim) -> raw ws (n, num_ws, w_dim)."""
        if x.ndim != 2 or x.shape[1] != self.latent_dim:
            raise GisUsageError(f"stylegan2 (space {self.space}) expects latents of shape "
                                f"(n, {self.latent_dim}), got {tuple(x.shape)}")
        n, w_dim = x.shape[0], self.base.config.w_dim
        if self.space == "w":
            return self.base.net.broadcast(self.base.unwhiten(x))
        return self.base.unwhiten(x.view(n, self.base.num_ws, w_dim))

    def sample_latents(self, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
        device = device if device is not None else self.device
        z = torch.randn(n, self.base.latent_dim, generator=generator, device="cpu")
        with torch.no_grad():
            w = self.base.net.mapping(z.to(self.base.device))
        return self.encode_w(w).to(device)

    def synthesize(self, x: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.synthesize_ws(self.to_ws(x))

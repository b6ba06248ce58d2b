"""The ``progan`` generator as a :class:`gis.interfaces.Generator`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gis.errors import GisUsageError
from gis.interfaces import Generator, ModelCard

from .common import load_state_strict, missing_default, read_card, save_generator_file
from .loaders import GIS_FORMAT, load_progan_file
from .model import ProGANConfig, ProGANGenerator

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "fashion-colors.safetensors"
TRAIN_COMMAND = ("gis train generator progan --data fashion-colors --out runs/progan "
                 "--minutes 6 --device cuda")


class ProGAN(Generator):
    """A trained ProGAN generator (the EMA weights), unconditional.

    ``synthesize(z)`` returns (n, 3, resolution, resolution) clamped to ``output_range``
    (-1, 1): ProGAN has no output non-linearity, so its raw output can leave that range (as
    in the authors' code, the clamp is applied at synthesis). With ``clamp=False`` the raw,
    unbounded output is returned (gradients then flow for every pixel).
    """

    output_range = (-1.0, 1.0)
    num_classes = 0

    def __init__(self, config: ProGANConfig, *, card: dict[str, Any] | None = None,
                 clamp: bool = True):
        super().__init__()
        self.config = config
        self.net = ProGANGenerator(config)
        self.latent_dim = config.latent_dim
        self.resolution = config.resolution
        self.clamp = clamp
        self.card = ModelCard.from_dict(card)

    def synthesize(self, z: torch.Tensor, *, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise GisUsageError(
                f"progan expects latents of shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        x = self.net(z, alpha=self.config.alpha)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x.clamp(-1.0, 1.0) if self.clamp else x

    def save(self, path: str | Path, *, dtype: torch.dtype | None = torch.float16,
             card: dict[str, Any] | None = None) -> Path:
        """Write the gis format (.safetensors + JSON card beside it)."""
        card = {**self.card, **(card or {})}
        return save_generator_file(path, self.net.state_dict(),
                                   {"format": GIS_FORMAT, "config": self.config.to_dict()},
                                   dtype=dtype, card=card)


def load_progan(checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu",
                trust: bool = False, clamp: bool = True) -> ProGAN:
    """Build the generator from ``checkpoint`` (any supported format, see
    :mod:`gis_progan.loaders`) or, when None, from the shipped fashion-colors weights."""
    if checkpoint is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise missing_default("progan", DEFAULT_WEIGHTS, TRAIN_COMMAND)
        checkpoint = DEFAULT_WEIGHTS
    cfg, state, info = load_progan_file(checkpoint, trust=trust)
    src = Path(info.get("path", checkpoint))  # a run folder resolves to the file inside
    card = read_card(src) if src.suffix == ".safetensors" else {}
    card = {**card, "checkpoint": str(checkpoint), **info}
    model = ProGAN(cfg, card=card, clamp=clamp)
    load_state_strict(model.net, state, f"ProGAN checkpoint {checkpoint}")
    model.eval().requires_grad_(False)
    return model.to(device)

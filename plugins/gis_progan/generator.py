"""The ``progan`` generator as a :class:`gis.interfaces.Generator`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gis.errors import GisUsageError
from gis.interfaces import Generator, ModelCard

from .common import load_state_strict, missing_default, read_card, save_generator_file
from .critic import critic_path, load_critic, save_critic, training_critic
from .loaders import GIS_FORMAT, GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT, load_progan_file
from .model import ProGANConfig, ProGANDiscriminator, ProGANGenerator

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

    ``critic``: its critic (gis_progan.critic) when the weights ship one: the WGAN-GP critic
    trained with it, or a post-hoc logistic critic fitted to it (gis_progan.posthoc); then
    ``discriminate`` works and ``realism_kinds`` is ("critic", "latent-prior"), else
    ("latent-prior",) only. ``realism_floor("critic")`` is the floor calibrated on held-out
    real images that a post-hoc critic's file records (None for an uncalibrated critic).
    """

    output_range = (-1.0, 1.0)
    num_classes = 0

    def __init__(self, config: ProGANConfig, *, card: dict[str, Any] | None = None,
                 clamp: bool = True, critic: ProGANDiscriminator | None = None):
        super().__init__()
        self.config = config
        self.net = ProGANGenerator(config)
        self.critic = critic
        self.latent_dim = config.latent_dim
        self.resolution = config.resolution
        self.clamp = clamp
        self.card = ModelCard.from_dict(card)

    @property
    def realism_kinds(self) -> tuple[str, ...]:
        return (("critic",) if self.critic is not None else ()) + super().realism_kinds

    def discriminate(self, images: torch.Tensor, *,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's score D(x) (n,), higher = more like the training images, for images
        (n, 3, resolution, resolution) in [-1, 1]. A post-hoc critic (no minibatch std)
        scores each image on its own; a training critic with minibatch std reads groups of
        ``mbstd_group`` images: score n >= 4 at once."""
        if self.critic is None:
            return super().discriminate(images, labels=labels)
        r = self.resolution
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, r, r):
            raise GisUsageError(f"the progan critic reads (n, 3, {r}, {r}) images, got "
                                f"{tuple(images.shape)}")
        x = images[:, :1] if self.config.image_channels == 1 else images
        return self.critic(x, alpha=self.config.alpha)

    def realism(self, images: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                *, kind: str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """"critic": the critic's D(x) (B,): for a post-hoc logistic critic an estimate of
        log p_data(x) / p_G(x) in nats, for a WGAN-GP critic unbounded score units;
        "latent-prior": the base class's log-density of the latent's norm (gis.realism)."""
        from gis.realism import resolve_kind

        if resolve_kind(self, kind) == "critic":
            if images is None:
                raise GisUsageError("the progan critic realism reads images (B, 3, R, R)")
            return self.discriminate(images)
        return super().realism(images, latents, kind=kind, labels=labels)

    def realism_floor(self, kind: str) -> float | None:
        """"critic": the 5th percentile of the critic's scores on held-out real images (the
        ``calibration.floor`` of the critic file, gis_progan.posthoc), None when the critic
        has no calibration or there is no critic; any other kind: None."""
        if kind != "critic" or self.critic is None:
            return None
        floor = ((getattr(self.critic, "meta", None) or {}).get("calibration") or {}).get(
            "floor")
        return None if floor is None else float(floor)

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
        """Write the gis format (.safetensors + JSON card beside it) and, when the model has
        its critic, ``<stem>-critic.safetensors`` beside them."""
        card = {**self.card, **(card or {})}
        out = save_generator_file(path, self.net.state_dict(),
                                  {"format": GIS_FORMAT, "config": self.config.to_dict()},
                                  dtype=dtype, card=card)
        if self.critic is not None:
            save_critic(critic_path(out), self.critic, dtype=dtype)
        return out


def load_progan(checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu",
                trust: bool = False, clamp: bool = True, critic: bool = True) -> ProGAN:
    """Build the generator from ``checkpoint`` (any supported format, see
    :mod:`gis_progan.loaders`) or, when None, from the shipped fashion-colors weights.

    With ``critic`` (default) its critic comes too when there is one: ``<stem>-critic.safetensors``
    beside a gis generator file, or the ``d.*`` tensors of a training / warm-start file
    (gis_progan.critic). The pickle formats' discriminators are not read."""
    if checkpoint is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise missing_default("progan", DEFAULT_WEIGHTS, TRAIN_COMMAND)
        checkpoint = DEFAULT_WEIGHTS
    cfg, state, info = load_progan_file(checkpoint, trust=trust)
    src = Path(info.get("path", checkpoint))  # a run folder resolves to the file inside
    card = read_card(src) if src.suffix == ".safetensors" else {}
    card = {**card, "checkpoint": str(checkpoint), **info}
    d = None
    if critic and info.get("source_format") in (GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT):
        d = training_critic(src, cfg)
    elif critic and info.get("source_format") == GIS_FORMAT and critic_path(src).is_file():
        d = load_critic(critic_path(src), cfg)
    if d is not None:
        card["critic"] = {**(card.get("critic") or {}), "loaded_from": str(
            src if info["source_format"] != GIS_FORMAT else critic_path(src))}
    model = ProGAN(cfg, card=card, clamp=clamp, critic=d)
    load_state_strict(model.net, state, f"ProGAN checkpoint {checkpoint}")
    model.eval().requires_grad_(False)
    return model.to(device)

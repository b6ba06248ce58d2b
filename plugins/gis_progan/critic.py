"""The ProGAN critic D shipped beside the generator, so that gis can score realism.

A generator file ``X.safetensors`` may have its critic in ``X-critic.safetensors`` beside it
(``progan.safetensors`` -> ``progan-critic.safetensors`` in a run folder,
``fashion-colors.safetensors`` -> ``fashion-colors-critic.safetensors`` in ``weights/``):
tensors + JSON meta ``{"format": "gis-progan-critic", "config": {...}}`` (the generator's
config: the same blocks, resolution and fade-in), no pickle. The trainer writes it at every
export; ``export_critic(RUN)`` (``python -m gis_progan.critic RUN``) writes it for a run
exported before the trainer did, from the critic in the run's ``checkpoint.safetensors``.

The critic is the WGAN-GP discriminator as trained (raw weights, not averaged): its score
D(x) (unbounded, higher = more like the training images) is the "critic" realism of
``gis_progan.ProGAN``. Like in training it reads the batch's minibatch standard deviation
(groups of up to ``mbstd_group`` = 4 images; Karras et al. 2018, section 3), so score a batch
of at least 4 images: a lone image, or identical copies, lack the spread real batches had.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from gis.errors import CheckpointError

from .common import load_generator_file, load_state_strict, save_generator_file
from .loaders import GIS_FORMAT, GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT
from .model import ProGANConfig, ProGANDiscriminator

CRITIC_FORMAT = "gis-progan-critic"


def critic_path(generator_path: str | Path) -> Path:
    """Where the critic of generator file ``generator_path`` lives: ``<stem>-critic.safetensors``
    in the same folder."""
    p = Path(generator_path)
    return p.with_name(f"{p.stem}-critic.safetensors")


def frozen_critic(cfg: ProGANConfig, state: dict[str, torch.Tensor], source: str
                  ) -> ProGANDiscriminator:
    """A ProGANDiscriminator of ``cfg`` holding ``state`` (strict), eval mode, frozen."""
    critic = ProGANDiscriminator(cfg)
    load_state_strict(critic, state, source)
    return critic.eval().requires_grad_(False)


def save_critic(path: str | Path, critic: ProGANDiscriminator, *,
                dtype: torch.dtype | None = torch.float16) -> Path:
    """Write ``critic`` (its config included) to ``path`` in the gis critic format."""
    return save_generator_file(path, critic.state_dict(),
                               {"format": CRITIC_FORMAT, "config": critic.cfg.to_dict()},
                               dtype=dtype)


def load_critic(path: str | Path, cfg: ProGANConfig) -> ProGANDiscriminator:
    """The critic in ``path``, which must have been trained with the generator of ``cfg``."""
    tensors, meta = load_generator_file(path, kind="ProGAN critic", accepted=(CRITIC_FORMAT,))
    try:
        own = ProGANConfig.from_dict(meta["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: broken ProGAN critic config ({exc})") from None
    if own.to_dict() != cfg.to_dict():
        raise CheckpointError(f"{path}: this critic has another config than its generator "
                              f"(resolution {own.resolution}, channels {own.channels} vs "
                              f"{cfg.resolution}, {cfg.channels})")
    return frozen_critic(cfg, tensors, f"ProGAN critic {path}")


def training_critic(path: str | Path, cfg: ProGANConfig) -> ProGANDiscriminator:
    """The critic (``d.*``) of a training checkpoint or warm-start file, cut to the blocks of
    ``cfg`` (a run stopped early exports its first stages only)."""
    tensors, _ = load_generator_file(path, kind="ProGAN training",
                                     accepted=(GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT))
    state = {k[2:]: v for k, v in tensors.items()
             if k.startswith("d.") and int(k.split(".")[2]) < cfg.num_stages}
    if not state:
        raise CheckpointError(f"{path} holds no critic (d.*) tensors")
    return frozen_critic(cfg, state, f"ProGAN critic in {path}")


def export_critic(run: str | Path, *, dtype: torch.dtype | None = torch.float16) -> Path:
    """Write ``progan-critic.safetensors`` into training run folder ``run``: the critic of its
    ``checkpoint.safetensors`` at the stage of its exported ``progan.safetensors`` (both are
    written when a session ends). Returns the path written."""
    run = Path(run)
    gen_file = run / "progan.safetensors"
    _, meta = load_generator_file(gen_file, kind="ProGAN", accepted=(GIS_FORMAT,))
    critic = training_critic(run / "checkpoint.safetensors", ProGANConfig.from_dict(
        meta["config"]))
    return save_critic(critic_path(gen_file), critic, dtype=dtype)


if __name__ == "__main__":  # python -m gis_progan.critic RUN_FOLDER
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gis_progan.critic RUN_FOLDER")
    print(export_critic(sys.argv[1]))

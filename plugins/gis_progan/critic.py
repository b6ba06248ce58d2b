"""The ProGAN critic D shipped beside the generator, so that gis can score realism.

A generator file ``X.safetensors`` may have its critic in ``X-critic.safetensors`` beside it
(``progan.safetensors`` -> ``progan-critic.safetensors`` in a run folder,
``fashion-colors.safetensors`` -> ``fashion-colors-critic.safetensors`` in ``weights/``):
tensors + JSON meta, no pickle::

    {"format": "gis-progan-critic", "config": {...},   # the generator's config, see below
     "objective": "wgan-gp" | "logistic", "mbstd": bool,
     "fit": {...}, "calibration": {"floor": float, ...}}   # post-hoc critics only

Two kinds of critic:

* ``"wgan-gp"``: the critic as trained with the generator (raw weights, not averaged). The
  trainer writes it at every export; ``export_critic(RUN)`` (``python -m gis_progan.critic
  export RUN``) writes it for a run exported before the trainer did, from its checkpoint. Its
  score D(x) is unbounded and, like in training, reads the batch's minibatch standard
  deviation (groups of up to ``mbstd_group`` images): score batches of at least 4 images.
* ``"logistic"``: a post-hoc critic fitted to a frozen generator (:mod:`gis_progan.posthoc`,
  ``python -m gis_progan.critic fit GENERATOR``: the Discriminator Rejection Sampling recipe,
  Azadi et al., ICLR 2019). Its logit estimates log p_data(x) / p_G(x) and it is trained and
  used *without* minibatch standard deviation (``mbstd_group`` 0), so each image has its own
  score, alone or in any batch. Its meta holds how it was fitted and its ``calibration``
  (the floor ``ProGAN.realism_floor("critic")`` returns).

A critic's config must be its generator's (blocks, channels, resolution, fade-in), except
``mbstd_group``, which a critic may switch off: ``load_critic`` refuses any other difference.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from gis.errors import CheckpointError

from .common import load_generator_file, load_state_strict, save_generator_file
from .loaders import GIS_FORMAT, GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT
from .model import ProGANConfig, ProGANDiscriminator

CRITIC_FORMAT = "gis-progan-critic"
#: training objectives a critic file may name; "wgan-gp" when a file names none
OBJECTIVES = ("wgan-gp", "logistic")
#: the only config field in which a critic may differ from its generator
CRITIC_OWN_FIELDS = ("mbstd_group",)


def critic_path(generator_path: str | Path) -> Path:
    """Where the critic of generator file ``generator_path`` lives: ``<stem>-critic.safetensors``
    in the same folder."""
    p = Path(generator_path)
    return p.with_name(f"{p.stem}-critic.safetensors")


def frozen_critic(cfg: ProGANConfig, state: dict[str, torch.Tensor], source: str,
                  meta: dict[str, Any] | None = None) -> ProGANDiscriminator:
    """A ProGANDiscriminator of ``cfg`` holding ``state`` (strict), eval mode, frozen; its
    ``meta`` attribute holds the file's meta besides format and config (``objective``,
    ``mbstd``, ``fit``, ``calibration``)."""
    critic = ProGANDiscriminator(cfg)
    load_state_strict(critic, state, source)
    critic.meta = {"objective": "wgan-gp", **{k: v for k, v in (meta or {}).items()
                                              if k not in ("format", "config")}}
    return critic.eval().requires_grad_(False)


def save_critic(path: str | Path, critic: ProGANDiscriminator, *,
                dtype: torch.dtype | None = torch.float16,
                meta: dict[str, Any] | None = None) -> Path:
    """Write ``critic`` (its config included) to ``path`` in the gis critic format, with the
    critic's ``meta`` attribute (if any) and ``meta`` (objective "wgan-gp" unless named)."""
    extra = {**(getattr(critic, "meta", None) or {}), **(meta or {})}
    objective = extra.pop("objective", "wgan-gp")
    if objective not in OBJECTIVES:
        raise CheckpointError(f"unknown critic objective {objective!r}; one of "
                              f"{', '.join(OBJECTIVES)}")
    extra.pop("mbstd", None)
    head = {"format": CRITIC_FORMAT, "config": critic.cfg.to_dict(), "objective": objective,
            "mbstd": critic.cfg.mbstd_group > 0, **extra}
    return save_generator_file(path, critic.state_dict(), head, dtype=dtype)


def config_difference(critic: ProGANConfig, generator: ProGANConfig) -> list[str]:
    """The config fields in which ``critic`` differs from ``generator`` beyond the ones a
    critic may set itself (``CRITIC_OWN_FIELDS``: minibatch std)."""
    a, b = critic.to_dict(), generator.to_dict()
    return [k for k in a if k not in CRITIC_OWN_FIELDS and a[k] != b.get(k)]


def load_critic(path: str | Path, cfg: ProGANConfig) -> ProGANDiscriminator:
    """The critic in ``path``, which must have been trained for the generator of ``cfg``: the
    same config except ``mbstd_group`` (a post-hoc critic switches minibatch std off).
    Raises a one-line CheckpointError naming the fields that differ."""
    tensors, meta = load_generator_file(path, kind="ProGAN critic", accepted=(CRITIC_FORMAT,))
    try:
        own = ProGANConfig.from_dict(meta["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: broken ProGAN critic config ({exc})") from None
    diff = config_difference(own, cfg)
    if diff:
        a, b = own.to_dict(), cfg.to_dict()
        shown = "; ".join(f"{k} {a[k]} vs {b[k]}" for k in diff)
        raise CheckpointError(f"{path}: this critic has another config than its generator "
                              f"({shown}); only mbstd_group may differ: fit one for this "
                              "generator with `python -m gis_progan.critic fit GENERATOR`")
    if meta.get("objective", "wgan-gp") not in OBJECTIVES:
        raise CheckpointError(f"{path}: unknown critic objective {meta['objective']!r}")
    return frozen_critic(own, tensors, f"ProGAN critic {path}", meta)


def training_critic(path: str | Path, cfg: ProGANConfig) -> ProGANDiscriminator:
    """The critic (``d.*``) of a training checkpoint or warm-start file, cut to the blocks of
    ``cfg`` (a run stopped early exports its first stages only)."""
    tensors, _ = load_generator_file(path, kind="ProGAN training",
                                     accepted=(GIS_TRAIN_FORMAT, GIS_WARMSTART_FORMAT))
    state = {k[2:]: v for k, v in tensors.items()
             if k.startswith("d.") and int(k.split(".")[2]) < cfg.num_stages}
    if not state:
        raise CheckpointError(f"{path} holds no critic (d.*) tensors")
    return frozen_critic(cfg, state, f"ProGAN critic in {path}", {"objective": "wgan-gp"})


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


USAGE = ("usage: python -m gis_progan.critic fit GENERATOR.safetensors [options] "
         "(--help lists them) | python -m gis_progan.critic export RUN_FOLDER")


def main(argv: list[str] | None = None) -> int:
    """``fit GENERATOR [options]`` (gis_progan.posthoc) or ``export RUN_FOLDER``."""
    from gis.errors import GisError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("fit", "export"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if args[0] == "export":
            if len(args) != 2:
                print(USAGE, file=sys.stderr)
                return 2
            print(export_critic(args[1]))
            return 0
        import shlex

        from gis.training import command_line

        from .posthoc import fit_command

        command = (command_line() if argv is None
                   else f"python -m gis_progan.critic {shlex.join(args)}")
        return fit_command(args[1:], command=command)
    except GisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

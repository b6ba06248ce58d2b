"""Built-in gis plugin: the ``progan`` generator (Progressive GAN, Karras et al. 2018).

The generator the GIS paper found best for fashion items. Ships a 32x32 model trained on the
embedded ``fashion-colors`` dataset (``weights/fashion-colors.safetensors``); reads
pro_gan_pytorch and pytorch_GAN_zoo PGAN checkpoints (pickle-based: ``trust=True``).

Train: ``gis train generator progan --data fashion-colors --out DIR --minutes M
[--device cuda]`` (``gis_progan.train.ProGANTrainer`` in gis's training skeleton).
Critic (the "critic" realism and its calibrated floor): ``python -m gis_progan.critic fit
GENERATOR.safetensors`` fits a post-hoc critic to a frozen generator (``gis_progan.posthoc``);
the shipped weights ship one (``weights/fashion-colors-critic.safetensors``), loaded only with
``--generator-option critic=true``: on the shipped generator (FID 99.7) it rejects 99 % of the
generator's samples and ranks speckled samples above clean ones (ROC AUC 0.335 against the
fashion-colors realism truth; docs/MODELS.md), so it would mislead both the realism term and
the realism check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gis.hookspecs import hookimpl


def _factory(*, checkpoint: str | Path | None = None, device: str = "cpu", trust: bool = False,
             clamp: bool = True, critic: bool = False, **options: Any):
    """Options: ``clamp`` (true: outputs clamped to [-1, 1]) and ``critic`` (true: load the
    critic when the weights ship one; off by default, see the module docstring); both true or
    false: gis checks the annotations
    before the factory runs (``clamp=no`` or ``clamp=null`` is a one-line error)."""
    from gis.errors import GisUsageError

    from .generator import load_progan

    if options:
        raise GisUsageError(f"progan: unknown options {sorted(options)} (known: clamp, critic)")
    return load_progan(checkpoint, device=device, trust=trust, clamp=clamp, critic=critic)


@hookimpl
def register_generators(register):
    from .train import ProGANTrainer

    register(
        "progan",
        _factory,
        description="Progressive GAN (equalised lr, pixel norm, WGAN-GP, EMA); 32x32 "
                    "fashion-colors default; loads pro_gan_pytorch / GAN-zoo PGAN files",
        trainer=ProGANTrainer,
    )

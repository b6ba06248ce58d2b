"""Built-in gis plugin: the ``dvbpr-gan`` generator (Kang et al. 2017's conditional LSGAN).

The generator of the DVBPR "personalized design" baseline that GIS is compared with:
G(z, category) and its discriminator D(x, category) (``generator.discriminate``), both
needed by the baseline's objective. Ships a 32x32 model trained on ``fashion-colors``
(``weights/fashion-colors.safetensors``, G and D).

Train: ``gis train generator dvbpr-gan --data fashion-colors --out DIR --minutes M
[--device cuda --batch-size 64]`` (``gis_dvbpr_gan.train.DVBPRGANTrainer`` in gis's training
skeleton).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gis.hookspecs import hookimpl


def _factory(*, checkpoint: str | Path | None = None, device: str = "cpu", trust: bool = False,
             **options: Any):
    from gis.errors import GisUsageError

    from .generator import load_dvbpr_gan

    if options:
        raise GisUsageError(f"dvbpr-gan: unknown options {sorted(options)}")
    return load_dvbpr_gan(checkpoint, device=device)  # safetensors only: trust not needed


@hookimpl
def register_generators(register):
    from .train import DVBPRGANTrainer

    register(
        "dvbpr-gan",
        _factory,
        description="Kang et al. 2017 class-conditional LSGAN (G and D) for the DVBPR "
                    "design baseline; 32x32 fashion-colors default",
        trainer=DVBPRGANTrainer,
    )

"""Built-in gis plugin: the ``dvbpr-gan`` generator (Kang et al. 2017's conditional LSGAN).

The generator of the DVBPR "personalized design" baseline that GIS is compared with:
G(z, category) and its discriminator D(x, category) (``generator.discriminate``), both
needed by the baseline's objective. Ships a 32x32 model trained on ``fashion-colors``
(``weights/fashion-colors.safetensors``, G and D).

Train: ``gis train generator dvbpr-gan --data fashion-colors --out DIR --minutes M`` or
``PYTHONPATH=.:plugins python -m gis_dvbpr_gan.train --data fashion-colors --out DIR
--minutes M --device cuda --batch-size 64``.
"""

from __future__ import annotations

from gis.hookspecs import hookimpl


def _factory(*, checkpoint=None, device="cpu", trust=False, **options):
    from gis.errors import GisUsageError

    from .generator import load_dvbpr_gan

    if options:
        raise GisUsageError(f"dvbpr-gan: unknown options {sorted(options)}")
    return load_dvbpr_gan(checkpoint, device=device)  # safetensors only: trust not needed


def _trainer(dataset, *, out, seed=0, device="cpu", resume=False, **options):
    from .train import train_dvbpr_gan

    return train_dvbpr_gan(dataset, out=out, seed=seed, device=device, resume=resume, **options)


@hookimpl
def register_generators(register):
    register(
        "dvbpr-gan",
        _factory,
        description="Kang et al. 2017 class-conditional LSGAN (G and D) for the DVBPR "
                    "design baseline; 32x32 fashion-colors default",
        trainer=_trainer,
    )

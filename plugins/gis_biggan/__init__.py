"""Built-in gis plugin: the ``biggan`` generator (BigGAN, Brock et al. 2019).

Class-conditional: a shared class embedding, hierarchical latents, conditional BatchNorm,
residual blocks, self-attention, spectral norm in G and D, a projection discriminator, hinge
loss, orthogonal regularisation and a weight average of G with standing statistics
(:mod:`gis_biggan.model`, :mod:`gis_biggan.train`). No trained fashion-colors model ships
yet (``weights/fashion-colors.safetensors``, once trained: docs/MODELS.md); ``--category`` picks
the class, as for dvbpr-gan. Reads ``pytorch-pretrained-biggan`` models (BigGAN-deep;
:mod:`gis_biggan.pretrained`).

Factory options (``--generator-option KEY=VALUE``):

* ``shift_embedding`` (false): true makes the latent concat(z, u) so that inversion and
  shifting move the class embedding too (:class:`gis_biggan.generator.BigGAN`);
* ``embedding_scale`` (0.5): how far a unit of u moves the embedding, in units of the spread
  of each embedding coordinate over the classes;
* ``critic`` (false): offer D's raw score as the "critic" realism (uncalibrated);
* ``truncation`` (1.0): pytorch-pretrained-biggan weights only: which of their stored
  BatchNorm statistics to use (0 < truncation <= 1).

Train: ``gis train generator biggan --data fashion-colors --out DIR --minutes M
[--device cuda --batch-size 128]`` (:class:`gis_biggan.train.BigGANTrainer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gis.hookspecs import hookimpl


def _factory(*, checkpoint: str | Path | None = None, device: str = "cpu", trust: bool = False,
             shift_embedding: bool = False, embedding_scale: float = 0.5, critic: bool = False,
             truncation: float = 1.0, **options: Any):
    """Options: see the module docstring; gis checks their types before the factory runs."""
    from gis.errors import GisUsageError

    from .generator import load_biggan

    if options:
        raise GisUsageError(f"biggan: unknown options {sorted(options)} (known: "
                            "shift_embedding, embedding_scale, critic, truncation)")
    if not embedding_scale > 0:
        raise GisUsageError(f"biggan embedding_scale must be > 0, got {embedding_scale}")
    if not 0 < truncation <= 1:
        raise GisUsageError(f"biggan truncation must lie in (0, 1], got {truncation}")
    return load_biggan(checkpoint, device=device, trust=trust, shift_embedding=shift_embedding,
                       embedding_scale=embedding_scale, critic=critic, truncation=truncation)


@hookimpl
def register_generators(register):
    from .train import BigGANTrainer

    register(
        "biggan",
        _factory,
        description="BigGAN (shared embedding, hierarchical z, self-attention, SN, projection "
                    "D, hinge, orthogonal reg., EMA); no default weights yet "
                    "(--generator-checkpoint); loads pytorch-pretrained-biggan models",
        trainer=BigGANTrainer,
    )

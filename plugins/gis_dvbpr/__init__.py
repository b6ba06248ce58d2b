"""Built-in gis plugin: the DVBPR visual recommender (Kang et al. 2017).

Registers recommender ``dvbpr``: x(u, X) = theta_u . phi(X), phi a CNN trained end to end with
BPR. The factory loads the shipped default for the embedded ``fashion-colors`` data, a gis
``.safetensors`` checkpoint, or (with ``trust=True``) an AIP-style PyTorch ``.tar``; the trainer
(``gis_dvbpr.trainer.DVBPRTrainer``) makes ``gis train recommender dvbpr`` work. Torch-heavy
modules are imported when the registry is first used, not when gis starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from gis.hookspecs import hookimpl

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "fashion-colors.safetensors"
TRAIN_COMMAND = "gis train recommender dvbpr --data fashion-colors --out runs/dvbpr"
#: the robust DVBPR (noise augmentation + image-space adversarial training; docs/MODELS.md)
ROBUST_CHECKPOINT = WEIGHTS_DIR / "fashion-colors-robust.safetensors"
ROBUST_TRAIN_COMMAND = ("gis train recommender dvbpr --data fashion-colors --out "
                        "runs/dvbpr-robust --epochs 15 --adv-eps 0.0157 --noise-std 0.1")


def create(*, checkpoint: str | Path | None = None, device: str = "cpu", trust: bool = False,
           layout: Literal["32", "128", "224"] | None = None, user_ids: list[str] | None = None,
           pretrained: bool = True, k: int = 100, width: float = 1.0, seed: int = 0,
           **options: Any):
    """Build the ``dvbpr`` recommender (eval mode, parameters frozen).

    ``checkpoint``: a gis ``.safetensors`` file or an AIP-style ``.tar`` (needs ``trust``);
    None loads the shipped fashion-colors weights. ``layout`` ("32", "128", "224") checks or,
    for AIP files, forces the architecture. ``user_ids`` renames the users (AIP files number
    them 0..U-1). ``pretrained=False`` builds a randomly initialised model (``layout``,
    ``user_ids``, ``k``, ``width``, ``seed``) for tests.
    """
    import torch

    from gis.errors import GisUsageError, MissingAssetError

    from .checkpoint import load_dvbpr
    from .model import DVBPR, get_layout

    default, command = options.pop("_default", (DEFAULT_CHECKPOINT, TRAIN_COMMAND))
    if options:
        raise GisUsageError(f"unknown dvbpr option(s): {', '.join(sorted(options))}")
    if k < 1 or not width > 0:  # the types are checked by gis before the factory runs
        raise GisUsageError(f"dvbpr needs k >= 1 and width > 0, got k={k} and width={width}")
    if not pretrained:
        ids = [str(u) for u in (user_ids if user_ids is not None else range(10))]
        model = DVBPR(get_layout(layout or "32", width=width), ids, k=k,
                      card={"source": "random initialisation", "seed": seed})
        model.reset_parameters(torch.Generator().manual_seed(seed))
    else:
        if checkpoint is None:
            checkpoint = default
            if not checkpoint.is_file():
                raise MissingAssetError(
                    f"the default weights for fashion-colors are not installed ({checkpoint}"
                    f"); train them with `{command}` (about 25 min on 2 CPU cores, 3x that "
                    f"for the robust model) and copy the run's fashion-colors.safetensors and "
                    f".json to {checkpoint.with_suffix('')}.*, or pass a checkpoint")
        model = load_dvbpr(checkpoint, trust=trust, layout=layout, user_ids=user_ids)
    model.eval().requires_grad_(False)
    return model.to(device)


def create_robust(*, checkpoint: str | Path | None = None, device: str = "cpu",
                  trust: bool = False, **options: Any):
    """Build the ``dvbpr-robust`` recommender: the DVBPR architecture trained with Gaussian
    pixel-noise augmentation and FGSM-RS adversarial training (``gis_dvbpr.robust``), so
    that imperceptible changes and speckle move its scores less. Arguments as ``create``."""
    return create(checkpoint=checkpoint, device=device, trust=trust,
                  _default=(ROBUST_CHECKPOINT, ROBUST_TRAIN_COMMAND), **options)


create_robust.__wrapped__ = create  # its options are create's: gis checks them the same way


@hookimpl
def register_recommenders(register):
    from .trainer import DVBPRTrainer

    register("dvbpr", create,
             description="DVBPR (Kang et al. 2017): CNN image embedding + user vectors, BPR; "
                         "layouts 32/128/224, AIP .tar checkpoints with --trust",
             trainer=DVBPRTrainer)
    register("dvbpr-robust", create_robust,
             description="DVBPR trained against imperceptible perturbations and pixel noise "
                         "(FGSM-RS adversarial training + noise augmentation)")

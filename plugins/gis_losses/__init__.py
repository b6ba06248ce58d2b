"""Built-in gis plugin: the loss terms of the paper's inversion and shifting objectives.

Each registered name builds a ``gis.interfaces.LossTerm`` that the engine calls with a
``LossContext`` at every step (docs/ENGINE.md, "Loss terms"); a run selects terms by name and
weight (``--loss NAME=WEIGHT``, ``losses={name: weight}``; docs/METHOD.md has the method):

- inversion: ``lpips`` (options ``net="alex"|"vgg"``, ``resolution``) and ``mse``, G(z) to the
  item;
- shifting: ``preference`` (raised), ``shift_ce`` and ``shift_mae`` (the shift predictor's
  terms), ``identity`` (LPIPS of each variant to the base image; option ``net``) and
  ``silhouette`` (1 - soft IoU of foreground masks with the base image; option ``threshold``)
  and ``distinct`` (hinge on the variants' pairwise LPIPS; options ``net``, ``threshold``)
  and ``chroma_tv`` (colour speckle a variant adds to the base image; options ``margin``,
  ``eps``);
- either: ``realism`` (raised: the generator's own realism score, ``Generator.realism``;
  options ``kind="critic"|"latent-prior"``, ``if_offered``).

Importing this module is cheap: the terms live in ``gis_losses.losses`` and are imported (and
LPIPS weights loaded) only when a factory is called.
"""

from __future__ import annotations

from gis.hookspecs import hookimpl


class _Term:
    """The factory of one term class of ``gis_losses.losses``, imported when first called.
    Its signature is the class's (read lazily), so gis refuses an option the term does not
    take, or a value that does not fit, in one line before building it."""

    def __init__(self, class_name: str):
        self.class_name = class_name
        self.__name__ = f"build_{class_name}"

    def _cls(self):
        from . import losses

        return getattr(losses, self.class_name)

    def __call__(self, **options):
        return self._cls()(**options)

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(self._cls(), eval_str=True)


def _term(class_name: str) -> _Term:
    return _Term(class_name)


@hookimpl
def register_losses(register):
    register("lpips", _term("LPIPSLoss"),
             description="inversion: LPIPS v0.1 of G(z) to the item (net='alex'|'vgg', "
                         "resolution)")
    register("mse", _term("MSELoss"), description="inversion: mean squared error of G(z) to "
                                                  "the item")
    register("preference", _term("PreferenceLoss"),
             description="shifting: the target users' aggregated preference (raised)")
    register("shift_ce", _term("ShiftCELoss"),
             description="shifting: the shift predictor's cross-entropy (keeps variants "
                         "distinct)")
    register("shift_mae", _term("ShiftMAELoss"),
             description="shifting: the shift predictor's mean absolute shift error")
    register("identity", _term("IdentityLoss"),
             description="shifting: LPIPS of each variant to the base image (keeps them "
                         "close)")
    register("silhouette", _term("SilhouetteLoss"),
             description="shifting: 1 - soft IoU of each variant's foreground mask with the "
                         "base image's (keeps the item's shape; threshold)")
    register("distinct", _term("DistinctLoss"),
             description="shifting: hinge on the pairwise LPIPS of the variants below "
                         "threshold (default 0.02; keeps them visibly different)")
    register("chroma_tv", _term("ChromaSmoothnessLoss"),
             description="shifting: colour speckle a variant adds to the base image (relative "
                         "chroma total variation over the base's; margin, eps)")
    register("realism", _term("RealismLoss"),
             description="either: the generator's own realism score, raised (its critic or "
                         "latent prior; kind='critic'|'latent-prior')")

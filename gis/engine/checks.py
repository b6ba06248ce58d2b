"""Which variants a seller can act on: the realism, identity, category and distinctness checks.

After shifting, every variant is checked; the recommendation is the best-scoring variant that
passes all checks, and the others are marked with the reason (docs/ENGINE.md, "Checks").

* **realism**: the generator's own calibrated realism score (``Generator.realism`` of the
  first kind it offers, against ``Generator.realism_floor(kind)``, e.g. the 5th percentile of
  held-out real images' scores) must be at or above the floor. A generator without a
  calibrated score leaves the check not run (``passed`` None), and the summary says so.
* **identity** (still the seller's item): the soft IoU of the variant's silhouette with the
  real item's (the base image's without one; ``gis.metrics.silhouette.soft_iou``) must be at
  least ``min_silhouette_iou``; and the variant must differ from the item by at least
  ``min_distance`` LPIPS (else it is no visible change).
* **category** (still the same kind of product): the variant's category by a k-NN vote of
  silhouettes among the catalogue's products (``gis.metrics.category.CategoryReference``:
  the catalogue's own category records, not the evaluation's classifier) must be the item's
  (the base image's without one), or the class a conditional generator was asked for. Not
  run when no catalogue is given.
* **distinct**: among the variants that pass the checks above, one closer than
  ``min_distance`` (LPIPS, the distances' trunk) to a better-scoring one is a near-copy of it:
  only the better one can be recommended.

The checks read pixels, the generator's own score, the distances and the catalogue's records
only: the dataset's hidden truth and the evaluation's domain classifier are never used here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import GisUsageError
from ..interfaces import Generator
from ..metrics.category import CategoryReference
from ..record import CLASS_ASKED_FOR
from .settings import _is_real


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the variants' checks (docs/ENGINE.md, "Checks", says how each was set).

    ``min_silhouette_iou`` in [0, 1]: 0.6 is the first quartile of the silhouette IoU of two
    different products of the same category in fashion-colors, and the third quartile of two
    products of different categories. ``min_distance`` (LPIPS AlexNet): 0.02, above a
    one-pixel shift of a real item (95th percentile 0.021) and near the median distance from a
    catalogue product to its most similar other product of its category (0.018); a
    recolouring is about 0.19. ``realism``: False skips the realism check; ``category``:
    False skips the category check.
    """

    min_silhouette_iou: float = 0.6
    min_distance: float = 0.02
    realism: bool = True
    category: bool = True

    def validate(self) -> None:
        if not (_is_real(self.min_silhouette_iou) and 0 <= self.min_silhouette_iou <= 1):
            raise GisUsageError(f"min_silhouette_iou (--min-silhouette-iou) is a share in "
                                f"[0, 1], got "
                                f"{self.min_silhouette_iou}")
        if not (_is_real(self.min_distance) and 0 <= self.min_distance < float("inf")):
            raise GisUsageError(f"min_distance (--min-distance) is a finite LPIPS distance "
                                f">= 0, got {self.min_distance!r}")


def _realism(generator: Generator, images01: torch.Tensor, latents: torch.Tensor,
             labels: torch.Tensor | None) -> dict:
    kinds = tuple(getattr(generator, "realism_kinds", ()) or ())
    calibrated = [k for k in kinds if generator.realism_floor(k) is not None]
    if not calibrated:
        return {"kind": None, "floor": None, "scores": None, "passed": None,
                "note": "not run: the generator offers no calibrated realism score"}
    kind = calibrated[0]
    floor = float(generator.realism_floor(kind))
    lo, hi = generator.output_range
    dev = generator.device
    x = images01.to(dev) * (hi - lo) + lo
    lab = None if labels is None else labels.to(dev).expand(len(x))
    with torch.no_grad():
        s = generator.realism(images=x, latents=latents.to(dev), kind=kind, labels=lab)
    scores = [float(v) for v in s.float().cpu()]
    return {"kind": kind, "floor": floor, "scores": scores,
            "passed": [v >= floor for v in scores], "note": None}


def _category(reference: CategoryReference | None, images01: torch.Tensor,
              against01: torch.Tensor, of: str, settings: CheckSettings,
              expected: str | None = None) -> dict:
    """The category check's record: the category the variants must keep (``expected``, the
    class a conditional generator was asked for, else the voted category of the item or
    base), each variant's voted category, and whether they agree (all None with a ``note``
    when not run)."""
    off = {"metric": None, "of": None, "reference": None, "values": None, "shares": None,
           "passed": None}
    if not settings.category:
        return {**off, "note": "not run: switched off"}
    if reference is None:
        return {**off, "note": "not run: no catalogue with categories was given"}
    names = reference.names
    if expected is not None and expected not in names:
        return {**off, "note": f"not run: the class asked for, {expected!r}, is not one of "
                               f"the catalogue's categories ({', '.join(names)})"}
    x = images01.float().cpu() if expected is not None else torch.cat(
        [against01.float().cpu(), images01.float().cpu()])
    cats, shares = reference.votes(x)
    if expected is not None:
        ref, of = names.index(expected), CLASS_ASKED_FOR
    else:
        ref, cats, shares = cats[0], cats[1:], shares[1:]
    return {"metric": f"k-NN vote (k = {reference.k}) of silhouettes among "
                      f"{len(reference.features)} catalogue products",
            "of": of,
            "reference": names[ref],
            "values": [names[c] for c in cats],
            "shares": [float(shares[i, ref]) for i in range(len(images01))],
            "passed": [c == ref for c in cats], "note": None}


def _reference_phrase(category: dict) -> str:
    """The category the variants must keep, in words: "the item's 'Coat'", "the class asked
    for is 'Bag'" (a category check's record that ran)."""
    whose = ("the class asked for is" if category["of"] == CLASS_ASKED_FOR
             else f"the {category['of']}'s")
    return f"{whose} {category['reference']!r}"


def _base_fidelity(base01: torch.Tensor, item01: torch.Tensor | None, category: dict,
                   reference: CategoryReference | None, settings: CheckSettings) -> dict | None:
    """Whether the base image G(z*) (the inversion's closest image to the item, where every
    variant starts) is still the item, by the identity and category checks' own measures:
    its silhouette IoU with the item and its voted category against the variants' reference
    category. None without an item (the base is then the reference itself)."""
    from ..metrics.silhouette import soft_iou

    if item01 is None:
        return None
    with torch.no_grad():
        iou = float(soft_iou(base01.float().cpu(), item01.float().cpu())[0])
    reasons = []
    if iou < settings.min_silhouette_iou:
        reasons.append(f"its silhouette IoU with the item is {iou:.2f} < "
                       f"{settings.min_silhouette_iou:.2f}")
    voted = None
    if category.get("passed") is not None and reference is not None:
        cats, _ = reference.votes(base01.float().cpu())
        voted = reference.names[int(cats[0])]
        if voted != category["reference"]:
            reasons.append(f"its shape votes {voted!r}, {_reference_phrase(category)}")
    return {"silhouette_iou": iou, "category": voted, "faithful": not reasons,
            "reasons": reasons}


def check_variants(generator: Generator, images01: torch.Tensor, base01: torch.Tensor,
                   latents: torch.Tensor, scores: list[float], pairwise: list[list[float]] | None,
                   *, labels: torch.Tensor | None = None, item01: torch.Tensor | None = None,
                   to_reference: list[float] | None = None,
                   settings: CheckSettings | None = None,
                   category_reference: CategoryReference | None = None,
                   expected_category: str | None = None) -> dict:
    """The checks of n variants and the recommendation (see the module docstring).

    images01 (n, 3, R, R) and base01 (1, 3, R, R) in [0, 1]; latents (n, d) the variants'
    latents; scores (n,) the optimised aggregation's score of each variant (higher =
    preferred); pairwise (n, n) their LPIPS distances (None: the distinctness check is not
    run); item01 (1, 3, R, R) the real item, the identity check's reference when given (else
    the base); to_reference (n,) each variant's LPIPS to the item (else the base): a variant
    closer than ``min_distance`` is no visible change; category_reference the catalogue's
    silhouettes and categories (None: the category check is not run); expected_category the
    class a conditional generator was asked for (e.g. ``--category``): the variants must vote
    for it (None: for the item's, else the base's, voted category). Returns a dict
    (``ShiftRecord.checks``): ``settings``, ``realism``, ``identity``, ``category``,
    ``distinct``, ``base`` (with an item: whether the base image is still the item by the
    same measures, ``_base_fidelity``; else None), per variant ``passed`` (bool) and
    ``reasons`` (why it fails, empty when it passes), and ``recommended`` (the index of the
    best-scoring variant that passes, or None when none does).
    """
    from ..metrics.silhouette import soft_iou

    settings = settings or CheckSettings()
    settings.validate()
    n = len(images01)
    if len(scores) != n or (pairwise is not None and len(pairwise) != n):
        raise GisUsageError(f"checks: {n} variants but {len(scores)} scores and "
                            f"{len(pairwise or [])} distance rows")
    realism = (_realism(generator, images01, latents, labels) if settings.realism else
               {"kind": None, "floor": None, "scores": None, "passed": None,
                "note": "not run: switched off"})
    reference = item01 if item01 is not None else base01
    with torch.no_grad():
        iou = [float(v) for v in soft_iou(images01.float().cpu(), reference.float().cpu())]
    category = _category(category_reference, images01, reference,
                         "item" if item01 is not None else "base image", settings,
                         expected_category)
    reasons: list[list[str]] = []
    for i in range(n):
        why = []
        if realism["passed"] is not None and not realism["passed"][i]:
            why.append(f"unrealistic ({realism['kind']} score {realism['scores'][i]:.2f} < "
                       f"floor {realism['floor']:.2f})")
        if iou[i] < settings.min_silhouette_iou:
            why.append(f"shape changed (silhouette IoU {iou[i]:.2f} < "
                       f"{settings.min_silhouette_iou:.2f})")
        if category["passed"] is not None and not category["passed"][i]:
            why.append(f"category changed (shape votes {category['values'][i]!r}, "
                       f"{_reference_phrase(category)})")
        if to_reference is not None and to_reference[i] < settings.min_distance:
            why.append(f"no visible change (LPIPS {to_reference[i]:.4f} to the "
                       f"{'item' if item01 is not None else 'base'} < "
                       f"{settings.min_distance:.3f})")
        reasons.append(why)
    order = sorted(range(n), key=lambda i: -scores[i])
    near_copy_of: list[int | None] = [None] * n
    kept: list[int] = []
    for i in order:  # best first, among the variants that pass the other checks
        if reasons[i]:
            continue
        twin = None if pairwise is None else next(
            (j for j in kept if pairwise[i][j] < settings.min_distance), None)
        if twin is None:
            kept.append(i)
        else:
            near_copy_of[i] = twin
            reasons[i].append(f"near-copy of #{twin} (LPIPS {pairwise[i][twin]:.4f} < "
                              f"{settings.min_distance:.3f})")
    passed = [not r for r in reasons]
    recommended = next((i for i in order if passed[i]), None)
    base = _base_fidelity(base01, item01, category, category_reference, settings)
    return {"settings": asdict(settings), "realism": realism, "base": base,
            "identity": {"metric": "silhouette soft IoU to the "
                                   + ("item" if item01 is not None else "base image"),
                         "min": settings.min_silhouette_iou, "values": iou,
                         "passed": [v >= settings.min_silhouette_iou for v in iou]},
            "category": category,
            "distinct": {"min_distance": settings.min_distance, "near_copy_of": near_copy_of,
                         "note": None if pairwise is not None else "not run: no distances"},
            "passed": passed, "reasons": reasons, "recommended": recommended}

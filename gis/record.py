"""The record of one `gis shift` run: ``result.json``, as one typed dataclass.

`gis shift` writes it (:meth:`ShiftRecord.write`), `gis report` reads it
(:meth:`ShiftRecord.from_json`) and docs/OUTPUTS.md documents it field by field (a test checks
that every field below appears there). In the file every field is present; a value that was not
recorded is ``null``.

Versions: ``format`` is ``"gis-shift/1"``. Files written before the field existed have no
``format`` key and the same layout; they are read as version 1, and fields they lack (such as
``distances`` or ``catalogue_size``) are ``None``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import GisUsageError
from .provenance import Provenance

__all__ = ["FORMAT", "Distances", "Inversion", "PerUser", "RankSummary", "RecordError",
           "Scores", "ShiftRecord", "Targets", "UserRanks", "UserScores"]

FORMAT = "gis-shift/1"

Scalars = dict[str, float]  # aggregation name -> score, e.g. {"mean": 0.1, "min": -0.3, ...}


class RecordError(GisUsageError):
    """A ``result.json`` document that is not a usable shift record; the message is the short
    reason ("no scores.variants", "settings is not an object")."""


@dataclass(kw_only=True)
class Targets:
    """The target users the variants were optimised for."""

    count: int
    """Number of target users."""
    user_ids: list[str] = field(default_factory=list)
    """The first 1,000 target user ids, in the recommender's order."""
    user_ids_truncated: bool = False
    """True when there were more than 1,000 target users."""
    default: str | None = None
    """What the targets were when none was chosen (no ``--users``, ``--users-file`` or
    ``--n-users``): ``"all users of the recommender"``; None when the user chose them."""


@dataclass(kw_only=True)
class Scores:
    """Predicted preference of the target users, under every aggregation (``mean``, ``min``,
    ``softmin``, ``coverage``; docs/OUTPUTS.md)."""

    item: Scalars | None = None
    """The real item's scores; None with ``--random-latent``."""
    base: Scalars
    """The scores of the base image ``G(z*)`` (or the random ``G(z)``)."""
    variants: list[Scalars]
    """One dict per variant, in file order (``variant_00.png`` ...)."""


@dataclass(kw_only=True)
class Inversion:
    """How well the item was inverted into the generator."""

    lpips_vgg: float | None
    """Final LPIPS term between the item and ``G(z*)`` (0 = identical; the trunk the
    inversion's ``lpips`` term used, VGG by default); None when that term was switched off."""
    mse: float | None
    """Final mean squared error between them, pixels in the generator's output range
    ([-1, 1] for the shipped generators); None when the ``mse`` term was switched off."""
    history: dict[str, list[float]] | None = None
    """The inversion's loss terms per step."""


@dataclass(kw_only=True)
class UserScores:
    """One target user's predicted scores."""

    user: str
    """The user id."""
    base: float
    """Score of the base image."""
    variants: list[float]
    """Score of each variant."""


@dataclass(kw_only=True)
class UserRanks:
    """One target user's catalogue ranks (1 = the user's favourite catalogue item)."""

    user: str
    """The user id."""
    base: int
    """Rank of the base image."""
    variants: list[int]
    """Rank of each variant."""
    item: int | None = None
    """Rank of the real item; None with ``--random-latent``."""


@dataclass(kw_only=True)
class RankSummary:
    """Ranks over all target users (not only the first 1,000)."""

    reference: str
    """What the variants are compared with: ``"item"``, or ``"base"`` with ``--random-latent``."""
    median_reference_rank: float
    """Median catalogue rank of the reference."""
    median_best_variant_rank: float
    """Median rank of each user's own best variant."""
    share_of_users_whose_best_variant_ranks_higher: float
    """Share (0..1) of target users whose best variant ranks above the reference."""


@dataclass(kw_only=True)
class PerUser:
    """Per target user results (the first ``truncated_to`` users when there are more)."""

    scores: list[UserScores] | None = None
    """Each target user's scores of the base and of every variant."""
    share_of_users_with_a_better_variant: float | None = None
    """Share (0..1) of target users for whom some variant scores above the base."""
    ranks: list[UserRanks] | None = None
    """Each target user's catalogue ranks of the item, the base and every variant."""
    rank_summary: RankSummary | None = None
    """Medians and shares over all target users."""
    truncated_to: int | None = None
    """1,000 when there were more target users than that (lists hold the first 1,000)."""


@dataclass(kw_only=True)
class Distances:
    """How far the variants moved and how distinct they are, in LPIPS (0 = identical)."""

    metric: str = "lpips-alex"
    """The distance: LPIPS with the AlexNet trunk (images under 32 px upsampled to 32)."""
    to_base: list[float]
    """Each variant's distance to the base image."""
    nearest_variant: list[float]
    """Each variant's distance to its most similar other variant."""
    nearest_variant_index: list[int] | None = None
    """The index of that most similar other variant."""
    mean_pairwise: float | None = None
    """Mean distance over all pairs of variants: the set's diversity."""
    min_pairwise: float | None = None
    """Smallest distance over all pairs of variants (near 0: two variants are copies)."""
    to_item: list[float] | None = None
    """Each variant's distance to the real item; None with ``--random-latent``."""
    base_to_item: float | None = None
    """The inversion's own distance, base image to real item."""
    pairwise: list[list[float]] | None = None
    """Every pair's distance, (n, n), 0 on the diagonal."""


#: ``Checks.category["of"]`` when the variants were compared with the class a conditional
#: generator was asked for (rather than with the item's or base's voted category)
CLASS_ASKED_FOR = "class asked for"


@dataclass(kw_only=True)
class Checks:
    """Which variants a seller can act on (gis.engine.checks; docs/ENGINE.md, "Checks")."""

    passed: list[bool]
    """Per variant: whether it passes every check."""
    reasons: list[list[str]]
    """Per variant: why it fails (e.g. "unrealistic (critic score -3.10 < floor -1.20)",
    "shape changed (silhouette IoU 0.41 < 0.60)", "near-copy of #2 (LPIPS 0.008 < 0.020)");
    empty when it passes."""
    recommended: int | None = None
    """The best-scoring variant (optimised aggregation) that passes; None when none does."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The thresholds: ``min_silhouette_iou``, ``min_distance`` (LPIPS), ``realism``,
    ``category`` (whether those checks ran)."""
    realism: dict[str, Any] = field(default_factory=dict)
    """``kind`` of the generator's realism score used, its calibrated ``floor``, the variants'
    ``scores`` and ``passed``; all None with a ``note`` when not run (the generator offers no
    calibrated realism score)."""
    identity: dict[str, Any] = field(default_factory=dict)
    """``metric``, ``min`` and per variant ``values`` (silhouette soft IoU to the item, or to
    the base image when there is none) and ``passed``."""
    category: dict[str, Any] = field(default_factory=dict)
    """``metric`` (the k-NN silhouette vote among the catalogue's products), ``of`` ("item" or
    "base image", whose voted category is the ``reference``; "class asked for" with a
    class-conditional generator, whose class is), per variant ``values`` (voted category
    name), ``shares`` (the share of the k neighbours in the reference category) and
    ``passed``; all None with a ``note`` when not run (no catalogue, switched off, or a class
    the catalogue does not have)."""
    distinct: dict[str, Any] = field(default_factory=dict)
    """``min_distance`` and per variant ``near_copy_of`` (the better variant it nearly
    copies, or None); ``note`` when not run."""
    base: dict[str, Any] | None = None
    """With an item: whether the base image G(z*), where every variant starts, is still the
    item by the identity and category checks' measures: ``silhouette_iou`` with the item,
    ``category`` (its voted category; None when the category check did not run),
    ``faithful`` and ``reasons`` (why not). None without an item, and in records written
    before gis checked the base."""

    _NAMES = (("realism", "realism"), ("identity", "identity"), ("category", "category"),
              ("distinct", "distinctness"))

    @property
    def class_asked(self) -> str | None:
        """The class a conditional generator was asked for, when the category check compared
        the variants with it (``category.of == CLASS_ASKED_FOR``); else None."""
        cat = self.category or {}
        return cat.get("reference") if cat.get("of") == CLASS_ASKED_FOR else None

    def ran(self) -> list[str]:
        """The names of the checks that ran, in order ("realism", "identity", "category",
        "distinctness"); a check with a ``note`` was not run, and one missing from the
        record (written before gis had it) is left out."""
        return [name for key, name in self._NAMES
                if (key == "identity" or getattr(self, key)) and not
                (getattr(self, key) or {}).get("note")]

    def not_run(self) -> list[tuple[str, str]]:
        """(name, why) of each check that did not run, e.g. ("category", "switched off")."""
        return [(name, getattr(self, key)["note"].removeprefix("not run: "))
                for key, name in self._NAMES if (getattr(self, key) or {}).get("note")]

    def ran_text(self) -> str:
        """The checks that ran, in words: "realism, identity and distinctness checks",
        "identity check"."""
        names = self.ran()
        if len(names) == 1:
            return f"{names[0]} check"
        return ", ".join(names[:-1]) + " and " + names[-1] + " checks"


@dataclass(kw_only=True)
class ShiftRecord:
    """Everything one `gis shift` run decided and measured (``result.json``)."""

    format: str = FORMAT
    """The record's format and version, ``"gis-shift/1"``."""
    command: str = "shift"
    """Always ``"shift"`` (other commands write other records)."""
    versions: dict[str, Any] = field(default_factory=dict)
    """Versions of gis, torch and python, the platform and the CPU model (with CUDA also the
    CUDA and cuDNN versions and the GPU); ``gis.provenance.versions``."""
    provenance: Provenance | None = None
    """Where and how the run computed: device, operator implementation, torch thread counts
    (``gis.provenance.Provenance``); None in files written before gis recorded it."""
    item: dict[str, Any] = field(default_factory=dict)
    """Where the item came from: ``{"source": "file", "path"}``, ``{"source": "dataset",
    "dataset", "item_id", "category", "default"}`` or ``{"source": "random latent"}``."""
    generator: dict[str, Any] | None = None
    """The generator's registered ``name``; its weights file: ``checkpoint`` (path),
    ``sha256``, ``format``, ``layout``, ``epoch`` (``gis.provenance.checkpoint_facts``); the
    ``dataset`` its card says it was trained on; the ``options`` its factory was given
    (``--generator-option``); ``latent_space``, the space the engine worked in
    (``--latent-space``; the generator's first, e.g. ``"z"``, by default)."""
    recommender: dict[str, Any] | None = None
    """The same for the recommender."""
    dataset: dict[str, Any] | None = None
    """The catalogue dataset: its ``name`` and the ``options`` its factory was given
    (``--dataset-option``)."""
    category: dict[str, Any] | None = None
    """For a class-conditional generator: ``{"index", "name"}`` of the class shifted under."""
    bridge: dict[str, Any] | None = None
    """How generated images were brought to the recommender's input (resize, value range)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Every shifting setting (``gis.engine.settings.ShiftSettings``)."""
    invert_settings: dict[str, Any] | None = None
    """Every inversion setting; None with ``--random-latent``."""
    inversion: Inversion | None = None
    """The inversion's final quality; None with ``--random-latent``."""
    targets: Targets
    """The target users."""
    optimised_aggregation: str
    """The aggregation the shifts maximised (``mean``, ``min``, ``softmin`` or ``coverage``)."""
    scores: Scores
    """Scores of the item, the base and the variants under every aggregation."""
    per_user: PerUser | None = None
    """Per target user scores and catalogue ranks."""
    distances: Distances | None = None
    """LPIPS distances of the variants; None when not measured."""
    checks: Checks | None = None
    """The variants' realism, identity, category and distinctness checks and the recommended variant;
    None in records written before the checks existed."""
    catalogue_size: int | None = None
    """Number of catalogue items the ranks are computed against."""
    seconds: dict[str, float] | None = None
    """Seconds spent per phase (catalogue, inversion, shifting, distances)."""
    history: dict[str, list[float]] | None = None
    """The shifting loss terms per step (``ce``, ``mae``, ``pref``, ``identity``, ``total``)."""
    files: list[str] = field(default_factory=list)
    """The files of the run folder."""

    # -------------------------------------------------------------------------- reading
    @classmethod
    def from_json(cls, doc: Any) -> ShiftRecord:
        """The record of a parsed ``result.json`` (this version or an older one).

        Raises RecordError (one line: what is missing or does not match) for a document
        that is not a usable shift record."""
        if not isinstance(doc, dict):
            raise RecordError("not a JSON object")
        fmt = doc.get("format")
        if fmt is not None and fmt != FORMAT:
            raise RecordError(f"format {fmt!r}, this gis reads {FORMAT!r}: update gis")
        if doc.get("command", "shift") != "shift":
            raise RecordError(f"the record of `gis {doc['command']}`, not of `gis shift`")
        if not isinstance(doc.get("optimised_aggregation"), str):
            raise RecordError("no optimised_aggregation")
        if not isinstance(doc.get("scores"), dict):
            raise RecordError("no scores")
        record = _parse(cls, {**doc, "format": FORMAT}, "")
        record._check()
        return record

    def _check(self) -> None:
        """What the types alone do not say: scores and per-variant lists fit together."""
        agg, scores = self.optimised_aggregation, self.scores
        if agg not in scores.base:
            raise RecordError(f"no scores.base.{agg}")
        n = len(scores.variants)
        if not n:
            raise RecordError("no scores.variants")
        if not all(agg in v for v in scores.variants):
            raise RecordError(f"a variant without a {agg} score")
        d = self.distances
        if d is not None:
            def per_variant(v):
                return v is not None and len(v) == n and all(finite(x) for x in v)

            if not (per_variant(d.to_base) and per_variant(d.nearest_variant)
                    and (d.to_item is None or per_variant(d.to_item))
                    and (d.nearest_variant_index is None or len(d.nearest_variant_index) == n)):
                raise RecordError("distances does not match the variants")
        c = self.checks
        if c is not None and not (len(c.passed) == n and len(c.reasons) == n and (
                c.recommended is None or 0 <= c.recommended < n and c.passed[c.recommended])):
            raise RecordError("checks does not match the variants")
        ranks = self.per_user.ranks if self.per_user else None
        if ranks is not None and not all(len(r.variants) == n for r in ranks):
            raise RecordError("per_user.ranks does not match the variants")

    @property
    def has_item(self) -> bool:
        """Whether a real item was shifted (False for ``--random-latent`` runs)."""
        return self.item.get("source") != "random latent"

    # -------------------------------------------------------------------------- writing
    def to_json(self) -> dict[str, Any]:
        """The record as the JSON document ``result.json`` holds (fields in order)."""
        return dataclasses.asdict(self)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the record to ``path`` (atomically, indented JSON); returns ``path``."""
        from .io import write_json

        return write_json(path, self.to_json())


# ------------------------------------------------------------------------------ parsing
def finite(v: Any) -> bool:
    """Whether ``v`` is a real, finite number (not a bool, None or NaN)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
          int: "an integer", float: "a number"}


def _parse(hint: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as ``hint`` (a dataclass, ``X | None``, ``list[X]``, ``dict``,
    ``str``, ``int``, ``float``, ``bool``, ``Any``); RecordError naming ``where`` otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise RecordError(f"{where} is not an object")
        hints = typing.get_type_hints(hint)
        kwargs = {}
        for f in dataclasses.fields(hint):
            name = f"{where}.{f.name}" if where else f.name
            if f.name not in value or value[f.name] is None and _required(f):
                if _required(f):
                    raise RecordError(f"no {name}")
                continue
            kwargs[f.name] = _parse(hints[f.name], value[f.name], name)
        return hint(**kwargs)
    kind = origin or hint
    ok = (isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
          or kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise RecordError(f"{where} is not {_KINDS.get(kind, kind.__name__)}")
    if kind is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_parse(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING

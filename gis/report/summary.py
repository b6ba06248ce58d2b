"""The numbers and sentences the report shows, derived once from a shift record.

Nothing here writes HTML: the template (templates/report.html.j2) escapes every value.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..record import Checks, Distances, ShiftRecord, finite

#: the checks, in words, of a record written before gis recorded them
ALL_CHECKS = "realism, identity, category and distinctness checks"

AGGREGATION_LABELS = {
    "mean": "mean predicted preference",
    "min": "lowest predicted preference (the least pleased user)",
    "softmin": "soft-minimum predicted preference",
    "coverage": "top-K coverage (smooth share of users who would see it in their top K)",
}


# ------------------------------------------------------------------------------ formatting
def format_score(value, aggregation: str = "mean") -> str:
    """A score as the page shows it: 3 decimals; coverage (a share) as a percentage."""
    return _three_decimals(value, aggregation, sign="", percent="%")


def format_change(delta, aggregation: str = "mean") -> str:
    """A signed change of a score: 3 decimals; coverage in percentage points."""
    return _three_decimals(delta, aggregation, sign="+", percent=" pp")


def _three_decimals(v, aggregation: str, *, sign: str, percent: str) -> str:
    if not finite(v):
        return "n/a"
    if aggregation == "coverage":
        return f"{100 * v:{sign}.3f}{percent}"
    return f"{v:{sign}.3f}"


def format_value(v) -> str:
    """A setting's value as text: lists and dicts joined, floats with 4 digits."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "-"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(format_value(x) for x in v) or "-"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {format_value(x)}" for k, x in v.items()) or "-"
    return str(v)


def format_rank(r) -> str:
    """A (median) catalogue rank: whole numbers without decimals."""
    if r is None:
        return "n/a"
    return f"{r:.0f}" if float(r).is_integer() else f"{r:.1f}"


def format_lpips(v) -> str:
    return f"{v:.3f}" if finite(v) else "n/a"


def format_share(k: int, m: int) -> str:
    """``k`` of ``m`` as "k/m (p%)"."""
    return f"{k}/{m} ({100 * k / m:.0f}%)" if m else "n/a"


def format_percent(v) -> str:
    return f"{100 * v:.0f}%" if finite(v) else "n/a"


def rank_change(ref, new) -> str:
    """How many places a median rank moved ("3 places up")."""
    if ref is None or new is None:
        return "n/a"
    d = ref - new
    if d == 0:
        return "no change"
    return f"{format_rank(abs(d))} places {'up' if d > 0 else 'down'}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def smallest_gaining_change(scores: list, reference, change: list,
                            passed: list | None = None) -> int | None:
    """Index of the variant with the least ``change`` among those whose score beats
    ``reference`` and that pass the checks (``passed``; None: every variant), or None: the
    seller's least-redesign option."""
    gaining = [i for i, v in enumerate(scores) if finite(v) and finite(reference)
               and v > reference and (passed is None or passed[i])]
    return min(gaining, key=lambda i: change[i], default=None)


def _median(values: list) -> int | float | None:
    """Lower median (an actual rank, as in result.json's rank_summary); None when empty."""
    vals = [v for v in values if finite(v)]
    return statistics.median_low(vals) if vals else None


# ------------------------------------------------------------------------------ summary
@dataclass
class RankInfo:
    """Per-user catalogue ranks in the page's terms."""

    ref_key: str  # "item" or "base": what the variants are compared with
    users: list[str]
    ref: list[int]  # each user's rank of the reference
    variants: list[list[int]]  # [variant][user]
    median_ref: float | None
    median_base: float | None
    median_item: float | None
    median_variants: list[float | None]
    better: list[int]  # per variant: users ranking it above the reference
    count: int


@dataclass
class DistanceInfo:
    """The LPIPS block of the record in the page's terms."""

    ref: str  # "item" or "base"
    change: list[float]  # each variant's distance to the reference
    nearest: list[float]
    nearest_idx: list[int] | None
    mean_pairwise: float | None
    base_to_item: float | None
    metric: str
    closest_gain: int | None = None  # the smallest change that beats the reference


@dataclass
class Summary:
    """What the page shows, computed once from the record."""

    agg: str
    n: int
    aggs: list[str]  # every aggregation, in the record's (the engine's) order
    base: dict
    item: dict  # {} when there is no real item (or it has no score)
    has_item: bool
    variants: list[dict]
    v_scores: list  # the optimised score of each variant
    best: int
    ranks: RankInfo | None
    dist: DistanceInfo | None
    catalogue_size: int | None
    n_targets: int
    truncated_to: int | None
    # per variant, why it fails the checks (empty: passes); None for records without checks
    reasons: list[list[str]] | None = None
    checks: Checks | None = None  # the record's checks (None: a record without them)

    @property
    def check_settings(self) -> dict | None:
        """The checks' thresholds (result.json ``checks.settings``)."""
        return self.checks.settings if self.checks is not None else None

    @property
    def realism_unchecked(self) -> bool:
        """Whether the record has checks and the realism check did not run."""
        return self.checks is not None and bool((self.checks.realism or {}).get("note"))

    @property
    def not_run(self) -> list[tuple[str, str]] | None:
        """(check, why) of each check that did not run."""
        return self.checks.not_run() if self.checks is not None else None

    @property
    def ran(self) -> list[str] | None:
        """The names of the checks that ran (None: a record without checks)."""
        return self.checks.ran() if self.checks is not None else None

    @property
    def checks_ran(self) -> str:
        """The checks that ran, in words (all four for a record without checks)."""
        return self.checks.ran_text() if self.checks is not None else ALL_CHECKS

    @property
    def category_asked(self) -> str | None:
        """The class a conditional generator was asked for (``Checks.class_asked``)."""
        return self.checks.class_asked if self.checks is not None else None

    @property
    def recommended(self) -> int | None:
        """The recommended variant: the best-scoring one that passes the checks (records
        without checks: the best-scoring one); None when no variant passes."""
        if self.reasons is None:
            return self.best
        return self.best if not self.reasons[self.best] else None

    def check_text(self, i: int) -> str:
        """Variant ``i``'s check verdict in words: "passes", the reasons, or "-" (no checks)."""
        if self.reasons is None:
            return "-"
        return "; ".join(self.reasons[i]) or "passes"

    @property
    def reference_score(self):
        """The optimised score the variants are compared with (item, else base)."""
        return self.item[self.agg] if self.has_item else self.base.get(self.agg)

    @property
    def reference_name(self) -> str:
        return "the real item" if self.has_item else "the base image G(z)"


def summarise(record: ShiftRecord) -> Summary:
    """The numbers the page shows, derived once from the record."""
    agg, scores = record.optimised_aggregation, record.scores
    variants, base = scores.variants, scores.base
    n = len(variants)
    item = scores.item or {}
    has_item = record.has_item and finite(item.get(agg))
    v_scores = [v.get(agg) for v in variants]
    best = max(range(n), key=lambda i: v_scores[i] if finite(v_scores[i]) else -math.inf)
    checks = record.checks
    if checks is not None and checks.recommended is not None:
        best = checks.recommended
    ranks = _rank_info(record, n)
    dist = _distances(record.distances, has_item)
    if dist is not None:
        dist.closest_gain = smallest_gaining_change(
            v_scores, item[agg] if has_item else base.get(agg), dist.change,
            checks.passed if checks is not None else None)
    per_user = record.per_user
    return Summary(agg=agg, n=n, aggs=list(base), base=base, item=item if has_item else {},
                   has_item=has_item, variants=variants, v_scores=v_scores, best=best,
                   ranks=ranks, dist=dist, catalogue_size=record.catalogue_size,
                   n_targets=record.targets.count,
                   truncated_to=per_user.truncated_to if per_user else None,
                   reasons=checks.reasons if checks is not None else None,
                   checks=checks)


def _rank_info(record: ShiftRecord, n: int) -> RankInfo | None:
    ranks = (record.per_user.ranks if record.per_user else None) or []
    if not ranks:
        return None
    ref_key = "item" if all(finite(r.item) for r in ranks) else "base"
    ref = [getattr(r, ref_key) for r in ranks]
    return RankInfo(
        ref_key=ref_key, users=[r.user for r in ranks], ref=ref,
        variants=[[r.variants[i] for r in ranks] for i in range(n)],
        median_ref=_median(ref), median_base=_median([r.base for r in ranks]),
        median_item=_median([r.item for r in ranks]) if ref_key == "item" else None,
        median_variants=[_median([r.variants[i] for r in ranks]) for i in range(n)],
        better=[sum(r.variants[i] < getattr(r, ref_key) for r in ranks) for i in range(n)],
        count=len(ranks))


def _distances(d: Distances | None, has_item: bool) -> DistanceInfo | None:
    """None for runs written before gis measured distances."""
    if d is None:
        return None
    ref = "item" if has_item and d.to_item is not None else "base"
    idx = d.nearest_variant_index
    return DistanceInfo(ref=ref, change=d.to_item if ref == "item" else d.to_base,
                        nearest=d.nearest_variant,
                        nearest_idx=idx if idx is not None and len(idx) == len(d.to_base)
                        else None,
                        mean_pairwise=d.mean_pairwise, base_to_item=d.base_to_item,
                        metric=d.metric)


# ------------------------------------------------------------------------------ sentences
def beats_reference(s: Summary) -> bool:
    """Whether the recommended variant (it passes the checks) scores above the reference
    (the real item, else the base)."""
    if s.recommended is None:
        return False
    new, old = s.v_scores[s.best], s.reference_score
    return finite(new) and finite(old) and new > old


def checks_sentence(s: Summary) -> str:
    """The checks a recommended variant passed, each with its rule, naming only the checks
    that ran (all four for a record without checks: the page then describes gis's rules)."""
    ran = s.ran if s.ran is not None else ["realism", "identity", "category", "distinctness"]
    cs = s.check_settings or {}
    iou, dist = cs.get("min_silhouette_iou", 0.6), cs.get("min_distance", 0.02)
    rules = {
        "realism": "realistic (the generator's own realism score reaches its calibrated floor, "
                   "a score 95 % of held-out real items reach)",
        "identity": f"still the item (the soft IoU of its silhouette with the item's is at "
                    f"least {iou}, and it differs from the item by at least {dist} LPIPS)",
        "category": (f"the product asked for (its silhouette's nearest products in the "
                     f"catalogue are mostly of the class asked for, {s.category_asked})"
                     if s.category_asked else
                     "the same kind of product (its silhouette's nearest products in the "
                     "catalogue are mostly of the item's category)"),
        "distinctness": f"distinct (not within {dist} LPIPS of a better variant)",
    }
    parts = [rules[name] for name in ran if name in rules]
    count = {1: "one check", 2: "two checks", 3: "three checks", 4: "four checks"}[len(parts)]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (f"So gis recommends only a variant that passes {count} (docs/ENGINE.md, "
            f"\"Checks\"): {listed}.")


def base_warning(base: dict | None) -> str:
    """The warning of a run whose base image is not the item (``checks.base``), or ""."""
    if not base or base.get("faithful", True):
        return ""
    return ("the base G(z), the generator's closest image to the item and where every "
            f"variant starts, is not the item ({'; '.join(base['reasons'])}): the variants "
            "vary another product, and this generator cannot reproduce the item well "
            "(docs/ENGINE.md, \"Checks\")")


def headline(s: Summary) -> str:
    """The callout's bold line: the recommended variant, or, when no variant passes the checks
    or none beats the reference, that (for an item: keep it)."""
    if s.recommended is None:
        return (f"No variant passes the {s.checks_ran}"
                + (": keep the item." if s.has_item else "."))
    if beats_reference(s):
        if s.reasons is not None and s.realism_unchecked:
            return f"Recommended: Variant {s.best} (not checked for realism: look at it)."
        return f"Recommended: Variant {s.best}."
    passing = "" if s.reasons is None else " that passes the checks"
    if s.has_item:
        return f"No variant{passing} beats the real item for these users: keep the item."
    return f"No variant{passing} beats the base image G(z) for these users."


def recommendation(s: Summary) -> str:
    """The plain-language sentence(s) of the callout (plain text, escaped by the template)."""
    agg, k = s.agg, s.best
    label = AGGREGATION_LABELS.get(agg, f"{agg} score")
    users = plural(int(s.n_targets or 0), "target user")
    new = s.v_scores[k]
    old, ref_name = s.reference_score, s.reference_name
    delta = new - old if finite(new) and finite(old) else float("nan")
    name = f"Variant {k} (variant_{k:02d}.png)"
    if s.recommended is None:
        return (f"The best-scoring variant, {name}, fails them: {s.check_text(k)}. Each "
                "variant's reasons are in the table below.")
    if finite(delta) and delta > 0:
        text = (f"{name} raises the {label} of the {users} from {format_score(old, agg)} "
                f"({ref_name}) to {format_score(new, agg)} ({format_change(delta, agg)})")
    elif finite(delta) and delta < 0:
        text = (f"No variant beats {ref_name} on the {label} of the {users}: the best, {name}, "
                f"lowers it from {format_score(old, agg)} to {format_score(new, agg)} "
                f"({format_change(delta, agg)})")
    else:
        text = (f"{name} leaves the {label} of the {users} at {format_score(new, agg)}, the "
                f"same as {ref_name}")
    r = s.ranks
    if r and r.median_ref is not None and r.median_variants[k] is not None:
        what = "the item" if r.ref_key == "item" else "the design"
        a, b = r.median_ref, r.median_variants[k]
        of = f" of {s.catalogue_size} catalogue items" if s.catalogue_size else ""
        verb = "moves" if a != b else "keeps"
        where = (f"from median rank {format_rank(a)} to {format_rank(b)}{of}" if a != b
                 else f"at median rank {format_rank(a)}{of}")
        text += f", and {verb} {what} {where}"
        text += (f". It ranks above {'the item' if r.ref_key == 'item' else 'the base image'}"
                 f" for {format_share(r.better[k], r.count)} of the target users")
        if finite(delta) and delta > 0 and b > a:
            text += (f". Its {label} rises but its median catalogue rank falls ({b - a} "
                     "places down): the gain is not shared by the typical target user. Look at "
                     "the catalogue-rank columns below before acting on it")
    text += "."
    d = s.dist
    if d is not None:
        what = "the real item" if d.ref == "item" else "the base image"
        text += (f" It differs from {what} by LPIPS {format_lpips(d.change[k])} (0 = "
                 f"identical; the {s.n} variants range from {format_lpips(min(d.change))} to "
                 f"{format_lpips(max(d.change))}).")
        c = d.closest_gain
        if c is not None and c != k:
            v = s.v_scores[c]
            text += (f" The smallest change that still beats {ref_name} is Variant {c}: "
                     f"{format_score(v, agg)} ({format_change(v - old, agg)}) at LPIPS "
                     f"{format_lpips(d.change[c])}.")
    return text


def item_description(record: ShiftRecord) -> str:
    """Where the item came from, in words."""
    item = record.item
    src = item.get("source")
    if src == "dataset":
        text = f"dataset {item.get('dataset')}, item {item.get('item_id')}"
        if item.get("category"):
            text += f" ({item['category']})"
        return text + (", the dataset's default item" if item.get("default") else "")
    if src == "file":
        return f"image file {item.get('path')}"
    if src == "random latent":
        return "random latent (no real item: the reference is the generated base image G(z))"
    return format_value(item) if item else "not recorded"


def model_description(info: dict | None) -> str:
    """A model's name, what it was trained on and its checkpoint file, in words."""
    if not info:
        return "not recorded"
    text = str(info.get("name"))
    data = info.get("dataset")
    dname = data.get("name") if isinstance(data, dict) else data
    if dname:
        text += f", trained on {dname}"
    if info.get("checkpoint"):
        facts = [f"{k} {info[k]}" for k in ("layout", "epoch") if info.get(k) is not None]
        text += f" (checkpoint {', '.join([Path(str(info['checkpoint'])).name, *facts])})"
    options = info.get("options")
    if isinstance(options, dict) and options:
        text += ", options " + ", ".join(f"{k}={format_value(v)}" for k, v in options.items())
    return text

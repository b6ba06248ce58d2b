"""`gis report RUN_DIR`: one self-contained HTML page for the seller, from a `gis shift` folder.

Everything is inline: the images are base64 PNG data URIs, the charts are SVG drawn here, the
style sheet is in the page; there is no JavaScript and nothing is fetched from the network. The
page depends only on the run folder (its date is result.json's modification time), so writing
the report twice gives the same bytes.

This module is imported when the CLI starts: keep its top-level imports light (no PIL, torch).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import io
import json
import math
import os
import statistics
import tempfile
from pathlib import Path

import click

from . import __version__
from .errors import GisUsageError

__all__ = ["format_change", "format_score", "load_run", "render_report", "report",
           "write_report"]

AGGREGATIONS = ("mean", "min", "softmin", "coverage")
AGGREGATION_LABELS = {
    "mean": "mean predicted preference",
    "min": "lowest predicted preference (the least pleased user)",
    "softmin": "soft-minimum predicted preference",
    "coverage": "top-K coverage (smooth share of users who would see it in their top K)",
}
HISTORY_SERIES = (("total", "#222222"), ("pref", "#d95f02"), ("ce", "#1b9e77"),
                  ("mae", "#7570b3"), ("identity", "#e7298a"))
BAR, BEST, BETTER, WORSE, NEUTRAL = "#4c78a8", "#f58518", "#2ca02c", "#d62728", "#888888"


# ------------------------------------------------------------------------------ formatting
def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def format_score(value, aggregation: str = "mean") -> str:
    """A score as the page shows it: 3 decimals; coverage (a share) as a percentage."""
    if not _finite(value):
        return "n/a"
    if aggregation == "coverage":
        return f"{100 * value:.3f}%"
    return f"{value:.3f}"


def format_change(delta, aggregation: str = "mean") -> str:
    """A signed change of a score: 3 decimals; coverage in percentage points."""
    if not _finite(delta):
        return "n/a"
    if aggregation == "coverage":
        return f"{100 * delta:+.3f} pp"
    return f"{delta:+.3f}"


def _fmt_value(v) -> str:
    """A setting's value as text (not escaped)."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "-"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v) or "-"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_fmt_value(x)}" for k, x in v.items()) or "-"
    return str(v)


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _share(k: int, m: int) -> str:
    return f"{k}/{m} ({100 * k / m:.0f}%)" if m else "n/a"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ------------------------------------------------------------------------------ loading
def _hint(run_dir: Path) -> str:
    return f"run `gis shift ... --out {run_dir}` first"


def load_run(run_dir: str | os.PathLike) -> dict:
    """Read and check a `gis shift` output folder: result.json plus its images.

    Returns ``{"dir", "doc", "mtime", "images": {name: (png_bytes, (w, h))}}``; raises
    GisUsageError with a one-line message when the folder is not a usable shift run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise GisUsageError(f"RUN_DIR {run_dir} does not exist: {_hint(run_dir)}, or pass the "
                            "folder that `gis shift --out` wrote")
    if not run_dir.is_dir():
        raise GisUsageError(f"RUN_DIR {run_dir} is not a folder: pass the folder that "
                            "`gis shift --out` wrote")
    path = run_dir / "result.json"
    if not path.is_file():
        raise GisUsageError(f"RUN_DIR {run_dir} is not a gis shift output folder (no "
                            f"result.json): {_hint(run_dir)}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise GisUsageError(f"{path} is not readable JSON ({msg}): rerun `gis shift ... --out "
                            f"{run_dir} --overwrite`") from None
    _check_doc(doc, run_dir)
    names = ["base.png"] + [f"variant_{i:02d}.png" for i in range(len(doc["scores"]["variants"]))]
    if _has_item(doc):
        names.insert(0, "item.png")
    images = {name: _read_png(run_dir / name, run_dir) for name in names}
    return {"dir": run_dir, "doc": doc, "mtime": path.stat().st_mtime, "images": images}


def _check_doc(doc, run_dir: Path) -> None:
    damaged = (f"result.json in {run_dir} is incomplete or damaged ({{}}): rerun `gis shift ... "
               f"--out {run_dir} --overwrite`")
    if not isinstance(doc, dict):
        raise GisUsageError(damaged.format("not a JSON object"))
    command = doc.get("command")
    if command != "shift":
        raise GisUsageError(f"RUN_DIR {run_dir} holds the output of `gis {command}`, not of "
                            f"`gis shift`: gis report needs a `gis shift ... --out RUN_DIR` folder")
    agg = doc.get("optimised_aggregation")
    if not isinstance(agg, str):
        raise GisUsageError(damaged.format("no optimised_aggregation"))
    scores = doc.get("scores")
    if not isinstance(scores, dict):
        raise GisUsageError(damaged.format("no scores"))
    if not isinstance(scores.get("base"), dict) or agg not in scores["base"]:
        raise GisUsageError(damaged.format(f"no scores.base.{agg}"))
    variants = scores.get("variants")
    if not isinstance(variants, list) or not variants:
        raise GisUsageError(damaged.format("no scores.variants"))
    if not all(isinstance(v, dict) and agg in v for v in variants):
        raise GisUsageError(damaged.format(f"a variant without a {agg} score"))
    for key in ("item", "targets", "per_user", "history", "settings", "seconds", "inversion",
                "generator", "recommender", "bridge", "versions", "invert_settings"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise GisUsageError(damaged.format(f"{key} is not an object"))
    if scores.get("item") is not None and not isinstance(scores["item"], dict):
        raise GisUsageError(damaged.format("scores.item is not an object"))
    dist = doc.get("distances")
    if dist is not None:
        n = len(variants)

        def per_variant(key):
            v = dist.get(key)
            return isinstance(v, list) and len(v) == n and all(_finite(x) for x in v)

        ok = (isinstance(dist, dict) and per_variant("to_base") and per_variant("nearest_variant")
              and (dist.get("to_item") is None or per_variant("to_item")))
        if not ok:
            raise GisUsageError(damaged.format("distances does not match the variants"))
    ranks = (doc.get("per_user") or {}).get("ranks")
    if ranks is not None:
        n = len(variants)
        ok = isinstance(ranks, list) and all(
            isinstance(r, dict) and _finite(r.get("base"))
            and isinstance(r.get("variants"), list) and len(r["variants"]) == n
            and all(_finite(x) for x in r["variants"]) for r in ranks)
        if not ok:
            raise GisUsageError(damaged.format("per_user.ranks does not match the variants"))


def _has_item(doc: dict) -> bool:
    return (doc.get("item") or {}).get("source") != "random latent"


def _read_png(path: Path, run_dir: Path) -> tuple[bytes, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise GisUsageError(f"{path.name} is missing from RUN_DIR {run_dir}: the folder is "
                            f"incomplete; rerun `gis shift ... --out {run_dir} --overwrite`")
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size, fmt = im.size, im.format
            if fmt != "PNG":  # the page embeds PNGs only
                buf = io.BytesIO()
                im.convert("RGBA" if "A" in im.getbands() else "RGB").save(buf, format="PNG")
                data = buf.getvalue()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        msg = " ".join(str(exc).split())
        raise GisUsageError(f"{path.name} in RUN_DIR {run_dir} is not a readable image ({msg}): "
                            f"rerun `gis shift ... --out {run_dir} --overwrite`") from None
    return data, size


# ------------------------------------------------------------------------------ summary
def _median(values: list) -> int | float | None:
    """Lower median (an actual rank, as in result.json's rank_summary); None when empty."""
    vals = [v for v in values if _finite(v)]
    return statistics.median_low(vals) if vals else None


def _fmt_rank(r) -> str:
    if r is None:
        return "n/a"
    return f"{r:.0f}" if float(r).is_integer() else f"{r:.1f}"


def _summarise(run: dict) -> dict:
    """The numbers the page shows, derived once from result.json."""
    doc = run["doc"]
    agg = doc["optimised_aggregation"]
    scores = doc["scores"]
    variants = scores["variants"]
    n = len(variants)
    base = scores["base"]
    item = scores.get("item") or {}
    has_item = _has_item(doc) and _finite(item.get(agg))
    aggs = [a for a in AGGREGATIONS if a in base] + [a for a in base if a not in AGGREGATIONS]
    v_scores = [v.get(agg) for v in variants]
    best = max(range(n), key=lambda i: v_scores[i] if _finite(v_scores[i]) else -math.inf)
    ranks = (doc.get("per_user") or {}).get("ranks") or []
    ref_key = "item" if ranks and all(_finite(r.get("item")) for r in ranks) else "base"
    rank_info = None
    if ranks:
        ref = [r[ref_key] for r in ranks]
        rank_info = {
            "ref_key": ref_key,
            "users": [str(r.get("user", j)) for j, r in enumerate(ranks)],
            "ref": ref,
            "variants": [[r["variants"][i] for r in ranks] for i in range(n)],
            "median_ref": _median(ref),
            "median_base": _median([r["base"] for r in ranks]),
            "median_item": _median([r["item"] for r in ranks]) if ref_key == "item" else None,
            "median_variants": [_median([r["variants"][i] for r in ranks]) for i in range(n)],
            "better": [sum(r["variants"][i] < r[ref_key] for r in ranks) for i in range(n)],
            "count": len(ranks),
        }
    targets = doc.get("targets") or {}
    dist = _distances(doc.get("distances"), has_item)
    if dist is not None:
        dist["closest_gain"] = smallest_gaining_change(
            v_scores, item[agg] if has_item else base.get(agg), dist["change"])
    return {
        "dist": dist,
        "agg": agg, "n": n, "aggs": aggs, "base": base, "item": item if has_item else {},
        "has_item": has_item, "has_item_image": "item.png" in run["images"],
        "variants": variants, "v_scores": v_scores, "best": best, "ranks": rank_info,
        "catalogue_size": doc.get("catalogue_size"),
        "n_targets": targets.get("count", len(targets.get("user_ids") or [])),
        "truncated_to": (doc.get("per_user") or {}).get("truncated_to"),
    }


def _distances(d: dict | None, has_item: bool) -> dict | None:
    """The LPIPS block of result.json in the page's terms (None for runs written before it)."""
    if not d:
        return None
    ref = "item" if has_item and d.get("to_item") is not None else "base"
    idx = d.get("nearest_variant_index")
    return {"ref": ref, "change": d[f"to_{ref}"], "nearest": d["nearest_variant"],
            "nearest_idx": idx if isinstance(idx, list) and len(idx) == len(d["to_base"])
            else None,
            "mean_pairwise": d.get("mean_pairwise"), "base_to_item": d.get("base_to_item"),
            "metric": d.get("metric", "lpips-alex")}


def smallest_gaining_change(scores: list, reference, change: list) -> int | None:
    """Index of the variant with the least ``change`` among those whose score beats
    ``reference`` (None when none does): the seller's least-redesign option."""
    gaining = [i for i, v in enumerate(scores) if _finite(v) and _finite(reference)
               and v > reference]
    return min(gaining, key=lambda i: change[i], default=None)


def _fmt_lpips(v) -> str:
    return f"{v:.3f}" if _finite(v) else "n/a"


def _recommendation(s: dict) -> str:
    """The plain-language sentence(s) of the callout (not escaped)."""
    agg, k = s["agg"], s["best"]
    label = AGGREGATION_LABELS.get(agg, f"{agg} score")
    users = _plural(int(s["n_targets"] or 0), "target user")
    new = s["v_scores"][k]
    old, ref_name = ((s["item"][agg], "the real item") if s["has_item"]
                     else (s["base"][agg], "the base image G(z)"))
    delta = new - old if _finite(new) and _finite(old) else float("nan")
    name = f"Variant {k} (variant_{k:02d}.png)"
    if _finite(delta) and delta > 0:
        text = (f"{name} raises the {label} of the {users} from {format_score(old, agg)} "
                f"({ref_name}) to {format_score(new, agg)} ({format_change(delta, agg)})")
    elif _finite(delta) and delta < 0:
        text = (f"No variant beats {ref_name} on the {label} of the {users}: the best, {name}, "
                f"lowers it from {format_score(old, agg)} to {format_score(new, agg)} "
                f"({format_change(delta, agg)})")
    else:
        text = (f"{name} leaves the {label} of the {users} at {format_score(new, agg)}, the "
                f"same as {ref_name}")
    r = s["ranks"]
    if r and r["median_ref"] is not None and r["median_variants"][k] is not None:
        what = "the item" if r["ref_key"] == "item" else "the design"
        a, b = r["median_ref"], r["median_variants"][k]
        size = s["catalogue_size"]
        of = f" of {size} catalogue items" if size else ""
        verb = "moves" if a != b else "keeps"
        where = (f"from median rank {_fmt_rank(a)} to {_fmt_rank(b)}{of}" if a != b
                 else f"at median rank {_fmt_rank(a)}{of}")
        text += f", and {verb} {what} {where}"
        text += (f". It ranks above {'the item' if r['ref_key'] == 'item' else 'the base image'}"
                 f" for {_share(r['better'][k], r['count'])} of the target users")
    text += "."
    d = s["dist"]
    if d is not None:
        what = "the real item" if d["ref"] == "item" else "the base image"
        lo, hi = min(d["change"]), max(d["change"])
        text += (f" It differs from {what} by LPIPS {_fmt_lpips(d['change'][k])} (0 = "
                 f"identical; the {s['n']} variants range from {_fmt_lpips(lo)} to "
                 f"{_fmt_lpips(hi)}).")
        c = d["closest_gain"]
        if c is not None and c != k:
            v = s["v_scores"][c]
            ref = s["item"][agg] if s["has_item"] else s["base"][agg]
            text += (f" The smallest change that still beats {ref_name} is Variant {c}: "
                     f"{format_score(v, agg)} ({format_change(v - ref, agg)}) at LPIPS "
                     f"{_fmt_lpips(d['change'][c])}.")
    return text


# ------------------------------------------------------------------------------ SVG charts
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    t = math.ceil(lo / step - 1e-9) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return out


def _tick_label(v: float, ticks: list[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    decimals = next((d for d in range(5) if abs(round(step, d) - step) <= step * 1e-6), 4)
    return f"{v:.{decimals}f}"


def _svg_open(chart_id: str, width: int, height: int, title: str) -> list[str]:
    return [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{_e(title)}">', f"<title>{_e(title)}</title>",
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']


def _y_axis(parts: list[str], ticks, y, x0, x1, label_fmt, title: str, top: float,
            bottom: float) -> None:
    for t in ticks:
        yy = y(t)
        parts.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end" '
                     f'class="tick">{_e(label_fmt(t))}</text>')
    parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{bottom}" stroke="#444"/>')
    mid = (top + bottom) / 2
    parts.append(f'<text x="14" y="{mid:.1f}" transform="rotate(-90 14 {mid:.1f})" '
                 f'text-anchor="middle" class="axis-title">{_e(title)}</text>')


def _unit(agg: str) -> str:
    return " (%)" if agg == "coverage" else ""


def _score_chart_open(chart_id: str, title: str, agg: str, span, size, frame):
    """Open a chart whose y axis is the ``agg`` score over ``span`` = (lo, hi), in a ``size`` =
    (width, height) picture whose plot area is ``frame`` = (left, top, right, bottom).
    Returns the SVG parts so far and the score-to-y map."""
    (lo, hi), (left, top, x1, bottom) = span, frame

    def y(v):
        return top + (hi - v) / (hi - lo) * (bottom - top)

    parts = _svg_open(chart_id, *size, title)
    ticks = _nice_ticks(lo, hi)
    _y_axis(parts, ticks, y, left, x1, lambda t: _tick_label(t, ticks),
            f"{agg} score{_unit(agg)}", top, bottom)
    return parts, y


def _scores_chart(s: dict) -> str:
    """(a) every variant's score, with dashed reference lines for the base and the item."""
    agg, n = s["agg"], s["n"]
    scale = 100.0 if agg == "coverage" else 1.0
    vals = [v * scale if _finite(v) else None for v in s["v_scores"]]
    refs = [("base G(z*)" if s["has_item"] else "base G(z)", s["base"].get(agg), NEUTRAL)]
    if s["has_item"]:
        refs.append(("item", s["item"][agg], "#000000"))
    refs = [(name, v * scale, c) for name, v, c in refs if _finite(v)]
    everything = [0.0] + [v for v in vals if v is not None] + [v for _, v, _ in refs]
    lo, hi = min(everything), max(everything)
    pad = (hi - lo) * 0.12 or 1.0
    lo, hi = (lo - pad if lo < 0 else lo), (hi + pad if hi > 0 else hi + pad * (lo == hi == 0))
    width, height = max(600, 190 + 80 * n), 320
    left, right, top, bottom = 70, 120, 20, height - 50
    x1 = width - right
    slot = (x1 - left) / n

    unit = _unit(agg)
    parts, y = _score_chart_open(
        "chart-scores", f"Score of every variant ({agg}{unit}) with the base and item as "
        "reference lines", agg, (lo, hi), (width, height), (left, top, x1, bottom))
    for i, v in enumerate(vals):
        cx = left + slot * (i + 0.5)
        if v is not None:
            y0, yv = y(0.0), y(v)
            colour = BEST if i == s["best"] else BAR
            parts.append(f'<rect class="bar" data-variant="{i}" x="{cx - slot * 0.3:.1f}" '
                         f'y="{min(y0, yv):.1f}" width="{slot * 0.6:.1f}" '
                         f'height="{max(abs(y0 - yv), 1.0):.1f}" fill="{colour}">'
                         f"<title>Variant {i}: {_e(format_score(s['v_scores'][i], agg))}</title>"
                         "</rect>")
            ly = yv - 5 if v >= 0 else yv + 14
            parts.append(f'<text x="{cx:.1f}" y="{ly:.1f}" text-anchor="middle" '
                         f'class="value">{_e(format_score(s["v_scores"][i], agg))}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{bottom + 18}" text-anchor="middle" '
                     f'class="tick">Variant {i}</text>')
    if lo < 0 < hi:
        parts.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{x1}" y2="{y(0):.1f}" '
                     'stroke="#444"/>')
    for k, (name, v, colour) in enumerate(refs):
        yy = y(v)
        parts.append(f'<line class="ref-line" x1="{left}" y1="{yy:.1f}" x2="{x1}" '
                     f'y2="{yy:.1f}" stroke="{colour}" stroke-width="1.5" '
                     'stroke-dasharray="6 4"/>')
        raw = v / scale
        parts.append(f'<text x="{x1 + 6}" y="{yy + 4 + (12 if k else 0) * _close(refs):.1f}" '
                     f'class="ref-label" fill="{colour}">{_e(name)} '
                     f'{_e(format_score(raw, agg))}</text>')
    parts.append(f'<text x="{(left + x1) / 2:.1f}" y="{height - 12}" text-anchor="middle" '
                 'class="axis-title">higher is better; orange = recommended variant</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _tradeoff_chart(s: dict) -> str:
    """(b) score against change: each variant's score over its LPIPS distance to the reference,
    so the seller sees what each gain costs in change (up = preferred, left = closer)."""
    agg, d, n = s["agg"], s["dist"], s["n"]
    scale = 100.0 if agg == "coverage" else 1.0
    ref_name = "item" if d["ref"] == "item" else ("base G(z*)" if s["has_item"] else "base G(z)")
    ref_score = (s["item"] if d["ref"] == "item" else s["base"]).get(agg)
    pts = [(i, d["change"][i], s["v_scores"][i] * scale) for i in range(n)
           if _finite(s["v_scores"][i]) and _finite(d["change"][i])]
    ys = [p[2] for p in pts] + ([ref_score * scale] if _finite(ref_score) else [])
    if not pts:
        return ""
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.12 or 1.0
    lo, hi = lo - pad, hi + pad
    xmax = max(p[1] for p in pts) * 1.15 or 0.1
    width, height = 640, 350
    left, right, top, bottom = 70, 30, 34, height - 56
    x1 = width - right

    def x(v):
        return left + v / xmax * (x1 - left)

    parts, y = _score_chart_open(
        "chart-tradeoff", f"Score ({agg}{_unit(agg)}) against change (LPIPS to the "
        f"{ref_name}) of every variant", agg, (lo, hi), (width, height), (left, top, x1, bottom))
    xticks = _nice_ticks(0.0, xmax)
    for t in xticks:
        parts.append(f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle" '
                     f'class="tick">{_e(_tick_label(t, xticks))}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{x1}" y2="{bottom}" stroke="#444"/>')
    if _finite(ref_score):
        yy = y(ref_score * scale)
        parts.append(f'<line class="ref-line" x1="{left}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}" '
                     f'stroke="#000000" stroke-width="1" stroke-dasharray="6 4"/>')
        parts.append(f'<circle class="ref-point" cx="{left}" cy="{yy:.1f}" r="5" fill="#000000">'
                     f"<title>{_e(ref_name)}: {_e(format_score(ref_score, agg))}</title>"
                     "</circle>")
        parts.append(f'<text x="{left + 8}" y="{yy - 8:.1f}" class="ref-label">'
                     f"{_e(ref_name)}</text>")
    for i, cx, v in pts:
        colour = BEST if i == s["best"] else BETTER if i == d["closest_gain"] else BAR
        tip = (f"Variant {i}: {format_score(v / scale, agg)}, LPIPS "
               f"{_fmt_lpips(d['change'][i])}")
        parts.append(f'<g class="tradeoff-point" data-variant="{i}"><title>{_e(tip)}</title>'
                     f'<circle cx="{x(cx):.1f}" cy="{y(v):.1f}" r="6" fill="{colour}"/>'
                     f'<text x="{x(cx) + 9:.1f}" y="{y(v) + 4:.1f}" class="value">{i}</text></g>')
    parts.append(f'<text x="{left}" y="18" class="legend"><tspan fill="{BEST}">&#9679; '
                 f'recommended</tspan>  <tspan fill="{BETTER}">&#9679; smallest change that '
                 f'beats the {_e(ref_name)}</tspan>  <tspan fill="{BAR}">&#9679; other '
                 "variants</tspan></text>")
    parts.append(f'<text x="{(left + x1) / 2:.1f}" y="{height - 14}" text-anchor="middle" '
                 f'class="axis-title">change: LPIPS to the {_e(ref_name)} (0 = identical); '
                 "up is preferred, left is closer</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def _close(refs) -> int:
    """Shift the second reference label down when the two lines nearly coincide."""
    if len(refs) < 2:
        return 0
    values = [v for _, v, _ in refs]
    span = max(abs(v) for v in values) or 1.0
    return int(abs(values[0] - values[1]) < 0.06 * span)


def _ranks_chart(s: dict) -> str:
    """(b) each target user's catalogue rank of the reference and of the recommended variant."""
    r, k = s["ranks"], s["best"]
    ref_name = "item" if r["ref_key"] == "item" else "base G(z)"
    pairs = sorted(zip(r["users"], r["ref"], r["variants"][k], strict=True),
                   key=lambda p: (p[2] - p[1], p[1]))
    m = len(pairs)
    size = s["catalogue_size"] if _finite(s["catalogue_size"]) else None
    hi = max([size or 1] + [max(a, b) for _, a, b in pairs])
    width, height = max(640, min(1000, 160 + 40 * m)), 340
    left, right, top, bottom = 70, 20, 34, height - 60
    x1 = width - right
    slot = (x1 - left) / m
    dot = 4.5 if m <= 60 else 2.5

    def y(v):
        return top + (v - 1) / max(hi - 1, 1) * (bottom - top)

    title = (f"Catalogue rank of the {ref_name} and of Variant {k} for each target user "
             "(1 = top of the catalogue)")
    parts = _svg_open("chart-ranks", width, height, title)
    ticks = [t for t in _nice_ticks(1, hi) if t >= 1] or [1]
    if ticks[0] != 1:
        ticks = [1] + ticks
    _y_axis(parts, ticks, y, left, x1, lambda t: f"{t:.0f}", "catalogue rank (1 = top)",
            top, bottom)
    for j, (user, a, b) in enumerate(pairs):
        cx = left + slot * (j + 0.5)
        colour = BETTER if b < a else WORSE if b > a else NEUTRAL
        tip = f"{user}: {ref_name} rank {a:.0f}, Variant {k} rank {b:.0f}"
        parts.append(f'<g class="user-rank" data-user="{_e(user)}"><title>{_e(tip)}</title>'
                     f'<line x1="{cx:.1f}" y1="{y(a):.1f}" x2="{cx:.1f}" y2="{y(b):.1f}" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<circle cx="{cx:.1f}" cy="{y(a):.1f}" r="{dot}" fill="{NEUTRAL}"/>'
                     f'<circle cx="{cx:.1f}" cy="{y(b):.1f}" r="{dot}" fill="{colour}"/></g>')
        if m <= 20:
            parts.append(f'<text x="{cx:.1f}" y="{bottom + 16}" text-anchor="middle" '
                         f'class="tick">{_e(user)}</text>')
    better = sum(b < a for _, a, b in pairs)
    parts.append(f'<text x="{left}" y="18" class="legend"><tspan fill="{NEUTRAL}">&#9679; '
                 f'{_e(ref_name)} rank</tspan>  <tspan fill="{BETTER}">&#9679; Variant {k} '
                 f'rank (better)</tspan>  <tspan fill="{WORSE}">&#9679; Variant {k} rank '
                 f'(worse)</tspan></text>')
    parts.append(f'<text x="{(left + x1) / 2:.1f}" y="{height - 14}" text-anchor="middle" '
                 f'class="axis-title">target users, sorted by rank change; Variant {k} ranks '
                 f'better for {_e(_share(better, m))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _history_chart(history: dict) -> str | None:
    """(c) the loss terms per shifting step."""
    series = []
    for name, colour in HISTORY_SERIES:
        vals = history.get(name)
        if not isinstance(vals, list) or not vals:
            continue
        if name == "identity" and not any(_finite(v) and v != 0 for v in vals):
            continue
        series.append((name, colour, vals))
    finite = [v for _, _, vals in series for v in vals if _finite(v)]
    if not finite:
        return None
    steps = max(len(vals) for _, _, vals in series)
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad
    width, height = 680, 320
    left, right, top, bottom = 70, 150, 20, height - 50
    x1 = width - right

    def x(i):
        return left + (x1 - left) * (i / (steps - 1) if steps > 1 else 0.5)

    def y(v):
        return top + (hi - v) / (hi - lo) * (bottom - top)

    parts = _svg_open("chart-history", width, height, "Loss terms per shifting step")
    ticks = _nice_ticks(lo, hi)
    _y_axis(parts, ticks, y, left, x1, lambda t: _tick_label(t, ticks), "loss", top, bottom)
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{x1}" y2="{bottom}" stroke="#444"/>')
    for t in sorted({0, steps - 1} | set(range(0, steps, max(1, math.ceil(steps / 8))))):
        parts.append(f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle" '
                     f'class="tick">{t + 1}</text>')
    for j, (name, colour, vals) in enumerate(series):
        pts = [(x(i), y(v)) for i, v in enumerate(vals) if _finite(v)]
        if len(pts) > 1:
            coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            parts.append(f'<polyline class="series" data-series="{name}" points="{coords}" '
                         f'fill="none" stroke="{colour}" stroke-width="2"/>')
        if steps <= 40:
            parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>'
                      for a, b in pts]
        last = next((v for v in reversed(vals) if _finite(v)), None)
        ly = top + 10 + 18 * j
        parts.append(f'<line x1="{x1 + 10}" y1="{ly - 4}" x2="{x1 + 28}" y2="{ly - 4}" '
                     f'stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{x1 + 32}" y="{ly}" class="legend">{_e(name)} '
                     f'{_e(f"{last:.3f}" if last is not None else "n/a")}</text>')
    parts.append(f'<text x="{(left + x1) / 2:.1f}" y="{height - 14}" text-anchor="middle" '
                 'class="axis-title">shifting step</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------ page
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  margin: 0 auto; max-width: 1100px; padding: 16px 24px 48px; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; font-size: 1.25em;
  border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 1.05em; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.header dt { font-weight: 600; color: #555; } dl.header dd { margin: 0; }
.gallery { display: flex; flex-wrap: wrap; gap: 16px; }
.gallery figure { margin: 0; text-align: center; font-size: 0.9em; }
.gallery figure.best figcaption { font-weight: 700; color: #b35900; }
.gallery img { width: 128px; height: auto; image-rendering: pixelated; border: 1px solid #ccc; }
.gallery figure.best img { border: 3px solid #f58518; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f4f4f6; } td.name, th.name { text-align: left; }
tr.reference-row td { background: #fafafa; color: #444; } tr.best td { background: #fff3e6; }
table.kv td, table.kv th { text-align: left; }
.callout { border-left: 6px solid #f58518; background: #fff7ee; padding: 12px 16px;
  font-size: 1.05em; margin: 16px 0; } .callout img { float: left; margin-right: 16px;
  width: 96px; image-rendering: pixelated; border: 1px solid #ccc; }
.callout::after { content: ""; display: block; clear: both; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 8px 0; }
svg text { font-family: inherit; font-size: 12px; fill: #333; }
svg text.value { font-size: 11px; } svg text.axis-title { font-size: 12px; fill: #555; }
.note { color: #555; font-size: 0.9em; } code { background: #f4f4f6; padding: 0 3px; }
"""


def _img(data: bytes, size: tuple[int, int], css_class: str, img_id: str, alt: str) -> str:
    w, h = size
    shown = max(128, min(w, 256))
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<img id="{img_id}" class="{css_class}" src="data:image/png;base64,{b64}" '
            f'alt="{_e(alt)}" width="{shown}" height="{round(shown * h / w)}" '
            f'data-width="{w}" data-height="{h}">')


def _kv_table(d: dict | None, table_id: str) -> str:
    if not d:
        return '<p class="note">not recorded</p>'
    rows = "".join(f'<tr><th class="name">{_e(k)}</th><td>{_e(_fmt_value(v))}</td></tr>'
                   for k, v in d.items())
    return f'<table class="kv" id="{table_id}">{rows}</table>'


def _item_description(doc: dict) -> str:
    item = doc.get("item") or {}
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
    return _fmt_value(item) if item else "not recorded"


def _model_description(info: dict | None) -> str:
    if not info:
        return "not recorded"
    text = str(info.get("name"))
    data = info.get("dataset")
    dname = data.get("name") if isinstance(data, dict) else data
    if dname:
        text += f", trained on {dname}"
    if info.get("checkpoint"):
        text += f" (checkpoint {Path(str(info['checkpoint'])).name})"
    return text


def _variants_table(s: dict) -> str:
    agg, aggs, r = s["agg"], s["aggs"], s["ranks"]
    ref_name = "item" if (r and r["ref_key"] == "item") else "base"
    head = ['<th class="name">image</th>', f"<th>score ({_e(agg)}, optimised)</th>",
            "<th>change vs base</th>"]
    if s["has_item"]:
        head.append("<th>change vs real item</th>")
    head += [f"<th>{_e(a)}</th>" for a in aggs]
    if r:
        head += ["<th>median catalogue rank</th>",
                 f"<th>median rank change vs {ref_name}</th>",
                 f"<th>target users ranking it above the {ref_name}</th>"]
    d = s["dist"]
    if d is not None:
        head += [f"<th>change (LPIPS to {'item' if d['ref'] == 'item' else 'base'})</th>",
                 "<th>nearest other variant (LPIPS)</th>"]
    rows = []

    def lpips_cells(change, nearest=None, nearest_idx=None) -> str:
        if d is None:
            return ""
        near = "-" if nearest is None else _fmt_lpips(nearest) + (
            f" (Variant {nearest_idx})" if nearest_idx is not None else "")
        return f'<td class="lpips-change">{_e(change)}</td><td class="lpips-nearest">{_e(near)}</td>'

    def row(label, scores, css, row_id, median=None, extra=None, lp=""):
        val = scores.get(agg)
        cells = [f'<td class="name">{label}</td>', f'<td class="score">{_e(format_score(val, agg))}'
                 "</td>"]
        if extra is None:
            cells.append("<td>-</td>" + ("<td>-</td>" if s["has_item"] else ""))
        else:
            cells.append("".join(f"<td>{_e(c)}</td>" for c in extra[0]))
        cells += [f'<td data-agg="{_e(a)}">{_e(format_score(scores.get(a), a))}</td>'
                  for a in aggs]
        if r:
            cells.append(f'<td class="median-rank">{_e(_fmt_rank(median))}</td>')
            cells.append("".join(f"<td>{_e(c)}</td>" for c in extra[1]) if extra
                         else "<td>-</td><td>-</td>")
        cells.append(lp)
        rows.append(f'<tr id="{row_id}" class="{css}">{"".join(cells)}</tr>')

    if s["has_item"]:
        row("real item", s["item"], "reference-row", "row-item",
            r["median_item"] if r else None,
            lp=lpips_cells("0 (reference)" if d and d["ref"] == "item" else "-"))
    base_change = "-"
    if d is not None:
        base_change = ("0 (reference)" if d["ref"] == "base"
                       else _fmt_lpips(d["base_to_item"]) + " (inversion)")
    row("base G(z*)" if s["has_item"] else "base G(z)", s["base"], "reference-row", "row-base",
        r["median_base"] if r else None, lp=lpips_cells(base_change))
    for i, v in enumerate(s["variants"]):
        val = v.get(agg)
        changes = [format_change(val - s["base"][agg] if _finite(val) and
                                 _finite(s["base"][agg]) else None, agg)]
        if s["has_item"]:
            changes.append(format_change(val - s["item"][agg] if _finite(val) else None, agg))
        rank_cells = []
        median = None
        if r:
            median = r["median_variants"][i]
            rank_cells = [_rank_change(r["median_ref"], median),
                          _share(r["better"][i], r["count"])]
        css = "variant-row best" if i == s["best"] else "variant-row"
        label = f"Variant {i}" + (" (recommended)" if i == s["best"] else "")
        row(label, v, css, f"variant-row-{i}", median, (changes, rank_cells),
            lp=lpips_cells(_fmt_lpips(d["change"][i]), d["nearest"][i],
                           d["nearest_idx"][i] if d["nearest_idx"] else None) if d else "")
    note = ""
    if r:
        size = s["catalogue_size"]
        users = _plural(r["count"], "target user")
        first = f" (the first {r['count']})" if s["truncated_to"] else ""
        note = (f'<p class="note">Ranks are positions among {size} catalogue items (1 = top), '
                f"median over {users}{first}; for an even count the lower of the two middle "
                f"values. Rank changes compare with the {ref_name}'s median rank.</p>")
    if d is not None:
        note += ('<p class="note" id="lpips-note">Change and nearest other variant are LPIPS '
                 f"distances ({_e(d['metric'])}; 0 = identical, larger = more visibly "
                 "different): how far each variant moved from the "
                 f"{'real item' if d['ref'] == 'item' else 'base image'}, and how distinct it "
                 "is from the most similar other variant. Mean over all pairs of variants: "
                 f"{_e(_fmt_lpips(d['mean_pairwise']))}.</p>")
    return (f'<table id="variants-table"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{note}')


def _rank_change(ref, new) -> str:
    if ref is None or new is None:
        return "n/a"
    d = ref - new
    if d == 0:
        return "no change"
    return f"{_fmt_rank(abs(d))} places {'up' if d > 0 else 'down'}"


def render_report(run: dict) -> str:
    """The HTML page of a loaded run (see `load_run`)."""
    doc, images = run["doc"], run["images"]
    s = _summarise(run)
    agg, k = s["agg"], s["best"]
    when = _dt.datetime.fromtimestamp(run["mtime"], tz=_dt.timezone.utc)
    versions = doc.get("versions") or {}
    targets = doc.get("targets") or {}
    ids = [str(u) for u in targets.get("user_ids") or []]
    shown_ids = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>gis report: {_e(_item_description(doc))}</title>",
           f"<style>{CSS}</style></head><body>",
           '<h1 id="title">Product variants your target users are predicted to prefer</h1>',
           f'<p class="note">gis shift run in <code>{_e(run["dir"].resolve())}</code></p>',
           '<dl class="header" id="header">']
    header = [
        ("Item", _item_description(doc)),
        ("Generator", _model_description(doc.get("generator"))),
        ("Recommender", _model_description(doc.get("recommender"))),
        ("Target users", f"{s['n_targets']}" + (f" ({shown_ids})" if ids else "")),
        ("Optimised aggregation", f"{agg}: {AGGREGATION_LABELS.get(agg, agg)}"),
        ("Variants", str(s["n"])),
        ("Run date", when.strftime("%Y-%m-%d %H:%M UTC") + " (when result.json was written)"),
        ("Versions", ", ".join(f"{a} {b}" for a, b in versions.items()) or "not recorded"),
    ]
    out += [f"<dt>{_e(a)}</dt><dd>{_e(b)}</dd>" for a, b in header]
    out.append("</dl>")

    # recommendation
    best_png = images[f"variant_{k:02d}.png"]
    out.append('<h2>Recommendation</h2><div class="callout" id="recommended">'
               + _img(best_png[0], best_png[1], "recommended-img", "img-recommended",
                      f"Variant {k}")
               + f"<strong>Recommended: Variant {k}.</strong> {_e(_recommendation(s))}</div>")
    out.append('<p class="note" id="caveat">These scores are the recommender\'s predictions, '
               "not measured preferences: a recommender can reward artefacts (noise, blur, odd "
               "colours) that people would not buy. Look at a variant before acting on it. On "
               "gis's simulated world, where the users' true tastes are known, about 6 in 10 "
               "of the recommender's predicted gains were true gains, and variants often "
               "changed the item's category (docs/RESULTS.md, truth checks); "
               "<code>gis shift --identity-weight</code> keeps variants closer to the item."
               "</p>")

    # images
    out.append('<h2>Images</h2><div class="gallery" id="gallery">')
    figures = []
    if "item.png" in images:
        cap = "real item" + (f"<br>{_e(format_score(s['item'].get(agg), agg))}"
                             if s["has_item"] else "")
        figures.append(("item-img", "img-item", "item.png", "", cap))
    base_name = "base G(z*)" if s["has_item"] else "base G(z)"
    figures.append(("base-img", "img-base", "base.png", "",
                    f"{base_name}<br>{_e(format_score(s['base'].get(agg), agg))}"))
    for i in range(s["n"]):
        v = s["v_scores"][i]
        ref = s["item"][agg] if s["has_item"] else s["base"][agg]
        change = format_change(v - ref if _finite(v) and _finite(ref) else None, agg)
        cap = (f"Variant {i}{' (recommended)' if i == k else ''}<br>"
               f"{_e(format_score(v, agg))} ({_e(change)} vs "
               f"{'item' if s['has_item'] else 'base'})")
        figures.append(("variant-img", f"img-variant-{i}", f"variant_{i:02d}.png",
                        " best" if i == k else "", cap))
    for css, img_id, name, extra, cap in figures:
        data, size = images[name]
        out.append(f'<figure class="image{extra}">{_img(data, size, css, img_id, name)}'
                   f"<figcaption>{cap}</figcaption></figure>")
    out.append("</div>")
    w, h = images["base.png"][1]
    out.append(f'<p class="note">Images are {w}&times;{h} pixels, shown enlarged. Scores are the '
               f"recommender's predicted preference of the {_e(s['n_targets'])} target users "
               f"({_e(agg)} aggregation); higher is better.</p>")

    # table
    out.append("<h2>Scores and catalogue ranks</h2>" + _variants_table(s))
    aggs_note = "; ".join(f"<b>{_e(a)}</b>: {_e(AGGREGATION_LABELS[a])}" for a in s["aggs"]
                          if a in AGGREGATION_LABELS)
    out.append(f'<p class="note">Aggregations over the target users: {aggs_note}.</p>')

    # charts
    out.append("<h2>Charts</h2><h3>Variant scores</h3>" + _scores_chart(s))
    if s["dist"] is not None:
        out.append("<h3>Score against change</h3>" + _tradeoff_chart(s))
    out.append("<h3>Catalogue rank per target user</h3>")
    if s["ranks"]:
        out.append(_ranks_chart(s))
        summ = (doc.get("per_user") or {}).get("rank_summary") or {}
        if summ:
            out.append('<p class="note" id="rank-summary">With each user\'s own best variant: '
                       f"median rank {_e(_fmt_rank(summ.get('median_best_variant_rank')))} vs "
                       f"{_e(_fmt_rank(summ.get('median_reference_rank')))} for the "
                       f"{_e(summ.get('reference', 'reference'))}; the best variant ranks higher "
                       "for "
                       f"{_e(_pct(summ.get('share_of_users_whose_best_variant_ranks_higher')))}"
                       " of the target users.</p>")
    else:
        out.append('<p class="note" id="no-ranks">This run has no per-user catalogue ranks '
                   "(result.json per_user.ranks), so there is no rank chart.</p>")
    out.append("<h3>Optimisation history</h3>")
    chart = _history_chart(doc.get("history") or {})
    out.append(chart or '<p class="note" id="no-history">No loss history was recorded.</p>')
    if chart:
        out.append('<p class="note">pref: the optimised aggregation of the variants\' scores '
                   "(maximised); ce, mae: the shift predictor's losses that keep the variants "
                   "distinct; identity: the pull towards the base image (when weighted); total: "
                   "the weighted losses minus the weighted pref (minimised).</p>")

    # settings
    out.append('<h2>Settings and reproducibility</h2><div id="settings">')
    inv = doc.get("inversion") or {}
    secs = doc.get("seconds") or {}
    total = sum(v for v in secs.values() if _finite(v))
    sections = [
        ("Shifting settings", doc.get("settings"), "settings-shift"),
        ("Inversion settings", doc.get("invert_settings"), "settings-invert"),
        ("Inversion quality", {"LPIPS (VGG)": inv.get("lpips_vgg"), "MSE": inv.get("mse")}
         if inv else None, "settings-inversion"),
        ("Seconds", ({**secs, "total": total} if secs else None), "settings-seconds"),
        ("Bridge (generator image to recommender input)", doc.get("bridge"), "settings-bridge"),
        ("Generator", doc.get("generator"), "settings-generator"),
        ("Recommender", doc.get("recommender"), "settings-recommender"),
        ("Versions", versions, "settings-versions"),
        ("Catalogue and targets", {"catalogue items": doc.get("catalogue_size"),
                                   "target users": s["n_targets"]}, "settings-targets"),
    ]
    for title, d, table_id in sections:
        out.append(f"<h3>{_e(title)}</h3>{_kv_table(d, table_id)}")
    if ids:
        out.append(f"<details><summary>Target user ids ({len(ids)}"
                   f"{', truncated' if targets.get('user_ids_truncated') else ''})</summary>"
                   f"<p>{_e(', '.join(ids))}</p></details>")
    files = doc.get("files") or []
    out.append(f"<h3>Files of the run folder</h3><p id=\"files\">{_e(', '.join(map(str, files)))}"
               "</p>")
    out.append(f'<p class="note">Report written by gis {_e(__version__)} (<code>gis report</code>)'
               ". Reproduce the run with the settings above and the same seed.</p>")
    out.append("</div></body></html>\n")
    return "\n".join(out)


def _pct(v) -> str:
    return f"{100 * v:.0f}%" if _finite(v) else "n/a"


# ------------------------------------------------------------------------------ writing
def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 overwrite: bool = False) -> Path:
    """Write the HTML report of a `gis shift` folder; returns its path.

    ``out`` defaults to ``RUN_DIR/report.html``. An existing different file is refused unless
    ``overwrite``; the page is written to a temporary file and renamed into place."""
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out.is_dir():
        raise GisUsageError(f"--out {out} is a folder: pass a file name such as "
                            f"{out / 'report.html'}")
    data = render_report(run).encode("utf-8")
    if out.exists():
        try:
            same = out.read_bytes() == data
        except OSError:
            same = False
        if same:
            return out
        if not overwrite:
            raise GisUsageError(f"report {out} already exists: pass --overwrite to replace it, "
                                "or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.partial-", dir=out.parent)
    except OSError as exc:
        raise GisUsageError(f"cannot write {out} ({exc.strerror}): choose another --out") \
            from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the page (default: RUN_DIR/report.html).")
@click.option("--overwrite", is_flag=True, help="Replace an existing, different report file.")
def report(run_dir: Path, out: Path | None, overwrite: bool) -> None:
    """Write a self-contained HTML report of a `gis shift` output folder for the seller.

    The page shows the item, the base image and every variant, their scores and catalogue
    ranks for the target users, the recommended variant, charts and the run's settings. It
    needs no network and no other file. Prints the path of the page."""
    click.echo(str(write_report(run_dir, out, overwrite=overwrite)))

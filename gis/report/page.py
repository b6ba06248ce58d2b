"""The report page: a Jinja2 template (templates/report.html.j2, autoescaped) filled from a run,
and writing it.

Everything is inline: the images are base64 PNG data URIs, the charts inline SVG from
matplotlib (charts.py), the style sheet (templates/report.css) in the page; there is no
JavaScript and nothing is fetched from the network. The page depends only on the run folder
(its date is result.json's modification time), so writing the report twice gives the same
bytes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import GisUsageError
from . import summary as sm
from .run import Run, load_run


@dataclass
class _Image:
    src: str  # data URI
    width: int
    height: int
    shown_width: int
    shown_height: int


def _image(data: bytes, size: tuple[int, int]) -> _Image:
    """An embedded PNG, shown at 128-256 px wide (small images enlarged, pixels kept sharp)."""
    w, h = size
    shown = max(128, min(w, 256))
    return _Image(src="data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                  width=w, height=h, shown_width=shown, shown_height=round(shown * h / w))


@dataclass
class _Row:
    """One row of the scores table."""

    id: str
    css: str
    label: str
    scores: dict
    changes: list[str]  # vs base (and vs the real item)
    median: float | None = None
    rank_cells: list[str] = field(default_factory=lambda: ["-", "-"])
    lpips: tuple[str, str] = ("-", "-")  # change, nearest other variant
    checks: str = "-"  # "passes", or why the variant fails the checks (gis.engine.checks)


def _rows(s: sm.Summary) -> list[_Row]:
    r, d, agg = s.ranks, s.dist, s.agg
    dashes = ["-", "-"] if s.has_item else ["-"]
    rows = []
    if s.has_item:
        rows.append(_Row("row-item", "reference-row", "real item", s.item, dashes,
                         r.median_item if r else None,
                         lpips=("0 (reference)" if d and d.ref == "item" else "-", "-")))
    base_change = "-"
    if d is not None:
        base_change = ("0 (reference)" if d.ref == "base"
                       else sm.format_lpips(d.base_to_item) + " (inversion)")
    rows.append(_Row("row-base", "reference-row", "base G(z*)" if s.has_item else "base G(z)",
                     s.base, dashes, r.median_base if r else None, lpips=(base_change, "-")))
    for i, v in enumerate(s.variants):
        val = v.get(agg)
        base = s.base.get(agg)
        changes = [sm.format_change(val - base if sm.finite(val) and sm.finite(base) else None,
                                    agg)]
        if s.has_item:
            changes.append(sm.format_change(val - s.item[agg] if sm.finite(val) else None, agg))
        rec = i == s.recommended
        row = _Row(f"variant-row-{i}", "variant-row best" if rec else "variant-row",
                   f"Variant {i}" + (" (recommended)" if rec else ""), v, changes)
        row.checks = s.check_text(i)
        if r:
            row.median = r.median_variants[i]
            row.rank_cells = [sm.rank_change(r.median_ref, row.median),
                              sm.format_share(r.better[i], r.count)]
        if d is not None:
            j = d.nearest_idx[i] if d.nearest_idx else None
            near = sm.format_lpips(d.nearest[i]) + (f" (Variant {j})" if j is not None else "")
            row.lpips = (sm.format_lpips(d.change[i]), near)
        rows.append(row)
    return rows


def _figures(s: sm.Summary, images: dict) -> list[dict]:
    """The gallery: item, base and every variant with a two-line caption."""
    agg, figures = s.agg, []
    if "item.png" in images:
        figures.append({"css": "item-img", "id": "img-item", "name": "item.png",
                        "caption": ("real item", sm.format_score(s.item.get(agg), agg)
                                    if s.has_item else "")})
    figures.append({"css": "base-img", "id": "img-base", "name": "base.png",
                    "caption": ("base G(z*)" if s.has_item else "base G(z)",
                                sm.format_score(s.base.get(agg), agg))})
    ref = s.reference_score
    for i, v in enumerate(s.v_scores):
        change = sm.format_change(v - ref if sm.finite(v) and sm.finite(ref) else None, agg)
        figures.append({"css": "variant-img", "id": f"img-variant-{i}",
                        "name": f"variant_{i:02d}.png", "best": i == s.recommended,
                        "caption": (f"Variant {i}" + (" (recommended)" if i == s.recommended
                                                      else ""),
                                    f"{sm.format_score(v, agg)} ({change} vs "
                                    f"{'item' if s.has_item else 'base'})"),
                        "fails": "" if s.reasons is None or not s.reasons[i]
                        else "not recommended: " + s.check_text(i)})
    for f in figures:
        f.setdefault("best", False)
        f.setdefault("fails", "")
        f["image"] = _image(*images[f["name"]])
    return figures


@functools.cache
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("gis.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(score=sm.format_score, rank=sm.format_rank, lpips=sm.format_lpips,
                       value=sm.format_value, percent=sm.format_percent)
    return env


def _weights_text(info: dict | None) -> str | None:
    """A model's weights file in words: name, format, layout, epoch and sha256."""
    if not info or not info.get("checkpoint"):
        return None
    facts = [str(info[k]) if k == "format" else f"{k} {info[k]}"
             for k in ("format", "layout", "epoch") if info.get(k) is not None]
    sha = f"; sha256 {info['sha256']}" if info.get("sha256") else ""
    return f"{info['checkpoint']}" + (f" ({', '.join(facts)})" if facts else "") + sha


def _provenance_rows(rec) -> list[tuple[str, str]]:
    """What produced the run, in words (result.json ``provenance``, the models' weights):
    [] for records written before gis recorded it."""
    p = rec.provenance
    rows = [(f"{role.capitalize()} weights", _weights_text(info) or "not recorded")
            for role, info in (("generator", rec.generator), ("recommender", rec.recommender))]
    if p is None:
        return rows + [("Device, operators, threads", "not recorded (result.json written "
                                                      "before gis recorded them)")]
    ops = p.ops or {}
    impl = ops.get("implementation")
    impl_text = {"native": "native (compiled gis._C C++/CUDA kernels)",
                 "reference": "reference (pure PyTorch)"}.get(impl, str(impl))
    if ops.get("fallback_reason"):
        impl_text += f": {ops['fallback_reason']}"
    t = p.threads
    env = ", ".join(f"{k}={v}" for k, v in t.environment.items())
    rows += [("Device", p.device + (f" ({p.device_name})" if p.device_name else "")),
             ("Operators", f"{impl_text}, selected by {ops.get('selected_by', 'auto')}"),
             ("torch threads", f"{t.intra_op} intra-op, {t.inter_op} inter-op"
              + (f" on {t.cpu_count} CPUs" if t.cpu_count else "") + (f" ({env})" if env else "")),
             ("Numerics", ", ".join(f"{k} {sm.format_value(v)}" for k, v in p.numerics.items())
              or "not recorded")]
    return rows


def render_report(run: Run) -> str:
    """The HTML page of a loaded run (see `load_run`)."""
    from markupsafe import Markup

    from . import charts

    rec, images = run.record, run.images
    s = sm.summarise(rec)
    when = _dt.datetime.fromtimestamp(run.mtime, tz=_dt.timezone.utc)
    ids = [str(u) for u in rec.targets.user_ids]
    shown_ids = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
    item_text = sm.item_description(rec)
    header = [
        ("Item", item_text),
        ("Generator", sm.model_description(rec.generator)),
        ("Recommender", sm.model_description(rec.recommender)),
        ("Target users", f"{s.n_targets}" + (f" ({shown_ids})" if ids else "")),
        ("Optimised aggregation", f"{s.agg}: {sm.AGGREGATION_LABELS.get(s.agg, s.agg)}"),
        ("Variants", str(s.n)),
        ("Run date", when.strftime("%Y-%m-%d %H:%M UTC") + " (when result.json was written)"),
        ("Versions", ", ".join(f"{a} {b}" for a, b in rec.versions.items()) or "not recorded"),
    ]
    inv, secs = rec.inversion, rec.seconds or {}
    total = sum(v for v in secs.values() if sm.finite(v))
    settings = [
        ("Shifting settings", rec.settings, "settings-shift"),
        ("Inversion settings", rec.invert_settings, "settings-invert"),
        ("Inversion quality", {"LPIPS (VGG)": inv.lpips_vgg, "MSE": inv.mse} if inv else None,
         "settings-inversion"),
        ("Seconds", ({**secs, "total": total} if secs else None), "settings-seconds"),
        ("Bridge (generator image to recommender input)", rec.bridge, "settings-bridge"),
        ("Generator", rec.generator, "settings-generator"),
        ("Recommender", rec.recommender, "settings-recommender"),
        ("Dataset", rec.dataset, "settings-dataset"),
        ("Versions", rec.versions, "settings-versions"),
        ("Catalogue and targets", {"catalogue items": rec.catalogue_size,
                                   "target users": s.n_targets}, "settings-targets"),
    ]
    tradeoff = charts.tradeoff_chart(s) if s.dist is not None else None
    history = charts.history_chart(rec.history)
    chart_svgs = {"scores": Markup(charts.scores_chart(s)),
                  "tradeoff": None if tradeoff is None else Markup(tradeoff),
                  "ranks": Markup(charts.ranks_chart(s)) if s.ranks else None,
                  "history": Markup(history) if history else None}
    r = s.ranks
    return _environment().get_template("report.html.j2").render(
        s=s, run_dir=str(run.dir.resolve()), item_text=item_text, header=header,
        recommended=_image(*images[f"variant_{s.best:02d}.png"]),
        recommendation=sm.recommendation(s), headline=sm.headline(s),
        checks_sentence=sm.checks_sentence(s),
        base_warning=sm.base_warning(s.checks.base if s.checks is not None else None),
        beats_reference=sm.beats_reference(s), figures=_figures(s, images),
        base_size=images["base.png"][1], rows=_rows(s),
        rank_ref="item" if (r and r.ref_key == "item") else "base",
        rank_users=sm.plural(r.count, "target user") if r else "",
        aggregation_notes=[(a, sm.AGGREGATION_LABELS[a]) for a in s.aggs
                           if a in sm.AGGREGATION_LABELS],
        charts=chart_svgs,
        rank_summary=rec.per_user.rank_summary if rec.per_user else None,
        settings=settings, provenance=_provenance_rows(rec), user_ids=ids, ids_truncated=rec.targets.user_ids_truncated,
        files=[str(f) for f in rec.files], gis_version=__version__)


REPORT_MARK = b'<meta name="generator" content="gis report">'


def _written_by_gis(path: Path) -> bool:
    """Whether ``path`` is a report page gis wrote (its marker in the first 4 KiB)."""
    try:
        with open(path, "rb") as f:
            return REPORT_MARK in f.read(4096)
    except OSError:
        return False


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 overwrite: bool = False) -> Path:
    """Write the HTML report of a `gis shift` folder; returns its path.

    ``out`` defaults to ``RUN_DIR/report.html``. An existing different file is refused unless
    ``overwrite`` and it is a page gis wrote (``<meta name="generator" content="gis
    report">``): a file of the user's is never replaced. The same page again is a no-op; the
    page is written atomically (gis.io.write_bytes). Raises GisUsageError with a one-line
    message."""
    from ..io import write_bytes

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
        if not _written_by_gis(out):
            raise GisUsageError(f"{out} exists and is not a report gis wrote: gis does not "
                                "replace it even with --overwrite; choose another --out")
    try:
        return write_bytes(out, data)
    except OSError as exc:
        raise GisUsageError(f"cannot write {out} ({exc.strerror}): choose another --out") \
            from None

"""The report's charts: matplotlib figures written as SVG, to be placed inline in the page.

matplotlib draws; :class:`_Chart` then makes its SVG fit to live inside an HTML page that
fetches nothing: it gives the root element the chart's id, class, accessible title and pixel
size, drops matplotlib's metadata, style sheet and clip paths (the axes limits already hold
every mark, and ``url(...)`` references are kept out of the page), prefixes every id with the
chart's id (four charts share one page) and gives marked artists a class, ``data-*``
attributes and a tooltip (``<title>``), so that the page, its tests and a reader's browser can
find each bar, point and user.

Text stays text (``svg.fonttype: none``) in the page's font; output is byte-for-byte
reproducible (fixed hash salt, no date).
"""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .summary import (
    Summary,
    finite,
    format_lpips,
    format_score,
    format_share,
)

BAR, BEST, BETTER, WORSE, NEUTRAL = "#4c78a8", "#f58518", "#2ca02c", "#d62728", "#888888"
HISTORY_SERIES = (("total", "#222222"), ("pref", "#d95f02"), ("ce", "#1b9e77"),
                  ("mae", "#7570b3"), ("identity", "#e7298a"))
OTHER_COLOURS = ("#66a61e", "#e6ab02", "#a6761d", "#1f78b4", "#b15928")  # plugins' loss terms
SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
RC = {
    "svg.fonttype": "none", "svg.hashsalt": "gis-report", "font.size": 12,
    "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 11,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "sans-serif"],
    "axes.edgecolor": "#444444", "axes.labelcolor": "#555555",
    "xtick.color": "#333333", "ytick.color": "#333333", "axes.spines.top": False,
    "axes.spines.right": False, "grid.color": "#e5e5e5", "axes.axisbelow": True,
}


class _Chart:
    """One figure and the marks (artist -> class, data attributes, tooltip) of its SVG."""

    def __init__(self, chart_id: str, title: str, width: int, height: int):
        self.chart_id, self.title = chart_id, title
        self.width, self.height = width, height
        self.marks: dict[str, tuple[dict, str | None]] = {}
        self.groups: list[tuple[list[str], dict, str | None]] = []

    def __enter__(self) -> _Chart:
        """Draw inside ``with``: the report's style (``RC``) holds while drawing and saving."""
        import matplotlib
        from matplotlib.figure import Figure

        self._rc = matplotlib.rc_context(RC)
        self._rc.__enter__()
        self.fig = Figure(figsize=(self.width / 72, self.height / 72), dpi=72)
        return self

    def __exit__(self, *exc) -> None:
        self._rc.__exit__(*exc)

    def axes(self, left: int = 72, right: int = 24, top: int = 24, bottom: int = 60):
        """The plot area, with margins in pixels (room for tick labels, titles, legends)."""
        w, h = self.width, self.height
        return self.fig.add_axes((left / w, bottom / h, 1 - (left + right) / w,
                                  1 - (top + bottom) / h))

    def mark(self, artist, css: str, tip: str | None = None, **data) -> str:
        """Give ``artist`` a class, ``data-*`` attributes and a tooltip in the SVG."""
        gid = f"gis-mark-{len(self.marks)}"
        artist.set_gid(gid)
        attrs = {"class": css, **{f"data-{k}": str(v) for k, v in data.items()}}
        self.marks[gid] = (attrs, tip)
        return gid

    def group(self, artists: Iterable, css: str, tip: str | None = None, **data) -> None:
        """Wrap several artists in one ``<g>`` with a class, data attributes and a tooltip."""
        gids = []
        for a in artists:
            gids.append(f"gis-part-{len(self.groups)}-{len(gids)}")
            a.set_gid(gids[-1])
        self.groups.append((gids, {"class": css, **{f"data-{k}": str(v)
                                                       for k, v in data.items()}}, tip))

    def svg(self) -> str:
        """The figure as an SVG element for the page (see the module docstring)."""
        buf = io.StringIO()
        self.fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        return self._adapt(buf.getvalue())

    # -------------------------------------------------------------------------- SVG work
    def _adapt(self, text: str) -> str:
        ET.register_namespace("", SVG_NS)
        ET.register_namespace("xlink", XLINK_NS)
        root = ET.fromstring(text)
        q = f"{{{SVG_NS}}}"
        for parent in list(root.iter()):
            for child in list(parent):
                if child.tag in (f"{q}metadata", f"{q}style", f"{q}clipPath"):
                    parent.remove(child)
        for el in root.iter():
            el.attrib.pop("clip-path", None)
        parents = {child: parent for parent in root.iter() for child in parent}
        by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
        for gids, attrs, tip in self.groups:
            parts = [by_id[g] for g in gids if g in by_id]
            if not parts:
                continue
            holder = parents[parts[0]]
            g = ET.Element(f"{q}g", attrs)
            holder.insert(list(holder).index(parts[0]), g)
            if tip:
                ET.SubElement(g, f"{q}title").text = tip
            for p in parts:
                parents[p].remove(p)
                g.append(p)
                p.attrib.pop("id")
        for gid, (attrs, tip) in self.marks.items():
            el = by_id.get(gid)
            if el is None:
                continue
            del el.attrib["id"]
            el.attrib.update(attrs)
            if tip:
                title = ET.Element(f"{q}title")
                title.text = tip
                el.insert(0, title)
        prefix = f"{self.chart_id}-"
        for el in root.iter():
            if el.get("id"):
                el.set("id", prefix + el.get("id"))
            ref = el.get(f"{{{XLINK_NS}}}href")
            if ref and ref.startswith("#"):
                el.set(f"{{{XLINK_NS}}}href", "#" + prefix + ref[1:])
        for key in ("version",):
            root.attrib.pop(key, None)
        root.attrib.update({"id": self.chart_id, "class": "chart", "width": str(self.width),
                            "height": str(self.height), "role": "img",
                            "aria-label": self.title})
        title = ET.Element(f"{q}title")
        title.text = self.title
        root.insert(0, title)
        out = ET.tostring(root, encoding="unicode")
        return re.sub(r"\s*\n\s*", "\n", out).strip()


def _score_axis(ax, agg: str) -> float:
    """Label the y axis with the ``agg`` score; returns the factor scores are drawn at
    (coverage, a share, is drawn in percent)."""
    ax.set_ylabel(f"{agg} score" + (" (%)" if agg == "coverage" else ""))
    ax.grid(axis="y")
    return 100.0 if agg == "coverage" else 1.0


def _pad(lo: float, hi: float, share: float = 0.12) -> tuple[float, float]:
    pad = (hi - lo) * share or max(abs(hi) * 0.1, 1.0)
    return lo - pad, hi + pad


# ------------------------------------------------------------------------------ the charts
def scores_chart(s: Summary) -> str:
    """(a) every variant's score as a bar, with dashed reference lines for the base and the
    item; the recommended variant in orange."""
    agg, n = s.agg, s.n
    unit = " (%)" if agg == "coverage" else ""
    with _Chart("chart-scores", f"Score of every variant ({agg}{unit}) with the base and "
                "item as reference lines", max(640, 260 + 90 * n), 340) as chart:
        ax = chart.axes(right=150)
        scale = _score_axis(ax, agg)
        refs = [("base G(z*)" if s.has_item else "base G(z)", s.base.get(agg), NEUTRAL)]
        if s.has_item:
            refs.append(("item", s.item[agg], "#000000"))
        refs = [(name, v, c) for name, v, c in refs if finite(v)]
        shown = ([0.0] + [v * scale for v in s.v_scores if finite(v)]
                 + [v * scale for _, v, _ in refs])
        ax.set_ylim(*_pad(min(shown), max(shown)))
        for i, v in enumerate(s.v_scores):
            if not finite(v):
                continue
            (bar,) = ax.bar(i, v * scale, width=0.6,
                            color=BEST if i == s.recommended else BAR)
            chart.mark(bar, "bar", f"Variant {i}: {format_score(v, agg)}", variant=i)
            ax.annotate(format_score(v, agg), (i, v * scale), xytext=(0, 4 if v >= 0 else -4),
                        textcoords="offset points", ha="center", va="bottom" if v >= 0 else "top",
                        fontsize=11)
        ax.axhline(0, color="#444444", linewidth=0.8)
        labels = []
        for name, v, colour in refs:
            line = ax.axhline(v * scale, color=colour, linewidth=1.5, linestyle=(0, (6, 4)))
            chart.mark(line, "ref-line", f"{name}: {format_score(v, agg)}")
            labels.append((v * scale, f"{name} {format_score(v, agg)}", colour))
        _side_labels(ax, labels)
        ax.set_xticks(range(n), [f"Variant {i}" for i in range(n)])
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_xlabel("higher is better; orange = recommended variant"
                      if s.recommended is not None else
                      "higher is better; no variant passes the checks: none is recommended")
        return chart.svg()


def _side_labels(ax, labels: list[tuple[float, str, str]]) -> None:
    """Labels at the right end of horizontal reference lines, pushed apart when close."""
    lo, hi = ax.get_ylim()
    gap = (hi - lo) * 0.07
    placed: list[float] = []
    for y, text, colour in sorted(labels):
        y_text = max([y] + [p + gap for p in placed])
        placed.append(y_text)
        ax.annotate(text, (1.0, y), xytext=(1.01, y_text), xycoords=("axes fraction", "data"),
                    textcoords=("axes fraction", "data"), color=colour, va="center",
                    fontsize=11, annotation_clip=False)


def tradeoff_chart(s: Summary) -> str:
    """(b) score against change: each variant's score over its LPIPS distance to the
    reference, so the seller sees what each gain costs in change (up = preferred, left =
    closer). Empty when no variant has both numbers."""
    agg, d = s.agg, s.dist
    ref_name = "item" if d.ref == "item" else ("base G(z*)" if s.has_item else "base G(z)")
    ref_score = (s.item if d.ref == "item" else s.base).get(agg)
    pts = [(i, d.change[i], s.v_scores[i]) for i in range(s.n)
           if finite(s.v_scores[i]) and finite(d.change[i])]
    if not pts:
        return ""
    unit = " (%)" if agg == "coverage" else ""
    with _Chart("chart-tradeoff", f"Score ({agg}{unit}) against change (LPIPS to the "
                f"{ref_name}) of every variant", 760, 400) as chart:
        ax = chart.axes(top=44)
        scale = _score_axis(ax, agg)
        ys = [v * scale for _, _, v in pts] + ([ref_score * scale] if finite(ref_score) else [])
        ax.set_ylim(*_pad(min(ys), max(ys)))
        ax.set_xlim(0, max(c for _, c, _ in pts) * 1.15 or 0.1)
        ax.grid(axis="x")
        if finite(ref_score):
            ax.axhline(ref_score * scale, color="#000000", linewidth=1, linestyle=(0, (6, 4)))
            (dot,) = ax.plot([0], [ref_score * scale], "o", color="#000000", markersize=10,
                             clip_on=False)
            chart.mark(dot, "ref-point", f"{ref_name}: {format_score(ref_score, agg)}")
            ax.annotate(ref_name, (0, ref_score * scale), xytext=(8, 6),
                        textcoords="offset points", fontsize=11)
        for i, change, v in pts:
            colour = (BEST if i == s.recommended else BETTER if i == d.closest_gain
                      else BAR)
            (dot,) = ax.plot([change], [v * scale], "o", color=colour, markersize=11)
            label = ax.annotate(str(i), (change, v * scale), xytext=(8, -4),
                                textcoords="offset points", fontsize=11)
            chart.group([dot, label], "tradeoff-point", f"Variant {i}: {format_score(v, agg)}, "
                        f"LPIPS {format_lpips(change)}", variant=i)
        legend = [(BEST, "recommended")] if s.recommended is not None else []
        if d.closest_gain is not None:
            legend.append((BETTER, f"smallest change that beats the {ref_name}"))
        for colour, text in legend + [(BAR, "other variants")]:
            ax.plot([], [], "o", color=colour, label=text)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=3, frameon=False,
                  handletextpad=0.2, columnspacing=1.2, borderaxespad=0)
        ax.set_xlabel(f"change: LPIPS to the {ref_name} (0 = identical); up is preferred, left is "
                      "closer")
        return chart.svg()


def ranks_chart(s: Summary) -> str:
    """(c) each target user's catalogue rank of the reference and of the recommended variant
    (when none passes the checks: of the best-scoring one, said so in the title), users sorted
    by the change (1 = top of the catalogue, drawn at the top)."""
    r, k = s.ranks, s.best
    which = "" if s.recommended is not None else " (the best-scoring; not recommended)"
    ref_name = "item" if r.ref_key == "item" else "base G(z)"
    pairs = sorted(zip(r.users, r.ref, r.variants[k], strict=True),
                   key=lambda p: (p[2] - p[1], p[1]))
    m = len(pairs)
    size = s.catalogue_size if finite(s.catalogue_size) else None
    hi = max([size or 1] + [max(a, b) for _, a, b in pairs])
    with _Chart("chart-ranks", f"Catalogue rank of the {ref_name} and of Variant {k}{which} "
                "for each target user (1 = top of the catalogue)",
                max(720, min(1040, 200 + 44 * m)), 380) as chart:
        ax = chart.axes(top=44, bottom=64 if m <= 20 else 44)
        ax.set_ylim(hi + (hi - 1) * 0.04, 1 - (hi - 1) * 0.04)  # rank 1 at the top
        ax.set_xlim(-0.6, m - 0.4)
        ax.set_ylabel("catalogue rank (1 = top)")
        ax.grid(axis="y")
        dot = 7 if m <= 60 else 4
        for j, (user, a, b) in enumerate(pairs):
            colour = BETTER if b < a else WORSE if b > a else NEUTRAL
            (line,) = ax.plot([j, j], [a, b], color=colour, linewidth=2)
            (p_ref,) = ax.plot([j], [a], "o", color=NEUTRAL, markersize=dot)
            (p_new,) = ax.plot([j], [b], "o", color=colour, markersize=dot)
            chart.group([line, p_ref, p_new], "user-rank", f"{user}: {ref_name} rank {a:.0f}, "
                        f"Variant {k} rank {b:.0f}", user=user)
        if m <= 20:
            ax.set_xticks(range(m), [u for u, _, _ in pairs], parse_math=False)
        else:
            ax.set_xticks([])
        yt = [t for t in ax.get_yticks() if 1 <= t <= hi]
        ax.set_yticks(sorted({1, *yt}))
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0f}")
        for colour, text in ((NEUTRAL, f"{ref_name} rank"), (BETTER, f"Variant {k} rank (better)"),
                             (WORSE, f"Variant {k} rank (worse)")):
            ax.plot([], [], "o", color=colour, label=text)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=3, frameon=False,
                  handletextpad=0.2, columnspacing=1.2, borderaxespad=0)
        better = sum(b < a for _, a, b in pairs)
        ax.set_xlabel(f"target users, sorted by rank change; Variant {k} ranks better for "
                      f"{format_share(better, m)}")
        return chart.svg()


def history_chart(history: dict | None) -> str | None:
    """(d) the loss terms per shifting step (the paper's in fixed colours, then any other
    recorded term, e.g. a plugin's); None when nothing finite was recorded."""
    history = history or {}
    known = dict(HISTORY_SERIES)
    names = [n for n in known if n in history] + [n for n in history if n not in known]
    others = iter(OTHER_COLOURS * (1 + len(names) // len(OTHER_COLOURS)))
    series = []
    for name in names:
        vals = history[name]
        if not isinstance(vals, list) or not vals:
            continue
        if name != "total" and not any(finite(v) and v != 0 for v in vals):
            continue  # a term weighted 0
        series.append((name, known.get(name) or next(others), vals))
    if not any(finite(v) for _, _, vals in series for v in vals):
        return None
    steps = max(len(vals) for _, _, vals in series)
    with _Chart("chart-history", "Loss terms per shifting step", 760, 360) as chart:
        ax = chart.axes(right=170)
        ax.set_ylabel("loss")
        ax.set_xlabel("shifting step")
        ax.grid(axis="y")
        for name, colour, vals in series:
            xs = [i + 1 for i, v in enumerate(vals) if finite(v)]
            ys = [v for v in vals if finite(v)]
            last = ys[-1] if ys else math.nan
            (line,) = ax.plot(xs, ys, color=colour, linewidth=2, markersize=4,
                              marker="o" if steps <= 40 else None,
                              label=f"{name} {last:.3f}" if ys else f"{name} n/a")
            chart.mark(line, "series", f"{name}: last {last:.3f}" if ys else name, series=name)
        if steps <= 12:
            ax.set_xticks(range(1, steps + 1))
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                  borderaxespad=0)
        return chart.svg()

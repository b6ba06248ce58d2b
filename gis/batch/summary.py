"""A batch's summary: ``summary.csv`` (one row per task) and ``index.html`` (one page ranking
the items by gain and linking every task's report), both rebuilt from the output folder alone.

The columns of summary.csv (docs/BATCH.md):

========================  =====================================================================
task, item, category      the task's id, its item (dataset id or image file name) and category
target, n_users           the target in words and how many users it held
status                    ``done`` or ``failed``
recommended_variant       the best-scoring variant that passes the checks (empty: none passes)
best_gain                 its optimised score minus the real item's, in the aggregation's
                          units
reference, aggregation    what ``best_gain`` is measured against, and the aggregation
beats_reference           whether ``best_gain`` > 0: gis recommends changing the item
realistic, same_item,     how many of the n variants pass the realism check, the identity
same_category, distinct,  (silhouette) check, the category check, the distinctness check, and
passing                   all of them ("k/n"; empty: that check was not run)
median_rank_reference,    the target users' median catalogue rank (1 = top) of the reference
median_rank_recommended   and of the recommended variant
rank_change               places the recommended variant moves up the median rank (negative:
                          down)
lpips_to_reference        how far the recommended variant is from the reference (LPIPS)
inversion_lpips           how well the generator reproduced the item: the inversion's final
                          LPIPS (VGG) between G(z*) and the item; a high value means the
                          variants start from something else than the item
seconds                   the task's engine seconds (result.json ``seconds``, summed)
error                     a failed task's one-line error
========================  =====================================================================
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..io import write_bytes, write_text
from .manifest import BatchTask

COLUMNS = ("task", "item", "category", "target", "n_users", "status", "recommended_variant",
           "best_gain", "reference", "aggregation", "beats_reference", "realistic", "same_item",
           "same_category", "distinct", "passing", "median_rank_reference", "median_rank_recommended",
           "rank_change", "lpips_to_reference", "inversion_lpips", "base_is_item", "seconds",
           "error")


def _count(flags) -> str:
    if flags is None:
        return ""
    flags = [bool(f) for f in flags]
    return f"{sum(flags)}/{len(flags)}"


def task_row(task: BatchTask, folder: Path, seed: int = 0) -> dict:
    """The summary row of a finished task, read from its `gis shift` folder."""
    from ..record import ShiftRecord, finite
    from ..report.summary import summarise

    record = ShiftRecord.from_json(json.loads((folder / "result.json").read_text("utf-8")))
    s = summarise(record)
    k = s.recommended
    row = {"task": task.id, "item": task.item, "category": (record.item or {}).get("category"),
           "target": task.target_text(seed), "n_users": record.targets.count,
           "status": "done",
           "reference": "item" if s.has_item else "base", "aggregation": s.agg}
    checks = record.checks
    if checks is not None:
        n = len(checks.passed)
        near = (checks.distinct or {}).get("near_copy_of")
        row.update(realistic=_count((checks.realism or {}).get("passed")),
                   same_item=_count((checks.identity or {}).get("passed")),
                   same_category=_count((checks.category or {}).get("passed")),
                   distinct=_count(None if near is None else [c is None for c in near]),
                   passing=f"{sum(map(bool, checks.passed))}/{n}")
    if k is not None:
        gain = s.v_scores[k] - s.reference_score
        row.update(recommended_variant=k, best_gain=round(gain, 6) if finite(gain) else "",
                   beats_reference=bool(finite(gain) and gain > 0))
        r = s.ranks
        if r is not None and r.median_ref is not None and r.median_variants[k] is not None:
            row.update(median_rank_reference=r.median_ref,
                       median_rank_recommended=r.median_variants[k],
                       rank_change=r.median_ref - r.median_variants[k])
        if s.dist is not None and finite(s.dist.change[k]):
            row["lpips_to_reference"] = round(s.dist.change[k], 6)
    else:
        row["beats_reference"] = False
    base = checks.base if checks is not None else None
    if base is not None:
        row["base_is_item"] = bool(base.get("faithful"))
    inv = record.inversion
    if inv is not None and finite(inv.lpips_vgg):
        row["inversion_lpips"] = round(inv.lpips_vgg, 6)
    secs = [v for v in (record.seconds or {}).values() if finite(v)]
    row["seconds"] = round(sum(secs), 2) if secs else ""
    return {c: "" if row.get(c) is None else row.get(c, "") for c in COLUMNS}


def failed_row(task: BatchTask, entry: dict, seed: int = 0) -> dict:
    row = {"task": task.id, "item": task.item, "category": entry.get("category"),
           "target": task.target_text(seed), "status": "failed",
           "error": entry.get("error", ""), "seconds": round(entry.get("seconds") or 0, 2)}
    return {c: "" if row.get(c) is None else row[c] for c in COLUMNS}


def rows(out: Path, tasks: list[BatchTask], failed: dict[str, dict], seed: int = 0
         ) -> list[dict]:
    """One row per task that finished or failed, the items with the highest ``best_gain``
    first (tasks without a recommended variant, then failed ones, last; ties in task order).
    ``seed``: the batch's seed (the random-users targets' text)."""
    out_rows = []
    for t in tasks:
        folder = out / "tasks" / t.id
        if (folder / "result.json").is_file():
            out_rows.append(task_row(t, folder, seed))
        elif t.id in failed:
            out_rows.append(failed_row(t, failed[t.id], seed))

    def key(r):
        gain = r["best_gain"]
        return (r["status"] != "done", gain == "", -(gain if gain != "" else -math.inf))

    return sorted(out_rows, key=key)


def write_summary_csv(path: Path, table: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return write_text(path, buf.getvalue())


def write_index(out: Path, table: list[dict], *, title: str, header: list[tuple[str, str]],
                pending: int) -> Path:
    """``OUT/index.html``: every task ranked by gain, with its item, recommended variant and a
    link to its report (relative links: the page lives in OUT and works when OUT is moved)."""
    from ..report.page import _environment

    entries = []
    for r in table:
        tid = r["task"]
        folder = Path("tasks") / tid
        k = r["recommended_variant"]
        entries.append({
            **r, "item_img": (folder / "item.png").as_posix()
            if (out / folder / "item.png").is_file() else (folder / "base.png").as_posix(),
            "variant_img": (folder / f"variant_{int(k):02d}.png").as_posix() if k != "" else None,
            "report": (Path("reports") / f"{tid}.html").as_posix()
            if (out / "reports" / f"{tid}.html").is_file() else None})
    html = _environment().get_template("batch_index.html.j2").render(
        title=title, header=header, rows=entries, pending=pending,
        done=sum(r["status"] == "done" for r in table),
        failed=sum(r["status"] == "failed" for r in table),
        gaining=sum(r["beats_reference"] is True for r in table))
    return write_bytes(out / "index.html", html.encode("utf-8"))

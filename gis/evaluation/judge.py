"""Judge one `gis shift` run folder with its dataset's hidden ground truth.

    python -m gis.evaluation.judge RUN_DIR [--json]

Exit status: 0 when the recommended variant is acceptable, 1 when it is not or no variant
was recommended, 2 when the folder cannot be judged (so a script can test the verdict).

For a run on a dataset that defines a ground truth (fashion-colors: simulated users whose
tastes are known, ``gis.interfaces.GroundTruth``), it reads ``result.json`` and the saved PNGs
and says, per variant: the category the dataset's domain classifier reads, whether the realism
truth accepts it, and the target users' true utility gain over the base image and over the
real item. It judges the recommended variant (``checks.recommended``) the way docs/ENGINE.md's
acceptance criteria do: realistic, keeps the item's category, a true gain over the real item.

This is an evaluation tool: the engine never sees any of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import GisUsageError


def judge_run(run_dir: str | Path, *, device: str = "cpu") -> dict:
    """The truth's verdict on run ``run_dir`` (see the module docstring).

    Returns ``{"item_category", "variants": [{"index", "category", "keeps_category",
    "realistic", "true_gain_vs_base", "true_gain_vs_item", "recommender_gain_vs_item"}],
    "recommended", "recommended_verdict": {"realistic", "keeps_category", "true_gain"} |
    None}``; true gains are the mean over the target users of the dataset's utility (its
    units). Raises GisUsageError for a folder that is not a shift run on a dataset with a
    ground truth, or whose users were truncated in the record.
    """
    from ..data import load_dataset
    from ..images import load_image
    from ..record import RecordError, ShiftRecord

    run = Path(run_dir)
    try:
        record = ShiftRecord.from_json(json.loads((run / "result.json").read_text()))
    except (OSError, ValueError, RecordError) as exc:
        raise GisUsageError(f"{run}: not a gis shift run ({exc})") from None
    name = (record.dataset or {}).get("name")
    dataset = load_dataset(name)
    if not dataset.has_ground_truth:
        raise GisUsageError(f"dataset {name!r} defines no ground truth: nothing to judge with")
    if record.targets.user_ids_truncated:
        raise GisUsageError(f"{run}: the record lists only the first 1000 target users")
    truth = dataset.ground_truth
    clf = truth.category_classifier(device=device)
    row = {u: k for k, u in enumerate(dataset.user_ids)}
    unknown = [u for u in record.targets.user_ids if u not in row]
    if unknown:
        raise GisUsageError(f"{run}: target user(s) {unknown[:3]} are not users of dataset "
                            f"{name!r}: the record does not belong to this dataset")
    users = np.asarray([row[u] for u in record.targets.user_ids])
    n = len(record.scores.variants)
    names = ["base.png"] + [f"variant_{i:02d}.png" for i in range(n)]
    has_item = (run / "item.png").is_file()
    names = (["item.png"] if has_item else []) + names
    res = record.bridge["generator_resolution"] if record.bridge else 32
    x01 = torch.cat([load_image(run / f, size=res, value_range=(0.0, 1.0)) for f in names])
    cats = clf.predict_proba(x01 * 2 - 1).argmax(1).cpu().numpy()
    util = truth.utility(x01 * 2 - 1, users, cats).mean(0)
    ok = np.asarray(truth.realism(x01, value_range=(0.0, 1.0)).realistic, dtype=bool)
    off = 1 if has_item else 0
    # the category the run kept: a conditional generator's (record.category), else the
    # dataset item's, else what the classifier reads on the item (or the base, no item)
    item_cat = (record.category or {}).get("name") or record.item.get("category")
    cat_names = dataset.category_names
    ref_cat = cat_names.index(item_cat) if item_cat in cat_names else int(cats[0])
    agg = record.optimised_aggregation
    item_score = (record.scores.item or {}).get(agg)
    variants = []
    for i in range(n):
        k = off + 1 + i
        variants.append({
            "index": i, "category": cat_names[int(cats[k])],
            "keeps_category": bool(cats[k] == ref_cat), "realistic": bool(ok[k]),
            "true_gain_vs_base": float(util[k] - util[off]),
            "true_gain_vs_item": float(util[k] - util[0]) if has_item else None,
            "recommender_gain_vs_item": (record.scores.variants[i][agg] - item_score
                                         if item_score is not None else None)})
    rec = record.checks.recommended if record.checks is not None else None
    verdict = None
    if rec is not None:
        v = variants[rec]
        gain = v["true_gain_vs_item"] if has_item else v["true_gain_vs_base"]
        verdict = {"realistic": v["realistic"], "keeps_category": v["keeps_category"],
                   "true_gain": gain, "acceptable": bool(v["realistic"] and v["keeps_category"]
                                                         and gain > 0)}
    return {"run": str(run), "item_category": cat_names[ref_cat], "variants": variants,
            "recommended": rec, "recommended_verdict": verdict}


def main(argv=None) -> int:
    """The command; returns (and, run as a script, exits with) the status of the module
    docstring: 0 acceptable, 1 not acceptable or nothing recommended."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    a = p.parse_args(argv)
    try:
        out = judge_run(a.run_dir)
    except GisUsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    verdict = out["recommended_verdict"]
    status = 0 if verdict is not None and verdict["acceptable"] else 1
    if a.json:
        print(json.dumps(out, indent=2))
        return status
    print(f"item category: {out['item_category']}")
    for v in out["variants"]:
        vs_item = v["true_gain_vs_item"]
        print(f"  #{v['index']}: {v['category']:<12} realistic={v['realistic']!s:<5} true gain "
              f"vs base {v['true_gain_vs_base']:+.3f}"
              + (f", vs item {vs_item:+.3f}" if vs_item is not None else ""))
    if verdict is None:
        print("no variant recommended")
    else:
        print(f"recommended #{out['recommended']}: realistic {verdict['realistic']}, keeps the "
              f"category {verdict['keeps_category']}, true gain {verdict['true_gain']:+.3f} -> "
              f"{'ACCEPTABLE' if verdict['acceptable'] else 'NOT acceptable'}")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Does the base check (``checks.base``: is the base image G(z*) still the item?) tell the seller
the truth? An offline measurement on saved trust runs (docs/ENGINE.md, "Checks"; issue 14).

    python -m gis.evaluation.trust --pairs 100 --recipes seller --shard S --num-shards 2 \
        --save-images DIR --out rows_S.json        # S = 0, 1
    python scripts/base_check_recheck.py --runs DIR --rows 'rows_*.json' --out OUT.json \
        [--generator progan]

For every saved run the checks are computed again (``gis.evaluation.trust.recheck_saved``,
which must pick what the run picked) and the base check's verdict is set against the truth of
the same run: whether the evaluation's domain classifier reads the base in the item's category
(``truth.base_keeps_category``), whether any variant is acceptable (realistic, same category,
a true gain), and whether the recommendation was. A useful warning is one that fires where the
base left the category and where no variant can be acted on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gis.evaluation.trust import recheck_parser, recheck_saved, saved_rows
from gis.io import write_json


def main(argv=None) -> int:
    p = recheck_parser(__doc__)
    p.add_argument("--generator", default="progan")
    p.add_argument("--recipe", default="seller")
    a = p.parse_args(argv)

    import gis
    from gis.data import load_dataset
    from gis.metrics.category import CategoryReference

    ds = load_dataset("fashion-colors")
    gen = gis.get_generator(a.generator)
    ref = CategoryReference.from_dataset(ds)
    rows = [r for r in saved_rows(a.rows, a.recipe)
            if (Path(a.runs) / f"{r['item']}_{r['recipe']}.npz").is_file()]
    cells: dict[str, dict[str, int]] = {}
    per_run = []
    for r in rows:
        base = recheck_saved(a.runs, r, gen, ref, category_names=ds.category_names)[
            "checks"]["base"]
        t = r["truth"]
        any_ok = any(ok and same and g > 0 for ok, same, g in
                     zip(t["realistic"], t["keeps_category"], t["vs_item"], strict=True))
        key = "warns" if not base["faithful"] else "silent"
        c = cells.setdefault(key, dict(runs=0, base_off_category_by_truth=0,
                                       no_acceptable_variant=0, recommendation_acceptable=0))
        c["runs"] += 1
        c["base_off_category_by_truth"] += not t["base_keeps_category"]
        c["no_acceptable_variant"] += not any_ok
        c["recommendation_acceptable"] += bool(r["recommended_acceptable"])
        per_run.append({"item": r["item"], "category": r["category"], "base": base,
                        "truth_base_keeps_category": t["base_keeps_category"],
                        "any_acceptable_variant": any_ok,
                        "recommended_acceptable": r["recommended_acceptable"]})
    argv = sys.argv[1:] if argv is None else argv
    doc = {"command": "python scripts/base_check_recheck.py " + " ".join(argv),
           "runs": len(rows), "by_verdict": cells, "per_run": per_run}
    write_json(a.out, doc)
    for key, c in cells.items():
        print(key, c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

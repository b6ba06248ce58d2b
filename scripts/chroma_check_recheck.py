"""Would a colour-speckle realism check improve the seller's pick? An offline re-check of saved
trust runs (docs/ENGINE.md, "Checks"; issue 14). Not a check gis runs: the answer was no.

    python -m gis.evaluation.trust --pairs 100 --recipes seller --shard S --num-shards 2 \
        --save-images DIR --out rows_S.json        # S = 0, 1
    python scripts/chroma_check_recheck.py --runs DIR --rows 'rows_*.json' --out OUT.json

For every saved run (DIR/ITEM_RECIPE.npz: item, base, variants, scores, latents) and its row
(the truth's verdict per variant), the recommendation with the checks gis runs
(``gis.engine.checks.check_variants`` with the catalogue's category reference; the shipped
ProGAN offers no calibrated realism score) and with one more realism check: a variant fails
when its relative chroma total variation (``gis.metrics.chroma.chroma_variation``) is above
the q-th percentile of the catalogue's products (q = 90, 95, 99), the distinctness check
then re-applied best first among the variants that pass. Per rule: the share of runs whose
recommendation the truth accepts (realistic, same category, a true gain over the item), the
share that recommend anything, the precision, the mean true gain (0 when not acceptable), what
the rejected recommendations were, and the share of truth-accepted and truth-rejected variants
the extra check passes.
"""

from __future__ import annotations

import numpy as np
import torch


def pick_with_ceiling(checks: dict, chroma: list[float], scores: list[float],
                      pairwise: list[list[float]], ceiling: float, min_distance: float) -> int | None:
    """The best-scoring variant that passes the checks other than distinctness and has chroma
    variation <= ``ceiling``, distinctness re-applied greedily (as check_variants does)."""
    other = [not [r for r in rs if not r.startswith("near-copy")] for rs in checks["reasons"]]
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if not other[i] or chroma[i] > ceiling:
            continue
        if any(pairwise[i][j] < min_distance for j in kept):
            continue
        kept.append(i)
    return kept[0] if kept else None


def main() -> None:
    from gis.evaluation.trust import recheck_parser

    p = recheck_parser(__doc__)
    a = p.parse_args()

    import gis
    from gis.data import load_dataset
    from gis.evaluation.trust import PickTally, recheck_saved, saved_rows
    from gis.io import write_json
    from gis.metrics.category import CategoryReference
    from gis.metrics.chroma import chroma_variation

    torch.set_num_threads(1)
    ds = load_dataset("fashion-colors")
    catalogue = chroma_variation((ds.image_tensor() + 1) / 2).double()
    ceilings = {q: float(torch.quantile(catalogue, q / 100)) for q in (90, 95, 99)}
    rows = saved_rows(a.rows)
    gen = gis.get_generator("progan")
    ref = CategoryReference.from_dataset(ds)
    rules = ["checks gis runs", *[f"+ chroma check, q = {q}" for q in ceilings]]
    stats = {n: PickTally() for n in rules}
    passing = {q: {"truth_accepted": [], "truth_rejected": []} for q in ceilings}
    for row in rows:
        run = recheck_saved(a.runs, row, gen, ref)
        var, scores, dist, checks = (run[k] for k in ("variants", "scores", "distances",
                                                      "checks"))
        chroma = chroma_variation(var).tolist()
        t = row["truth"]
        for q, c in ceilings.items():
            for ok, v in zip(t["realistic"], chroma, strict=True):
                passing[q]["truth_accepted" if ok else "truth_rejected"].append(v <= c)
        for n in rules:
            k = checks["recommended"] if n == rules[0] else pick_with_ceiling(
                checks, chroma, scores, dist["pairwise"], ceilings[int(n.split("= ")[1])],
                checks["settings"]["min_distance"])
            stats[n].add(k, t)
    doc = {"command": "python scripts/chroma_check_recheck.py " + " ".join(
        f"--{k} {v}" for k, v in vars(a).items()), "torch": torch.__version__,
        "catalogue_ceilings": ceilings, "runs": len(rows), "rules": {}}
    for n, tally in stats.items():
        doc["rules"][n] = tally.summary()
        print(n, {k: round(v, 3) if isinstance(v, float) else v
                  for k, v in doc["rules"][n].items()}, flush=True)
    doc["variants_passing_the_chroma_check"] = {
        q: {k: float(np.mean(v)) for k, v in d.items()} for q, d in passing.items()}
    print(doc["variants_passing_the_chroma_check"])
    write_json(a.out, doc)


if __name__ == "__main__":
    main()

"""Which variant should the seller be shown? An offline comparison of pick rules on saved trust
runs (docs/ENGINE.md, "Checks"; issue 14). The checks are gis's; only the order in which the
variants that pass them are considered changes.

    python -m gis.evaluation.trust --pairs 100 --recipes seller --shard S --num-shards 2 \
        --save-images DIR --out rows_S.json        # S = 0, 1
    python scripts/pick_rules_recheck.py --runs DIR --rows 'rows_*.json' --out OUT.json \
        [--generator progan]

For every saved run (``gis.evaluation.trust.recheck_saved``: the checks computed again must
pick what the run picked) the eligible variants are those that pass every check but
distinctness (the first one a rule reaches is never a near-copy of one before it), and a rule
picks only among those its recommender scores above the real item (else the seller is told to
keep the item, as `gis shift` and `gis batch` do). Rules:

* ``best score`` (what gis does): the highest optimised score (mean over the target users);
* ``best score, even below the item``: as the trust rows counted it before the thirteenth
  session (a pick the recommender scores below the real item counted as a recommendation);
* ``smallest change with a gain``: the one closest to the item (LPIPS AlexNet, what the `gis shift` summary prints beside the recommendation);
* ``smallest change with >= F of the best gain``: the same among those whose gain over the item
  is at least F times the best eligible gain (F = 0.5, 0.75);
* ``gain per change``: the highest gain over the item / LPIPS to the item (gain > 0);
* ``user coverage``: the most target users who score it above the item (ties: best score);
* ``median user``: the highest median over the target users of the gain over the item;
* ``two recommenders agree``: gain > 0 under both the run's recommender and
  ``--second-recommender`` (default dvbpr-robust, docs/MODELS.md), ordered by the sum of the
  two ranks (ties: best score).

Per-user scores are recomputed from the saved uint8 images. Per rule: runs whose pick the truth
accepts (realistic, same category, a true gain over the item), runs that pick anything, the
precision, the mean true gain (0 when not acceptable) and what the rejected picks were; and the
ceilings (runs with an acceptable eligible variant, and with any acceptable variant).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def eligible_variants(checks: dict) -> list[int]:
    """The variants that pass every check but distinctness (near-copy reasons ignored)."""
    return [i for i, rs in enumerate(checks["reasons"])
            if not [r for r in rs if not r.startswith("near-copy")]]


def first_by(order: Callable[[int], tuple], candidates: list[int]) -> int | None:
    """The candidate that sorts first by ``order`` (None when there is none)."""
    return min(candidates, key=order) if candidates else None


def pick_rules(scores: np.ndarray, item_score: float, per_user: np.ndarray,
               item_per_user: np.ndarray, second_gain: np.ndarray, to_item: np.ndarray,
               eligible: list[int]) -> dict[str, int | None]:
    """Each rule's pick among ``eligible`` (module docstring). scores (n,) the optimised
    aggregation; per_user (n, U) and item_per_user (U,) the recommender's scores; second_gain
    (n,) the second recommender's mean gain over the item; to_item (n,) LPIPS to the item."""
    gain = scores - item_score
    up = [i for i in eligible if gain[i] > 0]
    best = max((gain[i] for i in up), default=0.0)
    user_gain = per_user - item_per_user[None]
    coverage = (user_gain > 0).sum(1)
    median = np.median(user_gain, axis=1)
    both = [i for i in up if second_gain[i] > 0]
    rank1 = {i: r for r, i in enumerate(sorted(both, key=lambda i: -gain[i]))}
    rank2 = {i: r for r, i in enumerate(sorted(both, key=lambda i: -second_gain[i]))}
    out = {"best score": first_by(lambda i: (-scores[i],), up),
           "best score, even below the item (trust rows before the 13th session)":
               first_by(lambda i: (-scores[i],), eligible),
           "smallest change with a gain": first_by(lambda i: (to_item[i],), up)}
    for f in (0.5, 0.75):
        out[f"smallest change with >= {f} of the best gain"] = first_by(
            lambda i: (to_item[i],), [i for i in up if gain[i] >= f * best])
    out["gain per change"] = first_by(lambda i: (-gain[i] / max(to_item[i], 1e-6),), up)
    out["user coverage"] = first_by(lambda i: (-coverage[i], -scores[i]), up)
    out["median user"] = first_by(lambda i: (-median[i], -scores[i]), up)
    out["two recommenders agree"] = first_by(lambda i: (rank1[i] + rank2[i], -scores[i]), both)
    return out


def main() -> None:
    from gis.evaluation.trust import recheck_parser

    p = recheck_parser(__doc__)
    p.add_argument("--generator", default="progan")
    p.add_argument("--recommender", default="dvbpr")
    p.add_argument("--second-recommender", default="dvbpr-robust")
    p.add_argument("--recipe", default="seller")
    p.add_argument("--checks-now", action="store_true",
                   help="the checks as gis runs them now, which may pick otherwise than the "
                        "run did (else the run's pick must be reproduced)")
    a = p.parse_args()

    import gis
    from gis.data import load_dataset
    from gis.evaluation.trust import PickTally, recheck_saved, saved_rows
    from gis.io import write_json
    from gis.metrics.category import CategoryReference

    torch.set_num_threads(1)
    ds = load_dataset("fashion-colors")
    gen = gis.get_generator(a.generator)
    recs = [gis.get_recommender(a.recommender), gis.get_recommender(a.second_recommender)]
    ref = CategoryReference.from_dataset(ds)
    rows = saved_rows(a.rows, a.recipe)
    if not rows:
        raise SystemExit(f"no {a.recipe} rows in {a.rows}")
    stats: dict = {}
    ceilings = {"an acceptable eligible variant": 0, "an acceptable variant": 0}
    for row in rows:
        run = recheck_saved(a.runs, row, gen, ref, category_names=list(ds.category_names),
                            verify=not a.checks_now)
        users = torch.tensor(run["users"])
        with torch.no_grad():
            per = [rec.score(rec.prepare(torch.cat([run["item"], run["variants"]]), (0.0, 1.0)),
                             users).double().numpy() for rec in recs]
        scores = np.asarray(run["scores"])
        item_score = run["item_score"]
        eligible = eligible_variants(run["checks"])
        picks = pick_rules(scores, item_score, per[0][1:], per[0][0],
                           per[1][1:].mean(1) - per[1][0].mean(), np.asarray(
                               run["distances"]["to_item"]), eligible)
        checked = max(eligible, key=scores.__getitem__) if eligible else None
        if checked != run["checks"]["recommended"]:
            raise SystemExit(f"{row['item']}: best score picks {checked}, the checks "
                             f"{run['checks']['recommended']}")
        t = row["truth"]
        ok = [bool(t["realistic"][i] and t["keeps_category"][i] and t["vs_item"][i] > 0)
              for i in range(len(scores))]
        ceilings["an acceptable eligible variant"] += any(ok[i] for i in eligible)
        ceilings["an acceptable variant"] += any(ok)
        for name, k in picks.items():
            stats.setdefault(name, PickTally()).add(k, t)
    doc = {"command": "python scripts/pick_rules_recheck.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()),
        "torch": torch.__version__, "runs": len(rows), "ceilings": ceilings, "rules": {}}
    for name, tally in stats.items():
        doc["rules"][name] = s = tally.summary()
        r = s["runs"]
        print(f"{name[:45]:45s} acceptable {s['acceptable']:3d}/{r}  recommending "
              f"{s['recommending']:3d}  unrealistic {s['unrealistic']:2d}  other category "
              f"{s['other_category']:2d}  no true gain {s['no_true_gain']:2d}  mean true gain "
              f"{s['true_gain'] / r:+.3f}", flush=True)
    print("ceilings:", ceilings)
    write_json(a.out, doc)


if __name__ == "__main__":
    main()

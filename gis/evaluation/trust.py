"""Issue 14's side-by-side measurement: would a seller act on what each recipe recommends?

    python -m gis.evaluation.trust --pairs 100 --recipes seller,paper --out trust.json
        [--generator progan --recommender dvbpr --data fashion-colors --users 10]
        [--shard I --num-shards N]   # split over processes; --merge F1 F2 ... to combine

Per (catalogue item, 10 random users who never interacted with it) pair and recipe, with the
same seeds for every recipe, it runs the whole `gis shift` pipeline (inversion, shifting,
checks) and judges the result with the dataset's hidden ground truth, which the engine never
sees (``judge_images``):

* the recommendation: for ``seller`` the best-scoring variant that passes the checks
  (``checks.recommended``) when the recommender scores it above the real item (else none: keep
  the item, as `gis shift` says; rows before the thirteenth session counted such a variant as
  the recommendation), for ``paper`` (no checks in the paper) the
  best-scoring variant; acceptable when the realism truth accepts it, the domain classifier
  reads the item's category, and its true utility for the users beats the real item's;
* the share of variants that keep the category; the share of recommender gains (variant
  scored above the real item) that are true (realistic and truly preferred to the item);
  the mean true gain of the recommendation (0 when the item is kept or the pick is not
  realistic or leaves the category: a seller gains nothing from it); the preference shift
  (recommender score of the variants over the item's); the smallest and mean pairwise
  LPIPS; seconds per run.

Resumable: rows already in --out are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..cli_options import device_argument
from ..io import write_json


def judge_images(truth, clf, users: np.ndarray, item_category: int, item01: torch.Tensor,
                 base01: torch.Tensor, variants01: torch.Tensor) -> dict:
    """The ground truth's verdict on n variants of one item for user rows ``users``.

    item01, base01 (1, 3, R, R) and variants01 (n, 3, R, R) in [0, 1]; ``truth`` a
    ``gis.interfaces.GroundTruth``, ``clf`` its category classifier. Returns per variant
    ``category`` (index), ``keeps_category``, ``realistic`` (the realism truth) and the mean
    true utility gain over the users ``vs_item`` and ``vs_base`` (the dataset's units).
    """
    x01 = torch.cat([item01, base01, variants01]).float().cpu()
    cats = clf.predict_proba(x01 * 2 - 1).argmax(1).cpu().numpy()
    util = truth.utility(x01 * 2 - 1, users, cats).mean(0)
    ok = np.asarray(truth.realism(x01, value_range=(0.0, 1.0)).realistic, dtype=bool)
    return {"category": cats[2:].tolist(), "keeps_category": (cats[2:] == item_category).tolist(),
            "realistic": ok[2:].tolist(), "vs_item": (util[2:] - util[0]).tolist(),
            "vs_base": (util[2:] - util[1]).tolist(), "base_realistic": bool(ok[1]),
            "base_keeps_category": bool(cats[1] == item_category)}


def draw_pairs(dataset, n_pairs: int, users: int, seed: int) -> list[tuple[int, list[int]]]:
    """(catalogue item index, ``users`` user rows who never interacted with it) pairs."""
    rng = np.random.default_rng(seed)
    items_of = dataset.user_items()
    history = [set(items_of[u].tolist()) | {int(dataset.val[u]), int(dataset.test[u])}
               for u in range(dataset.num_users)]
    out = []
    for item in rng.choice(dataset.num_items, n_pairs, replace=False):
        eligible = sum(int(item) not in h for h in history)
        if eligible < users:
            from ..errors import GisUsageError

            raise GisUsageError(f"item {dataset.item_ids[item]} has {eligible} users who never "
                                f"interacted with it, fewer than --users {users}")
        rows: list[int] = []
        while len(rows) < users:
            u = int(rng.integers(dataset.num_users))
            if int(item) not in history[u] and u not in rows:
                rows.append(u)
        out.append((int(item), rows))
    return out


#: engine settings a recipe can be measured with, ``RECIPE@NAME`` in --recipes (shifting
#: overrides, inversion overrides): "v7" is the loops as they were before issue 17 (300
#: shifting and 200 inversion steps, constant lr 0.01, float32); --engine adds others
ENGINES: dict[str, tuple[dict, dict]] = {
    "v7": (dict(steps=300, lr=0.01, lr_schedule="constant", precision="float32"),
           dict(steps=200, lr=0.01, lr_schedule="constant", precision="float32")),
}


def settings_for(spec: str, seed: int, steps: int | None = None,
                 invert_steps: int | None = None, engines: dict | None = None):
    """(shift settings, inversion settings) of a --recipes entry ``RECIPE`` or
    ``RECIPE@ENGINE``; ``steps`` / ``invert_steps`` override both when given."""
    from ..engine.settings import invert_settings, shift_settings
    from ..errors import GisUsageError

    recipe, _, engine = spec.partition("@")
    engines = {**ENGINES, **(engines or {})}
    if engine and engine not in engines:
        raise GisUsageError(f"unknown engine {engine!r} in {spec!r}; known: "
                            f"{', '.join(engines)} (or define one with --engine)")
    sh, inv = engines[engine] if engine else ({}, {})
    return (shift_settings(recipe, seed=seed, **{**sh, "steps": steps or sh.get("steps")}),
            invert_settings(recipe, seed=seed,
                            **{**inv, "steps": invert_steps or inv.get("steps")}))


def run_one(world: dict, item: int, users: list[int], recipe: str, seed: int,
            steps: int | None = None, invert_steps: int | None = None,
            save_images: str | Path | None = None) -> dict:
    """One pair under one recipe (``RECIPE`` or ``RECIPE@ENGINE``, see ``settings_for``): the
    run, its checks and the truth's verdict (a row). ``save_images``: a folder where the run's
    item, base and variants (uint8) with their scores are written as ``ITEM_RECIPE.npz``, so
    that checks can be re-evaluated on the same variants without re-running them."""
    from ..engine import run_gis

    ds, gen, rec = world["dataset"], world["generator"], world["recommender"]
    cat = int(ds.categories[item])
    labels = torch.tensor([cat]) if gen.num_classes else None
    s_shift, s_inv = settings_for(recipe, seed, steps, invert_steps, world.get("engines"))
    t0 = time.perf_counter()
    run = run_gis(generator=gen, recommender=rec, users=torch.tensor(users),
                  item=ds.image_tensor([item]), invert_settings=s_inv,
                  shift_settings=s_shift, catalogue_phi=world["catalogue_phi"],
                  labels=labels, terms=world["terms"].get(recipe),
                  category_reference=world.get("category_reference"),
                  expected_category=ds.category_names[cat] if gen.num_classes else None)
    seconds = time.perf_counter() - t0
    res = run.result
    scores = res.scores["mean"]["variants"]
    item_score = run.item_scores["mean"]
    v = judge_images(world["truth"], world["clf"], np.asarray(users), cat, run.item,
                     res.base_image, res.images)
    if save_images is not None:
        def u8(x):
            return (x.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

        Path(save_images).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(Path(save_images) / f"{ds.item_ids[item]}_{recipe}.npz",
                            item=u8(run.item), base=u8(res.base_image),
                            variants=u8(res.images), scores=np.asarray(scores),
                            item_score=item_score, category=cat, users=np.asarray(users),
                            latents=res.latents.float().cpu().numpy())
    n = len(scores)
    top = int(np.argmax(scores))
    checked = run.checks["recommended"]
    pick = checked if s_shift.recipe != "paper" else top
    if s_shift.recipe != "paper" and pick is not None and scores[pick] <= item_score:
        pick = None  # `gis shift` tells the seller to keep the item: nothing is recommended
    rec_gain = [s - item_score for s in scores]
    true_ok = [v["realistic"][i] and v["vs_item"][i] > 0 for i in range(n)]
    gains = [i for i in range(n) if rec_gain[i] > 0]
    row = {"item": ds.item_ids[item], "category": ds.category_names[cat], "users": users,
           "recipe": recipe, "seed": seed, "seconds": seconds, "recommended": pick,
           # the loops that ran (precision resolved): RECIPE@ENGINE is checkable from the row
           "loops": {stage: {k: getattr(st, k) for k in ("steps", "lr", "lr_schedule",
                                                          "precision")}
                     for stage, st in (("shift", res.settings),
                                       ("invert", run.inversion.settings))},
           "top_scoring": top, "checked_pick": checked,
           "n_passing_checks": int(sum(run.checks["passed"])),
           "recommended_acceptable": bool(pick is not None and v["realistic"][pick]
                                          and v["keeps_category"][pick]
                                          and v["vs_item"][pick] > 0),
           # a seller gains only from an acceptable variant (realistic, same category)
           "recommended_true_gain": float(v["vs_item"][pick]) if pick is not None
           and v["realistic"][pick] and v["keeps_category"][pick] else 0.0,
           "recommended_realistic": None if pick is None else bool(v["realistic"][pick]),
           "recommended_keeps_category": None if pick is None
           else bool(v["keeps_category"][pick]),
           "share_keep_category": float(np.mean(v["keeps_category"])),
           "share_realistic": float(np.mean(v["realistic"])),
           "recommender_gains": len(gains),
           "recommender_gain_vs_item": [float(g) for g in rec_gain],
           "true_recommender_gains": int(sum(true_ok[i] for i in gains)),
           "preference_shift": float(np.mean(rec_gain)),
           "min_pairwise": run.distances["min_pairwise"],
           "mean_pairwise": run.distances["mean_pairwise"], "truth": v}
    return row


def recheck_saved(runs: str | Path, row: dict, generator, category_reference, *,
                  category_names: list[str] | None = None, verify: bool = True) -> dict:
    """A saved run (``--save-images``: RUNS/ITEM_RECIPE.npz) with its checks computed again,
    for re-evaluating checks or picks offline on the same variants (scripts/*_recheck.py).

    Returns ``item``, ``base`` (1, 3, R, R) and ``variants`` (n, 3, R, R) in [0, 1] (the saved
    uint8 images), ``scores`` (n,) the run's optimised aggregation and ``item_score`` the real
    item's, ``users`` (the user rows),
    ``category`` (the item's index), ``distances`` (``variant_distances``: ``pairwise``,
    ``to_item``) and ``checks`` (``check_variants`` with gis's default settings; with a
    class-conditional generator the variants must keep the item's class, by name from
    ``category_names``, as `gis shift` asks). With ``verify``, raises SystemExit when the
    checks do not pick what the run picked (other checks, or images the uint8 rounding
    changed too much to compare)."""
    from ..engine.checks import check_variants
    from ..metrics.lpips_metric import variant_distances

    z = np.load(Path(runs) / f"{row['item']}_{row['recipe']}.npz")
    item, base, var = (torch.tensor(z[k]).float() / 255 for k in ("item", "base", "variants"))
    scores = z["scores"].tolist()
    cat = int(z["category"])
    dist = variant_distances(var, base, item)
    labels = torch.tensor([cat]) if generator.num_classes else None
    expected = (category_names[cat] if generator.num_classes and category_names is not None
                else None)
    checks = check_variants(generator, var, base, torch.tensor(z["latents"]), scores,
                            dist["pairwise"], labels=labels, item01=item,
                            to_reference=dist["to_item"], category_reference=category_reference,
                            expected_category=expected)
    if verify and checks["recommended"] != row["checked_pick"]:
        raise SystemExit(f"{row['item']}: the checks pick {checks['recommended']}, the run "
                         f"picked {row['checked_pick']}: not the same checks")
    return {"item": item, "base": base, "variants": var, "scores": scores,
            "item_score": float(z["item_score"]), "category": cat,
            "users": z["users"].tolist(), "distances": dist, "checks": checks}


def recheck_parser(description: str, *, required: bool = True) -> argparse.ArgumentParser:
    """The command line of an offline re-check of saved trust runs (scripts/*_recheck.py,
    scripts/category_check_calibration.py): ``--runs`` (a trust run's --save-images folder),
    ``--rows`` (a glob of that run's row files), ``--out``."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=required, help="a trust run's --save-images folder")
    p.add_argument("--rows", required=required, help="glob of that run's row files")
    p.add_argument("--out", required=True)
    return p


def saved_rows(pattern: str, recipe: str | None = None) -> list[dict]:
    """The rows of the trust files matching glob ``pattern`` (of ``recipe`` when given)."""
    import glob

    return [r for f in sorted(glob.glob(pattern)) for r in json.loads(Path(f).read_text())["rows"]
            if recipe is None or r["recipe"] == recipe]


class PickTally:
    """What a pick rule's recommendations were by the truth, over many re-checked runs
    (scripts/*_recheck.py): ``add(k, truth)`` per run (``k`` the pick, None = keep the item;
    ``truth`` a row's ``truth``), ``summary()`` the counts and shares."""

    def __init__(self) -> None:
        self.counts = dict(runs=0, recommending=0, acceptable=0, true_gain=0.0, unrealistic=0,
                           other_category=0, no_true_gain=0)

    def add(self, k: int | None, truth: dict) -> None:
        c = self.counts
        c["runs"] += 1
        if k is None:
            return
        c["recommending"] += 1
        real, same, gain = truth["realistic"][k], truth["keeps_category"][k], truth["vs_item"][k]
        good = bool(real and same and gain > 0)
        c["acceptable"] += good
        c["true_gain"] += gain if good else 0.0
        c["unrealistic"] += not real
        c["other_category"] += bool(real and not same)
        c["no_true_gain"] += bool(real and same and not gain > 0)

    def summary(self) -> dict:
        c, r = self.counts, max(self.counts["runs"], 1)
        return {**c, "share_runs_acceptable": c["acceptable"] / r,
                "share_runs_recommending": c["recommending"] / r,
                "precision": c["acceptable"] / max(c["recommending"], 1),
                "mean_true_gain": c["true_gain"] / r}


def _acceptable_gain(row: dict) -> float:
    """The true gain a seller gets from a row's recommendation: 0 when the item is kept, or
    the pick is unrealistic or leaves the category (recomputed from the row's truth)."""
    p, t = row["recommended"], row["truth"]
    ok = p is not None and t["realistic"][p] and t["keeps_category"][p]
    return float(t["vs_item"][p]) if ok else 0.0


def summarise(rows: list[dict]) -> dict:
    """Per recipe: the issue's figures over its rows (see the module docstring)."""
    out = {}
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        gains = sum(r["recommender_gains"] for r in mine)
        out[recipe] = {
            "runs": len(mine),
            "share_recommended_acceptable": float(np.mean([r["recommended_acceptable"]
                                                           for r in mine])),
            "share_runs_recommending": float(np.mean([r["recommended"] is not None
                                                      for r in mine])),
            "share_variants_keep_category": float(np.mean([r["share_keep_category"]
                                                           for r in mine])),
            "share_variants_realistic": float(np.mean([r["share_realistic"] for r in mine])),
            "share_recommender_gains_true": (sum(r["true_recommender_gains"] for r in mine)
                                             / gains if gains else None),
            "mean_recommended_true_gain": float(np.mean([_acceptable_gain(r) for r in mine])),
            "mean_preference_shift": float(np.mean([r["preference_shift"] for r in mine])),
            "min_pairwise_lowest": float(min(r["min_pairwise"] for r in mine)),
            "min_pairwise_mean": float(np.mean([r["min_pairwise"] for r in mine])),
            "mean_pairwise_mean": float(np.mean([r["mean_pairwise"] for r in mine])),
            # closest pair under the distinctness threshold (0.02), and under a one-pixel
            # shift's median distance (0.01: copies to the eye; docs/ENGINE.md)
            "runs_min_pair_below_0.02": int(sum(r["min_pairwise"] < 0.02 for r in mine)),
            "runs_min_pair_below_0.01": int(sum(r["min_pairwise"] < 0.01 for r in mine)),
            "seconds_per_run": float(np.mean([r["seconds"] for r in mine]))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis.evaluation.trust", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--recipes", default="seller,paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", type=device_argument)
    p.add_argument("--generator", default="progan")
    p.add_argument("--recommender", default="dvbpr")
    p.add_argument("--data", default="fashion-colors")
    p.add_argument("--steps", type=int, default=None,
                   help="shifting steps (default: the recipe's; fewer only for smoke tests)")
    p.add_argument("--invert-steps", type=int, default=None)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--merge", nargs="*", help="merge these shard files into --out")
    p.add_argument("--save-images", default=None, metavar="DIR",
                   help="also write each run's item, base and variants to DIR/ITEM_RECIPE.npz")
    p.add_argument("--engine", action="append", default=[], metavar="NAME=JSON",
                   help='another engine for RECIPE@NAME: {"shift": {...}, "invert": {...}} '
                        "settings overrides")
    a = p.parse_args(argv)
    command = "python -m gis.evaluation.trust " + " ".join(argv or sys.argv[1:])

    def write(rows):
        doc = {"command": command, "summary": summarise(rows), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "rows": rows}
        write_json(a.out, doc)
        return doc

    if a.merge:
        merged = {(r["item"], r["recipe"], r["seed"]): r
                  for f in a.merge for r in json.loads(Path(f).read_text())["rows"]}
        rows = list(merged.values())
    else:
        import gis
        from gis.data import load_dataset
        from gis.engine.pipeline import build_terms, embed_dataset

        ds = load_dataset(a.data)
        gen = gis.get_generator(a.generator, device=a.device)
        rec = gis.get_recommender(a.recommender, device=a.device)
        truth = ds.ground_truth
        recipes = [r.strip() for r in a.recipes.split(",") if r.strip()]
        engines = {}
        for e in a.engine:
            name, _, spec = e.partition("=")
            spec = json.loads(spec)
            engines[name] = (spec.get("shift", {}), spec.get("invert", {}))
        # the terms are built once for every run, per recipe (two recipes may give one term
        # different options, e.g. --engine with other loss_options)
        terms: dict = {}
        for recipe in recipes:
            s_shift, s_inv = settings_for(recipe, a.seed, engines=engines)
            terms[recipe] = build_terms(gen, rec, invert_settings=s_inv,
                                        shift_settings=s_shift)
        from gis.metrics.category import CategoryReference

        world = {"dataset": ds, "generator": gen, "recommender": rec, "truth": truth,
                 "category_reference": CategoryReference.from_dataset(ds),
                 "engines": engines,
                 "clf": truth.category_classifier(device=a.device), "terms": terms,
                 "catalogue_phi": embed_dataset(rec, ds)}
        rows = json.loads(Path(a.out).read_text())["rows"] if Path(a.out).exists() else []
        done = {(r["item"], r["recipe"]) for r in rows}
        pairs = list(enumerate(draw_pairs(ds, a.pairs, a.users, a.seed)))[a.shard::a.num_shards]
        for k, (item, users) in pairs:  # k: the pair's global index, the same in any shard
            for recipe in recipes:
                if (ds.item_ids[item], recipe) in done:
                    continue
                row = run_one(world, item, users, recipe, seed=a.seed + k, steps=a.steps,
                              invert_steps=a.invert_steps, save_images=a.save_images)
                rows.append(row)
                write(rows)
                print(f"{row['item']} {recipe}: rec #{row['recommended']} acceptable "
                      f"{row['recommended_acceptable']}, true gain "
                      f"{row['recommended_true_gain']:+.3f}, kept "
                      f"{row['share_keep_category']:.2f}, min pair {row['min_pairwise']:.3f} "
                      f"({row['seconds']:.0f} s)", flush=True)
    doc = write(rows)
    print(json.dumps(doc["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

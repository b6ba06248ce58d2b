"""The engine's acceptance check: over random (user, item outside the user's history) pairs,
do the default settings produce variants the user's recommender scores above the base image,
and are the variants distinct?

    python -m gis.evaluation.pairs --pairs 100 --out pairs.json [--device cuda]
        [--generator G --recommender R --data D]   # default: the `gis shift` defaults
        [--shard I --num-shards N]      # split the pairs over processes, merge with --merge

An interrupted run resumes: pairs already in --out are kept and not run again.

Per pair it records: the scores of the real item, of the inverted base G(z*) and of each
variant for the user; the best-3 mean (the paper's top-3); the mean pairwise LPIPS (AlexNet)
among the variants; and, on a dataset with ground truth (``gis.interfaces.GroundTruth``), the
user's *true* utility of the base and of each variant, with the item's category assumed kept
(``gis evaluate`` reads the category of each variant).
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


def sample_pairs(dataset, n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """(user row, catalogue item index) pairs, the item outside the user's whole history."""
    rng = np.random.default_rng(seed)
    items_of = dataset.user_items()
    pairs = []
    while len(pairs) < n_pairs:
        u = int(rng.integers(dataset.num_users))
        seen = set(items_of[u].tolist()) | {int(dataset.val[u]), int(dataset.test[u])}
        i = int(rng.integers(dataset.num_items))
        if i not in seen:
            pairs.append((u, i))
    return pairs


def run_pairs(pairs, *, generator, recommender, dataset, device="cpu", progress=True,
              invert_overrides=None, shift_overrides=None, on_row=None,
              done=()) -> list[dict]:
    """Run GIS on each (user row, item index) pair; rows in ``done`` (earlier results) are kept
    and their pairs skipped."""
    from ..engine import InvertSettings, run_gis, shift_settings
    from ..engine.pipeline import build_terms
    from ..metrics.lpips_metric import pairwise_lpips

    s_inv = InvertSettings(**(invert_overrides or {}))
    s_shift = shift_settings(**(shift_overrides or {}))
    terms = build_terms(generator, recommender, invert_settings=s_inv, shift_settings=s_shift)
    truth = dataset.ground_truth if dataset.has_ground_truth else None
    rows = list(done)
    finished = {(r["user"], r["item"]) for r in rows}
    for k, (u, i) in enumerate(pairs):
        if (dataset.user_ids[u], dataset.item_ids[i]) in finished:
            continue
        t0 = time.perf_counter()
        item = dataset.image_tensor([i])
        run = run_gis(generator=generator, recommender=recommender,
                      users=torch.tensor([u]), item=item, invert_settings=s_inv,
                      shift_settings=s_shift, distance_net=None, terms=terms)
        res = run.result
        variants = res.scores["mean"]["variants"]
        base = res.scores["mean"]["base"][0]
        top3 = float(np.mean(sorted(variants)[-3:]))
        row = {"user": dataset.user_ids[u], "item": dataset.item_ids[i],
               "category": dataset.category_names[int(dataset.categories[i])],
               "item_score": run.item_scores["mean"], "base_score": base,
               "variant_scores": variants, "top3": top3, "top3_beats_base": top3 > base,
               "pairwise_lpips_alex": pairwise_lpips(res.images.to(device) * 2 - 1),
               "inversion_lpips_vgg": run.inversion.lpips, "seconds": time.perf_counter() - t0}
        if truth is not None:
            cat = np.full(len(variants) + 1, int(dataset.categories[i]))
            imgs = torch.cat([res.base_image, res.images]) * 2 - 1
            util = truth.utility(imgs, np.array([u]), cat)[0]
            row["true_utility_base"] = float(util[0])
            row["true_utility_variants"] = [float(x) for x in util[1:]]
            best3 = np.argsort(variants)[-3:]
            row["true_gain_top3"] = float(np.mean(util[1:][best3]) - util[0])
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        if progress:
            print(f"[{k + 1}/{len(pairs)}] user {row['user']} item {row['item']}: base "
                  f"{base:.3f} top3 {top3:.3f} lpips {row['pairwise_lpips_alex']:.3f} "
                  f"({row['seconds']:.1f} s)", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    gains = np.array([r["top3"] - r["base_score"] for r in rows])
    out = {
        "pairs": len(rows),
        "top3_beats_base": int(sum(r["top3_beats_base"] for r in rows)),
        "mean_gain_top3_vs_base": float(gains.mean()),
        "median_gain_top3_vs_base": float(np.median(gains)),
        "mean_gain_top3_vs_item": float(np.mean([r["top3"] - r["item_score"] for r in rows])),
        "top3_beats_item": int(sum(r["top3"] > r["item_score"] for r in rows)),
        "mean_pairwise_lpips_alex": float(np.mean([r["pairwise_lpips_alex"] for r in rows])),
        "min_pairwise_lpips_alex": float(np.min([r["pairwise_lpips_alex"] for r in rows])),
        "median_inversion_lpips_vgg": float(np.median([r["inversion_lpips_vgg"] for r in rows])),
        "mean_seconds_per_pair": float(np.mean([r["seconds"] for r in rows])),
    }
    if rows and "true_gain_top3" in rows[0]:
        tg = np.array([r["true_gain_top3"] for r in rows])
        out["true_gain_top3_mean"] = float(tg.mean())
        out["share_true_gain_positive"] = float((tg > 0).mean())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis.evaluation.pairs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", type=device_argument)
    p.add_argument("--generator", default="progan", help="default: progan")
    p.add_argument("--recommender", default="dvbpr", help="default: dvbpr")
    p.add_argument("--data", default=None, help="dataset (default: gis's default dataset)")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--merge", nargs="*", help="merge these shard files into --out")
    a = p.parse_args(argv)
    def write(rows):
        doc = {"summary": summarise(rows), "rows": rows,
               "command": "python -m gis.evaluation.pairs " + " ".join(argv or sys.argv[1:]),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
        write_json(a.out, doc)  # readable after every pair, whole
        return doc

    if a.merge:
        rows = [r for f in a.merge for r in json.loads(Path(f).read_text())["rows"]]
    else:
        import gis
        from gis.data import load_dataset

        gen = gis.get_generator(a.generator, device=a.device)
        rec = gis.get_recommender(a.recommender, device=a.device)
        dataset = load_dataset(a.data)
        pairs = sample_pairs(dataset, a.pairs, a.seed)[a.shard::a.num_shards]
        done = json.loads(Path(a.out).read_text())["rows"] if Path(a.out).exists() else []
        rows = run_pairs(pairs, generator=gen, recommender=rec, dataset=dataset,
                         device=a.device, on_row=write, done=done)
    doc = write(rows)
    print(json.dumps(doc["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

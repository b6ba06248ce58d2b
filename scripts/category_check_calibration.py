"""Calibrate the variants' category check, and re-check saved trust runs with it
(docs/ENGINE.md, "Checks").

    python scripts/category_check_calibration.py --full-data runs/fashion_colors_full.npz \
        --runs runs/trust/v9img --rows 'runs/trust/issue14_v9img_shard*.json' \
        --out docs/results/category_check_calibration.json

1. Held-out accuracy: the k-NN category vote (``gis.metrics.category.CategoryReference``,
   the 6,000 catalogue items of fashion-colors as reference) of 2,000 real items of the full
   build that are not in the catalogue, for k = 3, 5, 10, on silhouettes (the check) and on
   LPIPS AlexNet features of the colour image (for comparison).
2. Re-check: for every run saved by ``python -m gis.evaluation.trust --save-images DIR``
   (DIR/ITEM_RECIPE.npz) and its row (the truth's verdict per variant), the recommendation
   with the checks as they stood (realism, identity, distinct) and with the category check
   added: the share of runs with an acceptable recommendation, the share of runs that
   recommend, the share of recommendations the truth accepts, and how often the vote agrees
   with the domain classifier (a judge only).
"""

from __future__ import annotations

import glob
import json

import numpy as np
import torch


def lpips_features(x: torch.Tensor) -> torch.Tensor:
    """Flattened LPIPS AlexNet features whose squared L2 distance is LPIPS (x in [-1, 1])."""
    import lpips

    from gis.metrics.lpips_metric import _module

    m = _module("alex", torch.device("cpu")).model
    out = []
    with torch.no_grad():
        for s in range(0, len(x), 256):
            parts = []
            for lin, f in zip(m.lins, m.net.forward(m.scaling_layer(x[s:s + 256])), strict=True):
                f = lpips.normalize_tensor(f)
                w = lin.model[-1].weight.view(1, -1, 1, 1).clamp_min(0).sqrt()
                parts.append((f * w).flatten(1) / np.sqrt(f.shape[2] * f.shape[3]))
            out.append(torch.cat(parts, 1))
    return torch.cat(out)


def heldout_accuracy(ds, full_path: str, n: int = 2000) -> dict:
    from gis.data import load_dataset
    from gis.metrics.category import CategoryReference

    full = load_dataset(full_path)
    known = set(ds.item_ids)
    cand = [i for i, x in enumerate(full.item_ids) if x not in known]
    sel = np.random.default_rng(0).choice(cand, n, replace=False).tolist()
    x = full.image_tensor(sel)
    truth = torch.as_tensor(full.categories)[sel]
    out = {"heldout_items": n}
    cats = torch.as_tensor(ds.categories)
    feats = lpips_features(ds.image_tensor())
    fx = lpips_features(x)
    for k in (3, 5, 10):
        ref = CategoryReference.from_dataset(ds, k=k)
        voted = torch.tensor(ref.category((x + 1) / 2))
        nn = torch.cdist(fx, feats).topk(k, largest=False).indices
        lp = torch.nn.functional.one_hot(cats[nn], len(ds.category_names)).sum(1).argmax(1)
        out[f"k={k}"] = {"silhouette_vote_accuracy": float((voted == truth).float().mean()),
                         "lpips_alex_vote_accuracy": float((lp == truth).float().mean())}
        print(f"k={k}: silhouette vote {out[f'k={k}']['silhouette_vote_accuracy']:.3f}, "
              f"LPIPS vote {out[f'k={k}']['lpips_alex_vote_accuracy']:.3f}", flush=True)
    return out


def recheck(ds, runs_dir: str, rows_glob: str) -> dict:
    import gis
    from gis.engine.checks import CheckSettings, check_variants
    from gis.metrics.category import CategoryReference
    from gis.metrics.lpips_metric import variant_distances

    rows = {r["item"]: r for f in sorted(glob.glob(rows_glob))
            for r in json.loads(open(f).read())["rows"]}
    gen = gis.get_generator("progan")
    ref = CategoryReference.from_dataset(ds)
    # acceptable, recommendations, runs, recommendations the domain classifier reads in
    # another category than the item
    stats = {"before": [0, 0, 0, 0], "with category check": [0, 0, 0, 0]}
    agree, runs = [], 0
    for item, row in sorted(rows.items()):
        z = np.load(f"{runs_dir}/{item}_{row['recipe']}.npz")

        def f01(a):
            return torch.tensor(a).float() / 255

        it, base, var = f01(z["item"]), f01(z["base"]), f01(z["variants"])
        scores = z["scores"].tolist()
        dist = variant_distances(var, base, it)
        t = row["truth"]
        ok = [a and b and g > 0 for a, b, g in zip(t["realistic"], t["keeps_category"],
                                                   t["vs_item"], strict=True)]
        for name, kw in (("before", {"settings": CheckSettings(category=False)}),
                         ("with category check", {"category_reference": ref})):
            c = check_variants(gen, var, base, torch.tensor(z["latents"]), scores,
                               dist["pairwise"], item01=it, to_reference=dist["to_item"], **kw)
            p = c["recommended"]
            stats[name][2] += 1
            if p is not None:
                stats[name][1] += 1
                stats[name][0] += ok[p]
                stats[name][3] += not t["keeps_category"][p]
            if name != "before":
                agree += [a == b for a, b in zip(c["category"]["passed"], t["keeps_category"],
                                                 strict=True)]
        runs += 1
    out = {"runs": runs, "vote_agrees_with_domain_classifier": float(np.mean(agree))}
    for name, (acc, recs, n, left) in stats.items():
        out[name] = {"share_runs_acceptable": acc / n, "share_runs_recommending": recs / n,
                     "share_recommendations_acceptable": acc / max(recs, 1),
                     "recommendations_leaving_the_category": left}
        print(f"{name}: acceptable {acc / n:.2f}, recommending {recs / n:.2f}, "
              f"recommendations acceptable {acc / max(recs, 1):.2f}, {left} of them leave the "
              "category", flush=True)
    return out


def main() -> None:
    from gis.evaluation.trust import recheck_parser

    p = recheck_parser(__doc__, required=False)
    p.add_argument("--full-data", default=None, help="the full build (gis data build --full)")
    a = p.parse_args()
    from gis.data import load_dataset
    from gis.io import write_json

    torch.set_num_threads(1)
    ds = load_dataset("fashion-colors")
    doc = {"command": "python scripts/category_check_calibration.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v),
        "torch": torch.__version__}
    if a.full_data:
        doc["heldout"] = heldout_accuracy(ds, a.full_data)
    if a.runs:
        doc["recheck"] = recheck(ds, a.runs, a.rows)
    write_json(a.out, doc)


if __name__ == "__main__":
    main()

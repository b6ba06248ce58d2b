"""Shift many catalogue items for one user segment as Ray tasks: a whole catalogue on a cluster.

`run_gis` is a pure function of (item, users, models, settings), so a catalogue maps onto Ray
tasks unchanged: one task per item, each worker loading the models once (they ship with the
package: nothing is downloaded), the catalogue embeddings computed once by the driver and shared
through the object store. Every item gets the same documented folder as `gis shift --out`
(docs/OUTPUTS.md), so `gis report OUT/ITEM_ID` works on each, plus OUT/summary.csv ranking the
items by predicted gain.

    pip install ray
    python examples/ray_catalogue.py --items 8 --n-users 50 --out ray-shift   # this machine
    python examples/ray_catalogue.py --address auto --items 500 ...            # a running cluster

Seeds are fixed per item, so a task that Ray retries on another node gives the same variants
(up to the floating-point summation order of the node's thread count: each result.json's
`provenance`, read in the worker that computed it, records the threads, ops and device).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

_MODELS: dict = {}  # per worker process: loaded once, reused by every task it runs


def _models(generator: str, recommender: str):
    import gis

    key = (generator, recommender)
    if key not in _MODELS:
        _MODELS[key] = (gis.get_generator(generator), gis.get_recommender(recommender))
    return _MODELS[key]


def shift_item(item_id: str, user_ids: list[str], catalogue_phi, *, generator: str,
               recommender: str, data: str, threads: int, settings: dict):
    """One task: invert and shift one catalogue item for the segment; returns the GisRun."""
    import torch

    from gis.data import load_dataset
    from gis.engine import InvertSettings, run_gis, shift_settings

    torch.set_num_threads(threads)
    gen, rec = _models(generator, recommender)
    dataset = load_dataset(data)
    item = dataset.image_tensor([[str(k) for k in dataset.item_ids].index(item_id)])
    return run_gis(generator=gen, recommender=rec, users=rec.user_index(user_ids), item=item,
                   invert_settings=InvertSettings(steps=settings["invert_steps"]),
                   shift_settings=shift_settings(steps=settings["steps"], n=settings["n"]),
                   catalogue_phi=catalogue_phi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (one sub-folder per item)")
    p.add_argument("--items", type=int, default=8, help="the first N catalogue items")
    p.add_argument("--n-users", type=int, default=50, help="a seeded sample of N users")
    p.add_argument("--generator", default="progan")
    p.add_argument("--recommender", default="dvbpr")
    p.add_argument("--data", default="fashion-colors")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--invert-steps", type=int, default=200)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--cpus-per-task", type=int, default=1)
    p.add_argument("--address", default=None, help="a Ray cluster (auto); default: this machine")
    a = p.parse_args(argv)

    try:
        import ray
    except ImportError:
        sys.exit("this example needs Ray: pip install ray")
    import gis
    from gis.data import load_dataset
    from gis.engine.commands import save_shift_outputs
    from gis.engine.pipeline import embed_catalogue
    from gis.engine.targets import resolve_targets
    from gis.io import atomic_folder

    out = Path(a.out)
    if out.exists():
        sys.exit(f"{out} exists: choose another --out")
    gen, rec = gis.get_generator(a.generator), gis.get_recommender(a.recommender)
    dataset = load_dataset(a.data)
    users = [rec.user_ids[int(u)] for u in resolve_targets(rec, n_users=a.n_users, seed=0)]
    catalogue_phi = embed_catalogue(rec, rec.prepare(dataset.image_tensor(), (-1.0, 1.0)))
    items = [str(k) for k in dataset.item_ids[:a.items]]
    row_of = {item_id: j for j, item_id in enumerate(items)}  # the first N catalogue rows

    ray.init(address=a.address, log_to_driver=False)
    task = ray.remote(num_cpus=a.cpus_per_task)(shift_item)
    phi_ref = ray.put(catalogue_phi)
    settings = {"steps": a.steps, "invert_steps": a.invert_steps, "n": a.n}
    pending = {task.remote(i, users, phi_ref, generator=a.generator, recommender=a.recommender,
                           data=a.data, threads=a.cpus_per_task, settings=settings): i
               for i in items}
    out.mkdir(parents=True)
    rows = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        item_id = pending.pop(done[0])
        run = ray.get(done[0])
        source = {"source": "dataset", "dataset": a.data, "item_id": item_id,
                  "category": dataset.category_names[int(dataset.categories[row_of[item_id]])],
                  "default": False}
        with atomic_folder(out / item_id) as tmp:
            save_shift_outputs(tmp, run, gen=gen, rec=rec, generator=a.generator,
                               recommender=a.recommender, source=source, dataset=dataset)
        gains = run.result.gains()
        best = max(range(len(gains)), key=gains.__getitem__)
        rows.append({"item_id": item_id, "category": source["category"],
                     "item_score": run.item_scores["mean"],
                     "best_variant": best, "best_gain_vs_base": gains[best],
                     "best_change_lpips": run.distances["to_item"][best]})
        print(f"{item_id}: best variant #{best} {gains[best]:+.3f} "
              f"({len(items) - len(pending)}/{len(items)})", flush=True)
    rows.sort(key=lambda r: -r["best_gain_vs_base"])
    with open(out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} items -> {out}/ (summary.csv: items by predicted gain)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

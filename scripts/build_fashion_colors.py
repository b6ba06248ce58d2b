"""Rebuild the fashion-colors archive shipped with the ``gis_fashion_colors`` plugin.

    python scripts/build_fashion_colors.py          # writes the plugin's fashion_colors.npz
    python scripts/build_fashion_colors.py --check  # rebuild in memory, compare with it

Equivalent to ``gis data build --source /usr/share/datasets/fashion-mnist --out
plugins/gis_fashion_colors/fashion_colors.npz`` (seed 0), plus a report of the learnability
checks: sampled AUC (100 negatives) of the ground-truth utility and of item popularity.
The simulation lives in the plugin (``gis_fashion_colors.simulation``).
Needs the Debian package ``dataset-fashion-mnist``. ``--full`` builds the 70,000-image version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gis_fashion_colors import simulation as fc

from gis.data.split import activity, oracle_auc, popularity_auc

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "plugins" / "gis_fashion_colors" / "fashion_colors.npz"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=fc.DEFAULT_SOURCE)
    p.add_argument("--out", type=Path, default=SHIPPED)
    p.add_argument("--seed", type=int, default=fc.DEFAULT_SEED)
    p.add_argument("--full", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="compare a rebuild with the existing --out file instead of writing")
    args = p.parse_args(argv)
    sizes = fc.FULL if args.full else fc.SUBSET
    arrays = fc.build_arrays(args.source, seed=args.seed, **sizes)
    if args.check:
        with np.load(args.out, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        keys = sorted((set(arrays) | set(stored)) - {"meta"})  # meta records the source path
        diff = [k for k in keys if k not in arrays or k not in stored
                or not np.array_equal(arrays[k], stored[k])]
        print("identical arrays" if not diff else f"differs: {', '.join(diff)}")
        return 1 if diff else 0
    path = fc.save_compact(arrays, args.out)
    ds = fc.from_compact(arrays)
    act = activity(ds)
    q = np.percentile(act, [0, 25, 50, 75, 90, 99, 100])
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"items {ds.num_items} + held out {ds.num_heldout}; users {ds.num_users}; "
          f"train interactions {len(ds.train)}")
    print("activity min/p25/median/p75/p90/p99/max: " + " / ".join(f"{v:.0f}" for v in q))
    print(f"AUC true utility (oracle): {oracle_auc(ds):.3f}")
    print(f"AUC popularity:            {popularity_auc(ds):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

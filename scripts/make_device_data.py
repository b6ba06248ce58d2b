"""Write .device_data/: the Fashion-MNIST IDX files that scripts/gpu_train_full.sh needs on a
lent GPU machine to build the fashion-colors training images there (the machine reaches no
network, and what travels with the working tree is limited to 64 MiB in all).

The train images are xz-compressed (~380 bytes per image; all 60,000 take ~22 MiB), the rest
gzipped. The working tree itself takes ~38 MiB (40.1 MB at the end of the fifth session), so:

* all 60,000 train images fit on their own (the default), but
* a ProGAN warm start (``warmstart.safetensors``, 18.8 MiB for the default 32 px networks)
  leaves room for about 16,000 of them: ``--train-items 16000 --test-items 1000`` (6.2 MiB;
  tree + data + warm start = 63.2 MiB of the 64: the tree must not grow by more than ~0.9 MB
  before such a call, or use fewer images). Use the same N in every session of a chain,
  so that the training set stays the same.

The first N images of each split are kept (Fashion-MNIST's order is shuffled, so the classes
stay balanced); the IDX headers are rewritten to say so. The test images are only needed to
build the dataset's held-out split; FID is measured on the dev machine, not on the GPU.

    python scripts/make_device_data.py [--train-items N] [--test-items M] \\
        [--source /usr/share/datasets/fashion-mnist] [--out .device_data]
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import shutil
import sys
from pathlib import Path

from gis.data.fashion_colors import DEFAULT_SOURCE, read_fashion_mnist
from gis.errors import GisError


def idx_bytes(array) -> bytes:
    """An unsigned-byte IDX file (magic 0x0000 08 ndim, big-endian dims, data)."""
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.tobytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=DEFAULT_SOURCE)
    p.add_argument("--out", default=".device_data")
    p.add_argument("--train-items", type=int, default=60000)
    p.add_argument("--test-items", type=int, default=10000)
    a = p.parse_args(argv)
    try:
        x_train, y_train, x_test, y_test = read_fashion_mnist(a.source)
    except GisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, n, have in (("--train-items", a.train_items, len(x_train)),
                          ("--test-items", a.test_items, len(x_test))):
        if not 1 <= n <= have:
            print(f"error: {name} must lie in 1..{have}, got {n}", file=sys.stderr)
            return 2
    out = Path(a.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n, m = a.train_items, a.test_items
    with lzma.open(tmp / "train-images-idx3-ubyte.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as f:
        f.write(idx_bytes(x_train[:n]))
    for name, arr in (("train-labels-idx1-ubyte", y_train[:n]),
                      ("t10k-images-idx3-ubyte", x_test[:m]),
                      ("t10k-labels-idx1-ubyte", y_test[:m])):
        with gzip.open(tmp / f"{name}.gz", "wb", compresslevel=9) as f:
            f.write(idx_bytes(arr.astype("uint8")))
    shutil.rmtree(out, ignore_errors=True)  # replaced only once the new files are complete
    tmp.rename(out)
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"{out}: {n} train and {m} test images, {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

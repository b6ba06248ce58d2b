"""The realism floor of the dvbpr-gan critic, calibrated on held-out real images.

The "critic" realism of ``DVBPRGAN`` is -(D(x, c) - 1)^2 (the LSGAN generator term; <= 0,
0 where D takes the image for real). Its floor is the 5th percentile of that score on
held-out real images scored with their own category labels (``gis.realism.calibrate_floor``,
via ``gis.realism.calibrate_realism``, which also measures the ROC AUC real vs generated,
the share of generator samples below the floor and the agreement with the dataset's
ground-truth realism). Held-out reals: the held-out split of ``--data`` (for fashion-colors
the Fashion-MNIST test images; the shipped dvbpr-gan was trained on train-split images
only). Nothing is retrained.

Command (writes ``realism_calibration.critic`` into the card JSON beside the weights, which
``DVBPRGAN.realism_floor("critic")`` reads)::

    python -m gis_dvbpr_gan.calibrate [--weights PATH] [--data fashion-colors] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gis.errors import GisError, GisUsageError

#: the card key that holds the calibration of each realism kind
CARD_KEY = "realism_calibration"


def calibrate_critic(model, dataset, *, n: int = 2000, n_fake: int = 2000, seed: int = 1,
                     quantile: float = 0.05) -> dict[str, Any]:
    """``gis.realism.calibrate_realism`` of ``model``'s critic on the first ``n`` images of
    ``dataset``'s held-out split (with their categories; n' = min(n, held-out size) >= 20)
    against ``n_fake`` seeded samples whose labels follow the held-out categories."""
    from gis.realism import calibrate_realism

    if not dataset.num_heldout:
        raise GisUsageError(f"dataset {dataset.meta.get('name', '?')!r} has no held-out items "
                            "to calibrate the critic on")
    k = min(n, dataset.num_heldout)
    idx = np.arange(k)
    real = dataset.heldout_tensor(idx, value_range=model.output_range)
    labels = torch.from_numpy(np.asarray(dataset.heldout_categories)[idx]).long()
    truth = dataset.ground_truth if dataset.has_ground_truth else None
    doc = calibrate_realism(model, real, kind="critic", real_labels=labels, n_fake=n_fake,
                            seed=seed, quantile=quantile, truth=truth)
    doc["heldout"] = {"source": "heldout-split", "dataset": dataset.meta.get("name"), "n": k,
                      "rule": "the first n held-out items (never in the model's training)"}
    return doc


def main(argv: list[str] | None = None) -> int:
    from gis.data import load_dataset
    from gis.io import write_json
    from gis.training import command_line, machine_info

    from .generator import DEFAULT_WEIGHTS, load_dvbpr_gan

    p = argparse.ArgumentParser(prog="python -m gis_dvbpr_gan.calibrate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help="dvbpr-gan .safetensors (its card .json beside it is updated)")
    p.add_argument("--data", default="fashion-colors", help="dataset with a held-out split")
    p.add_argument("--n", type=int, default=2000, help="held-out real images (>= 1000 advised)")
    p.add_argument("--n-fake", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quantile", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, a.threads))
    try:
        weights = Path(a.weights)
        model = load_dvbpr_gan(weights)
        dataset = load_dataset(a.data)
        t0 = time.perf_counter()
        doc = calibrate_critic(model, dataset, n=a.n, n_fake=a.n_fake, seed=a.seed,
                               quantile=a.quantile)
    except GisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc.update(seconds=round(time.perf_counter() - t0, 1), command=command_line(),
               machine=machine_info("cpu"), torch=torch.__version__)
    print(json.dumps(doc, indent=2))
    if not a.dry_run:
        card_file = weights.with_suffix(".json")
        card = json.loads(card_file.read_text()) if card_file.is_file() else {}
        card[CARD_KEY] = {**(card.get(CARD_KEY) or {}), "critic": doc}
        write_json(card_file, card)
        print(f"wrote {CARD_KEY}.critic to {card_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DVBPR on the CPU: one BPR training step (batch 128) and one scoring batch (embed 64 images,
score them against every user), per layout.

    pytest benchmarks/test_dvbpr_bench.py --benchmark-enable --benchmark-only

Scoring runs every layout at full width ("128"/"224" hold 34-67 M parameters, the numbers a
user of AIP-style checkpoints will see); their training steps (about 0.5-1 TFLOP each) run only
with ``GIS_BENCH_FULL=1``. Each result records the commit, torch version, device and thread
count in ``extra_info``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

gis_dvbpr = pytest.importorskip("gis_dvbpr")
from gis_dvbpr.model import DVBPR, get_layout  # noqa: E402
from gis_dvbpr.trainer import ItemImages, bpr_loss  # noqa: E402

USERS = 3000       # as the embedded fashion-colors data
ITEMS = 512
BATCH = 128
SCORE_BATCH = 64


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        return "unknown"


def _record(benchmark, layout: str) -> None:
    benchmark.extra_info.update(commit=_commit() or "uncommitted", torch=torch.__version__,
                                device="cpu", threads=torch.get_num_threads(), layout=layout)


def _model(layout: str) -> DVBPR:
    torch.manual_seed(0)
    model = DVBPR(get_layout(layout), [str(u) for u in range(USERS)])
    model.reset_parameters(torch.Generator().manual_seed(0))
    return model


FULL = pytest.mark.skipif(not os.environ.get("GIS_BENCH_FULL"),
                          reason="large-layout training steps: set GIS_BENCH_FULL=1")


@pytest.mark.parametrize("layout", ["32", pytest.param("128", marks=FULL),
                                    pytest.param("224", marks=FULL)])
@pytest.mark.benchmark(group="dvbpr-train-step")
def test_train_step(benchmark, layout):
    model = _model(layout).train()
    side = model.image_size
    rng = np.random.default_rng(0)
    images = ItemImages(rng.integers(0, 256, (ITEMS, side, side, 3), dtype=np.uint8), side,
                        torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    triplets = torch.stack([torch.randint(USERS, (BATCH,), generator=g),
                            torch.randint(ITEMS, (BATCH,), generator=g),
                            torch.randint(ITEMS, (BATCH,), generator=g)], 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    decay = model.cnn.weight_decay_terms()

    def step() -> float:
        loss, bpr = bpr_loss(model, images, triplets, lambda_cnn=1e-3, lambda_theta=1.0,
                             decay=decay)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(bpr.detach())

    first = step()
    assert np.isfinite(first) and first > 0  # the step computes a real loss before timing
    _record(benchmark, layout)
    rounds = 5 if layout == "32" else 2
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("layout", ["32", "128", "224"])
@pytest.mark.benchmark(group="dvbpr-score")
def test_score_batch(benchmark, layout):
    model = _model(layout).eval().requires_grad_(False)
    side = model.image_size
    x = torch.rand(SCORE_BATCH, side, side, 3).permute(0, 3, 1, 2) * 2 - 1
    x = x.contiguous()

    def score() -> torch.Tensor:
        with torch.no_grad():
            return model.score(x)

    out = score()
    assert out.shape == (SCORE_BATCH, USERS)
    torch.testing.assert_close(score(), out, rtol=0, atol=0)  # eval: deterministic
    _record(benchmark, layout)
    benchmark.pedantic(score, rounds=5 if layout == "32" else 3, iterations=1, warmup_rounds=1)

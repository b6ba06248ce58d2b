"""The shifting loop with and without the compiled ops, and the whole default `gis shift`.

    pytest benchmarks/test_shift_bench.py --benchmark-enable -s

`test_shift_steps` runs 20 steps of the default shifting loop on the shipped models with the
native ops and with the references (GIS_OPS), checks both give the same variants, and times
them side by side. `test_default_gis_shift` runs the README's main job once in a subprocess
and records its wall time and peak resident memory (issue targets: < 2 min, < 4 GB).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest
import torch

import gis
from gis import ops
from gis.engine import shift
from gis.engine.invert import normalise_rows


@pytest.fixture(scope="module")
def models():
    return gis.get_generator("progan"), gis.get_recommender("dvbpr")


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_shift_steps(benchmark, models, monkeypatch, impl):
    if impl == "native" and not ops.native_available():
        pytest.skip("gis._C is not built")
    monkeypatch.setenv("GIS_OPS", impl)
    gen, rec = models
    z = normalise_rows(torch.randn(1, gen.latent_dim, generator=torch.Generator().manual_seed(0)))
    users = torch.arange(10)

    def run():
        return shift(z, users, gen, rec, steps=20, seed=0)

    res = benchmark.pedantic(run, rounds=2, iterations=1)
    monkeypatch.setenv("GIS_OPS", "reference")
    ref = shift(z, users, gen, rec, steps=20, seed=0)
    torch.testing.assert_close(res.images, ref.images, atol=2e-3, rtol=0)
    benchmark.group = "20 shifting steps, n=8, progan + dvbpr (shipped)"
    benchmark.extra_info["impl"] = impl


def test_default_gis_shift(benchmark, tmp_path):
    """The README's main job, end to end (catalogue, inversion, shifting, files)."""
    cmd = [sys.executable, "-m", "gis.cli", "shift", "--generator", "progan", "--recommender",
           "dvbpr", "--n-users", "10", "--quiet"]
    seconds = []

    def run():
        out = tmp_path / f"run{len(seconds)}"
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
        seconds.append(time.perf_counter() - t0)
        return out

    out = benchmark.pedantic(run, rounds=1, iterations=1)
    assert (out / "result.json").exists()
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    benchmark.group = "default gis shift (README main job)"
    benchmark.extra_info.update(wall_s=seconds[-1], peak_rss_mb=peak_kb / 1024,
                                threads=torch.get_num_threads())
    print(f"\ndefault gis shift: {seconds[-1]:.1f} s, peak RSS {peak_kb / 1024:.0f} MB")

"""The shifting loop with and without the compiled ops, and the whole default `gis shift`.

    pytest benchmarks/test_shift_bench.py --benchmark-enable -s

`test_shift_steps` runs 20 steps of the default shifting loop on the shipped models with the
native ops and with the references (GIS_OPS) and times them side by side. "Equal results" is
checked where it is well defined: at every step of a native run, each op's value and gradient
equal the reference's on the very same inputs (`ops_agree_in_loop`). Whole trajectories are
not compared: the loop is chaotic at float32 resolution (ReLU, max-pool and output-clamp kinks
in the models, then Adam's nearly sign-like early steps), so moving z by 1e-6 changes the
variants as much as swapping the implementation does (docs/ENGINE.md). `test_default_gis_shift` runs the README's main job once in a subprocess
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

    res = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    if impl == "native":
        ops_agree_in_loop(monkeypatch, lambda: shift(z, users, gen, rec, steps=5, seed=0))
    benchmark.group = "20 shifting steps, n=8, progan + dvbpr (shipped)"
    benchmark.extra_info["impl"] = impl
    v = res.scores["mean"]["variants"]
    benchmark.extra_info["mean_variant_score"] = sum(v) / len(v)


def ops_agree_in_loop(monkeypatch, run) -> None:
    """Run `run` with the native ops, recording every call's inputs and upstream gradient;
    then check that the references give the same values and gradients on those inputs."""
    csn, pref = ops.clip_shift_normalize, ops.preference_score
    calls = []

    def record(name, fn, args, kwargs):
        out = fn(*args, **kwargs, impl="native")
        entry = {"name": name, "args": [a.detach().clone() if torch.is_tensor(a) else a
                                        for a in args], "kwargs": kwargs, "out": out.detach()}
        if out.requires_grad:
            out.register_hook(lambda g: entry.__setitem__("grad", g.detach().clone()))
        calls.append(entry)
        return out

    monkeypatch.setattr(ops, "clip_shift_normalize",
                        lambda *a, impl=None, **k: record("csn", csn, a, k))
    monkeypatch.setattr(ops, "preference_score",
                        lambda *a, impl=None, **k: record("pref", pref, a, k))
    run()
    monkeypatch.undo()
    checked = 0
    for c in calls:
        fn = csn if c["name"] == "csn" else pref
        diff_arg = 1 if c["name"] == "csn" else 0  # k, or phi
        args = list(c["args"])
        results = {}
        for impl in ("native", "reference"):
            x = args[diff_arg].clone().requires_grad_("grad" in c)
            call_args = [*args[:diff_arg], x, *args[diff_arg + 1:]]
            out = fn(*call_args, **c["kwargs"], impl=impl)
            grad = torch.autograd.grad(out, x, c["grad"])[0] if "grad" in c else None
            results[impl] = (out.detach(), grad)
        torch.testing.assert_close(results["native"][0], c["out"], rtol=0, atol=0)
        torch.testing.assert_close(results["native"][0], results["reference"][0],
                                   rtol=1e-4, atol=1e-5)
        if "grad" in c:
            torch.testing.assert_close(results["native"][1], results["reference"][1],
                                       rtol=1e-4, atol=1e-5)
            checked += 1
    assert checked >= 10, f"only {checked} differentiated op calls were recorded"


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

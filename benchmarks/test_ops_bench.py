"""Benchmarks of gis.ops: compiled kernels (native) against the PyTorch references.

    pytest benchmarks/test_ops_bench.py --benchmark-enable --benchmark-min-rounds=3 \
        [--benchmark-json=ops.json] [-k cuda]

One group per operation and size, so each table compares the implementations directly;
every case checks its result against the reference before it is timed. Preference scoring
groups carry a plain GEMM of the same size (phi @ users.T, B x U output) as a yardstick.
Peak extra memory of preference fwd+bwd is measured in a fresh process on the
CPU (Linux VmHWM, reset before the call), with torch.cuda.max_memory_allocated on a GPU, and stored in extra_info["peak_extra_mib"].
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zlib

import pytest
import torch

from gis import ops
from gis.ops import reference as ref

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
K = 100  # DVBPR embedding size
TEMPERATURE = 1.0
_cache: dict = {}


def skip_unavailable(impl: str, device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if impl == "native" and not ops.native_available(device):
        pytest.skip(f"gis._C is not built for {device}")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def inputs(name: str, shape: tuple, device: str, dtype=torch.float32) -> torch.Tensor:
    """Seeded random tensors, made once per session (users at U = 1e6 take a while)."""
    key = (name, shape, device, dtype)
    if key not in _cache:
        g = torch.Generator().manual_seed(zlib.crc32(f"{name}{shape}".encode()))
        scale = 0.1 if name == "users" else 1.0  # users ~ DVBPR's small theta_u
        _cache[key] = (scale * torch.randn(shape, generator=g)).to(device=device, dtype=dtype)
    return _cache[key]


# ---- clip_shift_normalize ---------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [8, 64, 256])
@pytest.mark.parametrize("mode", ["vector", "batch"])
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_clip_shift_normalize(record, impl, mode, n, device):
    skip_unavailable(impl, device)
    d = 512
    z = inputs("z", (1, d), device)
    k = inputs("k", (n, d), device).clone().requires_grad_(True)
    g = inputs("g", (n, d), device)

    def fwd_bwd():
        out = ops.clip_shift_normalize(z, k, 0.4, mode, impl=impl)
        (grad_k,) = torch.autograd.grad(out, k, g)
        sync(device)
        return out, grad_k

    out, grad_k = fwd_bwd()
    want = ref.clip_shift_normalize(z, k, 0.4, mode)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(grad_k, torch.autograd.grad(want, k, g)[0], rtol=1e-4, atol=2e-5)
    record.group = f"clip_shift_normalize fwd+bwd {mode} n={n} d={d} {device}"
    record(fwd_bwd)


# ---- preference_score -------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("u", [1, 1_000, 100_000, 1_000_000])
@pytest.mark.parametrize("b", [8, 64])
@pytest.mark.parametrize("agg", ["mean", "softmin"])
@pytest.mark.parametrize("impl", ["native", "reference", "gemm"])
def test_preference_score(record, impl, agg, b, u, device):
    skip_unavailable("reference" if impl == "gemm" else impl, device)
    users = inputs("users", (u, K), device)
    phi = inputs("phi", (b, K), device).clone().requires_grad_(True)
    record.group = f"preference_score {agg} fwd+bwd B={b} U={u} {device}"

    if impl == "gemm":  # the yardstick: one GEMM of the same size, B x U out

        def gemm():
            s = torch.mm(phi.detach(), users.T)
            sync(device)
            return s

        assert gemm().shape == (b, u)
        record(gemm)
        return

    def fwd_bwd():
        s = ops.preference_score(phi, users, agg, temperature=TEMPERATURE, impl=impl)
        (grad,) = torch.autograd.grad(s.sum(), phi)
        sync(device)
        return s, grad

    s, grad = fwd_bwd()
    want = ref.preference_score(phi, users, agg, temperature=TEMPERATURE)
    torch.testing.assert_close(s, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad, torch.autograd.grad(want.sum(), phi)[0], rtol=1e-4, atol=1e-5)
    record(fwd_bwd)


# ---- peak memory --------------------------------------------------------------------------
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from gis import ops

    def status_kib(field):  # VmRSS (now) or VmHWM (peak) of this process
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    impl, agg, b, u, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(int(sys.argv[6]))
    users = torch.randn(u, k).mul_(0.1)
    phi = torch.randn(b, k, requires_grad=True)
    ops.preference_score(phi, users[:1000], agg, impl=impl).sum().backward()  # load, warm up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    before = status_kib("VmRSS")
    s = ops.preference_score(phi, users, agg, impl=impl)
    s.sum().backward()
    print(json.dumps({"peak_extra_mib": (status_kib("VmHWM") - before) / 1024.0}))
    """
)


def peak_extra_mib(impl: str, agg: str, b: int, u: int, device: str) -> float:
    """Peak memory of one fwd+bwd above what the inputs already hold, in MiB."""
    if device == "cuda":
        users = inputs("users", (u, K), device)
        phi = inputs("phi", (b, K), device).clone().requires_grad_(True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        ops.preference_score(phi, users, agg, impl=impl).sum().backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    env = {**os.environ, "GIS_OPS": impl}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_SCRIPT,
            impl,
            agg,
            str(b),
            str(u),
            str(K),
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_mib"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("u", [100_000, 1_000_000])
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_preference_peak_memory(record, impl, u, device):
    """softmin fwd+bwd at B = 64: the native kernels' memory must not grow with U."""
    skip_unavailable(impl, device)
    b = 64
    mib = peak_extra_mib(impl, "softmin", b, u, device)
    record.group = f"preference_score softmin fwd+bwd peak memory B={b} {device}"
    record.extra_info["peak_extra_mib"] = round(mib, 1)
    record.extra_info["score_matrix_mib"] = round(b * u * 4 / 2**20, 1)
    print(f"\npeak extra memory {impl} U={u} {device}: {mib:.1f} MiB")
    if impl == "native":
        # far below one B x U float32 score matrix (244 MiB at U = 1e6), whatever U is (the
        # CUDA kernels use larger tiles: up to 8M scores)
        limit = 32 if device == "cpu" else 64
        assert mib < limit, f"native peak extra memory {mib:.1f} MiB at U={u}"
    record.pedantic(lambda: None, rounds=1, iterations=1)

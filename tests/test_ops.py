"""gis.ops: compiled kernels (gis._C) against the pure-PyTorch references.

Values and gradients are compared with torch.testing.assert_close; gradcheck runs in float64;
torch.library.opcheck checks schemas, fake kernels and autograd registrations. Native cases
skip when gis._C is not built (GIS_REQUIRE_NATIVE=1 turns that into a failure); CUDA cases
are marked `cuda` and skip without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from gis import ops
from gis.errors import GisUsageError
from gis.ops import reference as ref

NATIVE = ops.native_available()
CUDA = torch.cuda.is_available()

needs_native = pytest.mark.skipif(not NATIVE, reason="gis._C is not built")
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not CUDA, reason="no CUDA device"),
            pytest.mark.skipif(
                NATIVE and not ops.native_available("cuda"), reason="gis._C built without CUDA"
            ),
        ],
    ),
]
CUDA_ONLY = [p for p in DEVICES if p != "cpu"]
# opcheck's test_aot_dispatch_dynamic reads .grad of non-leaf tensors itself (torch internals).
opcheck_warning = pytest.mark.filterwarnings(
    "ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning"
)


def tol(dtype):
    # float32: different summation orders over up to ~1e3 terms; float64: near exact.
    return {"rtol": 1e-4, "atol": 2e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}


def away_from_bounds(k: torch.Tensor, eps: float, margin: float = 1e-2) -> torch.Tensor:
    """k with no entry within `margin` of +-eps (finite differences there see the kink)."""
    near = (k.abs() - eps).abs() < margin
    return torch.where(near, k + 3 * margin * k.sign(), k)


# ---------------------------------------------------------------------------------------
def test_native_is_built_when_required():
    """CI sets GIS_REQUIRE_NATIVE=1 after building: a missing gis._C must fail there."""
    if os.environ.get("GIS_REQUIRE_NATIVE") != "1":
        pytest.skip("GIS_REQUIRE_NATIVE is not set")
    assert ops.native_available(), f"gis._C is missing: {ops._native_error}"
    if CUDA:
        assert ops.native_available("cuda"), "a GPU is present but gis._C has no CUDA kernels"


# ---- clip_shift_normalize -------------------------------------------------------------
SHAPES = [(1, 1), (1, 7), (3, 1), (2, 2), (8, 512), (5, 600), (64, 33), (64, 512)]


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["vector", "batch"])
@pytest.mark.parametrize("z_rows", ["one", "n"])
@pytest.mark.parametrize("eps", [0.0, 0.4, 10.0], ids=["all-saturated", "mixed", "free"])
def test_clip_shift_normalize_matches_reference(device, n, d, dtype, mode, z_rows, eps):
    z = torch.randn(1 if z_rows == "one" else n, d, dtype=dtype, device=device)
    k = torch.randn(n, d, dtype=dtype, device=device)
    z.requires_grad_(True)
    k.requires_grad_(True)
    out = ops.clip_shift_normalize(z, k, eps, mode, impl="native")
    expected = ref.clip_shift_normalize(z, k, eps, mode)
    # Rounding errors scale with 1 / std: a near-constant group (d = 2, or n copies of z when
    # eps = 0 and d = 1) is ill-conditioned, and both sides then differ in amplified noise.
    scaled = tol(dtype)
    scaled["atol"] *= max(1.0, inverse_std(z, k, eps, mode))
    torch.testing.assert_close(out, expected, **scaled)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (z, k), g)
    want = torch.autograd.grad(expected, (z, k), g)
    torch.testing.assert_close(got[0], want[0], **scaled)
    torch.testing.assert_close(got[1], want[1], **scaled)
    saturated = k.detach().abs() > eps
    assert (got[1][saturated] == 0).all()  # no gradient through a saturated clamp


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["vector", "batch"])
def test_clip_shift_normalize_clamp_boundary(device, dtype, mode):
    """Entries exactly on the bound (eps rounded to k's dtype, as an in-place clamp_ leaves
    them) keep their gradient; the next representable value beyond it gets none. Native and
    reference agree on both, so an engine step is the same on either path."""
    eps = 0.4  # not representable in binary: float32(0.4) > 0.4 > float64(0.4) - ulp
    bound = torch.tensor(eps, dtype=dtype)
    beyond = torch.nextafter(bound, torch.tensor(1.0, dtype=dtype))
    within = torch.nextafter(bound, torch.tensor(0.0, dtype=dtype))
    row = torch.stack([bound, -bound, beyond, -beyond, within, -within])
    k = torch.cat([row, torch.linspace(-0.3, 0.3, 10, dtype=dtype)]).repeat(3, 1).to(device)
    assert (k.clamp(-eps, eps) == k)[:, :2].all()  # what the engine's clamp_ produces
    z = torch.randn(1, k.shape[1], dtype=dtype, device=device)
    g = torch.randn(3, k.shape[1], dtype=dtype, device=device)
    grads = {}
    for impl in ("native", "reference"):
        kk = k.clone().requires_grad_(True)
        out = ops.clip_shift_normalize(z, kk, eps, mode, impl=impl)
        grads[impl] = torch.autograd.grad(out, kk, g)[0]
    torch.testing.assert_close(grads["native"], grads["reference"], **tol(dtype))
    gk = grads["native"]
    assert (gk[:, [0, 1, 4, 5]] != 0).all()  # on or inside the bound: gradient passes
    assert (gk[:, [2, 3]] == 0).all()  # beyond it: saturated


def inverse_std(z, k, eps, mode) -> float:
    """max over normalisation groups of 1 / std(z + clamp(k)), in float64 (floored std)."""
    x = (z + k.clamp(-eps, eps)).detach().double()
    x = x if mode == "vector" else x.reshape(1, -1)
    var = (x - x.mean(1, keepdim=True)).pow(2).sum(1) / max(x.shape[1] - 1, 1)
    return float(var.clamp_min(ref.STD_FLOOR**2).rsqrt().max())


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["vector", "batch"])
def test_clip_shift_normalize_definition(device, mode):
    """Rows (or the batch) really come out with mean 0 and unbiased std 1."""
    z = torch.randn(1, 512, dtype=torch.float64, device=device)
    k = torch.randn(8, 512, dtype=torch.float64, device=device)
    out = ops.clip_shift_normalize(z, k, 0.4, mode, impl="native")
    x = out if mode == "vector" else out.reshape(1, -1)
    torch.testing.assert_close(x.mean(1), torch.zeros(x.shape[0], dtype=x.dtype, device=device))
    torch.testing.assert_close(x.std(1), torch.ones(x.shape[0], dtype=x.dtype, device=device))
    # eps = 0 ignores k entirely
    torch.testing.assert_close(
        ops.clip_shift_normalize(z, k, 0.0, mode, impl="native"),
        ref.clip_shift_normalize(z.expand(8, -1), torch.zeros_like(k), 0.0, mode),
    )


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["vector", "batch"])
@pytest.mark.parametrize("n,d,z_rows", [(3, 5, 1), (4, 6, 4), (1, 3, 1), (2, 1, 2)])
def test_clip_shift_normalize_gradcheck(device, mode, n, d, z_rows):
    eps = 0.5
    z = torch.randn(z_rows, d, dtype=torch.float64, device=device, requires_grad=True)
    k = away_from_bounds(torch.randn(n, d, dtype=torch.float64, device=device), eps)
    k.requires_grad_(True)
    fn = lambda z, k: ops.clip_shift_normalize(z, k, eps, mode, impl="native")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (z, k))


@needs_native
@opcheck_warning
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", [0, 1])
def test_clip_shift_normalize_opcheck(device, mode):
    z = torch.randn(1, 12, device=device, requires_grad=True)
    k = torch.randn(4, 12, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.gis.clip_shift_normalize.default, (z, k, 0.4, mode))
    zf = torch.randn(4, 12, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.gis.clip_shift_normalize.default, (zf, k, 0.4, mode))
    g = torch.randn(4, 12, device=device)
    torch.library.opcheck(
        torch.ops.gis.clip_shift_normalize_backward.default,
        (g, z.detach(), k.detach(), 0.4, mode),
    )


@needs_native
def test_clip_shift_normalize_inputs():
    z = torch.randn(16)  # (d,) is taken as (1, d)
    k = torch.randn(16, 8).t()  # (8, 16), non-contiguous
    assert not k.is_contiguous()
    torch.testing.assert_close(
        ops.clip_shift_normalize(z, k, 0.4, impl="native"),
        ref.clip_shift_normalize(z[None], k, 0.4),
        **tol(torch.float32),
    )
    with pytest.raises(GisUsageError, match="mode"):
        ops.clip_shift_normalize(z, k, 0.4, mode="rows")
    with pytest.raises(GisUsageError, match="eps"):
        ops.clip_shift_normalize(z, k, -1.0)


@needs_native
def test_clip_shift_normalize_errors_quote_values():
    """Kernel argument checks raise RuntimeError with the values received."""
    with pytest.raises(RuntimeError, match=r"z must have shape \(1, d\) or \(n, d\)"):
        torch.ops.gis.clip_shift_normalize(torch.randn(2, 16), torch.randn(8, 16), 0.4, 0)
    with pytest.raises(RuntimeError, match="mode must be 0 .* got 7"):
        torch.ops.gis.clip_shift_normalize(torch.randn(1, 16), torch.randn(8, 16), 0.4, 7)
    with pytest.raises(RuntimeError, match="share a dtype"):
        torch.ops.gis.clip_shift_normalize(torch.randn(1, 16).double(), torch.randn(8, 16), 0.4, 0)


# ---- preference_score -------------------------------------------------------------------
AGG_NAMES = ["mean", "min", "softmin", "coverage"]


def pref_inputs(b, kdim, u, dtype=torch.float32, users_dtype=None, device="cpu"):
    phi = torch.randn(b, kdim, dtype=dtype, device=device)
    users = (0.5 * torch.randn(u, kdim, dtype=dtype, device=device)).to(users_dtype or dtype)
    thresholds = torch.randn(u, dtype=dtype, device=device)
    return phi, users, thresholds


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("agg", AGG_NAMES)
@pytest.mark.parametrize(
    "dtype,users_dtype",
    [
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.float32, torch.bfloat16),
        (torch.float32, torch.float16),
        (torch.float64, torch.float32),
    ],
    ids=["f32", "f64", "f32-bf16users", "f32-f16users", "f64-f32users"],
)
@pytest.mark.parametrize("u,tile", [(1, None), (7, 3), (1000, None), (1037, 256), (300, 1000)])
def test_preference_score_matches_reference(device, agg, dtype, users_dtype, u, tile):
    phi, users, thr = pref_inputs(6, 20, u, dtype, users_dtype, device)
    kw = {"temperature": 0.7, "thresholds": thr if agg == "coverage" else None}
    expected = ref.preference_score(phi.requires_grad_(True), users, agg, **kw)
    (want,) = torch.autograd.grad(expected, phi, g := torch.randn_like(expected))
    # the training path (score and d score / d phi in one pass) ...
    out = ops.preference_score(phi, users, agg, tile=tile, impl="native", **kw)
    torch.testing.assert_close(out, expected, **tol(dtype))
    (got,) = torch.autograd.grad(out, phi, g)
    torch.testing.assert_close(got, want, **tol(dtype))
    # ... the plain op with its registered backward op ...
    code = ref.AGGS[agg]
    out2 = torch.ops.gis.preference_score(phi, users, code, 0.7, kw["thresholds"], tile or 0)
    torch.testing.assert_close(out2, expected, **tol(dtype))
    (got2,) = torch.autograd.grad(out2, phi, g)
    torch.testing.assert_close(got2, want, **tol(dtype))
    # ... and inference (no gradient wanted).
    with torch.no_grad():
        torch.testing.assert_close(
            ops.preference_score(phi, users, agg, tile=tile, impl="native", **kw),
            expected.detach(),
            **tol(dtype),
        )


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("agg", AGG_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b", [1, 8, 9, 16, 17, 40])
def test_preference_score_batch_sizes(device, agg, dtype, b):
    """B <= 8, <= 16 (register-blocked CPU loops) and > 16 (MKL) take different CPU paths."""
    phi, users, thr = pref_inputs(b, 33, 1037, dtype, device=device)
    phi.requires_grad_(True)
    kw = {"temperature": 0.7, "thresholds": thr}
    out = ops.preference_score(phi, users, agg, tile=100, impl="native", **kw)
    expected = ref.preference_score(phi, users, agg, **kw)
    torch.testing.assert_close(out, expected, **tol(dtype))
    g = torch.randn_like(out)
    torch.testing.assert_close(
        torch.autograd.grad(out, phi, g)[0], torch.autograd.grad(expected, phi, g)[0], **tol(dtype)
    )


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("agg", AGG_NAMES)
def test_preference_score_gradcheck(device, agg):
    phi, users, thr = pref_inputs(3, 5, 50, torch.float64, device=device)
    phi.requires_grad_(True)

    def fn(phi):
        return ops.preference_score(
            phi, users, agg, temperature=0.5, thresholds=thr, tile=16, impl="native"
        )

    def fn_plain(phi):
        return torch.ops.gis.preference_score(phi, users, ref.AGGS[agg], 0.5, thr, 16)

    assert torch.autograd.gradcheck(fn, (phi,))
    assert torch.autograd.gradcheck(fn_plain, (phi,))


@needs_native
@opcheck_warning
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("agg", [0, 1, 2, 3])
def test_preference_opcheck(device, agg):
    phi, users, thr = pref_inputs(4, 8, 37, device=device)
    phi.requires_grad_(True)
    args = (phi, users, agg, 0.5, thr, 10)
    torch.library.opcheck(torch.ops.gis.preference_score.default, args)
    torch.library.opcheck(torch.ops.gis.preference_score_with_grad.default, args)
    grad = torch.randn(4, device=device)
    torch.library.opcheck(
        torch.ops.gis.preference_score_backward.default,
        (grad, phi.detach(), users, agg, 0.5, thr, 10),
    )


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_softmin_between_min_and_mean(device):
    phi, users, _ = pref_inputs(4, 10, 500, torch.float64, device=device)
    s = phi @ users.T
    soft = lambda t: ops.preference_score(phi, users, "softmin", temperature=t, impl="native")  # noqa: E731
    torch.testing.assert_close(soft(1e-3), s.min(1).values, rtol=0, atol=1e-2)
    torch.testing.assert_close(soft(1e4), s.mean(1), rtol=0, atol=1e-3)
    assert (soft(1.0) >= s.min(1).values).all() and (soft(1.0) <= s.mean(1)).all()


@needs_native
def test_preference_score_checks():
    phi, users, thr = pref_inputs(2, 8, 10)
    with pytest.raises(RuntimeError, match=r"users must be \(U, K\) with K = 8"):
        torch.ops.gis.preference_score(phi, torch.randn(10, 9), 0, 1.0, None, 0)
    with pytest.raises(RuntimeError, match="finite temperature > 0, got -1"):
        torch.ops.gis.preference_score(phi, users, 2, -1.0, None, 0)
    with pytest.raises(RuntimeError, match=r"thresholds must have shape \(U,\) = \(10,\)"):
        torch.ops.gis.preference_score(phi, users, 3, 1.0, thr[:5], 0)
    with pytest.raises(GisUsageError, match="agg"):
        ops.preference_score(phi, users, "max")
    with pytest.raises(GisUsageError, match="thresholds"):
        ops.preference_score(phi, users, "coverage")
    with pytest.raises(GisUsageError, match="temperature"):
        ops.preference_score(phi, users, "softmin", temperature=0.0)


# ---- preference_rank --------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("users_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("u,tile", [(1, None), (333, 100), (1000, None)])
def test_preference_rank(device, users_dtype, u, tile):
    # float64 scores: two GEMM formulations of s could differ in the last float32 bit and
    # flip a comparison with a catalogue score that close (exact ties: the next test)
    phi, users, _ = pref_inputs(5, 12, u, torch.float64, users_dtype=users_dtype, device=device)
    catalogue = torch.randn(u, 40, dtype=torch.float64, device=device) * 2
    ranks = ops.preference_rank(phi, users, catalogue, tile=tile, impl="native")
    assert ranks.dtype == torch.int64 and ranks.shape == (5, u)
    torch.testing.assert_close(ranks, ops.preference_rank(phi, users, catalogue, impl="reference"))
    s = phi @ users.double().T
    brute = (catalogue[None] > s[..., None]).sum(-1)  # items strictly above, per (b, u)
    torch.testing.assert_close(ranks, brute)


@needs_native
@opcheck_warning
@pytest.mark.parametrize("device", DEVICES)
def test_preference_rank_ties_and_opcheck(device):
    # integer-valued scores: exact ties with catalogue entries count in the image's favour
    phi = torch.randint(-3, 4, (4, 3), device=device).float()
    users = torch.randint(-2, 3, (50, 3), device=device).float()
    catalogue = torch.randint(-10, 11, (50, 30), device=device).float().sort(1).values
    ranks = ops.preference_rank(phi, users, catalogue, presorted=True, impl="native")
    brute = (catalogue[None] > (phi @ users.T)[..., None]).sum(-1)
    torch.testing.assert_close(ranks, brute)
    torch.library.opcheck(torch.ops.gis.preference_rank.default, (phi, users, catalogue, 16))


# ---- implementation switch and fallback -----------------------------------------------
def test_reference_is_forced_by_env_and_impl(monkeypatch):
    calls = []
    real = ref.clip_shift_normalize
    monkeypatch.setattr(ref, "clip_shift_normalize", lambda *a: calls.append(1) or real(*a))
    z, k = torch.randn(1, 8), torch.randn(3, 8)
    ops.clip_shift_normalize(z, k, 0.4, impl="reference")
    assert len(calls) == 1
    monkeypatch.setenv("GIS_OPS", "reference")
    ops.clip_shift_normalize(z, k, 0.4)
    assert len(calls) == 2
    monkeypatch.setenv("GIS_OPS", "fastest")
    with pytest.raises(GisUsageError, match="GIS_OPS"):
        ops.clip_shift_normalize(z, k, 0.4)


def test_fallback_warns_once_and_native_raises(monkeypatch):
    """Without gis._C: one GisOpsWarning, reference results; impl="native" is an error."""
    monkeypatch.setattr(ops, "_native", False)
    monkeypatch.setattr(ops, "_native_error", "ImportError: simulated")
    monkeypatch.setattr(ops, "_warned", False)
    monkeypatch.delenv("GIS_OPS", raising=False)
    z, k = torch.randn(1, 8), torch.randn(3, 8)
    with pytest.warns(ops.GisOpsWarning, match="simulated"):
        out = ops.clip_shift_normalize(z, k, 0.4)
    torch.testing.assert_close(out, ref.clip_shift_normalize(z, k, 0.4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call stays quiet
        ops.preference_score(torch.randn(2, 4), torch.randn(5, 4), "softmin")
    with pytest.raises(ops.NativeOpsUnavailableError, match="simulated"):
        ops.clip_shift_normalize(z, k, 0.4, impl="native")
    assert not ops.native_available()


@pytest.mark.parametrize("agg", AGG_NAMES)
def test_reference_preference_definitions(agg):
    """The oracle itself against hand-written formulas."""
    phi, users, thr = pref_inputs(3, 4, 9, torch.float64)
    s = phi @ users.T
    want = {
        "mean": s.mean(1),
        "min": s.min(1).values,
        "softmin": -0.5 * torch.log(torch.exp(-s / 0.5).mean(1)),
        "coverage": (1 / (1 + torch.exp(-(s - thr) / 0.5))).mean(1),
    }[agg]
    got = ref.preference_score(phi, users, agg, temperature=0.5, thresholds=thr)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", ["vector", "batch"])
def test_reference_clip_shift_normalize_degenerate(mode):
    """d == 1 (vector mode) or constant input: zeros and zero gradients, never NaN."""
    k = torch.zeros(3, 1, requires_grad=True)
    z = torch.ones(1, 1, requires_grad=True)
    out = ref.clip_shift_normalize(z, k, 0.4, mode)
    assert torch.equal(out, torch.zeros(3, 1))
    out.sum().backward()
    assert torch.isfinite(k.grad).all() and torch.isfinite(z.grad).all()
    if NATIVE:
        torch.testing.assert_close(ops.clip_shift_normalize(z, k, 0.4, mode, impl="native"), out)


# ---- CUDA extras -------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("device", CUDA_ONLY)
def test_cuda_matches_cpu_large(device):
    """One larger case per op on the GPU against the CPU kernels."""
    z, k = torch.randn(1, 512), torch.randn(256, 512)
    for mode in ("vector", "batch"):
        torch.testing.assert_close(
            ops.clip_shift_normalize(z.to(device), k.to(device), 0.4, mode, impl="native").cpu(),
            ops.clip_shift_normalize(z, k, 0.4, mode, impl="native"),
            **tol(torch.float32),
        )
    phi, users, thr = pref_inputs(16, 100, 70_001, users_dtype=torch.bfloat16)
    for agg in AGG_NAMES:
        got = ops.preference_score(
            phi.to(device),
            users.to(device),
            agg,
            temperature=0.5,
            thresholds=thr.to(device),
            impl="native",
        )
        want = ops.preference_score(phi, users, agg, temperature=0.5, thresholds=thr, impl="native")
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


@needs_native
def test_baseline_isa_copy_matches():
    """The CPU loops are compiled for the baseline ISA and for AVX2; check the baseline copy."""
    code = (
        "import torch; from gis import ops; from gis.ops import reference as ref\n"
        "torch.manual_seed(0)\n"
        "for mode in ('vector', 'batch'):\n"
        "    z = torch.randn(1, 515, dtype=torch.float64)\n"
        "    k = torch.randn(9, 515, dtype=torch.float64, requires_grad=True)\n"
        "    out = ops.clip_shift_normalize(z, k, 0.4, mode, impl='native')\n"
        "    want = ref.clip_shift_normalize(z, k, 0.4, mode)\n"
        "    torch.testing.assert_close(out, want)\n"
        "    g = torch.randn_like(out)\n"
        "    torch.testing.assert_close(torch.autograd.grad(out, k, g)[0],\n"
        "                               torch.autograd.grad(want, k, g)[0])\n"
        "for b in (5, 12, 20):\n"
        "    phi = torch.randn(b, 30, requires_grad=True)\n"
        "    users, thr = torch.randn(999, 30) * 0.5, torch.randn(999)\n"
        "    for agg in ('min', 'softmin', 'coverage'):\n"
        "        kw = dict(temperature=0.7, thresholds=thr)\n"
        "        out = ops.preference_score(phi, users, agg, tile=64, impl='native', **kw)\n"
        "        want = ref.preference_score(phi, users, agg, **kw)\n"
        "        torch.testing.assert_close(out, want, rtol=1e-4, atol=2e-5)\n"
        "        torch.testing.assert_close(torch.autograd.grad(out.sum(), phi)[0],\n"
        "                                   torch.autograd.grad(want.sum(), phi)[0],\n"
        "                                   rtol=1e-4, atol=2e-5)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "GIS_CPU_ISA": "default"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]

"""Autograd formulas and fake (meta) kernels of the compiled gis operators.

clip_shift_normalize's autograd is in C++ (csrc/autograd.cpp); the preference ops' are here.

Imported by gis.ops right after gis._C; the C++ schema file names this module
(m.set_python_module), which is where torch expects the fake kernels to live. Gradients
flow to z and k (clip_shift_normalize) and to phi (preference_score); user vectors,
thresholds and catalogue scores are constants. Second derivatives are not implemented.
"""

from __future__ import annotations

import torch

_lib = "gis::"
_PREF_BACKWARD = torch.ops.gis.preference_score_backward.default


# ---- clip_shift_normalize -------------------------------------------------------------
@torch.library.register_fake(_lib + "clip_shift_normalize")
def _csn_fake(z, k, eps, mode):
    torch._check(k.dim() == 2, lambda: f"k must be (n, d), got {tuple(k.shape)}")
    return k.new_empty(k.shape)


@torch.library.register_fake(_lib + "clip_shift_normalize_backward")
def _csn_backward_fake(grad, z, k, eps, mode):
    return z.new_empty(z.shape), k.new_empty(k.shape)


# Its autograd formula is registered in C++ (csrc/autograd.cpp): this op runs once per
# shifting step on small inputs, where a Python formula would cost more than the kernels.


# ---- preference_score ----------------------------------------------------------------
@torch.library.register_fake(_lib + "preference_score")
def _pref_fake(phi, users, agg, temperature, thresholds, tile):
    torch._check(phi.dim() == 2, lambda: f"phi must be (B, K), got {tuple(phi.shape)}")
    return phi.new_empty(phi.shape[:1])


@torch.library.register_fake(_lib + "preference_score_backward")
def _pref_backward_fake(grad, phi, users, agg, temperature, thresholds, tile):
    return phi.new_empty(phi.shape)


@torch.library.register_fake(_lib + "preference_score_with_grad")
def _pref_with_grad_fake(phi, users, agg, temperature, thresholds, tile):
    torch._check(phi.dim() == 2, lambda: f"phi must be (B, K), got {tuple(phi.shape)}")
    return phi.new_empty(phi.shape[:1]), phi.new_empty(phi.shape)


@torch.library.register_fake(_lib + "preference_rank")
def _rank_fake(phi, users, catalogue_sorted, tile):
    return phi.new_empty((phi.shape[0], users.shape[0]), dtype=torch.int64)


def _pref_setup(ctx, inputs, output):
    phi, users, agg, temperature, thresholds, tile = inputs
    ctx.save_for_backward(phi, users, thresholds)
    ctx.agg, ctx.temperature, ctx.tile = agg, temperature, tile


def _pref_backward(ctx, grad):
    phi, users, thresholds = ctx.saved_tensors
    grad_phi = None
    if ctx.needs_input_grad[0]:
        grad_phi = _PREF_BACKWARD(grad, phi, users, ctx.agg, ctx.temperature, thresholds, ctx.tile)
    return grad_phi, None, None, None, None, None


torch.library.register_autograd(
    _lib + "preference_score", _pref_backward, setup_context=_pref_setup
)


# preference_score_with_grad returns (score, dscore/dphi) from one pass over the users; the
# backward of score is then a product, with no second pass. dscore/dphi is a constant.
def _pref_wg_setup(ctx, inputs, output):
    _, jac = output
    ctx.mark_non_differentiable(jac)
    ctx.save_for_backward(jac)


def _pref_wg_backward(ctx, grad_score, _grad_jac):
    (jac,) = ctx.saved_tensors
    grad_phi = grad_score.unsqueeze(1) * jac if ctx.needs_input_grad[0] else None
    return grad_phi, None, None, None, None, None


torch.library.register_autograd(
    _lib + "preference_score_with_grad", _pref_wg_backward, setup_context=_pref_wg_setup
)

// Schemas of the gis operators: defined once here; kernels live in cpu/ and cuda/, one file
// per operator and backend. clip_shift_normalize's autograd is in autograd.cpp; the other
// autograd formulas and all fake (meta) kernels are registered from Python in
// gis/ops/_registration.py (named below, so torch can find them).
#include <torch/library.h>

TORCH_LIBRARY(gis, m) {
  m.set_python_module("gis.ops._registration");

  // out = normalise(z + clamp(k, -eps, eps)); z (1, d) or (n, d), k (n, d);
  // mode 0: one mean/std per row, mode 1: one mean/std over the whole n x d batch.
  m.def("clip_shift_normalize(Tensor z, Tensor k, float eps, int mode) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // (grad_z, grad_k); grad_z is summed over rows when z is (1, d).
  m.def(
      "clip_shift_normalize_backward(Tensor grad, Tensor z, Tensor k, float eps, int mode)"
      " -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});

  // score[b] = agg_u(phi[b] . users[u]) over U users, tile users at a time (tile 0: default).
  // agg: 0 mean, 1 min, 2 softmin (temperature), 3 coverage (temperature, thresholds (U,)).
  m.def(
      "preference_score(Tensor phi, Tensor users, int agg, float temperature,"
      " Tensor? thresholds, int tile) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // grad_phi (B, K) = grad[:, None] * d score[b] / d phi[b]; users are constants.
  m.def(
      "preference_score_backward(Tensor grad, Tensor phi, Tensor users, int agg,"
      " float temperature, Tensor? thresholds, int tile) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // (score (B,), dscore_dphi (B, K)) in one pass over the users: the training-loop path.
  m.def(
      "preference_score_with_grad(Tensor phi, Tensor users, int agg, float temperature,"
      " Tensor? thresholds, int tile) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});

  // rank[b, u] = #{i : catalogue_sorted[u, i] > phi[b] . users[u]} (int64, (B, U));
  // catalogue_sorted holds each user's catalogue scores sorted ascending.
  m.def("preference_rank(Tensor phi, Tensor users, Tensor catalogue_sorted, int tile) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}

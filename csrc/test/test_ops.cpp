// C++ test of the gis operators (CPU kernels), run by ctest. The ops are reached through the
// dispatcher, as torch.ops.gis.* would reach them, and checked against references written
// with ATen ops (values) and libtorch autograd on those references (gradients).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>

namespace {

int g_failures = 0;
int g_checks = 0;

void check_close(const at::Tensor& got, const at::Tensor& want, const std::string& what,
                 double rtol, double atol) {
  ++g_checks;
  const bool ok = got.sizes() == want.sizes() && got.scalar_type() == want.scalar_type() &&
                  at::allclose(got, want, rtol, atol);
  if (!ok) {
    ++g_failures;
    const double diff = got.sizes() == want.sizes()
                            ? (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>()
                            : NAN;
    std::fprintf(stderr, "FAIL %s: max |diff| = %g (shapes %s vs %s)\n", what.c_str(), diff,
                 c10::str(got.sizes()).c_str(), c10::str(want.sizes()).c_str());
  }
}

void check_true(bool cond, const std::string& what) {
  ++g_checks;
  if (!cond) {
    ++g_failures;
    std::fprintf(stderr, "FAIL %s\n", what.c_str());
  }
}

double rtol_for(at::ScalarType t) { return t == at::kFloat ? 1e-4 : 1e-9; }
double atol_for(at::ScalarType t) { return t == at::kFloat ? 2e-5 : 1e-9; }

using OptT = std::optional<at::Tensor>;

// ---- typed dispatcher handles --------------------------------------------------------------
auto csn_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("gis::clip_shift_normalize", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t)>();
}
auto csn_backward_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("gis::clip_shift_normalize_backward", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, double, int64_t)>();
}
auto pref_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("gis::preference_score", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, double, const OptT&,
                        int64_t)>();
}
auto pref_with_grad_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("gis::preference_score_with_grad", "")
      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                double, const OptT&, int64_t)>();
}
auto pref_backward_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("gis::preference_score_backward", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, double,
                        const OptT&, int64_t)>();
}
auto rank_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("gis::preference_rank", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>();
}

// ---- references -----------------------------------------------------------------------------
at::Tensor csn_reference(const at::Tensor& z, const at::Tensor& k, double eps, int64_t mode) {
  const auto x = z + k.clamp(-eps, eps);
  const std::vector<int64_t> dims = mode == 0 ? std::vector<int64_t>{1} : std::vector<int64_t>{0, 1};
  const int64_t n = mode == 0 ? x.size(1) : x.numel();
  const auto xc = x - x.mean(dims, /*keepdim=*/true);
  const auto var = (xc * xc).sum(dims, /*keepdim=*/true) / static_cast<double>(std::max<int64_t>(n - 1, 1));
  return xc / var.clamp_min(1e-16).sqrt();
}

at::Tensor pref_reference(const at::Tensor& phi, const at::Tensor& users, int64_t agg, double t,
                          const at::Tensor& thr) {
  const auto s = phi.mm(users.to(phi.scalar_type()).t());
  switch (agg) {
    case 0: return s.mean(1);
    case 1: return std::get<0>(s.min(1));
    case 2: return -t * (at::logsumexp(-s / t, {1}) - std::log(static_cast<double>(s.size(1))));
    default: return at::sigmoid((s - thr.to(phi.scalar_type())) / t).mean(1);
  }
}

// ---- tests ------------------------------------------------------------------------------------
void test_clip_shift_normalize() {
  const auto op = csn_op();
  const auto bop = csn_backward_op();
  for (auto dtype : {at::kFloat, at::kDouble})
    for (auto [n, d] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {8, 512}, {64, 600}})
      for (int64_t mode : {0, 1})
        for (bool bcast : {true, false})
          for (double eps : {0.0, 0.4, 10.0}) {
            const std::string tag = "csn dtype=" + std::string(c10::toString(dtype)) +
                                    " n=" + std::to_string(n) + " d=" + std::to_string(d) +
                                    " mode=" + std::to_string(mode) + " bcast=" +
                                    std::to_string(bcast) + " eps=" + std::to_string(eps);
            const auto opts = at::TensorOptions().dtype(dtype);
            const auto z = at::randn({bcast ? 1 : n, d}, opts);
            const auto k = at::randn({n, d}, opts);
            const auto out = op.call(z, k, eps, mode);
            check_close(out, csn_reference(z, k, eps, mode), tag + " forward", rtol_for(dtype),
                        atol_for(dtype));

            // gradients of the reference through libtorch autograd
            const auto zr = z.clone().set_requires_grad(true);
            const auto kr = k.clone().set_requires_grad(true);
            const auto g = at::randn({n, d}, opts);
            const auto grads = torch::autograd::grad({csn_reference(zr, kr, eps, mode)}, {zr, kr}, {g});
            const auto [gz, gk] = bop.call(g, z, k, eps, mode);
            check_close(gz, grads[0], tag + " grad z", rtol_for(dtype), atol_for(dtype));
            check_close(gk, grads[1], tag + " grad k", rtol_for(dtype), atol_for(dtype));
          }
  // a bad call is refused with the received values in the message
  bool threw = false;
  try {
    op.call(at::randn({2, 5}), at::randn({3, 5}), 0.4, 0);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("got [2, 5]") != std::string::npos;
  }
  check_true(threw, "csn rejects a (2, d) z for 3 rows, quoting its shape");
}

void test_preference_score() {
  const auto op = pref_op();
  const auto wg = pref_with_grad_op();
  const auto bop = pref_backward_op();
  for (auto dtype : {at::kFloat, at::kDouble})
    for (auto udtype : {at::kFloat, at::kBFloat16})
      for (int64_t agg = 0; agg < 4; ++agg)
        for (auto [u, tile] : {std::pair<int64_t, int64_t>{1, 0}, {37, 8}, {1000, 0}, {1037, 256}}) {
          const std::string tag = "pref dtype=" + std::string(c10::toString(dtype)) +
                                  " users=" + std::string(c10::toString(udtype)) +
                                  " agg=" + std::to_string(agg) + " U=" + std::to_string(u) +
                                  " tile=" + std::to_string(tile);
          const auto opts = at::TensorOptions().dtype(dtype);
          const auto phi = at::randn({6, 20}, opts);
          const auto users = (0.5 * at::randn({u, 20}, opts)).to(udtype);
          const auto thr = at::randn({u}, opts);
          const double t = 0.7;
          const OptT thr_opt = agg == 3 ? OptT(thr) : OptT();
          const auto want = pref_reference(phi, users, agg, t, thr);
          check_close(op.call(phi, users, agg, t, thr_opt, tile), want, tag + " score",
                      rtol_for(dtype), atol_for(dtype));

          const auto phir = phi.clone().set_requires_grad(true);
          const auto g = at::randn({6}, opts);
          const auto want_grad = torch::autograd::grad({pref_reference(phir, users, agg, t, thr)}, {phir}, {g})[0];
          const auto [score, jac] = wg.call(phi, users, agg, t, thr_opt, tile);
          check_close(score, want, tag + " with_grad score", rtol_for(dtype), atol_for(dtype));
          check_close(jac * g.unsqueeze(1), want_grad, tag + " with_grad jac", rtol_for(dtype),
                      atol_for(dtype));
          check_close(bop.call(g, phi, users, agg, t, thr_opt, tile), want_grad, tag + " backward",
                      rtol_for(dtype), atol_for(dtype));
        }
}

void test_preference_rank() {
  const auto op = rank_op();
  for (auto [u, tile] : {std::pair<int64_t, int64_t>{1, 0}, {333, 100}, {1000, 0}}) {
    const auto phi = at::randint(-3, 4, {5, 6}).to(at::kFloat);
    const auto users = at::randint(-2, 3, {u, 6}).to(at::kFloat);
    const auto cat = std::get<0>(at::randint(-12, 13, {u, 40}).to(at::kFloat).sort(1));
    const auto s = phi.mm(users.t());
    const auto brute = (cat.unsqueeze(0) > s.unsqueeze(-1)).sum(-1);
    const auto ranks = op.call(phi, users, cat, tile);
    check_true(ranks.scalar_type() == at::kLong && at::equal(ranks, brute),
               "rank U=" + std::to_string(u) + " (integer scores, with ties)");
  }
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_clip_shift_normalize();
  test_preference_score();
  test_preference_rank();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

// CPU kernels of gis::clip_shift_normalize and its backward.
//
// x = z + clamp(k, -eps, eps); y = (x - m) * r with m = mean(x), r = 1 / max(std(x), floor)
// over a row (mode 0) or over the whole batch (mode 1). Backward, per normalisation group
// of N entries with upstream gradient g:
//   dL/dx = r * (g - mean(g) - (x - m) * r * c2),  c2 = r * sum(g * (x - m)) / (N - 1)
// (c2 = 0 where the std floor is active); dL/dk = dL/dx where -eps <= k <= eps, else 0
// (torch.clamp's convention at the bounds); dL/dz = dL/dx, summed over rows when z is (1, d).
// Rows of a typical latent batch (d = 512) stay in L1, so each pass over a row is cheap.
//
// The loops are compiled twice: for the baseline x86-64 (or whatever the compiler targets)
// and, with GCC on x86-64, for AVX2+FMA; the AVX2 copy runs where the CPU has it. The
// environment variable GIS_CPU_ISA=default forces the baseline copy (for testing).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../gis_ops.h"
#include "isa.h"

namespace gis {
namespace {

namespace isa_default {
#include "clip_shift_normalize_impl.inc"
}  // namespace isa_default

#ifdef GIS_HAVE_AVX2_COPY
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
#include "clip_shift_normalize_impl.inc"
}  // namespace isa_avx2
#pragma GCC pop_options
#endif

using cpu::use_avx2;

template <typename T>
at::Tensor forward_impl(const at::Tensor& z, const at::Tensor& k, double eps, int64_t mode) {
#ifdef GIS_HAVE_AVX2_COPY
  if (use_avx2()) return isa_avx2::forward_impl<T>(z, k, eps, mode);
#endif
  return isa_default::forward_impl<T>(z, k, eps, mode);
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_impl(const at::Tensor& grad, const at::Tensor& z,
                                                 const at::Tensor& k, double eps,
                                                 int64_t mode) {
#ifdef GIS_HAVE_AVX2_COPY
  if (use_avx2()) return isa_avx2::backward_impl<T>(grad, z, k, eps, mode);
#endif
  return isa_default::backward_impl<T>(grad, z, k, eps, mode);
}

at::Tensor clip_shift_normalize_cpu(const at::Tensor& z, const at::Tensor& k, double eps,
                                   int64_t mode) {
  check_clip_shift_normalize_args(z, k, eps, mode);
  const auto zc = z.contiguous();
  const auto kc = k.contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "clip_shift_normalize_cpu",
                             [&] { out = forward_impl<scalar_t>(zc, kc, eps, mode); });
  return out;
}

std::tuple<at::Tensor, at::Tensor> clip_shift_normalize_backward_cpu(const at::Tensor& grad,
                                                                     const at::Tensor& z,
                                                                     const at::Tensor& k,
                                                                     double eps, int64_t mode) {
  check_clip_shift_normalize_args(z, k, eps, mode);
  TORCH_CHECK(grad.sizes() == k.sizes() && grad.scalar_type() == k.scalar_type(),
              "clip_shift_normalize_backward: grad must match k (", k.sizes(), ", ",
              k.scalar_type(), "), got ", grad.sizes(), ", ", grad.scalar_type());
  const auto gc = grad.contiguous();
  const auto zc = z.contiguous();
  const auto kc = k.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "clip_shift_normalize_backward_cpu",
                             [&] { out = backward_impl<scalar_t>(gc, zc, kc, eps, mode); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(gis, CPU, m) {
  m.impl("clip_shift_normalize", &clip_shift_normalize_cpu);
  m.impl("clip_shift_normalize_backward", &clip_shift_normalize_backward_cpu);
}

}  // namespace gis

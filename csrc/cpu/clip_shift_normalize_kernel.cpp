// CPU kernels of gis::clip_shift_normalize and its backward.
//
// x = z + clamp(k, -eps, eps); y = (x - m) * r with m = mean(x), r = 1 / max(std(x), floor)
// over a row (mode 0) or over the whole batch (mode 1). Backward, per normalisation group
// of N entries with upstream gradient g:
//   dL/dx = r * (g - mean(g) - (x - m) * r * c2),  c2 = r * sum(g * (x - m)) / (N - 1)
// (c2 = 0 where the std floor is active); dL/dk = dL/dx where -eps <= k <= eps, else 0
// (torch.clamp's convention at the bounds); dL/dz = dL/dx, summed over rows when z is (1, d).
// Rows of a typical latent batch (d = 512) stay in L1, so each pass over a row is cheap.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <cmath>

#include "../gis_ops.h"
#include "lanes.h"

namespace gis {
namespace {

// Inner loops are plain restrict loops the compiler vectorises (`omp simd`, honoured with
// -fopenmp-simd, no OpenMP runtime); reductions keep independent lanes (lanes.h).

// Elements per parallel chunk; below this a call runs on the calling thread.
constexpr int64_t kGrainElems = 32768;

// dst = z + clamp(k, -eps, eps); returns sum(dst).
template <typename T>
T shift_row(const T* __restrict__ z, const T* __restrict__ k, T eps, T* __restrict__ dst,
            int64_t d) {
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    const T kv = k[j];
    // NaN in k stays NaN (both comparisons fail), as with torch.clamp.
    dst[j] = z[j] + (kv < -eps ? -eps : (kv > eps ? eps : kv));
  }
  return cpu::lane_sum<T>(d, [dst](int64_t j) { return dst[j]; });
}

// sum((x - m)^2)
template <typename T>
T centered_sumsq(const T* __restrict__ x, T m, int64_t d) {
  return cpu::lane_sum<T>(d, [x, m](int64_t j) {
    const T c = x[j] - m;
    return c * c;
  });
}

// sum((x - m)^2), sum(g), sum(g * (x - m))
template <typename T>
std::array<T, 3> backward_sums(const T* __restrict__ x, const T* __restrict__ g, T m, int64_t d) {
  std::array<T, 3> s;
  cpu::lane_sum3<T>(
      d,
      [x, g, m](int64_t j, T& a, T& b, T& c) {
        const T xc = x[j] - m;
        a += xc * xc;
        b += g[j];
        c += g[j] * xc;
      },
      s.data());
  return s;
}

// 1 / max(std, floor) from a centered sum of squares over n entries; sets `floored`.
template <typename T>
T inv_std(double m2, int64_t n, bool* floored) {
  const double var = m2 / static_cast<double>(n > 1 ? n - 1 : 1);
  const double floor2 = kStdFloor * kStdFloor;
  *floored = !(var > floor2);  // NaN variance also takes the floor path: keeps NaN in y via x
  return static_cast<T>(1.0 / std::sqrt(*floored ? floor2 : var));
}

template <typename T>
void normalise_row(T* __restrict__ x, T m, T r, int64_t d) {
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) x[j] = (x[j] - m) * r;
}

// gx = r * (g - c1 - (x - m) * r * c2) in place of x; gk = gx masked by the clamp.
template <typename T>
void backward_row(T* __restrict__ gx, const T* __restrict__ g, const T* __restrict__ k,
                  T* __restrict__ gk, T eps, T m, T r, T c1, T c2, int64_t d) {
  const T rc2 = r * c2;
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) {
    const T v = r * (g[j] - c1 - (gx[j] - m) * rc2);
    gx[j] = v;
    const T kv = k[j];
    gk[j] = (kv >= -eps && kv <= eps) ? v : T(0);
  }
}

template <typename T>
at::Tensor forward_impl(const at::Tensor& z, const at::Tensor& k, double eps_d, int64_t mode) {
  const int64_t n = k.size(0), d = k.size(1);
  const bool z_bcast = z.size(0) == 1 && n > 1;
  auto out = at::empty({n, d}, k.options());
  const T* zp = z.const_data_ptr<T>();
  const T* kp = k.const_data_ptr<T>();
  T* op = out.mutable_data_ptr<T>();
  const T eps = static_cast<T>(eps_d);
  const int64_t grain_rows = std::max<int64_t>(1, kGrainElems / d);
  auto zrow = [&](int64_t i) { return zp + (z_bcast ? 0 : i * d); };

  if (mode == kModeVector) {
    at::parallel_for(0, n, grain_rows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T* x = op + i * d;
        const T m = shift_row<T>(zrow(i), kp + i * d, eps, x, d) / static_cast<T>(d);
        bool floored;
        const T r = inv_std<T>(centered_sumsq<T>(x, m, d), d, &floored);
        normalise_row<T>(x, m, r, d);
      }
    });
    return out;
  }

  // mode 1: one mean/std over all n * d entries; partial sums in double.
  const int64_t total = n * d;
  const double sum = at::parallel_reduce(
      0, n, grain_rows, 0.0,
      [&](int64_t begin, int64_t end, double acc) {
        for (int64_t i = begin; i < end; ++i)
          acc += static_cast<double>(shift_row<T>(zrow(i), kp + i * d, eps, op + i * d, d));
        return acc;
      },
      std::plus<double>());
  const T m = static_cast<T>(sum / static_cast<double>(total));
  const double m2 = at::parallel_reduce(
      0, n, grain_rows, 0.0,
      [&](int64_t begin, int64_t end, double acc) {
        for (int64_t i = begin; i < end; ++i)
          acc += static_cast<double>(centered_sumsq<T>(op + i * d, m, d));
        return acc;
      },
      std::plus<double>());
  bool floored;
  const T r = inv_std<T>(m2, total, &floored);
  at::parallel_for(0, n, grain_rows, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) normalise_row<T>(op + i * d, m, r, d);
  });
  return out;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_impl(const at::Tensor& grad, const at::Tensor& z,
                                                 const at::Tensor& k, double eps_d,
                                                 int64_t mode) {
  const int64_t n = k.size(0), d = k.size(1);
  const bool z_bcast = z.size(0) == 1 && n > 1;
  auto grad_k = at::empty({n, d}, k.options());
  // dL/dx: written straight into grad_z when z is (n, d), else into a scratch (n, d).
  auto grad_x = at::empty({n, d}, k.options());
  const T* zp = z.const_data_ptr<T>();
  const T* kp = k.const_data_ptr<T>();
  const T* gp = grad.const_data_ptr<T>();
  T* gxp = grad_x.mutable_data_ptr<T>();
  T* gkp = grad_k.mutable_data_ptr<T>();
  const T eps = static_cast<T>(eps_d);
  const int64_t grain_rows = std::max<int64_t>(1, kGrainElems / d);
  auto zrow = [&](int64_t i) { return zp + (z_bcast ? 0 : i * d); };
  auto row_stats = [&](int64_t i, T m) { return backward_sums<T>(gxp + i * d, gp + i * d, m, d); };

  if (mode == kModeVector) {
    at::parallel_for(0, n, grain_rows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const T m = shift_row<T>(zrow(i), kp + i * d, eps, gxp + i * d, d) / static_cast<T>(d);
        const auto s = row_stats(i, m);
        bool floored;
        const T r = inv_std<T>(s[0], d, &floored);
        const T c1 = s[1] / static_cast<T>(d);
        const T c2 = floored ? T(0) : r * s[2] / static_cast<T>(d > 1 ? d - 1 : 1);
        backward_row<T>(gxp + i * d, gp + i * d, kp + i * d, gkp + i * d, eps, m, r, c1, c2, d);
      }
    });
  } else {
    const int64_t total = n * d;
    const double sum = at::parallel_reduce(
        0, n, grain_rows, 0.0,
        [&](int64_t begin, int64_t end, double acc) {
          for (int64_t i = begin; i < end; ++i)
            acc += static_cast<double>(shift_row<T>(zrow(i), kp + i * d, eps, gxp + i * d, d));
          return acc;
        },
        std::plus<double>());
    const T m = static_cast<T>(sum / static_cast<double>(total));
    using Acc3 = std::array<double, 3>;
    const Acc3 s = at::parallel_reduce(
        0, n, grain_rows, Acc3{0.0, 0.0, 0.0},
        [&](int64_t begin, int64_t end, Acc3 acc) {
          for (int64_t i = begin; i < end; ++i) {
            const auto r = row_stats(i, m);
            for (int q = 0; q < 3; ++q) acc[q] += static_cast<double>(r[q]);
          }
          return acc;
        },
        [](Acc3 a, const Acc3& b) {
          for (int q = 0; q < 3; ++q) a[q] += b[q];
          return a;
        });
    bool floored;
    const T r = inv_std<T>(s[0], total, &floored);
    const T c1 = static_cast<T>(s[1] / static_cast<double>(total));
    const T c2 = floored ? T(0)
                         : static_cast<T>(static_cast<double>(r) * s[2] /
                                          static_cast<double>(total > 1 ? total - 1 : 1));
    at::parallel_for(0, n, grain_rows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        backward_row<T>(gxp + i * d, gp + i * d, kp + i * d, gkp + i * d, eps, m, r, c1, c2, d);
    });
  }

  if (!z_bcast) return {grad_x, grad_k};
  // z was broadcast over the rows: dL/dz = sum of the rows of dL/dx, in row order.
  auto grad_z = at::empty({1, d}, z.options());
  T* gzp = grad_z.mutable_data_ptr<T>();
  for (int64_t j = 0; j < d; ++j) gzp[j] = gxp[j];
  for (int64_t i = 1; i < n; ++i) {
    const T* row = gxp + i * d;
    for (int64_t j = 0; j < d; ++j) gzp[j] += row[j];
  }
  return {grad_z, grad_k};
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

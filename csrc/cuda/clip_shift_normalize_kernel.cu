// CUDA kernels of gis::clip_shift_normalize and its backward (formulas: see the CPU file).
//
// One block per normalisation group: a row of d entries (mode 0, grid = n) or the whole
// n x d batch (mode 1, grid = 1). Each pass re-reads z and k (cached) instead of keeping x;
// the statistics are reduced block-wide. dL/dz for a broadcast (1, d) z is a column sum of
// dL/dx done by ATen afterwards (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../gis_ops.h"
#include "reduce.cuh"

namespace gis {
namespace cuda {
namespace {

template <typename T>
struct Group {
  const T* __restrict__ z;
  const T* __restrict__ k;
  int64_t base;  // first flat index of the group
  int64_t d;
  bool z_bcast;
  T eps;

  __device__ __forceinline__ T k_at(int64_t i) const { return k[base + i]; }
  __device__ __forceinline__ T x_at(int64_t i) const {
    const int64_t f = base + i;
    const T kv = k[f];
    const T zv = z[z_bcast ? f % d : f];
    return zv + (kv < -eps ? -eps : (kv > eps ? eps : kv));  // NaN stays NaN
  }
};

template <typename T>
__device__ __forceinline__ T inv_std(T m2, int64_t len, T floor2, bool* floored) {
  const T var = m2 / static_cast<T>(len > 1 ? len - 1 : 1);
  *floored = !(var > floor2);
  return T(1) / sqrt(*floored ? floor2 : var);
}

template <typename T>
__global__ void csn_forward_kernel(const T* __restrict__ z, const T* __restrict__ k,
                                   T* __restrict__ out, int64_t len, int64_t d, bool z_bcast,
                                   T eps, T floor2) {
  const Group<T> g{z, k, static_cast<int64_t>(blockIdx.x) * len, d, z_bcast, eps};
  T s[1] = {T(0)};
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s[0] += g.x_at(i);
  block_sum(s);
  const T m = s[0] / static_cast<T>(len);
  T q[1] = {T(0)};
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const T c = g.x_at(i) - m;
    q[0] += c * c;
  }
  block_sum(q);
  bool floored;
  const T r = inv_std(q[0], len, floor2, &floored);
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) out[g.base + i] = (g.x_at(i) - m) * r;
}

template <typename T>
__global__ void csn_backward_kernel(const T* __restrict__ grad, const T* __restrict__ z,
                                    const T* __restrict__ k, T* __restrict__ grad_x,
                                    T* __restrict__ grad_k, int64_t len, int64_t d, bool z_bcast,
                                    T eps, T floor2) {
  const Group<T> g{z, k, static_cast<int64_t>(blockIdx.x) * len, d, z_bcast, eps};
  const T* __restrict__ gr = grad + g.base;
  T s[1] = {T(0)};
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s[0] += g.x_at(i);
  block_sum(s);
  const T m = s[0] / static_cast<T>(len);
  // sum((x - m)^2), sum(g), sum(g * (x - m))
  T q[3] = {T(0), T(0), T(0)};
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const T c = g.x_at(i) - m;
    const T gv = gr[i];
    q[0] += c * c;
    q[1] += gv;
    q[2] += gv * c;
  }
  block_sum(q);
  bool floored;
  const T r = inv_std(q[0], len, floor2, &floored);
  const T c1 = q[1] / static_cast<T>(len);
  const T rc2 = floored ? T(0) : r * r * q[2] / static_cast<T>(len > 1 ? len - 1 : 1);
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const T v = r * (gr[i] - c1 - (g.x_at(i) - m) * rc2);
    grad_x[g.base + i] = v;
    const T kv = g.k_at(i);
    grad_k[g.base + i] = (kv >= -eps && kv <= eps) ? v : T(0);
  }
}

struct Launch {
  int64_t groups, len;
  int threads;
};

Launch launch_shape(int64_t n, int64_t d, int64_t mode) {
  if (mode == kModeVector) return {n, d, threads_for(d, 256)};
  return {1, n * d, threads_for(n * d, 1024)};
}

at::Tensor clip_shift_normalize_cuda(const at::Tensor& z, const at::Tensor& k, double eps,
                                    int64_t mode) {
  check_clip_shift_normalize_args(z, k, eps, mode);
  const c10::cuda::CUDAGuard guard(k.device());
  const auto zc = z.contiguous();
  const auto kc = k.contiguous();
  const int64_t n = k.size(0), d = k.size(1);
  auto out = at::empty({n, d}, k.options());
  const Launch L = launch_shape(n, d, mode);
  const bool z_bcast = z.size(0) == 1 && n > 1;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "clip_shift_normalize_cuda", [&] {
    csn_forward_kernel<scalar_t><<<L.groups, L.threads, 0, stream>>>(
        zc.const_data_ptr<scalar_t>(), kc.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), L.len, d, z_bcast, static_cast<scalar_t>(eps),
        static_cast<scalar_t>(kStdFloor * kStdFloor));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> clip_shift_normalize_backward_cuda(const at::Tensor& grad,
                                                                      const at::Tensor& z,
                                                                      const at::Tensor& k,
                                                                      double eps, int64_t mode) {
  check_clip_shift_normalize_args(z, k, eps, mode);
  TORCH_CHECK(grad.sizes() == k.sizes() && grad.scalar_type() == k.scalar_type() &&
                  grad.device() == k.device(),
              "clip_shift_normalize_backward: grad must match k (", k.sizes(), ", ",
              k.scalar_type(), ", ", k.device(), "), got ", grad.sizes(), ", ",
              grad.scalar_type(), ", ", grad.device());
  const c10::cuda::CUDAGuard guard(k.device());
  const auto gc = grad.contiguous();
  const auto zc = z.contiguous();
  const auto kc = k.contiguous();
  const int64_t n = k.size(0), d = k.size(1);
  auto grad_x = at::empty({n, d}, k.options());
  auto grad_k = at::empty({n, d}, k.options());
  const Launch L = launch_shape(n, d, mode);
  const bool z_bcast = z.size(0) == 1 && n > 1;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "clip_shift_normalize_backward_cuda", [&] {
    csn_backward_kernel<scalar_t><<<L.groups, L.threads, 0, stream>>>(
        gc.const_data_ptr<scalar_t>(), zc.const_data_ptr<scalar_t>(),
        kc.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(),
        grad_k.mutable_data_ptr<scalar_t>(), L.len, d, z_bcast, static_cast<scalar_t>(eps),
        static_cast<scalar_t>(kStdFloor * kStdFloor));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (!z_bcast) return {grad_x, grad_k};
  return {at::sum(grad_x, {0}, /*keepdim=*/true), grad_k};
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(gis, CUDA, m) {
  m.impl("clip_shift_normalize", &cuda::clip_shift_normalize_cuda);
  m.impl("clip_shift_normalize_backward", &cuda::clip_shift_normalize_backward_cuda);
}

}  // namespace gis

// CUDA kernels of gis::preference_score(_backward, _with_grad) and gis::preference_rank
// (definitions of the aggregates: see the CPU file).
//
// Users are processed tile users at a time, sequentially on the current stream: cuBLAS
// computes the score tile S = phi @ users[tile]^T (B x tile, users upcast per tile); then
// blocks of kSubTile users per image (grid: sub-tiles x images) reduce it in parallel
// (tile_partial_kernel: min / max; tile_weights_kernel: exp or sigmoid, sums, and the per-user
// weights written over S), and tile_combine_kernel (one block per image) folds the partial
// results into the running state (running min / online logsumexp / sigmoid sum). One more
// GEMM (jac += S @ users[tile]) then accumulates d score / d phi. Every reduction has a fixed
// order: results are deterministic. Peak extra memory: O(B * tile + tile * K + B * K).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "../gis_ops.h"
#include "reduce.cuh"

namespace gis {
namespace cuda {
namespace {

constexpr int kTileThreads = 256;

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return ::exp(x); }
template <typename T>
__device__ __forceinline__ T neg_inf() {
  return -static_cast<T>(INFINITY);
}

constexpr int64_t kSubTile = 2048;  // users per block of the tile kernels (8 per thread)

// Users per tile when the caller passes tile = 0: up to 8M score entries (B x tile) and 8M
// entries of upcast users (tile x K) per tile; few tiles keep the launch count low.
int64_t default_cuda_tile(int64_t B, int64_t K) {
  const int64_t budget = int64_t{1} << 23;
  return std::clamp<int64_t>(budget / std::max<int64_t>(std::max(B, K), 1), 4 * kSubTile,
                             int64_t{1} << 18);
}

// Block (sub, b) covers the users [sub * kSubTile, min(t, (sub + 1) * kSubTile)) of row b.
// min:     part_v/part_i <- the sub-tile's minimum score and its index in the tile (first).
// softmin: part_v <- the sub-tile's maximum of a = -s / T.
template <typename T>
__global__ void tile_partial_kernel(const T* __restrict__ S, int64_t t, int64_t n_sub,
                                    int64_t agg, T inv_t, T* __restrict__ part_v,
                                    int64_t* __restrict__ part_i) {
  const int64_t b = blockIdx.y, sub = blockIdx.x;
  const T* __restrict__ row = S + b * t;
  const int64_t j1 = (sub + 1) * kSubTile < t ? (sub + 1) * kSubTile : t;
  if (agg == kAggMin) {
    T best = T(0);
    int64_t arg = -1;
    for (int64_t j = sub * kSubTile + threadIdx.x; j < j1; j += blockDim.x) {
      const T v = row[j];
      if (arg < 0 || v < best) {
        best = v;
        arg = j;
      }
    }
    block_argmin(best, arg);
    if (threadIdx.x == 0) {
      part_v[b * n_sub + sub] = best;
      part_i[b * n_sub + sub] = arg;
    }
  } else {
    T mx = neg_inf<T>();
    for (int64_t j = sub * kSubTile + threadIdx.x; j < j1; j += blockDim.x)
      mx = max(mx, -row[j] * inv_t);
    mx = block_max(mx);
    if (threadIdx.x == 0) part_v[b * n_sub + sub] = mx;
  }
}

// The new running max of image b's a = -s / T: max(m_state[b], the tile's sub-tile maxima),
// in a fixed order (the same in every block that asks).
template <typename T>
__device__ __forceinline__ T tile_running_max(const T* __restrict__ m_state,
                                              const T* __restrict__ part_v, int64_t b,
                                              int64_t n_sub) {
  T mx = neg_inf<T>();
  for (int64_t q = threadIdx.x; q < n_sub; q += blockDim.x) mx = max(mx, part_v[b * n_sub + q]);
  return max(m_state[b], block_max(mx));
}

// Block (sub, b): softmin: p = exp(a - m_new) (m_new from m_state and the partial maxima);
// coverage: q = sigmoid((s - tau) / T). part_s <- the sub-tile's sum of p (or q); with
// write_weights, S <- p (or q (1 - q)), the weights of jac += S @ users[tile].
template <typename T>
__global__ void tile_weights_kernel(T* __restrict__ S, int64_t t, int64_t n_sub, int64_t agg,
                                    T inv_t, const T* __restrict__ tau,
                                    const T* __restrict__ m_state,
                                    const T* __restrict__ part_v, T* __restrict__ part_s,
                                    bool write_weights) {
  const int64_t b = blockIdx.y, sub = blockIdx.x;
  T* __restrict__ row = S + b * t;
  const int64_t j1 = (sub + 1) * kSubTile < t ? (sub + 1) * kSubTile : t;
  T sum[1] = {T(0)};
  if (agg == kAggSoftmin) {
    const T m_new = tile_running_max(m_state, part_v, b, n_sub);
    for (int64_t j = sub * kSubTile + threadIdx.x; j < j1; j += blockDim.x) {
      const T p = dev_exp(-row[j] * inv_t - m_new);
      sum[0] += p;
      if (write_weights) row[j] = p;
    }
  } else {  // coverage
    for (int64_t j = sub * kSubTile + threadIdx.x; j < j1; j += blockDim.x) {
      const T q = T(1) / (T(1) + dev_exp(-(row[j] - tau[j]) * inv_t));
      sum[0] += q;
      if (write_weights) row[j] = q * (T(1) - q);
    }
  }
  block_sum(sum);
  if (threadIdx.x == 0) part_s[b * n_sub + sub] = sum[0];
}

// One block per image: folds the tile's partial results into the running state.
// min: (m, idx) <- the better of the state and the tile's first minimum (user u0 + index).
// softmin: m <- max(m, tile max); l <- l * exp(m_old - m_new) + sum p; scale <- that factor.
// coverage: l += sum q.
template <typename T>
__global__ void tile_combine_kernel(int64_t n_sub, int64_t agg, int64_t u0,
                                    const T* __restrict__ part_v,
                                    const int64_t* __restrict__ part_i,
                                    const T* __restrict__ part_s, T* __restrict__ m_state,
                                    T* __restrict__ l_state, int64_t* __restrict__ idx_state,
                                    T* __restrict__ scale) {
  const int64_t b = blockIdx.x;
  if (agg == kAggMin) {
    T best = T(0);
    int64_t arg = -1;
    for (int64_t q = threadIdx.x; q < n_sub; q += blockDim.x) {
      const T v = part_v[b * n_sub + q];
      const int64_t i = part_i[b * n_sub + q];
      if (argmin_better(best, arg, v, i)) {
        best = v;
        arg = i;
      }
    }
    block_argmin(best, arg);
    if (threadIdx.x == 0 && arg >= 0 && (idx_state[b] < 0 || best < m_state[b])) {
      m_state[b] = best;
      idx_state[b] = u0 + arg;
    }
    return;
  }
  T sum[1] = {T(0)};
  for (int64_t q = threadIdx.x; q < n_sub; q += blockDim.x) sum[0] += part_s[b * n_sub + q];
  if (agg == kAggSoftmin) {
    const T m_old = m_state[b];
    const T m_new = tile_running_max(m_state, part_v, b, n_sub);
    block_sum(sum);
    if (threadIdx.x == 0) {
      const T f = m_old == neg_inf<T>() ? T(0) : dev_exp(m_old - m_new);
      l_state[b] = l_state[b] * f + sum[0];
      m_state[b] = m_new;
      scale[b] = f;
    }
  } else {
    block_sum(sum);
    if (threadIdx.x == 0) l_state[b] += sum[0];
  }
}

// rank[b, u0 + j] = #{i : cat[u0 + j, i] > S[b, j]} by binary search in the sorted row.
template <typename T>
__global__ void rank_tile_kernel(const T* __restrict__ S, const T* __restrict__ cat,
                                 int64_t* __restrict__ ranks, int64_t B, int64_t t, int64_t u0,
                                 int64_t U, int64_t N) {
  const int64_t total = B * t;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / t, j = e - b * t;
    const T s = S[e];
    const T* __restrict__ row = cat + (u0 + j) * N;
    int64_t lo = 0, hi = N;  // upper bound: first position with row[pos] > s
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (s < row[mid])
        hi = mid;
      else
        lo = mid + 1;
    }
    ranks[b * U + u0 + j] = N - lo;
  }
}

at::Tensor users_tile(const at::Tensor& users, int64_t u0, int64_t t, at::ScalarType dtype) {
  auto ut = users.narrow(0, u0, t);
  return ut.scalar_type() == dtype ? ut : ut.to(dtype);  // upcast bf16/fp16 per tile
}

std::tuple<at::Tensor, at::Tensor> preference_cuda(const at::Tensor& phi, const at::Tensor& users,
                                                   int64_t agg, double temperature,
                                                   const c10::optional<at::Tensor>& thresholds,
                                                   int64_t tile, bool need_jac) {
  check_preference_args(phi, users, agg, temperature, thresholds, tile);
  const c10::cuda::CUDAGuard guard(phi.device());
  const auto phi_c = phi.contiguous();
  const auto users_c = users.contiguous();
  const int64_t B = phi.size(0), K = phi.size(1), U = users.size(0);
  const auto dtype = phi.scalar_type();
  const auto opts = phi.options();
  if (B == 0) return {at::empty({0}, opts), need_jac ? at::empty({0, K}, opts) : at::Tensor()};

  if (agg == kAggMean) {
    auto mean = at::sum(users_c, {0}, /*keepdim=*/false, dtype).div_(static_cast<double>(U));
    auto score = at::mv(phi_c, mean);
    at::Tensor jac;
    if (need_jac) jac = mean.unsqueeze(0).expand({B, K}).contiguous();
    return {score, jac};
  }

  if (tile == 0) tile = default_cuda_tile(B, K);
  tile = std::min(tile, U);
  const bool accumulate = need_jac && agg != kAggMin;
  const double inf = std::numeric_limits<double>::infinity();
  auto m_state = at::full({B}, agg == kAggSoftmin ? -inf : 0.0, opts);
  auto l_state = at::zeros({B}, opts);
  auto idx_state = at::full({B}, -1, opts.dtype(at::kLong));
  auto scale = at::empty({B}, opts);
  auto sbuf = at::empty({B * tile}, opts);
  const int64_t max_sub = (tile + kSubTile - 1) / kSubTile;
  auto part_v = at::empty({B * max_sub}, opts);
  auto part_s = at::empty({B * max_sub}, opts);
  auto part_i = at::empty({B * max_sub}, opts.dtype(at::kLong));
  at::Tensor jac = accumulate ? at::zeros({B, K}, opts) : at::Tensor();
  at::Tensor tau;
  if (agg == kAggCoverage) tau = thresholds->to(dtype).contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  TORCH_CHECK(B <= 65535, "preference_score (CUDA): at most 65535 images per call, got ", B);

  for (int64_t u0 = 0; u0 < U; u0 += tile) {
    const int64_t t = std::min(tile, U - u0);
    const int64_t n_sub = (t + kSubTile - 1) / kSubTile;
    const dim3 grid(static_cast<unsigned>(n_sub), static_cast<unsigned>(B));
    const auto ut = users_tile(users_c, u0, t, dtype);
    auto s = sbuf.narrow(0, 0, B * t).view({B, t});
    at::mm_out(s, phi_c, ut.t());
    AT_DISPATCH_FLOATING_TYPES(dtype, "preference_tile_cuda", [&] {
      const auto inv_t = static_cast<scalar_t>(1.0 / temperature);
      scalar_t* sp = s.mutable_data_ptr<scalar_t>();
      scalar_t* pv = part_v.mutable_data_ptr<scalar_t>();
      scalar_t* ps = part_s.mutable_data_ptr<scalar_t>();
      int64_t* pi = part_i.mutable_data_ptr<int64_t>();
      scalar_t* ms = m_state.mutable_data_ptr<scalar_t>();
      if (agg != kAggCoverage) {
        tile_partial_kernel<scalar_t><<<grid, kTileThreads, 0, stream>>>(sp, t, n_sub, agg, inv_t,
                                                                         pv, pi);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (agg != kAggMin) {
        const scalar_t* tt = tau.defined() ? tau.const_data_ptr<scalar_t>() + u0 : nullptr;
        tile_weights_kernel<scalar_t><<<grid, kTileThreads, 0, stream>>>(
            sp, t, n_sub, agg, inv_t, tt, ms, pv, ps, accumulate);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      tile_combine_kernel<scalar_t><<<static_cast<unsigned>(B), kTileThreads, 0, stream>>>(
          n_sub, agg, u0, pv, pi, ps, ms, l_state.mutable_data_ptr<scalar_t>(),
          idx_state.mutable_data_ptr<int64_t>(), scale.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (accumulate) {
      if (agg == kAggSoftmin) jac.mul_(scale.unsqueeze(1));
      jac.addmm_(s, ut);
    }
  }

  at::Tensor score;
  if (agg == kAggMin) {
    score = m_state;
    if (need_jac) jac = users_c.index_select(0, idx_state).to(dtype).contiguous();
  } else if (agg == kAggSoftmin) {
    // -T log mean_u exp(-s_u / T) = -T (m + log l - log U)
    score = (m_state + l_state.log() - std::log(static_cast<double>(U))).mul_(-temperature);
    if (need_jac) jac.div_(l_state.unsqueeze(1));
  } else {
    score = l_state.div(static_cast<double>(U));
    if (need_jac) jac.mul_(1.0 / (temperature * static_cast<double>(U)));
  }
  return {score, jac};
}

at::Tensor preference_score_cuda(const at::Tensor& phi, const at::Tensor& users, int64_t agg,
                                 double temperature, const c10::optional<at::Tensor>& thresholds,
                                 int64_t tile) {
  return std::get<0>(preference_cuda(phi, users, agg, temperature, thresholds, tile, false));
}

std::tuple<at::Tensor, at::Tensor> preference_score_with_grad_cuda(
    const at::Tensor& phi, const at::Tensor& users, int64_t agg, double temperature,
    const c10::optional<at::Tensor>& thresholds, int64_t tile) {
  return preference_cuda(phi, users, agg, temperature, thresholds, tile, true);
}

at::Tensor preference_score_backward_cuda(const at::Tensor& grad, const at::Tensor& phi,
                                          const at::Tensor& users, int64_t agg,
                                          double temperature,
                                          const c10::optional<at::Tensor>& thresholds,
                                          int64_t tile) {
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == phi.size(0) && grad.device() == phi.device(),
              "preference_score_backward: grad must have shape (B,) = (", phi.size(0),
              ",) on ", phi.device(), ", got ", grad.sizes(), " on ", grad.device());
  auto jac = std::get<1>(preference_cuda(phi, users, agg, temperature, thresholds, tile, true));
  return jac.mul_(grad.to(jac.scalar_type()).unsqueeze(1));
}

at::Tensor preference_rank_cuda(const at::Tensor& phi, const at::Tensor& users,
                                const at::Tensor& catalogue_sorted, int64_t tile) {
  check_preference_rank_args(phi, users, catalogue_sorted, tile);
  const c10::cuda::CUDAGuard guard(phi.device());
  const auto phi_c = phi.contiguous();
  const auto users_c = users.contiguous();
  const auto cat = catalogue_sorted.contiguous();
  const int64_t B = phi.size(0), U = users.size(0), N = cat.size(1);
  const auto dtype = phi.scalar_type();
  if (tile == 0) tile = default_cuda_tile(B, phi.size(1));
  tile = std::min(tile, U);
  auto ranks = at::empty({B, U}, phi.options().dtype(at::kLong));
  if (B == 0) return ranks;
  auto sbuf = at::empty({B * tile}, phi.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  for (int64_t u0 = 0; u0 < U; u0 += tile) {
    const int64_t t = std::min(tile, U - u0);
    auto s = sbuf.narrow(0, 0, B * t).view({B, t});
    at::mm_out(s, phi_c, users_tile(users_c, u0, t, dtype).t());
    const int64_t total = B * t;
    const int threads = 256;
    const int blocks = static_cast<int>(std::min<int64_t>((total + threads - 1) / threads, 65535));
    AT_DISPATCH_FLOATING_TYPES(dtype, "preference_rank_cuda", [&] {
      rank_tile_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
          s.const_data_ptr<scalar_t>(), cat.const_data_ptr<scalar_t>(),
          ranks.mutable_data_ptr<int64_t>(), B, t, u0, U, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return ranks;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(gis, CUDA, m) {
  m.impl("preference_score", &cuda::preference_score_cuda);
  m.impl("preference_score_backward", &cuda::preference_score_backward_cuda);
  m.impl("preference_score_with_grad", &cuda::preference_score_with_grad_cuda);
  m.impl("preference_rank", &cuda::preference_rank_cuda);
}

}  // namespace gis

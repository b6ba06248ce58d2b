// Block-wide reductions for the gis CUDA kernels. blockDim.x must be a multiple of 32
// (at most 1024); every thread of the block must call them, and every thread gets the result.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace gis {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// Sums N values at once (fewer barriers than N separate reductions).
template <typename T, int N>
__device__ __forceinline__ void block_sum(T (&v)[N]) {
  __shared__ T smem[N][32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
#pragma unroll
  for (int q = 0; q < N; ++q)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v[q] += __shfl_down_sync(kFullMask, v[q], off);
  if (lane == 0)
#pragma unroll
    for (int q = 0; q < N; ++q) smem[q][warp] = v[q];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int q = 0; q < N; ++q) {
      T x = lane < n_warps ? smem[q][lane] : T(0);
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(kFullMask, x, off);
      if (lane == 0) smem[q][0] = x;
    }
  }
  __syncthreads();
#pragma unroll
  for (int q = 0; q < N; ++q) v[q] = smem[q][0];
  __syncthreads();  // smem may be reused by the next call
}

template <typename T>
__device__ __forceinline__ T block_max(T v) {
  __shared__ T smem[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = max(v, __shfl_down_sync(kFullMask, v, off));
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T x = lane < n_warps ? smem[lane] : smem[0];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x = max(x, __shfl_down_sync(kFullMask, x, off));
    if (lane == 0) smem[0] = x;
  }
  __syncthreads();
  v = smem[0];
  __syncthreads();
  return v;
}

// (value, index) pair with the smallest value; ties and "no candidate" (index < 0) resolved
// towards the smallest valid index, so the result matches a sequential first-minimum scan.
template <typename T>
__device__ __forceinline__ bool argmin_better(T v1, int64_t i1, T v2, int64_t i2) {
  if (i2 < 0) return false;
  if (i1 < 0) return true;
  return v2 < v1 || (v2 == v1 && i2 < i1);
}

template <typename T>
__device__ __forceinline__ void block_argmin(T& v, int64_t& i) {
  __shared__ T sv[32];
  __shared__ int64_t si[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const T v2 = __shfl_down_sync(kFullMask, v, off);
    const int64_t i2 = __shfl_down_sync(kFullMask, i, off);
    if (argmin_better(v, i, v2, i2)) {
      v = v2;
      i = i2;
    }
  }
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    T x = lane < n_warps ? sv[lane] : T(0);
    int64_t j = lane < n_warps ? si[lane] : int64_t(-1);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const T x2 = __shfl_down_sync(kFullMask, x, off);
      const int64_t j2 = __shfl_down_sync(kFullMask, j, off);
      if (argmin_better(x, j, x2, j2)) {
        x = x2;
        j = j2;
      }
    }
    if (lane == 0) {
      sv[0] = x;
      si[0] = j;
    }
  }
  __syncthreads();
  v = sv[0];
  i = si[0];
  __syncthreads();
}

// Threads per block for a reduction over `len` entries: a multiple of 32, at most `cap`.
inline int threads_for(int64_t len, int cap) {
  int t = 32;
  while (t < cap && t < len) t <<= 1;
  return t;
}

}  // namespace cuda
}  // namespace gis

// Reductions with independent partial sums ("lanes") for the CPU kernels.
//
// A plain `acc += f(j)` loop is bound by the latency of one add chain, even once vectorised.
// Here every lane keeps its own accumulator; the fixed-length inner loop is unrolled and
// vectorised by the compiler (-O3), so L lanes become L / (vector width) vector registers,
// and the lanes are combined pairwise at the end.
#pragma once

#include <cstdint>

namespace gis {
namespace cpu {

// Lanes per reduction: 4 SSE / 2 AVX registers of float, twice as many of double.
template <typename T>
constexpr int kLanes = 16;

// Reduces `acc` (L lanes) pairwise with `op`.
template <int L, typename T, typename Op>
inline T fold_lanes(T (&acc)[L], const Op& op) {
  for (int w = L / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] = op(acc[l], acc[l + w]);
  return acc[0];
}

// sum over j < n of f(j)
template <typename T, typename F>
inline T lane_sum(int64_t n, const F& f) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t j = 0;
  for (; j + L <= n; j += L)
    for (int l = 0; l < L; ++l) acc[l] += f(j + l);
  T tail = 0;
  for (; j < n; ++j) tail += f(j);
  return fold_lanes<L>(acc, [](T a, T b) { return a + b; }) + tail;
}

// (sum f0(j), sum f1(j), sum f2(j)) over j < n, where f(j, out) adds the three terms to out
template <typename T, typename F>
inline void lane_sum3(int64_t n, const F& f, T* out) {
  constexpr int L = 8;  // 3 x 8 lanes still fit the vector registers
  T a[L] = {}, b[L] = {}, c[L] = {};
  int64_t j = 0;
  for (; j + L <= n; j += L)
    for (int l = 0; l < L; ++l) f(j + l, a[l], b[l], c[l]);
  T ta = 0, tb = 0, tc = 0;
  for (; j < n; ++j) f(j, ta, tb, tc);
  auto add = [](T x, T y) { return x + y; };
  out[0] = fold_lanes<L>(a, add) + ta;
  out[1] = fold_lanes<L>(b, add) + tb;
  out[2] = fold_lanes<L>(c, add) + tc;
}

// max over j < n of x[j] (NaN entries are skipped; -inf for n == 0)
template <typename T>
inline T lane_max(const T* __restrict__ x, int64_t n, T lowest) {
  constexpr int L = kLanes<T>;
  T acc[L];
  for (int l = 0; l < L; ++l) acc[l] = lowest;
  int64_t j = 0;
  for (; j + L <= n; j += L)
    for (int l = 0; l < L; ++l) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
  T tail = lowest;
  for (; j < n; ++j) tail = x[j] > tail ? x[j] : tail;
  const T m = fold_lanes<L>(acc, [](T p, T q) { return q > p ? q : p; });
  return tail > m ? tail : m;
}

}  // namespace cpu
}  // namespace gis

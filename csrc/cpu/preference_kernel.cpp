// CPU kernels of gis::preference_score(_backward, _with_grad) and gis::preference_rank.
//
// Scores s[b, u] = phi[b] . users[u] are produced a tile of users at a time, folded into a
// running per-image state and dropped: peak extra memory is O(lanes * tile * (B + K) + B * K)
// whatever U is. Work is split into `lanes` (one per thread), each with its own running
// state; lanes are merged at the end in lane order, so results do not depend on scheduling
// (only on the thread count).
//   B <= 16 (GIS scores n = 8 images a step): both products (s = u phi^T, then
//     jac += w^T u) are register-blocked loops compiled for AVX2 (preference_impl.inc), which
//     beat MKL at these shapes; each lane walks its contiguous share of the users inside one
//     parallel region, and the users are read from memory once.
//   B > 16: rounds of one tile per lane; each product is one batched MKL call from the
//     calling thread, and the pointer loops run per lane in parallel.
//
// Per image b, with a = -s / T:
//   mean      score = phi . mean_u(users)                         jac = mean_u(users)
//   min       score = min_u s                                     jac = users[argmin] (first)
//   softmin   score = -T (logsumexp_u a - log U)                  jac = sum_u softmax_u(a) users[u]
//   coverage  score = mean_u sigmoid((s - tau_u) / T)             jac = mean_u q(1-q) users[u] / T
// where jac[b] = d score[b] / d phi[b]. softmin keeps a running max / rescaled sum (the online
// logsumexp), so forward and jac come out of a single pass over the users.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../gis_ops.h"
#include "isa.h"

namespace gis {
namespace {

namespace isa_default {
#include "preference_impl.inc"
}  // namespace isa_default

#ifdef GIS_HAVE_AVX2_COPY
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
#include "preference_impl.inc"
}  // namespace isa_avx2
#pragma GCC pop_options
#endif

// Images up to which scores and jac use the loops of preference_impl.inc instead of MKL.
constexpr int64_t kSmallBatch = 16;

template <typename T>
void accumulate_weighted_rows(T* jac, const T* w, const T* u, int64_t t, int64_t B, int64_t K) {
#ifdef GIS_HAVE_AVX2_COPY
  if (cpu::use_avx2()) return isa_avx2::accumulate_weighted_rows<T>(jac, w, u, t, B, K);
#endif
  isa_default::accumulate_weighted_rows<T>(jac, w, u, t, B, K);
}

// s (t x B) = u (t x K) @ phi^T for B <= kSmallBatch; phi_t_pad: (K x kSmallBatch or 8).
template <typename T>
void scores_small_batch(T* s, const T* u, const T* phi_t_pad, int64_t t, int64_t B, int64_t K) {
#ifdef GIS_HAVE_AVX2_COPY
  if (cpu::use_avx2()) {
    if (B <= 8) return isa_avx2::scores_small_batch<T, 8>(s, u, phi_t_pad, t, B, K);
    return isa_avx2::scores_small_batch<T, kSmallBatch>(s, u, phi_t_pad, t, B, K);
  }
#endif
  if (B <= 8) return isa_default::scores_small_batch<T, 8>(s, u, phi_t_pad, t, B, K);
  isa_default::scores_small_batch<T, kSmallBatch>(s, u, phi_t_pad, t, B, K);
}

// softmin with exactly 8 float images: fused exp + column sums (preference_impl.inc).
void colmax_scaled8(const float* lane, float c, int64_t t, float* cm) {
#ifdef GIS_HAVE_AVX2_COPY
  if (cpu::use_avx2()) return isa_avx2::colmax_scaled8(lane, c, t, cm);
#endif
  isa_default::colmax_scaled8(lane, c, t, cm);
}

void exp_shift_sums8(float* lane, float c, const float* m, int64_t t, float* sums) {
#ifdef GIS_HAVE_AVX2_COPY
  if (cpu::use_avx2()) return isa_avx2::exp_shift_sums8(lane, c, m, t, sums);
#endif
  isa_default::exp_shift_sums8(lane, c, m, t, sums);
}

// phi^T (K x 8 or K x kSmallBatch), zero-padded, for scores_small_batch.
at::Tensor padded_phi_t(const at::Tensor& phi) {
  const int64_t B = phi.size(0), K = phi.size(1);
  auto out = at::zeros({K, B <= 8 ? 8 : kSmallBatch}, phi.options());
  out.narrow(1, 0, B).copy_(phi.t());
  return out;
}

// Users per lane and round when the caller passes tile = 0: a lane's score tile (tile x B)
// holds up to 512K entries (2 MiB of float) and a call makes few rounds (each round opens a
// few OpenMP regions, which stall when other jobs oversubscribe the cores). Measured at
// U = 1e6, K = 100 on a 2-core EPYC: time is flat in the tile from 512 to 16384 users.
int64_t default_cpu_tile(int64_t B) {
  return std::clamp<int64_t>(524288 / std::max<int64_t>(B, 1), 512, 16384);
}

// One lane per thread, and about 4 MFLOP of GEMM at least per lane (below that, threads
// cost more than they save).
int64_t lanes_for(int64_t B, int64_t K, int64_t U) {
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t by_work = std::max<int64_t>(1, 2 * B * K * U / (int64_t{1} << 22));
  return std::max<int64_t>(1, std::min({threads, by_work, U}));
}

// Rounds over the users: round r gives each of `lanes` lanes `t` consecutive users, lane p
// getting [u0 + p * t, u0 + (p + 1) * t). Full rounds use t = tile; the rest of the users
// is spread evenly over the lanes (a last round or two with fewer lanes or users picks up
// the remainder).
struct Round {
  int64_t u0, lanes, t;
};

template <typename F>
void for_each_round(int64_t U, int64_t max_lanes, int64_t tile, const F& body) {
  for (int64_t u0 = 0; u0 < U;) {
    const int64_t left = U - u0;
    Round r{u0, max_lanes, tile};
    if (left < max_lanes * tile) {
      r.lanes = std::min(max_lanes, left);
      r.t = left / r.lanes;
    }
    body(r);
    u0 += r.lanes * r.t;
  }
}

// ---------------------------------------------------------------------------------------
// mean: one pass over the users for their column means, then a matrix-vector product.
template <typename T>
std::tuple<at::Tensor, at::Tensor> mean_impl(const at::Tensor& phi, const at::Tensor& users,
                                             bool need_jac) {
  const int64_t B = phi.size(0), K = phi.size(1), U = users.size(0);
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(threads, U / 1024));
  std::vector<double> partial(n_chunks * K, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, users.scalar_type(), "gis_user_mean",
                                  [&] {
    const scalar_t* up = users.const_data_ptr<scalar_t>();
    at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double* __restrict__ acc = partial.data() + c * K;
        // Partial sums over blocks of rows in phi's precision keep the inner loop
        // vectorisable; blocks are folded into double.
        using blk_t = T;
        constexpr int64_t kRows = 64;
        std::vector<blk_t> blk(K);
        for (int64_t u = c * U / n_chunks, u1 = (c + 1) * U / n_chunks; u < u1; u += kRows) {
          std::fill(blk.begin(), blk.end(), blk_t(0));
          blk_t* __restrict__ bp = blk.data();
          for (int64_t v = u, v1 = std::min(u + kRows, u1); v < v1; ++v) {
            const scalar_t* __restrict__ row = up + v * K;
            for (int64_t j = 0; j < K; ++j) bp[j] += static_cast<blk_t>(row[j]);
          }
          for (int64_t j = 0; j < K; ++j) acc[j] += static_cast<double>(bp[j]);
        }
      }
    });
  });
  auto mean = at::empty({K}, phi.options());
  T* mp = mean.mutable_data_ptr<T>();
  for (int64_t j = 0; j < K; ++j) {
    double s = 0.0;
    for (int64_t c = 0; c < n_chunks; ++c) s += partial[c * K + j];
    mp[j] = static_cast<T>(s / static_cast<double>(U));
  }
  auto score = at::mv(phi, mean);
  at::Tensor jac;
  if (need_jac) jac = mean.unsqueeze(0).expand({B, K}).contiguous();
  return {score, jac};
}

// ---------------------------------------------------------------------------------------
// min / softmin / coverage: rounds of tiles, one running state per lane.
template <typename T>
std::tuple<at::Tensor, at::Tensor> tiled_impl(const at::Tensor& phi, const at::Tensor& users,
                                              int64_t agg, double temperature,
                                              const at::Tensor& thresholds, int64_t tile,
                                              bool need_jac) {
  const int64_t B = phi.size(0), K = phi.size(1), U = users.size(0);
  const auto opts = phi.options();
  const T inv_t = static_cast<T>(1.0 / temperature);
  at::Tensor tau_scaled;  // tau / T in phi's dtype (coverage only), (U,)
  if (agg == kAggCoverage) tau_scaled = (thresholds.to(phi.scalar_type()) * inv_t).contiguous();
  const T* tau_p = tau_scaled.defined() ? tau_scaled.const_data_ptr<T>() : nullptr;

  const int64_t P = lanes_for(B, K, U);
  tile = std::min(tile, (U + P - 1) / P);
  const bool accumulate = need_jac && agg != kAggMin;
  const double minus_inf = -std::numeric_limits<double>::infinity();
  // Lane state, lane-major (P x B): min: running min and its user; softmin: running max of
  // a and sum exp(a - max); coverage: sum of sigmoids. jac: (P, B, K) unnormalised.
  std::vector<double> m(P * B, agg == kAggMin ? 0.0 : minus_inf), l(P * B, 0.0);
  std::vector<int64_t> idx(P * B, -1);
  std::vector<T> scale(P * B), colmax(P * B);
  at::Tensor jac = accumulate ? at::zeros({P, B, K}, opts) : at::Tensor();
  T* jp = accumulate ? jac.template mutable_data_ptr<T>() : nullptr;
  auto sbuf = at::empty({P * tile * B}, opts);  // lane p's s^T tile: sbuf[p * tile * B ...]
  at::Tensor ubuf;                               // users upcast to phi's dtype, tile by tile
  if (users.scalar_type() != phi.scalar_type()) ubuf = at::empty({P * tile, K}, opts);

  // ---- the steps of one tile of t users (the first one `first`), for lane p; `lane` is
  // its s^T tile (t x B), `lu` its users (t x K). Pointer loops only.
  auto fold_min = [&](int64_t p, const T* lane, int64_t first, int64_t t) {
    double* __restrict__ mp = m.data() + p * B;
    int64_t* __restrict__ ip = idx.data() + p * B;
    for (int64_t j = 0; j < t; ++j) {
      const T* row = lane + j * B;
      for (int64_t b = 0; b < B; ++b) {
        const double v = static_cast<double>(row[b]);
        if (ip[b] < 0 || v < mp[b]) {
          mp[b] = v;
          ip[b] = first + j;
        }
      }
    }
  };
  // softmin: the lane's running max m of a = -s / T takes the tile's max (in colmax); the
  // running sum's rescale factor exp(m_old - m_new) goes to scale, m_new (as T) to colmax
  auto update_running_max = [&](int64_t p) {
    T* __restrict__ cm = colmax.data() + p * B;
    double* mp = m.data() + p * B;
    T* __restrict__ sc = scale.data() + p * B;
    for (int64_t b = 0; b < B; ++b) {
      const double m_new = std::max(mp[b], static_cast<double>(cm[b]));
      sc[b] = mp[b] == minus_inf ? T(0) : static_cast<T>(std::exp(mp[b] - m_new));
      mp[b] = m_new;
      cm[b] = static_cast<T>(m_new);
    }
  };
  // softmin, before exp: a = -s / T, then a - max(running max, the tile's max)
  auto softmin_shift = [&](int64_t p, T* lane, int64_t t) {
    T* __restrict__ cm = colmax.data() + p * B;
    for (int64_t b = 0; b < B; ++b) cm[b] = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < t; ++j) {
      T* __restrict__ row = lane + j * B;
#pragma omp simd
      for (int64_t b = 0; b < B; ++b) {
        const T a = -row[b] * inv_t;
        row[b] = a;
        cm[b] = a > cm[b] ? a : cm[b];
      }
    }
    update_running_max(p);
    for (int64_t j = 0; j < t; ++j) {
      T* __restrict__ row = lane + j * B;
#pragma omp simd
      for (int64_t b = 0; b < B; ++b) row[b] -= cm[b];
    }
  };
  // coverage, before sigmoid: (s - tau) / T
  auto coverage_shift = [&](T* lane, int64_t first, int64_t t) {
    const T* tau = tau_p + first;
    for (int64_t j = 0; j < t; ++j) {
      T* __restrict__ row = lane + j * B;
      const T tj = tau[j];
#pragma omp simd
      for (int64_t b = 0; b < B; ++b) row[b] = row[b] * inv_t - tj;
    }
  };
  // after exp / sigmoid: column sums into l; coverage turns q into the weight q (1 - q);
  // softmin rescales jac; for small B, jac += w^T users (tile still in cache)
  auto fold_sums = [&](int64_t p, T* lane, const T* lu, int64_t t, bool small,
                       bool sums_ready = false) {
    T* __restrict__ cs = colmax.data() + p * B;  // reused as the column sums
    if (!sums_ready) {
      for (int64_t b = 0; b < B; ++b) cs[b] = T(0);
      for (int64_t j = 0; j < t; ++j) {
        const T* __restrict__ row = lane + j * B;
#pragma omp simd
        for (int64_t b = 0; b < B; ++b) cs[b] += row[b];
      }
    }
    double* lp = l.data() + p * B;
    const T* sc = scale.data() + p * B;
    for (int64_t b = 0; b < B; ++b)
      lp[b] = (agg == kAggSoftmin ? lp[b] * static_cast<double>(sc[b]) : lp[b]) +
              static_cast<double>(cs[b]);
    if (!accumulate) return;
    if (agg == kAggCoverage) {
      const int64_t n = t * B;
#pragma omp simd
      for (int64_t e = 0; e < n; ++e) lane[e] = lane[e] * (T(1) - lane[e]);
    } else {
      for (int64_t b = 0; b < B; ++b) {
        T* __restrict__ jrow = jp + (p * B + b) * K;
        const T f = sc[b];
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) jrow[k] *= f;
      }
    }
    if (small) accumulate_weighted_rows<T>(jp + p * B * K, lane, lu, t, B, K);
  };

  if (B <= kSmallBatch) {
    // Small batches (GIS scores n = 8 images a step): both products are the register-blocked
    // loops of preference_impl.inc (MKL runs these shapes far below peak), so each lane does
    // all its work, its contiguous share of the users, inside one parallel region.
    const at::Tensor phi_pad_t = padded_phi_t(phi);
    const T* phi_pad = phi_pad_t.const_data_ptr<T>();
    const T* users_p = ubuf.defined() ? nullptr : users.const_data_ptr<T>();
    const at::ThreadLocalState tls;  // the ATen calls below (exp_, copy_) run on workers
    at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
      at::ThreadLocalStateGuard guard(tls);
      for (int64_t p = begin; p < end; ++p) {
        T* lane = sbuf.template mutable_data_ptr<T>() + p * tile * B;
        for (int64_t u = p * U / P, hi = (p + 1) * U / P; u < hi; u += tile) {
          const int64_t t = std::min(tile, hi - u);
          const T* lu = users_p != nullptr ? users_p + u * K : nullptr;
          if (lu == nullptr) {
            auto dst = ubuf.narrow(0, p * tile, t);
            dst.copy_(users.narrow(0, u, t));
            lu = dst.const_data_ptr<T>();
          }
          scores_small_batch<T>(lane, lu, phi_pad, t, B, K);
          if (agg == kAggMin) {
            fold_min(p, lane, u, t);
            continue;
          }
          if constexpr (std::is_same_v<T, float>) {
            if (agg == kAggSoftmin && B == 8) {  // GIS's case: one vector per user row
              T* cm = colmax.data() + p * B;
              colmax_scaled8(lane, -inv_t, t, cm);
              update_running_max(p);
              exp_shift_sums8(lane, -inv_t, cm, t, cm);
              fold_sums(p, lane, lu, t, /*small=*/true, /*sums_ready=*/true);
              continue;
            }
          }
          auto lane_t = sbuf.narrow(0, p * tile * B, t * B);
          if (agg == kAggSoftmin) {
            softmin_shift(p, lane, t);
            lane_t.exp_();  // ATen's vectorised exp (single-threaded here)
          } else {
            coverage_shift(lane, u, t);
            lane_t.sigmoid_();
          }
          fold_sums(p, lane, lu, t, /*small=*/true);
        }
      }
    });
  } else {
    // Larger batches: rounds of one tile per lane; the products are batched MKL calls from
    // this thread, the pointer loops run per lane in parallel.
    const auto phi_t = phi.t();  // (K, B)
    for_each_round(U, P, tile, [&](const Round& r) {
      const int64_t lanes = r.lanes, t = r.t, u0 = r.u0;
      at::Tensor ut = users.narrow(0, u0, lanes * t);
      if (ubuf.defined()) {
        auto dst = ubuf.narrow(0, 0, lanes * t);
        dst.copy_(ut);
        ut = dst;
      }
      const auto ut3 = ut.view({lanes, t, K});
      auto s = sbuf.narrow(0, 0, lanes * t * B).view({lanes, t, B});  // s[p, j, b]
      T* sp = s.mutable_data_ptr<T>();
      auto per_lane = [&](const auto& fn) {
        at::parallel_for(0, lanes, 1, [&](int64_t begin, int64_t end) {
          for (int64_t p = begin; p < end; ++p) fn(p, sp + p * t * B);
        });
      };
      at::bmm_out(s, ut3, phi_t.unsqueeze(0).expand({lanes, K, B}));
      if (agg == kAggMin) {
        per_lane([&](int64_t p, T* lane) { fold_min(p, lane, u0 + p * t, t); });
        return;
      }
      if (agg == kAggSoftmin) {
        per_lane([&](int64_t p, T* lane) { softmin_shift(p, lane, t); });
        s.exp_();
      } else {
        per_lane([&](int64_t p, T* lane) { coverage_shift(lane, u0 + p * t, t); });
        s.sigmoid_();
      }
      per_lane([&](int64_t p, T* lane) { fold_sums(p, lane, nullptr, t, /*small=*/false); });
      if (accumulate) jac.narrow(0, 0, lanes).baddbmm_(s.transpose(1, 2), ut3);  // += w^T u
    });
  }

  // Merge the lanes in lane order.
  auto score = at::empty({B}, opts);
  T* out = score.mutable_data_ptr<T>();
  at::Tensor grad;
  if (agg == kAggMin) {
    auto index = at::empty({B}, opts.dtype(at::kLong));
    int64_t* ip = index.mutable_data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      double best = m[b];
      int64_t arg = idx[b];
      for (int64_t p = 1; p < P; ++p) {
        const double v = m[p * B + b];
        const int64_t i = idx[p * B + b];
        if (i >= 0 && (arg < 0 || v < best || (v == best && i < arg))) {
          best = v;
          arg = i;
        }
      }
      out[b] = static_cast<T>(best);
      ip[b] = arg;
    }
    if (need_jac) grad = users.index_select(0, index).to(phi.scalar_type()).contiguous();
  } else if (agg == kAggSoftmin) {
    std::vector<T> w(P * B);  // weight of lane p's jac accumulator for image b
    for (int64_t b = 0; b < B; ++b) {
      double mx = minus_inf;
      for (int64_t p = 0; p < P; ++p) mx = std::max(mx, m[p * B + b]);
      double sum = 0.0;
      std::vector<double> f(P);
      for (int64_t p = 0; p < P; ++p) {
        f[p] = m[p * B + b] == minus_inf ? 0.0 : std::exp(m[p * B + b] - mx);
        sum += l[p * B + b] * f[p];
      }
      // -T log mean_u exp(-s_u / T) = -T (max + log sum - log U)
      out[b] = static_cast<T>(-temperature * (mx + std::log(sum) - std::log(static_cast<double>(U))));
      for (int64_t p = 0; p < P; ++p) w[p * B + b] = static_cast<T>(f[p] / sum);
    }
    if (need_jac) {
      auto wt = at::empty({P, B, 1}, opts);
      std::copy(w.begin(), w.end(), wt.mutable_data_ptr<T>());
      grad = jac.mul_(wt).sum(0);
    }
  } else {  // coverage
    for (int64_t b = 0; b < B; ++b) {
      double sum = 0.0;
      for (int64_t p = 0; p < P; ++p) sum += l[p * B + b];
      out[b] = static_cast<T>(sum / static_cast<double>(U));
    }
    if (need_jac) grad = jac.sum(0).mul_(static_cast<double>(inv_t) / static_cast<double>(U));
  }
  return {score, grad};
}

std::tuple<at::Tensor, at::Tensor> preference_cpu(const at::Tensor& phi, const at::Tensor& users,
                                                  int64_t agg, double temperature,
                                                  const c10::optional<at::Tensor>& thresholds,
                                                  int64_t tile, bool need_jac) {
  check_preference_args(phi, users, agg, temperature, thresholds, tile);
  const auto phi_c = phi.contiguous();
  const auto users_c = users.contiguous();
  const at::Tensor thr = (agg == kAggCoverage) ? thresholds->contiguous() : at::Tensor();
  if (tile == 0) tile = default_cpu_tile(phi.size(0));
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(phi.scalar_type(), "preference_cpu", [&] {
    out = agg == kAggMean
              ? mean_impl<scalar_t>(phi_c, users_c, need_jac)
              : tiled_impl<scalar_t>(phi_c, users_c, agg, temperature, thr, tile, need_jac);
  });
  return out;
}

at::Tensor preference_score_cpu(const at::Tensor& phi, const at::Tensor& users, int64_t agg,
                                double temperature, const c10::optional<at::Tensor>& thresholds,
                                int64_t tile) {
  return std::get<0>(preference_cpu(phi, users, agg, temperature, thresholds, tile, false));
}

std::tuple<at::Tensor, at::Tensor> preference_score_with_grad_cpu(
    const at::Tensor& phi, const at::Tensor& users, int64_t agg, double temperature,
    const c10::optional<at::Tensor>& thresholds, int64_t tile) {
  return preference_cpu(phi, users, agg, temperature, thresholds, tile, true);
}

at::Tensor preference_score_backward_cpu(const at::Tensor& grad, const at::Tensor& phi,
                                         const at::Tensor& users, int64_t agg,
                                         double temperature,
                                         const c10::optional<at::Tensor>& thresholds,
                                         int64_t tile) {
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == phi.size(0),
              "preference_score_backward: grad must have shape (B,) = (", phi.size(0),
              ",), got ", grad.sizes());
  auto jac = std::get<1>(preference_cpu(phi, users, agg, temperature, thresholds, tile, true));
  return jac.mul_(grad.to(jac.scalar_type()).unsqueeze(1));
}

// ---------------------------------------------------------------------------------------
at::Tensor preference_rank_cpu(const at::Tensor& phi, const at::Tensor& users,
                               const at::Tensor& catalogue_sorted, int64_t tile) {
  check_preference_rank_args(phi, users, catalogue_sorted, tile);
  const auto phi_c = phi.contiguous();
  const auto users_c = users.contiguous();
  const auto cat = catalogue_sorted.contiguous();
  const int64_t B = phi.size(0), K = phi.size(1), U = users.size(0), N = cat.size(1);
  if (tile == 0) tile = default_cpu_tile(B);
  auto ranks = at::empty({B, U}, phi.options().dtype(at::kLong));
  if (B == 0) return ranks;
  int64_t* rp = ranks.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(phi.scalar_type(), "preference_rank_cpu", [&] {
    using T = scalar_t;
    const T* cp = cat.const_data_ptr<T>();
    const auto opts = phi.options();
    const int64_t P = lanes_for(B, K, U);
    tile = std::min(tile, (U + P - 1) / P);
    auto sbuf = at::empty({P * tile * B}, opts);
    at::Tensor ubuf;
    if (users_c.scalar_type() != phi.scalar_type()) ubuf = at::empty({P * tile, K}, opts);
    for_each_round(U, P, tile, [&](const Round& r) {
      const int64_t n = r.lanes * r.t;
      at::Tensor ut = users_c.narrow(0, r.u0, n);
      if (ubuf.defined()) {
        auto dst = ubuf.narrow(0, 0, n);
        dst.copy_(ut);
        ut = dst;
      }
      auto s = sbuf.narrow(0, 0, n * B).view({n, B});  // s[j, b] for user u0 + j
      at::mm_out(s, ut, phi_c.t());
      const T* sp = s.const_data_ptr<T>();
      at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
        for (int64_t j = begin; j < end; ++j) {
          const T* row = cp + (r.u0 + j) * N;
          for (int64_t b = 0; b < B; ++b)
            // items scoring strictly higher = N - (first position whose score > s)
            rp[b * U + r.u0 + j] = N - (std::upper_bound(row, row + N, sp[j * B + b]) - row);
        }
      });
    });
  });
  return ranks;
}

}  // namespace

TORCH_LIBRARY_IMPL(gis, CPU, m) {
  m.impl("preference_score", &preference_score_cpu);
  m.impl("preference_score_backward", &preference_score_backward_cpu);
  m.impl("preference_score_with_grad", &preference_score_with_grad_cpu);
  m.impl("preference_rank", &preference_rank_cpu);
}

}  // namespace gis

// CPU kernels of gis::preference_score(_backward, _with_grad) and gis::preference_rank.
//
// Scores s[b, u] = phi[b] . users[u] are produced tile users at a time (one GEMM per tile),
// folded into a running per-image state and dropped: peak extra memory is
// O(threads * (B * tile + tile * K + B * K)), whatever U is. The user tiles are split into one
// contiguous chunk per thread; chunk states are merged in chunk order, so a result does not
// depend on scheduling (only on the thread count).
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
#include <limits>
#include <vector>

#include "../gis_ops.h"

namespace gis {
namespace {

// Users per tile when the caller passes tile = 0: the score tile (B x tile, <= 128 KiB of
// float) stays in L2 between the GEMM that fills it, the exp pass and the GEMM that reads it.
// (Measured on a 2-core EPYC at U = 1e6, K = 100: flat between 512 and 4096.)
int64_t default_cpu_tile(int64_t B, int64_t /*K*/) {
  return std::clamp<int64_t>(32768 / std::max<int64_t>(B, 1), 512, 4096);
}

struct Chunks {
  int64_t n_tiles, n_chunks;
  int64_t first(int64_t c) const { return c * n_tiles / n_chunks; }
};

// One chunk per thread, but no more chunks than tiles, and about 4 MFLOP of GEMM at least
// per chunk (below that, starting threads costs more than it saves).
Chunks split_tiles(int64_t B, int64_t K, int64_t U, int64_t tile) {
  const int64_t n_tiles = (U + tile - 1) / tile;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t by_work = std::max<int64_t>(1, 2 * B * K * U / (int64_t{1} << 22));
  return {n_tiles, std::max<int64_t>(1, std::min({n_tiles, threads, by_work}))};
}

// Runs body(chunk) for every chunk, on the ATen intra-op pool, with the caller's
// thread-local state (grad mode, inference mode, ...) so ATen calls inside behave as outside.
template <typename F>
void for_each_chunk(int64_t n_chunks, const F& body) {
  const at::ThreadLocalState tls;
  at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
    at::ThreadLocalStateGuard guard(tls);
    for (int64_t c = begin; c < end; ++c) body(c);
  });
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
// min / softmin / coverage: tiles of users, one running state per chunk.
template <typename T>
struct ChunkState {
  std::vector<double> m;      // min: running min score; softmin: running max of a = -s/T
  std::vector<double> l;      // softmin: sum exp(a - m); coverage: sum of sigmoids
  std::vector<int64_t> idx;   // min: index of the running min
  at::Tensor jac;             // (B, K) unnormalised jac accumulator (softmin, coverage)
};

template <typename T>
ChunkState<T> run_chunk(const at::Tensor& phi, const at::Tensor& users, int64_t agg, T inv_t,
                        const T* tau_scaled, int64_t tile, int64_t tile_begin, int64_t tile_end,
                        bool need_jac) {
  const int64_t B = phi.size(0), K = phi.size(1), U = users.size(0);
  const auto opts = phi.options();
  ChunkState<T> st;
  const double minus_inf = -std::numeric_limits<double>::infinity();
  st.m.assign(B, agg == kAggMin ? std::numeric_limits<double>::quiet_NaN() : minus_inf);
  st.l.assign(B, 0.0);
  st.idx.assign(B, -1);
  const bool accumulate = need_jac && agg != kAggMin;
  if (accumulate) st.jac = at::zeros({B, K}, opts);
  if (tile_begin >= tile_end) return st;

  // The score tile is kept transposed, s^T (t x B): users x images. GEMMs with the users
  // tile as the big left operand run faster in MKL for small B, and the per-image running
  // state is then updated with loops that are contiguous (vectorised) over images.
  auto sbuf = at::empty({tile * B}, opts);
  at::Tensor ubuf;  // users upcast to phi's dtype, one tile at a time
  if (users.scalar_type() != phi.scalar_type()) ubuf = at::empty({tile, K}, opts);
  const auto phi_t = phi.t();
  std::vector<T> scale(B), mt(B), colsum(B);
  T* __restrict__ sc = scale.data();
  T* __restrict__ mtp = mt.data();
  T* __restrict__ cs = colsum.data();

  for (int64_t ti = tile_begin; ti < tile_end; ++ti) {
    const int64_t u0 = ti * tile;
    const int64_t t = std::min(tile, U - u0);
    at::Tensor ut = users.narrow(0, u0, t);
    if (ubuf.defined()) {
      auto dst = ubuf.narrow(0, 0, t);
      dst.copy_(ut);
      ut = dst;
    }
    auto s = sbuf.narrow(0, 0, t * B).view({t, B});  // s[j, b] for user u0 + j, image b
    T* sp = s.mutable_data_ptr<T>();
    // column sums of s over the tile's users -> cs
    auto column_sums = [&] {
      std::fill(colsum.begin(), colsum.end(), T(0));
      for (int64_t j = 0; j < t; ++j) {
        const T* __restrict__ row = sp + j * B;
#pragma omp simd
        for (int64_t b = 0; b < B; ++b) cs[b] += row[b];
      }
    };

    if (agg == kAggMin) {
      at::mm_out(s, ut, phi_t);
      for (int64_t j = 0; j < t; ++j) {
        const T* row = sp + j * B;
        for (int64_t b = 0; b < B; ++b) {
          const double v = static_cast<double>(row[b]);
          if (st.idx[b] < 0 || v < st.m[b]) {
            st.m[b] = v;
            st.idx[b] = u0 + j;
          }
        }
      }
    } else if (agg == kAggSoftmin) {
      at::addmm_out(s, s, ut, phi_t, /*beta=*/0, /*alpha=*/-inv_t);  // a = -s / T
      for (int64_t b = 0; b < B; ++b) mtp[b] = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < t; ++j) {
        const T* __restrict__ row = sp + j * B;
#pragma omp simd
        for (int64_t b = 0; b < B; ++b) mtp[b] = row[b] > mtp[b] ? row[b] : mtp[b];
      }
      for (int64_t b = 0; b < B; ++b) {
        const double m_new = std::max(st.m[b], static_cast<double>(mtp[b]));
        sc[b] = st.m[b] == minus_inf ? T(0) : static_cast<T>(std::exp(st.m[b] - m_new));
        st.m[b] = m_new;
        mtp[b] = static_cast<T>(m_new);
      }
      for (int64_t j = 0; j < t; ++j) {
        T* __restrict__ row = sp + j * B;
#pragma omp simd
        for (int64_t b = 0; b < B; ++b) row[b] -= mtp[b];
      }
      s.exp_();  // ATen's vectorised exp
      column_sums();
      for (int64_t b = 0; b < B; ++b)
        st.l[b] = st.l[b] * static_cast<double>(sc[b]) + static_cast<double>(cs[b]);
      if (accumulate) {
        T* jp = st.jac.template mutable_data_ptr<T>();
        for (int64_t b = 0; b < B; ++b) {
          T* __restrict__ jrow = jp + b * K;
          const T f = sc[b];
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) jrow[k] *= f;
        }
        st.jac.addmm_(s.t(), ut);  // jac += p^T @ users[tile]
      }
    } else {  // coverage
      at::addmm_out(s, s, ut, phi_t, /*beta=*/0, /*alpha=*/inv_t);  // s / T
      const T* tau = tau_scaled + u0;
      for (int64_t j = 0; j < t; ++j) {
        T* __restrict__ row = sp + j * B;
        const T tj = tau[j];
#pragma omp simd
        for (int64_t b = 0; b < B; ++b) row[b] -= tj;
      }
      s.sigmoid_();
      column_sums();
      for (int64_t b = 0; b < B; ++b) st.l[b] += static_cast<double>(cs[b]);
      if (accumulate) {
        const int64_t n = t * B;
#pragma omp simd
        for (int64_t e = 0; e < n; ++e) sp[e] = sp[e] * (T(1) - sp[e]);
        st.jac.addmm_(s.t(), ut);
      }
    }
  }
  return st;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> tiled_impl(const at::Tensor& phi, const at::Tensor& users,
                                              int64_t agg, double temperature,
                                              const at::Tensor& thresholds, int64_t tile,
                                              bool need_jac) {
  const int64_t B = phi.size(0), K = phi.size(1), U = users.size(0);
  const T inv_t = static_cast<T>(1.0 / temperature);
  at::Tensor tau_scaled;  // tau / T in phi's dtype (coverage only), (U,)
  if (agg == kAggCoverage) tau_scaled = (thresholds.to(phi.scalar_type()) * inv_t).contiguous();
  const T* tau_p = tau_scaled.defined() ? tau_scaled.const_data_ptr<T>() : nullptr;

  const Chunks ch = split_tiles(B, K, U, tile);
  std::vector<ChunkState<T>> states(ch.n_chunks);
  for_each_chunk(ch.n_chunks, [&](int64_t c) {
    states[c] = run_chunk<T>(phi, users, agg, inv_t, tau_p, tile, ch.first(c), ch.first(c + 1),
                             need_jac);
  });

  // Merge the chunk states in chunk order.
  auto score = at::empty({B}, phi.options());
  T* sp = score.mutable_data_ptr<T>();
  at::Tensor jac;
  if (agg == kAggMin) {
    std::vector<int64_t> idx(B);
    for (int64_t b = 0; b < B; ++b) {
      double best = states[0].m[b];
      int64_t arg = states[0].idx[b];
      for (size_t c = 1; c < states.size(); ++c)
        if (states[c].idx[b] >= 0 && states[c].m[b] < best) {
          best = states[c].m[b];
          arg = states[c].idx[b];
        }
      sp[b] = static_cast<T>(best);
      idx[b] = arg;
    }
    if (need_jac) {
      auto index = at::empty({B}, phi.options().dtype(at::kLong));
      std::copy(idx.begin(), idx.end(), index.mutable_data_ptr<int64_t>());
      jac = users.index_select(0, index).to(phi.scalar_type()).contiguous();
    }
  } else if (agg == kAggSoftmin) {
    const double minus_inf = -std::numeric_limits<double>::infinity();
    std::vector<T> w(states.size() * B);  // weight of chunk c's accumulator for image b
    std::vector<T> inv_l(B);
    for (int64_t b = 0; b < B; ++b) {
      double m = minus_inf;
      for (const auto& s : states) m = std::max(m, s.m[b]);
      double l = 0.0;
      for (size_t c = 0; c < states.size(); ++c) {
        const double f = states[c].m[b] == minus_inf ? 0.0 : std::exp(states[c].m[b] - m);
        w[c * B + b] = static_cast<T>(f);
        l += states[c].l[b] * f;
      }
      // -T log mean_u exp(-s_u / T) = -T (m + log l - log U)
      sp[b] = static_cast<T>(-temperature * (m + std::log(l) - std::log(static_cast<double>(U))));
      inv_l[b] = static_cast<T>(1.0 / l);
    }
    if (need_jac) {
      jac = at::zeros({B, K}, phi.options());
      T* jp = jac.mutable_data_ptr<T>();
      for (size_t c = 0; c < states.size(); ++c) {
        const T* cp = states[c].jac.template const_data_ptr<T>();
        for (int64_t b = 0; b < B; ++b) {
          const T f = w[c * B + b] * inv_l[b];
          for (int64_t j = 0; j < K; ++j) jp[b * K + j] += f * cp[b * K + j];
        }
      }
    }
  } else {  // coverage
    for (int64_t b = 0; b < B; ++b) {
      double l = 0.0;
      for (const auto& s : states) l += s.l[b];
      sp[b] = static_cast<T>(l / static_cast<double>(U));
    }
    if (need_jac) {
      jac = states[0].jac;
      for (size_t c = 1; c < states.size(); ++c) jac.add_(states[c].jac);
      jac.mul_(static_cast<double>(inv_t) / static_cast<double>(U));
    }
  }
  return {score, jac};
}

std::tuple<at::Tensor, at::Tensor> preference_cpu(const at::Tensor& phi, const at::Tensor& users,
                                                  int64_t agg, double temperature,
                                                  const c10::optional<at::Tensor>& thresholds,
                                                  int64_t tile, bool need_jac) {
  check_preference_args(phi, users, agg, temperature, thresholds, tile);
  const auto phi_c = phi.contiguous();
  const auto users_c = users.contiguous();
  const at::Tensor thr = (agg == kAggCoverage) ? thresholds->contiguous() : at::Tensor();
  if (tile == 0) tile = default_cpu_tile(phi.size(0), phi.size(1));
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
  if (tile == 0) tile = default_cpu_tile(B, K);
  auto ranks = at::empty({B, U}, phi.options().dtype(at::kLong));
  int64_t* rp = ranks.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(phi.scalar_type(), "preference_rank_cpu", [&] {
    using T = scalar_t;
    const T* cp = cat.const_data_ptr<T>();
    const Chunks ch = split_tiles(B, K, U, tile);
    const auto opts = phi.options();
    for_each_chunk(ch.n_chunks, [&](int64_t c) {
      auto sbuf = at::empty({B * tile}, opts);
      at::Tensor ubuf;
      if (users_c.scalar_type() != phi.scalar_type()) ubuf = at::empty({tile, K}, opts);
      for (int64_t ti = ch.first(c); ti < ch.first(c + 1); ++ti) {
        const int64_t u0 = ti * tile;
        const int64_t t = std::min(tile, U - u0);
        at::Tensor ut = users_c.narrow(0, u0, t);
        if (ubuf.defined()) {
          auto dst = ubuf.narrow(0, 0, t);
          dst.copy_(ut);
          ut = dst;
        }
        auto s = sbuf.narrow(0, 0, B * t).view({B, t});
        at::mm_out(s, phi_c, ut.t());
        const T* sp = s.const_data_ptr<T>();
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < t; ++j) {
            const T* row = cp + (u0 + j) * N;
            // items scoring strictly higher = N - (first position whose score > s)
            rp[b * U + u0 + j] = N - (std::upper_bound(row, row + N, sp[b * t + j]) - row);
          }
      }
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

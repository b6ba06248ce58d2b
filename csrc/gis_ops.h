// Shared declarations for the gis operators: constants, argument checks and the
// preference-aggregation codes. Included by the schema file and by every backend.
//
// Every check quotes the values it received, so a failing call says what was passed.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>

namespace gis {

// normalise(v) = (v - mean(v)) / max(std(v), kStdFloor), std with Bessel's correction
// (divisor N - 1, torch.std's default; divisor 1 when N == 1). The floor only matters for
// degenerate inputs (N == 1, or all entries equal), where it yields zeros instead of NaN.
constexpr double kStdFloor = 1e-8;

// mode argument of clip_shift_normalize.
constexpr int64_t kModeVector = 0;  // one mean/std per row (per latent vector)
constexpr int64_t kModeBatch = 1;   // one scalar mean/std over the whole n x d batch

// agg argument of the preference ops.
constexpr int64_t kAggMean = 0;      // mean_u s_u
constexpr int64_t kAggMin = 1;       // min_u s_u
constexpr int64_t kAggSoftmin = 2;   // -T log mean_u exp(-s_u / T)
constexpr int64_t kAggCoverage = 3;  // mean_u sigmoid((s_u - tau_u) / T)

inline const char* agg_name(int64_t agg) {
  switch (agg) {
    case kAggMean: return "mean";
    case kAggMin: return "min";
    case kAggSoftmin: return "softmin";
    case kAggCoverage: return "coverage";
    default: return "?";
  }
}

inline bool is_float_or_double(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
}

inline void check_clip_shift_normalize_args(const at::Tensor& z, const at::Tensor& k,
                                            double eps, int64_t mode) {
  TORCH_CHECK(k.dim() == 2 && k.size(0) >= 1 && k.size(1) >= 1,
              "clip_shift_normalize: k must be a non-empty (n, d) tensor, got shape ", k.sizes());
  TORCH_CHECK(z.dim() == 2 && (z.size(0) == 1 || z.size(0) == k.size(0)) &&
                  z.size(1) == k.size(1),
              "clip_shift_normalize: z must have shape (1, d) or (n, d) matching k ", k.sizes(),
              ", got ", z.sizes());
  TORCH_CHECK(is_float_or_double(k), "clip_shift_normalize: k must be float32 or float64, got ",
              k.scalar_type());
  TORCH_CHECK(z.scalar_type() == k.scalar_type(),
              "clip_shift_normalize: z and k must share a dtype, got z ", z.scalar_type(),
              " and k ", k.scalar_type());
  TORCH_CHECK(z.device() == k.device(), "clip_shift_normalize: z and k must be on one device, got z on ",
              z.device(), " and k on ", k.device());
  TORCH_CHECK(eps >= 0.0, "clip_shift_normalize: eps must be >= 0 (inf disables clipping), got ",
              eps);
  TORCH_CHECK(mode == kModeVector || mode == kModeBatch,
              "clip_shift_normalize: mode must be 0 (per vector) or 1 (whole batch), got ", mode);
}

inline void check_preference_args(const at::Tensor& phi, const at::Tensor& users, int64_t agg,
                                  double temperature,
                                  const c10::optional<at::Tensor>& thresholds, int64_t tile) {
  TORCH_CHECK(phi.dim() == 2, "preference_score: phi must be (B, K), got shape ", phi.sizes());
  TORCH_CHECK(is_float_or_double(phi), "preference_score: phi must be float32 or float64, got ",
              phi.scalar_type());
  TORCH_CHECK(users.dim() == 2 && users.size(1) == phi.size(1),
              "preference_score: users must be (U, K) with K = ", phi.size(1),
              " like phi, got shape ", users.sizes());
  TORCH_CHECK(users.size(0) >= 1, "preference_score: users must hold at least one user, got shape ",
              users.sizes());
  const auto ut = users.scalar_type();
  TORCH_CHECK(ut == phi.scalar_type() || ut == at::kBFloat16 || ut == at::kHalf ||
                  (ut == at::kFloat && phi.scalar_type() == at::kDouble),
              "preference_score: users must be stored as phi's dtype (", phi.scalar_type(),
              "), a lower floating precision or bfloat16/float16, got ", ut);
  TORCH_CHECK(users.device() == phi.device(), "preference_score: phi is on ", phi.device(),
              " but users are on ", users.device());
  TORCH_CHECK(agg >= kAggMean && agg <= kAggCoverage,
              "preference_score: agg must be 0 (mean), 1 (min), 2 (softmin) or 3 (coverage), got ",
              agg);
  if (agg == kAggSoftmin || agg == kAggCoverage) {
    TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0,
                "preference_score: ", agg_name(agg), " needs a finite temperature > 0, got ",
                temperature);
  }
  if (agg == kAggCoverage) {
    TORCH_CHECK(thresholds.has_value() && thresholds->defined(),
                "preference_score: coverage needs per-user thresholds (U,), got none");
    const auto& t = *thresholds;
    TORCH_CHECK(t.dim() == 1 && t.size(0) == users.size(0),
                "preference_score: thresholds must have shape (U,) = (", users.size(0),
                ",), got ", t.sizes());
    TORCH_CHECK(at::isFloatingType(t.scalar_type()),
                "preference_score: thresholds must be floating point, got ", t.scalar_type());
    TORCH_CHECK(t.device() == phi.device(), "preference_score: phi is on ", phi.device(),
                " but thresholds are on ", t.device());
  }
  TORCH_CHECK(tile >= 0, "preference_score: tile must be >= 0 (0 = backend default), got ", tile);
}

inline void check_preference_rank_args(const at::Tensor& phi, const at::Tensor& users,
                                       const at::Tensor& catalogue, int64_t tile) {
  check_preference_args(phi, users, kAggMean, 1.0, c10::nullopt, tile);
  TORCH_CHECK(catalogue.dim() == 2 && catalogue.size(0) == users.size(0),
              "preference_rank: catalogue_sorted must be (U, N) with U = ", users.size(0),
              ", got shape ", catalogue.sizes());
  TORCH_CHECK(catalogue.scalar_type() == phi.scalar_type(),
              "preference_rank: catalogue_sorted must have phi's dtype (", phi.scalar_type(),
              "), got ", catalogue.scalar_type());
  TORCH_CHECK(catalogue.device() == phi.device(), "preference_rank: phi is on ", phi.device(),
              " but catalogue_sorted is on ", catalogue.device());
}

}  // namespace gis

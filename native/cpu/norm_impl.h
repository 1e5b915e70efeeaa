// LayerNorm and RMSNorm on the CPU, written once: the entry points (layernorm.cpp, rmsnorm.cpp)
// instantiate norm_fwd / norm_bwd with kLayer = true (LayerNorm: centred, with bias) or false
// (RMSNorm: no centring, no bias). Formulas and layout contracts are in those files' headers.
//
// Arithmetic in F32 with 16 partial sums per row reduction (lane_sum / lane_dot). Rows are
// independent in both passes except for the parameter gradients of the backward pass, which
// follow the row-chunk rule of cpu_common.h: each chunk of kNormRowChunk rows sums its rows, in
// order, into its own partial (dweight, and dbias for LayerNorm); the partials are combined in
// chunk order and added into dweight/dbias once. Results are bit-identical for every thread count.
#pragma once
#include <cmath>

#include "cpu_common.h"

namespace ath::cpu {

// Rows per chunk of the parameter-gradient reduction (a constant: the summation order depends on
// the shape only).
constexpr int64_t kNormRowChunk = 32;

namespace norm_detail {

// LayerNorm: x = xhat = (x - mean) * rstd, g = dy * w, pw += dy * xhat, pb += dy.
// RMSNorm:   x = xhat = x * rstd,          g = dy * w, pw += dy * xhat.
// kFirst (the first row of a chunk): pw = dy * xhat, pb = dy instead. (restrict: vectorizable)
template <bool kLayer, bool kFirst>
void bwd_pass1(int64_t n, float mean, float rstd, float* __restrict x, const float* __restrict dy,
               const float* __restrict w, float* __restrict g, float* __restrict pw, float* __restrict pb) {
  for (int64_t c = 0; c < n; ++c) {
    if constexpr (kLayer) {
      x[c] = (x[c] - mean) * rstd;
    } else {
      x[c] *= rstd;
    }
    g[c] = dy[c] * w[c];
    if constexpr (kFirst) {
      pw[c] = dy[c] * x[c];
      if constexpr (kLayer) pb[c] = dy[c];
    } else {
      pw[c] += dy[c] * x[c];
      if constexpr (kLayer) pb[c] += dy[c];
    }
  }
}

}  // namespace norm_detail

template <bool kLayer>
ath_status norm_validate(const ath_norm_args* a, bool backward, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->rows < 0) return fail(ATH_ERR_INVALID, "%s: rows=%lld must be >= 0", op, (long long)a->rows);
  if (a->cols < 1) return fail(ATH_ERR_INVALID, "%s: cols=%lld must be >= 1", op, (long long)a->cols);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (!(a->eps >= 0.0f) || !std::isfinite(a->eps))
    return fail(ATH_ERR_INVALID, "%s: eps=%g must be finite and >= 0", op, (double)a->eps);
  if (a->rows == 0) return ATH_OK;
  if (a->x == nullptr || a->weight == nullptr)
    return fail(ATH_ERR_INVALID, "%s: x (%p) and weight (%p) must not be null", op, a->x, a->weight);
  if (!backward && a->out == nullptr) return fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (backward && (a->dout == nullptr || a->dx == nullptr || a->dweight == nullptr || a->rstd == nullptr ||
                   (kLayer && a->mean == nullptr)))
    return fail(ATH_ERR_INVALID, "%s: dout (%p), dx (%p), dweight (%p), %srstd (%p) must not be null", op, a->dout,
                a->dx, static_cast<void*>(a->dweight), kLayer ? "mean, " : "", static_cast<void*>(a->rstd));
  return ATH_OK;
}

// Forward over every row: writes out (and mean, rstd when given). Arguments already validated.
template <bool kLayer>
void norm_fwd(const ath_norm_args* a) {
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return;
  const int nt = num_threads();
  FloatBuf params(2 * cols), scratch(cols * nt);
  float* w = params.get();   // (cols)
  float* bias = w + cols;    // (cols), zeros when there is no bias (LayerNorm only)
  load_row(a->weight, a->dtype, 0, cols, w);
  if (kLayer && a->bias != nullptr) load_row(a->bias, a->dtype, 0, cols, bias);
  parallel_for(rows, grain_for(cols), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + cols * tid;  // (cols)
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->x, a->dtype, r * cols, cols, x);
      float mean = 0.0f, rstd;
      if constexpr (kLayer) {
        mean = lane_sum(x, cols) / static_cast<float>(cols);
        for (int64_t c = 0; c < cols; ++c) x[c] -= mean;
        rstd = 1.0f / std::sqrt(lane_dot(x, x, cols) / static_cast<float>(cols) + a->eps);
        for (int64_t k = 0; k < cols; ++k) x[k] = x[k] * rstd * w[k] + bias[k];
      } else {
        rstd = 1.0f / std::sqrt(lane_dot(x, x, cols) / static_cast<float>(cols) + a->eps);
        for (int64_t k = 0; k < cols; ++k) x[k] = x[k] * rstd * w[k];
      }
      store_row(a->out, a->dtype, r * cols, cols, x);
      if (kLayer && a->mean != nullptr) a->mean[r] = mean;
      if (a->rstd != nullptr) a->rstd[r] = rstd;
    }
  });
}

// Backward: writes dx; dweight (and dbias for LayerNorm, when given) += their row sums, formed per
// row chunk, combined in chunk order and added once. Arguments already validated.
template <bool kLayer>
void norm_bwd(const ath_norm_args* a) {
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return;
  const int nt = num_threads();
  const int64_t nchunks = (rows + kNormRowChunk - 1) / kNormRowChunk;
  const int64_t width = kLayer ? 2 * cols : cols;  // a chunk's partial: dweight (cols) [, dbias (cols)]
  FloatBuf params(cols), scratch(3 * cols * nt);
  // (nchunks, width): chunk c's partial in row c, its first row's terms, then += the next rows'. The thread
  // that owns chunk 0 folds its later chunks into row 0 as it goes (p_0 + p_1, then + p_2, ...:
  // the order of the final fold), reusing row 1 for them, so one thread stores no partials at all.
  float* partials = thread_scratch(0, nchunks * width);
  int64_t folded_until = 1;  // chunks [1, folded_until) are already folded into row 0
  float* w = params.get();
  load_row(a->weight, a->dtype, 0, cols, w);
  const float inv_cols = 1.0f / static_cast<float>(cols);
  parallel_for(nchunks, grain_for(3 * cols * kNormRowChunk), [&](int64_t c0, int64_t c1, int tid) {
    float* x = scratch.get() + 3 * cols * tid;  // (cols) x, then xhat
    float* dy = x + cols;                       // (cols) dout
    float* g = dy + cols;                       // (cols) dout * weight, then dx
    const bool fold = c0 == 0;
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      float* pw = partials + (fold ? std::min<int64_t>(chunk, 1) : chunk) * width;  // (cols)
      float* pb = kLayer ? pw + cols : nullptr;
      const int64_t r0 = chunk * kNormRowChunk, r1 = std::min(rows, r0 + kNormRowChunk);
      for (int64_t r = r0; r < r1; ++r) {
        load_row(a->x, a->dtype, r * cols, cols, x);
        load_row(a->dout, a->dtype, r * cols, cols, dy);
        const float mean = kLayer ? a->mean[r] : 0.0f, rstd = a->rstd[r];
        if (r == r0) norm_detail::bwd_pass1<kLayer, true>(cols, mean, rstd, x, dy, w, g, pw, pb);
        else norm_detail::bwd_pass1<kLayer, false>(cols, mean, rstd, x, dy, w, g, pw, pb);
        const float mgx = lane_dot(g, x, cols) * inv_cols;
        if constexpr (kLayer) {
          const float mg = lane_sum(g, cols) * inv_cols;
          for (int64_t c = 0; c < cols; ++c) g[c] = rstd * (g[c] - mg - x[c] * mgx);
        } else {
          for (int64_t c = 0; c < cols; ++c) g[c] = rstd * (g[c] - x[c] * mgx);
        }
        store_row(a->dx, a->dtype, r * cols, cols, g);
      }
      if (fold && chunk > 0) {
        for (int64_t j = 0; j < width; ++j) partials[j] += pw[j];
      }
    }
    if (fold) folded_until = c1;  // read after the pool has joined
  });
  float* dbias = kLayer ? a->dbias : nullptr;
  sum_partials(partials, folded_until, nchunks, width, [&](int64_t j0, int64_t j1, const float* total) {
    for (int64_t j = j0; j < j1; ++j) {
      if (j < cols) a->dweight[j] += total[j - j0];
      else if (dbias != nullptr) dbias[j - cols] += total[j - j0];
    }
  });
}

}  // namespace ath::cpu

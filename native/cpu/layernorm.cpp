// ath_cpu_layernorm_fwd / ath_cpu_layernorm_bwd: LayerNorm over the last dimension on the CPU.
// x, out, dout, dx: (rows, cols) contiguous, dtype F32/BF16/F16; weight, bias: (cols) dtype (bias
// may be NULL); mean, rstd: (rows) F32; dweight, dbias: (cols) F32, ACCUMULATED (dbias may be NULL).
//   forward:  mean = sum(x) / cols, var = sum((x - mean)^2) / cols (two passes, biased),
//             rstd = 1 / sqrt(var + eps), out = (x - mean) * rstd * weight + bias
//   backward: xhat = (x - mean) * rstd, g = dout * weight,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat))          (written)
//             dweight += sum_rows dout * xhat, dbias += sum_rows dout    (accumulated)
// Arithmetic in F32 with 16 partial sums per row reduction. Rows are split statically over the
// pool; the parameter gradients are summed per thread over its row range and the per-thread
// partials are added in thread order, so results are bit-identical run to run.
#include <cmath>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

// x = xhat = (x - mean) * rstd, g = dy * w, pw += dy * xhat, pb += dy (restrict: vectorizable)
void bwd_pass1(int64_t n, float mean, float rstd, float* __restrict x, const float* __restrict dy,
               const float* __restrict w, float* __restrict g, float* __restrict pw, float* __restrict pb) {
  for (int64_t c = 0; c < n; ++c) {
    x[c] = (x[c] - mean) * rstd;
    g[c] = dy[c] * w[c];
    pw[c] += dy[c] * x[c];
    pb[c] += dy[c];
  }
}

ath_status validate(const ath_norm_args* a, bool backward, const char* op) {
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
  if (backward && (a->dout == nullptr || a->dx == nullptr || a->dweight == nullptr || a->mean == nullptr ||
                   a->rstd == nullptr))
    return fail(ATH_ERR_INVALID, "%s: dout (%p), dx (%p), dweight (%p), mean (%p) and rstd (%p) must not be null", op,
                a->dout, a->dx, static_cast<void*>(a->dweight), static_cast<void*>(a->mean),
                static_cast<void*>(a->rstd));
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_layernorm_fwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_layernorm_fwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, false, kOp));
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return ATH_OK;
  const int nt = num_threads();
  FloatBuf params(2 * cols), scratch(cols * nt);
  float* w = params.get();  // (cols)
  float* bias = w + cols;   // (cols), zeros when there is no bias
  load_row(a->weight, a->dtype, 0, cols, w);
  if (a->bias != nullptr) load_row(a->bias, a->dtype, 0, cols, bias);
  parallel_for(rows, grain_for(cols), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + cols * tid;  // (cols)
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->x, a->dtype, r * cols, cols, x);
      const float mean = lane_sum(x, cols) / static_cast<float>(cols);
      for (int64_t c = 0; c < cols; ++c) x[c] -= mean;
      const float var = lane_dot(x, x, cols) / static_cast<float>(cols);
      const float rstd = 1.0f / std::sqrt(var + a->eps);
      for (int64_t k = 0; k < cols; ++k) x[k] = x[k] * rstd * w[k] + bias[k];
      store_row(a->out, a->dtype, r * cols, cols, x);
      if (a->mean != nullptr) a->mean[r] = mean;
      if (a->rstd != nullptr) a->rstd[r] = rstd;
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_layernorm_bwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_layernorm_bwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, true, kOp));
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return ATH_OK;
  const int nt = num_threads();
  FloatBuf params(cols), scratch(3 * cols * nt), partial(2 * cols * nt);  // partial: (nt, 2, cols), zeroed
  float* w = params.get();
  load_row(a->weight, a->dtype, 0, cols, w);
  const float inv_cols = 1.0f / static_cast<float>(cols);
  parallel_for(rows, grain_for(3 * cols), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + 3 * cols * tid;  // (cols) x, then xhat
    float* dy = x + cols;                       // (cols) dout
    float* g = dy + cols;                       // (cols) dout * weight, then dx
    float* pw = partial.get() + 2 * cols * tid;
    float* pb = pw + cols;
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->x, a->dtype, r * cols, cols, x);
      load_row(a->dout, a->dtype, r * cols, cols, dy);
      const float mean = a->mean[r], rstd = a->rstd[r];
      bwd_pass1(cols, mean, rstd, x, dy, w, g, pw, pb);
      const float mg = lane_sum(g, cols) * inv_cols, mgx = lane_dot(g, x, cols) * inv_cols;
      for (int64_t c = 0; c < cols; ++c) g[c] = rstd * (g[c] - mg - x[c] * mgx);
      store_row(a->dx, a->dtype, r * cols, cols, g);
    }
  });
  for (int t = 0; t < nt; ++t) {
    const float* pw = partial.get() + 2 * cols * t;
    for (int64_t c = 0; c < cols; ++c) a->dweight[c] += pw[c];
    if (a->dbias != nullptr)
      for (int64_t c = 0; c < cols; ++c) a->dbias[c] += pw[cols + c];
  }
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

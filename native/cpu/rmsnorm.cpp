// ath_cpu_rmsnorm_fwd / ath_cpu_rmsnorm_bwd: RMSNorm over the last dimension on the CPU.
// x, out, dout, dx: (rows, cols) contiguous, dtype F32/BF16/F16; weight: (cols) dtype (bias is
// ignored); rstd: (rows) F32 (mean is not used); dweight: (cols) F32, ACCUMULATED.
//   forward:  rstd = 1 / sqrt(sum(x^2) / cols + eps),  out = x * rstd * weight
//   backward: xhat = x * rstd, g = dout * weight,
//             dx = rstd * (g - xhat * mean(g * xhat))      (written)
//             dweight += sum_rows dout * xhat              (accumulated)
// Arithmetic in F32 with 16 partial sums per row reduction. Rows are split statically over the
// pool; dweight partials are kept per thread and added in thread order (deterministic).
#include <cmath>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

// x = xhat = x * rstd, g = dy * w, pw += dy * xhat (restrict: vectorizable)
void bwd_pass1(int64_t n, float rstd, float* __restrict x, const float* __restrict dy, const float* __restrict w,
               float* __restrict g, float* __restrict pw) {
  for (int64_t c = 0; c < n; ++c) {
    x[c] *= rstd;
    g[c] = dy[c] * w[c];
    pw[c] += dy[c] * x[c];
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
  if (backward && (a->dout == nullptr || a->dx == nullptr || a->dweight == nullptr || a->rstd == nullptr))
    return fail(ATH_ERR_INVALID, "%s: dout (%p), dx (%p), dweight (%p) and rstd (%p) must not be null", op, a->dout,
                a->dx, static_cast<void*>(a->dweight), static_cast<void*>(a->rstd));
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_rmsnorm_fwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_rmsnorm_fwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, false, kOp));
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return ATH_OK;
  const int nt = num_threads();
  FloatBuf params(cols), scratch(cols * nt);
  float* w = params.get();  // (cols)
  load_row(a->weight, a->dtype, 0, cols, w);
  parallel_for(rows, grain_for(cols), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + cols * tid;  // (cols)
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->x, a->dtype, r * cols, cols, x);
      const float rstd = 1.0f / std::sqrt(lane_dot(x, x, cols) / static_cast<float>(cols) + a->eps);
      for (int64_t k = 0; k < cols; ++k) x[k] = x[k] * rstd * w[k];
      store_row(a->out, a->dtype, r * cols, cols, x);
      if (a->rstd != nullptr) a->rstd[r] = rstd;
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_rmsnorm_bwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_rmsnorm_bwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, true, kOp));
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return ATH_OK;
  const int nt = num_threads();
  FloatBuf params(cols), scratch(3 * cols * nt), partial(cols * nt);  // partial: (nt, cols), zeroed
  float* w = params.get();
  load_row(a->weight, a->dtype, 0, cols, w);
  const float inv_cols = 1.0f / static_cast<float>(cols);
  parallel_for(rows, grain_for(3 * cols), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + 3 * cols * tid;  // (cols) x, then xhat
    float* dy = x + cols;                       // (cols) dout
    float* g = dy + cols;                       // (cols) dout * weight, then dx
    float* pw = partial.get() + cols * tid;
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->x, a->dtype, r * cols, cols, x);
      load_row(a->dout, a->dtype, r * cols, cols, dy);
      const float rstd = a->rstd[r];
      bwd_pass1(cols, rstd, x, dy, w, g, pw);
      const float mgx = lane_dot(g, x, cols) * inv_cols;
      for (int64_t c = 0; c < cols; ++c) g[c] = rstd * (g[c] - x[c] * mgx);
      store_row(a->dx, a->dtype, r * cols, cols, g);
    }
  });
  for (int t = 0; t < nt; ++t) {
    const float* pw = partial.get() + cols * t;
    for (int64_t c = 0; c < cols; ++c) a->dweight[c] += pw[c];
  }
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

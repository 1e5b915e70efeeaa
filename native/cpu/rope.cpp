// ath_cpu_rope: rotary position embedding on the CPU (forward, or backward with inverse != 0).
// x, out: (B, T, H, D) addressed by element strides x_sb, x_st, x_sh (last dim contiguous); out
// uses the same strides and may alias x. dtype F32/BF16/F16, arithmetic in F32. For each
// (b, t, h) and i < D/2 (the "rotate_half" pairing of Hugging Face Llama):
//   inv_freq_i = powf(theta, -2.0f * i / D)        F32, exactly this expression (as the CUDA twin)
//   angle      = (float)(pos0 + t) * inv_freq_i    F32 product (negated when inverse != 0)
//   cos, sin   = of that F32 angle, evaluated in double and rounded to F32 once
//   out[i]        = x[i] * cos - x[i + D/2] * sin
//   out[i + D/2]  = x[i + D/2] * cos + x[i] * sin
// The (T, D/2) cos/sin table is built once per call in parallel over t, then (b, t) rows are
// split statically over the pool; each head row is loaded completely before it is stored.
#include <cmath>

#include "cpu_common.h"

namespace {

ath_status validate(const ath_rope_args* a, const char* op) {
  using namespace ath::cpu;
  if (a == nullptr) return ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->batch < 0 || a->seq < 0)
    return ath::fail(ATH_ERR_INVALID, "%s: batch=%lld and seq=%lld must be >= 0", op, (long long)a->batch,
                     (long long)a->seq);
  if (a->heads < 1) return ath::fail(ATH_ERR_INVALID, "%s: heads=%lld must be >= 1", op, (long long)a->heads);
  if (a->head_dim < 2 || a->head_dim % 2 != 0)
    return ath::fail(ATH_ERR_INVALID, "%s: head_dim=%lld must be even and >= 2", op, (long long)a->head_dim);
  if (!ath::is_float_dtype(a->dtype))
    return ath::fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype,
                     dtype_name(a->dtype));
  if (!(a->theta > 0.0f) || !std::isfinite(a->theta))
    return ath::fail(ATH_ERR_INVALID, "%s: theta=%g must be finite and > 0", op, (double)a->theta);
  if (a->x_sb < 0 || a->x_st < 0 || a->x_sh < 0)
    return ath::fail(ATH_ERR_INVALID, "%s: strides x_sb=%lld, x_st=%lld, x_sh=%lld must be >= 0", op,
                     (long long)a->x_sb, (long long)a->x_st, (long long)a->x_sh);
  if (!rows_disjoint(a->head_dim, a->batch, a->x_sb, a->seq, a->x_st, a->heads, a->x_sh))
    return ath::fail(ATH_ERR_INVALID,
                     "%s: strides x_sb=%lld, x_st=%lld, x_sh=%lld make rows of head_dim=%lld overlap (out is written "
                     "with them)",
                     op, (long long)a->x_sb, (long long)a->x_st, (long long)a->x_sh, (long long)a->head_dim);
  if (a->batch * a->seq == 0) return ATH_OK;
  if (a->x == nullptr || a->out == nullptr)
    return ath::fail(ATH_ERR_INVALID, "%s: x (%p) and out (%p) must not be null", op, a->x, a->out);
  return ATH_OK;
}

}  // namespace

extern "C" ath_status ath_cpu_rope(const ath_rope_args* a) {
  static const char* kOp = "ath_cpu_rope";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, kOp));
  const int64_t B = a->batch, T = a->seq, H = a->heads, D = a->head_dim, half = D / 2;
  if (B * T == 0) return ATH_OK;
  FloatBuf table(2 * T * half, false);  // (T, 2, half): cos, then sin
  const float sign = a->inverse ? -1.0f : 1.0f;
  parallel_for(T, grain_for(half * 40), [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* cs = table.get() + 2 * half * t;
      float* sn = cs + half;
      const float pos = static_cast<float>(a->pos0 + t);
      for (int64_t i = 0; i < half; ++i) {
        const float inv_freq = std::pow(a->theta, -2.0f * static_cast<float>(i) / static_cast<float>(D));
        const double angle = static_cast<double>(pos * inv_freq);
        cs[i] = static_cast<float>(std::cos(angle));
        sn[i] = sign * static_cast<float>(std::sin(angle));
      }
    }
  });
  const int nt = num_threads();
  FloatBuf scratch(2 * D * nt);
  parallel_for(B * T, grain_for(H * D), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + 2 * D * tid;  // (D) input row
    float* y = x + D;                        // (D) rotated row
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / T, t = r % T;
      const float* cs = table.get() + 2 * half * t;
      const float* sn = cs + half;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t off = b * a->x_sb + t * a->x_st + h * a->x_sh;
        load_row(a->x, a->dtype, off, D, x);
        for (int64_t i = 0; i < half; ++i) {
          y[i] = x[i] * cs[i] - x[i + half] * sn[i];
          y[i + half] = x[i + half] * cs[i] + x[i] * sn[i];
        }
        store_row(a->out, a->dtype, off, D, y);
      }
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

// ath_cpu_adamw: fused AdamW step on the CPU.
// params, grads, m, v: (n) F32 contiguous; params_lowp: NULL or (n) BF16/F16 (dtype_lowp).
// Bias corrections bc1 = 1 - beta1^step, bc2 = 1 - beta2^step are computed in double and rounded to
// F32 once (as in the CUDA twin); then per element, in F32:
//   g = grads * grad_scale
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   params -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + weight_decay * params)
//   params_lowp = round_to_nearest_even(params)   (when given)
// params, m, v are updated in place; grads is only read. Elements are independent (static split).
// grad_scale_ptr (host memory here), when given, is read once in place of grad_scale; a non-finite
// *grad_scale_ptr leaves everything untouched (the CUDA twin reads it in device memory).
#include <cmath>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kBlock = 1024;

ath_status validate(const ath_adamw_args* a, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->step < 1) return fail(ATH_ERR_INVALID, "%s: step=%lld must be >= 1", op, (long long)a->step);
  if (!(a->beta1 >= 0.0f && a->beta1 < 1.0f))
    return fail(ATH_ERR_INVALID, "%s: beta1=%g must be in [0, 1)", op, (double)a->beta1);
  if (!(a->beta2 >= 0.0f && a->beta2 < 1.0f))
    return fail(ATH_ERR_INVALID, "%s: beta2=%g must be in [0, 1)", op, (double)a->beta2);
  if (!(a->eps >= 0.0f) || !std::isfinite(a->eps))
    return fail(ATH_ERR_INVALID, "%s: eps=%g must be finite and >= 0", op, (double)a->eps);
  if (!std::isfinite(a->lr) || !std::isfinite(a->weight_decay) || !std::isfinite(a->grad_scale))
    return fail(ATH_ERR_INVALID, "%s: lr=%g, weight_decay=%g and grad_scale=%g must be finite", op, (double)a->lr,
                (double)a->weight_decay, (double)a->grad_scale);
  if (a->params_lowp != nullptr && a->dtype_lowp != ATH_BF16 && a->dtype_lowp != ATH_F16)
    return fail(ATH_ERR_INVALID, "%s: dtype_lowp=%d (%s) must be BF16 or F16 when params_lowp is given", op,
                a->dtype_lowp, dtype_name(a->dtype_lowp));
  if (a->n == 0) return ATH_OK;
  if (a->params == nullptr || a->grads == nullptr || a->m == nullptr || a->v == nullptr)
    return fail(ATH_ERR_INVALID, "%s: params (%p), grads (%p), m (%p) and v (%p) must not be null", op,
                static_cast<void*>(a->params), static_cast<const void*>(a->grads), static_cast<void*>(a->m),
                static_cast<void*>(a->v));
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_adamw(const ath_adamw_args* a) {
  static const char* kOp = "ath_cpu_adamw";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, kOp));
  const int64_t n = a->n, nblocks = (n + kBlock - 1) / kBlock;
  if (n == 0) return ATH_OK;
  const float lr = a->lr, b1 = a->beta1, b2 = a->beta2, omb1 = 1.0f - a->beta1, omb2 = 1.0f - a->beta2;
  const float gs = a->grad_scale_ptr != nullptr ? *a->grad_scale_ptr : a->grad_scale;
  if (!std::isfinite(gs)) return ATH_OK;  // only a pointed-to factor can be non-finite: the step is refused
  const float eps = a->eps, wd = a->weight_decay;
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a->beta1), static_cast<double>(a->step)));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(a->beta2), static_cast<double>(a->step)));
  parallel_for(nblocks, grain_for(kBlock * 4), [&](int64_t b0, int64_t b1_, int) {
    for (int64_t blk = b0; blk < b1_; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      float* p = a->params + off;
      const float* g = a->grads + off;
      float* m = a->m + off;
      float* v = a->v + off;
      for (int64_t i = 0; i < len; ++i) {
        const float gk = g[i] * gs;
        const float mk = b1 * m[i] + omb1 * gk;
        const float vk = b2 * v[i] + omb2 * gk * gk;
        m[i] = mk;
        v[i] = vk;
        const float mhat = mk / bc1, vhat = vk / bc2;
        p[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * p[i]);
      }
      if (a->params_lowp != nullptr) store_row(a->params_lowp, a->dtype_lowp, off, len, p);
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

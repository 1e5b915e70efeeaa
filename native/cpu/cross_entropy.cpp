// ath_cpu_cross_entropy_fwd / ath_cpu_cross_entropy_bwd: fused softmax + cross-entropy on the CPU.
// logits: (rows, vocab) with row stride ld >= vocab, dtype F32/BF16/F16; targets: (rows) I32.
// A target < 0 is ignored (loss 0, gradient 0); a target >= vocab is ATH_ERR_INVALID naming the
// row (checked for every row before anything is written).
//   forward:  m = max(logits[r]), lse[r] = m + log(sum_j exp(logits[r, j] - m))  (max-subtracted),
//             losses[r] = lse[r] - logits[r, target[r]]   (losses, lse: (rows) F32; lse may be NULL)
//   backward: dlogits[r, j] = dlosses[r] * (exp(logits[r, j] - lse[r]) - [j == target[r]])
//             (written, stride ld, dtype; columns [vocab, ld) are not touched; needs the saved lse)
// exp is the polynomial exp of cpu_common.h / simd_traits.h (~1-2 ulp, no libm); the row kernels
// run as AVX-512 or AVX2 (cross_entropy_avx*.cpp) or as 4-lane baseline code below, per the active
// ISA; sums use partial sums combined in a fixed order. Rows are split statically over the pool
// (each row is independent). dlogits may be logits itself (same ld): each row is loaded before it
// is stored.
#include <cmath>

#include "cpu_common.h"
#include "rowops_impl.h"

namespace ath::cpu {
namespace {

ath_status validate(const ath_cross_entropy_args* a, bool backward, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->rows < 0) return fail(ATH_ERR_INVALID, "%s: rows=%lld must be >= 0", op, (long long)a->rows);
  if (a->vocab < 1 || a->vocab > INT32_MAX)
    return fail(ATH_ERR_INVALID, "%s: vocab=%lld must be in [1, %d]", op, (long long)a->vocab, INT32_MAX);
  if (a->ld < a->vocab)
    return fail(ATH_ERR_INVALID, "%s: ld=%lld must be >= vocab=%lld", op, (long long)a->ld, (long long)a->vocab);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (a->rows == 0) return ATH_OK;
  if (a->logits == nullptr || a->targets == nullptr)
    return fail(ATH_ERR_INVALID, "%s: logits (%p) and targets (%p) must not be null", op, a->logits,
                static_cast<const void*>(a->targets));
  if (!backward && a->losses == nullptr) return fail(ATH_ERR_INVALID, "%s: losses is null", op);
  if (backward && (a->lse == nullptr || a->dlosses == nullptr || a->dlogits == nullptr))
    return fail(ATH_ERR_INVALID, "%s: lse (%p), dlosses (%p) and dlogits (%p) must not be null", op,
                static_cast<void*>(a->lse), static_cast<const void*>(a->dlosses), a->dlogits);
  for (int64_t r = 0; r < a->rows; ++r)
    if (a->targets[r] >= a->vocab)
      return fail(ATH_ERR_INVALID, "%s: targets[%lld]=%d must be < vocab=%lld (or < 0 to ignore the row)", op,
                  (long long)r, a->targets[r], (long long)a->vocab);
  return ATH_OK;
}

using LseFn = float (*)(const float*, int64_t);
using GradFn = void (*)(float*, int64_t, float, float);

// max and log-sum-exp of x[0, n): 16 lanes (4 vectors of 4) of max and of sum, fixed order.
float row_lse(const float* x, int64_t n) {
  const v4f ninf = v4_set1(-INFINITY);
  v4f mx[4] = {ninf, ninf, ninf, ninf};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; ++j) {
      const v4f v = v4_load(x + i + 4 * j);
      mx[j] = v > mx[j] ? v : mx[j];
    }
  float m = -INFINITY;
  for (int j = 0; j < 4; ++j)
    for (int k = 0; k < 4; ++k) m = mx[j][k] > m ? mx[j][k] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  if (m == -INFINITY) return -INFINITY;  // every logit is -inf
  const v4f mv = v4_set1(m);
  v4f acc[4] = {};
  i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; ++j) acc[j] += exp4(v4_load(x + i + 4 * j) - mv);
  float lanes[16];
  for (int j = 0; j < 4; ++j) v4_store(lanes + 4 * j, acc[j]);
  for (int j = 0; i < n; ++i, ++j) lanes[j] += exp_approx(x[i] - m);
  return m + std::log(lane_sum(lanes, 16));
}

void grad_row_base(float* x, int64_t n, float lse, float dl) {
  const v4f lv = v4_set1(lse);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) v4_store(x + j, dl * exp4(v4_load(x + j) - lv));
  for (; j < n; ++j) x[j] = dl * exp_approx(x[j] - lse);
}

LseFn pick_lse() {
  switch (active_isa()) {
    case Isa::kAvx512: return xent_lse_row_avx512;
    case Isa::kAvx2: return xent_lse_row_avx2;
    default: return row_lse;
  }
}
GradFn pick_grad() {
  switch (active_isa()) {
    case Isa::kAvx512: return xent_grad_row_avx512;
    case Isa::kAvx2: return xent_grad_row_avx2;
    default: return grad_row_base;
  }
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_cross_entropy_fwd(const ath_cross_entropy_args* a) {
  static const char* kOp = "ath_cpu_cross_entropy_fwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, false, kOp));
  const int64_t rows = a->rows, V = a->vocab;
  if (rows == 0) return ATH_OK;
  FloatBuf scratch(V * num_threads(), false);
  const LseFn lse_fn = pick_lse();
  parallel_for(rows, grain_for(V), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + V * tid;  // (vocab)
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->logits, a->dtype, r * a->ld, V, x);
      const float lse = lse_fn(x, V);
      const int32_t t = a->targets[r];
      a->losses[r] = t < 0 ? 0.0f : lse - x[t];
      if (a->lse != nullptr) a->lse[r] = lse;
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_cross_entropy_bwd(const ath_cross_entropy_args* a) {
  static const char* kOp = "ath_cpu_cross_entropy_bwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, true, kOp));
  const int64_t rows = a->rows, V = a->vocab;
  if (rows == 0) return ATH_OK;
  FloatBuf scratch(V * num_threads(), false);
  const GradFn grad = pick_grad();
  parallel_for(rows, grain_for(V), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + V * tid;  // (vocab)
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = a->targets[r];
      if (t < 0) {
        for (int64_t j = 0; j < V; ++j) x[j] = 0.0f;
      } else {
        load_row(a->logits, a->dtype, r * a->ld, V, x);
        const float lse = a->lse[r], dl = a->dlosses[r];
        grad(x, V, lse, dl);
        x[t] -= dl;
      }
      store_row(a->dlogits, a->dtype, r * a->ld, V, x);
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

// ath_cpu_rand: counter-based random fill on the CPU (Philox-4x32-10, common/philox.h).
// out: (n) contiguous, dtype F32/BF16/F16 (I32 is ATH_ERR_INVALID). Element i uses
// w = philox4x32_10(i + offset, seed) and nothing else, so values do not depend on the thread count
// and match the CUDA twin (kernels/rand.cu) expression for expression:
//   UNIFORM: out = a + (b - a) * philox_uniform01(w[0])                                  in [a, b)
//   NORMAL:  out = a + (b * sqrtf(-2 * logf(philox_uniform01_open0(w[0]))))
//                    * cosf(2 pi * philox_uniform01(w[1]))                       (mean a, std b)
// computed in F32 and rounded once to BF16/F16. UNIFORM is bit-identical to CUDA; NORMAL may
// differ in the last bits (libm logf/cosf vs device math).
#include <cmath>

#include "../common/philox.h"
#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kBlock = 1024;
constexpr float kTwoPi = 6.28318530717958647692f;

ath_status validate(const ath_rand_args* a, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (a->dist != ATH_RAND_UNIFORM && a->dist != ATH_RAND_NORMAL)
    return fail(ATH_ERR_INVALID, "%s: dist=%d must be 0 (UNIFORM) or 1 (NORMAL)", op, a->dist);
  if (!std::isfinite(a->a) || !std::isfinite(a->b))
    return fail(ATH_ERR_INVALID, "%s: a=%g and b=%g must be finite", op, (double)a->a, (double)a->b);
  if (a->n > 0 && a->out == nullptr) return fail(ATH_ERR_INVALID, "%s: out is null", op);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_rand(const ath_rand_args* r) {
  static const char* kOp = "ath_cpu_rand";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(r, kOp));
  const int64_t n = r->n, nblocks = (n + kBlock - 1) / kBlock;
  const float a = r->a, b = r->b;
  parallel_for(nblocks, grain_for(kBlock * 16), [&](int64_t b0, int64_t b1, int) {
    float x[kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      for (int64_t i = 0; i < len; ++i) {
        const ath::Philox4 w = ath::philox4x32_10(static_cast<uint64_t>(off + i) + r->offset, r->seed);
        if (r->dist == ATH_RAND_UNIFORM) {
          x[i] = a + (b - a) * ath::philox_uniform01(w.v[0]);
        } else {
          const float rad = std::sqrt(-2.0f * std::log(ath::philox_uniform01_open0(w.v[0])));
          const float c = std::cos(kTwoPi * ath::philox_uniform01(w.v[1]));
          x[i] = a + (b * rad) * c;
        }
      }
      store_row(r->out, r->dtype, off, len, x);
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

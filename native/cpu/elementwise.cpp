// ath_cpu_elementwise: simple elementwise ops on n contiguous elements, on the CPU.
//   ADD: out = a + b      MUL: out = a * b      SCALE: out = alpha * a
//   AXPY: out = out + alpha * a                 FILL: out = alpha
//   CONVERT: out (dtype_out) = a (dtype), round-to-nearest-even
// All but CONVERT use one dtype, F32/BF16/F16, computed in F32 and rounded once; out may alias a
// or b exactly. CONVERT: any of F32/BF16/F16 to any of them, plus I32 -> F32 (nearest even) and
// F32 -> I32 (nearest even, saturated to the I32 range, NaN -> 0) and same-dtype copies; the other
// I32 combinations are ATH_ERR_UNSUPPORTED. For CONVERT, out may be exactly a when both dtypes
// have the same size, and must not overlap a otherwise (ATH_ERR_INVALID).
// Blocks of 1024 elements are loaded, computed in F32 and stored; blocks are split statically.
#include <cmath>
#include <cstring>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kBlock = 1024;

bool is_convert_dtype(int dt) { return is_float_dtype(dt) || dt == ATH_I32; }

ath_status validate(const ath_elementwise_args* e, const char* op) {
  if (e == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (e->n < 0) return fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)e->n);
  if (e->op < ATH_EW_ADD || e->op > ATH_EW_CONVERT)
    return fail(ATH_ERR_INVALID, "%s: op=%d must be in [0, 5] (ADD, MUL, SCALE, AXPY, FILL, CONVERT)", op, e->op);
  if (e->op == ATH_EW_CONVERT) {
    if (!is_convert_dtype(e->dtype) || !is_convert_dtype(e->dtype_out))
      return fail(ATH_ERR_INVALID, "%s: CONVERT dtype=%d (%s) and dtype_out=%d (%s) must be F32, BF16, F16 or I32", op,
                  e->dtype, dtype_name(e->dtype), e->dtype_out, dtype_name(e->dtype_out));
    const bool i_in = e->dtype == ATH_I32, i_out = e->dtype_out == ATH_I32;
    if (i_in != i_out && e->dtype != ATH_F32 && e->dtype_out != ATH_F32)
      return fail(ATH_ERR_UNSUPPORTED, "%s: CONVERT %s -> %s is not supported (I32 converts only to and from F32)", op,
                  dtype_name(e->dtype), dtype_name(e->dtype_out));
  } else if (!is_float_dtype(e->dtype)) {
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, e->dtype, dtype_name(e->dtype));
  }
  if (e->n == 0) return ATH_OK;
  if (e->out == nullptr) return fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (e->op != ATH_EW_FILL && e->a == nullptr) return fail(ATH_ERR_INVALID, "%s: a is null (op %d)", op, e->op);
  if ((e->op == ATH_EW_ADD || e->op == ATH_EW_MUL) && e->b == nullptr)
    return fail(ATH_ERR_INVALID, "%s: b is null (op %d)", op, e->op);
  if (e->op == ATH_EW_CONVERT) {
    const size_t in_bytes = static_cast<size_t>(e->n) * ath_dtype_size(e->dtype);
    const size_t out_bytes = static_cast<size_t>(e->n) * ath_dtype_size(e->dtype_out);
    const char* ia = static_cast<const char*>(e->a);
    const char* io = static_cast<const char*>(e->out);
    const bool overlap = ia < io + out_bytes && io < ia + in_bytes;
    const bool exact = ia == io && in_bytes == out_bytes;
    if (overlap && !exact)
      return fail(ATH_ERR_INVALID, "%s: CONVERT %s -> %s: out (%p) overlaps a (%p) without being identical to it", op,
                  dtype_name(e->dtype), dtype_name(e->dtype_out), e->out, e->a);
  }
  return ATH_OK;
}

inline int32_t f32_to_i32(float v) {
  if (std::isnan(v)) return 0;
  const float r = std::nearbyint(v);
  if (r >= 2147483648.0f) return INT32_MAX;
  if (r < -2147483648.0f) return INT32_MIN;
  return static_cast<int32_t>(r);
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_elementwise(const ath_elementwise_args* e) {
  static const char* kOp = "ath_cpu_elementwise";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(e, kOp));
  const int64_t n = e->n, nblocks = (n + kBlock - 1) / kBlock;
  if (n == 0) return ATH_OK;
  const int dt = e->dtype;
  if (e->op == ATH_EW_CONVERT && dt == e->dtype_out) {
    if (e->out != e->a) std::memcpy(e->out, e->a, static_cast<size_t>(n) * ath_dtype_size(dt));
    return ATH_OK;
  }
  parallel_for(nblocks, grain_for(kBlock * 4), [&](int64_t b0, int64_t b1, int) {
    float x[kBlock], y[kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      switch (e->op) {
        case ATH_EW_ADD:
        case ATH_EW_MUL:
          load_row(e->a, dt, off, len, x);
          load_row(e->b, dt, off, len, y);
          if (e->op == ATH_EW_ADD) {
            for (int64_t i = 0; i < len; ++i) x[i] += y[i];
          } else {
            for (int64_t i = 0; i < len; ++i) x[i] *= y[i];
          }
          store_row(e->out, dt, off, len, x);
          break;
        case ATH_EW_SCALE:
          load_row(e->a, dt, off, len, x);
          for (int64_t i = 0; i < len; ++i) x[i] *= e->alpha;
          store_row(e->out, dt, off, len, x);
          break;
        case ATH_EW_AXPY:
          load_row(e->a, dt, off, len, x);
          load_row(e->out, dt, off, len, y);
          for (int64_t i = 0; i < len; ++i) y[i] += e->alpha * x[i];
          store_row(e->out, dt, off, len, y);
          break;
        case ATH_EW_FILL:
          for (int64_t i = 0; i < len; ++i) x[i] = e->alpha;
          store_row(e->out, dt, off, len, x);
          break;
        default: {  // CONVERT between different dtypes
          if (dt == ATH_I32) {
            const int32_t* s = static_cast<const int32_t*>(e->a) + off;
            for (int64_t i = 0; i < len; ++i) x[i] = static_cast<float>(s[i]);
          } else {
            load_row(e->a, dt, off, len, x);
          }
          if (e->dtype_out == ATH_I32) {
            int32_t* d = static_cast<int32_t*>(e->out) + off;
            for (int64_t i = 0; i < len; ++i) d[i] = f32_to_i32(x[i]);
          } else {
            store_row(e->out, e->dtype_out, off, len, x);
          }
          break;
        }
      }
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

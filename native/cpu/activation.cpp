// ath_cpu_activation_fwd / ath_cpu_activation_bwd: elementwise activations on the CPU, n contiguous elements of
// dtype F32/BF16/F16, computed in F32 and rounded once on store.
//   GELU (tanh):  out = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//                 dx  = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)), t = tanh(u)
//   SiLU:         out = x s,  s = 1 / (1 + exp(-x));   dx = dout * s (1 + x (1 - s))
//   SwiGLU:       out = silu(x) y (x the gate, y the up projection);
//                 dx = dout * y * s (1 + x (1 - s)),  dy = dout * silu(x)
// GELU's tanh (as sigmoid(2u)) and the sigmoid use a polynomial exp (about 1e-7 absolute error) instead of libm. Blocks of
// 1024 elements are converted to F32 and computed by AVX-512 / AVX2 kernels (activation_avx*.cpp,
// per the active ISA) or by the 4-lane baseline code below.
// The backward pass writes dx (and dy) from dout and the forward inputs. Outputs may alias inputs:
// each block of elements is loaded completely before it is stored.
// gemm_gelu_epilogue: the same GELU blocks applied to a GEMM's output (ath_cpu_gemm's epilogue).
#include <cmath>

#include "cpu_common.h"
#include "rowops_impl.h"

namespace ath::cpu {
namespace {

constexpr int64_t kBlock = 1024;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;

// 4-lane helpers on exp4 (cpu_common.h): no libm calls, so the loops stay vectorized.
inline v4f sigmoid4(v4f x) { return 1.0f / (1.0f + exp4(-x)); }
// GELU via g = sigmoid(2u) = 0.5 (1 + tanh(u)) and 1 - g = e g, e = exp(-2u) (clamped to stay
// finite): 1 - tanh(u)^2 = 4 g (1 - g) keeps its relative precision where tanh(u) is near +-1.
inline void gelu_g4(v4f u, v4f* g, v4f* one_minus_g) {
  const v4f m2u = -2.0f * u;
  const v4f e = exp4(m2u < 88.0f ? m2u : v4f{88.0f, 88.0f, 88.0f, 88.0f});
  *g = 1.0f / (1.0f + e);
  *one_minus_g = e * *g;
}
inline v4f gelu_u(v4f v) { return kSqrt2OverPi * (v + kGeluC * v * v * v); }

// Zeroes buf[len, round_up(len, 4)) so that whole 4-lane vectors can be processed.
inline int64_t pad4(int64_t len, float* a, float* b, float* c) {
  const int64_t n4 = (len + 3) & ~int64_t{3};
  for (int64_t i = len; i < n4; ++i) a[i] = b[i] = c[i] = 0.0f;
  return n4;
}

// Baseline (scalar ISA) block kernels: x[0, len) = act(x); backward x = dx, y = dy (SwiGLU).
void fwd_base(int act, float* x, float* y, int64_t len) {
  const int64_t n4 = pad4(len, x, y, y);
  for (int64_t i = 0; i < n4; i += 4) {
    const v4f v = v4_load(x + i);
    v4f r;
    if (act == ATH_ACT_GELU_TANH) {
      v4f g, omg;
      gelu_g4(gelu_u(v), &g, &omg);
      r = v * g;
    } else if (act == ATH_ACT_SILU) {
      r = v * sigmoid4(v);
    } else {
      r = v * sigmoid4(v) * v4_load(y + i);
    }
    v4_store(x + i, r);
  }
}

void bwd_base(int act, float* x, float* y, float* g, int64_t len) {
  const int64_t n4 = pad4(len, x, y, g);
  for (int64_t i = 0; i < n4; i += 4) {
    const v4f v = v4_load(x + i), d = v4_load(g + i);
    if (act == ATH_ACT_GELU_TANH) {
      v4f g, omg;
      gelu_g4(gelu_u(v), &g, &omg);
      const v4f du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * v * v);
      v4_store(x + i, d * (g + 2.0f * v * g * omg * du));  // 0.5 (1 + t) + 0.5 v (1 - t^2) du
    } else if (act == ATH_ACT_SILU) {
      const v4f s = sigmoid4(v);
      v4_store(x + i, d * s * (1.0f + v * (1.0f - s)));
    } else {
      const v4f s = sigmoid4(v), yv = v4_load(y + i);
      v4_store(x + i, d * yv * s * (1.0f + v * (1.0f - s)));
      v4_store(y + i, d * v * s);  // dy = dout * silu(x)
    }
  }
}

ath_status validate(const ath_activation_args* a, bool backward, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (a->act != ATH_ACT_GELU_TANH && a->act != ATH_ACT_SILU && a->act != ATH_ACT_SWIGLU)
    return fail(ATH_ERR_INVALID, "%s: act=%d must be 0 (GELU_TANH), 1 (SILU) or 2 (SWIGLU)", op, a->act);
  if (a->n == 0) return ATH_OK;
  const bool swiglu = a->act == ATH_ACT_SWIGLU;
  if (a->x == nullptr) return fail(ATH_ERR_INVALID, "%s: x is null", op);
  if (swiglu && a->y == nullptr) return fail(ATH_ERR_INVALID, "%s: y is null (required by SWIGLU)", op);
  if (!backward && a->out == nullptr) return fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (backward && (a->dout == nullptr || a->dx == nullptr))
    return fail(ATH_ERR_INVALID, "%s: dout (%p) and dx (%p) must not be null", op, a->dout, a->dx);
  if (backward && swiglu && a->dy == nullptr) return fail(ATH_ERR_INVALID, "%s: dy is null (required by SWIGLU)", op);
  return ATH_OK;
}

// x[0, len) = act(x) (y: SwiGLU's up projection) by the kernels of the active ISA.
void fwd_block(Isa isa, int act, float* x, float* y, int64_t len) {
  if (isa == Isa::kAvx512) {
    act_fwd_block_avx512(act, x, y, len);
  } else if (isa == Isa::kAvx2) {
    act_fwd_block_avx2(act, x, y, len);
  } else {
    fwd_base(act, x, y, len);
  }
}

// Backward from g = dout: x[0, len) = dx (and y = dy for SwiGLU).
void bwd_block(Isa isa, int act, float* x, float* y, float* g, int64_t len) {
  if (isa == Isa::kAvx512) {
    act_bwd_block_avx512(act, x, y, g, len);
  } else if (isa == Isa::kAvx2) {
    act_bwd_block_avx2(act, x, y, g, len);
  } else {
    bwd_base(act, x, y, g, len);
  }
}

}  // namespace

// The GEMM's GELU epilogues (ath_cpu_gemm, gemm.cpp), applied to C after the GEMM has stored it.
// Rows r in [0, rows) of `len` elements start at (r / rows_per_batch) * batch_stride +
// (r % rows_per_batch) * ld in c and aux. Each row is cut into blocks of kBlock elements from its
// start and every block computed as ath_cpu_activation_fwd/bwd computes its block, so a
// contiguous C passed as one row gives the bits of the activation op over the same elements.
void gemm_gelu_epilogue(bool backward, int dtype, void* c, void* aux, int64_t rows, int64_t len,
                        int64_t rows_per_batch, int64_t ld, int64_t batch_stride) {
  const int64_t per_row = (len + kBlock - 1) / kBlock;
  const Isa isa = active_isa();
  parallel_for(rows * per_row, grain_for(kBlock * 8), [&](int64_t b0, int64_t b1, int) {
    float x[kBlock], y[kBlock], g[kBlock];
    for (int64_t item = b0; item < b1; ++item) {
      const int64_t r = item / per_row, blk = item % per_row;
      const int64_t off = (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * ld + blk * kBlock;
      const int64_t n = std::min(kBlock, len - blk * kBlock);
      if (!backward) {
        load_row(c, dtype, off, n, x);  // the rounded pre-activation
        if (aux != nullptr) store_row(aux, dtype, off, n, x);  // exact: x holds dtype values
        fwd_block(isa, ATH_ACT_GELU_TANH, x, y, n);
      } else {
        load_row(aux, dtype, off, n, x);
        load_row(c, dtype, off, n, g);
        bwd_block(isa, ATH_ACT_GELU_TANH, x, y, g, n);
      }
      store_row(c, dtype, off, n, x);
    }
  });
}

}  // namespace ath::cpu

extern "C" ath_status ath_cpu_activation_fwd(const ath_activation_args* a) {
  static const char* kOp = "ath_cpu_activation_fwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, false, kOp));
  const int64_t n = a->n, nblocks = (n + kBlock - 1) / kBlock;
  const Isa isa = active_isa();
  parallel_for(nblocks, grain_for(kBlock * 8), [&](int64_t b0, int64_t b1, int) {
    float x[kBlock], y[kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      load_row(a->x, a->dtype, off, len, x);
      if (a->act == ATH_ACT_SWIGLU) load_row(a->y, a->dtype, off, len, y);
      fwd_block(isa, a->act, x, y, len);
      store_row(a->out, a->dtype, off, len, x);
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_activation_bwd(const ath_activation_args* a) {
  static const char* kOp = "ath_cpu_activation_bwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, true, kOp));
  const int64_t n = a->n, nblocks = (n + kBlock - 1) / kBlock;
  const Isa isa = active_isa();
  parallel_for(nblocks, grain_for(kBlock * 8), [&](int64_t b0, int64_t b1, int) {
    float x[kBlock], y[kBlock], g[kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      load_row(a->x, a->dtype, off, len, x);
      load_row(a->dout, a->dtype, off, len, g);
      if (a->act == ATH_ACT_SWIGLU) load_row(a->y, a->dtype, off, len, y);
      bwd_block(isa, a->act, x, y, g, len);
      store_row(a->dx, a->dtype, off, len, x);
      if (a->act == ATH_ACT_SWIGLU) store_row(a->dy, a->dtype, off, len, y);
    }
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

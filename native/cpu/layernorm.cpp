// ath_cpu_layernorm_fwd / ath_cpu_layernorm_bwd: LayerNorm over the last dimension on the CPU.
// x, out, dout, dx: (rows, cols) contiguous, dtype F32/BF16/F16; weight, bias: (cols) dtype (bias
// may be NULL); mean, rstd: (rows) F32; dweight, dbias: (cols) F32, ACCUMULATED (dbias may be NULL).
//   forward:  mean = sum(x) / cols, var = sum((x - mean)^2) / cols (two passes, biased),
//             rstd = 1 / sqrt(var + eps), out = (x - mean) * rstd * weight + bias
//   backward: xhat = (x - mean) * rstd, g = dout * weight,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat))          (written)
//             dweight += S_w, dbias += S_b, with S_w = sum_rows dout * xhat and S_b = sum_rows dout
//             formed first (per chunk of 32 rows in row order, chunks combined in chunk order) and
//             added once: dweight ends as H + S_w for the H it held.
// Shared with RMSNorm in norm_impl.h (row kernels, validation, the row-chunk reduction); results
// are bit-identical for every thread count.
#include "norm_impl.h"

extern "C" ath_status ath_cpu_layernorm_fwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_layernorm_fwd";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cpu::norm_validate<true>(a, false, kOp));
  ath::cpu::norm_fwd<true>(a);
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_layernorm_bwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_layernorm_bwd";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cpu::norm_validate<true>(a, true, kOp));
  ath::cpu::norm_bwd<true>(a);
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

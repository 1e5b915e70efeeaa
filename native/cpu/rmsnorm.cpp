// ath_cpu_rmsnorm_fwd / ath_cpu_rmsnorm_bwd: RMSNorm over the last dimension on the CPU.
// x, out, dout, dx: (rows, cols) contiguous, dtype F32/BF16/F16; weight: (cols) dtype (bias is
// ignored); rstd: (rows) F32 (mean is not used); dweight: (cols) F32, ACCUMULATED.
//   forward:  rstd = 1 / sqrt(sum(x^2) / cols + eps),  out = x * rstd * weight
//   backward: xhat = x * rstd, g = dout * weight,
//             dx = rstd * (g - xhat * mean(g * xhat))      (written)
//             dweight += S_w, S_w = sum_rows dout * xhat formed first (per chunk of 32 rows in row
//             order, chunks combined in chunk order) and added once: dweight ends as H + S_w.
// Shared with LayerNorm in norm_impl.h (row kernels, validation, the row-chunk reduction); results
// are bit-identical for every thread count.
#include "norm_impl.h"

extern "C" ath_status ath_cpu_rmsnorm_fwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_rmsnorm_fwd";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cpu::norm_validate<false>(a, false, kOp));
  ath::cpu::norm_fwd<false>(a);
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_rmsnorm_bwd(const ath_norm_args* a) {
  static const char* kOp = "ath_cpu_rmsnorm_bwd";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cpu::norm_validate<false>(a, true, kOp));
  ath::cpu::norm_bwd<false>(a);
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

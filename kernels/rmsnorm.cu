// RMSNorm forward and backward (ath_cuda_rmsnorm_fwd / ath_cuda_rmsnorm_bwd).
//
// Layout: x, out, dout, dx (rows, cols) contiguous, dtype F32/BF16/F16; weight (cols) dtype (bias is
// ignored); rstd (rows) F32 (may be NULL in forward; mean is neither written nor read); dweight
// (cols) F32, ACCUMULATED (dbias is ignored). All arithmetic in F32.
//   forward:  rstd = 1/sqrt(sum(x^2)/cols + eps), out = x * rstd * weight
//   backward: xhat = x * rstd, g = dout * weight,
//             dx = rstd * (g - xhat * mean(g * xhat))      (written)
//             dweight += sum_rows dout * xhat              (accumulated)
// The kernels, shared with LayerNorm, and their determinism and scratch contract are in norm.cuh
// (backward scratch: chunks * cols * 4 bytes).
#include "norm.cuh"

namespace ath::cuda {
namespace {

ath_status validate(const char* op, const ath_norm_args* a, bool backward) {
  return norm::validate<false>(op, a, backward);
}

template <typename T>
ath_status launch_fwd(const ath_norm_args* a, const OpContext& oc) {
  return norm::launch_fwd<T, false>("ath_cuda_rmsnorm_fwd", a, oc);
}

template <typename T>
ath_status launch_bwd(const ath_norm_args* a, const OpContext& oc) {
  return norm::launch_bwd<T, false>("ath_cuda_rmsnorm_bwd", a, oc);
}

}  // namespace
}  // namespace ath::cuda

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_rmsnorm_fwd, ath_norm_args, false, launch_fwd)

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_rmsnorm_bwd, ath_norm_args, true, launch_bwd)

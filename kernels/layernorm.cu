// LayerNorm forward and backward (ath_cuda_layernorm_fwd / ath_cuda_layernorm_bwd).
//
// Layout: x, out, dout, dx (rows, cols) contiguous, dtype F32/BF16/F16; weight, bias (cols) dtype
// (bias may be NULL); mean, rstd (rows) F32 (may be NULL in forward); dweight, dbias (cols) F32,
// ACCUMULATED (dbias may be NULL). All arithmetic in F32.
//   forward:  mean = sum(x)/cols, var = sum((x - mean)^2)/cols (two passes, biased),
//             rstd = 1/sqrt(var + eps), out = (x - mean) * rstd * weight + bias
//   backward: xhat = (x - mean) * rstd, g = dout * weight,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat))          (written)
//             dweight += sum_rows dout * xhat, dbias += sum_rows dout    (accumulated)
// The kernels, shared with RMSNorm, and their determinism and scratch contract are in norm.cuh
// (backward scratch: chunks * (dbias ? 2 : 1) * cols * 4 bytes).
#include "norm.cuh"

namespace ath::cuda {
namespace {

ath_status validate(const char* op, const ath_norm_args* a, bool backward) {
  return norm::validate<true>(op, a, backward);
}

template <typename T>
ath_status launch_fwd(const ath_norm_args* a, const OpContext& oc) {
  return norm::launch_fwd<T, true>("ath_cuda_layernorm_fwd", a, oc);
}

template <typename T>
ath_status launch_bwd(const ath_norm_args* a, const OpContext& oc) {
  return norm::launch_bwd<T, true>("ath_cuda_layernorm_bwd", a, oc);
}

}  // namespace
}  // namespace ath::cuda

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_layernorm_fwd, ath_norm_args, false, launch_fwd)

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_layernorm_bwd, ath_norm_args, true, launch_bwd)

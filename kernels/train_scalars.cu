// The scalars of a training step formed on the device (ath_cuda_train_scalars), so the step needs no
// host synchronisation until it ends. CUDA twin of native/cpu/train_scalars.cpp, same bits: one
// thread adds in double in index order (double add, divide and sqrt are correctly rounded on both).
// LOSS_MEAN: x (n) F32 per-row losses, targets (n) I32 (< 0 ignored); out[0] = (float)(sum of the
//            kept x[i] / their count), 0 when none is kept.
// CLIP_SCALE: x (n) F32 sums-of-squares partials; out[0] = norm = (float) sqrt(sum x[j]);
//            out[1] = min(1, max_norm / (norm + 1e-6)) in double rounded once (1 when max_norm <= 0),
//            NaN when the norm or one of losses (n_losses) is not finite.
// Kernel: a single thread (n is a micro-batch's rows, or the gradient's chunk count: the serial sum
// costs tens of microseconds at most and keeps the host loop's order).
#include <cmath>

#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

__global__ void loss_mean_kernel(int64_t n, const float* __restrict__ x, const int32_t* __restrict__ targets,
                                 float* __restrict__ out) {
  double sum = 0;
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] < 0) continue;
    sum += x[i];
    ++kept;
  }
  out[0] = kept == 0 ? 0.0f : static_cast<float>(sum / static_cast<double>(kept));
}

__global__ void clip_scale_kernel(int64_t n, const float* __restrict__ x, int64_t n_losses,
                                  const float* __restrict__ losses, float max_norm, float* __restrict__ out) {
  double total = 0;
  for (int64_t j = 0; j < n; ++j) total += x[j];
  const float norm = static_cast<float>(sqrt(total));
  bool finite = isfinite(norm);
  for (int64_t i = 0; i < n_losses; ++i) finite = finite && isfinite(losses[i]);
  out[0] = norm;
  out[1] = !finite ? __int_as_float(0x7fc00000)
           : max_norm > 0 ? static_cast<float>(fmin(1.0, max_norm / (static_cast<double>(norm) + 1e-6)))
                          : 1.0f;
}

ath_status validate(const char* op, const ath_train_scalars_args* a) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->op != ATH_TS_LOSS_MEAN && a->op != ATH_TS_CLIP_SCALE)
    return ::ath::fail(ATH_ERR_INVALID, "%s: op=%d must be LOSS_MEAN (0) or CLIP_SCALE (1)", op, a->op);
  if (a->n < 0 || a->n_losses < 0)
    return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld and n_losses=%lld must be >= 0", op, (long long)a->n,
                       (long long)a->n_losses);
  if (a->out == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (a->n > 0 && a->x == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: x is null with n=%lld", op, (long long)a->n);
  if (a->op == ATH_TS_LOSS_MEAN && a->n > 0 && a->targets == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: targets is null with n=%lld", op, (long long)a->n);
  if (a->op == ATH_TS_CLIP_SCALE && a->n_losses > 0 && a->losses == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: losses is null with n_losses=%lld", op, (long long)a->n_losses);
  if (!std::isfinite(a->max_norm))
    return ::ath::fail(ATH_ERR_INVALID, "%s: max_norm=%g must be finite", op, (double)a->max_norm);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_train_scalars(const ath_train_scalars_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_train_scalars";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, a));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  if (a->op == ATH_TS_LOSS_MEAN) {
    ath::cuda::loss_mean_kernel<<<1, 1, 0, oc.stream>>>(a->n, a->x, a->targets, a->out);
  } else {
    ath::cuda::clip_scale_kernel<<<1, 1, 0, oc.stream>>>(a->n, a->x, a->n_losses, a->losses, a->max_norm, a->out);
  }
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
  ATH_GUARD_END(op)
}

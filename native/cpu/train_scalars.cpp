// ath_cpu_train_scalars: the scalars of a training step formed where the step runs (CPU twin of
// kernels/train_scalars.cu; the same sequential double sums, so the same bits).
// LOSS_MEAN: x (n) F32 per-row losses, targets (n) I32 (< 0 ignored); out[0] = (float)(sum of the
//            kept x[i] in double, in index order, / their count), 0 when none is kept.
// CLIP_SCALE: x (n) F32 sums-of-squares partials; out[0] = norm = (float) sqrt(sum x[j] in double,
//            in index order); out[1] = clip factor min(1, max_norm / (norm + 1e-6)) in double rounded
//            once (1 when max_norm <= 0), NaN when the norm or one of losses (n_losses) is not finite.
#include <cmath>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

ath_status validate(const ath_train_scalars_args* a, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->op != ATH_TS_LOSS_MEAN && a->op != ATH_TS_CLIP_SCALE)
    return fail(ATH_ERR_INVALID, "%s: op=%d must be LOSS_MEAN (0) or CLIP_SCALE (1)", op, a->op);
  if (a->n < 0 || a->n_losses < 0)
    return fail(ATH_ERR_INVALID, "%s: n=%lld and n_losses=%lld must be >= 0", op, (long long)a->n,
                (long long)a->n_losses);
  if (a->out == nullptr) return fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (a->n > 0 && a->x == nullptr) return fail(ATH_ERR_INVALID, "%s: x is null with n=%lld", op, (long long)a->n);
  if (a->op == ATH_TS_LOSS_MEAN && a->n > 0 && a->targets == nullptr)
    return fail(ATH_ERR_INVALID, "%s: targets is null with n=%lld", op, (long long)a->n);
  if (a->op == ATH_TS_CLIP_SCALE && a->n_losses > 0 && a->losses == nullptr)
    return fail(ATH_ERR_INVALID, "%s: losses is null with n_losses=%lld", op, (long long)a->n_losses);
  if (!std::isfinite(a->max_norm)) return fail(ATH_ERR_INVALID, "%s: max_norm=%g must be finite", op, (double)a->max_norm);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_train_scalars(const ath_train_scalars_args* a) {
  static const char* kOp = "ath_cpu_train_scalars";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cpu::validate(a, kOp));
  if (a->op == ATH_TS_LOSS_MEAN) {
    double sum = 0;
    int64_t kept = 0;
    for (int64_t i = 0; i < a->n; ++i) {
      if (a->targets[i] < 0) continue;
      sum += a->x[i];
      ++kept;
    }
    a->out[0] = kept == 0 ? 0.0f : static_cast<float>(sum / static_cast<double>(kept));
    return ATH_OK;
  }
  double total = 0;
  for (int64_t j = 0; j < a->n; ++j) total += a->x[j];
  const float norm = static_cast<float>(std::sqrt(total));
  bool finite = std::isfinite(norm);
  for (int64_t i = 0; i < a->n_losses; ++i) finite = finite && std::isfinite(a->losses[i]);
  a->out[0] = norm;
  a->out[1] = !finite ? NAN
              : a->max_norm > 0 ? static_cast<float>(std::fmin(1.0, a->max_norm / (static_cast<double>(norm) + 1e-6)))
                                : 1.0f;
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

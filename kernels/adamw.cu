// Fused AdamW step (ath_cuda_adamw).
//
// Layout: params, grads, m, v (n) F32 contiguous; params_lowp NULL or (n) BF16/F16.
// Per element (bias corrections bc1 = 1 - beta1^step, bc2 = 1 - beta2^step computed on the host
// in double and rounded to F32 once):
//   g = grads * grad_scale
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   params -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + weight_decay * params)
//   params_lowp = round_to_nearest_even(params)   (when given)
// params, m, v are updated in place; grads is only read.
// grad_scale_ptr (device memory), when given, is read by every thread in place of grad_scale; when
// it is not finite every thread returns at once and nothing is written (a step refused on the device).
// Kernel: grid-stride loop with 64-bit indices over float4 vectors when every pointer is 16-byte
// aligned (params_lowp 8-byte), scalar tail.
#include <cmath>

#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kThreads = 256;

struct AdamHyper {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, grad_scale, bc1, bc2;
};

template <int V, typename TL>
__device__ __forceinline__ void adam_apply(int64_t i, float* params, const float* grads, float* m, float* v,
                                           TL* lowp, const AdamHyper& h) {
  float p[V], g[V], mm[V], vv[V];
  load_vec<float, V>(params + i, p);
  load_vec<float, V>(grads + i, g);
  load_vec<float, V>(m + i, mm);
  load_vec<float, V>(v + i, vv);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    const float gk = g[k] * h.grad_scale;
    mm[k] = h.beta1 * mm[k] + h.one_minus_beta1 * gk;
    vv[k] = h.beta2 * vv[k] + h.one_minus_beta2 * gk * gk;
    const float mhat = mm[k] / h.bc1;
    const float vhat = vv[k] / h.bc2;
    p[k] -= h.lr * (mhat / (sqrtf(vhat) + h.eps) + h.weight_decay * p[k]);
  }
  store_vec<float, V>(params + i, p);
  store_vec<float, V>(m + i, mm);
  store_vec<float, V>(v + i, vv);
  if (lowp != nullptr) store_vec<TL, V>(lowp + i, p);
}

// TL: the low-precision copy's type (float when there is none; lowp is then null).
template <int V, typename TL>
__global__ void adamw_kernel(int64_t n, float* __restrict__ params, const float* __restrict__ grads,
                             float* __restrict__ m, float* __restrict__ v, TL* __restrict__ lowp, AdamHyper h,
                             const float* __restrict__ scale_ptr) {
  if (scale_ptr != nullptr) {
    h.grad_scale = *scale_ptr;
    if (!isfinite(h.grad_scale)) return;
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t j = tid; j < nv; j += stride) adam_apply<V, TL>(j * V, params, grads, m, v, lowp, h);
  if (V > 1) {
    for (int64_t i = nv * V + tid; i < n; i += stride) adam_apply<1, TL>(i, params, grads, m, v, lowp, h);
  }
}

template <typename TL>
ath_status launch(const ath_adamw_args* a, const AdamHyper& h, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = 4;
  TL* lowp = static_cast<TL*>(a->params_lowp);
  const bool vec = is_aligned(a->params, 16) && is_aligned(a->grads, 16) && is_aligned(a->m, 16) &&
                   is_aligned(a->v, 16) && is_aligned(lowp, V * sizeof(TL));
  if (vec) {
    const unsigned grid = grid_for(a->n / V + 1, kThreads, props.sm_count, 8);
    adamw_kernel<V, TL><<<grid, kThreads, 0, stream>>>(a->n, a->params, a->grads, a->m, a->v, lowp, h,
                                                        a->grad_scale_ptr);
  } else {
    const unsigned grid = grid_for(a->n, kThreads, props.sm_count, 8);
    adamw_kernel<1, TL><<<grid, kThreads, 0, stream>>>(a->n, a->params, a->grads, a->m, a->v, lowp, h,
                                                        a->grad_scale_ptr);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_adamw");
  return ATH_OK;
}

ath_status validate(const char* op, const ath_adamw_args* a) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->step < 1) return ::ath::fail(ATH_ERR_INVALID, "%s: step=%lld must be >= 1", op, (long long)a->step);
  if (!(a->beta1 >= 0.f && a->beta1 < 1.f))
    return ::ath::fail(ATH_ERR_INVALID, "%s: beta1=%g must be in [0, 1)", op, (double)a->beta1);
  if (!(a->beta2 >= 0.f && a->beta2 < 1.f))
    return ::ath::fail(ATH_ERR_INVALID, "%s: beta2=%g must be in [0, 1)", op, (double)a->beta2);
  if (!(a->eps >= 0.f) || !std::isfinite(a->eps))
    return ::ath::fail(ATH_ERR_INVALID, "%s: eps=%g must be finite and >= 0", op, (double)a->eps);
  if (!std::isfinite(a->lr) || !std::isfinite(a->weight_decay) || !std::isfinite(a->grad_scale))
    return ::ath::fail(ATH_ERR_INVALID, "%s: lr=%g, weight_decay=%g and grad_scale=%g must be finite", op,
                       (double)a->lr, (double)a->weight_decay, (double)a->grad_scale);
  if (a->params_lowp != nullptr && a->dtype_lowp != ATH_BF16 && a->dtype_lowp != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype_lowp %d (%s) must be BF16 or F16 when params_lowp is given", op,
                       a->dtype_lowp, dtype_name(a->dtype_lowp));
  if (a->n == 0) return ATH_OK;
  if (a->params == nullptr || a->grads == nullptr || a->m == nullptr || a->v == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: params (%p), grads (%p), m (%p) and v (%p) must not be null", op,
                       static_cast<void*>(a->params), static_cast<const void*>(a->grads), static_cast<void*>(a->m),
                       static_cast<void*>(a->v));
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_adamw(const ath_adamw_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_adamw";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, a));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (a->n == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  ath::cuda::AdamHyper h;
  h.lr = a->lr;
  h.beta1 = a->beta1;
  h.beta2 = a->beta2;
  h.one_minus_beta1 = 1.0f - a->beta1;
  h.one_minus_beta2 = 1.0f - a->beta2;
  h.eps = a->eps;
  h.weight_decay = a->weight_decay;
  h.grad_scale = a->grad_scale;
  h.bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a->beta1), static_cast<double>(a->step)));
  h.bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(a->beta2), static_cast<double>(a->step)));
  if (a->params_lowp == nullptr) return ath::cuda::launch<float>(a, h, oc.stream, oc.props);
  if (a->dtype_lowp == ATH_BF16) return ath::cuda::launch<__nv_bfloat16>(a, h, oc.stream, oc.props);
  return ath::cuda::launch<__half>(a, h, oc.stream, oc.props);
  ATH_GUARD_END(op)
}

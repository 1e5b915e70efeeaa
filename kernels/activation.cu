// Elementwise activations, forward and backward (ath_cuda_activation_fwd / ath_cuda_activation_bwd).
//
// Layout: x, y, out, dout, dx, dy (n) contiguous, one dtype F32/BF16/F16; arithmetic in F32.
//   GELU (tanh): out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
//                dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)), t = tanh(u)
//   SiLU:        out = x s, s = 1 / (1 + exp(-x));  dx = dout * s (1 + x (1 - s))
//   SwiGLU:      out = silu(x) y (x the gate, y the up projection);
//                dx = dout * y * s (1 + x (1 - s)), dy = dout * silu(x)
// Backward WRITES dx (and dy for SwiGLU). Outputs may alias inputs elementwise (out == x etc.).
// Grid-stride loops with 64-bit indices; 16-byte vectors when every pointer is 16-byte aligned
// (the n % V tail elements are handled by scalar code in the same kernel).
#include <cmath>

#include "common.cuh"
#include "gelu.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kThreads = 256;
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float silu_fwd(float x) { return x * sigmoid(x); }
__device__ __forceinline__ float silu_grad(float x) {
  const float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

// Applies the op to V elements starting at element i (vector path) or one element (V == 1).
template <typename T, int V, int ACT, bool BWD>
__device__ __forceinline__ void act_apply(int64_t i, const T* x, const T* y, T* out, const T* dout, T* dx, T* dy) {
  float xv[V], yv[V], gv[V], o[V], o2[V];
  load_vec<T, V>(x + i, xv);
  if (ACT == ATH_ACT_SWIGLU) load_vec<T, V>(y + i, yv);
  if (BWD) load_vec<T, V>(dout + i, gv);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    if (!BWD) {
      if (ACT == ATH_ACT_GELU_TANH) o[k] = gelu_fwd(xv[k]);
      else if (ACT == ATH_ACT_SILU) o[k] = silu_fwd(xv[k]);
      else o[k] = silu_fwd(xv[k]) * yv[k];
    } else {
      if (ACT == ATH_ACT_GELU_TANH) {
        o[k] = gv[k] * gelu_grad(xv[k]);
      } else if (ACT == ATH_ACT_SILU) {
        o[k] = gv[k] * silu_grad(xv[k]);
      } else {
        o[k] = gv[k] * yv[k] * silu_grad(xv[k]);
        o2[k] = gv[k] * silu_fwd(xv[k]);
      }
    }
  }
  if (!BWD) {
    store_vec<T, V>(out + i, o);
  } else {
    store_vec<T, V>(dx + i, o);
    if (ACT == ATH_ACT_SWIGLU) store_vec<T, V>(dy + i, o2);
  }
}

// No __restrict__: outputs may alias inputs elementwise.
template <typename T, int V, int ACT, bool BWD>
__global__ void act_kernel(int64_t n, const T* x, const T* y, T* out, const T* dout, T* dx, T* dy) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t j = tid; j < nv; j += stride) act_apply<T, V, ACT, BWD>(j * V, x, y, out, dout, dx, dy);
  if (V > 1) {
    for (int64_t i = nv * V + tid; i < n; i += stride) act_apply<T, 1, ACT, BWD>(i, x, y, out, dout, dx, dy);
  }
}

template <typename T, int ACT, bool BWD>
ath_status launch(const ath_activation_args* a, cudaStream_t stream, const DeviceProps& props, const char* op) {
  constexpr int V = kVec16<T>;
  const bool vec = is_aligned(a->x, 16) && is_aligned(a->y, 16) && is_aligned(a->out, 16) &&
                   is_aligned(a->dout, 16) && is_aligned(a->dx, 16) && is_aligned(a->dy, 16);
  const T* x = static_cast<const T*>(a->x);
  const T* y = static_cast<const T*>(a->y);
  T* out = static_cast<T*>(a->out);
  const T* dout = static_cast<const T*>(a->dout);
  T* dx = static_cast<T*>(a->dx);
  T* dy = static_cast<T*>(a->dy);
  if (vec) {
    const unsigned grid = grid_for(a->n / V + 1, kThreads, props.sm_count, 8);
    act_kernel<T, V, ACT, BWD><<<grid, kThreads, 0, stream>>>(a->n, x, y, out, dout, dx, dy);
  } else {
    const unsigned grid = grid_for(a->n, kThreads, props.sm_count, 8);
    act_kernel<T, 1, ACT, BWD><<<grid, kThreads, 0, stream>>>(a->n, x, y, out, dout, dx, dy);
  }
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
}

template <typename T, bool BWD>
ath_status launch_act(const ath_activation_args* a, cudaStream_t stream, const DeviceProps& props, const char* op) {
  switch (a->act) {
    case ATH_ACT_GELU_TANH: return launch<T, ATH_ACT_GELU_TANH, BWD>(a, stream, props, op);
    case ATH_ACT_SILU: return launch<T, ATH_ACT_SILU, BWD>(a, stream, props, op);
    default: return launch<T, ATH_ACT_SWIGLU, BWD>(a, stream, props, op);
  }
}

ath_status validate(const char* op, const ath_activation_args* a, bool backward) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, a->dtype,
                       dtype_name(a->dtype));
  if (a->act != ATH_ACT_GELU_TANH && a->act != ATH_ACT_SILU && a->act != ATH_ACT_SWIGLU)
    return ::ath::fail(ATH_ERR_INVALID, "%s: act %d must be 0 (GELU_TANH), 1 (SILU) or 2 (SWIGLU)", op, a->act);
  if (a->n == 0) return ATH_OK;
  const bool swiglu = a->act == ATH_ACT_SWIGLU;
  if (a->x == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: x is null", op);
  if (swiglu && a->y == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: y is null (required by SWIGLU)", op);
  if (!backward) {
    if (a->out == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: out is null", op);
  } else {
    if (a->dout == nullptr || a->dx == nullptr)
      return ::ath::fail(ATH_ERR_INVALID, "%s: dout (%p) and dx (%p) must not be null", op, a->dout, a->dx);
    if (swiglu && a->dy == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: dy is null (required by SWIGLU)", op);
  }
  return ATH_OK;
}

template <bool BWD>
ath_status run(const char* op, const ath_activation_args* a, const ath_cuda_ctx* ctx) {
  ATH_TRY(validate(op, a, BWD));
  ATH_TRY(check_context(op, ctx));
  if (a->n == 0) return ATH_OK;
  OpContext oc;
  ATH_TRY(enter(op, ctx, &oc));
  // Pointers the op does not use are ignored (nulled so they do not affect the alignment test).
  ath_activation_args b = *a;
  if (b.act != ATH_ACT_SWIGLU) { b.y = nullptr; b.dy = nullptr; }
  if (BWD) b.out = nullptr; else { b.dout = nullptr; b.dx = nullptr; b.dy = nullptr; }
  ATH_DISPATCH_FLOAT(b.dtype, T, op, return launch_act<T, BWD>(&b, oc.stream, oc.props, op));
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_activation_fwd(const ath_activation_args* a, const ath_cuda_ctx* ctx) {
  ATH_GUARD_BEGIN
  return ath::cuda::run<false>("ath_cuda_activation_fwd", a, ctx);
  ATH_GUARD_END("ath_cuda_activation_fwd")
}

extern "C" ath_status ath_cuda_activation_bwd(const ath_activation_args* a, const ath_cuda_ctx* ctx) {
  ATH_GUARD_BEGIN
  return ath::cuda::run<true>("ath_cuda_activation_bwd", a, ctx);
  ATH_GUARD_END("ath_cuda_activation_bwd")
}

// Counter-based random fill (ath_cuda_rand), identical stream to ath_cpu_rand.
//
// out: (n) contiguous, dtype F32/BF16/F16. Element i uses w = philox4x32_10(i + offset, seed)
// (native/common/philox.h) and nothing else, so values do not depend on the launch shape:
//   UNIFORM: out = a + (b - a) * philox_uniform01(w[0])                 in [a, b)
//   NORMAL:  out = a + b * sqrtf(-2 logf(philox_uniform01_open0(w[0]))) * cosf(2 pi philox_uniform01(w[1]))
// (mean a, std b), evaluated left to right in F32 with every product and sum rounded separately
// (no FMA contraction), then rounded to the dtype. UNIFORM is bit-identical to the CPU; NORMAL
// may differ in the last bits (device logf/cosf vs libm).
// Kernel: grid-stride over vectors of V elements (one 16-byte store each when out is aligned).
#include <cmath>

#include "common.cuh"
#include "common/philox.h"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kTwoPi = 6.28318530717958647692f;

__device__ __forceinline__ float rand_value(uint64_t counter, uint64_t seed, int dist, float a, float b) {
  const ath::Philox4 w = ath::philox4x32_10(counter, seed);
  if (dist == ATH_RAND_UNIFORM) {
    return __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), ath::philox_uniform01(w.v[0])));
  }
  const float r = sqrtf(__fmul_rn(-2.0f, logf(ath::philox_uniform01_open0(w.v[0]))));
  const float c = cosf(__fmul_rn(kTwoPi, ath::philox_uniform01(w.v[1])));
  return __fadd_rn(a, __fmul_rn(__fmul_rn(b, r), c));
}

template <typename T, int V>
__global__ void rand_kernel(int64_t n, T* __restrict__ out, uint64_t seed, uint64_t offset, int dist, float a,
                            float b) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t j = tid; j < nv; j += stride) {
    float v[V];
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = rand_value(static_cast<uint64_t>(j * V + k) + offset, seed, dist, a, b);
    store_vec<T, V>(out + j * V, v);
  }
  if (V > 1) {
    for (int64_t i = nv * V + tid; i < n; i += stride)
      out[i] = from_f32<T>(rand_value(static_cast<uint64_t>(i) + offset, seed, dist, a, b));
  }
}

template <typename T>
ath_status launch(const ath_rand_args* r, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = kVec16<T>;
  T* out = static_cast<T*>(r->out);
  if (is_aligned(out, 16)) {
    const unsigned grid = grid_for(r->n / V + 1, kThreads, props.sm_count, 8);
    rand_kernel<T, V><<<grid, kThreads, 0, stream>>>(r->n, out, r->seed, r->offset, r->dist, r->a, r->b);
  } else {
    const unsigned grid = grid_for(r->n, kThreads, props.sm_count, 8);
    rand_kernel<T, 1><<<grid, kThreads, 0, stream>>>(r->n, out, r->seed, r->offset, r->dist, r->a, r->b);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_rand");
  return ATH_OK;
}

ath_status validate(const char* op, const ath_rand_args* r) {
  if (r == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (r->n < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)r->n);
  if (r->dtype != ATH_F32 && r->dtype != ATH_BF16 && r->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, r->dtype,
                       dtype_name(r->dtype));
  if (r->dist != ATH_RAND_UNIFORM && r->dist != ATH_RAND_NORMAL)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dist %d must be 0 (UNIFORM) or 1 (NORMAL)", op, r->dist);
  if (!std::isfinite(r->a) || !std::isfinite(r->b))
    return ::ath::fail(ATH_ERR_INVALID, "%s: a=%g and b=%g must be finite", op, (double)r->a, (double)r->b);
  if (r->n > 0 && r->out == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: out is null", op);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_rand(const ath_rand_args* r, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_rand";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, r));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (r->n == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  ATH_DISPATCH_FLOAT(r->dtype, T, op, return ath::cuda::launch<T>(r, oc.stream, oc.props));
  ATH_GUARD_END(op)
  return ATH_OK;
}

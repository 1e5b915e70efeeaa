// Fused softmax + cross-entropy, forward and backward (ath_cuda_cross_entropy_fwd / ath_cuda_cross_entropy_bwd).
//
// Layout: logits, dlogits (rows, vocab) with row stride ld >= vocab, dtype F32/BF16/F16; targets
// (rows) I32; losses, lse, dlosses (rows) F32. Arithmetic in F32.
//   forward:  lse[r] = log(sum_j exp(logits[r, j])), losses[r] = lse[r] - logits[r, target[r]]
//   backward: dlogits[r, j] = dlosses[r] * (exp(logits[r, j] - lse[r]) - [j == target[r]])  (written)
// A target < 0 is ignored: loss 0, gradient row 0 (lse is still written). A target >= vocab is
// treated the same way (the CUDA op cannot report it synchronously; see athanor.h). Columns
// [vocab, ld) of dlogits are not touched. dlogits may alias logits (each element is read and then
// written by the same thread).
// Kernels: one block per row (grid-stride over rows). Forward keeps a per-thread online (max, sum)
// pair over 16-byte vector loads and combines the pairs warp- then block-wide in a fixed order
// (deterministic). Rows are vectorized when logits/dlogits are 16-byte aligned and ld is a multiple
// of the vector width; the vocab % V tail is scalar.
#include <cmath>

#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kMaxThreads = 512;

// exp(m - M) for M = max(m, ...), with the convention that equal values (both -inf) give 1.
__device__ __forceinline__ float rescale(float m, float M) { return m == M ? 1.0f : expf(m - M); }

// Adds one logit to a running (max, sum-of-exp relative to max) pair. NaN propagates into s.
__device__ __forceinline__ void online_add(float v, float& m, float& s) {
  if (v > m) {
    s = s * rescale(m, v) + 1.0f;
    m = v;
  } else {
    s += rescale(v, m);
  }
}

__device__ __forceinline__ void combine(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  s = s * rescale(m, M) + s2 * rescale(m2, M);
  m = M;
}

template <typename T, int V>
__global__ void xent_fwd_kernel(const T* __restrict__ logits,      // (rows, ld)
                                const int32_t* __restrict__ targets,  // (rows)
                                float* __restrict__ losses,        // (rows)
                                float* __restrict__ lse_out,       // (rows) or null
                                int64_t rows, int64_t vocab, int64_t ld) {
  __shared__ float sm_m[32], sm_s[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int64_t nvec = vocab / V;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = logits + r * ld;
    float m = -INFINITY, s = 0.f;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V];
      load_vec<T, V>(row + j * V, v);
#pragma unroll
      for (int k = 0; k < V; ++k) online_add(v[k], m, s);
    }
    for (int64_t i = nvec * V + threadIdx.x; i < vocab; i += blockDim.x) online_add(to_f32<T>(row[i]), m, s);
    // Warp then block combine, fixed order.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
      const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
      combine(m, s, m2, s2);
    }
    __syncthreads();  // previous row's readers of sm_m/sm_s are done
    if (lane == 0) {
      sm_m[warp] = m;
      sm_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
      m = lane < nwarps ? sm_m[lane] : -INFINITY;
      s = lane < nwarps ? sm_s[lane] : 0.f;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        combine(m, s, m2, s2);
      }
      if (lane == 0) {
        const float lse = m + logf(s);
        if (lse_out != nullptr) lse_out[r] = lse;
        const int32_t t = targets[r];
        losses[r] = (t >= 0 && t < vocab) ? lse - to_f32<T>(row[t]) : 0.f;
      }
    }
  }
}

template <typename T, int V>
__device__ __forceinline__ void xent_grad(const T* in, T* out, int64_t j0, float lse, float dl, int64_t t) {
  float v[V];
  load_vec<T, V>(in + j0, v);
#pragma unroll
  for (int k = 0; k < V; ++k) v[k] = dl * (expf(v[k] - lse) - (j0 + k == t ? 1.0f : 0.0f));
  store_vec<T, V>(out + j0, v);
}

// No __restrict__ on logits/dlogits: they may alias.
template <typename T, int V>
__global__ void xent_bwd_kernel(const T* logits,                      // (rows, ld)
                                const int32_t* __restrict__ targets,  // (rows)
                                const float* __restrict__ lse,        // (rows)
                                const float* __restrict__ dlosses,    // (rows)
                                T* dlogits,                           // (rows, ld)
                                int64_t rows, int64_t vocab, int64_t ld) {
  const int64_t nvec = vocab / V;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int32_t t = targets[r];
    const T* in = logits + r * ld;
    T* out = dlogits + r * ld;
    if (t < 0 || t >= vocab) {
      const float z[V] = {};
      for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) store_vec<T, V>(out + j * V, z);
      for (int64_t i = nvec * V + threadIdx.x; i < vocab; i += blockDim.x) out[i] = from_f32<T>(0.f);
      continue;
    }
    const float l = lse[r], dl = dlosses[r];
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) xent_grad<T, V>(in, out, j * V, l, dl, t);
    for (int64_t i = nvec * V + threadIdx.x; i < vocab; i += blockDim.x) xent_grad<T, 1>(in, out, i, l, dl, t);
  }
}

int threads_for(int64_t nvec) {
  int64_t t = (nvec + 31) / 32 * 32;
  if (t > kMaxThreads) t = kMaxThreads;
  if (t < 32) t = 32;
  return static_cast<int>(t);
}

ath_status validate(const char* op, const ath_cross_entropy_args* a, bool backward) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->rows < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: rows=%lld must be >= 0", op, (long long)a->rows);
  if (a->vocab < 1 || a->vocab > INT32_MAX)
    return ::ath::fail(ATH_ERR_INVALID, "%s: vocab=%lld must be in [1, %d]", op, (long long)a->vocab, INT32_MAX);
  if (a->ld < a->vocab)
    return ::ath::fail(ATH_ERR_INVALID, "%s: ld=%lld must be >= vocab=%lld", op, (long long)a->ld, (long long)a->vocab);
  if (a->rows > 0 && a->rows - 1 > (INT64_MAX - a->vocab) / a->ld)
    return ::ath::fail(ATH_ERR_INVALID, "%s: rows=%lld x ld=%lld overflows", op, (long long)a->rows, (long long)a->ld);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, a->dtype,
                       dtype_name(a->dtype));
  if (a->rows == 0) return ATH_OK;
  if (a->logits == nullptr || a->targets == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: logits (%p) and targets (%p) must not be null", op, a->logits,
                       static_cast<const void*>(a->targets));
  if (!backward) {
    if (a->losses == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: losses is null", op);
  } else {
    if (a->lse == nullptr || a->dlosses == nullptr || a->dlogits == nullptr)
      return ::ath::fail(ATH_ERR_INVALID, "%s: lse (%p), dlosses (%p) and dlogits (%p) must not be null", op,
                         static_cast<void*>(a->lse), static_cast<const void*>(a->dlosses), a->dlogits);
  }
  return ATH_OK;
}

template <typename T>
ath_status launch_fwd(const ath_cross_entropy_args* a, const OpContext& oc) {
  const cudaStream_t stream = oc.stream;
  const DeviceProps& props = oc.props;
  constexpr int V = kVec16<T>;
  const bool vec = a->ld % V == 0 && is_aligned(a->logits, 16);
  const T* logits = static_cast<const T*>(a->logits);
  const int threads = threads_for(vec ? a->vocab / V : a->vocab);
  const unsigned grid = grid_for(a->rows, 1, props.sm_count, 8 * (kMaxThreads / threads));
  if (vec) {
    xent_fwd_kernel<T, V><<<grid, threads, 0, stream>>>(logits, a->targets, a->losses, a->lse, a->rows, a->vocab, a->ld);
  } else {
    xent_fwd_kernel<T, 1><<<grid, threads, 0, stream>>>(logits, a->targets, a->losses, a->lse, a->rows, a->vocab, a->ld);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_cross_entropy_fwd");
  return ATH_OK;
}

template <typename T>
ath_status launch_bwd(const ath_cross_entropy_args* a, const OpContext& oc) {
  const cudaStream_t stream = oc.stream;
  const DeviceProps& props = oc.props;
  constexpr int V = kVec16<T>;
  const bool vec = a->ld % V == 0 && is_aligned(a->logits, 16) && is_aligned(a->dlogits, 16);
  const T* logits = static_cast<const T*>(a->logits);
  T* dlogits = static_cast<T*>(a->dlogits);
  const int threads = threads_for(vec ? a->vocab / V : a->vocab);
  const unsigned grid = grid_for(a->rows, 1, props.sm_count, 8 * (kMaxThreads / threads));
  if (vec) {
    xent_bwd_kernel<T, V><<<grid, threads, 0, stream>>>(logits, a->targets, a->lse, a->dlosses, dlogits, a->rows,
                                                        a->vocab, a->ld);
  } else {
    xent_bwd_kernel<T, 1><<<grid, threads, 0, stream>>>(logits, a->targets, a->lse, a->dlosses, dlogits, a->rows,
                                                        a->vocab, a->ld);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_cross_entropy_bwd");
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_cross_entropy_fwd, ath_cross_entropy_args, false, launch_fwd)

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_cross_entropy_bwd, ath_cross_entropy_args, true, launch_bwd)

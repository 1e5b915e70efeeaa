// Shared CUDA helpers for every kernel file: error checks that turn a CUDA failure into an
// ath_status carrying file, line, op and the CUDA error string; ceil-div; dtype load/store helpers;
// warp and block reductions. Kernels include this; launchers return ath_status and never throw.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "athanor/athanor.h"
#include "../native/common/status.h"

// Checks a CUDA runtime call; on failure returns ATH_ERR_CUDA with file:line, the call and the
// CUDA error string. A failed call also leaves its error as the thread's "last error"; it is
// cleared here so that a later ATH_CUDA_CHECK_LAUNCH does not blame an innocent launch for it
// (sticky errors stay sticky: they come back from the next call anyway).
#define ATH_CUDA_CHECK(call)                                                                  \
  do {                                                                                        \
    cudaError_t ath_cuda_err_ = (call);                                                       \
    if (ath_cuda_err_ != cudaSuccess) {                                                       \
      (void)cudaGetLastError();                                                               \
      return ::ath::fail(ATH_ERR_CUDA, "%s:%d: %s failed: %s (%s)", __FILE__, __LINE__, #call, \
                         cudaGetErrorString(ath_cuda_err_), cudaGetErrorName(ath_cuda_err_)); \
    }                                                                                         \
  } while (0)

// After a kernel launch: reports launch-configuration errors for the named op.
#define ATH_CUDA_CHECK_LAUNCH(op)                                                             \
  do {                                                                                        \
    cudaError_t ath_cuda_err_ = cudaGetLastError();                                           \
    if (ath_cuda_err_ != cudaSuccess) {                                                       \
      return ::ath::fail(ATH_ERR_CUDA, "%s:%d: launch of %s failed: %s (%s)", __FILE__, __LINE__, \
                         op, cudaGetErrorString(ath_cuda_err_), cudaGetErrorName(ath_cuda_err_)); \
    }                                                                                         \
  } while (0)

namespace ath::cuda {

template <typename T>
__host__ __device__ constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

// Element load/store as float for the three floating dtypes.
template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Fixed reduction order: deterministic. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

// Dispatches a templated launcher on the runtime floating dtype:
//   ATH_DISPATCH_FLOAT(dtype, T, "op", { launch<T>(...); })
#define ATH_DISPATCH_FLOAT(dtype, T, op, ...)                                                  \
  switch (dtype) {                                                                            \
    case ATH_F32: { using T = float; __VA_ARGS__; } break;                                    \
    case ATH_BF16: { using T = __nv_bfloat16; __VA_ARGS__; } break;                           \
    case ATH_F16: { using T = __half; __VA_ARGS__; } break;                                   \
    default: return ::ath::fail(ATH_ERR_INVALID, "%s: unsupported dtype %d", op, (int)(dtype)); \
  }

}  // namespace ath::cuda

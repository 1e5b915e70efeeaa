// Helpers shared by the launchers in kernels/*.cu of the non-GEMM ops: 16-byte vector packs
// (load/store V elements as F32), alignment tests that pick the vector or scalar kernel, grid
// sizing for grid-stride loops, a stream-ordered workspace (cudaMallocAsync) with RAII, and the
// deterministic column-partials reduction used by norm backward and reduce(SUM_ROWS).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <exception>
#include <new>

#include "common.cuh"
#include "cuda/runtime.h"

namespace ath::cuda {

// V consecutive elements of T, aligned to their total size (16 bytes for the vector kernels), so a
// load or store of a Pack is one wide memory instruction.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Elements per 16-byte vector: 4 for F32, 8 for BF16/F16.
template <typename T>
constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[V]) {
  const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = to_f32<T>(pk.v[k]);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[V]) {
  Pack<T, V> pk;
#pragma unroll
  for (int k = 0; k < V; ++k) pk.v[k] = from_f32<T>(in[k]);
  *reinterpret_cast<Pack<T, V>*>(p) = pk;
}

inline bool is_aligned(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

// Blocks for a grid-stride loop over `work` items of `per_block` each: enough to fill the device
// (blocks_per_sm waves) but never more than the work needs; at least 1.
inline unsigned grid_for(int64_t work, int64_t per_block, int sm_count, int blocks_per_sm = 8) {
  int64_t need = (work + per_block - 1) / per_block;
  int64_t cap = static_cast<int64_t>(sm_count > 0 ? sm_count : 1) * blocks_per_sm;
  int64_t g = need < cap ? need : cap;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

inline const char* dtype_name(int dtype) {
  switch (dtype) {
    case ATH_F32: return "F32";
    case ATH_BF16: return "BF16";
    case ATH_F16: return "F16";
    case ATH_I32: return "I32";
    default: return "unknown";
  }
}

// Stream-ordered scratch memory: allocated with cudaMallocAsync on the op's stream and released
// with cudaFreeAsync on the same stream when the launcher returns (the kernels that use it are
// already enqueued before it, so the release is ordered after them).
class StreamWorkspace {
 public:
  StreamWorkspace() = default;
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  ~StreamWorkspace() {
    if (p_ != nullptr && cudaFreeAsync(p_, stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  ath_status alloc(const char* op, size_t bytes, cudaStream_t stream) {
    stream_ = stream;
    cudaError_t e = cudaMallocAsync(&p_, bytes, stream);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      p_ = nullptr;
      return ::ath::fail(ATH_ERR_OOM, "%s: could not allocate a %zu-byte device workspace (cudaMallocAsync)", op, bytes);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      p_ = nullptr;
      return ::ath::fail(ATH_ERR_CUDA, "%s:%d: %s: cudaMallocAsync(%zu bytes) failed: %s (%s)", __FILE__, __LINE__, op,
                         bytes, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return ATH_OK;
  }
  template <typename U>
  U* as() const { return static_cast<U*>(p_); }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace ath::cuda

// Defines the C ABI entry `name` of a row-wise op (norms, cross-entropy): validate the arguments
// (`backward` selects the backward checks), fetch the current device's properties, return early on
// zero rows, and dispatch `launcher<T>(args, stream, props)` on the runtime dtype. The including
// file provides validate(op, args, backward) and the launcher templates in namespace ath::cuda.
#define ATH_CUDA_ROW_OP_ENTRY(name, args_t, backward, launcher)                                        \
  extern "C" ath_status name(const args_t* a, ath_stream s) {                                           \
    static const char* op = #name;                                                                       \
    ATH_GUARD_BEGIN                                                                                      \
    ATH_TRY(ath::cuda::validate(op, a, backward));                                                       \
    ath::cuda::DeviceProps props;                                                                        \
    ATH_TRY(ath::cuda::current_device_props(op, &props));                                                \
    if (a->rows == 0) return ATH_OK;                                                                     \
    ATH_DISPATCH_FLOAT(a->dtype, T, op,                                                                  \
                       return ath::cuda::launcher<T>(a, static_cast<cudaStream_t>(s), props));          \
    ATH_GUARD_END(op)                                                                                    \
    return ATH_OK;                                                                                       \
  }

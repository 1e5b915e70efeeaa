// Helpers shared by the launchers in kernels/*.cu of the non-GEMM ops: 16-byte vector packs
// (load/store V elements as F32), alignment tests that pick the vector or scalar kernel, grid
// sizing for grid-stride loops, and the C ABI entry of the row-wise ops (norms, cross-entropy).
// Scratch memory comes from the op's execution context (context.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <exception>
#include <new>

#include "common.cuh"
#include "context.cuh"

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

}  // namespace ath::cuda

// Defines the C ABI entry `name` of a row-wise op (norms, cross-entropy): validate the arguments
// (`backward` selects the backward checks) and the execution context, return early on zero rows,
// enter the context, and dispatch `launcher<T>(args, op_context)` on the runtime dtype. The
// including file provides validate(op, args, backward) and the launcher templates in namespace
// ath::cuda.
#define ATH_CUDA_ROW_OP_ENTRY(name, args_t, backward, launcher)                                        \
  extern "C" ath_status name(const args_t* a, const ath_cuda_ctx* ctx) {                                \
    static const char* op = #name;                                                                       \
    ATH_GUARD_BEGIN                                                                                      \
    ATH_TRY(ath::cuda::validate(op, a, backward));                                                       \
    ATH_TRY(ath::cuda::check_context(op, ctx));                                                          \
    if (a->rows == 0) return ATH_OK;                                                                     \
    ath::cuda::OpContext oc;                                                                             \
    ATH_TRY(ath::cuda::enter(op, ctx, &oc));                                                             \
    ATH_DISPATCH_FLOAT(a->dtype, T, op, return ath::cuda::launcher<T>(a, oc));                           \
    ATH_GUARD_END(op)                                                                                    \
    return ATH_OK;                                                                                       \
  }

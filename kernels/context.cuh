// The execution context of one CUDA op call as the launchers see it (athanor.h, ath_cuda_ctx):
//   OpContext  the checked context: its stream (never the legacy default stream), the properties
//              of its device (made current by enter), and its scratch arena;
//   Scratch    a bump sub-allocator over the arena for the op's temporaries;
//   hopper_switch()  whether ATHANOR_CUDA_HOPPER=1 lets dispatchers pick the sm_90a kernels.
// Every op entry point follows the same order: validate its arguments, check_context, return early
// when there is nothing to do, enter (CUDA calls start here), take() every scratch buffer, fits(),
// and only then enqueue work. An arena too small for the op therefore returns ATH_ERR_SCRATCH
// (ath_scratch_needed() = the bytes to provide) with nothing enqueued, and the scratch layout,
// hence every result, never depends on the arena's size.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "cuda/runtime.h"

namespace ath::cuda {

// Alignment of every scratch slice (cudaMalloc's alignment; enough for any vector access).
constexpr size_t kScratchAlign = 256;

// Bump sub-allocator over a scratch arena (base, bytes). take<T>(count) returns the next slice of
// count elements at a kScratchAlign-aligned address, in call order, without touching memory (the
// pointer is only meaningful once fits() has returned ATH_OK). Slices are laid out from the first
// aligned address of the arena; an arena from cudaMalloc is aligned, so the op needs exactly the
// sum of its slices rounded up to kScratchAlign each.
class Scratch {
 public:
  Scratch(void* base, size_t bytes)
      : base_(reinterpret_cast<uintptr_t>(base)),
        bytes_(bytes),
        pad_((kScratchAlign - reinterpret_cast<uintptr_t>(base) % kScratchAlign) % kScratchAlign),
        used_(pad_) {}

  template <typename T>
  T* take(size_t count) {
    const size_t off = used_;
    size_t bytes = 0;
    if (__builtin_mul_overflow(count, sizeof(T), &bytes) ||
        __builtin_add_overflow(bytes, kScratchAlign - 1, &bytes) ||
        __builtin_add_overflow(off, bytes / kScratchAlign * kScratchAlign, &used_)) {
      used_ = SIZE_MAX;  // saturates: fits() then fails, reporting SIZE_MAX bytes
    }
    return reinterpret_cast<T*>(base_ + (off == SIZE_MAX ? 0 : off));
  }

  // ATH_OK when every slice taken so far lies inside the arena; else ATH_ERR_SCRATCH through
  // ath::need_scratch with the bytes an arena needs for this op: the sum of the slices, plus
  // kScratchAlign - 1 when this arena's base is not aligned (enough for any base).
  ath_status fits(const char* op) const {
    if (used_ <= bytes_) return ATH_OK;
    size_t need = used_ == SIZE_MAX ? SIZE_MAX : used_ - pad_;
    if (pad_ != 0 && need <= SIZE_MAX - (kScratchAlign - 1)) need += kScratchAlign - 1;
    return ::ath::need_scratch(op, need, bytes_);
  }

 private:
  uintptr_t base_;
  size_t bytes_;
  size_t pad_;   // bytes from base_ to the first aligned address
  size_t used_;  // end offset of the last slice, from base_
};

struct OpContext {
  cudaStream_t stream = nullptr;
  DeviceProps props;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;

  // A fresh sub-allocator over the whole arena (each op call starts at the arena's beginning).
  Scratch arena() const { return Scratch(scratch, scratch_bytes); }
};

// enter_context (native/cuda/runtime.cu: checks ctx, requires CUDA, makes ctx->device current)
// and the OpContext of the call.
inline ath_status enter(const char* op, const ath_cuda_ctx* ctx, OpContext* out) {
  ATH_TRY(enter_context(op, ctx, &out->props));
  out->stream = static_cast<cudaStream_t>(ctx->stream);
  out->scratch = ctx->scratch;
  out->scratch_bytes = ctx->scratch_bytes;
  return ATH_OK;
}

// The Hopper switch: ATHANOR_CUDA_HOPPER=1 in the environment (read at every call) lets the
// dispatchers choose the sm_90a kernels (gemm.cu: the wgmma GEMM; attention_fwd.cu: the wgmma
// attention forward) on a device of compute capability 9.0. Off by default until a GPU check has
// passed their tests on an H200.
inline bool hopper_switch() {
  const char* v = std::getenv("ATHANOR_CUDA_HOPPER");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace ath::cuda

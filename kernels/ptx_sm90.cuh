// Thin wrappers over the Hopper (sm_90a) PTX instructions of the wgmma kernels (gemm_wgmma.cu, attention_fwd_wgmma.cu):
// mbarriers (arrive, expected transaction bytes, parity wait), the bulk tensor copy engine (TMA:
// cp.async.bulk.tensor, completing on an mbarrier), warpgroup register reallocation (setmaxnreg),
// and the warpgroup matrix product wgmma.mma_async (A from shared memory or, for attention's
// O += P V (attention_fwd_wgmma.cu), from registers) with its fence / commit / wait.
//
// Everything here compiles for any target, but the instructions exist only on sm_90a: callers
// guard their kernel bodies with ATH_SM90A (below) and never launch them elsewhere.
//
// wgmma.mma_async.m64nNk16 (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply"): one
// warpgroup (4 consecutive warps, the first a multiple of 4) computes D (64, N) += A (64, 16) @
// B (16, N), both operands read from shared memory through 64-bit matrix descriptors. The F32
// accumulator fragment: thread t of the warpgroup, warp w = t / 32, lane l = 4 g + q, holds for
// every 8-column block j the four values
//   d[4j + 0] = D[16w + g][8j + 2q]       d[4j + 1] = D[16w + g][8j + 2q + 1]
//   d[4j + 2] = D[16w + g + 8][8j + 2q]   d[4j + 3] = D[16w + g + 8][8j + 2q + 1]
// TRANS_A / TRANS_B = 0: the operand is K-major in shared memory (A rows of K, B columns of K);
// 1: MN-major (16-bit types only).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ATH_SM90A 1
#else
#define ATH_SM90A 0
#endif

namespace ath::cuda::sm90 {

// ---------------------------------------------------------------- mbarrier
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Makes initialized barriers visible to the async proxy (the copy engine) and the other threads.
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` more transaction bytes for the current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Waits until the phase with the given parity (0 or 1) has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// ---------------------------------------------------------------- bulk tensor copies (TMA)
__device__ __forceinline__ void tma_prefetch_desc(const void* tmap) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(tmap)) : "memory");
}

// Copies the box at element coordinates (c0 innermost, c1, c2) of the tensor map into shared
// memory at `dst`; its bytes complete on the mbarrier `bar`. Elements outside the tensor are
// written as zeros (and still count as transaction bytes).
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* tmap, uint32_t bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(tmap)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// The same for a 4-d tensor map (c0 innermost .. c3 outermost).
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void* tmap, uint32_t bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];\n"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(tmap)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// Copies a box from shared memory at `src` to the tensor at (c0, c1, c2); elements outside the
// tensor are not written. Completion is tracked by bulk groups (bulk_commit / bulk_wait*).
__device__ __forceinline__ void tma_store_3d(const void* tmap, uint32_t src, int c0, int c1, int c2) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n"
               ::"l"(reinterpret_cast<uint64_t>(tmap)), "r"(src), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Waits until at most N committed bulk groups still read their shared-memory source.
template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
// Waits until at most N committed bulk groups are still in flight (writes done).
template <int N>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---------------------------------------------------------------- shared memory and barriers
__device__ __forceinline__ void st_shared_b32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
// Orders this thread's earlier ordinary shared-memory stores before later reads by the async proxy
// (the copy engine, wgmma).
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Arrives at barrier `id` without waiting (the producer side of a bar.sync by other threads).
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---------------------------------------------------------------- registers
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ---------------------------------------------------------------- wgmma
// Shared-memory matrix descriptor (sm_90): start address, leading and stride byte offsets (all
// in 16-byte units), base offset 0 (tiles are 1024-byte aligned), and the swizzle mode in bits
// 62-63 (1 = 128-byte swizzle).
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>((lbo_bytes & 0x3FFFF) >> 4) << 16;
  d |= static_cast<uint64_t>((sbo_bytes & 0x3FFFF) >> 4) << 32;
  d |= static_cast<uint64_t>(1) << 62;
  return d;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accumulator reads/writes across an asynchronous wgmma.
template <int R>
__device__ __forceinline__ void fence_regs(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Keeps registers that an asynchronous wgmma reads (the A fragments of the register form) alive
// and unmoved until after its wgmma_wait.
template <int R>
__device__ __forceinline__ void fence_regs(uint32_t (&a)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+r"(a[i])::"memory");
}

// D (64, N) (+)= A (64, 16) @ B (16, N); accumulate == 0 ignores D's old value. The last
// argument picks the input type (bf16 or f16) by overload. One macro per N (128, 256) writes the
// wrapper (the operand list of 64 or 128 accumulators), instantiated once per input type.
// Eight accumulator operands d[i .. i + 7].
#define ATH_WGMMA_ACC8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define ATH_WGMMA_M64N128K16(CTYPE, PTXTYPE) \
  template <int TRANS_A, int TRANS_B> \
  __device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate, CTYPE*) { \
    asm volatile( \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTXTYPE "." PTXTYPE " {" \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15," \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," \
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47," \
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
        "}, %64, %65, p, 1, 1, %67, %68;\n}\n" \
        : ATH_WGMMA_ACC8(0), ATH_WGMMA_ACC8(8), ATH_WGMMA_ACC8(16), ATH_WGMMA_ACC8(24), ATH_WGMMA_ACC8(32), ATH_WGMMA_ACC8(40), ATH_WGMMA_ACC8(48), ATH_WGMMA_ACC8(56) \
        : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_A), "n"(TRANS_B)); \
  }
ATH_WGMMA_M64N128K16(__nv_bfloat16, "bf16")
ATH_WGMMA_M64N128K16(__half, "f16")
#undef ATH_WGMMA_M64N128K16

#define ATH_WGMMA_M64N256K16(CTYPE, PTXTYPE) \
  template <int TRANS_A, int TRANS_B> \
  __device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b, int accumulate, CTYPE*) { \
    asm volatile( \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n256k16.f32." PTXTYPE "." PTXTYPE " {" \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15," \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," \
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47," \
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63," \
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79," \
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95," \
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111," \
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
        "}, %128, %129, p, 1, 1, %131, %132;\n}\n" \
        : ATH_WGMMA_ACC8(0), ATH_WGMMA_ACC8(8), ATH_WGMMA_ACC8(16), ATH_WGMMA_ACC8(24), ATH_WGMMA_ACC8(32), ATH_WGMMA_ACC8(40), ATH_WGMMA_ACC8(48), ATH_WGMMA_ACC8(56), ATH_WGMMA_ACC8(64), ATH_WGMMA_ACC8(72), ATH_WGMMA_ACC8(80), ATH_WGMMA_ACC8(88), ATH_WGMMA_ACC8(96), ATH_WGMMA_ACC8(104), ATH_WGMMA_ACC8(112), ATH_WGMMA_ACC8(120) \
        : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_A), "n"(TRANS_B)); \
  }
ATH_WGMMA_M64N256K16(__nv_bfloat16, "bf16")
ATH_WGMMA_M64N256K16(__half, "f16")
#undef ATH_WGMMA_M64N256K16

// Register-A form: D (64, N) (+)= A (64, 16) @ B (16, N) with A in registers, B from shared
// memory. A's fragment per thread (warp w of the warpgroup, lane 4 g + q), as 16-bit pairs low
// column first: a[0] = A[16w + g][2q, 2q + 1], a[1] = A[16w + g + 8][2q, 2q + 1],
// a[2] = A[16w + g][8 + 2q, 9 + 2q], a[3] = A[16w + g + 8][8 + 2q, 9 + 2q]: exactly the F32
// accumulator pairs d[4j .. 4j + 3] (j = 2k16, 2k16 + 1) of an earlier wgmma over the same rows, once
// packed, which is how attention's P goes from S = Q K^T into O += P V without shared memory.
// TRANS_B as above.
#define ATH_WGMMA_M64N64K16_RS(CTYPE, PTXTYPE) \
  template <int TRANS_B> \
  __device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int accumulate, CTYPE*) { \
    asm volatile( \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTXTYPE "." PTXTYPE " {" \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15," \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
        "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n" \
        : ATH_WGMMA_ACC8(0), ATH_WGMMA_ACC8(8), ATH_WGMMA_ACC8(16), ATH_WGMMA_ACC8(24) \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(TRANS_B)); \
  }
ATH_WGMMA_M64N64K16_RS(__nv_bfloat16, "bf16")
ATH_WGMMA_M64N64K16_RS(__half, "f16")
#undef ATH_WGMMA_M64N64K16_RS

#define ATH_WGMMA_M64N128K16_RS(CTYPE, PTXTYPE) \
  template <int TRANS_B> \
  __device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int accumulate, CTYPE*) { \
    asm volatile( \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTXTYPE "." PTXTYPE " {" \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15," \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," \
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47," \
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
        "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n" \
        : ATH_WGMMA_ACC8(0), ATH_WGMMA_ACC8(8), ATH_WGMMA_ACC8(16), ATH_WGMMA_ACC8(24), ATH_WGMMA_ACC8(32), ATH_WGMMA_ACC8(40), ATH_WGMMA_ACC8(48), ATH_WGMMA_ACC8(56) \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(TRANS_B)); \
  }
ATH_WGMMA_M64N128K16_RS(__nv_bfloat16, "bf16")
ATH_WGMMA_M64N128K16_RS(__half, "f16")
#undef ATH_WGMMA_M64N128K16_RS

#undef ATH_WGMMA_ACC8
}  // namespace ath::cuda::sm90

// Internal interface between the GEMM entry point (gemm.cu) and its kernels (gemm_mma.cu,
// gemm_wgmma.cu, gemm_f32.cu, gemm_generic.cu, gemm_splitk_reduce.cu). Not part of the C ABI.
//
// Every kernel computes, for each batch index b handled by its launch:
//   C_b (M, N) = alpha * op(A_b) (M, K) @ op(B_b) (K, N) + beta * C_b + bias (N, broadcast over rows)
// with the layouts of ath_gemm_args (row-major, element strides):
//   op(A) = A        stored (M, K), row stride lda     (trans_a == 0, "K-major": K contiguous)
//   op(A) = A^T      A stored (K, M), row stride lda   (trans_a == 1, "M-major": M contiguous)
//   op(B) = B        stored (K, N), row stride ldb     (trans_b == 0, "N-major": N contiguous)
//   op(B) = B^T      B stored (N, K), row stride ldb   (trans_b == 1, "K-major": K contiguous)
// Accumulation is F32; beta == 0 means C is never read; bias (dtype_c) is added after alpha/beta.
// The result is rounded once, to dtype_c, when it is stored; with the GELU epilogues (athanor.h,
// ath_gemm_epilogue) it is rounded to dtype_c, then activated (GELU: aux = the rounded value, C =
// round(gelu(it))) or multiplied by gelu'(aux) (GELU_BACKWARD) in F32, and rounded again: every
// kernel does this through epilogue_finish, element by element, with the activation op's formula.
#pragma once
#include <atomic>
#include <cstddef>

#include "common.cuh"
#include "gelu.cuh"

namespace ath::cuda::gemm {

// Kernel arguments, passed by value. Sizes are validated by gemm.cu to fit in int (M, N, K) and
// every element offset is computed in int64.
struct GemmParams {
  const void* a;     // batch base of A (dtype_ab)
  const void* b;     // batch base of B (dtype_ab)
  void* c;           // batch base of C (dtype_c)
  const void* bias;  // (N) dtype_c or nullptr
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  int64_t batch_base;  // batch index of blockIdx.z == 0 (the z dimension is tiled by 65535)
  int m, n, k;
  int trans_a, trans_b;  // only the generic kernel reads these; the fast kernels are templated
  float alpha, beta;
  int epilogue;  // ath_gemm_epilogue
  void* aux;     // dtype_c, C's ldc and stride_c: GELU writes it (nullptr: not written), GELU_BACKWARD reads it
  // Widest element vector (1, 2 or 4) at which every (row, col) of C with col % c_vec == 0 is
  // aligned for a vector load/store of c_vec elements (depends on c, ldc and stride_c).
  int c_vec;
  // Tiles of the launch's kernel: grid.x = tiles_m * tiles_n (linearized, grouped; see
  // tile_coords), grid.z = batches of this launch.
  int tiles_m, tiles_n;
};

// Maps the linear block index to (tile_m, tile_n) so that consecutive blocks sweep a group of
// kGroupM tile rows column by column: the blocks resident at one time then share both A row panels
// and B column panels in L2 instead of streaming all of B for each row of tiles.
__device__ __forceinline__ void tile_coords(int pid, int tiles_m, int tiles_n, int* tm, int* tn) {
  constexpr int kGroupM = 8;
  const int per_group = kGroupM * tiles_n;
  const int group = pid / per_group;
  const int first_m = group * kGroupM;
  const int group_rows = min(tiles_m - first_m, kGroupM);
  const int in_group = pid - group * per_group;
  *tm = first_m + in_group % group_rows;
  *tn = in_group / group_rows;
}

// Final value of one element of C before rounding: alpha * acc + beta * C_old + bias[col], in
// this order. c_old is only read when beta != 0 (C may hold NaN otherwise).
template <typename TC>
__device__ __forceinline__ float epilogue_value(const TC* c, int64_t idx, int col, float acc, const GemmParams& p) {
  float v = p.alpha * acc;
  if (p.beta != 0.f) v += p.beta * to_f32<TC>(c[idx]);
  if (p.bias != nullptr) v += to_f32<TC>(static_cast<const TC*>(p.bias)[col]);
  return v;
}

// The GELU epilogues on v = epilogue_value(...) of element idx (of this batch's C; aux at the same
// offset from `aux`, the batch's aux base): returns the value to round and store in C, and for
// GELU writes the rounded pre-activation to aux. NONE: v itself.
template <typename TC>
__device__ __forceinline__ float epilogue_finish(float v, TC* aux, int64_t idx, const GemmParams& p) {
  if (p.epilogue == ATH_GEMM_EPI_NONE) return v;
  const float r = to_f32<TC>(from_f32<TC>(v));  // rounded to dtype_c, as a separate GEMM would store it
  if (p.epilogue == ATH_GEMM_EPI_GELU) {
    if (aux != nullptr) aux[idx] = from_f32<TC>(r);
    return gelu_fwd(r);
  }
  return r * gelu_grad(to_f32<TC>(aux[idx]));  // GELU_BACKWARD
}

// The batch's aux base (nullptr when there is none), from the batch's C base.
template <typename TC>
__device__ __forceinline__ TC* aux_of(const TC* c, const GemmParams& p) {
  return p.aux == nullptr ? nullptr : static_cast<TC*>(p.aux) + (c - static_cast<const TC*>(p.c));
}

// epilogue_value, through epilogue_finish, rounded to TC and stored.
template <typename TC>
__device__ __forceinline__ void store_c1(TC* c, int64_t idx, int col, float acc, const GemmParams& p) {
  c[idx] = from_f32<TC>(epilogue_finish<TC>(epilogue_value<TC>(c, idx, col, acc, p), aux_of<TC>(c, p), idx, p));
}

// Raises a kernel's dynamic shared-memory limit above the default 48 KiB, once per device
// (devices 0..63; later ones ask every time).
template <auto Kernel>
ath_status allow_smem(int smem_bytes) {
  static std::atomic<uint64_t> done_mask{0};  // bit d set: done on device d (d < 64)
  int dev = 0;
  ATH_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev < 64 ? (uint64_t{1} << dev) : 0;
  if (bit != 0 && (done_mask.load(std::memory_order_acquire) & bit)) return ATH_OK;
  ATH_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  if (bit != 0) done_mask.fetch_or(bit, std::memory_order_acq_rel);
  return ATH_OK;
}

// ---------------------------------------------------------------- launchers
// Each launches grid.z = nbatch batches starting at p.batch_base (nbatch <= 65535) on `stream`,
// fills p.tiles_m / p.tiles_n itself and returns a status naming the failing CUDA call, if any.

// Tensor-core tile configurations for BF16/F16 (gemm_mma.cu).
enum class MmaTile { k128x256, k128x128, k64x64 };
// Bytes of dynamic shared memory the configuration needs (to check against the device's opt-in
// limit before choosing it).
int mma_smem_bytes(MmaTile tile);
const char* mma_tile_name(MmaTile tile);
// Requirements (checked by the caller): dtype_ab BF16/F16; a, b 16-byte aligned; lda, ldb (and
// stride_a, stride_b when batch > 1) multiples of 8; k > 0.
ath_status launch_gemm_mma(GemmParams p, MmaTile tile, int dtype_ab, int dtype_c, int nbatch,
                           cudaStream_t stream);

// Hopper tensor-core tiles (gemm_wgmma.cu, sm_90a: wgmma fed by TMA, warp-specialized).
enum class WgmmaTile { k128x256, k128x128 };
int wgmma_smem_bytes(WgmmaTile tile);
const char* wgmma_tile_name(WgmmaTile tile);
// Requirements (checked by the caller): compute capability 9.0; dtype_ab BF16/F16; a, b 16-byte
// aligned; lda, ldb multiples of 8; k > 0; with batch > 1, stride_a and stride_b nonzero multiples of 8.
// Split-K (deterministic): with splits > 1 every unit is a (tile, k-slice, batch); slice z of a
// tile sums its k-tiles [z * KT / splits, (z + 1) * KT / splits) (KT = ceil(K / 64), so slices
// differ by at most one k-tile) and writes the raw F32 sum (no alpha, beta, bias) to the workspace;
// gemm_splitk_reduce.cu then adds the slices in the order 0, 1, ..., splits - 1 and applies the
// epilogue. Workspace layout (F32, from the context's scratch arena, reused by every launch of a call):
//   ws (nbatch, splits, M, ldw), ldw = N rounded up to a multiple of 4 (16-byte rows);
//   launch batch b (absolute batch batch_base + b), slice z, element (i, j) at
//   ws[((b * splits + z) * M + i) * ldw + j]. Columns [N, ldw) hold nothing meaningful.
struct SplitK {
  float* ws = nullptr;  // (nbatch, splits, M, ldw) F32; unused when splits == 1
  int splits = 1;
  int64_t ldw = 0;
};
inline int64_t splitk_ldw(int64_t n) { return (n + 3) / 4 * 4; }
// Elements of the workspace for nbatch batches (SIZE_MAX when that overflows size_t).
inline size_t splitk_workspace_elems(int64_t m, int64_t n, int64_t nbatch, int splits) {
  size_t e = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(m), static_cast<size_t>(splitk_ldw(n)), &e) ||
      __builtin_mul_overflow(e, static_cast<size_t>(nbatch), &e) ||
      __builtin_mul_overflow(e, static_cast<size_t>(splits), &e)) {
    return SIZE_MAX;
  }
  return e;
}
// The split count the heuristic picks for a tile (1: no split). Splits only when the launch has
// fewer (tile, batch) units than SMs and K >= 4096; see gemm_wgmma.cu.
int wgmma_split_heuristic(WgmmaTile tile, int64_t m, int64_t n, int64_t k, int64_t batch, int sm_count);
// The split count a call uses: ATHANOR_WGMMA_SPLITK=N when set to a positive integer, else the
// heuristic; clamped to [1, min(KT, 64)] so that every slice has at least one k-tile.
int wgmma_splits(WgmmaTile tile, int64_t m, int64_t n, int64_t k, int64_t batch, int sm_count);
// Persistent: at most sm_count blocks, each walking the (tile, k-slice, batch) units of the launch.
// With split.splits > 1 it also launches the reduction (launch_gemm_splitk_reduce) after the GEMM.
ath_status launch_gemm_wgmma(GemmParams p, WgmmaTile tile, int dtype_ab, int dtype_c, int nbatch, int sm_count,
                             const SplitK& split, cudaStream_t stream);

// Split-K reduction (gemm_splitk_reduce.cu): C_b = epilogue(sum over z in order of ws slice z) for
// the nbatch batches of the launch, with store_c1's operation order. dtype_c F32, BF16 or F16.
ath_status launch_gemm_splitk_reduce(const GemmParams& p, const SplitK& split, int dtype_c, int nbatch,
                                     cudaStream_t stream);

// FP32 SIMT (gemm_f32.cu). Requirements: dtype F32 for A, B, C; a, b 16-byte aligned; lda, ldb
// (and strides when batch > 1) multiples of 4; k > 0.
enum class F32Tile { k128x128, k64x64 };
const char* f32_tile_name(F32Tile tile);
ath_status launch_gemm_f32(GemmParams p, F32Tile tile, int nbatch, cudaStream_t stream);

// Generic fallback (gemm_generic.cu): any valid argument set (any alignment, any ld, k >= 0).
ath_status launch_gemm_generic(GemmParams p, int dtype_ab, int dtype_c, int nbatch, cudaStream_t stream);

}  // namespace ath::cuda::gemm

// BF16/F16 GEMM for Hopper (sm_90a): wgmma tensor-core products fed by the bulk tensor copy engine.
//   C_b (M, N) = alpha * op(A_b) (M, K) @ op(B_b) (K, N) + beta * C_b + bias   (see gemm_internal.cuh)
// F32 accumulation; C in F32 or in the input dtype. All four layouts of A and B: each operand tile
// lands in shared memory in its global layout (K-major or MN-major) and wgmma reads it with the
// matching transpose flag, so no transposition pass is made.
//
// Block tile BM x BN = 128 x 256 or 128 x 128, K stepped by BK = 64 (128 bytes of 16-bit elements:
// one 128-byte swizzle row). Persistent grid: at most one block per SM, each walking the units
// (tile, k-slice, batch) blockIdx.x, + gridDim.x, ... in grouped order (tile_coords); without
// split-K there is one k-slice holding all of K. 384 threads = 3 warpgroups:
//   warpgroup 0, the producer: gives up registers (setmaxnreg.dec) and one thread issues the TMA
//     copies of k-tile after k-tile, unit after unit, into a STAGES-deep ring, each stage completing
//     on its "full" mbarrier (expected transaction bytes = the whole stage; out-of-bounds parts of a
//     box are zero-filled and still counted). It runs ahead into the next unit while the consumers
//     store the last one;
//   warpgroups 1 and 2, the consumers: take registers (setmaxnreg.inc); consumer c owns rows
//     [64c, 64c + 64) of the block tile, waits for "full", issues 4 wgmma m64nBNk16 per k-tile,
//     keeps one group in flight (wait_group 1) and then releases the previous stage on its "empty"
//     mbarrier (one arrival per consumer warp).
// Epilogues: with 16-bit C, beta == 0, C 16-byte aligned and N, ldc multiples of 8, the accumulators
// (alpha and bias applied) go through a 128-byte-swizzled staging area in shared memory and one
// TMA store per 64 x 64 box, which clips at M and N and runs on while the consumer starts the next
// unit; otherwise they are written straight from registers (alpha, beta * C, bias, any ldc).
// GELU epilogue (athanor.h): both apply it per element (epilogue_finish's operations); with the
// TMA store the staging holds gelu(pre-activation) and the pre-activation itself (aux) is written
// from registers in 32-bit pairs: storing aux by TMA too would need a second staging area (one
// pipeline stage less) or a wait for the first store's reads before restaging. GELU_BACKWARD reads
// aux per element and always takes the register epilogue. Split-K applies both in the reduction.
//
// Split-K (deterministic; for skinny products such as weight gradients, M and N small and K long,
// whose few output tiles leave SMs idle): with splits > 1 slice z of a tile covers k-tiles
// [z * KT / splits, (z + 1) * KT / splits) (KT = ceil(K / 64)), its consumers write the raw F32
// sums from registers to a workspace (nbatch, splits, M, ldw) in the context's scratch arena
// (layout: gemm_internal.cuh, SplitK), and gemm_splitk_reduce.cu adds the slices in the order
// 0, 1, ..., splits - 1 and applies the register epilogue (alpha, beta * C, bias, dtype_c). So a
// result does not depend on scheduling; it differs from the unsplit kernel's in the last bits.
// The split count: ATHANOR_WGMMA_SPLITK=N (a positive integer; 1 turns split-K off) forces N for
// every call that takes this kernel, clamped to [1, min(KT, 64)]; unset or "auto", the heuristic
// wgmma_split_heuristic below (only when the launch has fewer (tile, batch) units than SMs and
// K >= 4096; a cost model of waves, slice length and workspace traffic picks 2..8 slices of at
// least 16 k-tiles each). Not yet run on a GPU: its tests and the heuristic's constants wait for one.
//
// Shared-memory layout of one stage (every tile 1024-byte aligned, 128-byte swizzle as TMA writes
// it; "atom" = 8 rows of 128 bytes):
//   A K-major (trans_a = 0): 128 rows (m) of 64 k; consumer c starts at row 64c; descriptor stride
//     byte offset (between 8-row atoms) 1024; the k16 step advances the start by 32 bytes.
//   A M-major (trans_a = 1): two boxes of 64 m x 64 k rows (8 KiB each); consumer c reads box c;
//     stride byte offset (between 8-k atoms) 1024; the k16 step advances by 16 rows = 2048 bytes.
//   B K-major (trans_b = 1): BN rows (n) of 64 k, as A K-major.
//   B N-major (trans_b = 0): BN / 64 boxes of 64 n x 64 k rows; leading byte offset (between the
//     64-column boxes) 8192, stride byte offset 1024, k16 step 2048 bytes.
//
// Requirements (checked by gemm.cu): compute capability 9.0; dtype_ab BF16/F16; a, b 16-byte
// aligned; lda, ldb multiples of 8; with batch > 1, stride_a and stride_b nonzero multiples of 8.
// Tails in M, N and K need nothing: the copy engine zero-fills what lies outside the matrices.
#include <cuda.h>  // CUtensorMap and its enums (the driver function is looked up at run time)

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "gemm_internal.cuh"
#include "ptx.cuh"
#include "ptx_sm90.cuh"
#include "tensor_map.cuh"

namespace ath::cuda::gemm {
namespace {

constexpr int kBM = 128, kBK = 64;
constexpr int kConsumers = 2;                      // consumer warpgroups, 64 rows of the tile each
constexpr int kThreads = 128 * (kConsumers + 1);  // + the producer warpgroup
constexpr int kBox = 64;                           // elements in a 128-byte swizzle row
constexpr int kBoxBytes = kBox * kBK * 2;          // one 64 x 64 box: 8 KiB
// MN-major descriptors: leading byte offset = between 64-element column boxes, stride byte offset =
// between 8-row atoms along K (on an H200, 2026-12-04, the tests failed with the two exchanged).
constexpr uint32_t kMnLbo = kBoxBytes, kMnSbo = 1024;

template <int BN, bool TMA_STORE>
struct WgCfg {
  // With the TMA-store epilogue, 64 KiB (BN 256) or 32 KiB (BN 128) of staging for C replace
  // one or two stages of the ring.
  static constexpr int STAGES = TMA_STORE ? (BN == 256 ? 3 : 5) : (BN == 256 ? 4 : 6);
  static constexpr int A_BYTES = kBM * kBK * 2;  // 16 KiB
  static constexpr int B_BYTES = BN * kBK * 2;   // 32 or 16 KiB
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int C_CONSUMER_BYTES = TMA_STORE ? 64 * BN * 2 : 0;  // one consumer's 64 rows, 16-bit
  static constexpr int C_BYTES = kConsumers * C_CONSUMER_BYTES;
  static constexpr int BAR_BYTES = 2 * STAGES * 8;
  // + 1024: the dynamic shared memory base is only 16-byte aligned; the kernel rounds it up.
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + C_BYTES + BAR_BYTES + 1024;
  static constexpr int ACC = BN / 2;  // F32 accumulators per consumer thread (64 x BN / 128)
  static_assert(BN == 128 || BN == 256, "wgmma tile width");
  static_assert(SMEM_BYTES <= 227 * 1024, "shared memory of one Hopper block");
};

template <int BN, typename T, bool TA, bool TB>
__device__ __forceinline__ void mma_k16(float (&acc)[BN / 2], uint64_t da, uint64_t db, bool accumulate) {
  if constexpr (BN == 256) {
    sm90::wgmma_m64n256k16<TA ? 1 : 0, TB ? 0 : 1>(acc, da, db, accumulate, static_cast<T*>(nullptr));
  } else {
    sm90::wgmma_m64n128k16<TA ? 1 : 0, TB ? 0 : 1>(acc, da, db, accumulate, static_cast<T*>(nullptr));
  }
}

// Stores D[row][col], D[row][col + 1] (col even) through alpha, beta, bias and the GELU epilogues.
template <typename TC>
__device__ __forceinline__ void store_pair(TC* c, int row, int col, float v0, float v1, const GemmParams& p) {
  if (row >= p.m || col >= p.n) return;
  const int64_t idx = static_cast<int64_t>(row) * p.ldc + col;
  if (col + 1 < p.n && p.c_vec >= 2) {
    v0 *= p.alpha;
    v1 *= p.alpha;
    if (p.beta != 0.f) {
      v0 += p.beta * to_f32<TC>(c[idx]);
      v1 += p.beta * to_f32<TC>(c[idx + 1]);
    }
    if (p.bias != nullptr) {
      const TC* bias = static_cast<const TC*>(p.bias);
      v0 += to_f32<TC>(bias[col]);
      v1 += to_f32<TC>(bias[col + 1]);
    }
    if (p.epilogue != ATH_GEMM_EPI_NONE) {
      TC* aux = aux_of<TC>(c, p);
      v0 = epilogue_finish<TC>(v0, aux, idx, p);
      v1 = epilogue_finish<TC>(v1, aux, idx + 1, p);
    }
    if constexpr (std::is_same_v<TC, float>) {
      *reinterpret_cast<float2*>(c + idx) = make_float2(v0, v1);
    } else if constexpr (std::is_same_v<TC, __nv_bfloat16>) {
      *reinterpret_cast<__nv_bfloat162*>(c + idx) = __floats2bfloat162_rn(v0, v1);
    } else {
      *reinterpret_cast<__half2*>(c + idx) = __floats2half2_rn(v0, v1);
    }
  } else {
    store_c1<TC>(c, idx, col, v0, p);
    if (col + 1 < p.n) store_c1<TC>(c, idx + 1, col + 1, v1, p);
  }
}

// Two values rounded to a 16-bit type, packed low-first into one 32-bit word.
template <typename TC>
__device__ __forceinline__ uint32_t pack2(float v0, float v1) {
  if constexpr (std::is_same_v<TC, __nv_bfloat16>) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(v0, v1);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(v0, v1);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// Unit u of a launch, u = (batch_in_launch * splits + slice) * tiles + tile: its tile's first row m0
// and column n0 (grouped order, tile_coords), its absolute batch, its slice and its k-tiles
// [kt0, kt1) (all KT of them without split-K; slices differ by at most one k-tile).
struct Unit {
  int m0, n0, batch, slice, kt0, kt1;
};
template <int BN>
__device__ __forceinline__ Unit unit_at(int64_t u, int tiles, int splits, int KT, const GemmParams& p) {
  Unit r;
  int tm, tn;
  tile_coords(static_cast<int>(u % tiles), p.tiles_m, p.tiles_n, &tm, &tn);
  r.m0 = tm * kBM;
  r.n0 = tn * BN;
  const int64_t rest = u / tiles;
  r.slice = static_cast<int>(rest % splits);
  r.batch = static_cast<int>(p.batch_base + rest / splits);
  r.kt0 = static_cast<int>(static_cast<int64_t>(r.slice) * KT / splits);
  r.kt1 = static_cast<int>(static_cast<int64_t>(r.slice + 1) * KT / splits);
  return r;
}

// Epilogues: straight from registers (alpha, beta, bias, any ldc), staged + TMA store (16-bit C,
// beta == 0), or the raw F32 partial sums of a k-slice into the split-K workspace.
enum Epi : int { kEpiRegisters = 0, kEpiTma = 1, kEpiSplit = 2 };

template <int BN, typename T, typename TC, bool TA, bool TB, int EPI>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap tma_a, const __grid_constant__ CUtensorMap tma_b,
                      const __grid_constant__ CUtensorMap tma_c, const GemmParams p, const SplitK split,
                      int64_t units) {
#if ATH_SM90A
  constexpr bool TMA_STORE = EPI == kEpiTma;
  using Cfg = WgCfg<BN, TMA_STORE>;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t cstage = base + Cfg::STAGES * Cfg::STAGE_BYTES;  // C staging (TMA_STORE), 1024-aligned
  const uint32_t bars = cstage + Cfg::C_BYTES;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (Cfg::STAGES + s); };

  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  const int tiles = p.tiles_m * p.tiles_n;
  const int KT = ceil_div(p.k, kBK);
  const int splits = EPI == kEpiSplit ? split.splits : 1;

  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < Cfg::STAGES; ++s) {
      sm90::mbar_init(full(s), 1);
      sm90::mbar_init(empty(s), kConsumers * 4);
    }
    sm90::mbar_fence_init();
  }
  __syncthreads();

  // Every role walks the same units (tile, k-slice, batch) in the same order, and the ring position `it`
  // (k-tiles issued or consumed so far) runs on across units: stage it % STAGES, phase
  // (it / STAGES) & 1. So the producer fills the next unit's first stages while the consumers are
  // still storing the previous one.
  if (wg == 0) {
    // ---------------- producer
    sm90::setmaxnreg_dec<40>();
    if (t == 0) {
      sm90::tma_prefetch_desc(&tma_a);
      sm90::tma_prefetch_desc(&tma_b);
      uint32_t it = 0;
      for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
        const Unit un = unit_at<BN>(u, tiles, splits, KT, p);
        const int m0 = un.m0, n0 = un.n0, batch = un.batch;
        for (int kt = un.kt0; kt < un.kt1; ++kt, ++it) {
          const int s = it % Cfg::STAGES;
          sm90::mbar_wait(empty(s), ((it / Cfg::STAGES) & 1) ^ 1u);  // a fresh barrier passes parity 1 at once
          sm90::mbar_arrive_expect_tx(full(s), Cfg::STAGE_BYTES);
          const uint32_t sa = base + s * Cfg::STAGE_BYTES, sb = sa + Cfg::A_BYTES;
          const int k0 = kt * kBK;
          if constexpr (!TA) {
            sm90::tma_load_3d(sa, &tma_a, full(s), k0, m0, batch);  // box: 64 k x 128 m
          } else {
#pragma unroll
            for (int i = 0; i < kBM / kBox; ++i)  // boxes: 64 m x 64 k
              sm90::tma_load_3d(sa + i * kBoxBytes, &tma_a, full(s), m0 + i * kBox, k0, batch);
          }
          if constexpr (TB) {
            sm90::tma_load_3d(sb, &tma_b, full(s), k0, n0, batch);  // box: 64 k x BN n
          } else {
#pragma unroll
            for (int j = 0; j < BN / kBox; ++j)  // boxes: 64 n x 64 k
              sm90::tma_load_3d(sb + j * kBoxBytes, &tma_b, full(s), n0 + j * kBox, k0, batch);
          }
        }
      }
    }
  } else {
    // ---------------- consumers
    sm90::setmaxnreg_inc<232>();
    const int c = wg - 1;
    const int w = t / 32, lane = t % 32, g = lane / 4, q = lane % 4;
    // No zeroing pass: the first product of each unit ignores the accumulators (scale-d 0), and no
    // other instruction writes them inside the pipeline (which would serialize the wgmma).
    float acc[Cfg::ACC];
    uint32_t it = 0;
    for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
      const Unit un = unit_at<BN>(u, tiles, splits, KT, p);
      const int m0 = un.m0, n0 = un.n0, batch = un.batch;
      for (int kt = un.kt0; kt < un.kt1; ++kt, ++it) {
        const int s = it % Cfg::STAGES;
        sm90::mbar_wait(full(s), (it / Cfg::STAGES) & 1);
        const uint32_t sa = base + s * Cfg::STAGE_BYTES, sb = sa + Cfg::A_BYTES;
        sm90::wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
          const uint64_t da = TA ? sm90::smem_desc_sw128(sa + c * kBoxBytes + kk * 2048, kMnLbo, kMnSbo)
                                 : sm90::smem_desc_sw128(sa + c * 64 * 128 + kk * 32, 16, 1024);
          const uint64_t db = TB ? sm90::smem_desc_sw128(sb + kk * 32, 16, 1024)
                                 : sm90::smem_desc_sw128(sb + kk * 2048, kMnLbo, kMnSbo);
          mma_k16<BN, T, TA, TB>(acc, da, db, kt > un.kt0 || kk > 0);
        }
        sm90::wgmma_commit();
        sm90::wgmma_wait<1>();  // the products of the previous k-tile are done: its stage can be refilled
        if (kt > un.kt0 && lane == 0) sm90::mbar_arrive(empty((it - 1) % Cfg::STAGES));
      }
      sm90::wgmma_wait<0>();
      sm90::fence_regs(acc);  // the epilogue's reads stay after the wait
      if (lane == 0) sm90::mbar_arrive(empty((it - 1) % Cfg::STAGES));

      if constexpr (TMA_STORE) {
        // ---------------- epilogue: registers -> swizzled staging -> TMA store (beta == 0, 16-bit C).
        // Staging of consumer c: BN / 64 boxes of 64 rows x 128 bytes, 128-byte swizzle (16-byte chunk
        // index XOR row % 8): the eight rows a warp writes at once land in eight different chunks.
        const uint32_t cs = cstage + c * Cfg::C_CONSUMER_BYTES;
        if (t == 0) sm90::bulk_wait_read<0>();  // the previous unit's store has read the staging
        sm90::named_barrier_sync(1 + c, 128);
        const TC* bias = static_cast<const TC*>(p.bias);
        // GELU: the staging holds the activated values; the rounded pre-activation goes to aux
        // straight from registers (one 32-bit pair per row and column pair, rows inside M; N is a
        // multiple of 8 here, so a pair starting inside N ends inside it).
        const bool gelu = p.epilogue == ATH_GEMM_EPI_GELU;
        TC* aux = gelu && p.aux != nullptr
                      ? static_cast<TC*>(p.aux) + static_cast<int64_t>(batch) * p.stride_c +
                            static_cast<int64_t>(m0 + 64 * c) * p.ldc + n0
                      : nullptr;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = 8 * j + 2 * q;  // in the tile
          float b0 = 0.f, b1 = 0.f;
          if (bias != nullptr) {
            if (n0 + col < p.n) b0 = to_f32<TC>(bias[n0 + col]);
            if (n0 + col + 1 < p.n) b1 = to_f32<TC>(bias[n0 + col + 1]);
          }
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int row = 16 * w + g + 8 * h;  // row % 8 == g
            const uint32_t addr = cs + (col / 64) * kBoxBytes + row * 128 + (((j % 8) ^ g) << 4) + 4 * q;
            float v0 = p.alpha * acc[4 * j + 2 * h] + b0, v1 = p.alpha * acc[4 * j + 2 * h + 1] + b1;
            if (gelu) {
              v0 = to_f32<TC>(from_f32<TC>(v0));  // the pre-activation rounded to dtype_c
              v1 = to_f32<TC>(from_f32<TC>(v1));
              if (aux != nullptr && m0 + 64 * c + row < p.m && n0 + col < p.n)
                *reinterpret_cast<uint32_t*>(aux + static_cast<int64_t>(row) * p.ldc + col) = pack2<TC>(v0, v1);
              v0 = gelu_fwd(v0);
              v1 = gelu_fwd(v1);
            }
            sm90::st_shared_b32(addr, pack2<TC>(v0, v1));
          }
        }
        sm90::fence_proxy_async_shared();  // the copy engine reads what these stores wrote
        sm90::named_barrier_sync(1 + c, 128);
        if (t == 0) {
#pragma unroll
          for (int b = 0; b < BN / kBox; ++b)
            sm90::tma_store_3d(&tma_c, cs + b * kBoxBytes, n0 + b * kBox, m0 + 64 * c, batch);
          sm90::bulk_commit();
        }
      } else if constexpr (EPI == kEpiSplit) {
        // ---------------- epilogue: registers -> this slice's F32 partial tile in the workspace
        // (M, ldw) slice (batch - batch_base, slice); ldw is a multiple of 4 and col is even, so a
        // pair starting inside N stays inside the row (col + 1 < ldw) and is 8-byte aligned.
        const int64_t slice_elems = static_cast<int64_t>(p.m) * split.ldw;
        float* W = split.ws + ((batch - p.batch_base) * splits + un.slice) * slice_elems;
        const int r0 = m0 + 64 * c + 16 * w + g;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = n0 + 8 * j + 2 * q;
          if (col < p.n) {
            if (r0 < p.m) *reinterpret_cast<float2*>(W + r0 * split.ldw + col) = make_float2(acc[4 * j], acc[4 * j + 1]);
            if (r0 + 8 < p.m)
              *reinterpret_cast<float2*>(W + (r0 + 8) * split.ldw + col) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
          }
        }
      } else {
        // ---------------- epilogue: registers -> C
        TC* C = static_cast<TC*>(p.c) + static_cast<int64_t>(batch) * p.stride_c;
        const int r0 = m0 + 64 * c + 16 * w + g;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = n0 + 8 * j + 2 * q;
          store_pair<TC>(C, r0, col, acc[4 * j + 0], acc[4 * j + 1], p);
          store_pair<TC>(C, r0 + 8, col, acc[4 * j + 2], acc[4 * j + 3], p);
        }
      }
    }
    if constexpr (TMA_STORE) {
      if (t == 0) sm90::bulk_wait<0>();  // the staging must outlive the last store's reads
    }
  }
#else
  // Built for another target (sm_80, or PTX for newer chips): gemm.cu never launches this there.
  (void)kBoxBytes;
  (void)kMnLbo;
  (void)kMnSbo;
  (void)WgCfg<BN, EPI == kEpiTma>::ACC;
  (void)split;
  (void)units;
  __trap();
#endif
}

// ---------------------------------------------------------------- host side
// A 3-d tensor map over one operand: (inner, outer, batch) elements, row stride ld and batch
// stride in elements, box (box_inner, box_outer, 1), 128-byte swizzle, zero fill outside.
ath_status make_map(CUtensorMap* map, const void* base, int dtype, int64_t inner, int64_t outer, int64_t ld,
                    int64_t batches, int64_t batch_stride, int box_inner, int box_outer) {
  const int64_t dims[3] = {inner, outer, batches};
  const int64_t strides[3] = {1, ld, batch_stride};
  const int box[3] = {box_inner, box_outer, 1};
  return make_tensor_map(map, "ath_cuda_gemm (wgmma)", base, dtype, 3, dims, strides, box);
}

template <int BN, typename T, typename TC, bool TA, bool TB, int EPI>
ath_status launch(GemmParams p, int dtype_ab, int nbatch, int sm_count, const SplitK& split, cudaStream_t stream) {
  constexpr bool TMA_STORE = EPI == kEpiTma;
  using Cfg = WgCfg<BN, TMA_STORE>;
  constexpr auto kernel = gemm_wgmma_kernel<BN, T, TC, TA, TB, EPI>;
  ATH_TRY(allow_smem<kernel>(Cfg::SMEM_BYTES));
  // The maps span every batch of the call (coordinates are absolute batch indices); a single
  // batch gets the stride of a packed matrix (never used).
  const int64_t batches = p.batch_base + nbatch;
  const bool one = batches == 1;
  CUtensorMap ma, mb, mc;
  if (!TA) {
    ATH_TRY(make_map(&ma, p.a, dtype_ab, p.k, p.m, p.lda, batches, one ? int64_t{p.m} * p.lda : p.stride_a, kBK, kBM));
  } else {
    ATH_TRY(make_map(&ma, p.a, dtype_ab, p.m, p.k, p.lda, batches, one ? int64_t{p.k} * p.lda : p.stride_a, kBox, kBK));
  }
  if (TB) {
    ATH_TRY(make_map(&mb, p.b, dtype_ab, p.k, p.n, p.ldb, batches, one ? int64_t{p.n} * p.ldb : p.stride_b, kBK, BN));
  } else {
    ATH_TRY(make_map(&mb, p.b, dtype_ab, p.n, p.k, p.ldb, batches, one ? int64_t{p.k} * p.ldb : p.stride_b, kBox, kBK));
  }
  if (TMA_STORE) {
    ATH_TRY(make_map(&mc, p.c, dtype_ab, p.n, p.m, p.ldc, batches, one ? int64_t{p.m} * p.ldc : p.stride_c, kBox, 64));
  } else {
    mc = mb;  // not read
  }
  // Persistent grid: one block per SM at most, each walking units blockIdx.x, + gridDim.x, ...
  p.tiles_m = ceil_div(p.m, kBM);
  p.tiles_n = ceil_div(p.n, BN);
  const int splits = EPI == kEpiSplit ? split.splits : 1;
  const int64_t units = int64_t{p.tiles_m} * p.tiles_n * splits * nbatch;
  const int64_t blocks = units < sm_count ? units : sm_count;
  kernel<<<dim3(static_cast<unsigned>(blocks)), kThreads, Cfg::SMEM_BYTES, stream>>>(ma, mb, mc, p, split, units);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_gemm (wgmma)");
  return ATH_OK;
}

// The TMA-store epilogue takes 16-bit C with beta == 0, C 16-byte aligned, and N, ldc (and
// stride_c with several batches) multiples of 8. N: the copy engine clips a store at the tensor's
// inner extent only in 16-byte units (on an H200, N = 1, 65 and 130 wrote the columns up to the
// next multiple of 8 into C's row padding), so a ragged N goes to the register epilogue.
// ATHANOR_WGMMA_EPILOGUE=registers turns it off (tests and benchmarks compare the two).
// With split-K the kernel writes F32 partial sums whatever dtype_c is (the reduction applies the
// epilogue), so its instantiation does not depend on TC.
template <int BN, typename T, typename TC, bool TA, bool TB>
ath_status launch_epilogue(const GemmParams& p, int dtype_ab, int nbatch, int sm_count, const SplitK& split,
                           cudaStream_t stream) {
  if (split.splits > 1) return launch<BN, T, float, TA, TB, kEpiSplit>(p, dtype_ab, nbatch, sm_count, split, stream);
  if constexpr (std::is_same_v<T, TC>) {
    const char* e = std::getenv("ATHANOR_WGMMA_EPILOGUE");
    const bool registers = e != nullptr && std::strcmp(e, "registers") == 0;
    const bool batched = p.batch_base + nbatch > 1;
    // GELU: aux from registers as 32-bit pairs (aux 4-byte aligned); GELU_BACKWARD reads aux per
    // element and takes the register epilogue.
    const bool epi_ok = p.epilogue == ATH_GEMM_EPI_NONE ||
                        (p.epilogue == ATH_GEMM_EPI_GELU && reinterpret_cast<uintptr_t>(p.aux) % 4 == 0);
    if (!registers && epi_ok && p.beta == 0.f && p.n % 8 == 0 && reinterpret_cast<uintptr_t>(p.c) % 16 == 0 &&
        p.ldc % 8 == 0 && (!batched || (p.stride_c > 0 && p.stride_c % 8 == 0))) {
      return launch<BN, T, TC, TA, TB, kEpiTma>(p, dtype_ab, nbatch, sm_count, split, stream);
    }
  }
  return launch<BN, T, TC, TA, TB, kEpiRegisters>(p, dtype_ab, nbatch, sm_count, split, stream);
}

template <int BN, typename T, typename TC>
ath_status launch_layout(const GemmParams& p, int dtype_ab, int nbatch, int sms, const SplitK& split,
                         cudaStream_t stream) {
  const bool ta = p.trans_a != 0, tb = p.trans_b != 0;
  if (!ta && !tb) return launch_epilogue<BN, T, TC, false, false>(p, dtype_ab, nbatch, sms, split, stream);
  if (!ta && tb) return launch_epilogue<BN, T, TC, false, true>(p, dtype_ab, nbatch, sms, split, stream);
  if (ta && !tb) return launch_epilogue<BN, T, TC, true, false>(p, dtype_ab, nbatch, sms, split, stream);
  return launch_epilogue<BN, T, TC, true, true>(p, dtype_ab, nbatch, sms, split, stream);
}

template <int BN>
ath_status launch_dtype(const GemmParams& p, int dtype_ab, int dtype_c, int nbatch, int sms, const SplitK& split,
                        cudaStream_t stream) {
  const bool c_f32 = dtype_c == ATH_F32;
  switch (dtype_ab) {
    case ATH_BF16:
      return c_f32 ? launch_layout<BN, __nv_bfloat16, float>(p, dtype_ab, nbatch, sms, split, stream)
                   : launch_layout<BN, __nv_bfloat16, __nv_bfloat16>(p, dtype_ab, nbatch, sms, split, stream);
    case ATH_F16:
      return c_f32 ? launch_layout<BN, __half, float>(p, dtype_ab, nbatch, sms, split, stream)
                   : launch_layout<BN, __half, __half>(p, dtype_ab, nbatch, sms, split, stream);
    default:
      return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: wgmma path called with dtype_ab=%d", dtype_ab);
  }
}

// ---------------------------------------------------------------- split-K heuristic
// A cost model in units of one k-tile's time on one SM (not fitted to measurements yet; the
// override ATHANOR_WGMMA_SPLITK exists to measure it):
//   cost(s) = waves(s) * (ceil(KT / s) + kUnitOverhead) + (s > 1 ? kSliceTraffic * units * s : 0)
// waves(s) = ceil(units * s / SMs) rounds of the persistent grid, each as long as one slice plus its
// epilogue; the last term is the workspace traffic (each tile slice written once and read once,
// F32, through the whole chip's memory bandwidth: 2 x 128 KiB per 128 x 256 slice against the
// ~0.7 us of one k-tile on an H200 gives about 0.08). The fewest splits within 5% of the cheapest
// cost win, and only when that is at least 15% below cost(1).
constexpr int kMaxSplits = 64;           // the override's bound
constexpr int kMaxHeuristicSplits = 8;
constexpr int kMinSliceKTiles = 16;      // the heuristic never makes slices shorter than this
constexpr int64_t kSplitMinK = 4096;
constexpr double kUnitOverhead = 2.0, kSliceTraffic = 0.08, kSplitGain = 0.85;

int tile_bn(WgmmaTile tile) { return tile == WgmmaTile::k128x256 ? 256 : 128; }

}  // namespace

int wgmma_split_heuristic(WgmmaTile tile, int64_t m, int64_t n, int64_t k, int64_t batch, int sm_count) {
  const int64_t sms = sm_count > 0 ? sm_count : 1;
  const int64_t units = ceil_div<int64_t>(m, kBM) * ceil_div<int64_t>(n, tile_bn(tile)) * batch;
  if (k < kSplitMinK || units <= 0 || units >= sms) return 1;
  const int64_t kt = ceil_div<int64_t>(k, kBK);
  auto cost = [&](int s) {
    const double waves = static_cast<double>(ceil_div<int64_t>(units * s, sms));
    const double slice = static_cast<double>(ceil_div<int64_t>(kt, s));
    return waves * (slice + kUnitOverhead) + (s > 1 ? kSliceTraffic * static_cast<double>(units * s) : 0.0);
  };
  double best = cost(1);
  for (int s = 2; s <= kMaxHeuristicSplits && kt / s >= kMinSliceKTiles; ++s) best = std::min(best, cost(s));
  if (best > kSplitGain * cost(1)) return 1;
  for (int s = 2; s <= kMaxHeuristicSplits && kt / s >= kMinSliceKTiles; ++s)
    if (cost(s) <= best * 1.05) return s;
  return 1;
}

int wgmma_splits(WgmmaTile tile, int64_t m, int64_t n, int64_t k, int64_t batch, int sm_count) {
  int s = 0;
  const char* e = std::getenv("ATHANOR_WGMMA_SPLITK");
  if (e != nullptr && *e != '\0' && std::strcmp(e, "auto") != 0) {
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    if (end != e && *end == '\0' && v >= 1) s = static_cast<int>(std::min<long>(v, kMaxSplits));
  }
  if (s == 0) s = wgmma_split_heuristic(tile, m, n, k, batch, sm_count);
  const int64_t kt = ceil_div<int64_t>(k, kBK);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(s, kt)));
}

int wgmma_smem_bytes(WgmmaTile tile) {
  if (tile == WgmmaTile::k128x256) return std::max(WgCfg<256, false>::SMEM_BYTES, WgCfg<256, true>::SMEM_BYTES);
  return std::max(WgCfg<128, false>::SMEM_BYTES, WgCfg<128, true>::SMEM_BYTES);
}

const char* wgmma_tile_name(WgmmaTile tile) {
  return tile == WgmmaTile::k128x256 ? "wgmma_128x256" : "wgmma_128x128";
}

ath_status launch_gemm_wgmma(GemmParams p, WgmmaTile tile, int dtype_ab, int dtype_c, int nbatch, int sm_count,
                             const SplitK& split, cudaStream_t stream) {
  const int sms = sm_count > 0 ? sm_count : 1;
  if (split.splits > 1 && (split.ws == nullptr || split.ldw != splitk_ldw(p.n) || split.splits > ceil_div(p.k, kBK))) {
    return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: split-K with ws=%p, splits=%d, ldw=%lld for n=%d, k=%d",
                     static_cast<const void*>(split.ws), split.splits, (long long)split.ldw, p.n, p.k);
  }
  switch (tile) {
    case WgmmaTile::k128x256: ATH_TRY(launch_dtype<256>(p, dtype_ab, dtype_c, nbatch, sms, split, stream)); break;
    case WgmmaTile::k128x128: ATH_TRY(launch_dtype<128>(p, dtype_ab, dtype_c, nbatch, sms, split, stream)); break;
    default: return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: unknown wgmma tile %d", static_cast<int>(tile));
  }
  // The partial sums are complete when the reduction starts (same stream).
  if (split.splits > 1) ATH_TRY(launch_gemm_splitk_reduce(p, split, dtype_c, nbatch, stream));
  return ATH_OK;
}

}  // namespace ath::cuda::gemm

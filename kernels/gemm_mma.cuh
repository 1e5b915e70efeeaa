// BF16/F16 GEMM on tensor cores with mma.sync.m16n8k16 (F32 accumulation), for sm_80 and newer.
//   C_b (M, N) = alpha * op(A_b) (M, K) @ op(B_b) (K, N) + beta * C_b + bias   (see gemm_internal.cuh)
// The four layouts of A and B are template parameters: each operand tile is kept in shared memory
// in the layout it has in global memory ("K-major" = K contiguous, or "MN-major"), and the
// fragments are read with ldmatrix (K-major) or ldmatrix.trans (MN-major), so no transposition
// pass is ever made.
//
// Block tile (BM, BN) of C, K stepped by BK; WARPS_M x WARPS_N warps, each owning a
// (BM / WARPS_M, BN / WARPS_N) warp tile = MI x NI mma tiles of 16 x 8.
//
// Pipeline: STAGES-deep ring of shared-memory stages filled by cp.async (16-byte copies that
// bypass L1 and registers). The prologue issues k-tiles 0 .. STAGES-2 (one commit group each).
// Iteration kt waits until at most STAGES-2 groups are pending (so k-tile kt has landed), runs one
// __syncthreads (publishes k-tile kt to all warps AND proves every warp finished computing on the
// stage that k-tile kt+STAGES-1 will overwrite, which is the stage of k-tile kt-1), issues the
// copy of k-tile kt+STAGES-1, then runs the tensor-core math on k-tile kt. One commit group is
// made per iteration even when nothing is left to copy, so the group arithmetic stays uniform.
//
// Shared-memory layout of one stage: [A tile][B tile], each padded by 8 elements (16 bytes) per
// row. K-major tile: ROWS rows of BK (+8) elements; MN-major tile: BK rows of ROWS (+8). With
// the pad, the 8 row addresses of one 8x8 ldmatrix (row pitch 80 bytes for BK = 32, 272/528
// bytes for 128/256) fall into 8 distinct 16-byte bank groups of a 128-byte line: conflict-free.
//
// Boundaries: a 16-byte chunk that is partly or wholly outside the matrix is copied with a
// smaller cp.async src-size, and the hardware zero-fills the rest, so any M, N, K works as long
// as the chunk starts are 16-byte aligned (lda, ldb multiples of 8, 16-byte aligned bases).
// Zeros in the K tail contribute nothing; rows/columns outside M/N are simply not stored.
#pragma once
#include "gemm_internal.cuh"
#include "ptx.cuh"

namespace ath::cuda::gemm {

// ---------------------------------------------------------------- tile configuration
template <int BM_, int BN_, int BK_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct MmaConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int STAGES = STAGES_;
  static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // __launch_bounds__ occupancy hint
  static constexpr int THREADS = WARPS_M * WARPS_N * 32;
  static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;  // warp tile
  static constexpr int MI = WTM / 16, NI = WTN / 8;             // mma tiles per warp
  static constexpr int PAD = 8;                                 // elements (16 bytes) per smem row
  static_assert(BK % 16 == 0 && BK >= 16, "BK must be a multiple of the mma K (16)");
  static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile must be a multiple of 16x16");
  static_assert(STAGES >= 2, "the pipeline needs at least two stages");
};

// One operand tile in shared memory: ROWS (BM or BN) x BK elements, K-major or MN-major.
template <int ROWS, int BK, int PAD, bool KMAJOR>
struct SmemTile {
  static constexpr int LD = KMAJOR ? BK + PAD : ROWS + PAD;  // row pitch (elements)
  static constexpr int ELEMS = KMAJOR ? ROWS * LD : BK * LD;
  // Element offset of (row r in [0, ROWS), k in [0, BK)).
  static __device__ __forceinline__ int offset(int r, int k) { return KMAJOR ? r * LD + k : k * LD + r; }
};

template <class Cfg, bool TRANS_A, bool TRANS_B>
struct MmaLayout {
  // A is K-major unless transposed; B is K-major only when transposed.
  using TileA = SmemTile<Cfg::BM, Cfg::BK, Cfg::PAD, !TRANS_A>;
  using TileB = SmemTile<Cfg::BN, Cfg::BK, Cfg::PAD, TRANS_B>;
  static constexpr int STAGE_ELEMS = TileA::ELEMS + TileB::ELEMS;
  static constexpr int SMEM_BYTES = Cfg::STAGES * STAGE_ELEMS * 2;
  static_assert((TileA::ELEMS * 2) % 16 == 0 && (STAGE_ELEMS * 2) % 16 == 0, "stage alignment");
};

// Streams one operand's (ROWS, BK) tiles into shared memory, k-tile after k-tile (the kernel
// loads k-tiles strictly in order, so each thread keeps a running source pointer).
// K-major operand: global row r holds K contiguous, ROWS rows per tile, BK/8 chunks per row.
// MN-major operand: global row k holds ROWS contiguous, BK rows per tile, ROWS/8 chunks per row.
// Thread tid copies chunks tid + i * THREADS, i.e. the same column `scol` of stored rows
// srow0 + i * RSTEP, so its global addresses differ by i * RSTEP * ld.
template <class Cfg, class Tile, bool KMAJOR, int ROWS, typename T>
struct AsyncTileLoader {
  static constexpr int BK = Cfg::BK;
  static constexpr int CHUNKS_PER_ROW = KMAJOR ? BK / 8 : ROWS / 8;  // 8 elements per 16-byte chunk
  static constexpr int CHUNKS = (KMAJOR ? ROWS : BK) * CHUNKS_PER_ROW;
  static constexpr int PER_THREAD = CHUNKS / Cfg::THREADS;
  static constexpr int RSTEP = Cfg::THREADS / CHUNKS_PER_ROW;  // stored rows between a thread's chunks
  static_assert(CHUNKS % Cfg::THREADS == 0 && Cfg::THREADS % CHUNKS_PER_ROW == 0,
                "tile chunks must divide evenly among the threads");
  static_assert(PER_THREAD <= 32, "row_ok holds one bit per chunk");

  const T* base;     // operand base: the (never read) source of fully out-of-range chunks
  const T* next;     // this thread's chunk 0 in the next k-tile to load
  int64_t step;      // RSTEP * ld: global distance between this thread's chunks
  int64_t advance;   // global distance between consecutive k-tiles
  uint32_t dst0;     // byte offset of chunk 0 inside the stage's tile
  int k_next;        // k of chunk 0 in the next k-tile (K-major: first k of the chunk)
  int K;
  uint32_t row_ok;   // K-major: bit i set when the row of chunk i is < rows_total
  int mn_bytes;      // MN-major: bytes of the chunk inside the matrix (0..16), same for every i

  // g: operand base (batch applied), ld: its row stride, rows_total: M or N, row0: tile origin.
  __device__ __forceinline__ AsyncTileLoader(const T* g, int64_t ld, int rows_total, int K_, int row0, int tid) {
    const int srow0 = tid / CHUNKS_PER_ROW, scol = (tid % CHUNKS_PER_ROW) * 8;
    base = g;
    K = K_;
    step = RSTEP * ld;
    dst0 = static_cast<uint32_t>((srow0 * Tile::LD + scol) * 2);
    row_ok = 0;
    mn_bytes = 0;
    if constexpr (KMAJOR) {
      next = g + (row0 + srow0) * ld + scol;
      advance = BK;
      k_next = scol;
#pragma unroll
      for (int i = 0; i < PER_THREAD; ++i)
        if (row0 + srow0 + i * RSTEP < rows_total) row_ok |= 1u << i;
    } else {
      next = g + srow0 * ld + (row0 + scol);
      advance = BK * ld;
      k_next = srow0;
      mn_bytes = min(max(rows_total - (row0 + scol), 0), 8) * 2;
    }
  }

  // Issues the cp.async copies of the next k-tile into the tile at shared address `tile`.
  __device__ __forceinline__ void load(uint32_t tile) {
    const int k_bytes = min(max(K - k_next, 0), 8) * 2;  // K-major: same k range for every chunk
#pragma unroll
    for (int i = 0; i < PER_THREAD; ++i) {
      int bytes;
      if constexpr (KMAJOR) {
        bytes = (row_ok >> i) & 1u ? k_bytes : 0;
      } else {
        bytes = k_next + i * RSTEP < K ? mn_bytes : 0;
      }
      const T* src = bytes > 0 ? next + i * step : base;
      cp_async_16(tile + dst0 + i * (RSTEP * Tile::LD * 2), src, bytes);
    }
    next += advance;
    k_next += BK;
  }
};

// Loads the A fragments of k-step kk (MI tiles of 16x16) for warp row wm.
template <class Cfg, class Tile, bool KMAJOR>
__device__ __forceinline__ void load_frag_a(uint32_t (&fa)[Cfg::MI][4], uint32_t tile, int wm, int kk, int lane) {
  const int j = lane >> 3, i8 = lane & 7;
#pragma unroll
  for (int mi = 0; mi < Cfg::MI; ++mi) {
    const int m0 = wm * Cfg::WTM + mi * 16;
    // matrices: 0 = (m0, kk), 1 = (m0 + 8, kk), 2 = (m0, kk + 8), 3 = (m0 + 8, kk + 8)
    if constexpr (KMAJOR) {
      ldmatrix_x4(fa[mi], tile + Tile::offset(m0 + (j & 1) * 8 + i8, kk + (j >> 1) * 8) * 2);
    } else {
      ldmatrix_x4_trans(fa[mi], tile + Tile::offset(m0 + (j & 1) * 8, kk + (j >> 1) * 8 + i8) * 2);
    }
  }
}

// Loads the B fragments of k-step kk (NI tiles of 16x8, two per ldmatrix.x4) for warp column wn.
template <class Cfg, class Tile, bool KMAJOR>
__device__ __forceinline__ void load_frag_b(uint32_t (&fb)[Cfg::NI][2], uint32_t tile, int wn, int kk, int lane) {
  const int j = lane >> 3, i8 = lane & 7;
#pragma unroll
  for (int nj = 0; nj < Cfg::NI / 2; ++nj) {
    const int n0 = wn * Cfg::WTN + nj * 16;
    // matrices: 0 = (n0, kk), 1 = (n0, kk + 8), 2 = (n0 + 8, kk), 3 = (n0 + 8, kk + 8)
    uint32_t r[4];
    if constexpr (KMAJOR) {
      ldmatrix_x4(r, tile + Tile::offset(n0 + (j >> 1) * 8 + i8, kk + (j & 1) * 8) * 2);
    } else {
      ldmatrix_x4_trans(r, tile + Tile::offset(n0 + (j >> 1) * 8, kk + (j & 1) * 8 + i8) * 2);
    }
    fb[2 * nj][0] = r[0];
    fb[2 * nj][1] = r[1];
    fb[2 * nj + 1][0] = r[2];
    fb[2 * nj + 1][1] = r[3];
  }
}

// Stores the pair (col, col + 1) of one row of C (col even).
template <typename TC>
__device__ __forceinline__ void store_c2(TC* __restrict__ crow, int col, float v0, float v1, const GemmParams& p) {
  const bool two = col + 1 < p.n;
  // The GELU epilogues go element by element through store_c1 (epilogue_finish).
  if (two && p.c_vec >= 2 && p.epilogue == ATH_GEMM_EPI_NONE) {
    float o0 = p.alpha * v0, o1 = p.alpha * v1;
    if constexpr (sizeof(TC) == 4) {
      float2* ptr = reinterpret_cast<float2*>(crow + col);
      if (p.beta != 0.f) {
        const float2 old = *ptr;
        o0 += p.beta * old.x;
        o1 += p.beta * old.y;
      }
      if (p.bias != nullptr) {
        const float* bias = static_cast<const float*>(p.bias);
        o0 += bias[col];
        o1 += bias[col + 1];
      }
      *ptr = make_float2(o0, o1);
    } else {
      // Two 16-bit elements as one 32-bit word.
      TC* ptr = crow + col;
      if (p.beta != 0.f) {
        o0 += p.beta * to_f32<TC>(ptr[0]);
        o1 += p.beta * to_f32<TC>(ptr[1]);
      }
      if (p.bias != nullptr) {
        const TC* bias = static_cast<const TC*>(p.bias);
        o0 += to_f32<TC>(bias[col]);
        o1 += to_f32<TC>(bias[col + 1]);
      }
      struct alignas(4) Pair { TC x, y; };
      Pair pr;
      pr.x = from_f32<TC>(o0);
      pr.y = from_f32<TC>(o1);
      *reinterpret_cast<Pair*>(ptr) = pr;
    }
  } else {
    store_c1<TC>(crow, col, col, v0, p);
    if (two) store_c1<TC>(crow, col + 1, col + 1, v1, p);
  }
}

// grid: (tiles_m * tiles_n, 1, batches of this launch); block: Cfg::THREADS;
// dynamic shared memory: MmaLayout<Cfg, TRANS_A, TRANS_B>::SMEM_BYTES.
template <class Cfg, typename T, typename TC, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS) gemm_mma_kernel(const GemmParams p) {
  using L = MmaLayout<Cfg, TRANS_A, TRANS_B>;
  using TileA = typename L::TileA;
  using TileB = typename L::TileB;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES;
  constexpr int MI = Cfg::MI, NI = Cfg::NI;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  const uint32_t smem = smem_addr(smem_raw);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / Cfg::WARPS_N, wn = warp % Cfg::WARPS_N;
  int tile_m, tile_n;
  tile_coords(blockIdx.x, p.tiles_m, p.tiles_n, &tile_m, &tile_n);
  const int row0 = tile_m * BM, col0 = tile_n * BN;

  const int64_t batch = p.batch_base + blockIdx.z;
  const T* __restrict__ A = static_cast<const T*>(p.a) + batch * p.stride_a;  // (M, K) or (K, M)
  const T* __restrict__ B = static_cast<const T*>(p.b) + batch * p.stride_b;  // (K, N) or (N, K)
  TC* __restrict__ C = static_cast<TC*>(p.c) + batch * p.stride_c;           // (M, N)

  const int K = p.k;
  const int KT = (K + BK - 1) / BK;

  auto stage_a = [&](int s) { return smem + s * L::STAGE_ELEMS * 2; };
  auto stage_b = [&](int s) { return smem + (s * L::STAGE_ELEMS + TileA::ELEMS) * 2; };
  AsyncTileLoader<Cfg, TileA, !TRANS_A, BM, T> load_a(A, p.lda, p.m, K, row0, tid);
  AsyncTileLoader<Cfg, TileB, TRANS_B, BN, T> load_b(B, p.ldb, p.n, K, col0, tid);
  // Copies the next k-tile (they are issued strictly in order: 0, 1, 2, ...) into stage s.
  auto load_stage = [&](int s) {
    load_a.load(stage_a(s));
    load_b.load(stage_b(s));
  };

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  // Prologue: k-tiles 0 .. STAGES-2.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load_stage(s);
    cp_async_commit();
  }

  int read_stage = 0, write_stage = STAGES - 1;
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();  // k-tile kt has landed (for this thread's copies)
    __syncthreads();              // ... for every thread's copies; stage of kt-1 is free
    if (kt + STAGES - 1 < KT) load_stage(write_stage);
    cp_async_commit();

    const uint32_t sa = stage_a(read_stage), sb = stage_b(read_stage);
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t fa[MI][4];
      uint32_t fb[NI][2];
      load_frag_a<Cfg, TileA, !TRANS_A>(fa, sa, wm, kk, lane);
      load_frag_b<Cfg, TileB, TRANS_B>(fb, sb, wn, kk, lane);
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma_16816<T>(acc[i][j], fa[i], fb[j][0], fb[j][1]);
    }
    read_stage = read_stage + 1 == STAGES ? 0 : read_stage + 1;
    write_stage = write_stage + 1 == STAGES ? 0 : write_stage + 1;
  }
  cp_async_wait<0>();  // only empty groups can remain; leave nothing in flight at exit

  // Epilogue. acc[i][j] holds rows (g, g + 8) x columns (2t, 2t + 1) of mma tile (i, j),
  // g = lane / 4, t = lane % 4.
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < MI; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = row0 + wm * Cfg::WTM + i * 16 + g + h * 8;
      if (row >= p.m) continue;
      TC* crow = C + row * p.ldc;
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int col = col0 + wn * Cfg::WTN + j * 8 + 2 * t;
        if (col < p.n) store_c2<TC>(crow, col, acc[i][j][2 * h], acc[i][j][2 * h + 1], p);
      }
    }
  }
}

}  // namespace ath::cuda::gemm

// FP32 GEMM on the SIMT cores (exact FP32 FMA, no TF32):
//   C_b (M, N) = alpha * op(A_b) @ op(B_b) + beta * C_b + bias      (see gemm_internal.cuh)
// Requirements (checked by gemm.cu): a, b 16-byte aligned; lda, ldb (and batch strides when
// batch > 1) multiples of 4, so that every 4-element chunk of a row is one aligned float4.
//
// Block tile BM x BN of C, K stepped by BK = 8; 256 threads as a 16 x 16 grid, each thread owns
// TM x TN outputs split into 4 x 4 sub-blocks spaced BM/(TM/4) rows and BN/(TN/4) columns apart
// (so a warp reads each shared-memory vector with broadcasts or contiguously: no bank conflicts).
//
// Shared memory (double-buffered): As[2][BK][BM + 4] holds op(A) K-major-by-row, i.e. transposed
// to "k rows of M", and Bs[2][BK][BN + 4] holds op(B) as k rows of N; the inner loop reads one
// float4 of A and one of B per sub-block and does an outer-product update of the TM x TN registers.
// A K-contiguous operand (A not transposed, or B transposed) is transposed on the way into shared
// memory (4 scalar stores; the +4 pad keeps them conflict-free); an M/N-contiguous one is stored
// as float4.
//
// Pipeline: the next k-tile is loaded from global memory into registers while the current one is
// computed from shared memory, then stored into the other buffer; one __syncthreads per k-tile.
#include "gemm_internal.cuh"

namespace ath::cuda::gemm {
namespace {

template <int BM_, int BN_, int TM_, int TN_, int MIN_BLOCKS_>
struct F32Config {
  static constexpr int BM = BM_, BN = BN_, BK = 8, TM = TM_, TN = TN_;
  static constexpr int THREADS = 256;  // 16 x 16
  static constexpr int MIN_BLOCKS = MIN_BLOCKS_;
  static constexpr int PAD = 4;
  static constexpr int SUB_M = TM / 4, SUB_N = TN / 4;           // 4x4 sub-blocks per thread
  static constexpr int STEP_M = BM / SUB_M, STEP_N = BN / SUB_N;  // their spacing
  static_assert(BM == 16 * TM && BN == 16 * TN, "16 x 16 threads cover the tile");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "thread tile in float4 units");
};

//                         BM   BN  TM TN MIN_BLOCKS
using F32Cfg128 = F32Config<128, 128, 8, 8, 2>;
using F32Cfg64 = F32Config<64, 64, 4, 4, 4>;

// Loads the 4 consecutive elements at p[0..3] of which only the first `valid` (may be <= 0) exist;
// p is 16-byte aligned whenever valid >= 4.
__device__ __forceinline__ float4 load4(const float* __restrict__ p, int valid) {
  if (valid >= 4) return __ldg(reinterpret_cast<const float4*>(p));
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (valid > 0) v.x = __ldg(p);
  if (valid > 1) v.y = __ldg(p + 1);
  if (valid > 2) v.z = __ldg(p + 2);
  return v;
}

// Register staging of one operand tile: ROWS (BM or BN) x BK elements as float4 chunks.
// KCONTIG: the operand's rows in global memory run along K (chunk = 4 k of one row r);
// otherwise they run along M/N (chunk = 4 r of one k).
template <class Cfg, int ROWS, bool KCONTIG>
struct OperandLoader {
  static constexpr int BK = Cfg::BK;
  static constexpr int CHUNKS = ROWS * BK / 4;
  static constexpr int PER_THREAD = (CHUNKS + Cfg::THREADS - 1) / Cfg::THREADS;
  static constexpr int LDS = ROWS + Cfg::PAD;  // shared row pitch (k rows of ROWS)
  float4 reg[PER_THREAD];

  // g: operand base; ld: its row stride; rows_total: M or N; (r0, k0): tile origin.
  __device__ __forceinline__ void load(const float* __restrict__ g, int64_t ld, int rows_total, int K,
                                       int r0, int k0, int tid) {
#pragma unroll
    for (int i = 0; i < PER_THREAD; ++i) {
      const int c = tid + i * Cfg::THREADS;
      reg[i] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (CHUNKS % Cfg::THREADS != 0 && c >= CHUNKS) continue;
      if constexpr (KCONTIG) {
        const int r = c / (BK / 4), kc = (c % (BK / 4)) * 4;
        const int gr = r0 + r, gk = k0 + kc;
        if (gr < rows_total) reg[i] = load4(g + gr * ld + gk, K - gk);
      } else {
        const int k = c / (ROWS / 4), rc = (c % (ROWS / 4)) * 4;
        const int gk = k0 + k, gr = r0 + rc;
        if (gk < K) reg[i] = load4(g + gk * ld + gr, rows_total - gr);
      }
    }
  }

  // Stores the staged chunks into s[BK][LDS] (k rows of ROWS).
  __device__ __forceinline__ void store(float* __restrict__ s, int tid) const {
#pragma unroll
    for (int i = 0; i < PER_THREAD; ++i) {
      const int c = tid + i * Cfg::THREADS;
      if (CHUNKS % Cfg::THREADS != 0 && c >= CHUNKS) continue;
      if constexpr (KCONTIG) {
        const int r = c / (BK / 4), kc = (c % (BK / 4)) * 4;
        s[(kc + 0) * LDS + r] = reg[i].x;
        s[(kc + 1) * LDS + r] = reg[i].y;
        s[(kc + 2) * LDS + r] = reg[i].z;
        s[(kc + 3) * LDS + r] = reg[i].w;
      } else {
        const int k = c / (ROWS / 4), rc = (c % (ROWS / 4)) * 4;
        *reinterpret_cast<float4*>(s + k * LDS + rc) = reg[i];
      }
    }
  }
};

// grid: (tiles_m * tiles_n, 1, batches of this launch); block: 256 threads; static smem.
template <class Cfg, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS) gemm_f32_kernel(const GemmParams p) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  using LoaderA = OperandLoader<Cfg, BM, !TRANS_A>;  // A (M, K) is K-contiguous unless transposed
  using LoaderB = OperandLoader<Cfg, BN, TRANS_B>;   // B (N, K) when transposed is K-contiguous
  __shared__ __align__(16) float As[2][BK][LoaderA::LDS];  // op(A) tile as (BK, BM)
  __shared__ __align__(16) float Bs[2][BK][LoaderB::LDS];  // op(B) tile as (BK, BN)

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  int tile_m, tile_n;
  tile_coords(blockIdx.x, p.tiles_m, p.tiles_n, &tile_m, &tile_n);
  const int row0 = tile_m * BM, col0 = tile_n * BN;

  const int64_t batch = p.batch_base + blockIdx.z;
  const float* __restrict__ A = static_cast<const float*>(p.a) + batch * p.stride_a;
  const float* __restrict__ B = static_cast<const float*>(p.b) + batch * p.stride_b;
  float* __restrict__ C = static_cast<float*>(p.c) + batch * p.stride_c;  // (M, N)
  const int K = p.k;
  const int KT = (K + BK - 1) / BK;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  LoaderA la;
  LoaderB lb;
  la.load(A, p.lda, p.m, K, row0, 0, tid);
  lb.load(B, p.ldb, p.n, K, col0, 0, tid);
  la.store(&As[0][0][0], tid);
  lb.store(&Bs[0][0][0], tid);
  __syncthreads();

  for (int kt = 0; kt < KT; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < KT;
    if (more) {  // global -> registers; overlaps with the math below
      la.load(A, p.lda, p.m, K, row0, (kt + 1) * BK, tid);
      lb.load(B, p.ldb, p.n, K, col0, (kt + 1) * BK, tid);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int s = 0; s < Cfg::SUB_M; ++s) {
        const float4 v = *reinterpret_cast<const float4*>(&As[cur][k][s * Cfg::STEP_M + ty * 4]);
        a[4 * s + 0] = v.x; a[4 * s + 1] = v.y; a[4 * s + 2] = v.z; a[4 * s + 3] = v.w;
      }
#pragma unroll
      for (int s = 0; s < Cfg::SUB_N; ++s) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][k][s * Cfg::STEP_N + tx * 4]);
        b[4 * s + 0] = v.x; b[4 * s + 1] = v.y; b[4 * s + 2] = v.z; b[4 * s + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {  // the other buffer was last read in iteration kt-1, before its closing barrier
      la.store(&As[cur ^ 1][0][0], tid);
      lb.store(&Bs[cur ^ 1][0][0], tid);
    }
    __syncthreads();
  }

  // Epilogue: thread element (i, j) is row s_m*STEP_M + ty*4 + i%4, column s_n*STEP_N + tx*4 + j%4.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int row = row0 + (i / 4) * Cfg::STEP_M + ty * 4 + (i % 4);
    if (row >= p.m) continue;
    float* crow = C + row * p.ldc;
#pragma unroll
    for (int s = 0; s < Cfg::SUB_N; ++s) {
      const int col = col0 + s * Cfg::STEP_N + tx * 4;
      if (col >= p.n) continue;
      if (p.c_vec >= 4 && col + 3 < p.n && p.epilogue == ATH_GEMM_EPI_NONE) {  // GELU epilogues: store_c1
        float4 v = make_float4(p.alpha * acc[i][4 * s + 0], p.alpha * acc[i][4 * s + 1],
                               p.alpha * acc[i][4 * s + 2], p.alpha * acc[i][4 * s + 3]);
        float4* ptr = reinterpret_cast<float4*>(crow + col);
        if (p.beta != 0.f) {
          const float4 old = *ptr;
          v.x += p.beta * old.x; v.y += p.beta * old.y; v.z += p.beta * old.z; v.w += p.beta * old.w;
        }
        if (p.bias != nullptr) {
          const float* bias = static_cast<const float*>(p.bias) + col;
          v.x += bias[0]; v.y += bias[1]; v.z += bias[2]; v.w += bias[3];
        }
        *ptr = v;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (col + j < p.n) store_c1<float>(crow, col + j, col + j, acc[i][4 * s + j], p);
      }
    }
  }
}

template <class Cfg, bool TA, bool TB>
ath_status launch(GemmParams p, int nbatch, cudaStream_t stream) {
  p.tiles_m = ceil_div(p.m, Cfg::BM);
  p.tiles_n = ceil_div(p.n, Cfg::BN);
  const dim3 grid(static_cast<unsigned>(p.tiles_m) * static_cast<unsigned>(p.tiles_n), 1, static_cast<unsigned>(nbatch));
  gemm_f32_kernel<Cfg, TA, TB><<<grid, Cfg::THREADS, 0, stream>>>(p);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_gemm (f32)");
  return ATH_OK;
}

template <class Cfg>
ath_status launch_layout(const GemmParams& p, int nbatch, cudaStream_t stream) {
  const bool ta = p.trans_a != 0, tb = p.trans_b != 0;
  if (!ta && !tb) return launch<Cfg, false, false>(p, nbatch, stream);
  if (!ta && tb) return launch<Cfg, false, true>(p, nbatch, stream);
  if (ta && !tb) return launch<Cfg, true, false>(p, nbatch, stream);
  return launch<Cfg, true, true>(p, nbatch, stream);
}

}  // namespace

const char* f32_tile_name(F32Tile tile) {
  switch (tile) {
    case F32Tile::k128x128: return "f32_128x128";
    case F32Tile::k64x64: return "f32_64x64";
  }
  return "?";
}

ath_status launch_gemm_f32(GemmParams p, F32Tile tile, int nbatch, cudaStream_t stream) {
  switch (tile) {
    case F32Tile::k128x128: return launch_layout<F32Cfg128>(p, nbatch, stream);
    case F32Tile::k64x64: return launch_layout<F32Cfg64>(p, nbatch, stream);
  }
  return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: unknown f32 tile %d", static_cast<int>(tile));
}

}  // namespace ath::cuda::gemm

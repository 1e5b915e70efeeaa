// Shared pieces of the attention kernels (attention_fwd.cu, attention_bwd.cu):
//  - Params: the kernel parameter block built from ath_attention_args (see athanor.h for the
//    layout contract: q (B, Hq, Tq, D), k/v (B, Hkv, Tk, D), o (B, Hq, Tq, D) addressed by
//    batch/head/seq element strides with a contiguous last dim; lse (B, Hq, Tq) F32 contiguous);
//  - argument validation shared by forward and backward;
//  - tile movement (cp.async) and the two warp GEMM shapes every attention matmul reduces to, on
//    the PTX wrappers of ptx.cuh (cp.async, ldmatrix, mma.sync m16n8k16; fragment layouts there).
//
// With the fragment layouts of mma.sync.m16n8k16 (ptx.cuh), two consecutive C tiles (columns 0-7
// and 8-15) hold exactly the A fragment of a 16 x 16 tile once packed to 16-bit pairs: this is how
// P (softmax probabilities) and dS go from the accumulator of one matmul straight into the A
// operand of the next without shared memory.
//
// The ldmatrix address patterns below pick the four 8x8 matrices so that the registers land in
// the A / B fragment layouts.
//
// Shared-memory tiles are row-major with a row stride of D + kSmemPad elements: the 16-byte pad
// shifts consecutive rows by 4 banks, so the 8 row addresses of every ldmatrix phase (and the
// 16-byte cp.async writes) hit 8 distinct 4-bank groups: conflict-free without swizzling.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <type_traits>

#include "common.cuh"
#include "context.cuh"
#include "ptx.cuh"

namespace ath::cuda::attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kSmemPad = 8;  // 16-bit elements of padding per shared-memory row (16 bytes)

// Kernel parameters (by value). Element strides; dq shares q's strides, do shares o's, dk/dv
// share k/v's. Sequence lengths and head counts are validated to fit in int.
struct Params {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;           // (B, Hq, Tq) F32; forward may leave it NULL
  const void* dout;     // backward: (B, Hq, Tq, D) with o's strides
  void* dq;             // backward outputs (written)
  void* dk;
  void* dv;
  const float* delta;   // backward workspace (B, Hq, Tq) F32: rowsum(dO * O)
  int64_t q_sb, q_sh, q_st;
  int64_t k_sb, k_sh, k_st;
  int64_t v_sb, v_sh, v_st;
  int64_t o_sb, o_sh, o_st;
  int batch, heads_q, heads_kv, group, tq, tk;
  int causal;
  float scale;       // softmax scale on q.k
  float scale_log2;  // scale * log2(e): scores are exponentiated with exp2
};

inline Params make_params(const ath_attention_args& a) {
  Params p{};
  p.q = a.q; p.k = a.k; p.v = a.v; p.o = a.o; p.lse = a.lse;
  p.dout = a.dout; p.dq = a.dq; p.dk = a.dk; p.dv = a.dv; p.delta = nullptr;
  p.q_sb = a.q_sb; p.q_sh = a.q_sh; p.q_st = a.q_st;
  p.k_sb = a.k_sb; p.k_sh = a.k_sh; p.k_st = a.k_st;
  p.v_sb = a.v_sb; p.v_sh = a.v_sh; p.v_st = a.v_st;
  p.o_sb = a.o_sb; p.o_sh = a.o_sh; p.o_st = a.o_st;
  p.batch = static_cast<int>(a.batch);
  p.heads_q = static_cast<int>(a.heads_q);
  p.heads_kv = static_cast<int>(a.heads_kv);
  p.group = static_cast<int>(a.heads_q / a.heads_kv);
  p.tq = static_cast<int>(a.tq);
  p.tk = static_cast<int>(a.tk);
  p.causal = a.causal ? 1 : 0;
  p.scale = a.scale;
  p.scale_log2 = a.scale * kLog2e;
  return p;
}

// Validates the arguments of ath_cuda_attention_fwd / _bwd. Shapes must fit the launch grids
// (batch and heads go to gridDim.z / gridDim.y, at most 65535) and int indexing (T <= 2^30).
inline ath_status validate(const ath_attention_args* a, const char* op, bool backward) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is NULL", op);
  constexpr int64_t kMaxGrid = 65535, kMaxT = int64_t{1} << 30;
  if (a->batch < 0 || a->batch > kMaxGrid)
    return ::ath::fail(ATH_ERR_INVALID, "%s: batch=%lld must be in [0, %lld]", op, (long long)a->batch, (long long)kMaxGrid);
  if (a->heads_q < 1 || a->heads_q > kMaxGrid)
    return ::ath::fail(ATH_ERR_INVALID, "%s: heads_q=%lld must be in [1, %lld]", op, (long long)a->heads_q, (long long)kMaxGrid);
  if (a->heads_kv < 1 || a->heads_kv > a->heads_q || a->heads_q % a->heads_kv != 0)
    return ::ath::fail(ATH_ERR_INVALID, "%s: heads_kv=%lld must be >= 1 and divide heads_q=%lld", op,
                       (long long)a->heads_kv, (long long)a->heads_q);
  if (a->tq < 0 || a->tq > kMaxT)
    return ::ath::fail(ATH_ERR_INVALID, "%s: tq=%lld must be in [0, %lld]", op, (long long)a->tq, (long long)kMaxT);
  if (a->tk < 0 || a->tk > kMaxT)
    return ::ath::fail(ATH_ERR_INVALID, "%s: tk=%lld must be in [0, %lld]", op, (long long)a->tk, (long long)kMaxT);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype=%d must be F32 (%d), BF16 (%d) or F16 (%d)", op, a->dtype,
                       (int)ATH_F32, (int)ATH_BF16, (int)ATH_F16);
  if (a->head_dim < 1 || a->head_dim > 256)
    return ::ath::fail(ATH_ERR_INVALID, "%s: head_dim=%lld must be in [1, 256]", op, (long long)a->head_dim);
  if (a->head_dim != 32 && a->head_dim != 64 && a->head_dim != 96 && a->head_dim != 128)
    return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: head_dim=%lld is not supported on CUDA (supported: 32, 64, 96, 128)",
                       op, (long long)a->head_dim);
  if (!std::isfinite(a->scale))
    return ::ath::fail(ATH_ERR_INVALID, "%s: scale=%g must be finite", op, (double)a->scale);
  const int64_t strides[12] = {a->q_sb, a->q_sh, a->q_st, a->k_sb, a->k_sh, a->k_st,
                               a->v_sb, a->v_sh, a->v_st, a->o_sb, a->o_sh, a->o_st};
  static const char* const names[12] = {"q_sb", "q_sh", "q_st", "k_sb", "k_sh", "k_st",
                                        "v_sb", "v_sh", "v_st", "o_sb", "o_sh", "o_st"};
  for (int i = 0; i < 12; ++i)
    if (strides[i] < 0)
      return ::ath::fail(ATH_ERR_INVALID, "%s: %s=%lld must be >= 0", op, names[i], (long long)strides[i]);
  const bool has_q = a->batch * a->tq > 0, has_k = a->batch * a->tk > 0;
  if (has_q && (a->q == nullptr || a->o == nullptr))
    return ::ath::fail(ATH_ERR_INVALID, "%s: q and o must not be NULL (q=%p o=%p)", op, a->q, (void*)a->o);
  if (has_k && (a->k == nullptr || a->v == nullptr))
    return ::ath::fail(ATH_ERR_INVALID, "%s: k and v must not be NULL (k=%p v=%p)", op, a->k, a->v);
  if (backward) {
    if (has_q && (a->lse == nullptr || a->dout == nullptr || a->dq == nullptr))
      return ::ath::fail(ATH_ERR_INVALID, "%s: lse, dout and dq must not be NULL (lse=%p dout=%p dq=%p)", op,
                         (void*)a->lse, a->dout, a->dq);
    if (has_k && (a->dk == nullptr || a->dv == nullptr))
      return ::ath::fail(ATH_ERR_INVALID, "%s: dk and dv must not be NULL (dk=%p dv=%p)", op, a->dk, a->dv);
  }
  return ATH_OK;
}

// The tensor-core kernels move 16-byte chunks (8 elements of 16 bits): every tensor they touch
// needs a 16-byte aligned base and strides that are multiples of 8 elements. Otherwise the
// launchers fall back to the SIMT kernels.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
inline bool strides8(int64_t sb, int64_t sh, int64_t st) { return sb % 8 == 0 && sh % 8 == 0 && st % 8 == 0; }
inline bool tensor_core_layout_ok(const ath_attention_args& a, bool backward) {
  bool ok = aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && strides8(a.q_sb, a.q_sh, a.q_st) &&
            strides8(a.k_sb, a.k_sh, a.k_st) && strides8(a.v_sb, a.v_sh, a.v_st);
  if (backward) {
    ok = ok && aligned16(a.dout) && aligned16(a.dq) && aligned16(a.dk) && aligned16(a.dv) &&
         strides8(a.o_sb, a.o_sh, a.o_st);
  } else {
    ok = ok && aligned16(a.o) && strides8(a.o_sb, a.o_sh, a.o_st);
  }
  return ok;
}

// The Hopper forward (attention_fwd_wgmma.cu, sm_90a): whether it takes these arguments on `dev`
// (compute capability 9.0, BF16/F16, D 64 or 128, Tk > 0, tensor-core layout, positive strides),
// and its launcher. ath_cuda_attention_fwd calls it only with the Hopper switch on.
bool attention_fwd_wgmma_ok(const ath_attention_args& a, const DeviceProps& dev);
ath_status launch_attention_fwd_wgmma(const ath_attention_args& a, const Params& p, cudaStream_t stream);

// ------------------------------------------------------------------ register helpers
// Two floats -> one b32 register of two 16-bit values (lo in the low half), round to nearest.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t u;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&u, &v, 4);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&u, &v, 4);
  }
  return u;
}

// 2^x on the SFU (ex2.approx: ~2 ulp, exp2(-inf) = +0). Used by the tensor-core kernels whose
// probabilities are rounded to 16 bits anyway; the SIMT kernels use exp2f.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ------------------------------------------------------------------ tile movement
// Issues cp.async copies of rows [row0, row0 + ROWS) of a (rows_total, D) row-major matrix with
// row stride ld (elements) into a shared tile (ROWS, D + kSmemPad); rows >= rows_total are
// zero-filled. All NTHREADS threads of the block take part; the caller commits the group.
template <int ROWS, int D, int NTHREADS, typename T>
__device__ __forceinline__ void load_tile_async(T* smem, const T* base, int64_t ld, int row0, int rows_total,
                                                int tid) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = ROWS * kChunksPerRow;
  constexpr int kIters = (kChunks + NTHREADS - 1) / NTHREADS;
  constexpr int kStride = D + kSmemPad;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int c = tid + it * NTHREADS;
    if (kChunks % NTHREADS == 0 || c < kChunks) {
      const int r = c / kChunksPerRow, cc = c % kChunksPerRow;
      const bool valid = row0 + r < rows_total;
      const T* src = valid ? base + (row0 + r) * ld + cc * 8 : base;
      cp_async_16(smem_addr(smem + r * kStride + cc * 8), src, valid ? 16 : 0);
    }
  }
}

// Copies a shared tile (ROWS, D + kSmemPad) to rows [row0, row0 + ROWS) of a row-major global
// matrix with row stride ld, skipping rows >= rows_total; 16-byte stores, coalesced along rows.
template <int ROWS, int D, int NTHREADS, typename T>
__device__ __forceinline__ void store_tile(T* base, int64_t ld, int row0, int rows_total, const T* smem, int tid) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kChunks = ROWS * kChunksPerRow;
  constexpr int kIters = (kChunks + NTHREADS - 1) / NTHREADS;
  constexpr int kStride = D + kSmemPad;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int c = tid + it * NTHREADS;
    if (kChunks % NTHREADS == 0 || c < kChunks) {
      const int r = c / kChunksPerRow, cc = c % kChunksPerRow;
      if (row0 + r < rows_total)
        *reinterpret_cast<uint4*>(base + (row0 + r) * ld + cc * 8) =
            *reinterpret_cast<const uint4*>(smem + r * kStride + cc * 8);
    }
  }
}

// Writes one warp's accumulator rows acc[MT][N/8][4] (MT 16-row tiles starting at shared row
// `row0`), multiplied by per-row factors mul[MT][2] (rows g and g + 8), as T pairs into a shared
// tile with row stride STRIDE. Bank-conflict-free: rows differ by STRIDE/2 = 4 (mod 32) words.
template <typename T, int MT, int N, int STRIDE>
__device__ __forceinline__ void stage_acc(T* smem, int row0, const float (&acc)[MT][N / 8][4],
                                          const float (&mul)[MT][2], int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt) {
      T* p0 = smem + (row0 + mt * 16 + g) * STRIDE + nt * 8 + 2 * t;
      T* p1 = p0 + 8 * STRIDE;
      *reinterpret_cast<uint32_t*>(p0) = pack2<T>(acc[mt][nt][0] * mul[mt][0], acc[mt][nt][1] * mul[mt][0]);
      *reinterpret_cast<uint32_t*>(p1) = pack2<T>(acc[mt][nt][2] * mul[mt][1], acc[mt][nt][3] * mul[mt][1]);
    }
  }
}

// ------------------------------------------------------------------ warp GEMMs
// Every attention matmul is one of two shapes, computed by one warp on 16-row tiles:
//
// (1) acc (16*MT x N) += A (16*MT x K) * B^T, B stored (N x K) row-major in shared memory
//     (S = Q K^T, dP = dO V^T, and their transposes S^T = K Q^T, dP^T = V dO^T).
//     A comes from registers (a[MT][K/16][4], loaded once with load_a_frags) or, in the _smem
//     variant, straight from a shared tile one k-step at a time (fewer live registers).
//     B fragments come from ldmatrix (no .trans): matrix 0 = rows n..n+7, cols k..k+7 -> b[0] of
//     column tile n/8; matrix 1 = same rows, cols k+8.. -> b[1]; matrices 2, 3 the same for rows
//     n+8..n+15 (the next column tile).
//
// (2) acc (16*MT x N) += P (16*MT x K) * B, P in registers as F32 accumulators p[MT][K/8][4] of
//     an earlier matmul, B stored (K x N) row-major in shared memory (O += P V, dV += P^T dO,
//     dK += dS^T Q, dQ += dS K). B fragments come from ldmatrix.trans: matrix 0 = rows k..k+7,
//     cols n..n+7 -> b[0] of column tile n/8; matrix 1 = rows k+8.. -> b[1]; matrices 2, 3 the
//     same for cols n+8..n+15.

// Loads A fragments of a (16*MT x K) tile whose first row is `a_s` (row stride STRIDE).
template <int MT, int K, int STRIDE, typename T>
__device__ __forceinline__ void load_a_frags(uint32_t (&a)[MT][K / 16][4], const T* a_s, int lane) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int ks = 0; ks < K / 16; ++ks)
      ldmatrix_x4(a[mt][ks], smem_addr(a_s + (mt * 16 + (lane & 15)) * STRIDE + ks * 16 + (lane >> 4) * 8));
}

template <typename T, int MT, int N, int K, int STRIDE>
__device__ __forceinline__ void gemm_abt(float (&acc)[MT][N / 8][4], const uint32_t (&a)[MT][K / 16][4],
                                         const T* b_s, int lane) {
  const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) << 3;
#pragma unroll
  for (int ks = 0; ks < K / 16; ++ks) {
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, smem_addr(b_s + (np * 16 + b_row) * STRIDE + ks * 16 + b_col));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_16816<T>(acc[mt][2 * np], a[mt][ks], b[0], b[1]);
        mma_16816<T>(acc[mt][2 * np + 1], a[mt][ks], b[2], b[3]);
      }
    }
  }
}

template <typename T, int MT, int N, int K, int STRIDE>
__device__ __forceinline__ void gemm_abt_smem(float (&acc)[MT][N / 8][4], const T* a_s, const T* b_s, int lane) {
  const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) << 3;
#pragma unroll
  for (int ks = 0; ks < K / 16; ++ks) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
      ldmatrix_x4(a[mt], smem_addr(a_s + (mt * 16 + (lane & 15)) * STRIDE + ks * 16 + (lane >> 4) * 8));
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, smem_addr(b_s + (np * 16 + b_row) * STRIDE + ks * 16 + b_col));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_16816<T>(acc[mt][2 * np], a[mt], b[0], b[1]);
        mma_16816<T>(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

template <typename T, int MT, int K, int N, int STRIDE>
__device__ __forceinline__ void gemm_pv(float (&acc)[MT][N / 8][4], const float (&p)[MT][K / 8][4], const T* b_s,
                                        int lane) {
  const int b_row = (lane & 7) + (((lane >> 3) & 1) << 3), b_col = (lane >> 4) << 3;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      a[mt][0] = pack2<T>(p[mt][2 * kk][0], p[mt][2 * kk][1]);
      a[mt][1] = pack2<T>(p[mt][2 * kk][2], p[mt][2 * kk][3]);
      a[mt][2] = pack2<T>(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
      a[mt][3] = pack2<T>(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
    }
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, smem_addr(b_s + (kk * 16 + b_row) * STRIDE + np * 16 + b_col));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma_16816<T>(acc[mt][2 * np], a[mt], b[0], b[1]);
        mma_16816<T>(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

}  // namespace ath::cuda::attn

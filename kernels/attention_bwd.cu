// Scaled dot-product attention, backward: ath_cuda_attention_bwd.
//
// Given q, k, v, o, dO and the forward's lse (layouts as in attention_fwd.cu / athanor.h; dO has
// o's strides, dq q's, dk/dv k's/v's), with P = softmax(scale * Q K^T) under the same causal rule:
//   dV = P^T dO
//   dP = dO V^T,  dS = P * (dP - delta),  delta_i = rowsum(dO_i * O_i)
//   dQ = scale * dS K,   dK = scale * dS^T Q
// summed over the query heads of each kv group for dK and dV. All of dq, dk, dv are WRITTEN.
//
// FlashAttention-2 structure, made deterministic (no atomics, fixed summation order, so results
// are bit-reproducible run to run) by splitting the work in three launches:
//  1. delta kernel: delta (B, Hq, Tq) F32 = rowsum(dO * O), in the context's scratch arena
//     (the op's only scratch: 4 * B * Hq * Tq bytes).
//  2. dK/dV kernel: one block per (key block, kv head, batch); K and V tiles stay in shared memory
//     while the block loops over the query heads of its group and over the query blocks that can
//     see its keys (Q, dO, lse, delta double-buffered with cp.async), recomputing P from lse.
//     Each warp owns 16 keys, so S^T, P^T, dP^T and dS^T live in its registers and feed the
//     dV += P^T dO and dK += dS^T Q tensor-core products directly.
//  3. dQ kernel: one block per (query block, q head, batch); Q and dO stay in shared memory while
//     K/V tiles stream through a double buffer; each warp owns 16 query rows and recomputes
//     S, P, dP, dS for them, accumulating dQ += dS K.
// This recomputes S and dP twice (7 instead of 5 matmuls per tile pair) in exchange for no
// atomics and no (Tq x Tk) storage.
//
// BF16/F16 with 16-byte aligned layouts use the tensor-core kernels (mma.sync m16n8k16, F32
// accumulation); F32, and 16-bit layouts that are not 16-byte aligned, use SIMT kernels with the
// same math (one warp per row, 32-row tiles in shared memory).
#include <algorithm>

#include "attention_common.cuh"

namespace ath::cuda::attn {
namespace {

constexpr const char* kOpBwd = "ath_cuda_attention_bwd";

// ------------------------------------------------------------------ 1. delta = rowsum(dO * O)
constexpr int kDeltaRows = 8;  // rows per 256-thread block, one warp each

template <typename T, int D>
__global__ void __launch_bounds__(32 * kDeltaRows) attention_bwd_delta_kernel(const Params p, float* delta) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads_q * p.tq;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kDeltaRows + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kDeltaRows) {
    const int i = static_cast<int>(row % p.tq);
    const int64_t bh = row / p.tq;
    const int h = static_cast<int>(bh % p.heads_q), b = static_cast<int>(bh / p.heads_q);
    const int64_t off = b * p.o_sb + h * p.o_sh + i * p.o_st;
    const T* o = static_cast<const T*>(p.o) + off;
    const T* dout = static_cast<const T*>(p.dout) + off;
    float acc = 0.f;
#pragma unroll
    for (int c = 0; c < D / 32; ++c) acc = fmaf(to_f32(o[lane + 32 * c]), to_f32(dout[lane + 32 * c]), acc);
    acc = warp_sum(acc);
    if (lane == 0) delta[row] = acc;  // (B, Hq, Tq) contiguous
  }
}

// ------------------------------------------------------------------ 2. dK, dV (tensor cores)
// 4 warps x 16 keys = 64 keys per block; query tiles of kBlockM rows. Per thread:
//   dK, dV accumulators dk[1][D/8][4], dv[1][D/8][4]  F32 (D/2 floats each)
//   S^T / P^T and dP^T / dS^T tiles st[1][kBlockM/8][4], dpt[1][kBlockM/8][4]  F32
// Warp w owns keys n0 + 16 w .. n0 + 16 w + 15 (the rows of its S^T tiles); in each 16 x 8 tile
// this thread holds keys g, g + 8 and queries 2t, 2t + 1 of the 8-query column tile.
// D <= 64 also keeps the warp's K and V rows as A fragments in registers (kKVInRegs); larger D
// re-reads them from shared memory per k-step and uses 32-row query tiles to fit the registers.
// ptxas (CUDA 13, sm_90a, BF16, no spills): D=32 142 regs, D=64 232, D=96 215, D=128 252.
template <int D>
struct BwdKVConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockN = 16 * kWarps;        // keys per block
  static constexpr int kBlockM = D <= 64 ? 64 : 32;  // queries per pipeline stage
  static constexpr bool kKVInRegs = D <= 64;
  static constexpr int kStride = D + kSmemPad;
  static constexpr int kKVElems = kBlockN * kStride;  // K (or V) tile
  static constexpr int kQElems = kBlockM * kStride;   // one stage of Q (or dO)
  // Shared memory: K | V (kBlockN, kStride) | Q (2, kBlockM, kStride) | dO (2, kBlockM, kStride)
  //                | lse (2, kBlockM) F32 | delta (2, kBlockM) F32
  static constexpr int kSmemBytes = (2 * kKVElems + 4 * kQElems) * 2 + 4 * kBlockM * 4;
};

template <typename T, int D>
__global__ void __launch_bounds__(BwdKVConfig<D>::kThreads)
attention_bwd_dkdv_mma_kernel(const Params p) {
  using Cfg = BwdKVConfig<D>;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, S = Cfg::kStride, NT = Cfg::kThreads;
  constexpr int kMT8 = BM / 8;  // 8-query column tiles of S^T
  constexpr int kDT = D / 8;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* k_s = reinterpret_cast<T*>(smem_raw);                            // (BN, S)
  T* v_s = k_s + Cfg::kKVElems;                                       // (BN, S)
  T* q_s = v_s + Cfg::kKVElems;                                       // (2, BM, S)
  T* do_s = q_s + 2 * Cfg::kQElems;                                   // (2, BM, S)
  float* lse_s = reinterpret_cast<float*>(do_s + 2 * Cfg::kQElems);  // (2, BM)
  float* dlt_s = lse_s + 2 * BM;                                      // (2, BM)

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int hk = blockIdx.y, b = blockIdx.z;
  const int n0 = blockIdx.x * BN;
  const int off = p.tk - p.tq;  // causal: key j is seen by queries i >= j - off

  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;  // (Tk, D)
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;  // (Tk, D)

  // Work list: (query head of the group, query block) pairs, heads outer. Under causal masking
  // the query blocks before m_first see none of this block's keys and are skipped.
  const int m_blocks = (p.tq + BM - 1) / BM;
  const int m_first = p.causal ? max(0, n0 - off) / BM : 0;
  const int per_head = max(0, m_blocks - m_first);
  const int iters = per_head * p.group;

  auto load_stage = [&](int it, int buf) {
    const int h = hk * p.group + it / per_head;
    const int m0 = (m_first + it % per_head) * BM;
    const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
    const T* dout = static_cast<const T*>(p.dout) + b * p.o_sb + h * p.o_sh;
    load_tile_async<BM, D, NT>(q_s + buf * Cfg::kQElems, q, p.q_st, m0, p.tq, tid);
    load_tile_async<BM, D, NT>(do_s + buf * Cfg::kQElems, dout, p.o_st, m0, p.tq, tid);
    const int64_t row0 = (static_cast<int64_t>(b) * p.heads_q + h) * p.tq;
    for (int r = tid; r < BM; r += NT) {  // rows past Tq: zero-filled (and masked below)
      const bool ok = m0 + r < p.tq;
      const int64_t src = row0 + (ok ? m0 + r : 0);
      cp_async_4(smem_addr(lse_s + buf * BM + r), p.lse + src, ok ? 4 : 0);
      cp_async_4(smem_addr(dlt_s + buf * BM + r), p.delta + src, ok ? 4 : 0);
    }
  };

  // Prologue: groups [K, V], [stage 0].
  load_tile_async<BN, D, NT>(k_s, k, p.k_st, n0, p.tk, tid);
  load_tile_async<BN, D, NT>(v_s, v, p.v_st, n0, p.tk, tid);
  cp_async_commit();
  if (iters > 0) load_stage(0, 0);
  cp_async_commit();

  const T* kw_s = k_s + warp * 16 * S;  // this warp's 16 keys
  const T* vw_s = v_s + warp * 16 * S;
  uint32_t kf[1][Cfg::kKVInRegs ? D / 16 : 1][4], vf[1][Cfg::kKVInRegs ? D / 16 : 1][4];
  cp_async_wait<1>();  // K, V landed
  __syncthreads();
  if constexpr (Cfg::kKVInRegs) {
    load_a_frags<1, D, S>(kf, kw_s, lane);
    load_a_frags<1, D, S>(vf, vw_s, lane);
  }

  float dk[1][kDT][4], dv[1][kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[0][dt][e] = dv[0][dt][e] = 0.f;

  for (int it = 0; it < iters; ++it) {
    const int buf = it & 1;
    if (it + 1 < iters) load_stage(it + 1, buf ^ 1);  // that stage was freed by the last barrier
    cp_async_commit();
    cp_async_wait<1>();  // stage `buf` landed
    __syncthreads();

    const int m0 = (m_first + it % per_head) * BM;
    const T* qb = q_s + buf * Cfg::kQElems;
    const T* dob = do_s + buf * Cfg::kQElems;
    const float* lseb = lse_s + buf * BM;
    const float* dltb = dlt_s + buf * BM;

    // S^T = K Q^T (16 keys x BM queries per warp).
    float st[1][kMT8][4], dpt[1][kMT8][4];
#pragma unroll
    for (int nt = 0; nt < kMT8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[0][nt][e] = dpt[0][nt][e] = 0.f;
    if constexpr (Cfg::kKVInRegs)
      gemm_abt<T, 1, BM, D, S>(st, kf, qb, lane);
    else
      gemm_abt_smem<T, 1, BM, D, S>(st, kw_s, qb, lane);

    // P^T = exp(scale * S^T - lse[query]); zero where the query is past Tq or (causal) the key
    // is past its diagonal. Element (nt, e): key n0 + 16 warp + g (+8 for e >= 2), query
    // m0 + 8 nt + 2 t + (e & 1).
    const bool need_mask = m0 + BM > p.tq || (p.causal && m0 + off < n0 + BN - 1);
#pragma unroll
    for (int nt = 0; nt < kMT8; ++nt) {
      const float2 l2 = *reinterpret_cast<const float2*>(lseb + nt * 8 + 2 * t);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float lse_i = (e & 1) ? l2.y : l2.x;
        float pr = fast_exp2(st[0][nt][e] * p.scale_log2 - lse_i * kLog2e);
        if (need_mask) {
          const int i = m0 + nt * 8 + 2 * t + (e & 1);
          const int j = n0 + warp * 16 + g + ((e >> 1) << 3);
          if (i >= p.tq || (p.causal && j > i + off)) pr = 0.f;
        }
        st[0][nt][e] = pr;
      }
    }

    // dP^T = V dO^T.
    if constexpr (Cfg::kKVInRegs)
      gemm_abt<T, 1, BM, D, S>(dpt, vf, dob, lane);
    else
      gemm_abt_smem<T, 1, BM, D, S>(dpt, vw_s, dob, lane);

    // dV += P^T dO.
    gemm_pv<T, 1, BM, D, S>(dv, st, dob, lane);

    // dS^T = P^T * (dP^T - delta[query]).
#pragma unroll
    for (int nt = 0; nt < kMT8; ++nt) {
      const float2 d2 = *reinterpret_cast<const float2*>(dltb + nt * 8 + 2 * t);
#pragma unroll
      for (int e = 0; e < 4; ++e) dpt[0][nt][e] = st[0][nt][e] * (dpt[0][nt][e] - ((e & 1) ? d2.y : d2.x));
    }

    // dK += dS^T Q (scaled once at the end).
    gemm_pv<T, 1, BM, D, S>(dk, dpt, qb, lane);
    __syncthreads();  // every warp is done with stage `buf` before it is refilled
  }

  // Epilogue: stage dK (times scale) and dV through the K / V tiles, then 16-byte stores.
  cp_async_wait<0>();
  __syncthreads();
  const float ks[1][2] = {{p.scale, p.scale}}, ones[1][2] = {{1.f, 1.f}};
  stage_acc<T, 1, D, S>(k_s, warp * 16, dk, ks, lane);
  stage_acc<T, 1, D, S>(v_s, warp * 16, dv, ones, lane);
  __syncthreads();
  T* dkg = static_cast<T*>(p.dk) + b * p.k_sb + hk * p.k_sh;
  T* dvg = static_cast<T*>(p.dv) + b * p.v_sb + hk * p.v_sh;
  store_tile<BN, D, NT>(dkg, p.k_st, n0, p.tk, k_s, tid);
  store_tile<BN, D, NT>(dvg, p.v_st, n0, p.tk, v_s, tid);
}

// ------------------------------------------------------------------ 3. dQ (tensor cores)
// 4 warps x 16 query rows = 64 rows per block, key tiles of 64. Per thread:
//   dQ accumulator dq[1][D/8][4] F32, S / P and dP / dS tiles s[1][8][4], dp[1][8][4] F32.
// D <= 64 keeps the warp's Q and dO rows as A fragments in registers (kQInRegs).
// ptxas (CUDA 13, sm_90a, BF16, no spills): D=32 132 regs, D=64 181, D=96 238, D=128 254.
// Shared memory at D=128 is 102 KB: 2 blocks per SM on Hopper, 1 on A100 (164 KB).
template <int D>
struct BwdQConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = 16 * kWarps;  // query rows per block
  static constexpr int kBlockN = 64;           // keys per K/V tile
  static constexpr bool kQInRegs = D <= 64;
  static constexpr int kStride = D + kSmemPad;
  static constexpr int kQElems = kBlockM * kStride;
  static constexpr int kKVElems = kBlockN * kStride;
  // Shared memory: Q | dO (kBlockM, kStride) | K (2, kBlockN, kStride) | V (2, kBlockN, kStride).
  static constexpr int kSmemBytes = (2 * kQElems + 4 * kKVElems) * 2;
};

template <typename T, int D>
__global__ void __launch_bounds__(BwdQConfig<D>::kThreads)
attention_bwd_dq_mma_kernel(const Params p) {
  using Cfg = BwdQConfig<D>;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, S = Cfg::kStride, NT = Cfg::kThreads;
  constexpr int kNT = BN / 8;
  constexpr int kDT = D / 8;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* q_s = reinterpret_cast<T*>(smem_raw);  // (BM, S); later the dQ staging tile
  T* do_s = q_s + Cfg::kQElems;             // (BM, S)
  T* k_s = do_s + Cfg::kQElems;             // (2, BN, S)
  T* v_s = k_s + 2 * Cfg::kKVElems;         // (2, BN, S)

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);  // heavy first
  const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int m0 = m_block * BM;
  const int off = p.tk - p.tq;

  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;          // (Tq, D)
  const T* dout = static_cast<const T*>(p.dout) + b * p.o_sb + h * p.o_sh;    // (Tq, D)
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;         // (Tk, D)
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;         // (Tk, D)
  T* dq = static_cast<T*>(p.dq) + b * p.q_sb + h * p.q_sh;                    // (Tq, D)

  const int n_end = p.causal ? min(p.tk, m0 + BM + off) : p.tk;
  const int n_tiles = n_end > 0 ? (n_end + BN - 1) / BN : 0;
  if (n_tiles == 0) {  // no row of this block sees a key: dq = 0
    for (int c = tid; c < BM * (D / 8); c += NT) {
      const int r = c / (D / 8), cc = c % (D / 8);
      if (m0 + r < p.tq) *reinterpret_cast<uint4*>(dq + (m0 + r) * p.q_st + cc * 8) = make_uint4(0, 0, 0, 0);
    }
    return;
  }

  // Per-thread row statistics for rows g and g + 8 of the warp: lse in the exp2 domain (+inf
  // past Tq, so P = 0 there) and delta.
  const int64_t row0 = (static_cast<int64_t>(b) * p.heads_q + h) * p.tq;
  float lse2[2], dlt[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = m0 + warp * 16 + g + 8 * r;
    lse2[r] = i < p.tq ? p.lse[row0 + i] * kLog2e : INFINITY;
    dlt[r] = i < p.tq ? p.delta[row0 + i] : 0.f;
  }

  // Prologue: groups [Q, dO, K0], [V0].
  load_tile_async<BM, D, NT>(q_s, q, p.q_st, m0, p.tq, tid);
  load_tile_async<BM, D, NT>(do_s, dout, p.o_st, m0, p.tq, tid);
  load_tile_async<BN, D, NT>(k_s, k, p.k_st, 0, p.tk, tid);
  cp_async_commit();
  load_tile_async<BN, D, NT>(v_s, v, p.v_st, 0, p.tk, tid);
  cp_async_commit();

  const T* qw_s = q_s + warp * 16 * S;
  const T* dow_s = do_s + warp * 16 * S;
  uint32_t qf[1][Cfg::kQInRegs ? D / 16 : 1][4], dof[1][Cfg::kQInRegs ? D / 16 : 1][4];
  cp_async_wait<1>();  // Q, dO, K0 landed
  __syncthreads();
  if constexpr (Cfg::kQInRegs) {
    load_a_frags<1, D, S>(qf, qw_s, lane);
    load_a_frags<1, D, S>(dof, dow_s, lane);
  }

  float dq_acc[1][kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dq_acc[0][dt][e] = 0.f;

  for (int j = 0; j < n_tiles; ++j) {
    const int n0 = j * BN, buf = j & 1;
    if (j + 1 < n_tiles) load_tile_async<BN, D, NT>(k_s + (buf ^ 1) * Cfg::kKVElems, k, p.k_st, n0 + BN, p.tk, tid);
    cp_async_commit();
    if (j + 1 < n_tiles) load_tile_async<BN, D, NT>(v_s + (buf ^ 1) * Cfg::kKVElems, v, p.v_st, n0 + BN, p.tk, tid);
    cp_async_commit();
    cp_async_wait<3>();  // K(j) landed
    __syncthreads();
    const T* kb = k_s + buf * Cfg::kKVElems;
    const T* vb = v_s + buf * Cfg::kKVElems;

    // S = Q K^T, P = exp(scale * S - lse), masked past Tk and past the causal diagonal.
    float s[1][kNT][4], dp[1][kNT][4];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[0][nt][e] = dp[0][nt][e] = 0.f;
    if constexpr (Cfg::kQInRegs)
      gemm_abt<T, 1, BN, D, S>(s, qf, kb, lane);
    else
      gemm_abt_smem<T, 1, BN, D, S>(s, qw_s, kb, lane);
    const bool need_mask = n0 + BN > p.tk || (p.causal && n0 + BN - 1 > m0 + off);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float pr = fast_exp2(s[0][nt][e] * p.scale_log2 - lse2[e >> 1]);
        if (need_mask) {
          const int i = m0 + warp * 16 + g + ((e >> 1) << 3);
          const int jj = n0 + nt * 8 + 2 * t + (e & 1);
          if (jj >= p.tk || (p.causal && jj > i + off)) pr = 0.f;
        }
        s[0][nt][e] = pr;
      }

    cp_async_wait<2>();  // V(j) landed
    __syncthreads();
    // dP = dO V^T, dS = P * (dP - delta).
    if constexpr (Cfg::kQInRegs)
      gemm_abt<T, 1, BN, D, S>(dp, dof, vb, lane);
    else
      gemm_abt_smem<T, 1, BN, D, S>(dp, dow_s, vb, lane);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[0][nt][e] = s[0][nt][e] * (dp[0][nt][e] - dlt[e >> 1]);

    // dQ += dS K (scaled once at the end).
    gemm_pv<T, 1, BN, D, S>(dq_acc, dp, kb, lane);
    __syncthreads();  // every warp is done with stage `buf` before it is refilled
  }

  // Epilogue: stage scale * dQ through this warp's rows of the Q tile, then 16-byte stores.
  const float sc[1][2] = {{p.scale, p.scale}};
  stage_acc<T, 1, D, S>(q_s, warp * 16, dq_acc, sc, lane);
  __syncthreads();
  store_tile<BM, D, NT>(dq, p.q_st, m0, p.tq, q_s, tid);
}

// ------------------------------------------------------------------ SIMT kernels (F32 / unaligned)
// A warp per row, kSimtRows rows per block, 32-row tiles of the other operand in shared memory
// (one row per lane when scoring, then lanes own output columns d = lane + 32 c).
constexpr int kSimtRows = 8;
constexpr int kSimtThreads = 32 * kSimtRows;

// dQ: warp = query row i; tiles of 32 keys.
template <typename T, int D>
__global__ void __launch_bounds__(kSimtThreads) attention_bwd_dq_simt_kernel(const Params p) {
  constexpr int kPer = D / 32;
  __shared__ float q_s[kSimtRows][D], do_s[kSimtRows][D];
  __shared__ float k_s[32][D + 1], v_s[32][D + 1];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int m0 = m_block * kSimtRows, i = m0 + warp;
  const int off = p.tk - p.tq;
  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
  const T* dout = static_cast<const T*>(p.dout) + b * p.o_sb + h * p.o_sh;
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;

  const int64_t row = (static_cast<int64_t>(b) * p.heads_q + h) * p.tq + i;
  const bool valid_row = i < p.tq;
  const float lse2 = valid_row ? p.lse[row] * kLog2e : INFINITY;
  const float dlt = valid_row ? p.delta[row] : 0.f;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    q_s[warp][lane + 32 * c] = valid_row ? to_f32(q[i * p.q_st + lane + 32 * c]) : 0.f;
    do_s[warp][lane + 32 * c] = valid_row ? to_f32(dout[i * p.o_st + lane + 32 * c]) : 0.f;
  }

  float acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.f;
  const int n_end = p.causal ? min(p.tk, m0 + kSimtRows + off) : p.tk;
  for (int n0 = 0; n0 < n_end; n0 += 32) {
    __syncthreads();
    for (int e = tid; e < 32 * D; e += kSimtThreads) {
      const int r = e / D, d = e % D, jj = n0 + r;
      k_s[r][d] = jj < p.tk ? to_f32(k[jj * p.k_st + d]) : 0.f;
      v_s[r][d] = jj < p.tk ? to_f32(v[jj * p.v_st + d]) : 0.f;
    }
    __syncthreads();
    const int jj = n0 + lane;
    float ds = 0.f;
    if (valid_row && jj < p.tk && (!p.causal || jj <= i + off)) {
      float s = 0.f, dp = 0.f;
#pragma unroll 8
      for (int d = 0; d < D; ++d) {
        s = fmaf(q_s[warp][d], k_s[lane][d], s);
        dp = fmaf(do_s[warp][d], v_s[lane][d], dp);
      }
      const float pr = exp2f(s * p.scale_log2 - lse2);
      ds = pr * (dp - dlt);
    }
    for (int r = 0; r < 32; ++r) {
      const float dsr = __shfl_sync(0xffffffffu, ds, r);
#pragma unroll
      for (int c = 0; c < kPer; ++c) acc[c] = fmaf(dsr, k_s[r][lane + 32 * c], acc[c]);
    }
  }
  if (valid_row) {
    T* dq = static_cast<T*>(p.dq) + b * p.q_sb + h * p.q_sh + i * p.q_st;
#pragma unroll
    for (int c = 0; c < kPer; ++c) dq[lane + 32 * c] = from_f32<T>(acc[c] * p.scale);
  }
}

// dK, dV: warp = key row j of kv head hk; loops over the group's query heads and 32-query tiles.
template <typename T, int D>
__global__ void __launch_bounds__(kSimtThreads) attention_bwd_dkdv_simt_kernel(const Params p) {
  constexpr int kPer = D / 32;
  __shared__ float kr_s[kSimtRows][D], vr_s[kSimtRows][D];
  __shared__ float q_s[32][D + 1], do_s[32][D + 1];
  __shared__ float lse_s[32], dlt_s[32];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int hk = blockIdx.y, b = blockIdx.z;
  const int j0 = blockIdx.x * kSimtRows, j = j0 + warp;
  const int off = p.tk - p.tq;
  const bool valid_key = j < p.tk;
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    kr_s[warp][lane + 32 * c] = valid_key ? to_f32(k[j * p.k_st + lane + 32 * c]) : 0.f;
    vr_s[warp][lane + 32 * c] = valid_key ? to_f32(v[j * p.v_st + lane + 32 * c]) : 0.f;
  }

  float dk[kPer], dv[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) dk[c] = dv[c] = 0.f;
  const int i_first = p.causal ? max(0, j0 - off) : 0;  // earliest query that sees key j0
  for (int h = hk * p.group; h < (hk + 1) * p.group; ++h) {
    const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
    const T* dout = static_cast<const T*>(p.dout) + b * p.o_sb + h * p.o_sh;
    const int64_t row0 = (static_cast<int64_t>(b) * p.heads_q + h) * p.tq;
    for (int m0 = i_first; m0 < p.tq; m0 += 32) {
      __syncthreads();
      for (int e = tid; e < 32 * D; e += kSimtThreads) {
        const int r = e / D, d = e % D, ii = m0 + r;
        q_s[r][d] = ii < p.tq ? to_f32(q[ii * p.q_st + d]) : 0.f;
        do_s[r][d] = ii < p.tq ? to_f32(dout[ii * p.o_st + d]) : 0.f;
      }
      if (tid < 32) {
        const int ii = m0 + tid;
        lse_s[tid] = ii < p.tq ? p.lse[row0 + ii] : 0.f;
        dlt_s[tid] = ii < p.tq ? p.delta[row0 + ii] : 0.f;
      }
      __syncthreads();
      const int i = m0 + lane;
      float pr = 0.f, ds = 0.f;
      if (valid_key && i < p.tq && (!p.causal || j <= i + off)) {
        float s = 0.f, dp = 0.f;
#pragma unroll 8
        for (int d = 0; d < D; ++d) {
          s = fmaf(q_s[lane][d], kr_s[warp][d], s);
          dp = fmaf(do_s[lane][d], vr_s[warp][d], dp);
        }
        pr = exp2f(s * p.scale_log2 - lse_s[lane] * kLog2e);
        ds = pr * (dp - dlt_s[lane]);
      }
      for (int r = 0; r < 32; ++r) {
        const float pj = __shfl_sync(0xffffffffu, pr, r);
        const float dsj = __shfl_sync(0xffffffffu, ds, r);
#pragma unroll
        for (int c = 0; c < kPer; ++c) {
          dv[c] = fmaf(pj, do_s[r][lane + 32 * c], dv[c]);
          dk[c] = fmaf(dsj, q_s[r][lane + 32 * c], dk[c]);
        }
      }
    }
  }
  if (valid_key) {
    T* dkg = static_cast<T*>(p.dk) + b * p.k_sb + hk * p.k_sh + j * p.k_st;
    T* dvg = static_cast<T*>(p.dv) + b * p.v_sb + hk * p.v_sh + j * p.v_st;
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      dkg[lane + 32 * c] = from_f32<T>(dk[c] * p.scale);
      dvg[lane + 32 * c] = from_f32<T>(dv[c]);
    }
  }
}

// ------------------------------------------------------------------ launchers
template <typename T, int D>
ath_status launch_delta(const Params& p, float* delta, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(p.batch) * p.heads_q * p.tq;
  const int64_t blocks = std::min<int64_t>((rows + kDeltaRows - 1) / kDeltaRows, int64_t{1} << 20);
  attention_bwd_delta_kernel<T, D><<<static_cast<unsigned>(blocks), 32 * kDeltaRows, 0, stream>>>(p, delta);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_bwd (delta kernel)");
  return ATH_OK;
}

template <typename T, int D>
ath_status launch_mma(const Params& p, cudaStream_t stream) {
  if (p.tk > 0) {
    using Cfg = BwdKVConfig<D>;
    auto kernel = attention_bwd_dkdv_mma_kernel<T, D>;
    ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    const dim3 grid((p.tk + Cfg::kBlockN - 1) / Cfg::kBlockN, p.heads_kv, p.batch);
    kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p);
    ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_bwd (dK/dV tensor-core kernel)");
  }
  if (p.tq > 0) {
    using Cfg = BwdQConfig<D>;
    auto kernel = attention_bwd_dq_mma_kernel<T, D>;
    ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    const dim3 grid((p.tq + Cfg::kBlockM - 1) / Cfg::kBlockM, p.heads_q, p.batch);
    kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p);
    ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_bwd (dQ tensor-core kernel)");
  }
  return ATH_OK;
}

template <typename T, int D>
ath_status launch_simt(const Params& p, cudaStream_t stream) {
  if (p.tk > 0) {
    const dim3 grid((p.tk + kSimtRows - 1) / kSimtRows, p.heads_kv, p.batch);
    attention_bwd_dkdv_simt_kernel<T, D><<<grid, kSimtThreads, 0, stream>>>(p);
    ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_bwd (dK/dV SIMT kernel)");
  }
  if (p.tq > 0) {
    const dim3 grid((p.tq + kSimtRows - 1) / kSimtRows, p.heads_q, p.batch);
    attention_bwd_dq_simt_kernel<T, D><<<grid, kSimtThreads, 0, stream>>>(p);
    ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_bwd (dQ SIMT kernel)");
  }
  return ATH_OK;
}

// delta: (B, Hq, Tq) F32 scratch, written by the delta kernel when tq > 0.
template <typename T, int D>
ath_status run(Params p, float* delta, bool tensor_cores, cudaStream_t stream) {
  if (p.tq > 0) {
    p.delta = delta;
    ATH_TRY((launch_delta<T, D>(p, delta, stream)));
  }
  if constexpr (!std::is_same_v<T, float>) {
    if (tensor_cores) return launch_mma<T, D>(p, stream);
  }
  return launch_simt<T, D>(p, stream);
}

template <typename T>
ath_status run_for_dim(const Params& p, float* delta, int64_t head_dim, bool tensor_cores, cudaStream_t stream) {
  switch (head_dim) {
    case 32: return run<T, 32>(p, delta, tensor_cores, stream);
    case 64: return run<T, 64>(p, delta, tensor_cores, stream);
    case 96: return run<T, 96>(p, delta, tensor_cores, stream);
    case 128: return run<T, 128>(p, delta, tensor_cores, stream);
    default:
      return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: head_dim=%lld is not supported on CUDA (supported: 32, 64, 96, 128)",
                         kOpBwd, (long long)head_dim);
  }
}

}  // namespace
}  // namespace ath::cuda::attn

extern "C" ath_status ath_cuda_attention_bwd(const ath_attention_args* a, const ath_cuda_ctx* ctx) {
  using namespace ath::cuda::attn;
  ATH_GUARD_BEGIN
  ATH_TRY(validate(a, kOpBwd, true));
  ATH_TRY(ath::cuda::check_context(kOpBwd, ctx));
  if (a->batch == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(kOpBwd, ctx, &oc));
  ath::cuda::Scratch scratch = oc.arena();
  float* delta = scratch.take<float>(static_cast<size_t>(a->batch * a->heads_q * a->tq));  // (B, Hq, Tq)
  ATH_TRY(scratch.fits(kOpBwd));
  const Params p = make_params(*a);
  const bool tc = a->dtype != ATH_F32 && tensor_core_layout_ok(*a, true);
  ATH_DISPATCH_FLOAT(a->dtype, T, kOpBwd, { return run_for_dim<T>(p, delta, a->head_dim, tc, oc.stream); })
  ATH_GUARD_END(kOpBwd)
  return ATH_OK;
}

// Scaled dot-product attention, forward, for Hopper (sm_90a): the FlashAttention-3 structure with
// wgmma for both products and the bulk tensor copy engine (TMA) for every load.
//
//   o[b, h, i, :] = sum_j softmax_j(scale * q[b, h, i, :] . k[b, hk, j, :]) v[b, hk, j, :]
//   lse[b, h, i]  = log sum_j exp(scale * q . k)          (natural log, F32)
// hk = h / (Hq / Hkv) (grouped-query attention); causal: query i sees key j iff j <= i + (Tk - Tq)
// (bottom-right aligned); a row that sees no key gets o = 0 and lse = -inf. The C ABI contract of
// ath_cuda_attention_fwd (athanor.h), which dispatches here (attention_fwd.cu) only when the Hopper
// switch is on (ATHANOR_CUDA_HOPPER=1), the device has compute capability 9.0 and:
//   dtype BF16 or F16; D = 64 or 128; Tk > 0; q, k, v, o 16-byte aligned with batch / head / seq
//   strides multiples of 8 elements (the tensor maps' 16-byte rule) and nonzero wherever that
//   dimension has more than one index; the last dim contiguous (the ABI's rule). lse (B, Hq, Tq)
//   F32 contiguous or NULL.
// Anything else takes the mma.sync kernels of attention_fwd.cu. NOT YET RUN ON A GPU: written and
// compiled (ptxas: no spills; the PTX holds wgmma.mma_async) without a device to test it on.
// Tile arithmetic (which key tiles a block loads, which need element-wise masks) lives in
// native/common/attention_tiles.h, tested on the host (test_attention_tiles.cpp).
//
// Block: 128 query rows of one (b, h), 384 threads = 3 warpgroups (as gemm_wgmma.cu):
//   warpgroup 0, the producer: setmaxnreg.dec to 24 registers; one thread issues the TMA copies:
//     the Q tile (128 rows x D) once, then key tile after key tile, K and V of kBN = 128 keys each,
//     into a kStages-deep ring (4 stages for D = 64, 2 for D = 128). K and V have their own full
//     and empty mbarriers: S = Q K^T starts before V has landed, and K's slot is refilled as soon
//     as both consumers have their S (empty: one arrival per consumer warp, 8 in all);
//   warpgroups 1 and 2, the consumers: setmaxnreg.inc to 240; consumer c owns the rows
//     [64c, 64c + 64) of the block. Per key tile:
//       S (64 x 128) = Q K^T: D/16 wgmma m64n128k16, both operands from shared memory (K-major);
//       the online softmax in F32 registers in the exp2 domain (scores times scale * log2 e, the
//       running max and partial sums of the quad of threads that holds a row, O rescaled by
//       2^(old max - new max));
//       P rounded to 16 bits in registers: the S accumulator pairs of two adjacent 8-column blocks
//       are exactly the register-A fragment of a k16 step (ptx_sm90.cuh), so
//       O (64 x D) += P V: kBN/16 wgmma m64nDk16 with A from registers and V from shared memory
//       (MN-major: keys are the K dimension, D is contiguous).
// Two schedules of the consumers (template PIPELINED; ATHANOR_ATTN_WGMMA_SCHEDULE=simple picks
// the first, else the second):
//   simple     each product waited for before its result is used: no overlap inside a warpgroup;
//   pipelined  (FlashAttention-3's two overlaps) inside a warpgroup, S(j) = Q K(j)^T and
//              O += P(j-1) V(j-1) are issued back to back and the softmax of S(j) runs while the
//              tensor cores still do P(j-1) V(j-1) (one more register set: P(j-1) stays live);
//              between the two consumers, ping-pong: each issues its products only after the
//              other has issued its own (named barriers), so one's softmax overlaps the other's
//              products. ptxas reports no wgmma serialization (C7514) for either.
// Causal: key tiles past the diagonal of the block's last real row are never loaded
// (native/common/attention_tiles.h); a tile is masked element-wise only when it reaches past Tk or
// past the diagonal of the consumer's first row. Tails: the copy engine zero-fills rows past Tq and
// Tk (the tensor maps end there, so no load crosses into the next head); scores of keys past Tk
// are masked; rows past Tq are computed and not stored. A block with no visible key writes o = 0
// and lse = -inf without loading anything.
//
// Shared memory (1024-byte aligned, 128-byte swizzle as TMA writes it; a row of 64 elements is one
// 128-byte swizzle row; "chunk" = the 64-column slice [64 c, 64 c + 64) of D):
//   Q        [D/64 chunks][128 rows][128 B]                         16 or 32 KiB
//   K, V     [kStages][D/64 chunks][kBN rows][128 B] each           16 or 32 KiB per stage
//   barriers q_full, k_full[kStages], v_full[kStages], k_empty[kStages], v_empty[kStages]
// Descriptors: Q and K are K-major (stride byte offset 1024 between 8-row atoms; the k16 step
// advances 32 bytes inside a chunk, then moves to the next chunk); V is MN-major (leading byte
// offset = one chunk, kBN x 128 bytes, between 64-column slices of D; stride byte offset 1024
// between 8-key atoms; the k16 step advances 16 keys = 2048 bytes), the layout gemm_wgmma.cu
// checked on an H200 for its N-major B operand.
// Registers per consumer thread: S 64 F32, O D/2 F32, P 32 (16-bit pairs), the row statistics,
// under the 240 of setmaxnreg. ptxas (CUDA 13.0, sm_90a) reports 168 registers at entry (the cap
// of 384 threads x 1 block; the warpgroups then move to 24 / 240), 0 bytes of stack and no spills
// for all 8 instantiations (BF16/F16 x D 64/128 x the two schedules).
// O is written straight from the accumulators as 16-bit pairs (4-byte stores; a row's 16 bytes
// per warp instruction): a small share of the traffic for T >= 1k, to be replaced by a staged
// TMA store if the GPU shows it matters.
// Deterministic: no atomics, fixed reduction order (not the same bits as the mma.sync kernel).
#include <cuda.h>  // CUtensorMap

#include <cstdlib>
#include <cstring>

#include "attention_common.cuh"
#include "common/attention_tiles.h"
#include "ptx_sm90.cuh"
#include "tensor_map.cuh"

namespace ath::cuda::attn {
namespace {

constexpr const char* kOpWg = "ath_cuda_attention_fwd (wgmma)";
constexpr int kThreadsWg = 384;  // producer + 2 consumer warpgroups

template <int D>
struct WgFwdCfg {
  static constexpr int kBM = 128;                 // query rows per block (64 per consumer)
  static constexpr int kBN = 128;                 // keys per tile
  static constexpr int kStages = D == 64 ? 4 : 2;
  static constexpr int kChunks = D / 64;          // 128-byte column slices of a row
  static constexpr int kQChunk = kBM * 128;       // bytes of one Q chunk
  static constexpr int kKVChunk = kBN * 128;      // bytes of one K or V chunk
  static constexpr int kQBytes = kChunks * kQChunk;
  static constexpr int kKVBytes = kChunks * kKVChunk;  // one K (or V) tile
  static constexpr int kBarBytes = (1 + 4 * kStages) * 8;
  // + 1024: the dynamic shared memory base is only 16-byte aligned; the kernel rounds it up.
  static constexpr int kSmemBytes = kQBytes + 2 * kStages * kKVBytes + kBarBytes + 1024;
  static constexpr int kSAcc = kBN / 2;  // S accumulators per consumer thread (64 x kBN / 128)
  static constexpr int kOAcc = D / 2;    // O accumulators per consumer thread
  static_assert(D == 64 || D == 128, "head dim");
  static_assert(kBN == 128, "issue_qk is m64n128k16");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory of one Hopper block");
};

// Named barriers of the ping-pong schedule: consumer c may issue its products once barrier
// kSchedBar + c completes (its 128 threads sync, the other consumer's 128 arrive).
constexpr int kSchedBar = 1;

// Issues S (64 x 128) = Q K^T of consumer c (rows [64c, 64c + 64) of the Q tile at q_s) against the
// K tile at ks: D/16 wgmma k16 steps, both operands K-major from shared memory, one commit group.
// The first step ignores the old accumulators (scale-d 0), so sacc needs no zeroing.
template <typename T, int D>
__device__ __forceinline__ void issue_qk(float (&sacc)[64], uint32_t q_s, uint32_t ks, int c) {
  using Cfg = WgFwdCfg<D>;
  sm90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t koff = (kk % 4) * 32;  // k16 step inside the chunk kk / 4
    const uint64_t da = sm90::smem_desc_sw128(q_s + (kk / 4) * Cfg::kQChunk + c * 64 * 128 + koff, 16, 1024);
    const uint64_t db = sm90::smem_desc_sw128(ks + (kk / 4) * Cfg::kKVChunk + koff, 16, 1024);
    sm90::wgmma_m64n128k16<0, 0>(sacc, da, db, kk > 0, static_cast<T*>(nullptr));
  }
  sm90::wgmma_commit();
}

// Keeps O and P fixed in their registers around an asynchronous O += P V: before it (the rescaled
// O and the packed P complete before the wgmma fence) and after its wait (P stays alive, unmoved,
// until the tensor cores have read it; O is read only after the wait).
template <int D, int BN>
__device__ __forceinline__ void fence_pv(float (&o_acc)[D / 2], uint32_t (&pf)[BN / 16][4]) {
  sm90::fence_regs(o_acc);
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) sm90::fence_regs(pf[kk]);
}

// Issues O (64 x D) += P V: kBN/16 wgmma k16 steps, P from registers, V (the tile at vs, MN-major)
// from shared memory, one commit group.
template <typename T, int D>
__device__ __forceinline__ void issue_pv(float (&o_acc)[D / 2], uint32_t (&pf)[WgFwdCfg<D>::kBN / 16][4],
                                         uint32_t vs) {
  using Cfg = WgFwdCfg<D>;
  fence_pv<D, Cfg::kBN>(o_acc, pf);
  sm90::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < Cfg::kBN / 16; ++kk) {
    const uint64_t db = sm90::smem_desc_sw128(vs + kk * 2048, Cfg::kKVChunk, 1024);
    if constexpr (D == 64) {
      sm90::wgmma_m64n64k16_rs<1>(o_acc, pf[kk], db, 1, static_cast<T*>(nullptr));
    } else {
      sm90::wgmma_m64n128k16_rs<1>(o_acc, pf[kk], db, 1, static_cast<T*>(nullptr));
    }
  }
  sm90::wgmma_commit();
}

// One key tile's online softmax, in place: the scores S of rows row0, row0 + 8 (this thread's
// columns 8 jj + 2 q4 + {0, 1}) go to the exp2 domain, keys past Tk and (causal) past each row's
// diagonal become -inf when the tile is `masked`, the running max and this thread's partial sums
// are updated, and sacc ends holding P = 2^(x - max). corr[r] = 2^(old max - new max) rescales
// the O rows.
template <int BN>
__device__ __forceinline__ void online_softmax(float (&sacc)[BN / 2], float (&row_max)[2], float (&row_sum)[2],
                                               float (&corr)[2], bool masked, int n0, int row0, int q4,
                                               const Params& p) {
  const int off = p.tk - p.tq;  // causal: row i sees keys j <= i + off
#pragma unroll
  for (int jj = 0; jj < BN / 8; ++jj)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float x = sacc[4 * jj + e] * p.scale_log2;
      if (masked) {
        const int i = row0 + 8 * (e >> 1);
        const int key = n0 + 8 * jj + 2 * q4 + (e & 1);
        if (key >= p.tk || (p.causal && key > i + off)) x = -INFINITY;
      }
      sacc[4 * jj + e] = x;
    }
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float mx = row_max[hr];
#pragma unroll
    for (int jj = 0; jj < BN / 8; ++jj) mx = fmaxf(mx, fmaxf(sacc[4 * jj + 2 * hr], sacc[4 * jj + 2 * hr + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the quad holds the row's columns
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    // A row with nothing visible yet keeps max = -inf: subtract 0 instead (P = 0, no NaN).
    const float m_use = mx == -INFINITY ? 0.f : mx;
    corr[hr] = fast_exp2(row_max[hr] - m_use);
    row_max[hr] = mx;
    float sum = 0.f;
#pragma unroll
    for (int jj = 0; jj < BN / 8; ++jj) {
      const float p0 = fast_exp2(sacc[4 * jj + 2 * hr] - m_use);
      const float p1 = fast_exp2(sacc[4 * jj + 2 * hr + 1] - m_use);
      sacc[4 * jj + 2 * hr] = p0;
      sacc[4 * jj + 2 * hr + 1] = p1;
      sum += p0 + p1;
    }
    row_sum[hr] = row_sum[hr] * corr[hr] + sum;
  }
}

// O rows *= corr, and P (F32 in sacc) packed to 16-bit register-A fragments, one per k16 step of
// keys (the 8-column blocks 2 kk and 2 kk + 1).
template <typename T, int D, int BN>
__device__ __forceinline__ void rescale_and_pack(float (&o_acc)[D / 2], const float (&corr)[2],
                                                 const float (&sacc)[BN / 2], uint32_t (&pf)[BN / 16][4]) {
#pragma unroll
  for (int jd = 0; jd < D / 8; ++jd)
#pragma unroll
    for (int e = 0; e < 4; ++e) o_acc[4 * jd + e] *= corr[e >> 1];
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    pf[kk][0] = pack2<T>(sacc[8 * kk + 0], sacc[8 * kk + 1]);
    pf[kk][1] = pack2<T>(sacc[8 * kk + 2], sacc[8 * kk + 3]);
    pf[kk][2] = pack2<T>(sacc[8 * kk + 4], sacc[8 * kk + 5]);
    pf[kk][3] = pack2<T>(sacc[8 * kk + 6], sacc[8 * kk + 7]);
  }
}

template <typename T, int D, bool PIPELINED>
__global__ void __launch_bounds__(kThreadsWg, 1)
    attention_fwd_wgmma_kernel(const __grid_constant__ CUtensorMap tma_q, const __grid_constant__ CUtensorMap tma_k,
                               const __grid_constant__ CUtensorMap tma_v, const Params p) {
#if ATH_SM90A
  using Cfg = WgFwdCfg<D>;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, S = Cfg::kStages;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t q_s = base;                            // Q chunks
  const uint32_t k_s = q_s + Cfg::kQBytes;              // K stage s at k_s + s * kKVBytes
  const uint32_t v_s = k_s + S * Cfg::kKVBytes;         // V stage s at v_s + s * kKVBytes
  const uint32_t bars = v_s + S * Cfg::kKVBytes;
  const uint32_t q_full = bars;
  auto k_full = [&](int s) { return bars + 8u * (1 + s); };
  auto v_full = [&](int s) { return bars + 8u * (1 + S + s); };
  auto k_empty = [&](int s) { return bars + 8u * (1 + 2 * S + s); };
  auto v_empty = [&](int s) { return bars + 8u * (1 + 3 * S + s); };

  // Reverse block order: under causal masking the last query blocks have the most key tiles, so
  // they start first and the tail of the grid is short.
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int m0 = m_block * BM;
  const bool causal = p.causal != 0;
  const int n_tiles = attn_tiles::key_tiles(attn_tiles::key_end(m0, BM, p.tq, p.tk, causal), BN);
  T* o = static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh;  // (Tq, D), row stride o_st
  float* lse = p.lse ? p.lse + (static_cast<int64_t>(b) * p.heads_q + h) * p.tq : nullptr;  // (Tq)

  if (n_tiles == 0) {  // no row of this block sees a key (uniform over the block): o = 0, lse = -inf
    for (int c = threadIdx.x; c < BM * (D / 8); c += kThreadsWg) {
      const int r = c / (D / 8), cc = c % (D / 8);
      if (m0 + r < p.tq) *reinterpret_cast<uint4*>(o + (m0 + r) * p.o_st + cc * 8) = make_uint4(0, 0, 0, 0);
    }
    if (lse != nullptr)
      for (int r = threadIdx.x; r < BM; r += kThreadsWg)
        if (m0 + r < p.tq) lse[m0 + r] = -INFINITY;
    return;
  }

  if (threadIdx.x == 0) {
    sm90::mbar_init(q_full, 1);
#pragma unroll
    for (int s = 0; s < S; ++s) {
      sm90::mbar_init(k_full(s), 1);
      sm90::mbar_init(v_full(s), 1);
      sm90::mbar_init(k_empty(s), 2 * 4);  // one arrival per consumer warp
      sm90::mbar_init(v_empty(s), 2 * 4);
    }
    sm90::mbar_fence_init();
  }
  __syncthreads();

  const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
  if (wg == 0) {
    // ---------------- producer
    sm90::setmaxnreg_dec<24>();
    if (t == 0) {
      sm90::tma_prefetch_desc(&tma_q);
      sm90::tma_prefetch_desc(&tma_k);
      sm90::tma_prefetch_desc(&tma_v);
      sm90::mbar_arrive_expect_tx(q_full, Cfg::kQBytes);
#pragma unroll
      for (int ch = 0; ch < Cfg::kChunks; ++ch)  // box: 64 d x 128 rows
        sm90::tma_load_4d(q_s + ch * Cfg::kQChunk, &tma_q, q_full, 64 * ch, m0, h, b);
      for (int j = 0; j < n_tiles; ++j) {
        const int s = j % S;
        const uint32_t free_parity = ((j / S) & 1) ^ 1u;  // a fresh barrier passes parity 1 at once
        const uint32_t ks = k_s + s * Cfg::kKVBytes, vs = v_s + s * Cfg::kKVBytes;
        sm90::mbar_wait(k_empty(s), free_parity);
        sm90::mbar_arrive_expect_tx(k_full(s), Cfg::kKVBytes);
#pragma unroll
        for (int ch = 0; ch < Cfg::kChunks; ++ch)  // box: 64 d x kBN keys
          sm90::tma_load_4d(ks + ch * Cfg::kKVChunk, &tma_k, k_full(s), 64 * ch, j * BN, hk, b);
        sm90::mbar_wait(v_empty(s), free_parity);
        sm90::mbar_arrive_expect_tx(v_full(s), Cfg::kKVBytes);
#pragma unroll
        for (int ch = 0; ch < Cfg::kChunks; ++ch)
          sm90::tma_load_4d(vs + ch * Cfg::kKVChunk, &tma_v, v_full(s), 64 * ch, j * BN, hk, b);
      }
    }
  } else {
    // ---------------- consumers
    sm90::setmaxnreg_inc<240>();
    const int c = wg - 1;
    const int w = t / 32, lane = t % 32, g = lane / 4, q4 = lane % 4;
    const int r_first = m0 + 64 * c;         // this consumer's first row
    const int row0 = r_first + 16 * w + g;   // this thread's rows: row0 and row0 + 8

    // O accumulator: o_acc[4 jd + 2 hr + e] = O[row0 + 8 hr][8 jd + 2 q4 + e] (ptx_sm90.cuh's layout).
    float o_acc[Cfg::kOAcc];
#pragma unroll
    for (int i = 0; i < Cfg::kOAcc; ++i) o_acc[i] = 0.f;
    // row_max: running max of the exp2-domain scores of rows row0, row0 + 8 (the same in the 4
    // threads of the quad); row_sum: this thread's partial sum of 2^(x - row_max) over its columns.
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f}, corr[2];
    float sacc[Cfg::kSAcc];    // S, then P in F32
    uint32_t pf[BN / 16][4];   // P as register-A fragments

    sm90::mbar_wait(q_full, 0);
    if constexpr (!PIPELINED) {
      // Each product waited for before its result is used.
      for (int j = 0; j < n_tiles; ++j) {
        const int s = j % S;
        const uint32_t phase = (j / S) & 1;
        sm90::mbar_wait(k_full(s), phase);
        issue_qk<T, D>(sacc, q_s, k_s + s * Cfg::kKVBytes, c);
        sm90::wgmma_wait<0>();
        sm90::fence_regs(sacc);
        if (lane == 0) sm90::mbar_arrive(k_empty(s));  // this warp is done with K of stage s
        online_softmax<BN>(sacc, row_max, row_sum, corr,
                           attn_tiles::tile_masked(j * BN, BN, r_first, p.tq, p.tk, causal), j * BN, row0, q4, p);
        rescale_and_pack<T, D, BN>(o_acc, corr, sacc, pf);
        sm90::mbar_wait(v_full(s), phase);
        issue_pv<T, D>(o_acc, pf, v_s + s * Cfg::kKVBytes);
        sm90::wgmma_wait<0>();
        fence_pv<D, BN>(o_acc, pf);
        if (lane == 0) sm90::mbar_arrive(v_empty(s));  // and with V
      }
    } else {
      // Software pipeline inside the warpgroup: S(j) = Q K(j)^T and O += P(j-1) V(j-1) are issued
      // together; the softmax of S(j) runs while the tensor cores still do P(j-1) V(j-1). Ping-pong
      // between the consumers: each issues its two products only after the other has issued its own
      // (named barriers kSchedBar + c), so one warpgroup's softmax overlaps the other's products.
      // Consumer 1 opens the turn of consumer 0 and skips its last hand-over (every sync matched).
      if (c == 1) sm90::named_barrier_arrive(kSchedBar + 0, 256);
      // Tile 0: S(0) alone (the loop below keeps one shape of wgmma groups, so that ptxas can follow
      // which accumulators are still in flight).
      sm90::mbar_wait(k_full(0), 0);
      sm90::named_barrier_sync(kSchedBar + c, 256);
      issue_qk<T, D>(sacc, q_s, k_s, c);
      if (c == 0 || n_tiles > 1) sm90::named_barrier_arrive(kSchedBar + (c ^ 1), 256);
      sm90::wgmma_wait<0>();
      sm90::fence_regs(sacc);
      if (lane == 0) sm90::mbar_arrive(k_empty(0));
      online_softmax<BN>(sacc, row_max, row_sum, corr, attn_tiles::tile_masked(0, BN, r_first, p.tq, p.tk, causal), 0,
                         row0, q4, p);
      rescale_and_pack<T, D, BN>(o_acc, corr, sacc, pf);
      for (int j = 1; j < n_tiles; ++j) {
        const int s = j % S, sp = (j - 1) % S;  // stages of tiles j and j - 1
        const uint32_t phase = (j / S) & 1, phase_p = ((j - 1) / S) & 1;
        sm90::mbar_wait(k_full(s), phase);
        sm90::mbar_wait(v_full(sp), phase_p);
        sm90::named_barrier_sync(kSchedBar + c, 256);
        issue_qk<T, D>(sacc, q_s, k_s + s * Cfg::kKVBytes, c);
        issue_pv<T, D>(o_acc, pf, v_s + sp * Cfg::kKVBytes);
        if (c == 0 || j + 1 < n_tiles) sm90::named_barrier_arrive(kSchedBar + (c ^ 1), 256);
        sm90::wgmma_wait<1>();  // S(j) done (groups complete in order); P(j-1) V(j-1) may still run
        sm90::fence_regs(sacc);
        if (lane == 0) sm90::mbar_arrive(k_empty(s));
        online_softmax<BN>(sacc, row_max, row_sum, corr,
                           attn_tiles::tile_masked(j * BN, BN, r_first, p.tq, p.tk, causal), j * BN, row0, q4, p);
        sm90::wgmma_wait<0>();  // P(j-1) V(j-1) done: O may be rescaled and P overwritten
        fence_pv<D, BN>(o_acc, pf);
        if (lane == 0) sm90::mbar_arrive(v_empty(sp));
        rescale_and_pack<T, D, BN>(o_acc, corr, sacc, pf);
      }
      const int sl = (n_tiles - 1) % S;
      sm90::mbar_wait(v_full(sl), ((n_tiles - 1) / S) & 1);
      issue_pv<T, D>(o_acc, pf, v_s + sl * Cfg::kKVBytes);
      sm90::wgmma_wait<0>();
      fence_pv<D, BN>(o_acc, pf);
    }

    // ---- epilogue: reduce the row sums over the quad, normalize, write lse and O (16-bit pairs).
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float l = row_sum[hr];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int i = row0 + 8 * hr;
      if (i < p.tq) {
        if (lse != nullptr && q4 == 0) lse[i] = row_max[hr] == -INFINITY ? -INFINITY : (row_max[hr] + log2f(l)) * kLn2;
        T* orow = o + static_cast<int64_t>(i) * p.o_st + 2 * q4;
#pragma unroll
        for (int jd = 0; jd < D / 8; ++jd)
          *reinterpret_cast<uint32_t*>(orow + 8 * jd) =
              pack2<T>(o_acc[4 * jd + 2 * hr] * inv, o_acc[4 * jd + 2 * hr + 1] * inv);
      }
    }
  }
#else
  // Built for another target (sm_80, or PTX for newer chips): attention_fwd.cu never launches it there.
  (void)p;
  (void)WgFwdCfg<D>::kSAcc;
  (void)WgFwdCfg<D>::kOAcc;
  (void)kSchedBar;
  __trap();
#endif
}

// A (B, H, T, D) operand as a 4-d tensor map (D, T, H, B), box (64, rows, 1, 1). A dimension with
// a single index gets the stride of a packed tensor (never used; keeps the driver's 16-byte rule).
ath_status make_bhtd_map(CUtensorMap* map, const void* base, int dtype, int64_t batch, int64_t heads, int64_t t,
                         int64_t d, int64_t sb, int64_t sh, int64_t st, int rows) {
  const int64_t st_ = t > 1 ? st : d, sh_ = heads > 1 ? sh : t * st_, sb_ = batch > 1 ? sb : heads * sh_;
  const int64_t dims[4] = {d, t, heads, batch};
  const int64_t strides[4] = {1, st_, sh_, sb_};
  const int box[4] = {64, rows, 1, 1};
  return make_tensor_map(map, kOpWg, base, dtype, 4, dims, strides, box);
}

template <typename T, int D, bool PIPELINED>
ath_status launch_wgmma(const CUtensorMap& mq, const CUtensorMap& mk, const CUtensorMap& mv, const Params& p,
                        cudaStream_t stream) {
  using Cfg = WgFwdCfg<D>;
  auto kernel = attention_fwd_wgmma_kernel<T, D, PIPELINED>;
  ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
  const dim3 grid((p.tq + Cfg::kBM - 1) / Cfg::kBM, p.heads_q, p.batch);
  kernel<<<grid, kThreadsWg, Cfg::kSmemBytes, stream>>>(mq, mk, mv, p);
  ATH_CUDA_CHECK_LAUNCH(kOpWg);
  return ATH_OK;
}

// The schedule: pipelined + ping-pong unless ATHANOR_ATTN_WGMMA_SCHEDULE=simple (read at every
// call; tests and benchmarks compare the two).
template <typename T, int D>
ath_status launch_dim(const ath_attention_args& a, const Params& p, cudaStream_t stream) {
  using Cfg = WgFwdCfg<D>;
  CUtensorMap mq, mk, mv;
  ATH_TRY(make_bhtd_map(&mq, a.q, a.dtype, a.batch, a.heads_q, a.tq, D, a.q_sb, a.q_sh, a.q_st, Cfg::kBM));
  ATH_TRY(make_bhtd_map(&mk, a.k, a.dtype, a.batch, a.heads_kv, a.tk, D, a.k_sb, a.k_sh, a.k_st, Cfg::kBN));
  ATH_TRY(make_bhtd_map(&mv, a.v, a.dtype, a.batch, a.heads_kv, a.tk, D, a.v_sb, a.v_sh, a.v_st, Cfg::kBN));
  const char* e = std::getenv("ATHANOR_ATTN_WGMMA_SCHEDULE");
  if (e != nullptr && std::strcmp(e, "simple") == 0) return launch_wgmma<T, D, false>(mq, mk, mv, p, stream);
  return launch_wgmma<T, D, true>(mq, mk, mv, p, stream);
}

// Strides of a dimension with more than one index must be positive (the copy engine cannot
// broadcast); 16-byte alignment and multiples of 8 are tensor_core_layout_ok's.
bool positive(int64_t n, int64_t stride) { return n <= 1 || stride > 0; }

}  // namespace

bool attention_fwd_wgmma_ok(const ath_attention_args& a, const DeviceProps& dev) {
  const int64_t d = a.head_dim;
  const int smem = d == 64 ? WgFwdCfg<64>::kSmemBytes : WgFwdCfg<128>::kSmemBytes;
  return dev.cc_major == 9 && dev.cc_minor == 0 && (a.dtype == ATH_BF16 || a.dtype == ATH_F16) &&
         (d == 64 || d == 128) && a.tk > 0 && smem <= dev.max_smem_optin && tensor_core_layout_ok(a, false) &&
         positive(a.batch, a.q_sb) && positive(a.batch, a.k_sb) && positive(a.batch, a.v_sb) &&
         positive(a.heads_q, a.q_sh) && positive(a.heads_kv, a.k_sh) && positive(a.heads_kv, a.v_sh) &&
         positive(a.tq, a.q_st) && positive(a.tk, a.k_st) && positive(a.tk, a.v_st);
}

ath_status launch_attention_fwd_wgmma(const ath_attention_args& a, const Params& p, cudaStream_t stream) {
  const bool bf16 = a.dtype == ATH_BF16;
  if (a.head_dim == 64) return bf16 ? launch_dim<__nv_bfloat16, 64>(a, p, stream) : launch_dim<__half, 64>(a, p, stream);
  if (a.head_dim == 128)
    return bf16 ? launch_dim<__nv_bfloat16, 128>(a, p, stream) : launch_dim<__half, 128>(a, p, stream);
  return ::ath::fail(ATH_ERR_INTERNAL, "%s: head_dim=%lld", kOpWg, (long long)a.head_dim);
}

}  // namespace ath::cuda::attn

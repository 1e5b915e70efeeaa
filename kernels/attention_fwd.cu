// Scaled dot-product attention, forward: ath_cuda_attention_fwd.
//
//   o[b, h, i, :] = sum_j softmax_j(scale * q[b, h, i, :] . k[b, hk, j, :]) v[b, hk, j, :]
//   lse[b, h, i]  = log sum_j exp(scale * q . k)          (natural log, F32)
// with hk = h / (Hq / Hkv) (grouped-query attention). Layout contract (athanor.h): q, o are
// (B, Hq, Tq, D) and k, v (B, Hkv, Tk, D) addressed by batch/head/seq element strides with a
// contiguous last dim; lse is (B, Hq, Tq) F32 contiguous and may be NULL. causal: query i sees
// key j iff j <= i + (Tk - Tq) (bottom-right aligned); a row that sees no key gets o = 0 and
// lse = -inf. D in {32, 64, 96, 128}.
//
// Two kernels:
//  - attention_fwd_mma_kernel (BF16/F16, 16-byte aligned layouts): FlashAttention-2. One block
//    owns kBlockM query rows of one (b, h); the Q tile is loaded once into shared memory; K/V
//    tiles of kBlockN keys stream through a two-stage cp.async double buffer; S = Q K^T and
//    O += P V run on
//    tensor cores (mma.sync m16n8k16, F32 accumulation); the softmax is online, in F32 registers,
//    in the exp2 domain. Causal tiles past the diagonal are never loaded; tiles that straddle it
//    (or the end of the keys) are masked element-wise.
//  - attention_fwd_simt_kernel (F32, or 16-bit layouts that are not 16-byte aligned): the same
//    online softmax with plain FMAs; a warp per query row, 32-key tiles in shared memory.
// Deterministic: no atomics, fixed reduction order.
// With the Hopper switch on (ATHANOR_CUDA_HOPPER=1) on a device of compute capability 9.0, the
// arguments attention_fwd_wgmma.cu takes (BF16/F16, D 64 or 128, aligned layouts) go to its sm_90a
// kernel instead (wgmma + TMA, FlashAttention-3 style; not yet run on a GPU).
#include "attention_common.cuh"

namespace ath::cuda::attn {
namespace {

constexpr const char* kOpFwd = "ath_cuda_attention_fwd";

// ------------------------------------------------------------------ tensor-core kernel
// Tile configuration per head dim (FlashAttention-2's shape): 4 warps, each owning 32 query rows
// (two 16-row MMA tiles, so every K/V fragment read from shared memory feeds two MMAs), a
// 128-row query block, and key tiles of 64 (D <= 64) or 32 (D >= 96) so that, per thread,
//   O accumulator o[2][D/8][4] F32  (D floats)
//   S / P tile    s[2][kBlockN/8][4] F32  (kBlockN floats)
// stay in registers without spilling. Q stays in its shared tile and is re-read per k-step
// (kQInRegs = true keeps its fragments in registers instead: fewer shared reads, D/2 more
// registers per thread). ptxas (CUDA 13, sm_90a, BF16): D=32 201 regs, D=64 252, D=96 251, D=128 255 with a
// 40-byte spill of epilogue addresses outside the main loop; 2 blocks (8 warps) per SM.
// Alternatives worth timing on a GPU: 8 warps x 16 rows with __launch_bounds__(256, 2)
// (<= 128 registers, 16 warps per SM, more shared-memory traffic per FLOP).
template <int D>
struct FwdConfig {
  static constexpr int kWarps = 4;
  static constexpr int kMTiles = 2;                   // 16-row MMA tiles per warp
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kWarpRows = 16 * kMTiles;
  static constexpr int kBlockM = kWarpRows * kWarps;  // query rows per block (128)
  static constexpr int kBlockN = D <= 64 ? 64 : 32;   // keys per K/V tile
  static constexpr bool kQInRegs = false;
  static constexpr int kMinBlocksPerSM = 1;           // __launch_bounds__ occupancy hint
  static constexpr int kStride = D + kSmemPad;        // shared row stride (elements)
  static constexpr int kQElems = kBlockM * kStride;   // Q tile, later the O staging tile
  static constexpr int kKVElems = kBlockN * kStride;  // one stage of K (or V)
  // Shared memory: Q (kBlockM, kStride) | K (2, kBlockN, kStride) | V (2, kBlockN, kStride).
  static constexpr int kSmemBytes = (kQElems + 4 * kKVElems) * 2;
  static_assert(D % 32 == 0 && D <= 128, "head dim");
  static_assert(kBlockN % 16 == 0, "key tile");
};

template <typename T, int D>
__global__ void __launch_bounds__(FwdConfig<D>::kThreads, FwdConfig<D>::kMinBlocksPerSM)
attention_fwd_mma_kernel(const Params p) {
  using Cfg = FwdConfig<D>;
  constexpr int MT = Cfg::kMTiles, BM = Cfg::kBlockM, BN = Cfg::kBlockN, S = Cfg::kStride;
  constexpr int NT = Cfg::kThreads;
  constexpr int kNT = BN / 8;  // 8-key column tiles of S
  constexpr int kDT = D / 8;   // 8-wide column tiles of O

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* q_s = reinterpret_cast<T*>(smem_raw);  // (BM, S)
  T* k_s = q_s + Cfg::kQElems;              // (2, BN, S)
  T* v_s = k_s + 2 * Cfg::kKVElems;         // (2, BN, S)

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  // Reverse block order: under causal masking the last query blocks have the most key tiles,
  // so they start first and the tail of the grid is short.
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int m0 = m_block * BM;
  const int off = p.tk - p.tq;  // causal: query i sees keys j <= i + off
  // Warp w owns block rows [32 w, 32 w + 32); m-tile mt of the warp covers 16 of them, and in
  // every 16 x 8 accumulator tile this thread holds rows g and g + 8, columns 2t and 2t + 1.
  const int warp_row0 = warp * Cfg::kWarpRows;

  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;    // (Tq, D), row stride q_st
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;   // (Tk, D), row stride k_st
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;   // (Tk, D), row stride v_st
  T* o = static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh;                // (Tq, D), row stride o_st
  float* lse = p.lse ? p.lse + (static_cast<int64_t>(b) * p.heads_q + h) * p.tq : nullptr;  // (Tq)

  // Keys [0, n_end) are visible to at least one row of this block.
  const int n_end = p.causal ? min(p.tk, m0 + BM + off) : p.tk;
  const int n_tiles = n_end > 0 ? (n_end + BN - 1) / BN : 0;

  if (n_tiles == 0) {  // no row of this block sees a key: o = 0, lse = -inf
    for (int c = tid; c < BM * (D / 8); c += NT) {
      const int r = c / (D / 8), cc = c % (D / 8);
      if (m0 + r < p.tq) *reinterpret_cast<uint4*>(o + (m0 + r) * p.o_st + cc * 8) = make_uint4(0, 0, 0, 0);
    }
    if (lse != nullptr)
      for (int r = tid; r < BM; r += NT)
        if (m0 + r < p.tq) lse[m0 + r] = -INFINITY;
    return;
  }

  // Prologue: cp.async groups [Q], [K0], [V0].
  load_tile_async<BM, D, NT>(q_s, q, p.q_st, m0, p.tq, tid);
  cp_async_commit();
  load_tile_async<BN, D, NT>(k_s, k, p.k_st, 0, p.tk, tid);
  cp_async_commit();
  load_tile_async<BN, D, NT>(v_s, v, p.v_st, 0, p.tk, tid);
  cp_async_commit();

  cp_async_wait<2>();  // Q landed
  __syncthreads();
  // Q fragments in registers (kQInRegs) or re-read from the resident shared tile per k-step.
  uint32_t qf[Cfg::kQInRegs ? MT : 1][Cfg::kQInRegs ? D / 16 : 1][4];
  if constexpr (Cfg::kQInRegs) load_a_frags<MT, D, S>(qf, q_s + warp_row0 * S, lane);

  // Per thread: rows r = 0, 1 of each m-tile are warp rows mt*16 + g and mt*16 + g + 8.
  // row_max is the running max of the exp2-domain scores (x = scale*log2e * q.k); row_sum is
  // this thread's partial sum of 2^(x - row_max) over its columns (the quad is reduced at the end).
  float o_acc[MT][kDT][4];
  float row_max[MT][2], row_sum[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o_acc[mt][dt][e] = 0.f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  for (int j = 0; j < n_tiles; ++j) {
    const int n0 = j * BN, buf = j & 1;
    // Prefetch tile j+1 into the other stage (freed by the barrier that ended iteration j-1).
    // Always commit two groups so that the wait counts below stay fixed.
    if (j + 1 < n_tiles) load_tile_async<BN, D, NT>(k_s + (buf ^ 1) * Cfg::kKVElems, k, p.k_st, n0 + BN, p.tk, tid);
    cp_async_commit();
    if (j + 1 < n_tiles) load_tile_async<BN, D, NT>(v_s + (buf ^ 1) * Cfg::kKVElems, v, p.v_st, n0 + BN, p.tk, tid);
    cp_async_commit();

    cp_async_wait<3>();  // K(j) landed ([V(j)], [K(j+1)], [V(j+1)] may be in flight)
    __syncthreads();

    // S = Q K(j)^T: (16*MT x BN) per warp.
    float s[MT][kNT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
    if constexpr (Cfg::kQInRegs)
      gemm_abt<T, MT, BN, D, S>(s, qf, k_s + buf * Cfg::kKVElems, lane);
    else
      gemm_abt_smem<T, MT, BN, D, S>(s, q_s + warp_row0 * S, k_s + buf * Cfg::kKVElems, lane);

    // To the exp2 domain; mask keys past Tk and (causal) past each row's diagonal with -inf.
    const bool need_mask = n0 + BN > p.tk || (p.causal && n0 + BN - 1 > m0 + off);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[mt][nt][e] * p.scale_log2;
          if (need_mask) {
            const int i = m0 + warp_row0 + mt * 16 + g + ((e >> 1) << 3);
            const int jj = n0 + nt * 8 + 2 * t + (e & 1);
            if (jj >= p.tk || (p.causal && jj > i + off)) x = -INFINITY;
          }
          s[mt][nt][e] = x;
        }

    // Online softmax: new running max, rescale O and the partial sums, P = 2^(x - max).
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = row_max[mt][r];
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        // The 4 threads of a quad (same g) hold the 64 columns of a row.
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // A row with nothing visible yet keeps max = -inf: subtract 0 instead (P = 0, no NaN).
        const float m_use = mx == -INFINITY ? 0.f : mx;
        const float corr = fast_exp2(row_max[mt][r] - m_use);
        row_max[mt][r] = mx;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const float p0 = fast_exp2(s[mt][nt][2 * r] - m_use);
          const float p1 = fast_exp2(s[mt][nt][2 * r + 1] - m_use);
          s[mt][nt][2 * r] = p0;
          s[mt][nt][2 * r + 1] = p1;
          sum += p0 + p1;
        }
        row_sum[mt][r] = row_sum[mt][r] * corr + sum;
#pragma unroll
        for (int dt = 0; dt < kDT; ++dt) {
          o_acc[mt][dt][2 * r] *= corr;
          o_acc[mt][dt][2 * r + 1] *= corr;
        }
      }

    cp_async_wait<2>();  // V(j) landed
    __syncthreads();
    // O += P V(j): P goes from the S accumulators straight into A fragments.
    gemm_pv<T, MT, BN, D, S>(o_acc, s, v_s + buf * Cfg::kKVElems, lane);
    __syncthreads();  // every warp is done with stage `buf` before it is refilled
  }

  // Epilogue: reduce the row sums over the quad, normalize, write lse and O.
  float inv[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = row_sum[mt][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv[mt][r] = l > 0.f ? 1.f / l : 0.f;
      const int i = m0 + warp_row0 + mt * 16 + g + 8 * r;
      if (lse != nullptr && t == 0 && i < p.tq)
        lse[i] = row_max[mt][r] == -INFINITY ? -INFINITY : (row_max[mt][r] + log2f(l)) * kLn2;
    }
  // Stage O through the (now unused) Q tile so the global stores are 16 bytes wide and coalesced.
  stage_acc<T, MT, D, S>(q_s, warp_row0, o_acc, inv, lane);
  __syncthreads();
  store_tile<BM, D, NT>(o, p.o_st, m0, p.tq, q_s, tid);
}

// ------------------------------------------------------------------ SIMT kernel
// A warp per query row, kSimtRows rows per block (consecutive queries of one (b, h)). Key tiles of
// 32 rows are staged in shared memory as F32; lane l scores key n0 + l against the row's q
// (broadcast from shared memory), then every lane accumulates its D/32 output columns
// (d = lane + 32 c) over the 32 keys. Running max and sum are warp-uniform.
constexpr int kSimtRows = 8;
constexpr int kSimtThreads = 32 * kSimtRows;

template <typename T, int D>
__global__ void __launch_bounds__(kSimtThreads) attention_fwd_simt_kernel(const Params p) {
  constexpr int kPer = D / 32;
  __shared__ float q_s[kSimtRows][D];
  __shared__ float k_s[32][D + 1];  // +1: lane-indexed rows hit distinct banks
  __shared__ float v_s[32][D];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int m_block = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, hk = h / p.group;
  const int m0 = m_block * kSimtRows, i = m0 + warp;
  const int off = p.tk - p.tq;

  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + hk * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + hk * p.v_sh;
  T* o = static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh;

#pragma unroll
  for (int c = 0; c < kPer; ++c)
    q_s[warp][lane + 32 * c] = i < p.tq ? to_f32(q[i * p.q_st + lane + 32 * c]) : 0.f;

  const int n_end = p.causal ? min(p.tk, m0 + kSimtRows + off) : p.tk;
  float m = -INFINITY, l = 0.f, acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.f;

  for (int n0 = 0; n0 < n_end; n0 += 32) {
    __syncthreads();  // previous tile consumed (and q_s written, on the first pass)
    for (int e = tid; e < 32 * D; e += kSimtThreads) {
      const int r = e / D, d = e % D, jj = n0 + r;
      k_s[r][d] = jj < p.tk ? to_f32(k[jj * p.k_st + d]) : 0.f;
      v_s[r][d] = jj < p.tk ? to_f32(v[jj * p.v_st + d]) : 0.f;
    }
    __syncthreads();
    const int jj = n0 + lane;
    float x = -INFINITY;
    if (jj < p.tk && (!p.causal || jj <= i + off)) {
      float dot = 0.f;
#pragma unroll 8
      for (int d = 0; d < D; ++d) dot = fmaf(q_s[warp][d], k_s[lane][d], dot);
      x = dot * p.scale_log2;
    }
    const float mx = fmaxf(m, warp_max(x));
    const float m_use = mx == -INFINITY ? 0.f : mx;
    const float corr = exp2f(m - m_use);
    const float pr = exp2f(x - m_use);
    l = l * corr + warp_sum(pr);
    m = mx;
#pragma unroll
    for (int c = 0; c < kPer; ++c) acc[c] *= corr;
    for (int r = 0; r < 32; ++r) {
      const float pj = __shfl_sync(0xffffffffu, pr, r);
#pragma unroll
      for (int c = 0; c < kPer; ++c) acc[c] = fmaf(pj, v_s[r][lane + 32 * c], acc[c]);
    }
  }

  if (i < p.tq) {
    const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int c = 0; c < kPer; ++c) o[i * p.o_st + lane + 32 * c] = from_f32<T>(acc[c] * inv);
    if (p.lse != nullptr && lane == 0)
      p.lse[(static_cast<int64_t>(b) * p.heads_q + h) * p.tq + i] =
          m == -INFINITY ? -INFINITY : (m + log2f(l)) * kLn2;
  }
}

// ------------------------------------------------------------------ launchers
template <typename T, int D>
ath_status launch_mma(const Params& p, cudaStream_t stream) {
  using Cfg = FwdConfig<D>;
  auto kernel = attention_fwd_mma_kernel<T, D>;
  ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
  const dim3 grid((p.tq + Cfg::kBlockM - 1) / Cfg::kBlockM, p.heads_q, p.batch);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_fwd (tensor-core kernel)");
  return ATH_OK;
}

template <typename T, int D>
ath_status launch_simt(const Params& p, cudaStream_t stream) {
  const dim3 grid((p.tq + kSimtRows - 1) / kSimtRows, p.heads_q, p.batch);
  attention_fwd_simt_kernel<T, D><<<grid, kSimtThreads, 0, stream>>>(p);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_attention_fwd (SIMT kernel)");
  return ATH_OK;
}

template <typename T>
ath_status launch_for_dim(const Params& p, int64_t head_dim, bool tensor_cores, cudaStream_t stream) {
  switch (head_dim) {
#define ATH_ATTN_FWD_CASE(DIM)                                                    \
  case DIM:                                                                       \
    if constexpr (!std::is_same_v<T, float>) {                                    \
      if (tensor_cores) return launch_mma<T, DIM>(p, stream);                     \
    }                                                                             \
    return launch_simt<T, DIM>(p, stream);
    ATH_ATTN_FWD_CASE(32)
    ATH_ATTN_FWD_CASE(64)
    ATH_ATTN_FWD_CASE(96)
    ATH_ATTN_FWD_CASE(128)
#undef ATH_ATTN_FWD_CASE
    default:
      return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: head_dim=%lld is not supported on CUDA (supported: 32, 64, 96, 128)",
                         kOpFwd, (long long)head_dim);
  }
}

}  // namespace
}  // namespace ath::cuda::attn

extern "C" ath_status ath_cuda_attention_fwd(const ath_attention_args* a, const ath_cuda_ctx* ctx) {
  using namespace ath::cuda::attn;
  ATH_GUARD_BEGIN
  ATH_TRY(validate(a, kOpFwd, false));
  ATH_TRY(ath::cuda::check_context(kOpFwd, ctx));
  if (a->batch == 0 || a->tq == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(kOpFwd, ctx, &oc));
  const cudaStream_t stream = oc.stream;
  const Params p = make_params(*a);
  // Hopper, behind the switch (ATHANOR_CUDA_HOPPER=1) until a GPU check has passed its tests.
  if (ath::cuda::hopper_switch() && attention_fwd_wgmma_ok(*a, oc.props)) return launch_attention_fwd_wgmma(*a, p, stream);
  const bool tc = a->dtype != ATH_F32 && tensor_core_layout_ok(*a, false);
  ATH_DISPATCH_FLOAT(a->dtype, T, kOpFwd, { return launch_for_dim<T>(p, a->head_dim, tc, stream); })
  ATH_GUARD_END(kOpFwd)
  return ATH_OK;
}

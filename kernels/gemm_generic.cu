// Generic GEMM fallback for every argument set the fast kernels cannot take (unaligned pointers or
// leading dimensions, F32 with odd ld, K == 0, ...):
//   C_b (M, N) = alpha * op(A_b) @ op(B_b) + beta * C_b + bias      (see gemm_internal.cuh)
// Any dtype_ab (F32/BF16/F16), dtype_c F32 or dtype_ab, any layout (trans flags are run-time),
// element-wise loads only (no alignment beyond the element size), F32 math.
//
// Block tile 64 x 64 of C, K stepped by 16; 256 threads as 16 x 16, each owning 4 x 4 outputs at
// rows ty + 16 i and columns tx + 16 j (so global stores of a warp are contiguous and shared reads
// are broadcasts or consecutive words). Operands are converted to F32 on the way into shared
// memory: As[16][64 + 1] = op(A) tile as (BK, BM), Bs[16][64] = op(B) tile as (BK, BN). The load
// loops walk the operand's contiguous dimension with consecutive threads (coalesced).
#include "gemm_internal.cuh"

namespace ath::cuda::gemm {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

template <typename TA, typename TC>
__global__ void __launch_bounds__(kThreads) gemm_generic_kernel(const GemmParams p) {
  __shared__ float As[kBK][kBM + 1];  // (BK, BM)
  __shared__ float Bs[kBK][kBN + 1];  // (BK, BN)

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  int tile_m, tile_n;
  tile_coords(blockIdx.x, p.tiles_m, p.tiles_n, &tile_m, &tile_n);
  const int row0 = tile_m * kBM, col0 = tile_n * kBN;

  const int64_t batch = p.batch_base + blockIdx.z;
  const TA* __restrict__ A = static_cast<const TA*>(p.a) + batch * p.stride_a;
  const TA* __restrict__ B = static_cast<const TA*>(p.b) + batch * p.stride_b;
  TC* __restrict__ C = static_cast<TC*>(p.c) + batch * p.stride_c;  // (M, N)
  const int M = p.m, N = p.n, K = p.k;

  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kBK) {
    for (int idx = tid; idx < kBM * kBK; idx += kThreads) {
      int m, k;
      if (p.trans_a) { m = idx % kBM; k = idx / kBM; }  // A (K, M): M contiguous
      else { k = idx % kBK; m = idx / kBK; }            // A (M, K): K contiguous
      const int gm = row0 + m, gk = k0 + k;
      float v = 0.f;
      if (gm < M && gk < K) v = to_f32<TA>(p.trans_a ? A[gk * p.lda + gm] : A[gm * p.lda + gk]);
      As[k][m] = v;
    }
    for (int idx = tid; idx < kBN * kBK; idx += kThreads) {
      int n, k;
      if (p.trans_b) { k = idx % kBK; n = idx / kBK; }  // B (N, K): K contiguous
      else { n = idx % kBN; k = idx / kBN; }            // B (K, N): N contiguous
      const int gn = col0 + n, gk = k0 + k;
      float v = 0.f;
      if (gn < N && gk < K) v = to_f32<TA>(p.trans_b ? B[gn * p.ldb + gk] : B[gk * p.ldb + gn]);
      Bs[k][n] = v;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = row0 + ty + 16 * i;
    if (row >= M) continue;
    TC* crow = C + row * p.ldc;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = col0 + tx + 16 * j;
      if (col < N) store_c1<TC>(crow, col, col, acc[i][j], p);
    }
  }
}

template <typename TA, typename TC>
ath_status launch(GemmParams p, int nbatch, cudaStream_t stream) {
  p.tiles_m = ceil_div(p.m, kBM);
  p.tiles_n = ceil_div(p.n, kBN);
  const dim3 grid(static_cast<unsigned>(p.tiles_m) * static_cast<unsigned>(p.tiles_n), 1, static_cast<unsigned>(nbatch));
  gemm_generic_kernel<TA, TC><<<grid, kThreads, 0, stream>>>(p);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_gemm (generic)");
  return ATH_OK;
}

}  // namespace

ath_status launch_gemm_generic(GemmParams p, int dtype_ab, int dtype_c, int nbatch, cudaStream_t stream) {
  const bool c_f32 = dtype_c == ATH_F32;
  switch (dtype_ab) {
    case ATH_F32: return launch<float, float>(p, nbatch, stream);
    case ATH_BF16:
      return c_f32 ? launch<__nv_bfloat16, float>(p, nbatch, stream) : launch<__nv_bfloat16, __nv_bfloat16>(p, nbatch, stream);
    case ATH_F16:
      return c_f32 ? launch<__half, float>(p, nbatch, stream) : launch<__half, __half>(p, nbatch, stream);
    default:
      return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: generic path called with dtype_ab=%d", dtype_ab);
  }
}

}  // namespace ath::cuda::gemm

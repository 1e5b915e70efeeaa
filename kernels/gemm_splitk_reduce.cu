// Split-K reduction of the Hopper GEMM (gemm_wgmma.cu with splits > 1): for each batch b of the
// launch and each element (i, j) of C (M, N),
//   acc = ((ws[b][0][i][j] + ws[b][1][i][j]) + ws[b][2][i][j]) + ... + ws[b][splits - 1][i][j]
//   C_b[i][j] = round_TC(alpha * acc + beta * C_b[i][j] + bias[j])          (epilogue_value)
// followed by the GELU epilogues when p.epilogue asks (epilogue_finish: aux written or read per
// element, at C's offsets).
// The slices are added in this fixed order by the one thread that owns the element, so the result
// does not depend on scheduling (it differs from the unsplit kernel's only in the rounding of the
// partial sums). The epilogue is the register epilogue's, operation for operation.
//
// Layouts: ws (nbatch, splits, M, ldw) F32 as in gemm_internal.cuh (SplitK; 256-byte aligned base,
// ldw a multiple of 4, so each thread reads its 4 columns of a slice as one float4); C as in
// GemmParams (ldc, stride_c, batch batch_base + b), dtype_c F32, BF16 or F16, written with vector
// stores when c_vec == 4 and all 4 columns lie inside N, else element by element. beta == 0: C is
// not read. Grid-stride over (nbatch, M, ceil(N / 4)) with 64-bit indices.
#include <algorithm>

#include "gemm_internal.cuh"

namespace ath::cuda::gemm {
namespace {

constexpr int kThreads = 256;

template <typename TC>
__device__ __forceinline__ void store4(TC* c, int64_t idx, const float (&v)[4]) {
  if constexpr (std::is_same_v<TC, float>) {
    *reinterpret_cast<float4*>(c + idx) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (std::is_same_v<TC, __nv_bfloat16>) {
    const __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]), hi = __floats2bfloat162_rn(v[2], v[3]);
    uint2 w;
    w.x = *reinterpret_cast<const uint32_t*>(&lo);
    w.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(c + idx) = w;
  } else {
    const __half2 lo = __floats2half2_rn(v[0], v[1]), hi = __floats2half2_rn(v[2], v[3]);
    uint2 w;
    w.x = *reinterpret_cast<const uint32_t*>(&lo);
    w.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(c + idx) = w;
  }
}

template <typename TC>
__global__ void __launch_bounds__(kThreads)
    splitk_reduce_kernel(const GemmParams p, const float* __restrict__ ws, int splits, int64_t ldw, int nbatch) {
  const int64_t quads = ceil_div<int64_t>(p.n, 4);            // 4-column groups per row
  const int64_t per_batch = static_cast<int64_t>(p.m) * quads;
  const int64_t total = per_batch * nbatch;
  const int64_t slice = static_cast<int64_t>(p.m) * ldw;      // elements of one (M, ldw) slice
  for (int64_t e = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t b = e / per_batch, r = e - b * per_batch;
    const int row = static_cast<int>(r / quads);
    const int col = static_cast<int>(r - static_cast<int64_t>(row) * quads) * 4;
    const float* w = ws + b * splits * slice + static_cast<int64_t>(row) * ldw + col;
    float4 acc = *reinterpret_cast<const float4*>(w);
    for (int z = 1; z < splits; ++z) {  // slice order 0, 1, ..., splits - 1
      const float4 x = *reinterpret_cast<const float4*>(w + z * slice);
      acc.x += x.x;
      acc.y += x.y;
      acc.z += x.z;
      acc.w += x.w;
    }
    const float a[4] = {acc.x, acc.y, acc.z, acc.w};
    TC* C = static_cast<TC*>(p.c) + (p.batch_base + b) * p.stride_c;
    const int64_t idx = static_cast<int64_t>(row) * p.ldc + col;
    if (p.c_vec >= 4 && col + 3 < p.n) {
      float v[4];
#pragma unroll
      for (int t = 0; t < 4; ++t)
        v[t] = epilogue_finish<TC>(epilogue_value<TC>(C, idx + t, col + t, a[t], p), aux_of<TC>(C, p), idx + t, p);
      store4<TC>(C, idx, v);
    } else {
#pragma unroll
      for (int t = 0; t < 4; ++t)
        if (col + t < p.n) store_c1<TC>(C, idx + t, col + t, a[t], p);
    }
  }
}

template <typename TC>
ath_status launch(const GemmParams& p, const SplitK& split, int nbatch, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(p.m) * ceil_div<int64_t>(p.n, 4) * nbatch;
  // Enough blocks to keep every SM streaming; the grid-stride loop covers the rest.
  const int64_t blocks = std::min<int64_t>(ceil_div<int64_t>(total, kThreads), int64_t{1} << 16);
  splitk_reduce_kernel<TC><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, split.ws, split.splits,
                                                                                   split.ldw, nbatch);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_gemm (split-K reduction)");
  return ATH_OK;
}

}  // namespace

ath_status launch_gemm_splitk_reduce(const GemmParams& p, const SplitK& split, int dtype_c, int nbatch,
                                     cudaStream_t stream) {
  if (split.ws == nullptr || split.splits < 1 || split.ldw < p.n || split.ldw % 4 != 0) {
    return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: split-K reduction with ws=%p, splits=%d, ldw=%lld (n=%d)",
                     static_cast<const void*>(split.ws), split.splits, (long long)split.ldw, p.n);
  }
  switch (dtype_c) {
    case ATH_F32: return launch<float>(p, split, nbatch, stream);
    case ATH_BF16: return launch<__nv_bfloat16>(p, split, nbatch, stream);
    case ATH_F16: return launch<__half>(p, split, nbatch, stream);
    default: return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: split-K reduction with dtype_c=%d", dtype_c);
  }
}

}  // namespace ath::cuda::gemm

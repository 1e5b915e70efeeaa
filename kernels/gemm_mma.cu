// Launchers of the BF16/F16 tensor-core GEMM (kernel and pipeline in gemm_mma.cuh).
//   C_b (M, N) = alpha * op(A_b) @ op(B_b) + beta * C_b + bias, F32 accumulation, C in F32 or in
//   the input dtype. Inputs: a, b 16-byte aligned, lda/ldb (and batch strides) multiples of 8.
//
// Three block-tile configurations; gemm.cu picks one by the number of tiles it yields:
//   128x256x32, 8 warps of 64x64, 4 stages, 120 KiB smem, 1 block/SM  -- large problems
//   128x128x32, 8 warps of 64x32, 4 stages,  80 KiB smem, 2 blocks/SM -- medium problems
//    64x64x32,  4 warps of 32x32, 4 stages,  40 KiB smem, 4 blocks/SM -- small M or N
#include "gemm_mma.cuh"


namespace ath::cuda::gemm {
namespace {

//                         BM   BN  BK  WM  WN  STAGES  MIN_BLOCKS
using Cfg128x256 = MmaConfig<128, 256, 32, 2, 4, 4, 1>;
using Cfg128x128 = MmaConfig<128, 128, 32, 2, 4, 4, 2>;
using Cfg64x64 = MmaConfig<64, 64, 32, 2, 2, 4, 4>;

// Largest dynamic shared memory over the four layouts of a configuration.
template <class Cfg>
constexpr int max_smem() {
  constexpr int s0 = MmaLayout<Cfg, false, false>::SMEM_BYTES, s1 = MmaLayout<Cfg, false, true>::SMEM_BYTES;
  constexpr int s2 = MmaLayout<Cfg, true, false>::SMEM_BYTES, s3 = MmaLayout<Cfg, true, true>::SMEM_BYTES;
  constexpr int a = s0 > s1 ? s0 : s1, b = s2 > s3 ? s2 : s3;
  return a > b ? a : b;
}

template <class Cfg, typename T, typename TC, bool TA, bool TB>
ath_status launch(GemmParams p, int nbatch, cudaStream_t stream) {
  constexpr auto kernel = gemm_mma_kernel<Cfg, T, TC, TA, TB>;
  constexpr int smem = MmaLayout<Cfg, TA, TB>::SMEM_BYTES;
  if (smem > 48 * 1024) ATH_TRY(allow_smem<kernel>(smem));
  p.tiles_m = ceil_div(p.m, Cfg::BM);
  p.tiles_n = ceil_div(p.n, Cfg::BN);
  const dim3 grid(static_cast<unsigned>(p.tiles_m) * static_cast<unsigned>(p.tiles_n), 1, static_cast<unsigned>(nbatch));
  kernel<<<grid, Cfg::THREADS, smem, stream>>>(p);
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_gemm (mma)");
  return ATH_OK;
}

template <class Cfg, typename T, typename TC>
ath_status launch_layout(const GemmParams& p, int nbatch, cudaStream_t stream) {
  const bool ta = p.trans_a != 0, tb = p.trans_b != 0;
  if (!ta && !tb) return launch<Cfg, T, TC, false, false>(p, nbatch, stream);
  if (!ta && tb) return launch<Cfg, T, TC, false, true>(p, nbatch, stream);
  if (ta && !tb) return launch<Cfg, T, TC, true, false>(p, nbatch, stream);
  return launch<Cfg, T, TC, true, true>(p, nbatch, stream);
}

template <class Cfg>
ath_status launch_dtype(const GemmParams& p, int dtype_ab, int dtype_c, int nbatch, cudaStream_t stream) {
  const bool c_f32 = dtype_c == ATH_F32;
  switch (dtype_ab) {
    case ATH_BF16:
      return c_f32 ? launch_layout<Cfg, __nv_bfloat16, float>(p, nbatch, stream)
                   : launch_layout<Cfg, __nv_bfloat16, __nv_bfloat16>(p, nbatch, stream);
    case ATH_F16:
      return c_f32 ? launch_layout<Cfg, __half, float>(p, nbatch, stream)
                   : launch_layout<Cfg, __half, __half>(p, nbatch, stream);
    default:
      return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: mma path called with dtype_ab=%d", dtype_ab);
  }
}

}  // namespace

int mma_smem_bytes(MmaTile tile) {
  switch (tile) {
    case MmaTile::k128x256: return max_smem<Cfg128x256>();
    case MmaTile::k128x128: return max_smem<Cfg128x128>();
    case MmaTile::k64x64: return max_smem<Cfg64x64>();
  }
  return 0;
}

const char* mma_tile_name(MmaTile tile) {
  switch (tile) {
    case MmaTile::k128x256: return "mma_128x256";
    case MmaTile::k128x128: return "mma_128x128";
    case MmaTile::k64x64: return "mma_64x64";
  }
  return "?";
}

ath_status launch_gemm_mma(GemmParams p, MmaTile tile, int dtype_ab, int dtype_c, int nbatch, cudaStream_t stream) {
  switch (tile) {
    case MmaTile::k128x256: return launch_dtype<Cfg128x256>(p, dtype_ab, dtype_c, nbatch, stream);
    case MmaTile::k128x128: return launch_dtype<Cfg128x128>(p, dtype_ab, dtype_c, nbatch, stream);
    case MmaTile::k64x64: return launch_dtype<Cfg64x64>(p, dtype_ab, dtype_c, nbatch, stream);
  }
  return ath::fail(ATH_ERR_INTERNAL, "ath_cuda_gemm: unknown mma tile %d", static_cast<int>(tile));
}

}  // namespace ath::cuda::gemm

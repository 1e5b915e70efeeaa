// AVX2 + FMA kernels of the CPU GEMM: the templates of gemm_impl.h instantiated with VAvx2
// (simd_traits.h) and the configuration below. Built with the AVX2 flags; the driver (gemm.cpp)
// uses them when ath::cpu::active_isa() allows it.
#include "gemm_impl.h"

namespace ath::cpu::gemm {

#if defined(ATH_SIMD_AVX2)
namespace {

// Register tile 6 x 16 (two ymm per row): 12 ymm accumulators, 2 ymm of B and one broadcast
// register, within the 16 ymm registers. Blocking:
struct Avx2Config {
  static constexpr int kMR = 6;             // rows of the register tile (broadcast A values)
  static constexpr int kV = 2;              // ymm vectors per tile row (16 columns)
  static constexpr int64_t kKC = 256;       // K block: A micro-panel kMR*kKC*4 = 6 KiB in L1, B micro-panel 16 KiB
  static constexpr int64_t kNC = 384;       // B block kKC*kNC*4 = 384 KiB in L2
  static constexpr int64_t kMC = 1536;      // A block rows (kMC*kKC*4 = 1.5 MiB, L3)
  // Small M (skinny path, B read in place) up to kSkinnyMaxM rows.
  static constexpr int64_t kSkinnyMaxM = 8;
  // B not transposed: 6 rows x 16 columns per step = 12 accumulators; no software prefetch.
  static constexpr int kSkinnyPassRows = 6;
  static constexpr int skinny_vectors(int) { return 2; }
  static constexpr int64_t kSkinnyKB = 256;  // rows of B per sweep across the columns
  static constexpr int64_t kSkinnyPrefetch = 0;
  // B transposed: 2 rows x 4 columns of dot products = 8 accumulators.
  static constexpr int kSkinnyDotRows = 2;
  static constexpr int kSkinnyDots = 4;
};

constexpr KernelSet kSet = GemmKernels<VAvx2, Avx2Config>::kernel_set("avx2");

}  // namespace

const KernelSet* kernels_avx2() { return &kSet; }

#else  // built without the AVX2 flags

const KernelSet* kernels_avx2() { return nullptr; }

#endif

}  // namespace ath::cpu::gemm

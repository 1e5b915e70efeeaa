// AVX-512 kernels of the CPU GEMM: the templates of gemm_impl.h instantiated with VAvx512
// (simd_traits.h) and the configuration below. Built with the AVX-512 flags; the driver (gemm.cpp)
// uses them when ath::cpu::active_isa() allows it.
#include "gemm_impl.h"

namespace ath::cpu::gemm {

#if defined(ATH_SIMD_AVX512) && defined(__FMA__) && defined(__F16C__)
namespace {

// Measured on Zen 5 (1 MiB L2, 48 KiB L1D): 12x32, 14x32, 8x48 and 6x64 tiles all reach ~90% of the
// FMA peak inside the macro kernel; 12x32 keeps the edge waste small for narrow N. Blocking:
struct Avx512Config {
  static constexpr int kMR = 12;            // rows of the register tile (broadcast A values)
  static constexpr int kV = 2;              // zmm vectors per tile row (32 columns)
  static constexpr int64_t kKC = 384;       // K block: A micro-panel kMR*kKC*4 = 18 KiB (L1), B micro-panels stream from L2
  static constexpr int64_t kNC = 320;       // B block kKC*kNC*4 = 480 KiB stays in L2 (1 MiB)
  static constexpr int64_t kMC = 1536;      // A block rows (kMC*kKC*4 = 2.25 MiB, L3)
  // Small M: the skinny path (B read in place) up to kSkinnyMaxM rows; measured on Zen 5, it beats
  // the packed path up to 8 rows and is no better from about 12.
  static constexpr int64_t kSkinnyMaxM = 8;
  // B not transposed: up to 12 rows per pass over B (at most 24 accumulators); few rows are
  // latency-bound on the strided B rows, so they take wider steps (more loads in flight): measured
  // on Zen 5, 8 vectors for 1-2 rows, 4 for 3-4 rows, 2 beyond.
  static constexpr int kSkinnyPassRows = 12;
  static constexpr int skinny_vectors(int rows) { return rows <= 2 ? 8 : rows <= 4 ? 4 : 2; }
  static constexpr int64_t kSkinnyKB = 256;      // rows of B per sweep across the columns
  static constexpr int64_t kSkinnyPrefetch = 16;  // software prefetch distance in rows of B
  // B transposed: kSkinnyDotRows rows x kSkinnyDots columns of dot products = 24 accumulators.
  static constexpr int kSkinnyDotRows = 6;
  static constexpr int kSkinnyDots = 4;
};

constexpr KernelSet kSet = GemmKernels<VAvx512, Avx512Config>::kernel_set("avx512");

}  // namespace

const KernelSet* kernels_avx512() { return &kSet; }

#else  // built without the AVX-512 flags

const KernelSet* kernels_avx512() { return nullptr; }

#endif

}  // namespace ath::cpu::gemm

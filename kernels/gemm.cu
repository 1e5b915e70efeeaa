// ath_cuda_gemm: the C ABI entry of the CUDA GEMM (contract in athanor.h, "GEMM").
//   For each b in [0, batch): C_b (M, N) = alpha * op(A_b) @ op(B_b) + beta * C_b (+ bias over rows)
//   op(A_b) (M, K): A stored (M, K) with row stride lda, or (K, M) when trans_a.
//   op(B_b) (K, N): B stored (K, N) with row stride ldb, or (N, K) when trans_b.
//   X_b = X + b * stride_x (elements). beta == 0: C is not read. F32 accumulation.
//   K == 0 or alpha == 0: C = beta * C + bias, and A and B are not read (as in ath_cpu_gemm).
//   Argument checks are those of ath_cpu_gemm plus two the GPU needs: pointers aligned to their
//   element size, and M, N, K < 2^31 - 1024 (ATH_ERR_UNSUPPORTED beyond).
//
// This file validates the arguments and the execution context, picks a kernel and launches it on
// the context's stream (without synchronizing; only the Hopper kernel's split-K mode uses scratch):
//   - BF16/F16 with 16-byte aligned A/B and lda, ldb (and batch strides) multiples of 8:
//     tensor cores, mma.sync (gemm_mma.cu), tile 128x256, 128x128 or 64x64 by problem size;
//   - F32 with 16-byte aligned A/B and lda, ldb (and strides) multiples of 4: SIMT FP32 with float4
//     loads (gemm_f32.cu), tile 128x128 or 64x64;
//   - everything else (odd alignments or leading dimensions, K == 0): the generic kernel
//     (gemm_generic.cu), which takes any valid argument set.
// The batch runs in grid z, in launches of at most 65535 batches each.
// The GELU epilogues (athanor.h) are fused into every kernel's store (epilogue_finish in
// gemm_internal.cuh), so every path takes them and the choice of kernel does not depend on them.
//
//   - on Hopper (compute capability 9.0), only while the switch ATHANOR_CUDA_HOPPER=1 is set in the
//     environment: BF16/F16 with the same alignment as the mma path (and nonzero batch strides) go
//     to the sm_90a kernel (gemm_wgmma.cu: wgmma fed by TMA), tile 128x256 or 128x128. It becomes
//     the default only after a GPU check on an H200 has passed its tests and timed it.
//     Split-K (gemm_wgmma.cu, gemm_splitk_reduce.cu): when fewer (tile, batch) units than SMs meet
//     a long K (weight gradients), the heuristic may split K into slices; ATHANOR_WGMMA_SPLITK=N
//     forces N slices (1: off) on the wgmma path, forced or chosen. The F32 partial sums take
//     splits * min(batch, 65535) * M * ldw * 4 bytes of the context's scratch arena (ldw = N rounded
//     up to a multiple of 4); too small an arena returns ATH_ERR_SCRATCH with nothing enqueued.
//     Below one wave of 128x256 tiles the heuristic keeps the wide tile when it splits it.
// For tests and benchmarks the environment variable ATHANOR_CUDA_GEMM_KERNEL forces a kernel:
// wgmma_128x256, wgmma_128x128, mma_128x256, mma_128x128, mma_64x64, f32_128x128, f32_64x64 or
// generic ("auto" or unset: the heuristic). It is read at every call; a forced kernel that cannot
// take the arguments (wrong dtype, alignment, device, or too little shared memory on the device)
// is ignored and the heuristic used.
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>

#include "context.cuh"
#include "gemm_internal.cuh"

#define ATH_GEMM_OP "ath_cuda_gemm"

namespace ath::cuda::gemm {
namespace {

// Largest M, N, K the kernels index with 32-bit ints (leaves room for tile offsets past the end).
constexpr int64_t kMaxDim = INT_MAX - 1023;
// Largest grid.z of one launch.
constexpr int64_t kMaxGridZ = 65535;

const char* dtype_name(int dtype) {
  switch (dtype) {
    case ATH_F32: return "F32";
    case ATH_BF16: return "BF16";
    case ATH_F16: return "F16";
    case ATH_I32: return "I32";
    default: return "unknown";
  }
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

ath_status validate(const ath_gemm_args& g) {
  ATH_CHECK_ARG(g.dtype_ab == ATH_F32 || g.dtype_ab == ATH_BF16 || g.dtype_ab == ATH_F16, ATH_GEMM_OP,
                "dtype_ab=%d (%s) must be F32 (0), BF16 (1) or F16 (2)", g.dtype_ab, dtype_name(g.dtype_ab));
  ATH_CHECK_ARG(g.dtype_c == ATH_F32 || g.dtype_c == g.dtype_ab, ATH_GEMM_OP,
                "dtype_c=%d (%s) must be F32 (0) or equal to dtype_ab=%d (%s)", g.dtype_c,
                dtype_name(g.dtype_c), g.dtype_ab, dtype_name(g.dtype_ab));
  ATH_CHECK_ARG(g.trans_a == 0 || g.trans_a == 1, ATH_GEMM_OP, "trans_a=%d must be 0 or 1", g.trans_a);
  ATH_CHECK_ARG(g.trans_b == 0 || g.trans_b == 1, ATH_GEMM_OP, "trans_b=%d must be 0 or 1", g.trans_b);
  ATH_CHECK_ARG(g.epilogue == ATH_GEMM_EPI_NONE || g.epilogue == ATH_GEMM_EPI_GELU ||
                    g.epilogue == ATH_GEMM_EPI_GELU_BACKWARD,
                ATH_GEMM_OP, "epilogue=%d must be 0 (NONE), 1 (GELU) or 2 (GELU_BACKWARD)", g.epilogue);
  ATH_CHECK_ARG(g.m >= 0, ATH_GEMM_OP, "m=%lld must be >= 0", (long long)g.m);
  ATH_CHECK_ARG(g.n >= 0, ATH_GEMM_OP, "n=%lld must be >= 0", (long long)g.n);
  ATH_CHECK_ARG(g.k >= 0, ATH_GEMM_OP, "k=%lld must be >= 0", (long long)g.k);
  ATH_CHECK_ARG(g.batch >= 0, ATH_GEMM_OP, "batch=%lld must be >= 0", (long long)g.batch);
  const int64_t a_cols = g.trans_a ? g.m : g.k, b_cols = g.trans_b ? g.k : g.n;
  ATH_CHECK_ARG(g.lda >= (a_cols > 1 ? a_cols : 1), ATH_GEMM_OP,
                "lda=%lld must be >= max(1, %lld), the row length of A stored as %s",
                (long long)g.lda, (long long)a_cols, g.trans_a ? "(K, M) (trans_a)" : "(M, K)");
  ATH_CHECK_ARG(g.ldb >= (b_cols > 1 ? b_cols : 1), ATH_GEMM_OP,
                "ldb=%lld must be >= max(1, %lld), the row length of B stored as %s",
                (long long)g.ldb, (long long)b_cols, g.trans_b ? "(N, K) (trans_b)" : "(K, N)");
  ATH_CHECK_ARG(g.ldc >= (g.n > 1 ? g.n : 1), ATH_GEMM_OP, "ldc=%lld must be >= max(1, n=%lld)",
                (long long)g.ldc, (long long)g.n);
  if (g.batch > 1) {  // strides are only used with several batches (as in ath_cpu_gemm)
    ATH_CHECK_ARG(g.stride_a >= 0, ATH_GEMM_OP, "stride_a=%lld must be >= 0", (long long)g.stride_a);
    ATH_CHECK_ARG(g.stride_b >= 0, ATH_GEMM_OP, "stride_b=%lld must be >= 0", (long long)g.stride_b);
    if (g.m > 0 && g.n > 0) {
      // Batches of C are written in parallel: they must not overlap (A and B may; stride 0 shares
      // one matrix). Same rule as the CPU op.
      int64_t c_extent = 0;
      const bool fits = !__builtin_mul_overflow(g.m - 1, g.ldc, &c_extent) &&
                        !__builtin_add_overflow(c_extent, g.n, &c_extent);
      ATH_CHECK_ARG(fits && g.stride_c >= c_extent, ATH_GEMM_OP,
                    "stride_c=%lld must be >= (m-1)*ldc+n = %lld so that the batch entries of C do not overlap",
                    (long long)g.stride_c, (long long)c_extent);
    }
  }
  if (g.m == 0 || g.n == 0 || g.batch == 0) return ATH_OK;  // nothing to compute or write
  ATH_CHECK_ARG(g.c != nullptr, ATH_GEMM_OP, "c is NULL (m=%lld, n=%lld)", (long long)g.m, (long long)g.n);
  if (g.k > 0) {
    ATH_CHECK_ARG(g.a != nullptr, ATH_GEMM_OP, "a is NULL (k=%lld > 0)", (long long)g.k);
    ATH_CHECK_ARG(g.b != nullptr, ATH_GEMM_OP, "b is NULL (k=%lld > 0)", (long long)g.k);
  }
  const size_t sab = ath_dtype_size(g.dtype_ab), sc = ath_dtype_size(g.dtype_c);
  ATH_CHECK_ARG(g.k == 0 || (aligned(g.a, sab) && aligned(g.b, sab)), ATH_GEMM_OP,
                "a=%p and b=%p must be aligned to the %zu-byte element size of %s", g.a, g.b, sab,
                dtype_name(g.dtype_ab));
  ATH_CHECK_ARG(aligned(g.c, sc), ATH_GEMM_OP, "c=%p must be aligned to the %zu-byte element size of %s",
                g.c, sc, dtype_name(g.dtype_c));
  ATH_CHECK_ARG(g.bias == nullptr || aligned(g.bias, sc), ATH_GEMM_OP,
                "bias=%p must be aligned to the %zu-byte element size of %s", g.bias, sc, dtype_name(g.dtype_c));
  ATH_CHECK_ARG(g.epilogue != ATH_GEMM_EPI_GELU_BACKWARD || g.aux != nullptr, ATH_GEMM_OP,
                "aux is NULL (epilogue GELU_BACKWARD reads the pre-activation from it)");
  ATH_CHECK_ARG(g.epilogue == ATH_GEMM_EPI_NONE || g.aux != g.c, ATH_GEMM_OP, "aux=%p must not be c (epilogue=%d)",
                g.aux, g.epilogue);
  ATH_CHECK_ARG(g.epilogue == ATH_GEMM_EPI_NONE || aligned(g.aux, sc), ATH_GEMM_OP,
                "aux=%p must be aligned to the %zu-byte element size of %s", g.aux, sc, dtype_name(g.dtype_c));
  if (g.m > kMaxDim || g.n > kMaxDim || g.k > kMaxDim) {
    return ath::fail(ATH_ERR_UNSUPPORTED, ATH_GEMM_OP ": m=%lld, n=%lld, k=%lld: each must be <= %lld for the CUDA kernels",
                     (long long)g.m, (long long)g.n, (long long)g.k, (long long)kMaxDim);
  }
  return ATH_OK;
}

enum class Path { kWgmma, kMma, kF32, kGeneric };
struct Choice {
  Path path = Path::kGeneric;
  MmaTile mma = MmaTile::k64x64;
  WgmmaTile wgmma = WgmmaTile::k128x256;
  F32Tile f32 = F32Tile::k64x64;
  int bm = 64, bn = 64;  // block tile, for the grid-size check
};

Choice mma_choice(MmaTile t) {
  Choice c;
  c.path = Path::kMma;
  c.mma = t;
  c.bm = t == MmaTile::k64x64 ? 64 : 128;
  c.bn = t == MmaTile::k128x256 ? 256 : t == MmaTile::k128x128 ? 128 : 64;
  return c;
}

Choice wgmma_choice(WgmmaTile t) {
  Choice c;
  c.path = Path::kWgmma;
  c.wgmma = t;
  c.bm = 128;
  c.bn = t == WgmmaTile::k128x256 ? 256 : 128;
  return c;
}

Choice f32_choice(F32Tile t) {
  Choice c;
  c.path = Path::kF32;
  c.f32 = t;
  c.bm = c.bn = t == F32Tile::k128x128 ? 128 : 64;
  return c;
}

int64_t tiles(int64_t m, int64_t n, int bm, int bn) { return ((m + bm - 1) / bm) * ((n + bn - 1) / bn); }

Choice choose_kernel(const ath_gemm_args& g, const DeviceProps& dev) {
  const bool batched = g.batch > 1;
  const bool mma_ok = (g.dtype_ab == ATH_BF16 || g.dtype_ab == ATH_F16) && g.k > 0 && aligned(g.a, 16) &&
                      aligned(g.b, 16) && g.lda % 8 == 0 && g.ldb % 8 == 0 &&
                      (!batched || (g.stride_a % 8 == 0 && g.stride_b % 8 == 0));
  const bool f32_ok = g.dtype_ab == ATH_F32 && g.k > 0 && aligned(g.a, 16) && aligned(g.b, 16) &&
                      g.lda % 4 == 0 && g.ldb % 4 == 0 && (!batched || (g.stride_a % 4 == 0 && g.stride_b % 4 == 0));
  auto mma_fits = [&](MmaTile t) { return mma_smem_bytes(t) <= dev.max_smem_optin; };
  // The sm_90a kernel runs only on compute capability 9.0 exactly (sm_90a code does not run on
  // later chips); its tensor maps need nonzero batch strides.
  const bool wgmma_ok = mma_ok && dev.cc_major == 9 && dev.cc_minor == 0 &&
                        (!batched || (g.stride_a > 0 && g.stride_b > 0));
  auto wgmma_fits = [&](WgmmaTile t) { return wgmma_ok && wgmma_smem_bytes(t) <= dev.max_smem_optin; };

  // Forced kernel (tests, benchmarks), when it can take these arguments.
  const char* force = std::getenv("ATHANOR_CUDA_GEMM_KERNEL");
  if (force != nullptr && *force != '\0' && std::strcmp(force, "auto") != 0) {
    if (std::strcmp(force, "generic") == 0) return Choice{};
    for (WgmmaTile t : {WgmmaTile::k128x256, WgmmaTile::k128x128})
      if (wgmma_fits(t) && std::strcmp(force, wgmma_tile_name(t)) == 0) return wgmma_choice(t);
    for (MmaTile t : {MmaTile::k128x256, MmaTile::k128x128, MmaTile::k64x64})
      if (mma_ok && mma_fits(t) && std::strcmp(force, mma_tile_name(t)) == 0) return mma_choice(t);
    for (F32Tile t : {F32Tile::k128x128, F32Tile::k64x64})
      if (f32_ok && std::strcmp(force, f32_tile_name(t)) == 0) return f32_choice(t);
  }

  // Heuristic: the largest tile that still gives every SM at least one block (larger tiles reuse
  // each loaded element more; below one wave, smaller tiles spread the work over more SMs).
  // Not yet tuned on hardware.
  const int64_t sms = dev.sm_count > 0 ? dev.sm_count : 1;
  if (hopper_switch() && wgmma_fits(WgmmaTile::k128x128)) {
    if (wgmma_fits(WgmmaTile::k128x256)) {
      if (tiles(g.m, g.n, 128, 256) * g.batch >= sms) return wgmma_choice(WgmmaTile::k128x256);
      // Under one wave, split-K over the wide tile (when its heuristic splits) fills the SMs with
      // long k-slices instead of narrower tiles.
      if (wgmma_split_heuristic(WgmmaTile::k128x256, g.m, g.n, g.k, g.batch, dev.sm_count) > 1)
        return wgmma_choice(WgmmaTile::k128x256);
    }
    return wgmma_choice(WgmmaTile::k128x128);
  }
  if (mma_ok) {
    if (mma_fits(MmaTile::k128x256) && tiles(g.m, g.n, 128, 256) * g.batch >= sms) return mma_choice(MmaTile::k128x256);
    if (mma_fits(MmaTile::k128x128) && tiles(g.m, g.n, 128, 128) * g.batch >= sms) return mma_choice(MmaTile::k128x128);
    return mma_choice(MmaTile::k64x64);
  }
  if (f32_ok) {
    if (tiles(g.m, g.n, 128, 128) * g.batch >= sms) return f32_choice(F32Tile::k128x128);
    return f32_choice(F32Tile::k64x64);
  }
  return Choice{};  // generic
}

ath_status run(const ath_gemm_args* args, const ath_cuda_ctx* ctx) {
  ATH_CHECK_ARG(args != nullptr, ATH_GEMM_OP, "args is NULL");
  const ath_gemm_args& g = *args;
  ATH_TRY(validate(g));
  ATH_TRY(check_context(ATH_GEMM_OP, ctx));
  if (g.m == 0 || g.n == 0 || g.batch == 0) return ATH_OK;

  OpContext oc;
  ATH_TRY(enter(ATH_GEMM_OP, ctx, &oc));
  const DeviceProps& dev = oc.props;
  if (dev.cc_major < 8) {
    return ath::fail(ATH_ERR_UNSUPPORTED, ATH_GEMM_OP ": device of compute capability %d.%d; the CUDA kernels need 8.0 or newer",
                     dev.cc_major, dev.cc_minor);
  }

  // alpha == 0 (like K == 0) reduces to C = beta * C + bias without reading A and B (as on the
  // CPU), so Inf/NaN in A or B cannot leak through 0 * Inf; the generic kernel does that pass.
  ath_gemm_args eff = g;
  if (eff.alpha == 0.f) eff.k = 0;
  const Choice choice = choose_kernel(eff, dev);
  const int64_t ntiles = tiles(g.m, g.n, choice.bm, choice.bn);
  if (ntiles > INT_MAX) {
    return ath::fail(ATH_ERR_UNSUPPORTED, ATH_GEMM_OP ": m=%lld x n=%lld gives %lld tiles of %dx%d, more than one grid holds",
                     (long long)g.m, (long long)g.n, (long long)ntiles, choice.bm, choice.bn);
  }

  GemmParams p{};
  p.a = g.a;
  p.b = g.b;
  p.c = g.c;
  p.bias = g.bias;
  p.lda = g.lda;
  p.ldb = g.ldb;
  p.ldc = g.ldc;
  // With one batch the strides are never used; zero them so no kernel multiplies by garbage.
  p.stride_a = g.batch > 1 ? g.stride_a : 0;
  p.stride_b = g.batch > 1 ? g.stride_b : 0;
  p.stride_c = g.batch > 1 ? g.stride_c : 0;
  p.m = static_cast<int>(g.m);
  p.n = static_cast<int>(g.n);
  p.k = static_cast<int>(eff.k);
  p.trans_a = g.trans_a != 0;
  p.trans_b = g.trans_b != 0;
  p.alpha = g.alpha;
  p.beta = g.beta;
  p.epilogue = g.epilogue;
  p.aux = g.epilogue == ATH_GEMM_EPI_NONE ? nullptr : g.aux;
  const size_t sc = ath_dtype_size(g.dtype_c);
  p.c_vec = 1;
  for (int v : {4, 2}) {
    if (g.ldc % v == 0 && p.stride_c % v == 0 && aligned(g.c, v * sc)) {
      p.c_vec = v;
      break;
    }
  }

  // Split-K workspace (wgmma path only), taken before anything is enqueued; every launch of the
  // batch loop below reuses it (stream order).
  SplitK split;
  if (choice.path == Path::kWgmma) {
    split.splits = wgmma_splits(choice.wgmma, g.m, g.n, eff.k, g.batch, dev.sm_count);
    if (split.splits > 1) {
      split.ldw = splitk_ldw(g.n);
      Scratch scratch = oc.arena();
      split.ws = scratch.take<float>(  // (min(batch, 65535), splits, M, ldw) F32
          splitk_workspace_elems(g.m, g.n, g.batch < kMaxGridZ ? g.batch : kMaxGridZ, split.splits));
      ATH_TRY(scratch.fits(ATH_GEMM_OP));
    }
  }

  const cudaStream_t stream = oc.stream;
  for (int64_t b0 = 0; b0 < g.batch; b0 += kMaxGridZ) {
    const int nb = static_cast<int>(g.batch - b0 < kMaxGridZ ? g.batch - b0 : kMaxGridZ);
    p.batch_base = b0;
    switch (choice.path) {
      case Path::kWgmma:
        ATH_TRY(launch_gemm_wgmma(p, choice.wgmma, g.dtype_ab, g.dtype_c, nb, dev.sm_count, split, stream));
        break;
      case Path::kMma: ATH_TRY(launch_gemm_mma(p, choice.mma, g.dtype_ab, g.dtype_c, nb, stream)); break;
      case Path::kF32: ATH_TRY(launch_gemm_f32(p, choice.f32, nb, stream)); break;
      case Path::kGeneric: ATH_TRY(launch_gemm_generic(p, g.dtype_ab, g.dtype_c, nb, stream)); break;
    }
  }
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda::gemm

extern "C" ath_status ath_cuda_gemm(const ath_gemm_args* args, const ath_cuda_ctx* ctx) {
  ATH_GUARD_BEGIN
  return ath::cuda::gemm::run(args, ctx);
  ATH_GUARD_END(ATH_GEMM_OP)
}

// CPU GEMM (ath_cpu_gemm): for each batch index b,
//   C_b (M, N) = alpha * op(A_b) (M, K) @ op(B_b) (K, N) + beta * C_b  (+ bias (N) broadcast over rows)
// Layout contract (athanor.h): row-major with row strides lda/ldb/ldc (elements); A_b is stored
// (M, K) or, with trans_a, (K, M); B_b is stored (K, N) or, with trans_b, (N, K); X_b = X + b * stride_x.
// dtype_ab in {F32, BF16, F16}, dtype_c in {F32, dtype_ab}, bias has dtype_c. Accumulation is F32.
// beta == 0 means C is not read. K == 0 or alpha == 0 reduces to C = beta * C + bias, and then A
// and B are not read. Epilogues GELU / GELU_BACKWARD (athanor.h) run after C is stored, as a pass
// over C by the activation op's own block kernels (activation.cpp, gemm_gelu_epilogue), so the
// result is the bits of the GEMM followed by the activation op.
//
// This file holds the C ABI entry (validation, dispatch), the BLIS-style blocking driver and the
// portable scalar kernel set; the vector kernels (gemm_impl.h, one template over the ISA traits,
// instantiated in gemm_avx512.cpp / gemm_avx2.cpp) sit behind the interface of gemm_kernels.h,
// which also describes the blocking scheme.
//
// Small M (<= the kernel set's skinny_max_m) takes the skinny path instead: B is read in place
// (packing it would cost as much as the product), A converted once, C produced in column slices.
//
// Threading: C is cut into rectangular regions on the register-tile grid (columns only on the
// skinny path; and across batch entries), and thread t computes a fixed, contiguous range of
// regions with its own packing buffers. K is never split. Every element of C is produced by the
// same k-ordered chain of FMAs whichever region or thread it lands in, so results are
// bit-identical run to run and across thread counts (for a fixed ISA, which selects the kernels,
// the K blocking and the small-M threshold).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "../common/dtype.h"
#include "../common/status.h"
#include "cpu_common.h"
#include "cpu_info.h"
#include "gemm_kernels.h"
#include "threadpool.h"

namespace ath::cpu::gemm {
namespace {

constexpr const char* kOp = "ath_cpu_gemm";

// ---------------------------------------------------------------- driver configuration
// Problems under this many multiply-adds run on the calling thread (waking the pool costs more).
constexpr double kMinParallelFmas = 1 << 21;
// Each additional thread needs at least this many multiply-adds of its own.
constexpr double kMinFmasPerThread = 1 << 20;
// Cost of packing one element, in multiply-adds, for choosing how to cut C between threads.
constexpr double kPackCostFmas = 8;
// F32 accumulation buffer per thread when C is BF16/F16 (the block of C being accumulated over K).
constexpr int64_t kAccBytes = 4 << 20;
// Skinny path (small M, B read in place): columns of C produced per kernel call.
constexpr int64_t kSkinnySlice = 512;

// ---------------------------------------------------------------- portable scalar kernel set
// 4 x 8 register tile of plain C++ (compilers vectorize it with the baseline SSE2).
constexpr int kScalarMR = 4;
constexpr int kScalarNR = 8;
constexpr int64_t kScalarKC = 256, kScalarMC = 512, kScalarNC = 256;

template <int DT>
inline float load_as_f32(const void* p, int64_t i) {
  if constexpr (DT == ATH_F32) return static_cast<const float*>(p)[i];
  if constexpr (DT == ATH_BF16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

template <int W, int DT>
void scalar_pack_dt(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  for (int64_t p0 = 0; p0 < width; p0 += W, dst += W * kc) {
    const int64_t wv = std::min<int64_t>(W, width - p0);
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t w = 0; w < W; ++w)
        dst[k * W + w] = w < wv ? load_as_f32<DT>(s.base, (p0 + w) * s.ws + k * s.ks) : 0.0f;
    }
  }
}

template <int W>
void scalar_pack(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  switch (s.dtype) {
    case ATH_BF16: return scalar_pack_dt<W, ATH_BF16>(s, width, kc, dst);
    case ATH_F16: return scalar_pack_dt<W, ATH_F16>(s, width, kc, dst);
    default: return scalar_pack_dt<W, ATH_F32>(s, width, kc, dst);
  }
}

void scalar_macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                  const Epilogue& ep) {
  constexpr int MR = kScalarMR, NR = kScalarNR;
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t mr = std::min<int64_t>(MR, mc - ir);
    for (int64_t jr = 0; jr < nc; jr += NR) {
      const int64_t nr = std::min<int64_t>(NR, nc - jr);
      const float* a = ap + ir * kc;
      const float* b = bp + jr * kc;
      float acc[MR][NR] = {};
      for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
        for (int i = 0; i < MR; ++i)
          for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
      for (int64_t i = 0; i < mr; ++i) {
        float* cr = c + (ir + i) * ldc + jr;
        for (int64_t j = 0; j < nr; ++j) {
          float x = acc[i][j] * ep.alpha;
          if (ep.accumulate) x += cr[j];
          else if (ep.beta != 0.0f) x += ep.beta * cr[j];
          if (ep.bias) x += ep.bias[jr + j];
          cr[j] = x;
        }
      }
    }
  }
}

const KernelSet kScalarSet = {"scalar", kScalarMR, kScalarNR, kScalarKC, kScalarMC, kScalarNC,
                              &scalar_pack<kScalarMR>, &scalar_pack<kScalarNR>, &scalar_macro, nullptr, 0};

// ---------------------------------------------------------------- helpers
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits n into ceil(n / cap) nearly equal pieces, each rounded up to a multiple of unit.
inline int64_t balanced_block(int64_t n, int64_t cap, int64_t unit) {
  const int64_t pieces = ceil_div(n, cap);
  return std::max<int64_t>(unit, round_up(ceil_div(n, pieces), unit));
}

// Grows on demand, 64-byte aligned, kept per thread across calls (packing buffers are hot paths).
class ThreadBuffer {
 public:
  ~ThreadBuffer() { std::free(p_); }
  float* get(int64_t floats) {
    const size_t bytes = static_cast<size_t>(round_up(std::max<int64_t>(floats, 16) * 4, 64));
    if (bytes > bytes_) {
      std::free(p_);
      p_ = nullptr;
      bytes_ = 0;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) throw std::bad_alloc();
      bytes_ = bytes;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t bytes_ = 0;
};
thread_local ThreadBuffer t_pack_a, t_pack_b, t_acc;

// The validated problem, in the terms of the packers.
struct Problem {
  const KernelSet* ks;
  int64_t m, n, k, batch;
  int dt_ab, dt_c;
  int64_t esz_ab, esz_c;
  const char* a; int64_t a_ws, a_ks, stride_a;  // op(A)(i, k) at a + i * a_ws + k * a_ks
  const char* b; int64_t b_ws, b_ks, stride_b;  // op(B)(k, j) at b + j * b_ws + k * b_ks
  char* c; int64_t ldc, stride_c;
  const void* bias;
  float alpha, beta;
  int64_t kc;  // K block, a function of K and the kernel set only
};

// C block (rows, cols) at (i0, j0) of one batch entry = alpha * acc (ld lda) + beta * C + bias,
// stored as dtype_c. The F32 epilogue of the paths that accumulate outside C (16-bit C, skinny).
template <int DT>
void epilogue_block_dt(const Problem& P, char* c_b, int64_t i0, int64_t j0, int64_t rows, int64_t cols,
                       float alpha, const float* acc, int64_t lda) {
  using T = std::conditional_t<DT == ATH_F32, float, uint16_t>;
  for (int64_t i = 0; i < rows; ++i) {
    T* cr = reinterpret_cast<T*>(c_b) + (i0 + i) * P.ldc + j0;
    const float* ar = acc + i * lda;
    for (int64_t j = 0; j < cols; ++j) {
      float x = alpha * ar[j];
      if (P.beta != 0.0f) x += P.beta * load_as_f32<DT>(cr, j);
      if (P.bias) x += load_as_f32<DT>(P.bias, j0 + j);
      if constexpr (DT == ATH_F32) cr[j] = x;
      else cr[j] = DT == ATH_BF16 ? f32_to_bf16(x) : f32_to_f16(x);
    }
  }
}

void epilogue_block(const Problem& P, char* c_b, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float alpha,
                    const float* acc, int64_t lda) {
  switch (P.dt_c) {
    case ATH_BF16: return epilogue_block_dt<ATH_BF16>(P, c_b, i0, j0, rows, cols, alpha, acc, lda);
    case ATH_F16: return epilogue_block_dt<ATH_F16>(P, c_b, i0, j0, rows, cols, alpha, acc, lda);
    default: return epilogue_block_dt<ATH_F32>(P, c_b, i0, j0, rows, cols, alpha, acc, lda);
  }
}

// Computes rows [m0, m1) x columns [n0, n1) of C for batch index bi.
void compute_region(const Problem& P, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const KernelSet& ks = *P.ks;
  const int64_t rows = m1 - m0, cols = n1 - n0;
  const int64_t mc = std::min(balanced_block(rows, ks.mc, ks.mr), round_up(rows, ks.mr));
  const int64_t nc = std::min<int64_t>(ks.nc, round_up(cols, ks.nr));
  const bool direct = P.dt_c == ATH_F32;
  // With BF16/F16 C, C is produced nch columns at a time in an F32 buffer of mc x nch.
  int64_t nch = cols;
  if (!direct && mc * cols * 4 > kAccBytes) nch = std::max<int64_t>(nc, kAccBytes / (mc * 4) / nc * nc);

  const int64_t kc = std::min(P.kc, P.k);
  float* ap = t_pack_a.get(round_up(mc, ks.mr) * kc);
  float* bp = t_pack_b.get(round_up(nc, ks.nr) * kc);
  float* acc = direct ? nullptr : t_acc.get(mc * std::min(nch, cols));

  const char* a_b = P.a + bi * P.stride_a * P.esz_ab;
  const char* b_b = P.b + bi * P.stride_b * P.esz_ab;
  char* c_b = P.c + bi * P.stride_c * P.esz_c;

  for (int64_t ic = m0; ic < m1; ic += mc) {
    const int64_t mcb = std::min(mc, m1 - ic);
    for (int64_t jcc = n0; jcc < n1; jcc += nch) {
      const int64_t nccb = std::min(nch, n1 - jcc);
      float* cblk = direct ? reinterpret_cast<float*>(c_b) + ic * P.ldc + jcc : acc;
      const int64_t ldcb = direct ? P.ldc : nccb;
      for (int64_t pc = 0; pc < P.k; pc += kc) {
        const int64_t kcb = std::min(kc, P.k - pc);
        const PackSrc sa{a_b + (ic * P.a_ws + pc * P.a_ks) * P.esz_ab, P.dt_ab, P.a_ws, P.a_ks};
        ks.pack_a(sa, mcb, kcb, ap);
        const bool last_k = pc + kcb == P.k;
        for (int64_t jc = jcc; jc < jcc + nccb; jc += nc) {
          const int64_t ncb = std::min(nc, jcc + nccb - jc);
          const PackSrc sb{b_b + (pc * P.b_ks + jc * P.b_ws) * P.esz_ab, P.dt_ab, P.b_ws, P.b_ks};
          ks.pack_b(sb, ncb, kcb, bp);
          Epilogue ep;
          ep.alpha = P.alpha;
          ep.beta = direct ? P.beta : 0.0f;
          ep.accumulate = pc > 0;
          ep.bias = direct && last_k && P.bias ? static_cast<const float*>(P.bias) + jc : nullptr;
          ks.macro(mcb, ncb, kcb, ap, bp, cblk + (jc - jcc), ldcb, ep);
        }
      }
      if (!direct) epilogue_block(P, c_b, ic, jcc, mcb, nccb, 1.0f, acc, ldcb);  // acc holds alpha * AB
    }
  }
}

// Skinny path: columns [n0, n1) of batch entry bi, B read in place (see SkinnyFn).
void compute_skinny(const Problem& P, int64_t bi, int64_t n0, int64_t n1) {
  const char* a_b = P.a + bi * P.stride_a * P.esz_ab;
  const char* b_b = P.b + bi * P.stride_b * P.esz_ab;
  char* c_b = P.c + bi * P.stride_c * P.esz_c;
  // op(A) as F32 (small: converted once per call): k-major when B is read along rows, else
  // row-major with rows padded off multiples of 4 KiB so that they do not alias in the caches.
  const bool k_major = P.b_ws == 1;
  const int64_t a_is = k_major ? 1 : round_up(P.k, 16) + 16, a_ps = k_major ? P.m : 1;
  float* a = t_pack_a.get(k_major ? P.m * P.k : P.m * a_is);
  for (int64_t i = 0; i < P.m; ++i)
    for (int64_t p = 0; p < P.k; ++p) a[i * a_is + p * a_ps] = load_f32(a_b, P.dt_ab, i * P.a_ws + p * P.a_ks);
  const int64_t slice = std::min(kSkinnySlice, n1 - n0);
  float* out = t_acc.get(P.m * slice);
  for (int64_t j0 = n0; j0 < n1; j0 += slice) {
    const int64_t nc = std::min(slice, n1 - j0);
    const PackSrc sb{b_b + j0 * P.b_ws * P.esz_ab, P.dt_ab, P.b_ws, P.b_ks};
    P.ks->skinny(P.m, nc, P.k, a, a_is, a_ps, sb, out, slice);
    epilogue_block(P, c_b, 0, j0, P.m, nc, P.alpha, out, slice);
  }
}

// K == 0 or alpha == 0: C = beta * C + bias (C not read when beta == 0), rows in parallel.
void scale_c(const Problem& P) {
  const int64_t rows = P.batch * P.m;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(P.n, 1));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / P.m, i = r % P.m;
      void* crow = P.c + (bi * P.stride_c + i * P.ldc) * P.esz_c;
      for (int64_t j = 0; j < P.n; ++j) {
        float x = P.beta != 0.0f ? P.beta * load_f32(crow, P.dt_c, j) : 0.0f;
        if (P.bias) x += load_f32(P.bias, P.dt_c, j);
        store_f32(crow, P.dt_c, j, x);
      }
    }
  });
}

inline bool skinny(const Problem& P) { return P.ks->skinny != nullptr && P.m <= P.ks->skinny_max_m; }

// How C is cut between threads: each batch index into g = tm * tn regions on the tile grid.
struct Partition {
  int64_t g = 1, tm = 1, tn = 1;
};

Partition choose_partition(const Problem& P, int threads) {
  Partition part;
  if (threads <= 1) return part;
  const int64_t t = threads;
  if (P.batch % t == 0 || P.batch >= 8 * t) return part;  // whole batch entries per thread
  int64_t a = P.batch, b = t;  // g = t / gcd(batch, t): batch * g units split evenly over t threads
  while (b != 0) { const int64_t r = a % b; a = b; b = r; }
  part.g = t / a;
  if (skinny(P)) {  // only columns are cut
    part.tn = part.g;
    return part;
  }
  const int64_t tiles_m = ceil_div(P.m, P.ks->mr), tiles_n = ceil_div(P.n, P.ks->nr);
  double best = -1;
  for (int64_t tm = 1; tm <= part.g; ++tm) {
    if (part.g % tm != 0) continue;
    const int64_t tn = part.g / tm;
    const double rows = static_cast<double>(ceil_div(tiles_m, tm) * P.ks->mr);
    const double cols = static_cast<double>(ceil_div(tiles_n, tn) * P.ks->nr);
    const double kd = static_cast<double>(P.k);
    const double a_packs = rows * kd;  // A is packed once per region (F32 C)
    const double b_packs = cols * kd * static_cast<double>(ceil_div(static_cast<int64_t>(rows), P.ks->mc));
    const double cost = rows * cols * kd + kPackCostFmas * (a_packs + b_packs);
    if (best < 0 || cost < best) {
      best = cost;
      part.tm = tm;
      part.tn = tn;
    }
  }
  return part;
}

ath_status run(const Problem& P) {
  const double fmas = static_cast<double>(P.m) * P.n * P.k * P.batch;
  int threads = num_threads();
  if (fmas < kMinParallelFmas) threads = 1;
  threads = static_cast<int>(std::min<double>(threads, std::max(1.0, fmas / kMinFmasPerThread)));
  const Partition part = choose_partition(P, threads);
  const int64_t units = P.batch * part.g;
  const bool use_skinny = skinny(P);
  // Regions are cut on the register-tile grid (packed path) or in 64-column steps (skinny path).
  const int64_t unit_m = use_skinny ? P.m : P.ks->mr, unit_n = use_skinny ? 64 : P.ks->nr;
  const int64_t tiles_m = ceil_div(P.m, unit_m), tiles_n = ceil_div(P.n, unit_n);

  std::atomic<int> failed{0};  // 1: out of memory, 2: other exception (pool tasks must not throw)
  auto work = [&](int tid, int nt) {
    const int used = std::min(threads, nt);
    if (tid >= used) return;
    int64_t u0, u1;
    static_range(units, tid, used, &u0, &u1);
    try {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t bi = u / part.g, r = u % part.g;
        int64_t tb, te;
        static_range(tiles_m, static_cast<int>(r / part.tn), static_cast<int>(part.tm), &tb, &te);
        const int64_t m0 = tb * unit_m, m1 = std::min(P.m, te * unit_m);
        static_range(tiles_n, static_cast<int>(r % part.tn), static_cast<int>(part.tn), &tb, &te);
        const int64_t n0 = tb * unit_n, n1 = std::min(P.n, te * unit_n);
        if (m0 >= m1 || n0 >= n1) continue;
        if (use_skinny) compute_skinny(P, bi, n0, n1);
        else compute_region(P, bi, m0, m1, n0, n1);
      }
    } catch (const std::bad_alloc&) {
      failed.store(1);
    } catch (...) {
      failed.store(2);
    }
  };
  if (threads == 1) work(0, 1);
  else run_on_all(work);
  if (failed.load() == 1) return fail(ATH_ERR_OOM, "%s: could not allocate packing buffers", kOp);
  if (failed.load() == 2) return fail(ATH_ERR_INTERNAL, "%s: unexpected exception in a worker", kOp);
  return ATH_OK;
}

const KernelSet* select_kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      if (const KernelSet* k = kernels_avx512()) return k;
      [[fallthrough]];
    case Isa::kAvx2:
      if (const KernelSet* k = kernels_avx2()) return k;
      [[fallthrough]];
    default:
      return kernels_scalar();
  }
}

ath_status validate(const ath_gemm_args* g) {
  ATH_CHECK_ARG(g != nullptr, "ath_cpu_gemm", "args is null");
  ATH_CHECK_ARG(g->m >= 0, "ath_cpu_gemm", "m=%lld must be >= 0", (long long)g->m);
  ATH_CHECK_ARG(g->n >= 0, "ath_cpu_gemm", "n=%lld must be >= 0", (long long)g->n);
  ATH_CHECK_ARG(g->k >= 0, "ath_cpu_gemm", "k=%lld must be >= 0", (long long)g->k);
  ATH_CHECK_ARG(g->batch >= 0, "ath_cpu_gemm", "batch=%lld must be >= 0", (long long)g->batch);
  ATH_CHECK_ARG(g->dtype_ab == ATH_F32 || g->dtype_ab == ATH_BF16 || g->dtype_ab == ATH_F16, "ath_cpu_gemm",
                "dtype_ab=%d (%s) must be F32, BF16 or F16", g->dtype_ab, dtype_name(g->dtype_ab));
  ATH_CHECK_ARG(g->dtype_c == ATH_F32 || g->dtype_c == g->dtype_ab, "ath_cpu_gemm",
                "dtype_c=%d (%s) must be F32 or dtype_ab (%s)", g->dtype_c, dtype_name(g->dtype_c),
                dtype_name(g->dtype_ab));
  ATH_CHECK_ARG(g->trans_a == 0 || g->trans_a == 1, "ath_cpu_gemm", "trans_a=%d must be 0 or 1", g->trans_a);
  ATH_CHECK_ARG(g->trans_b == 0 || g->trans_b == 1, "ath_cpu_gemm", "trans_b=%d must be 0 or 1", g->trans_b);
  const int64_t a_cols = g->trans_a ? g->m : g->k, b_cols = g->trans_b ? g->k : g->n;
  ATH_CHECK_ARG(g->lda >= std::max<int64_t>(1, a_cols), "ath_cpu_gemm",
                "lda=%lld must be >= max(1, %s) = %lld (A is stored %s)", (long long)g->lda, g->trans_a ? "m" : "k",
                (long long)std::max<int64_t>(1, a_cols), g->trans_a ? "(K, M), trans_a=1" : "(M, K), trans_a=0");
  ATH_CHECK_ARG(g->ldb >= std::max<int64_t>(1, b_cols), "ath_cpu_gemm",
                "ldb=%lld must be >= max(1, %s) = %lld (B is stored %s)", (long long)g->ldb, g->trans_b ? "k" : "n",
                (long long)std::max<int64_t>(1, b_cols), g->trans_b ? "(N, K), trans_b=1" : "(K, N), trans_b=0");
  ATH_CHECK_ARG(g->ldc >= std::max<int64_t>(1, g->n), "ath_cpu_gemm", "ldc=%lld must be >= max(1, n) = %lld",
                (long long)g->ldc, (long long)std::max<int64_t>(1, g->n));
  if (g->batch > 1) {
    ATH_CHECK_ARG(g->stride_a >= 0, "ath_cpu_gemm", "stride_a=%lld must be >= 0", (long long)g->stride_a);
    ATH_CHECK_ARG(g->stride_b >= 0, "ath_cpu_gemm", "stride_b=%lld must be >= 0", (long long)g->stride_b);
    if (g->m > 0 && g->n > 0) {
      const int64_t c_extent = (g->m - 1) * g->ldc + g->n;
      ATH_CHECK_ARG(g->stride_c >= c_extent, "ath_cpu_gemm",
                    "stride_c=%lld must be >= (m-1)*ldc+n = %lld so that the batch entries of C do not overlap",
                    (long long)g->stride_c, (long long)c_extent);
    }
  }
  const bool writes_c = g->m > 0 && g->n > 0 && g->batch > 0;
  ATH_CHECK_ARG(!writes_c || g->c != nullptr, "ath_cpu_gemm", "c is null (m=%lld, n=%lld, batch=%lld)",
                (long long)g->m, (long long)g->n, (long long)g->batch);
  ATH_CHECK_ARG(!writes_c || g->k == 0 || g->a != nullptr, "ath_cpu_gemm", "a is null (m=%lld, k=%lld)",
                (long long)g->m, (long long)g->k);
  ATH_CHECK_ARG(!writes_c || g->k == 0 || g->b != nullptr, "ath_cpu_gemm", "b is null (k=%lld, n=%lld)",
                (long long)g->k, (long long)g->n);
  ATH_CHECK_ARG(g->epilogue == ATH_GEMM_EPI_NONE || g->epilogue == ATH_GEMM_EPI_GELU ||
                    g->epilogue == ATH_GEMM_EPI_GELU_BACKWARD,
                "ath_cpu_gemm", "epilogue=%d must be 0 (NONE), 1 (GELU) or 2 (GELU_BACKWARD)", g->epilogue);
  ATH_CHECK_ARG(!writes_c || g->epilogue != ATH_GEMM_EPI_GELU_BACKWARD || g->aux != nullptr, "ath_cpu_gemm",
                "aux is null (epilogue GELU_BACKWARD reads the pre-activation from it)");
  ATH_CHECK_ARG(!writes_c || g->epilogue == ATH_GEMM_EPI_NONE || g->aux != g->c, "ath_cpu_gemm",
                "aux=%p must not be c (epilogue=%d)", g->aux, g->epilogue);
  return ATH_OK;
}

// The GELU epilogues after the GEMM has stored C: one row over the whole of a contiguous C (the
// blocks of the activation op over the same elements), else row by row.
void gelu_epilogue(const ath_gemm_args& g) {
  const bool backward = g.epilogue == ATH_GEMM_EPI_GELU_BACKWARD;
  const bool contiguous = g.ldc == g.n && (g.batch == 1 || g.stride_c == g.m * g.n);
  if (contiguous) {
    ath::cpu::gemm_gelu_epilogue(backward, g.dtype_c, g.c, g.aux, 1, g.batch * g.m * g.n, 1, 0, 0);
  } else {
    ath::cpu::gemm_gelu_epilogue(backward, g.dtype_c, g.c, g.aux, g.batch * g.m, g.n, g.m, g.ldc, g.stride_c);
  }
}

}  // namespace

const KernelSet* kernels_scalar() { return &kScalarSet; }

}  // namespace ath::cpu::gemm

extern "C" ath_status ath_cpu_gemm(const ath_gemm_args* args) {
  using namespace ath::cpu::gemm;
  ATH_GUARD_BEGIN
  ATH_TRY(validate(args));
  const ath_gemm_args& g = *args;
  if (g.m == 0 || g.n == 0 || g.batch == 0) return ATH_OK;
  Problem P{};
  P.ks = select_kernels();
  P.m = g.m;
  P.n = g.n;
  P.k = g.k;
  P.batch = g.batch;
  P.dt_ab = g.dtype_ab;
  P.dt_c = g.dtype_c;
  P.esz_ab = static_cast<int64_t>(ath_dtype_size(g.dtype_ab));
  P.esz_c = static_cast<int64_t>(ath_dtype_size(g.dtype_c));
  P.a = static_cast<const char*>(g.a);
  P.a_ws = g.trans_a ? 1 : g.lda;
  P.a_ks = g.trans_a ? g.lda : 1;
  P.stride_a = g.stride_a;
  P.b = static_cast<const char*>(g.b);
  P.b_ws = g.trans_b ? g.ldb : 1;
  P.b_ks = g.trans_b ? 1 : g.ldb;
  P.stride_b = g.stride_b;
  P.c = static_cast<char*>(g.c);
  P.ldc = g.ldc;
  P.stride_c = g.stride_c;
  P.bias = g.bias;
  P.alpha = g.alpha;
  P.beta = g.beta;
  if (g.k == 0 || g.alpha == 0.0f) {
    scale_c(P);
  } else {
    P.kc = balanced_block(g.k, P.ks->kc, 8);
    ATH_TRY(run(P));
  }
  if (g.epilogue != ATH_GEMM_EPI_NONE) gelu_epilogue(g);
  return ATH_OK;
  ATH_GUARD_END("ath_cpu_gemm")
}

// Internal interface between the CPU GEMM driver (gemm.cpp) and its per-ISA kernels: the vector
// kernels written once in gemm_impl.h and instantiated in gemm_avx512.cpp / gemm_avx2.cpp, and the
// portable scalar set inside gemm.cpp.
//
// The driver works in the BLIS/Goto style on F32 panels. Everything dtype-specific happens while
// packing; the microkernels only ever see F32:
//
//   for ic in M, step mc                      A block (mc x kc) packed once per (ic, pc): L3
//     for pc in K, step kc
//       pack A(ic.., pc..) -> Ap              ceil(mc/MR) micro-panels, each kc x MR, k-major
//       for jc in N, step nc                  B block (kc x nc): L2 resident
//         pack B(pc.., jc..) -> Bp            ceil(nc/NR) micro-panels, each kc x NR, k-major
//         macro(Ap, Bp, C(ic, jc))            ir over MR rows (A micro-panel stays in L1),
//                                             jr over NR columns (B micro-panels stream from L2),
//                                             one MR x NR register tile per (ir, jr)
//
// A register tile accumulates sum_k Ap[k][i] * Bp[k][j] in k order 0, 1, ..., kc-1, one FMA
// chain per element, so the value of C(i, j) depends only on the kc blocking of K, never on the
// tile or thread it was computed in: results are identical for every thread count.
//
// Small M (M <= skinny_max_m) skips the packing of B, which would cost as much as the product, and
// calls `skinny` on slices of columns instead (see SkinnyFn); its order of summation is fixed too.
//
// These declarations are plain data and function pointers on purpose: the ISA files are compiled
// with -mavx512f/-mavx2, and an inline function or template shared between them and baseline code
// could be emitted once with AVX-512 instructions and then linked into the baseline path. The
// kernel templates (gemm_impl.h) and the vector traits (simd_traits.h) therefore live in anonymous
// namespaces: every ISA file gets its own copy.
#pragma once
#include <cstdint>

namespace ath::cpu::gemm {

// A strided 2-D source operand for packing, in elements of `dtype` (ATH_F32, ATH_BF16, ATH_F16).
// Element (w, k) lives at base + w * ws + k * ks, where w runs along the panel width (rows of op(A)
// or columns of op(B)) and k along the reduction dimension. One of ws, ks is 1 for every GEMM layout.
struct PackSrc {
  const void* base;
  int dtype;
  int64_t ws, ks;
};

// Packs `width` rows (w) by `kc` (k) of src into ceil(width / W) micro-panels of kc * W floats,
// panel p at dst + p * W * kc, element (w, k) of the panel at [k * W + w]. Widths beyond `width`
// in the last panel are written as zeros. W is the kernel set's mr (for A) or nr (for B).
using PackFn = void (*)(const PackSrc& src, int64_t width, int64_t kc, float* dst);

// How a tile is combined with C (F32, row stride ldc).
struct Epilogue {
  float alpha;
  float beta;          // used when !accumulate; beta == 0 means C is not read
  bool accumulate;     // false: C = alpha * acc + beta * C;  true: C += alpha * acc
  const float* bias;   // NULL, or the F32 bias of column 0 of the block, added last
};

// C block (mc x nc, row stride ldc) op= Ap (mc x kc, packed) * Bp (kc x nc, packed): loops over all
// MR x NR tiles of the block, handling the partial tiles at its right and bottom edges.
using MacroFn = void (*)(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                         int64_t ldc, const Epilogue& ep);

// Small-M GEMM that reads B in place (packing B would cost as much as the whole product):
//   out (m, nc; row stride ldo) = op(A) (m, k; F32) @ op(B) (k, nc)
// with op(B)(k, j) at b.base + j * b.ws + k * b.ks (b.dtype) and op(A)(i, p) at a[i * a_is + p * a_ps]:
//  - b.ws == 1 (B not transposed): A k-major (a_is = 1, a_ps = m); the kernel vectorizes along j
//    and sums each output over k in order.
//  - b.ks == 1 (B transposed): A row-major (a_ps = 1, a_is >= k, padded so rows do not alias in
//    the caches); the kernel computes dot products along k in vector lanes, then reduces the lanes
//    in a fixed order.
// Either way an element's summation order depends only on k, never on nc or the thread.
using SkinnyFn = void (*)(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps,
                          const PackSrc& b, float* out, int64_t ldo);

struct KernelSet {
  const char* name;
  int mr, nr;           // register tile
  int64_t kc, mc, nc;   // cache blocking caps: K block (L1/L2), A block rows (L3), B block cols (L2)
  PackFn pack_a;        // W = mr
  PackFn pack_b;        // W = nr
  MacroFn macro;
  SkinnyFn skinny;      // NULL: small M goes through the packed path too
  int64_t skinny_max_m; // use `skinny` when M <= this
};

// Each returns NULL when this build lacks the kernels (the file was compiled without the ISA flags).
const KernelSet* kernels_scalar();
const KernelSet* kernels_avx2();
const KernelSet* kernels_avx512();

}  // namespace ath::cpu::gemm

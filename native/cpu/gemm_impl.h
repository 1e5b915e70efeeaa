// The vector kernels of the CPU GEMM (packers, macro kernel with its register tiles, small-M
// kernels), written once over a SIMD traits struct V (simd_traits.h: VAvx2, VAvx512) and a
// configuration struct C (register tile, cache blocking, small-M path), and instantiated per ISA in
// gemm_avx2.cpp and gemm_avx512.cpp, which are built with those ISA flags and hold the
// configurations. The driver (gemm.cpp) reaches them through the KernelSet of gemm_kernels.h, which
// also describes the blocking scheme and the contract. W below is V::W, the floats per vector.
//
// Register tile: C::kMR rows x kNR = W * C::kV columns of C: kMR * kV accumulators, kV vectors of B
// and A broadcast from memory, so per k step kV vector loads and kMR broadcasts feed kMR * kV FMAs.
// Edge tiles are the same code instantiated for fewer rows (R < kMR) and fewer vectors (V < kV); the
// last partial vector uses lane masks, so nothing outside C is ever read or written. Every element
// of C is one FMA chain over k in order (the results depend on the kc blocking only).
//
// Packing converts BF16/F16 to F32 (BF16: shift into the high half; F16: vcvtph2ps). A source
// contiguous along the panel width is copied k-row by k-row; one contiguous along k (A not
// transposed, B transposed) is transposed in W x W register blocks. Partial vectors are masked.
//
// Small M (<= C::kSkinnyMaxM) skips packing B, whose cost would match the whole product: B is read
// in place, either along its rows (B not transposed: A broadcast, C::kSkinnyPassRows rows per pass
// over B, C::skinny_vectors(rows) vectors per step, optional software prefetch of the B rows) or as
// dot products along k (B transposed: C::kSkinnyDotRows rows x C::kSkinnyDots columns of W-lane
// partial dot products, reduced by V::hsum), see SkinnyFn in gemm_kernels.h.
//
// Everything here has internal linkage (see gemm_kernels.h: ISA-flagged code must never be shared
// with baseline callers).
#pragma once
#include <cstdint>
#include <type_traits>

#include "athanor/athanor.h"
#include "gemm_kernels.h"
#include "simd_traits.h"

namespace ath::cpu::gemm {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Calls f(std::integral_constant<int, r>{}) for a run-time r in [1, N] (one instantiation per r).
template <int N, class F>
void with_rows(int64_t r, const F& f) {
  if constexpr (N >= 1) {
    if (r == N) return f(std::integral_constant<int, N>{});
    with_rows<N - 1>(r, f);
  }
}

template <class V, class C>
struct GemmKernels {
  using R = typename V::R;
  using Mask = typename V::Mask;
  static constexpr int W = V::W;
  static constexpr int kMR = C::kMR, kV = C::kV, kNR = W * C::kV;

  // ---------------------------------------------------------------- packing
  // Source contiguous along the panel width (ws == 1): A transposed, B not transposed.
  template <int PW, int DT>
  static void pack_rows(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
    using T = typename DtElem<DT>::T;
    constexpr int kVec = (PW + W - 1) / W;
    const T* base = static_cast<const T*>(s.base);
    Mask store_m[kVec];
    for (int v = 0; v < kVec; ++v) store_m[v] = V::mask(PW - W * v);
    for (int64_t p0 = 0; p0 < width; p0 += PW, dst += PW * kc) {
      const int64_t wv = min64(PW, width - p0);
      const T* src = base + p0;
      if (wv == PW && PW % W == 0) {
        for (int64_t k = 0; k < kc; ++k) {
          const T* row = src + k * s.ks;
          float* d = dst + k * PW;
#pragma GCC unroll 4
          for (int v = 0; v < kVec; ++v) V::store(d + W * v, V::template load_cvt<DT>(row + W * v));
        }
      } else {
        Mask load_m[kVec];
        for (int v = 0; v < kVec; ++v) load_m[v] = V::mask(wv - W * v);
        for (int64_t k = 0; k < kc; ++k) {
          const T* row = src + k * s.ks;
          float* d = dst + k * PW;
          for (int v = 0; v < kVec; ++v)
            V::store_masked(d + W * v, store_m[v], V::template load_cvt<DT>(row + W * v, load_m[v]));
        }
      }
    }
  }

  // Source contiguous along k (ks == 1): A not transposed, B transposed. W (w) x W (k) blocks are
  // loaded as rows, transposed, and stored as W k-rows of the panel.
  template <int PW, int DT>
  static void pack_cols(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
    using T = typename DtElem<DT>::T;
    constexpr int kGroups = (PW + W - 1) / W;
    const T* base = static_cast<const T*>(s.base);
    for (int64_t p0 = 0; p0 < width; p0 += PW, dst += PW * kc) {
      const int64_t wv = min64(PW, width - p0);
      for (int64_t k0 = 0; k0 < kc; k0 += W) {
        const int64_t kv = min64(W, kc - k0);
        const Mask km = V::mask(kv);
        for (int g = 0; g < kGroups; ++g) {
          R r[W];
#pragma GCC unroll 16
          for (int t = 0; t < W; ++t) {
            const int64_t w = W * g + t;
            if (w >= wv) {
              r[t] = V::zero();
            } else {
              const T* p = base + (p0 + w) * s.ws + k0;
              r[t] = kv == W ? V::template load_cvt<DT>(p) : V::template load_cvt<DT>(p, km);
            }
          }
          V::transpose(r);
          float* d = dst + k0 * PW + W * g;
          if (PW - W * g >= W) {
            if (kv == W) {
#pragma GCC unroll 16
              for (int t = 0; t < W; ++t) V::store(d + t * PW, r[t]);
            } else {
              for (int t = 0; t < kv; ++t) V::store(d + t * PW, r[t]);
            }
          } else {
            const Mask sm = V::mask(PW - W * g);
            for (int t = 0; t < kv; ++t) V::store_masked(d + t * PW, sm, r[t]);
          }
        }
      }
    }
  }

  template <int PW>
  static void pack(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
    const bool rows = s.ws == 1;  // else ks == 1 (every GEMM layout has one of them)
    switch (s.dtype) {
      case ATH_BF16:
        return rows ? pack_rows<PW, kDtBF16>(s, width, kc, dst) : pack_cols<PW, kDtBF16>(s, width, kc, dst);
      case ATH_F16:
        return rows ? pack_rows<PW, kDtF16>(s, width, kc, dst) : pack_cols<PW, kDtF16>(s, width, kc, dst);
      default:
        return rows ? pack_rows<PW, kDtF32>(s, width, kc, dst) : pack_cols<PW, kDtF32>(s, width, kc, dst);
    }
  }

  // ---------------------------------------------------------------- microkernel
  // C tile (RR x nr, nr <= W * VV) op= sum_k Ap[k][0..RR) (x) Bp[k][0..W*VV).
  template <int RR, int VV>
  static void tile(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int nr, const Epilogue& ep) {
    R acc[RR][VV];
#pragma GCC unroll 16
    for (int i = 0; i < RR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < VV; ++v) acc[i][v] = V::zero();
#pragma GCC unroll 16
    for (int i = 0; i < RR; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      if constexpr (W * VV * 4 > 64)  // the tile's row spans two cache lines
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + W * VV - 1), _MM_HINT_T0);
    }

    for (int64_t k = 0; k < kc; ++k) {
      R b[VV];
#pragma GCC unroll 4
      for (int v = 0; v < VV; ++v) b[v] = V::load_aligned(bp + W * v);
#pragma GCC unroll 16
      for (int i = 0; i < RR; ++i) {
        const R a = V::broadcast(ap + i);
#pragma GCC unroll 4
        for (int v = 0; v < VV; ++v) acc[i][v] = V::fma(a, b[v], acc[i][v]);
      }
      ap += kMR;
      bp += kNR;
    }

    // Epilogue: alpha, then beta * C or += C, then bias; masked to the valid columns.
    Mask m[VV];
    R bias[VV];
    for (int v = 0; v < VV; ++v) {
      m[v] = V::mask(nr - W * v);
      bias[v] = ep.bias ? V::load_masked(ep.bias + W * v, m[v]) : V::zero();
    }
    const R va = V::set1(ep.alpha);
    const R vb = V::set1(ep.beta);
    const int mode = ep.accumulate ? 0 : ep.beta != 0.0f ? 1 : 2;
#pragma GCC unroll 16
    for (int i = 0; i < RR; ++i) {
      float* cr = c + i * ldc;
#pragma GCC unroll 4
      for (int v = 0; v < VV; ++v) {
        R x;
        if (mode == 2) {
          x = V::mul(acc[i][v], va);
        } else {
          const R old = V::load_masked(cr + W * v, m[v]);
          x = V::fma(acc[i][v], va, mode == 0 ? old : V::mul(vb, old));
        }
        if (ep.bias) x = V::add(x, bias[v]);
        V::store_masked(cr + W * v, m[v], x);
      }
    }
  }

  using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, const Epilogue&);

  // fn[R - 1][V - 1] = tile<R, V> for every edge shape.
  struct TileTable {
    TileFn fn[kMR][kV];
  };
  template <int RR, int VV>
  static constexpr void fill_tiles(TileTable& t) {
    t.fn[RR - 1][VV - 1] = &tile<RR, VV>;
    if constexpr (VV < kV) fill_tiles<RR, VV + 1>(t);
    else if constexpr (RR < kMR) fill_tiles<RR + 1, 1>(t);
  }
  static constexpr TileTable make_tiles() {
    TileTable t{};
    fill_tiles<1, 1>(t);
    return t;
  }

  static void macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                    const Epilogue& ep) {
    static constexpr TileTable kTiles = make_tiles();
    for (int64_t ir = 0; ir < mc; ir += kMR) {
      const int mr = static_cast<int>(min64(kMR, mc - ir));
      const TileFn* row = kTiles.fn[mr - 1];
      const float* a = ap + ir * kc;
      for (int64_t jr = 0; jr < nc; jr += kNR) {
        const int nr = static_cast<int>(min64(kNR, nc - jr));
        Epilogue e = ep;
        if (e.bias) e.bias += jr;
        row[(nr + W - 1) / W - 1](kc, a, bp + jr * kc, c + ir * ldc + jr, ldc, nr, e);
      }
    }
  }

  // ---------------------------------------------------------------- skinny (small M) kernels
  // B not transposed: rows [0, MI) x W*VV columns per step, k in order; B rows read in place, A
  // k-major (MI consecutive floats per k). One pass over B serves up to C::kSkinnyPassRows rows:
  // re-reading B per row group would go to L3, since rows of B lie ldb apart and alias in the
  // caches. K is walked in blocks of C::kSkinnyKB rows of B across all columns (the partial sums
  // wait in `out`, exactly), so that one block's rows stay in the TLB and caches while every column
  // chunk walks down them.
  template <int DT, int MI, int VV>
  static void skinny_rows(int64_t nc, int64_t k, const float* a, int64_t a_ps, const PackSrc& b, float* out,
                          int64_t ldo) {
    using T = typename DtElem<DT>::T;
    for (int64_t k0 = 0; k0 < k; k0 += C::kSkinnyKB) {
      const int64_t kb = min64(C::kSkinnyKB, k - k0);
      const T* base = static_cast<const T*>(b.base) + k0 * b.ks;
      for (int64_t j0 = 0; j0 < nc; j0 += W * VV) {
        Mask m[VV];
        for (int v = 0; v < VV; ++v) m[v] = V::mask(nc - j0 - W * v);
        R acc[MI][VV];
#pragma GCC unroll 12
        for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
          for (int v = 0; v < VV; ++v) acc[i][v] = k0 == 0 ? V::zero() : V::load_masked(out + i * ldo + j0 + W * v, m[v]);
        const T* bp = base + j0;
        const float* ap = a + k0 * a_ps;
        for (int64_t p = 0; p < kb; ++p, bp += b.ks, ap += a_ps) {
          if constexpr (C::kSkinnyPrefetch > 0) {
            // Rows of B lie ldb apart, out of reach of the hardware prefetchers: fetch ahead.
            constexpr int kStep = 64 / (W * static_cast<int>(sizeof(T))) > 0 ? 64 / (W * static_cast<int>(sizeof(T))) : 1;
            if (p + C::kSkinnyPrefetch < kb) {
#pragma GCC unroll 8
              for (int v = 0; v < VV; v += kStep)
                _mm_prefetch(reinterpret_cast<const char*>(bp + C::kSkinnyPrefetch * b.ks + W * v), _MM_HINT_T0);
            }
          }
          R bv[VV];
#pragma GCC unroll 8
          for (int v = 0; v < VV; ++v) bv[v] = V::template load_cvt<DT>(bp + W * v, m[v]);
#pragma GCC unroll 12
          for (int i = 0; i < MI; ++i) {
            const R av = V::broadcast(ap + i);
#pragma GCC unroll 8
            for (int v = 0; v < VV; ++v) acc[i][v] = V::fma(av, bv[v], acc[i][v]);
          }
        }
#pragma GCC unroll 12
        for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
          for (int v = 0; v < VV; ++v) V::store_masked(out + i * ldo + j0 + W * v, m[v], acc[i][v]);
      }
    }
  }

  // One k step (W lanes; masked by km unless kFull) of skinny_dots.
  template <int DT, int MI, bool kFull>
  __attribute__((always_inline)) static inline void dots_step(R (&acc)[MI][C::kSkinnyDots],
                                                              const typename DtElem<DT>::T* const (&br)[C::kSkinnyDots],
                                                              const float* a, int64_t a_is, int64_t p, const Mask& km) {
    R bv[C::kSkinnyDots];
#pragma GCC unroll 4
    for (int jj = 0; jj < C::kSkinnyDots; ++jj)
      bv[jj] = kFull ? V::template load_cvt<DT>(br[jj] + p) : V::template load_cvt<DT>(br[jj] + p, km);
#pragma GCC unroll 8
    for (int i = 0; i < MI; ++i) {
      const R av = kFull ? V::load(a + i * a_is + p) : V::load_masked(a + i * a_is + p, km);
#pragma GCC unroll 4
      for (int jj = 0; jj < C::kSkinnyDots; ++jj) acc[i][jj] = V::fma(av, bv[jj], acc[i][jj]);
    }
  }

  // B transposed (rows of B contiguous along k): columns [j0, j0 + kSkinnyDots) x rows [0, MI) as
  // dot products in W lanes over k, then V::hsum (a fixed order). Columns past nc repeat the last
  // one and are not stored.
  template <int DT, int MI>
  static void skinny_dots(int64_t j0, int64_t nc, int64_t k, const float* a, int64_t a_is, const PackSrc& b,
                          float* out, int64_t ldo) {
    using T = typename DtElem<DT>::T;
    constexpr int J = C::kSkinnyDots;
    const T* br[J];
    for (int jj = 0; jj < J; ++jj) br[jj] = static_cast<const T*>(b.base) + min64(j0 + jj, nc - 1) * b.ws;
    R acc[MI][J];
#pragma GCC unroll 8
    for (int i = 0; i < MI; ++i)
#pragma GCC unroll 4
      for (int jj = 0; jj < J; ++jj) acc[i][jj] = V::zero();
    const int64_t k_full = k / W * W;
    const Mask all = V::mask(W);
    for (int64_t p = 0; p < k_full; p += W) dots_step<DT, MI, true>(acc, br, a, a_is, p, all);
    if (k_full < k) dots_step<DT, MI, false>(acc, br, a, a_is, k_full, V::mask(k - k_full));
    float sums[MI][J];
#pragma GCC unroll 8
    for (int i = 0; i < MI; ++i)
#pragma GCC unroll 4
      for (int jj = 0; jj < J; ++jj) sums[i][jj] = V::hsum(acc[i][jj]);
    const int64_t jn = min64(J, nc - j0);
    for (int i = 0; i < MI; ++i)
      for (int64_t jj = 0; jj < jn; ++jj) out[i * ldo + j0 + jj] = sums[i][jj];
  }

  template <int DT>
  static void skinny_dt(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps,
                        const PackSrc& b, float* out, int64_t ldo) {
    if (b.ws == 1) {
      for (int64_t i0 = 0; i0 < m; i0 += C::kSkinnyPassRows) {  // a pass over B per kSkinnyPassRows rows
        const float* ai = a + i0 * a_is;
        float* oi = out + i0 * ldo;
        with_rows<C::kSkinnyPassRows>(min64(C::kSkinnyPassRows, m - i0), [&](auto rows) {
          constexpr int kRows = decltype(rows)::value;
          skinny_rows<DT, kRows, C::skinny_vectors(kRows)>(nc, k, ai, a_ps, b, oi, ldo);
        });
      }
      return;
    }
    // B transposed: for each group of columns (kSkinnyDots rows of B, kept in L1), every row group.
    for (int64_t j0 = 0; j0 < nc; j0 += C::kSkinnyDots) {
      for (int64_t i0 = 0; i0 < m; i0 += C::kSkinnyDotRows) {
        const float* ai = a + i0 * a_is;
        float* oi = out + i0 * ldo;
        with_rows<C::kSkinnyDotRows>(min64(C::kSkinnyDotRows, m - i0), [&](auto rows) {
          skinny_dots<DT, decltype(rows)::value>(j0, nc, k, ai, a_is, b, oi, ldo);
        });
      }
    }
  }

  static void skinny(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps, const PackSrc& b,
                     float* out, int64_t ldo) {
    switch (b.dtype) {
      case ATH_BF16: return skinny_dt<kDtBF16>(m, nc, k, a, a_is, a_ps, b, out, ldo);
      case ATH_F16: return skinny_dt<kDtF16>(m, nc, k, a, a_is, a_ps, b, out, ldo);
      default: return skinny_dt<kDtF32>(m, nc, k, a, a_is, a_ps, b, out, ldo);
    }
  }

  // The kernel set of this ISA and configuration, for the driver.
  static constexpr KernelSet kernel_set(const char* name) {
    return {name, kMR, kNR, C::kKC, C::kMC, C::kNC, &pack<kMR>, &pack<kNR>, &macro, &skinny, C::kSkinnyMaxM};
  }
};

}  // namespace
}  // namespace ath::cpu::gemm

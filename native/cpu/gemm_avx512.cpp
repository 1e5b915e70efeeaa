// AVX-512 kernels of the CPU GEMM (see gemm_kernels.h for the blocking scheme and the contract).
//
// Register tile: kMR rows x kNR columns of C, kNR = 16 * kV (one zmm per 16 columns), so the main
// tile keeps kMR * kV = 24 zmm accumulators, kV zmm of B and broadcasts A from memory (embedded
// {1to16} broadcast operands): per k step kV vector loads + kMR broadcasts feed kMR * kV FMAs.
// Edge tiles use the same code instantiated for fewer rows (R < kMR) and fewer vectors (V < kV);
// the last partial vector is handled with lane masks, so nothing outside C is ever read or written.
//
// Small M (<= kSkinnyMaxM) skips packing B, whose cost would match the whole product: B is read in
// place, either along its rows (B not transposed, broadcasting A) or as dot products along k (B
// transposed, e.g. x @ W^T in inference), see SkinnyFn in gemm_kernels.h.
//
// Packing converts BF16/F16 to F32 (BF16: shift into the high half; F16: vcvtph2ps). A source that
// is contiguous along the panel width is copied row by row; one contiguous along k (A not
// transposed, B transposed) is transposed in 16 x 16 register blocks.
#include "gemm_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__) && \
    defined(__F16C__)
// GCC 12's AVX-512 headers initialize _mm512_undefined_*() from themselves, which -W(maybe-)uninitialized
// reports at every inlined use (GCC bug 105593); the warnings are silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "athanor/athanor.h"

namespace ath::cpu::gemm {
namespace {

// ---------------------------------------------------------------- configuration
// Measured on Zen 5 (1 MiB L2, 48 KiB L1D): 12x32, 14x32, 8x48 and 6x64 tiles all reach ~90% of the
// FMA peak inside the macro kernel; 12x32 keeps the edge waste small for narrow N. Blocking:
constexpr int kMR = 12;            // rows of the register tile (broadcast A values)
constexpr int kV = 2;              // zmm vectors per tile row
constexpr int kNR = 16 * kV;       // columns of the register tile
constexpr int64_t kKC = 384;       // K block: A micro-panel kMR*kKC*4 = 18 KiB (L1), B micro-panels stream from L2
constexpr int64_t kNC = 320;       // B block kKC*kNC*4 = 480 KiB stays in L2 (1 MiB)
constexpr int64_t kMC = 1536;      // A block rows (kMC*kKC*4 = 2.25 MiB, L3)
// Small M: the skinny path (B read in place) up to kSkinnyMaxM rows; measured on Zen 5, it beats
// the packed path up to 8 rows and is no better from about 12.
constexpr int64_t kSkinnyMaxM = 8;
// B not transposed: up to 12 rows x 32 columns (24 accumulators), fewer rows take wider steps.
// B transposed: kSkinnyRows rows x kSkinnyDots columns of dot products = 24 accumulators.
constexpr int kSkinnyRows = 6;
constexpr int kSkinnyDots = 4;
constexpr int64_t kSkinnyKB = 256;  // B not transposed: rows of B per sweep across the columns
constexpr int64_t kSkinnyPrefetch = 16;  // B not transposed: software prefetch distance in rows

inline __mmask16 lane_mask(int64_t n) {
  return n <= 0 ? static_cast<__mmask16>(0)
                : n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------- loads with conversion to F32
template <int DT>
struct Elem;
template <>
struct Elem<ATH_F32> { using T = float; };
template <>
struct Elem<ATH_BF16> { using T = uint16_t; };
template <>
struct Elem<ATH_F16> { using T = uint16_t; };

// Up to 16 consecutive elements (lanes outside m read as 0, their memory untouched).
template <int DT>
inline __m512 load16(const typename Elem<DT>::T* p, __mmask16 m) {
  if constexpr (DT == ATH_F32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (DT == ATH_BF16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
}

// ---------------------------------------------------------------- packing
// Source contiguous along the panel width (ws == 1): A transposed, B not transposed.
template <int W, int DT>
void pack_rows(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  using T = typename Elem<DT>::T;
  constexpr int kVec = (W + 15) / 16;
  const T* base = static_cast<const T*>(s.base);
  for (int64_t p0 = 0; p0 < width; p0 += W, dst += W * kc) {
    const int64_t wv = min64(W, width - p0);
    __mmask16 load_m[kVec], store_m[kVec];
    for (int v = 0; v < kVec; ++v) {
      load_m[v] = lane_mask(wv - 16 * v);
      store_m[v] = lane_mask(W - 16 * v);
    }
    const T* src = base + p0;
    for (int64_t k = 0; k < kc; ++k) {
      const T* row = src + k * s.ks;
      float* d = dst + k * W;
#pragma GCC unroll 4
      for (int v = 0; v < kVec; ++v) _mm512_mask_storeu_ps(d + 16 * v, store_m[v], load16<DT>(row + 16 * v, load_m[v]));
    }
  }
}

// In-register transpose of a 16 x 16 F32 block: r[t] lane j  ->  r[j] lane t.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int q = 0; q < 16; q += 2) {  // interleave row pairs within 128-bit lanes
    t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
    t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
  }
  // u[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g+3
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    // v: lanes {L0, L2} of rows 0-3 and 4-7 (resp. 8-11, 12-15); w: lanes {L1, L3}
    __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
    __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[12 + c] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
}

// Source contiguous along k (ks == 1): A not transposed, B transposed. 16 (w) x 16 (k) blocks are
// loaded as rows, transposed, and stored as 16 k-rows of the panel.
template <int W, int DT>
void pack_cols(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  using T = typename Elem<DT>::T;
  constexpr int kGroups = (W + 15) / 16;
  const T* base = static_cast<const T*>(s.base);
  for (int64_t p0 = 0; p0 < width; p0 += W, dst += W * kc) {
    const int64_t wv = min64(W, width - p0);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t kv = min64(16, kc - k0);
      const __mmask16 km = lane_mask(kv);
      for (int g = 0; g < kGroups; ++g) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) {
          const int64_t w = 16 * g + t;
          r[t] = (w < wv) ? load16<DT>(base + (p0 + w) * s.ws + k0, km) : _mm512_setzero_ps();
        }
        transpose16(r);
        const __mmask16 sm = lane_mask(W - 16 * g);
        float* d = dst + k0 * W + 16 * g;
        if (kv == 16) {
#pragma GCC unroll 16
          for (int t = 0; t < 16; ++t) _mm512_mask_storeu_ps(d + t * W, sm, r[t]);
        } else {
          for (int t = 0; t < kv; ++t) _mm512_mask_storeu_ps(d + t * W, sm, r[t]);
        }
      }
    }
  }
}

template <int W>
void pack(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  const bool rows = s.ws == 1;  // else ks == 1 (every GEMM layout has one of them)
  switch (s.dtype) {
    case ATH_BF16: return rows ? pack_rows<W, ATH_BF16>(s, width, kc, dst) : pack_cols<W, ATH_BF16>(s, width, kc, dst);
    case ATH_F16: return rows ? pack_rows<W, ATH_F16>(s, width, kc, dst) : pack_cols<W, ATH_F16>(s, width, kc, dst);
    default: return rows ? pack_rows<W, ATH_F32>(s, width, kc, dst) : pack_cols<W, ATH_F32>(s, width, kc, dst);
  }
}

// ---------------------------------------------------------------- microkernel
// C tile (R x nr, nr <= 16 * V) op= sum_k Ap[k][0..R) (x) Bp[k][0..16V).
template <int R, int V>
void tile(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int nr, const Epilogue& ep) {
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    if (V > 1) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * V - 1), _MM_HINT_T0);
  }

  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) b[v] = _mm512_load_ps(bp + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 a = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
    ap += kMR;
    bp += kNR;
  }

  // Epilogue: alpha, then beta * C or += C, then bias; masked to the valid columns.
  __mmask16 m[V];
  __m512 bias[V];
  for (int v = 0; v < V; ++v) {
    m[v] = lane_mask(nr - 16 * v);
    bias[v] = ep.bias ? _mm512_maskz_loadu_ps(m[v], ep.bias + 16 * v) : _mm512_setzero_ps();
  }
  const __m512 va = _mm512_set1_ps(ep.alpha);
  const __m512 vb = _mm512_set1_ps(ep.beta);
  const int mode = ep.accumulate ? 0 : ep.beta != 0.0f ? 1 : 2;
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    float* cr = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      __m512 x;
      if (mode == 0) {
        x = _mm512_fmadd_ps(acc[i][v], va, _mm512_maskz_loadu_ps(m[v], cr + 16 * v));
      } else if (mode == 1) {
        x = _mm512_fmadd_ps(acc[i][v], va, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m[v], cr + 16 * v)));
      } else {
        x = _mm512_mul_ps(acc[i][v], va);
      }
      if (ep.bias) x = _mm512_add_ps(x, bias[v]);
      _mm512_mask_storeu_ps(cr + 16 * v, m[v], x);
    }
  }
}

using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, const Epilogue&);

// kTiles.fn[R - 1][V - 1] = tile<R, V> for every edge shape.
struct TileTable {
  TileFn fn[kMR][kV];
};
template <int R, int V>
constexpr void fill_tiles(TileTable& t) {
  t.fn[R - 1][V - 1] = &tile<R, V>;
  if constexpr (V < kV) fill_tiles<R, V + 1>(t);
  else if constexpr (R < kMR) fill_tiles<R + 1, 1>(t);
}
constexpr TileTable make_tiles() {
  TileTable t{};
  fill_tiles<1, 1>(t);
  return t;
}
constexpr TileTable kTiles = make_tiles();

const TileFn* tile_row(int r) { return kTiles.fn[r - 1]; }

void macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
           const Epilogue& ep) {
  for (int64_t ir = 0; ir < mc; ir += kMR) {
    const int mr = static_cast<int>(min64(kMR, mc - ir));
    const TileFn* row = tile_row(mr);
    const float* a = ap + ir * kc;
    for (int64_t jr = 0; jr < nc; jr += kNR) {
      const int nr = static_cast<int>(min64(kNR, nc - jr));
      Epilogue e = ep;
      if (e.bias) e.bias += jr;
      row[(nr + 15) / 16 - 1](kc, a, bp + jr * kc, c + ir * ldc + jr, ldc, nr, e);
    }
  }
}

// ---------------------------------------------------------------- skinny (small M) kernels
// B not transposed: rows [0, MI) x 16*V columns per step, k in order; B rows read in place, A
// k-major (MI consecutive floats per k). One pass over B serves up to 12 rows: re-reading B per row
// group would go to L3, since rows of B lie ldb apart and alias in the caches. Few rows are
// latency-bound on the strided B rows, so they take wider steps (more loads in flight): measured
// on Zen 5, V = 8 for 1-2 rows, 4 for 3-4 rows, 2 beyond.
template <int DT, int MI, int V>
void skinny_rows(int64_t nc, int64_t k, const float* a, int64_t a_ps, const PackSrc& b, float* out, int64_t ldo) {
  using T = typename Elem<DT>::T;
  // K is walked in blocks of kSkinnyKB rows of B across all columns (the partial sums wait in
  // `out`, exactly), so that one block's rows stay in the TLB and caches while every column
  // chunk walks down them.
  for (int64_t k0 = 0; k0 < k; k0 += kSkinnyKB) {
    const int64_t kb = min64(kSkinnyKB, k - k0);
    const T* base = static_cast<const T*>(b.base) + k0 * b.ks;
    for (int64_t j0 = 0; j0 < nc; j0 += 16 * V) {
      __mmask16 m[V];
      for (int v = 0; v < V; ++v) m[v] = lane_mask(nc - j0 - 16 * v);
      __m512 acc[MI][V];
#pragma GCC unroll 12
      for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v)
          acc[i][v] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m[v], out + i * ldo + j0 + 16 * v);
      const T* bp = base + j0;
      const float* ap = a + k0 * a_ps;
      for (int64_t p = 0; p < kb; ++p, bp += b.ks, ap += a_ps) {
        // Rows of B lie ldb apart, out of reach of the hardware prefetchers: fetch ahead.
        if (p + kSkinnyPrefetch < kb) {
#pragma GCC unroll 8
          for (int v = 0; v < V; v += 64 / (16 * static_cast<int>(sizeof(T))))
            _mm_prefetch(reinterpret_cast<const char*>(bp + kSkinnyPrefetch * b.ks + 16 * v), _MM_HINT_T0);
        }
        __m512 bv[V];
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) bv[v] = load16<DT>(bp + 16 * v, m[v]);
#pragma GCC unroll 12
        for (int i = 0; i < MI; ++i) {
          const __m512 av = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 8
          for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
      }
#pragma GCC unroll 12
      for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(out + i * ldo + j0 + 16 * v, m[v], acc[i][v]);
    }
  }
}

// One k step (16 lanes, masked by km) of skinny_dots.
template <int DT, int MI>
__attribute__((always_inline)) inline void dots_step(__m512 (&acc)[MI][kSkinnyDots],
                                                     const typename Elem<DT>::T* const (&br)[kSkinnyDots],
                                                     const float* a, int64_t a_is, int64_t p, __mmask16 km) {
  __m512 bv[kSkinnyDots];
#pragma GCC unroll 4
  for (int jj = 0; jj < kSkinnyDots; ++jj) bv[jj] = load16<DT>(br[jj] + p, km);
#pragma GCC unroll 8
  for (int i = 0; i < MI; ++i) {
    const __m512 av = _mm512_maskz_loadu_ps(km, a + i * a_is + p);
#pragma GCC unroll 4
    for (int jj = 0; jj < kSkinnyDots; ++jj) acc[i][jj] = _mm512_fmadd_ps(av, bv[jj], acc[i][jj]);
  }
}

// B transposed (rows of B contiguous along k): columns [j0, j0 + kSkinnyDots) x rows [0, MI) as dot
// products in 16 lanes over k, then a fixed-order lane reduction. Columns past nc repeat the last
// one and are not stored.
template <int DT, int MI>
void skinny_dots(int64_t j0, int64_t nc, int64_t k, const float* a, int64_t a_is, const PackSrc& b, float* out,
                 int64_t ldo) {
  using T = typename Elem<DT>::T;
  constexpr int J = kSkinnyDots;
  const T* br[J];
  for (int jj = 0; jj < J; ++jj) br[jj] = static_cast<const T*>(b.base) + min64(j0 + jj, nc - 1) * b.ws;
  __m512 acc[MI][J];
#pragma GCC unroll 8
  for (int i = 0; i < MI; ++i)
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) acc[i][jj] = _mm512_setzero_ps();
  const int64_t k_full = k / 16 * 16;
  for (int64_t p = 0; p < k_full; p += 16) dots_step<DT, MI>(acc, br, a, a_is, p, static_cast<__mmask16>(0xffff));
  if (k_full < k) dots_step<DT, MI>(acc, br, a, a_is, k_full, lane_mask(k - k_full));
  float sums[MI][J];
#pragma GCC unroll 8
  for (int i = 0; i < MI; ++i)
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) sums[i][jj] = _mm512_reduce_add_ps(acc[i][jj]);
  const int64_t jn = min64(J, nc - j0);
  for (int i = 0; i < MI; ++i)
    for (int64_t jj = 0; jj < jn; ++jj) out[i * ldo + j0 + jj] = sums[i][jj];
}

template <int DT>
void skinny_dt(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps, const PackSrc& b,
               float* out, int64_t ldo) {
  if (b.ws == 1) {
    for (int64_t i0 = 0; i0 < m; i0 += 12) {  // a pass over B per 12 rows
      const float* ai = a + i0 * a_is;
      float* oi = out + i0 * ldo;
      switch (min64(12, m - i0)) {
#define ATH_SKINNY_ROWS(R, V) \
  case R: skinny_rows<DT, R, V>(nc, k, ai, a_ps, b, oi, ldo); break;
        ATH_SKINNY_ROWS(1, 8) ATH_SKINNY_ROWS(2, 8) ATH_SKINNY_ROWS(3, 4) ATH_SKINNY_ROWS(4, 4)
        ATH_SKINNY_ROWS(5, 2) ATH_SKINNY_ROWS(6, 2) ATH_SKINNY_ROWS(7, 2) ATH_SKINNY_ROWS(8, 2)
        ATH_SKINNY_ROWS(9, 2) ATH_SKINNY_ROWS(10, 2) ATH_SKINNY_ROWS(11, 2) ATH_SKINNY_ROWS(12, 2)
#undef ATH_SKINNY_ROWS
      }
    }
    return;
  }
  // B transposed: for each group of columns (kSkinnyDots rows of B, kept in L1), every row group.
  for (int64_t j0 = 0; j0 < nc; j0 += kSkinnyDots) {
    for (int64_t i0 = 0; i0 < m; i0 += kSkinnyRows) {
      const float* ai = a + i0 * a_is;
      float* oi = out + i0 * ldo;
      switch (min64(kSkinnyRows, m - i0)) {
#define ATH_SKINNY_DOTS(R) \
  case R: skinny_dots<DT, R>(j0, nc, k, ai, a_is, b, oi, ldo); break;
        ATH_SKINNY_DOTS(1) ATH_SKINNY_DOTS(2) ATH_SKINNY_DOTS(3)
        ATH_SKINNY_DOTS(4) ATH_SKINNY_DOTS(5) ATH_SKINNY_DOTS(6)
#undef ATH_SKINNY_DOTS
      }
    }
  }
}
static_assert(kSkinnyRows == 6, "skinny_dt lists one case per row count");

void skinny(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps, const PackSrc& b,
            float* out, int64_t ldo) {
  switch (b.dtype) {
    case ATH_BF16: return skinny_dt<ATH_BF16>(m, nc, k, a, a_is, a_ps, b, out, ldo);
    case ATH_F16: return skinny_dt<ATH_F16>(m, nc, k, a, a_is, a_ps, b, out, ldo);
    default: return skinny_dt<ATH_F32>(m, nc, k, a, a_is, a_ps, b, out, ldo);
  }
}

const KernelSet kSet = {"avx512", kMR, kNR, kKC, kMC, kNC, &pack<kMR>, &pack<kNR>, &macro, &skinny, kSkinnyMaxM};

}  // namespace

const KernelSet* kernels_avx512() { return &kSet; }

}  // namespace ath::cpu::gemm

#else  // built without the AVX-512 flags

namespace ath::cpu::gemm {
const KernelSet* kernels_avx512() { return nullptr; }
}  // namespace ath::cpu::gemm

#endif

// AVX2 + FMA kernels of the CPU GEMM (see gemm_kernels.h for the blocking scheme and the contract).
//
// Register tile: kMR = 6 rows x kNR = 16 columns of C (two ymm per row): 12 ymm accumulators, 2 ymm
// of B and one broadcast register, within the 16 ymm registers. Per k step: 2 vector loads and 6
// broadcasts feed 12 FMAs. Edge tiles are instantiations with fewer rows (R < kMR) and fewer
// vectors (V < 2); the last partial vector uses vmaskmov so nothing outside C is touched.
// Small M (<= kSkinnyMaxM) reads B in place instead of packing it (see SkinnyFn in gemm_kernels.h).
//
// Packing converts BF16/F16 to F32 (BF16: shift into the high half; F16: F16C vcvtph2ps). A source
// contiguous along the panel width is copied k-row by k-row; one contiguous along k (A not
// transposed, B transposed) is transposed in 8 x 8 register blocks. Partial vectors go through a
// small zero-padded staging buffer, never reading past the source.
#include "gemm_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "athanor/athanor.h"

namespace ath::cpu::gemm {
namespace {

// ---------------------------------------------------------------- configuration
constexpr int kMR = 6;             // rows of the register tile (broadcast A values)
constexpr int kV = 2;              // ymm vectors per tile row
constexpr int kNR = 8 * kV;        // columns of the register tile
constexpr int64_t kKC = 256;       // K block: A micro-panel kMR*kKC*4 = 6 KiB in L1, B micro-panel 16 KiB
constexpr int64_t kNC = 384;       // B block kKC*kNC*4 = 384 KiB in L2
constexpr int64_t kMC = 1536;      // A block rows (kMC*kKC*4 = 1.5 MiB, L3)
// Small M (skinny path, B read in place).
constexpr int64_t kSkinnyMaxM = 8;
constexpr int kSkinnyRows = 6;     // B not transposed: 6 rows x 16 columns = 12 accumulators
constexpr int kSkinnyDotRows = 2;  // B transposed: 2 rows x 4 columns of dot products = 8 accumulators
constexpr int kSkinnyDots = 4;
constexpr int64_t kSkinnyKB = 256;  // B not transposed: rows of B per sweep across the columns

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Lanes [0, n) set (n clamped to [0, 8]), as vmaskmov wants it.
inline __m256i lane_mask(int64_t n) {
  const int c = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// ---------------------------------------------------------------- loads with conversion to F32
template <int DT>
struct Elem;
template <>
struct Elem<ATH_F32> { using T = float; };
template <>
struct Elem<ATH_BF16> { using T = uint16_t; };
template <>
struct Elem<ATH_F16> { using T = uint16_t; };

template <int DT>
inline __m256 load8(const typename Elem<DT>::T* p) {
  if constexpr (DT == ATH_F32) {
    return _mm256_loadu_ps(p);
  } else if constexpr (DT == ATH_BF16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

// n consecutive elements (n <= 0: none), zero-padded to 8 lanes; reads only the n elements.
template <int DT>
inline __m256 load_partial(const typename Elem<DT>::T* p, int64_t n) {
  using T = typename Elem<DT>::T;
  if (n >= 8) return load8<DT>(p);
  T tmp[8] = {};
  for (int64_t i = 0; i < n; ++i) tmp[i] = p[i];
  return load8<DT>(tmp);
}

// ---------------------------------------------------------------- packing
// Source contiguous along the panel width (ws == 1): A transposed, B not transposed.
template <int W, int DT>
void pack_rows(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  using T = typename Elem<DT>::T;
  constexpr int kVec = (W + 7) / 8;
  const T* base = static_cast<const T*>(s.base);
  __m256i store_m[kVec];
  for (int v = 0; v < kVec; ++v) store_m[v] = lane_mask(W - 8 * v);
  for (int64_t p0 = 0; p0 < width; p0 += W, dst += W * kc) {
    const int64_t wv = min64(W, width - p0);
    const T* src = base + p0;
    const bool full = wv == W && W % 8 == 0;
    for (int64_t k = 0; k < kc; ++k) {
      const T* row = src + k * s.ks;
      float* d = dst + k * W;
      if (full) {
#pragma GCC unroll 4
        for (int v = 0; v < kVec; ++v) _mm256_storeu_ps(d + 8 * v, load8<DT>(row + 8 * v));
      } else {
        for (int v = 0; v < kVec; ++v)
          _mm256_maskstore_ps(d + 8 * v, store_m[v], load_partial<DT>(row + 8 * v, wv - 8 * v));
      }
    }
  }
}

// In-register transpose of an 8 x 8 F32 block: r[t] lane j  ->  r[j] lane t.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int q = 0; q < 8; q += 2) {
    t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
    t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
  }
  // u[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g+3
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// Source contiguous along k (ks == 1): A not transposed, B transposed; 8 (w) x 8 (k) blocks.
template <int W, int DT>
void pack_cols(const PackSrc& s, int64_t width, int64_t kc, float* dst) {
  using T = typename Elem<DT>::T;
  constexpr int kGroups = (W + 7) / 8;
  const T* base = static_cast<const T*>(s.base);
  for (int64_t p0 = 0; p0 < width; p0 += W, dst += W * kc) {
    const int64_t wv = min64(W, width - p0);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int64_t kv = min64(8, kc - k0);
      for (int g = 0; g < kGroups; ++g) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) {
          const int64_t w = 8 * g + t;
          const T* p = base + (p0 + w) * s.ws + k0;
          r[t] = w >= wv ? _mm256_setzero_ps() : kv == 8 ? load8<DT>(p) : load_partial<DT>(p, kv);
        }
        transpose8(r);
        float* d = dst + k0 * W + 8 * g;
        if (W - 8 * g >= 8) {
          for (int t = 0; t < kv; ++t) _mm256_storeu_ps(d + t * W, r[t]);
        } else {
          const __m256i sm = lane_mask(W - 8 * g);
          for (int t = 0; t < kv; ++t) _mm256_maskstore_ps(d + t * W, sm, r[t]);
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
// C tile (R x nr, nr <= 8 * V) op= sum_k Ap[k][0..R) (x) Bp[k][0..8V).
template <int R, int V>
void tile(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int nr, const Epilogue& ep) {
  __m256 acc[R][V];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

  for (int64_t k = 0; k < kc; ++k) {
    __m256 b[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) b[v] = _mm256_load_ps(bp + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 a = _mm256_broadcast_ss(ap + i);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
    }
    ap += kMR;
    bp += kNR;
  }

  // Epilogue: alpha, then beta * C or += C, then bias; masked to the valid columns.
  bool full[V];
  __m256i m[V];
  __m256 bias[V];
  for (int v = 0; v < V; ++v) {
    full[v] = nr >= 8 * (v + 1);
    m[v] = lane_mask(nr - 8 * v);
    bias[v] = !ep.bias ? _mm256_setzero_ps()
                       : full[v] ? _mm256_loadu_ps(ep.bias + 8 * v) : _mm256_maskload_ps(ep.bias + 8 * v, m[v]);
  }
  const __m256 va = _mm256_set1_ps(ep.alpha);
  const __m256 vb = _mm256_set1_ps(ep.beta);
  const int mode = ep.accumulate ? 0 : ep.beta != 0.0f ? 1 : 2;
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* cr = c + i * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      float* cp = cr + 8 * v;
      __m256 x;
      if (mode == 2) {
        x = _mm256_mul_ps(acc[i][v], va);
      } else {
        __m256 old = full[v] ? _mm256_loadu_ps(cp) : _mm256_maskload_ps(cp, m[v]);
        x = _mm256_fmadd_ps(acc[i][v], va, mode == 0 ? old : _mm256_mul_ps(vb, old));
      }
      if (ep.bias) x = _mm256_add_ps(x, bias[v]);
      if (full[v]) {
        _mm256_storeu_ps(cp, x);
      } else {
        _mm256_maskstore_ps(cp, m[v], x);
      }
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
      row[(nr + 7) / 8 - 1](kc, a, bp + jr * kc, c + ir * ldc + jr, ldc, nr, e);
    }
  }
}

// ---------------------------------------------------------------- skinny (small M) kernels
// B not transposed: rows [0, MI) x 16 columns per step, k in order; B rows read in place, A k-major.
// K is walked in blocks of kSkinnyKB rows of B across all columns (the partial sums wait in `out`,
// exactly), so that one block's rows stay in the TLB and caches while every column chunk walks them.
template <int DT, int MI>
void skinny_rows(int64_t nc, int64_t k, const float* a, int64_t a_ps, const PackSrc& b, float* out, int64_t ldo) {
  using T = typename Elem<DT>::T;
  for (int64_t k0 = 0; k0 < k; k0 += kSkinnyKB) {
    const int64_t kb = min64(kSkinnyKB, k - k0);
    const T* base = static_cast<const T*>(b.base) + k0 * b.ks;
    for (int64_t j0 = 0; j0 < nc; j0 += 16) {
      const int64_t valid = min64(16, nc - j0);
      const __m256i m0 = lane_mask(valid), m1 = lane_mask(valid - 8);
      __m256 acc[MI][2];
#pragma GCC unroll 8
      for (int i = 0; i < MI; ++i) {
        if (k0 == 0) {
          acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        } else {
          acc[i][0] = _mm256_maskload_ps(out + i * ldo + j0, m0);
          acc[i][1] = _mm256_maskload_ps(out + i * ldo + j0 + 8, m1);
        }
      }
      const T* bp = base + j0;
      const float* ap = a + k0 * a_ps;
      for (int64_t p = 0; p < kb; ++p, bp += b.ks, ap += a_ps) {
        __m256 b0, b1;
        if (valid == 16) {
          b0 = load8<DT>(bp);
          b1 = load8<DT>(bp + 8);
        } else {
          b0 = load_partial<DT>(bp, valid);
          b1 = load_partial<DT>(bp + 8, valid - 8);
        }
#pragma GCC unroll 8
        for (int i = 0; i < MI; ++i) {
          const __m256 av = _mm256_broadcast_ss(ap + i);
          acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < MI; ++i) {
        _mm256_maskstore_ps(out + i * ldo + j0, m0, acc[i][0]);
        _mm256_maskstore_ps(out + i * ldo + j0 + 8, m1, acc[i][1]);
      }
    }
  }
}

// Sum of the 8 lanes in a fixed order.
inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// B transposed: columns [j0, j0 + kSkinnyDots) x rows [0, MI) as dot products in 8 lanes over k, then
// hsum8. Columns past nc repeat the last one and are not stored.
template <int DT, int MI>
void skinny_dots(int64_t j0, int64_t nc, int64_t k, const float* a, int64_t a_is, const PackSrc& b, float* out,
                 int64_t ldo) {
  using T = typename Elem<DT>::T;
  constexpr int J = kSkinnyDots;
  const T* br[J];
  for (int jj = 0; jj < J; ++jj) br[jj] = static_cast<const T*>(b.base) + min64(j0 + jj, nc - 1) * b.ws;
  __m256 acc[MI][J];
#pragma GCC unroll 4
  for (int i = 0; i < MI; ++i)
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) acc[i][jj] = _mm256_setzero_ps();
  const int64_t k_full = k / 8 * 8;
  for (int64_t p = 0; p < k_full; p += 8) {
    __m256 bv[J];
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) bv[jj] = load8<DT>(br[jj] + p);
#pragma GCC unroll 4
    for (int i = 0; i < MI; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * a_is + p);
#pragma GCC unroll 4
      for (int jj = 0; jj < J; ++jj) acc[i][jj] = _mm256_fmadd_ps(av, bv[jj], acc[i][jj]);
    }
  }
  if (k_full < k) {
    const __m256i km = lane_mask(k - k_full);
    __m256 bv[J];
    for (int jj = 0; jj < J; ++jj) bv[jj] = load_partial<DT>(br[jj] + k_full, k - k_full);
    for (int i = 0; i < MI; ++i) {
      const __m256 av = _mm256_maskload_ps(a + i * a_is + k_full, km);
      for (int jj = 0; jj < J; ++jj) acc[i][jj] = _mm256_fmadd_ps(av, bv[jj], acc[i][jj]);
    }
  }
  float sums[MI][J];
#pragma GCC unroll 4
  for (int i = 0; i < MI; ++i)
#pragma GCC unroll 4
    for (int jj = 0; jj < J; ++jj) sums[i][jj] = hsum8(acc[i][jj]);
  const int64_t jn = min64(J, nc - j0);
  for (int i = 0; i < MI; ++i)
    for (int64_t jj = 0; jj < jn; ++jj) out[i * ldo + j0 + jj] = sums[i][jj];
}

template <int DT>
void skinny_dt(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps, const PackSrc& b,
               float* out, int64_t ldo) {
  if (b.ws == 1) {
    for (int64_t i0 = 0; i0 < m; i0 += kSkinnyRows) {  // a pass over B per kSkinnyRows rows
      const float* ai = a + i0 * a_is;
      float* oi = out + i0 * ldo;
      switch (min64(kSkinnyRows, m - i0)) {
#define ATH_SKINNY_ROWS(R) \
  case R: skinny_rows<DT, R>(nc, k, ai, a_ps, b, oi, ldo); break;
        ATH_SKINNY_ROWS(1) ATH_SKINNY_ROWS(2) ATH_SKINNY_ROWS(3)
        ATH_SKINNY_ROWS(4) ATH_SKINNY_ROWS(5) ATH_SKINNY_ROWS(6)
#undef ATH_SKINNY_ROWS
      }
    }
    return;
  }
  // B transposed: for each group of columns (kSkinnyDots rows of B, kept in L1), every row group.
  for (int64_t j0 = 0; j0 < nc; j0 += kSkinnyDots) {
    for (int64_t i0 = 0; i0 < m; i0 += kSkinnyDotRows) {
      const float* ai = a + i0 * a_is;
      float* oi = out + i0 * ldo;
      if (m - i0 >= 2) skinny_dots<DT, 2>(j0, nc, k, ai, a_is, b, oi, ldo);
      else skinny_dots<DT, 1>(j0, nc, k, ai, a_is, b, oi, ldo);
    }
  }
}
static_assert(kSkinnyRows == 6 && kSkinnyDotRows == 2, "skinny_dt lists one case per row count");

void skinny(int64_t m, int64_t nc, int64_t k, const float* a, int64_t a_is, int64_t a_ps, const PackSrc& b,
            float* out, int64_t ldo) {
  switch (b.dtype) {
    case ATH_BF16: return skinny_dt<ATH_BF16>(m, nc, k, a, a_is, a_ps, b, out, ldo);
    case ATH_F16: return skinny_dt<ATH_F16>(m, nc, k, a, a_is, a_ps, b, out, ldo);
    default: return skinny_dt<ATH_F32>(m, nc, k, a, a_is, a_ps, b, out, ldo);
  }
}

const KernelSet kSet = {"avx2", kMR, kNR, kKC, kMC, kNC, &pack<kMR>, &pack<kNR>, &macro, &skinny, kSkinnyMaxM};

}  // namespace

const KernelSet* kernels_avx2() { return &kSet; }

}  // namespace ath::cpu::gemm

#else  // built without the AVX2 flags

namespace ath::cpu::gemm {
const KernelSet* kernels_avx2() { return nullptr; }
}  // namespace ath::cpu::gemm

#endif

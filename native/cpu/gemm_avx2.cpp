// AVX2 + FMA kernels of the CPU GEMM (see gemm_kernels.h for the blocking scheme and the contract).
//
// Register tile: kMR = 6 rows x kNR = 16 columns of C (two ymm per row): 12 ymm accumulators, 2 ymm
// of B and one broadcast register, within the 16 ymm registers. Per k step: 2 vector loads and 6
// broadcasts feed 12 FMAs. Edge tiles are instantiations with fewer rows (R < kMR) and fewer
// vectors (V < 2); the last partial vector uses vmaskmov so nothing outside C is touched.
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

const KernelSet kSet = {"avx2", kMR, kNR, kKC, kMC, kNC, &pack<kMR>, &pack<kNR>, &macro, nullptr, 0};

}  // namespace

const KernelSet* kernels_avx2() { return &kSet; }

}  // namespace ath::cpu::gemm

#else  // built without the AVX2 flags

namespace ath::cpu::gemm {
const KernelSet* kernels_avx2() { return nullptr; }
}  // namespace ath::cpu::gemm

#endif

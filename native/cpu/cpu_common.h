// Internal helpers shared by the CPU ops (not part of the C ABI): dtype names for messages, row
// conversions between the activation dtypes (F32/BF16/F16) and F32 work buffers, 64-byte aligned
// scratch buffers, the static cost-balanced work partition used by the attention kernels, and the
// chunk-order combination of the reductions over rows (sum_partials).
//
// Everything here is compiled into baseline (non-ISA-flagged) translation units only; the SIMD
// files (*_avx2.cpp, *_avx512.cpp) use simd_traits.h instead, so no inline function of this
// header is ever emitted with wider instructions than the CPU may have.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "../common/dtype.h"
#include "../common/status.h"
#include "cpu_info.h"
#include "threadpool.h"

namespace ath::cpu {

inline const char* dtype_name(int dtype) {
  switch (dtype) {
    case ATH_F32: return "F32";
    case ATH_BF16: return "BF16";
    case ATH_F16: return "F16";
    case ATH_I32: return "I32";
    default: return "unknown";
  }
}

// F16 <-> F32 row conversion with F16C (defined in elementwise_avx2.cpp, only called when the
// active ISA is AVX2 or better). Same values as the scalar conversions of dtype.h except for
// the payload bits of NaNs.
void f16_to_f32_f16c(const uint16_t* src, float* dst, int64_t n);
void f32_to_f16_f16c(const float* src, uint16_t* dst, int64_t n);

inline bool use_f16c() { return active_isa() != Isa::kScalar; }

// dst[0, n) = elements [offset, offset + n) of `src` (dtype) as F32.
inline void load_row(const void* src, int dtype, int64_t offset, int64_t n, float* dst) {
  switch (dtype) {
    case ATH_BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = bits_f32(static_cast<uint32_t>(s[i]) << 16);
      break;
    }
    case ATH_F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      if (use_f16c()) {
        f16_to_f32_f16c(s, dst, n);
      } else {
        for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      }
      break;
    }
    default:
      std::memmove(dst, static_cast<const float*>(src) + offset, static_cast<size_t>(n) * sizeof(float));
      break;
  }
}

// Elements [offset, offset + n) of `dst` (dtype) = src[0, n), rounded to nearest even once.
inline void store_row(void* dst, int dtype, int64_t offset, int64_t n, const float* src) {
  switch (dtype) {
    case ATH_BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      break;
    }
    case ATH_F16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + offset;
      if (use_f16c()) {
        f32_to_f16_f16c(src, d, n);
      } else {
        for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      }
      break;
    }
    default:
      std::memmove(static_cast<float*>(dst) + offset, src, static_cast<size_t>(n) * sizeof(float));
      break;
  }
}

// A 64-byte aligned F32 scratch buffer (zero-initialised). Throws std::bad_alloc, which the
// ATH_GUARD of the calling op turns into ATH_ERR_OOM; allocate before entering the thread pool.
class FloatBuf {
 public:
  FloatBuf() = default;
  explicit FloatBuf(int64_t n, bool zero = true) { reset(n, zero); }
  ~FloatBuf() { std::free(p_); }
  FloatBuf(const FloatBuf&) = delete;
  FloatBuf& operator=(const FloatBuf&) = delete;
  void reset(int64_t n, bool zero = true) {
    std::free(p_);
    p_ = nullptr;
    size_ = 0;
    size_t bytes = (static_cast<size_t>(n > 0 ? n : 1) * sizeof(float) + 63) & ~static_cast<size_t>(63);
    p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (p_ == nullptr) throw std::bad_alloc();
    if (zero) std::memset(p_, 0, bytes);
    size_ = n;
  }
  float* get() const { return p_; }
  int64_t size() const { return size_; }

 private:
  float* p_ = nullptr;
  int64_t size_ = 0;
};

// Scratch that the calling thread keeps between calls (grown on demand, never shrunk, not
// zeroed): avoids the page faults of a fresh multi-megabyte allocation on every op call. Only for
// scratch whose every element is written before it is read. One slot per `slot` index.
inline float* thread_scratch(int slot, int64_t n) {
  thread_local FloatBuf bufs[2];
  FloatBuf& b = bufs[slot];
  if (b.size() < n) b.reset(n, false);
  return b.get();
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Static partition of items [0, cost.size()) into `parts` contiguous ranges of roughly equal total
// cost; returns parts + 1 boundaries. Depends only on the costs and `parts` (deterministic).
inline std::vector<int64_t> balanced_bounds(const std::vector<int64_t>& cost, int parts) {
  const int64_t n = static_cast<int64_t>(cost.size());
  std::vector<int64_t> bounds(static_cast<size_t>(parts) + 1, n);
  bounds[0] = 0;
  int64_t total = 0;
  for (int64_t c : cost) total += c;
  int64_t acc = 0, item = 0;
  for (int p = 1; p < parts; ++p) {
    // Boundary p: the first item whose cost prefix (before it) reaches p/parts of the total.
    const long double target = static_cast<long double>(total) * p / parts;
    while (item < n && static_cast<long double>(acc) + cost[static_cast<size_t>(item)] / 2.0L < target) {
      acc += cost[static_cast<size_t>(item)];
      ++item;
    }
    bounds[static_cast<size_t>(p)] = item;
  }
  return bounds;
}

// Sum of x[0, n) with 16 interleaved partial sums combined pairwise (vectorizable, fixed order).
inline float lane_sum(const float* x, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += x[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

// Dot product of x[0, n) and y[0, n) with 16 partial sums, same combination order as lane_sum.
inline float lane_dot(const float* x, const float* y, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j] * y[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += x[i] * y[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

// 4-lane F32 vectors (GCC/Clang vector extensions; SSE2 on baseline x86-64), for the few baseline
// ops whose inner loop needs exp: written explicitly because the auto-vectorizer gives up on the
// clamps of a scalar exp (it turns them into branches).
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
inline v4f v4_load(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void v4_store(float* p, v4f v) { std::memcpy(p, &v, sizeof v); }
inline v4f v4_set1(float x) { return v4f{x, x, x, x}; }

// exp(x) per lane without libm: x = n ln2 + r (two-constant Cody-Waite split, |r| <= ln2 / 2),
// e^r by its degree-7 Taylor polynomial (< 1e-8 relative), times 2^n built in the exponent bits.
// About 1-2 ulp; x is clamped to [-88, 88] and results below 2^-126 flush to 0 (exp(-inf) = 0).
inline v4f exp4(v4f x) {
  const v4f lo = v4_set1(-88.0f), hi = v4_set1(88.0f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // Round-to-nearest by the 1.5 * 2^23 trick (exact for |v| < 2^22, default rounding mode).
  const v4f n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const v4f r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  v4f p = r * 1.98412698412698413e-4f + 1.38888888888888889e-3f;
  p = p * r + 8.33333333333333333e-3f;
  p = p * r + 4.16666666666666667e-2f;
  p = p * r + 1.66666666666666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v4i e = (__builtin_convertvector(n, v4i) + 127) << 23;
  return p * (v4f)e;  // same-size vector cast: reinterprets the bits
}
// The same function on one value (bit-identical to a lane of exp4).
inline float exp_approx(float x) { return exp4(v4_set1(x))[0]; }

// True when the rows (each d contiguous elements) of a (n0, n1, n2) strided tensor never overlap:
// sorted by stride, each stride must exceed the extent spanned by the smaller dimensions.
inline bool rows_disjoint(int64_t d, int64_t n0, int64_t s0, int64_t n1, int64_t s1, int64_t n2, int64_t s2) {
  std::pair<int64_t, int64_t> dims[3] = {{s0, n0}, {s1, n1}, {s2, n2}};
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      if (dims[j].first < dims[i].first) std::swap(dims[i], dims[j]);
  int64_t span = d;
  for (auto& [stride, extent] : dims) {
    if (extent <= 1) continue;
    if (stride < span) return false;
    span = stride * (extent - 1) + span;
  }
  return true;
}

// Number of chunks to split `n` units of work into so that each has at least `grain` units.
inline int64_t grain_for(int64_t work_per_item, int64_t min_work = 32768) {
  if (work_per_item <= 0) work_per_item = 1;
  int64_t g = min_work / work_per_item;
  return g < 1 ? 1 : g;
}

// ---------------------------------------------------------------- reductions over rows
// Thread-count independence of a reduction over rows (norm parameter gradients, SUM_ROWS): the
// rows are cut into chunks of a fixed number of rows (a constant of the op, never derived from the
// pool size); each chunk is summed, row by row in order, into its own partial row; the partials are
// then combined in chunk order, total[j] = ((p_0[j] + p_1[j]) + p_2[j]) + ..., and each total is
// added into the accumulated output once. Threads only decide who computes which chunk.

// Chunk-order column totals of partials (nchunks, width), chunk-major with row stride `width`:
// calls emit(j0, j1, total) once per block of columns [j0, j1) covering [0, width), total[0, j1 -
// j0) being ((p_0 + p_first) + p_first+1) + ... + p_nchunks-1 over those columns (p_0 itself when
// first >= nchunks). first > 1 when the producer already folded chunks [1, first) into p_0 in
// order (the same arithmetic as first == 1). Blocks run in parallel; each column's sum has the
// same order whichever thread computes it. emit must not throw (it runs on pool threads).
template <class T, class Emit>
void sum_partials(const T* partials, int64_t first, int64_t nchunks, int64_t width, const Emit& emit) {
  constexpr int64_t kBlock = 256;
  const int64_t nblocks = (width + kBlock - 1) / kBlock;
  parallel_for(nblocks, grain_for(kBlock * (nchunks - first + 1)), [&](int64_t b0, int64_t b1, int) {
    T total[kBlock];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t j0 = b * kBlock, len = std::min(kBlock, width - j0);
      std::memcpy(total, partials + j0, static_cast<size_t>(len) * sizeof(T));
      for (int64_t c = first; c < nchunks; ++c) {
        const T* p = partials + c * width + j0;
        for (int64_t j = 0; j < len; ++j) total[j] += p[j];
      }
      emit(j0, j0 + len, static_cast<const T*>(total));
    }
  });
}

// ath_cpu_gemm's GELU epilogues (athanor.h, ath_gemm_epilogue; activation.cpp) on a C already
// holding the GEMM's rounded output. Forward (backward == false): aux (when not NULL) = C, then
// C = gelu(C). Backward: C = C * gelu'(aux). `rows` rows of `len` elements of dtype; row r starts
// at element (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * ld of c and of aux.
void gemm_gelu_epilogue(bool backward, int dtype, void* c, void* aux, int64_t rows, int64_t len,
                        int64_t rows_per_batch, int64_t ld, int64_t batch_stride);

}  // namespace ath::cpu

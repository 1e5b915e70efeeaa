// SIMD vector traits for the CPU kernels that are written once as templates and compiled per ISA
// (attention_impl.h, gemm_impl.h, rowops_impl.h). Each traits struct wraps one register type:
//   VScalar  (W = 1)  plain floats, any CPU;
//   VAvx2    (W = 8)  __m256, needs AVX2 + FMA + F16C (only defined in *_avx2.cpp / *_avx512.cpp);
//   VAvx512  (W = 16) __m512, needs AVX-512 F/BW/VL/DQ (only defined in *_avx512.cpp).
// Everything lives in an anonymous namespace: each translation unit gets its own copy, so code
// compiled with AVX-512 flags can never be merged by the linker into a baseline caller.
// ATH_SIMD_AVX2 / ATH_SIMD_AVX512 are defined to 1 where VAvx2 / VAvx512 exist.
//
// Besides arithmetic, VAvx2 and VAvx512 offer what the GEMM packers and kernels need: partial
// vectors (Mask: lanes [0, n); masked loads read nothing outside the mask and give 0 there, masked
// stores write nothing outside it), loads converting F32/BF16/F16 to F32 (load_cvt), a broadcast
// from memory, an in-register W x W transpose, and hsum (a fixed order: halves, then quarters, ...).
//
// exp2: x is clamped to [-127, 127]; 2^x = 2^n * p(f) with n = nearest integer of x, |f| <= 1/2,
// p the degree-7 Taylor polynomial of e^(f ln 2) (relative error < 1e-8, about 1 ulp overall).
// x <= -126.5 (and -inf) gives exactly 0, which the softmax code relies on for masked scores.
// exp: x clamped to [-88, 88]; x = n ln2 + r by a two-constant Cody-Waite split (|r| <= ln2/2),
// e^r by its degree-7 Taylor polynomial, times 2^n (results below 2^-126 flush to 0, so
// exp(-inf) = 0); about 1-2 ulp, the same algorithm as exp4 in cpu_common.h.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -W(maybe-)uninitialized
// reports at -O3 once inlined (a known false positive); silence it for the intrinsic headers only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace {

constexpr float kExp2C1 = 0.693147180559945309f;
constexpr float kExp2C2 = 0.240226506959100712f;
constexpr float kExp2C3 = 0.0555041086648215800f;
constexpr float kExp2C4 = 0.00961812910762847716f;
constexpr float kExp2C5 = 0.00133335581464284434f;
constexpr float kExp2C6 = 0.000154035303933816099f;
constexpr float kExp2C7 = 0.0000152527338040598403f;
constexpr float kNegInf = -__builtin_inff();
constexpr float kExpLog2e = 1.44269504088896341f, kExpLn2Hi = 0.693145751953125f, kExpLn2Lo = 1.42860682030941723e-6f;
constexpr float kExpT7 = 1.98412698412698413e-4f, kExpT6 = 1.38888888888888889e-3f, kExpT5 = 8.33333333333333333e-3f;
constexpr float kExpT4 = 4.16666666666666667e-2f, kExpT3 = 1.66666666666666667e-1f;

inline float scalar_exp2(float x) {
  x = x < -127.0f ? -127.0f : (x > 127.0f ? 127.0f : x);
  const float n = __builtin_nearbyintf(x);
  const float f = x - n;
  float p = kExp2C7;
  p = p * f + kExp2C6;
  p = p * f + kExp2C5;
  p = p * f + kExp2C4;
  p = p * f + kExp2C3;
  p = p * f + kExp2C2;
  p = p * f + kExp2C1;
  p = p * f + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

inline float scalar_exp(float x) {
  x = x < -88.0f ? -88.0f : (x > 88.0f ? 88.0f : x);
  const float n = __builtin_nearbyintf(x * kExpLog2e);
  const float r = (x - n * kExpLn2Hi) - n * kExpLn2Lo;
  float p = kExpT7;
  p = p * r + kExpT6;
  p = p * r + kExpT5;
  p = p * r + kExpT4;
  p = p * r + kExpT3;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

inline float scalar_bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t scalar_f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Portable F16 conversions (same algorithm as common/dtype.h, duplicated here with internal
// linkage so that ISA-flagged translation units never share an inline definition with baseline code).
inline float scalar_f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {
      int e = -1;
      do { man <<= 1; ++e; } while ((man & 0x400u) == 0);
      u = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t scalar_f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t exp = abs >> 23;
    uint32_t man = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u) - (static_cast<uint32_t>(127 - 15) << 23);
  return static_cast<uint16_t>(sign | (r >> 13));
}

// dtype codes as in athanor.h (kept literal so this header needs nothing else).
constexpr int kDtF32 = 0, kDtBF16 = 1, kDtF16 = 2;

// Storage type of one element of a floating dtype code.
template <int DT>
struct DtElem { using T = uint16_t; };
template <>
struct DtElem<kDtF32> { using T = float; };

inline int64_t clamp_lanes(int64_t n, int w) { return n <= 0 ? 0 : n >= w ? w : n; }

struct VScalar {
  using R = float;
  static constexpr int W = 1;
  static R load(const float* p) { return *p; }
  static void store(float* p, R x) { *p = x; }
  static R set1(float x) { return x; }
  static R zero() { return 0.0f; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R neginf_to_zero(R x) { return x == kNegInf ? 0.0f : x; }
  static R div(R a, R b) { return a / b; }
  static R exp2(R x) { return scalar_exp2(x); }
  static R exp(R x) { return scalar_exp(x); }
  static float hsum(R x) { return x; }
  static float hmax(R x) { return x; }
  // dst[0, n) = src elements [0, n) of dtype, as F32.
  static void cvt_in(const void* src, int dtype, int64_t n, float* dst) {
    if (dtype == kDtBF16) {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = scalar_bf16_to_f32(s[i]);
    } else if (dtype == kDtF16) {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = scalar_f16_to_f32(s[i]);
    } else {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    }
  }
  static void cvt_out(const float* src, int dtype, int64_t n, void* dst) {
    if (dtype == kDtBF16) {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = scalar_f32_to_bf16(src[i]);
    } else if (dtype == kDtF16) {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = scalar_f32_to_f16(src[i]);
    } else {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    }
  }
};

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define ATH_SIMD_AVX2 1
struct VAvx2 {
  using R = __m256;
  static constexpr int W = 8;
  // Lanes [0, n) of a vector, n clamped to [0, 8]; whole vectors take the plain loads and stores.
  struct Mask {
    __m256i m;
    int n;
  };
  static Mask mask(int64_t n) {
    const int c = static_cast<int>(clamp_lanes(n, W));
    return {_mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), c};
  }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R load_aligned(const float* p) { return _mm256_load_ps(p); }
  static R broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static R load_masked(const float* p, const Mask& m) { return m.n == W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m.m); }
  static void store_masked(float* p, const Mask& m, R x) {
    if (m.n == W) _mm256_storeu_ps(p, x);
    else _mm256_maskstore_ps(p, m.m, x);
  }
  // 8 consecutive elements of dtype DT as F32.
  template <int DT>
  static R load_cvt(const typename DtElem<DT>::T* p) {
    if constexpr (DT == kDtF32) return _mm256_loadu_ps(p);
    else if constexpr (DT == kDtBF16) return load_bf16(p);
    else return load_f16(p);
  }
  // The lanes of m (others 0; 16-bit sources go through a zero-padded staging buffer).
  template <int DT>
  static R load_cvt(const typename DtElem<DT>::T* p, const Mask& m) {
    if constexpr (DT == kDtF32) {
      return load_masked(p, m);
    } else {
      if (m.n == W) return load_cvt<DT>(p);
      uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int i = 0; i < m.n; ++i) tmp[i] = p[i];
      return load_cvt<DT>(tmp);
    }
  }
  // In-register transpose of an 8 x 8 block: r[t] lane j -> r[j] lane t.
  static void transpose(R r[8]) {
    R t[8], u[8];
    for (int q = 0; q < 8; q += 2) {
      t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
      t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
    }
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
  static void store(float* p, R x) { _mm256_storeu_ps(p, x); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R zero() { return _mm256_setzero_ps(); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R neginf_to_zero(R x) {
    const R is_ninf = _mm256_cmp_ps(x, _mm256_set1_ps(kNegInf), _CMP_EQ_OQ);
    return _mm256_andnot_ps(is_ninf, x);
  }
  static R exp2(R x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    const R n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R f = _mm256_sub_ps(x, n);
    R p = _mm256_set1_ps(kExp2C7);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C6));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C5));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C4));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C3));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C2));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2C1));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R exp(R x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(88.0f));
    const R n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Lo), _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Hi), x));
    R p = _mm256_set1_ps(kExpT7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpT6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpT5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpT4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpT3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static float hmax(R x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hsum(R x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static R load_bf16(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static R load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m128i to_bf16(R x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nanv = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i r = _mm256_blendv_epi8(rounded, nanv, is_nan);
    const __m256i packed = _mm256_packus_epi32(r, r);  // per 128-bit lane: r0..r3 r0..r3 | r4..r7 r4..r7
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
  }
  static __m128i to_f16(R x) { return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static void cvt_in(const void* src, int dtype, int64_t n, float* dst) {
    if (dtype == kDtF32) {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    }
    const uint16_t* s = static_cast<const uint16_t*>(src);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, dtype == kDtBF16 ? load_bf16(s + i) : load_f16(s + i));
    if (i < n) {
      uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      float out[8];
      std::memcpy(tmp, s + i, static_cast<size_t>(n - i) * 2);
      _mm256_storeu_ps(out, dtype == kDtBF16 ? load_bf16(tmp) : load_f16(tmp));
      std::memcpy(dst + i, out, static_cast<size_t>(n - i) * 4);
    }
  }
  static void cvt_out(const float* src, int dtype, int64_t n, void* dst) {
    if (dtype == kDtF32) {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    }
    uint16_t* d = static_cast<uint16_t*>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const R x = _mm256_loadu_ps(src + i);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), dtype == kDtBF16 ? to_bf16(x) : to_f16(x));
    }
    if (i < n) {
      float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      uint16_t out[8];
      std::memcpy(tmp, src + i, static_cast<size_t>(n - i) * 4);
      const R x = _mm256_loadu_ps(tmp);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), dtype == kDtBF16 ? to_bf16(x) : to_f16(x));
      std::memcpy(d + i, out, static_cast<size_t>(n - i) * 2);
    }
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define ATH_SIMD_AVX512 1
struct VAvx512 {
  using R = __m512;
  static constexpr int W = 16;
  using Mask = __mmask16;  // lanes [0, n)
  static Mask mask(int64_t n) {
    const int64_t c = clamp_lanes(n, W);
    return c == W ? static_cast<Mask>(0xffff) : static_cast<Mask>((1u << c) - 1u);
  }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R load_aligned(const float* p) { return _mm512_load_ps(p); }
  static R broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static R load_masked(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store_masked(float* p, Mask m, R x) { _mm512_mask_storeu_ps(p, m, x); }
  // 16 consecutive elements of dtype DT as F32.
  template <int DT>
  static R load_cvt(const typename DtElem<DT>::T* p) {
    if constexpr (DT == kDtF32) return _mm512_loadu_ps(p);
    else return from_u16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), DT);
  }
  // The lanes of m (others 0, their memory untouched).
  template <int DT>
  static R load_cvt(const typename DtElem<DT>::T* p, Mask m) {
    if constexpr (DT == kDtF32) return _mm512_maskz_loadu_ps(m, p);
    else return from_u16(_mm256_maskz_loadu_epi16(m, p), DT);
  }
  // In-register transpose of a 16 x 16 block: r[t] lane j -> r[j] lane t.
  static void transpose(R r[16]) {
    R t[16];
    for (int q = 0; q < 16; q += 2) {  // interleave row pairs within 128-bit lanes
      t[q] = _mm512_unpacklo_ps(r[q], r[q + 1]);
      t[q + 1] = _mm512_unpackhi_ps(r[q], r[q + 1]);
    }
    R u[16];  // u[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g+3
    for (int g = 0; g < 4; ++g) {
      u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
      u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
      u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
      u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
      // v: lanes {L0, L2} of rows 0-3 and 4-7 (resp. 8-11, 12-15); w: lanes {L1, L3}
      const R v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
      const R w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
      const R v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
      const R w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
      r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
      r[4 + c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
      r[8 + c] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
      r[12 + c] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
  }
  static void store(float* p, R x) { _mm512_storeu_ps(p, x); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R zero() { return _mm512_setzero_ps(); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R neginf_to_zero(R x) {
    const __mmask16 is_ninf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kNegInf), _CMP_EQ_OQ);
    return _mm512_mask_blend_ps(is_ninf, x, _mm512_setzero_ps());
  }
  static R exp2(R x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    const R n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R f = _mm512_sub_ps(x, n);
    R p = _mm512_set1_ps(kExp2C7);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C6));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C5));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R exp(R x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
    const R n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Lo), _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Hi), x));
    R p = _mm512_set1_ps(kExpT7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpT6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpT5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpT4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpT3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  }
  static float hmax(R x) { return _mm512_reduce_max_ps(x); }
  static float hsum(R x) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static R from_u16(__m256i h, int dtype) {
    if (dtype == kDtBF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
  }
  static __m256i to_u16(R x, int dtype) {
    if (dtype == kDtBF16) {
      const __m512i u = _mm512_castps_si512(x);
      const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
      const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(absu, _mm512_set1_epi32(0x7f800000));
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
      r = _mm512_mask_or_epi32(r, is_nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
      return _mm512_cvtepi32_epi16(r);
    }
    return _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static void cvt_in(const void* src, int dtype, int64_t n, float* dst) {
    int64_t i = 0;
    if (dtype == kDtF32) {
      const float* s = static_cast<const float*>(src);
      for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(s + i));
      if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, s + i));
      }
      return;
    }
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, from_u16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)), dtype));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
      _mm512_mask_storeu_ps(dst + i, m, from_u16(_mm256_maskz_loadu_epi16(m, s + i), dtype));
    }
  }
  static void cvt_out(const float* src, int dtype, int64_t n, void* dst) {
    int64_t i = 0;
    if (dtype == kDtF32) {
      float* d = static_cast<float*>(dst);
      for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(src + i));
      if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, src + i));
      }
      return;
    }
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), to_u16(_mm512_loadu_ps(src + i), dtype));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
      _mm256_mask_storeu_epi16(d + i, m, to_u16(_mm512_maskz_loadu_ps(m, src + i), dtype));
    }
  }
};
#endif

}  // namespace

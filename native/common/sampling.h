// The arithmetic of the sample op (ath_cpu_sample in native/cpu/sample.cpp, ath_cuda_sample in
// kernels/sample.cu), shared by host and device so that both compute the same bits for every element:
//
//   rank key   key(l, i) = (ordered_bits(l) << 32) | (0xFFFFFFFF - i): a larger key is a better candidate
//              (larger logit; among equal logits the lower id; -0 counts as +0).
//   weight     q(l) = floor(E((l - m) / T) * 2^32), an integer in [0, 2^32], m the row's largest sampled logit:
//              d = l - m (F32), z = 0 where d == 0 else d * (1/T) (1/T rounded to F32 once), E below.
//   E(z)       exp(z) for z <= 0 from +, -, * only, each rounded to F32 (no FMA, no library call):
//              0 for z < -80; else k = floor(z log2(e) + 1/2), r = (z - k ln2_hi) - k ln2_lo,
//              p = 1 + r (1 + r (1/2 + r (1/6 + r (1/24 + r (1/120 + r (1/720 + r/5040)))))) (Horner),
//              E = p * 2^k. Within 2 ulp of exp; E(0) = 1 exactly.
// Masses are sums of q in uint64: exact, so their order does not matter (the CUDA kernel adds them with
// atomics, the CPU in a loop, and both get the same integer). Products with the 24-bit fractions of top-p and
// of the uniform draw are exact in 128 bits.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "athanor/athanor.h"
#include "status.h"

#if defined(__CUDACC__)
#define ATH_SAMPLE_HD __host__ __device__ __forceinline__
#else
#define ATH_SAMPLE_HD inline
#endif

namespace ath::sampling {

// F32 operations rounded once each, never contracted into an FMA (device: the _rn intrinsics; host: the files
// that include this are compiled with -ffp-contract=off, see CMakeLists.txt; Java never contracts).
ATH_SAMPLE_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ATH_SAMPLE_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ATH_SAMPLE_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

ATH_SAMPLE_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
ATH_SAMPLE_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// NaN and +inf are errors (the op reports them); -inf is a logit of probability 0.
ATH_SAMPLE_HD bool is_bad(float l) { return l != l || l == bits_float(0x7f800000u); }

// Monotone map of a non-NaN float to uint32: a < b as floats iff ordered(a) < ordered(b); -0 maps as +0.
ATH_SAMPLE_HD uint32_t ordered_bits(float l) {
  const uint32_t b = float_bits(l == 0.0f ? 0.0f : l);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
ATH_SAMPLE_HD float unordered_bits(uint32_t o) { return bits_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o); }

ATH_SAMPLE_HD uint64_t rank_key(float l, int64_t i) {
  return (static_cast<uint64_t>(ordered_bits(l)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(i));
}
ATH_SAMPLE_HD int64_t key_index(uint64_t key) { return static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(key)); }
ATH_SAMPLE_HD float key_logit(uint64_t key) { return unordered_bits(static_cast<uint32_t>(key >> 32)); }

// exp(z) for z <= 0 (or -inf), as described above.
ATH_SAMPLE_HD float det_exp(float z) {
  if (!(z >= -80.0f)) return 0.0f;
  const float k = floorf(fadd(fmul(z, 1.44269502162933349609f), 0.5f));  // exact on host and device
  const float r = fsub(fsub(z, fmul(k, 0.693145751953125f)), fmul(k, 1.42860682030941723212e-6f));
  float p = fmul(r, 1.0f / 5040.0f);
  p = fmul(r, fadd(p, 1.0f / 720.0f));
  p = fmul(r, fadd(p, 1.0f / 120.0f));
  p = fmul(r, fadd(p, 1.0f / 24.0f));
  p = fmul(r, fadd(p, 1.0f / 6.0f));
  p = fmul(r, fadd(p, 0.5f));
  p = fmul(r, fadd(p, 1.0f));
  p = fadd(p, 1.0f);
  const int ki = static_cast<int>(k);  // in [-116, 0]
  return fmul(p, bits_float(static_cast<uint32_t>(ki + 127) << 23));
}

constexpr uint64_t kWeightOne = 1ull << 32;  // q of the largest logit

// q(l) for a row whose largest sampled logit is m (finite), inv_t = 1/T in F32.
ATH_SAMPLE_HD uint64_t weight(float l, float m, float inv_t) {
  const float d = fsub(l, m);
  const float z = d == 0.0f ? 0.0f : fmul(d, inv_t);
  return static_cast<uint64_t>(fmul(det_exp(z), 4294967296.0f));
}

// floor(a * b / 2^24) and ceil(a * b / 2^24) for a < 2^64, b <= 2^24, exact.
ATH_SAMPLE_HD uint64_t mul_shr24(uint64_t a, uint64_t b, bool round_up) {
#if defined(__CUDA_ARCH__)
  uint64_t lo = a * b, hi = __umul64hi(a, b);
#else
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  uint64_t lo = static_cast<uint64_t>(p), hi = static_cast<uint64_t>(p >> 64);
#endif
  if (round_up) {
    const uint64_t add = (1ull << 24) - 1;
    const uint64_t nlo = lo + add;
    hi += nlo < lo ? 1 : 0;
    lo = nlo;
  }
  return (lo >> 24) | (hi << 40);
}

// ceil(p * 2^24) for top-p in (0, 1]: in [1, 2^24]; 2^24 means "keep everything".
ATH_SAMPLE_HD uint64_t top_p_fraction(float p) {
  const float s = fmul(p, 16777216.0f);
  uint64_t f = static_cast<uint64_t>(s);
  if (static_cast<float>(f) < s) ++f;
  return f < 1 ? 1 : (f > (1ull << 24) ? (1ull << 24) : f);
}

// floor(u * 2^24) clamped to [0, 2^24 - 1] (NaN as 0): the draw's 24-bit fraction.
ATH_SAMPLE_HD uint64_t uniform_fraction(float u) {
  if (!(u > 0.0f)) return 0;
  const float s = fmul(u, 16777216.0f);
  return s >= 16777215.0f ? 16777215u : static_cast<uint64_t>(s);
}

// One level of kernels/sample.cu's radix descent over rank keys, shared with the host emulation that tests it
// (native/tests/test_sample.cpp). count/mass: the 256 buckets of the keys under the prefix found so far, by
// their next 8 bits; the walk goes from bucket 255 (the largest keys) down.
// By count: the bucket holding the need-th largest key; *need becomes that key's rank inside the bucket.
ATH_SAMPLE_HD int pick_by_count(const unsigned* count, uint64_t* need) {
  uint64_t cum = 0;
  int d = 255;
  for (; d > 0 && cum + count[d] < *need; --d) cum += count[d];
  *need -= cum;
  return d;
}
// By mass: the bucket where the running mass from the top reaches target; *above adds the buckets before it.
ATH_SAMPLE_HD int pick_by_mass(const unsigned long long* mass, unsigned long long* above, unsigned long long target) {
  int d = 255;
  for (; d > 0 && *above + mass[d] < target; --d) *above += mass[d];
  return d;
}

// Argument checks shared by both entry points (host code).
inline ath_status validate(const ath_sample_args* a, const char* op) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->rows < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: rows=%lld must be >= 0", op, (long long)a->rows);
  if (a->vocab < 1 || a->vocab > a->cols || a->cols > a->ld || a->cols > 0x7fffffffLL) {
    return ::ath::fail(ATH_ERR_INVALID, "%s: need 1 <= vocab (%lld) <= cols (%lld) <= ld (%lld) and cols < 2^31", op,
                       (long long)a->vocab, (long long)a->cols, (long long)a->ld);
  }
  if (a->dtype != ATH_F32)
    return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: dtype=%d: logits must be F32 (%d)", op, a->dtype, ATH_F32);
  if (!(a->temperature >= 0.0f) || !std::isfinite(a->temperature))
    return ::ath::fail(ATH_ERR_INVALID, "%s: temperature=%g must be finite and >= 0", op, (double)a->temperature);
  if (!(a->top_p > 0.0f && a->top_p <= 1.0f))
    return ::ath::fail(ATH_ERR_INVALID, "%s: top_p=%g must be in (0, 1]", op, (double)a->top_p);
  if (a->top_k < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: top_k=%lld must be >= 0 (0 = off)", op, (long long)a->top_k);
  if (a->rows > 0 && (a->logits == nullptr || a->uniforms == nullptr || a->ids == nullptr))
    return ::ath::fail(ATH_ERR_INVALID, "%s: logits, uniforms and ids must not be null", op);
  return ATH_OK;
}

}  // namespace ath::sampling

// F16 <-> F32 row conversions with F16C (this file is built with the AVX2/FMA/F16C flags). Used by
// cpu_common.h's load_row/store_row (and through them by every op on F16 data) when the active
// ISA is AVX2 or AVX-512. Rounding is round-to-nearest-even, like the scalar conversion of
// common/dtype.h; only the payload bits of NaNs may differ.
#include <immintrin.h>

#include <cstdint>
#include <cstring>


// Declared in cpu_common.h, which is deliberately not included: its inline helpers must never be
// compiled with AVX2 flags (the linker could keep that copy for baseline callers).
namespace ath::cpu {

void f16_to_f32_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  if (i < n) {
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float out[8];
    std::memcpy(tmp, src + i, static_cast<size_t>(n - i) * sizeof(uint16_t));
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tmp))));
    std::memcpy(dst + i, out, static_cast<size_t>(n - i) * sizeof(float));
  }
}

void f32_to_f16_f16c(const float* src, uint16_t* dst, int64_t n) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRound));
  if (i < n) {
    float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint16_t out[8];
    std::memcpy(tmp, src + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(_mm256_loadu_ps(tmp), kRound));
    std::memcpy(dst + i, out, static_cast<size_t>(n - i) * sizeof(uint16_t));
  }
}

}  // namespace ath::cpu

// Philox-4x32-10 counter-based random numbers, identical on host and device, plus the maps from
// random bits to uniform and normal floats used by ath_cpu_rand and ath_cuda_rand.
// Element i of a fill with (seed, offset) uses counter (i + offset) and key seed; each counter gives
// four 32-bit words: word 0 (and 1 for the normal's second uniform) are used, so the value of an
// element never depends on the thread count or the launch shape.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define ATH_HD __host__ __device__ __forceinline__
#else
#define ATH_HD inline
#endif

namespace ath {

struct Philox4 {
  uint32_t v[4];
};

ATH_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// One Philox-4x32 block with 10 rounds. counter: 64-bit element index; key: 64-bit seed.
ATH_HD Philox4 philox4x32_10(uint64_t counter, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits: exact in F32, identical on every backend.
ATH_HD float philox_uniform01(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

// Uniform in (0, 1] (never 0), for the logarithm in Box-Muller.
ATH_HD float philox_uniform01_open0(uint32_t bits) { return (static_cast<float>(bits >> 8) + 1.0f) * (1.0f / 16777216.0f); }

}  // namespace ath

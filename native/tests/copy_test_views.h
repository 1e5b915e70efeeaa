// Strided views over byte buffers for the copy tests (test_cpu_copy.cpp, test_cuda_copy.cpp): a
// view builder (dimension order, padding, offsets, broadcast dimensions), the plain reference copy
// (element by element over the caller's shape, row-major) and ath_copy_args from two views.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>

#include "athanor/athanor.h"
#include "testing.h"

namespace ath::testing::copy {

// Random draws for the view generator.
struct Rng {
  std::mt19937_64 engine;
  explicit Rng(uint64_t seed) : engine(seed) {}
  int64_t below(int64_t n) { return static_cast<int64_t>(engine() % static_cast<uint64_t>(n)); }
};

// A strided view over a byte buffer: shape, element strides, and the element offset of its origin.
struct View {
  int rank = 0;
  int64_t shape[ATH_MAX_RANK] = {};
  int64_t strides[ATH_MAX_RANK] = {};
  int64_t origin = 0;  // elements from the buffer start
  int64_t extent = 1;  // elements of buffer the view needs from the buffer start
};

// Lays out `shape` with dimension `order[0]` innermost, each dimension padded by pad[d] elements,
// starting at `origin`; broadcast dims (bcast[d]) get stride 0.
inline View make_view(int rank, const int64_t* shape, const int* order, const int64_t* pad, const bool* bcast,
                      int64_t origin) {
  View v;
  v.rank = rank;
  v.origin = origin;
  int64_t stride = 1;
  for (int i = 0; i < rank; ++i) {
    const int d = order[i];
    v.shape[d] = shape[d];
    if (bcast != nullptr && bcast[d]) {
      v.strides[d] = 0;
      continue;
    }
    v.strides[d] = stride;
    stride *= shape[d] + pad[d];
  }
  int64_t last = 0;
  bool empty = false;
  for (int d = 0; d < rank; ++d) {
    if (shape[d] == 0) empty = true;
    else last += (shape[d] - 1) * v.strides[d];
  }
  v.extent = origin + (empty ? 0 : last) + 1;
  return v;
}

inline int64_t count_of(const View& v) {
  int64_t n = 1;
  for (int d = 0; d < v.rank; ++d) n *= v.shape[d];
  return n;
}

// dst[i] = src[i] element by element over the caller's shape, row-major.
inline void reference_copy(const View& dv, unsigned char* dst, const View& sv, const unsigned char* src, int es) {
  const int64_t n = count_of(dv);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, doff = dv.origin, soff = sv.origin;
    for (int d = dv.rank - 1; d >= 0; --d) {
      const int64_t c = rem % dv.shape[d];
      rem /= dv.shape[d];
      doff += c * dv.strides[d];
      soff += c * sv.strides[d];
    }
    std::memcpy(dst + doff * es, src + soff * es, static_cast<size_t>(es));
  }
}

inline ath_copy_args args_of(const View& dv, void* dst_base, const View& sv, const void* src_base, int es) {
  ath_copy_args a{};
  a.rank = dv.rank;
  a.elem_size = es;
  for (int d = 0; d < dv.rank; ++d) {
    a.shape[d] = dv.shape[d];
    a.dst_strides[d] = dv.strides[d];
    a.src_strides[d] = sv.strides[d];
  }
  a.dst = static_cast<unsigned char*>(dst_base) + dv.origin * es;
  a.src = static_cast<const unsigned char*>(src_base) + sv.origin * es;
  return a;
}

inline std::string describe(const View& dv, const View& sv, int es) {
  std::string s = format("es=%d shape=(", es);
  for (int d = 0; d < dv.rank; ++d) s += format("%s%lld", d ? "," : "", (long long)dv.shape[d]);
  s += ") dst=(";
  for (int d = 0; d < dv.rank; ++d) s += format("%s%lld", d ? "," : "", (long long)dv.strides[d]);
  s += ") src=(";
  for (int d = 0; d < dv.rank; ++d) s += format("%s%lld", d ? "," : "", (long long)sv.strides[d]);
  return s + ")";
}

inline constexpr int kElemSizes[] = {1, 2, 4, 8};

// A random copy case: rank 0..8, small odd shapes (sometimes 0), random dimension orders on both
// sides (mostly row-major), padding, origins, broadcast source dimensions, and sometimes a base
// misalignment of up to elem_size - 1 bytes.
struct RandomCase {
  View dst, src;
  int elem_size = 1;
  int misalign = 0;
};
inline RandomCase random_case(Rng& g) {
  RandomCase c;
  c.elem_size = kElemSizes[g.below(4)];
  const int rank = static_cast<int>(g.below(ATH_MAX_RANK + 1));
  int64_t shape[ATH_MAX_RANK], dpad[ATH_MAX_RANK], spad[ATH_MAX_RANK];
  int dorder[ATH_MAX_RANK], sorder[ATH_MAX_RANK];
  bool bcast[ATH_MAX_RANK];
  int64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    shape[d] = total > 2000 ? 1 : 1 + g.below(rank > 4 ? 3 : 9);
    if (g.below(40) == 0) shape[d] = 0;
    total *= shape[d] > 1 ? shape[d] : 1;
    dpad[d] = g.below(3) == 0 ? g.below(4) : 0;
    spad[d] = g.below(3) == 0 ? g.below(4) : 0;
    bcast[d] = g.below(6) == 0;
    dorder[d] = sorder[d] = d;
  }
  for (int d = rank - 1; d > 0; --d) {  // random layouts (Fisher-Yates steps), often the identity
    if (g.below(2)) std::swap(dorder[d], dorder[g.below(d + 1)]);
    if (g.below(2)) std::swap(sorder[d], sorder[g.below(d + 1)]);
  }
  std::reverse(dorder, dorder + rank);  // mostly row-major: innermost = last dim
  std::reverse(sorder, sorder + rank);
  c.dst = make_view(rank, shape, dorder, dpad, nullptr, g.below(5));
  c.src = make_view(rank, shape, sorder, spad, bcast, g.below(5));
  c.misalign = g.below(4) == 0 ? static_cast<int>(g.below(c.elem_size)) : 0;
  return c;
}

// Runs `iters` random cases from `seed` through run(dst, src, elem_size, misalign, what) -> bool
// (false on a mismatch, already recorded), stopping after 5 failures.
template <typename F>
void run_random_cases(uint64_t seed, int iters, F run) {
  Rng g(seed);
  int failures = 0;
  for (int iter = 0; iter < iters && failures < 5; ++iter) {
    const RandomCase c = random_case(g);
    if (!run(c.dst, c.src, c.elem_size, c.misalign,
             format("random #%d %s misalign=%d", iter, describe(c.dst, c.src, c.elem_size).c_str(), c.misalign)))
      ++failures;
  }
}

}  // namespace ath::testing::copy

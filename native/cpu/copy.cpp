// ath_cpu_copy: dst[i] = src[i] for every index i of a shape, between any two strided views of
// host memory (transposes, slices, broadcast sources with stride 0); ath_cpu_memset: a byte fill.
//
// Layout contract (athanor.h): rank 0..8 (rank 0 is one element), elements of elem_size 1/2/4/8
// bytes, element strides >= 0 for dst and src. The caller guarantees that dst does not overlap src
// and that dst's elements are distinct (this is not checked beyond rejecting a dst stride 0 on a
// dimension of size > 1); with overlap the result is unspecified. Pointers need no alignment.
//
// The arguments are validated and reduced to a canonical plan by ath::plan_copy (shared with the
// CUDA op): size-1 dimensions dropped, dimensions ordered by decreasing dst stride, adjacent
// dimensions that are contiguous on both sides merged. Execution: the plan's elements, in its
// row-major order, are split statically into contiguous ranges of at least kGrainBytes on the
// thread pool; a range walks its multi-index like an odometer and copies one run per row of the
// innermost dimension: a memcpy when that dimension is contiguous on both sides (a fully
// contiguous copy is one run per range; a copy of rows, one memcpy per row), else an element loop
// of the element size. Each element is written once, so the result does not depend on the thread
// count.
#include <algorithm>
#include <cstring>

#include "common/copy_plan.h"
#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kGrainBytes = int64_t{1} << 18;       // copy work per task, at least
constexpr int64_t kMemsetGrainBytes = int64_t{1} << 20;  // memset work per task, at least

// len elements of ES bytes from src to dst, byte strides ds and ss (fixed-size memcpy: one load
// and one store, no alignment needed).
template <int ES>
void copy_strided(char* dst, const char* src, int64_t len, int64_t ds, int64_t ss) {
  for (int64_t k = 0; k < len; ++k) std::memcpy(dst + k * ds, src + k * ss, ES);
}

void copy_strided(int es, char* dst, const char* src, int64_t len, int64_t ds, int64_t ss) {
  switch (es) {
    case 1: copy_strided<1>(dst, src, len, ds, ss); break;
    case 2: copy_strided<2>(dst, src, len, ds, ss); break;
    case 4: copy_strided<4>(dst, src, len, ds, ss); break;
    default: copy_strided<8>(dst, src, len, ds, ss); break;
  }
}

// Byte offsets of the multi-index idx (rank dims) in dst and src.
void offsets(const CopyPlan& p, const int64_t* idx, int64_t* doff, int64_t* soff) {
  int64_t d_el = 0, s_el = 0;
  for (int d = 0; d < p.rank; ++d) {
    d_el += idx[d] * p.dst_strides[d];
    s_el += idx[d] * p.src_strides[d];
  }
  *doff = d_el * p.elem_size;
  *soff = s_el * p.elem_size;
}

// Copies elements [begin, end) of the plan's row-major element order.
void copy_range(const CopyPlan& p, int64_t begin, int64_t end) {
  const int es = p.elem_size;
  if (p.rank == 0) {  // one element (begin 0, end 1)
    std::memcpy(p.dst, p.src, static_cast<size_t>(es));
    return;
  }
  const int inner_dim = p.rank - 1;
  const int64_t inner = p.shape[inner_dim];
  const bool contiguous = p.inner_contiguous();
  const int64_t ids = p.dst_strides[inner_dim] * es, iss = p.src_strides[inner_dim] * es;  // bytes
  int64_t idx[ATH_MAX_RANK];  // multi-index of element i
  int64_t rem = begin;
  for (int d = inner_dim; d >= 0; --d) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
  }
  int64_t doff = 0, soff = 0;
  offsets(p, idx, &doff, &soff);
  int64_t i = begin;
  for (;;) {
    const int64_t len = std::min(inner - idx[inner_dim], end - i);  // the run along the inner dim
    if (contiguous) {
      std::memcpy(p.dst + doff, p.src + soff, static_cast<size_t>(len * es));
    } else {
      copy_strided(es, p.dst + doff, p.src + soff, len, ids, iss);
    }
    i += len;
    if (i >= end) return;
    // The run ended its row (i < end): the next row starts at inner index 0.
    idx[inner_dim] = 0;
    for (int d = inner_dim - 1; d >= 0; --d) {
      if (++idx[d] < p.shape[d]) break;
      idx[d] = 0;
    }
    offsets(p, idx, &doff, &soff);
  }
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_copy(const ath_copy_args* a) {
  static const char* op = "ath_cpu_copy";
  ATH_GUARD_BEGIN
  ath::CopyPlan p;
  ATH_TRY(ath::plan_copy(op, a, &p));
  if (p.count == 0) return ATH_OK;
  const int64_t grain = std::max<int64_t>(1, ath::cpu::kGrainBytes / p.elem_size);
  ath::cpu::parallel_for(p.count, grain, [&](int64_t b, int64_t e, int) { ath::cpu::copy_range(p, b, e); });
  return ATH_OK;
  ATH_GUARD_END(op)
}

extern "C" ath_status ath_cpu_memset(const ath_memset_args* a) {
  static const char* op = "ath_cpu_memset";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::validate_memset(op, a));
  if (a->bytes == 0) return ATH_OK;
  char* dst = static_cast<char*>(a->dst);
  const int value = a->value;
  ath::cpu::parallel_for(a->bytes, ath::cpu::kMemsetGrainBytes, [&](int64_t b, int64_t e, int) {
    std::memset(dst + b, value, static_cast<size_t>(e - b));
  });
  return ATH_OK;
  ATH_GUARD_END(op)
}

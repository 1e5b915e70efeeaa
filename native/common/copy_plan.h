// Strided copy planning shared by ath_cpu_copy (native/cpu/copy.cpp) and ath_cuda_copy
// (kernels/copy.cu): argument validation with messages naming the bad field, and the reduction of
// any (shape, dst_strides, src_strides) to an equivalent canonical plan with fewer dimensions.
//
// Layout contract (athanor.h, "strided copy and memset"): dst[i] = src[i] for every index i of
// shape (rank 0..8, rank 0 is one element), elem_size 1/2/4/8 bytes, element strides >= 0. dst must
// not overlap src and dst's elements must be distinct: that is the caller's contract and is not
// checked, except for the one cheap case of a dst stride 0 on a dimension of size > 1 (rejected).
//
// The plan: dimensions of size 1 dropped (their strides never matter), the rest ordered by
// decreasing dst stride (stable; row-major order for a row-major dst, so writes stream), then
// adjacent dimensions merged when they are contiguous on both sides (outer stride == inner stride
// x inner size, for dst and for src alike; two stride-0 src dimensions merge too). A contiguous
// copy becomes rank 1 with unit strides, a copy of rows becomes rank 2 with unit inner strides.
#pragma once
#include <cstdint>

#include "athanor/athanor.h"

namespace ath {

struct CopyPlan {
  int rank = 0;        // dimensions left, 0..ATH_MAX_RANK (0 with count 1: one element)
  int elem_size = 1;   // bytes per element
  int64_t count = 0;   // elements in all; 0: nothing to copy
  int64_t shape[ATH_MAX_RANK] = {};        // outer to inner, every entry >= 2
  int64_t dst_strides[ATH_MAX_RANK] = {};  // elements, > 0, decreasing
  int64_t src_strides[ATH_MAX_RANK] = {};  // elements, >= 0
  char* dst = nullptr;
  const char* src = nullptr;

  // True when the innermost dimension is contiguous on both sides (rows of bytes).
  bool inner_contiguous() const { return rank >= 1 && dst_strides[rank - 1] == 1 && src_strides[rank - 1] == 1; }
};

// Validates `a` for op `op` (ATH_ERR_INVALID naming the field) and fills `plan`. The byte offset
// of every element on either side, and the copy's total bytes, are checked to fit in int64.
ath_status plan_copy(const char* op, const ath_copy_args* a, CopyPlan* plan);

// Validates ath_memset_args: non-null args, bytes >= 0, value in [0, 255], dst non-null when
// bytes > 0.
ath_status validate_memset(const char* op, const ath_memset_args* a);

}  // namespace ath

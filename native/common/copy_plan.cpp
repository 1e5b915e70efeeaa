// Validation and canonical plan of a strided copy (see copy_plan.h).
#include "copy_plan.h"

#include <algorithm>

#include "status.h"

namespace ath {
namespace {

// Largest element offset of one side, sum_d (shape[d] - 1) * strides[d], times elem_size must fit
// in int64 (every byte offset the copy computes is then exact).
bool extent_fits(int rank, const int64_t* shape, const int64_t* strides, int elem_size) {
  int64_t extent = 0;
  for (int d = 0; d < rank; ++d) {
    if (shape[d] == 0) return true;  // nothing is addressed
    int64_t term = 0;
    if (__builtin_mul_overflow(shape[d] - 1, strides[d], &term) || __builtin_add_overflow(extent, term, &extent))
      return false;
  }
  int64_t bytes = 0;
  return !__builtin_mul_overflow(extent, static_cast<int64_t>(elem_size), &bytes) &&
         !__builtin_add_overflow(bytes, static_cast<int64_t>(elem_size), &bytes);
}

}  // namespace

ath_status plan_copy(const char* op, const ath_copy_args* a, CopyPlan* plan) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->rank < 0 || a->rank > ATH_MAX_RANK)
    return fail(ATH_ERR_INVALID, "%s: rank=%d out of range [0, %d]", op, a->rank, ATH_MAX_RANK);
  if (a->elem_size != 1 && a->elem_size != 2 && a->elem_size != 4 && a->elem_size != 8)
    return fail(ATH_ERR_INVALID, "%s: elem_size=%d must be 1, 2, 4 or 8 bytes", op, a->elem_size);
  int64_t count = 1;
  for (int d = 0; d < a->rank; ++d) {
    if (a->shape[d] < 0)
      return fail(ATH_ERR_INVALID, "%s: shape[%d]=%lld must be >= 0", op, d, (long long)a->shape[d]);
    if (a->dst_strides[d] < 0)
      return fail(ATH_ERR_INVALID, "%s: dst_strides[%d]=%lld must be >= 0", op, d, (long long)a->dst_strides[d]);
    if (a->src_strides[d] < 0)
      return fail(ATH_ERR_INVALID, "%s: src_strides[%d]=%lld must be >= 0", op, d, (long long)a->src_strides[d]);
    if (__builtin_mul_overflow(count, a->shape[d], &count))
      return fail(ATH_ERR_INVALID, "%s: the element count of shape overflows int64 (at shape[%d]=%lld)", op, d,
                  (long long)a->shape[d]);
  }
  int64_t total_bytes = 0;
  if (__builtin_mul_overflow(count, static_cast<int64_t>(a->elem_size), &total_bytes))
    return fail(ATH_ERR_INVALID, "%s: %lld elements of %d bytes overflow int64", op, (long long)count, a->elem_size);
  if (count > 0) {
    for (int d = 0; d < a->rank; ++d) {
      if (a->dst_strides[d] == 0 && a->shape[d] > 1)
        return fail(ATH_ERR_INVALID,
                    "%s: dst_strides[%d]=0 with shape[%d]=%lld: dst's elements must be distinct (stride 0 only on a "
                    "dimension of size 1)",
                    op, d, d, (long long)a->shape[d]);
    }
    if (!extent_fits(a->rank, a->shape, a->dst_strides, a->elem_size))
      return fail(ATH_ERR_INVALID, "%s: dst_strides and shape address bytes beyond int64", op);
    if (!extent_fits(a->rank, a->shape, a->src_strides, a->elem_size))
      return fail(ATH_ERR_INVALID, "%s: src_strides and shape address bytes beyond int64", op);
    if (a->dst == nullptr) return fail(ATH_ERR_INVALID, "%s: dst is null (copying %lld elements)", op, (long long)count);
    if (a->src == nullptr) return fail(ATH_ERR_INVALID, "%s: src is null (copying %lld elements)", op, (long long)count);
  }

  CopyPlan p;
  p.elem_size = a->elem_size;
  p.count = count;
  p.dst = static_cast<char*>(a->dst);
  p.src = static_cast<const char*>(a->src);
  if (count == 0) {
    *plan = p;
    return ATH_OK;
  }
  // Dimensions of size > 1, in the caller's order, then stably by decreasing dst stride.
  int order[ATH_MAX_RANK];
  int n = 0;
  for (int d = 0; d < a->rank; ++d)
    if (a->shape[d] > 1) order[n++] = d;
  std::stable_sort(order, order + n, [&](int x, int y) { return a->dst_strides[x] > a->dst_strides[y]; });
  // Merge each dimension into the previous (outer) one when the pair is contiguous on both sides.
  for (int i = 0; i < n; ++i) {
    const int d = order[i];
    const int64_t len = a->shape[d], ds = a->dst_strides[d], ss = a->src_strides[d];
    if (p.rank > 0) {
      const int o = p.rank - 1;
      int64_t ds_len = 0, ss_len = 0;
      const bool fits = !__builtin_mul_overflow(ds, len, &ds_len) && !__builtin_mul_overflow(ss, len, &ss_len);
      if (fits && p.dst_strides[o] == ds_len && p.src_strides[o] == ss_len) {
        p.shape[o] *= len;
        p.dst_strides[o] = ds;
        p.src_strides[o] = ss;
        continue;
      }
    }
    p.shape[p.rank] = len;
    p.dst_strides[p.rank] = ds;
    p.src_strides[p.rank] = ss;
    ++p.rank;
  }
  *plan = p;
  return ATH_OK;
}

ath_status validate_memset(const char* op, const ath_memset_args* a) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->bytes < 0) return fail(ATH_ERR_INVALID, "%s: bytes=%lld must be >= 0", op, (long long)a->bytes);
  if (a->value < 0 || a->value > 255) return fail(ATH_ERR_INVALID, "%s: value=%d must be in [0, 255]", op, a->value);
  if (a->bytes > 0 && a->dst == nullptr)
    return fail(ATH_ERR_INVALID, "%s: dst is null (setting %lld bytes)", op, (long long)a->bytes);
  return ATH_OK;
}

}  // namespace ath

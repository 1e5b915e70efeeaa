// ath_cpu_embedding_fwd / ath_cpu_embedding_bwd: token embedding lookup on the CPU.
// ids: (n) I32 in [0, vocab); table: (vocab, dim) dtype F32/BF16/F16; out, dout: (n, dim) dtype;
// dtable: (vocab, dim) F32, ACCUMULATED.
//   forward:  out[i, :] = table[ids[i], :]        (written; a bad id is ATH_ERR_INVALID naming the
//             first bad id and its position, detected before anything is written)
//   backward: dtable[v, :] += S_v for every id v present, S_v = dout[i_1, :] + dout[i_2, :] + ...
//             the sum of the rows of v's tokens i_1 < i_2 < ... formed in token order starting
//             from the first of them, then added once (same id check). When dtable already holds
//             a tied output head's gradient H, a row ends as H + (g_1 + g_2 + ...), never as
//             ((H + g_1) + g_2) + ...; rows of ids absent from `ids` are not touched.
// The backward pass groups the tokens by id with a stable counting sort (or, for a vocabulary much
// larger than the token count, a stable sort of the token indices), so no (vocab, dim) scratch is
// needed. Work items are (id, block of 256 columns) pairs, split over the pool in contiguous ranges
// of about equal token counts; each item forms its sum in a local row and adds it into dtable once.
// Results are bit-identical for any thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kColChunk = 256;      // backward: columns per work item
constexpr int64_t kPrefetch = 4;        // backward: software prefetch distance (tokens of a group, items)

// Tokens grouped by id for the backward pass: order[start[g] .. start[g + 1]) are the token
// indices of group g in increasing order, all with id ids[order[start[g]]]; groups by increasing id.
struct TokenGroups {
  std::vector<int64_t> order;  // (n) token indices
  std::vector<int64_t> start;  // (groups + 1)
};

TokenGroups group_tokens(const int32_t* ids, int64_t n, int64_t vocab) {
  TokenGroups tg;
  tg.order.resize(static_cast<size_t>(n));
  if (vocab <= 8 * n + 65536) {  // counting sort: O(n + vocab), stable
    std::vector<int64_t> next(static_cast<size_t>(vocab) + 1, 0);
    for (int64_t i = 0; i < n; ++i) ++next[static_cast<size_t>(ids[i]) + 1];
    for (int64_t v = 0; v < vocab; ++v) next[static_cast<size_t>(v) + 1] += next[static_cast<size_t>(v)];
    for (int64_t i = 0; i < n; ++i) tg.order[static_cast<size_t>(next[static_cast<size_t>(ids[i])]++)] = i;
  } else {  // a vocabulary much larger than the token count: stable sort of the indices by id
    for (int64_t i = 0; i < n; ++i) tg.order[static_cast<size_t>(i)] = i;
    std::stable_sort(tg.order.begin(), tg.order.end(), [&](int64_t x, int64_t y) { return ids[x] < ids[y]; });
  }
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || ids[tg.order[static_cast<size_t>(k)]] != ids[tg.order[static_cast<size_t>(k) - 1]])
      tg.start.push_back(k);
  tg.start.push_back(n);
  return tg;
}

ath_status validate(const ath_embedding_args* a, bool backward, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->vocab < 1 || a->vocab > INT32_MAX)
    return fail(ATH_ERR_INVALID, "%s: vocab=%lld must be in [1, %d]", op, (long long)a->vocab, INT32_MAX);
  if (a->dim < 1) return fail(ATH_ERR_INVALID, "%s: dim=%lld must be >= 1", op, (long long)a->dim);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (a->n == 0) return ATH_OK;
  if (a->ids == nullptr) return fail(ATH_ERR_INVALID, "%s: ids is null", op);
  if (!backward && (a->table == nullptr || a->out == nullptr))
    return fail(ATH_ERR_INVALID, "%s: table (%p) and out (%p) must not be null", op, a->table, a->out);
  if (backward && (a->dout == nullptr || a->dtable == nullptr))
    return fail(ATH_ERR_INVALID, "%s: dout (%p) and dtable (%p) must not be null", op, a->dout,
                static_cast<void*>(a->dtable));
  for (int64_t i = 0; i < a->n; ++i)
    if (a->ids[i] < 0 || a->ids[i] >= a->vocab)
      return fail(ATH_ERR_INVALID, "%s: ids[%lld]=%d must be in [0, %lld)", op, (long long)i, a->ids[i],
                  (long long)a->vocab);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_embedding_fwd(const ath_embedding_args* a) {
  static const char* kOp = "ath_cpu_embedding_fwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, false, kOp));
  const int64_t dim = a->dim;
  const size_t row_bytes = static_cast<size_t>(dim) * ath_dtype_size(a->dtype);
  const char* table = static_cast<const char*>(a->table);
  char* out = static_cast<char*>(a->out);
  parallel_for(a->n, grain_for(dim), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i)
      std::memcpy(out + static_cast<size_t>(i) * row_bytes, table + static_cast<size_t>(a->ids[i]) * row_bytes,
                  row_bytes);
  });
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

extern "C" ath_status ath_cpu_embedding_bwd(const ath_embedding_args* a) {
  static const char* kOp = "ath_cpu_embedding_bwd";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, true, kOp));
  const int64_t n = a->n, dim = a->dim;
  if (n == 0) return ATH_OK;
  const TokenGroups tg = group_tokens(a->ids, n, a->vocab);
  const int64_t groups = static_cast<int64_t>(tg.start.size()) - 1;
  const int64_t col_units = (dim + kColChunk - 1) / kColChunk, items = groups * col_units;
  // Item t: group t / col_units, columns [(t % col_units) * kColChunk, +kColChunk). Contiguous item
  // ranges of about equal token counts, one per thread (who computes an item never changes its sum).
  const int parts = static_cast<int>(std::min<int64_t>(num_threads(), items));
  std::vector<int64_t> bounds = {0, items};
  if (parts > 1) {
    std::vector<int64_t> cost(static_cast<size_t>(items));
    for (int64_t t = 0; t < items; ++t) {
      const int64_t g = t / col_units;
      cost[static_cast<size_t>(t)] = tg.start[static_cast<size_t>(g) + 1] - tg.start[static_cast<size_t>(g)] + 1;
    }
    bounds = balanced_bounds(cost, parts);
  }
  FloatBuf scratch(2 * kColChunk * std::max(parts, 1), false);
  const bool f32 = a->dtype == ATH_F32;
  const int64_t esize = static_cast<int64_t>(ath_dtype_size(a->dtype));
  // The rows a group reads are scattered over dout, and its dtable row is anywhere in the table:
  // both are fetched ahead (token k + kPrefetch of the group; the next items' first rows).
  auto prefetch = [&](const void* base, int64_t elem_size, int64_t offset, int64_t len, int rw) {
    const char* p = static_cast<const char*>(base) + offset * elem_size;
    for (int64_t byte = 0; byte < len * elem_size; byte += 64) {
      if (rw) __builtin_prefetch(p + byte, 1);
      else __builtin_prefetch(p + byte, 0);
    }
  };
  auto run_items = [&](int64_t t0, int64_t t1, float* acc /* (kColChunk) */, float* row /* (kColChunk) */) {
    for (int64_t t = t0; t < t1; ++t) {
      if (t + kPrefetch < t1) {
        const int64_t g = (t + kPrefetch) / col_units, c0 = ((t + kPrefetch) % col_units) * kColChunk;
        const int64_t tok = tg.order[static_cast<size_t>(tg.start[static_cast<size_t>(g)])];
        prefetch(a->dout, esize, tok * dim + c0, std::min(kColChunk, dim - c0), 0);
        prefetch(a->dtable, 4, a->ids[tok] * dim + c0, std::min(kColChunk, dim - c0), 1);
      }
      const int64_t g = t / col_units, c0 = (t % col_units) * kColChunk, len = std::min(kColChunk, dim - c0);
      const int64_t k0 = tg.start[static_cast<size_t>(g)], k1 = tg.start[static_cast<size_t>(g) + 1];
      const int64_t id = a->ids[tg.order[static_cast<size_t>(k0)]];
      load_row(a->dout, a->dtype, tg.order[static_cast<size_t>(k0)] * dim + c0, len, acc);  // the first token's row
      for (int64_t k = k0 + 1; k < k1; ++k) {
        if (k + kPrefetch < k1) prefetch(a->dout, esize, tg.order[static_cast<size_t>(k + kPrefetch)] * dim + c0, len, 0);
        const int64_t off = tg.order[static_cast<size_t>(k)] * dim + c0;
        const float* src = static_cast<const float*>(a->dout) + off;
        if (!f32) {
          load_row(a->dout, a->dtype, off, len, row);
          src = row;
        }
        for (int64_t c = 0; c < len; ++c) acc[c] += src[c];
      }
      float* d = a->dtable + id * dim + c0;
      for (int64_t c = 0; c < len; ++c) d[c] += acc[c];
    }
  };
  if (parts <= 1) {
    run_items(0, items, scratch.get(), scratch.get() + kColChunk);
  } else {
    run_on_all([&](int tid, int nthreads) {
      for (int part = tid; part < parts; part += nthreads) {
        float* acc = scratch.get() + 2 * kColChunk * part;
        run_items(bounds[static_cast<size_t>(part)], bounds[static_cast<size_t>(part) + 1], acc, acc + kColChunk);
      }
    });
  }
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

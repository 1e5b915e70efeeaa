// ath_cpu_embedding_fwd / ath_cpu_embedding_bwd: token embedding lookup on the CPU.
// ids: (n) I32 in [0, vocab); table: (vocab, dim) dtype F32/BF16/F16; out, dout: (n, dim) dtype;
// dtable: (vocab, dim) F32, ACCUMULATED.
//   forward:  out[i, :] = table[ids[i], :]        (written; a bad id is ATH_ERR_INVALID naming the
//             first bad id and its position, detected before anything is written)
//   backward: dtable[ids[i], :] += dout[i, :]     (same id check)
// The backward pass never races on a row: threads own either column ranges (wide rows) or vocab
// ranges (narrow rows) and every owner adds the tokens in index order, so each element of dtable
// receives its additions in the same order for any thread count (bit-identical results).
#include <cstring>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kColChunk = 64;  // columns per work unit in the column-partitioned backward

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
  const int64_t n = a->n, dim = a->dim, vocab = a->vocab;
  if (n == 0) return ATH_OK;
  const int nt = num_threads();
  const int64_t col_units = (dim + kColChunk - 1) / kColChunk;
  if (col_units >= nt || nt == 1) {
    // Column ranges: each thread adds every token's slice of its columns, tokens in order.
    FloatBuf scratch(kColChunk * nt);
    parallel_for(col_units, 1, [&](int64_t u0, int64_t u1, int tid) {
      float* g = scratch.get() + kColChunk * tid;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t c0 = u * kColChunk, len = std::min(kColChunk, dim - c0);
        for (int64_t i = 0; i < n; ++i) {
          load_row(a->dout, a->dtype, i * dim + c0, len, g);
          float* d = a->dtable + static_cast<int64_t>(a->ids[i]) * dim + c0;
          for (int64_t c = 0; c < len; ++c) d[c] += g[c];
        }
      }
    });
  } else {
    // Vocab ranges: each thread scans all tokens and adds those whose id it owns, in order.
    FloatBuf scratch(dim * nt);
    parallel_for(vocab, 1, [&](int64_t v0, int64_t v1, int tid) {
      float* g = scratch.get() + dim * tid;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t id = a->ids[i];
        if (id < v0 || id >= v1) continue;
        load_row(a->dout, a->dtype, i * dim, dim, g);
        float* d = a->dtable + id * dim;
        for (int64_t c = 0; c < dim; ++c) d[c] += g[c];
      }
    });
  }
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

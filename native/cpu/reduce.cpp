// ath_cpu_reduce: reductions to F32 on the CPU; x has dtype F32/BF16/F16, out is F32.
//   SUM:         out[0] = sum(x[0, n))                (written)
//   SUM_SQUARES: out[0] = sum(x[0, n)^2)              (written; for the global gradient norm)
//   SUM_ROWS:    x is (rows, cols), n = rows * cols;  out[0, cols) += column sums (accumulated;
//                bias gradients)
// Accumulation is in double. SUM / SUM_SQUARES: each thread sums a static range of blocks with 8
// partial sums, the per-thread doubles are added in thread order and rounded to F32 once.
// SUM_ROWS: wide rows are split by columns (each thread walks all rows for its columns), narrow
// rows by rows (per-thread double column sums added in thread order); the choice depends only on
// the shape and the thread count, so results are bit-identical run to run.
#include <vector>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kBlock = 2048;
constexpr int64_t kColChunk = 256;

ath_status validate(const ath_reduce_args* a, const char* op) {
  if (a == nullptr) return fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->op != ATH_RED_SUM && a->op != ATH_RED_SUM_SQUARES && a->op != ATH_RED_SUM_ROWS)
    return fail(ATH_ERR_INVALID, "%s: op=%d must be 0 (SUM), 1 (SUM_SQUARES) or 2 (SUM_ROWS)", op, a->op);
  if (!is_float_dtype(a->dtype))
    return fail(ATH_ERR_INVALID, "%s: dtype=%d (%s) must be F32, BF16 or F16", op, a->dtype, dtype_name(a->dtype));
  if (a->n < 0) return fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->op == ATH_RED_SUM_ROWS) {
    if (a->rows < 0 || a->cols < 1)
      return fail(ATH_ERR_INVALID, "%s: SUM_ROWS needs rows=%lld >= 0 and cols=%lld >= 1", op, (long long)a->rows,
                  (long long)a->cols);
    if (a->rows > INT64_MAX / a->cols || a->n != a->rows * a->cols)
      return fail(ATH_ERR_INVALID, "%s: SUM_ROWS needs n=%lld == rows=%lld x cols=%lld", op, (long long)a->n,
                  (long long)a->rows, (long long)a->cols);
  }
  if (a->out == nullptr) return fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (a->n > 0 && a->x == nullptr) return fail(ATH_ERR_INVALID, "%s: x is null", op);
  return ATH_OK;
}

// sum of x[0, n) (or of squares) in double with 8 partial sums
inline double block_sum(const float* x, int64_t n, bool squares) {
  double acc[8] = {};
  int64_t i = 0;
  if (squares) {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
    for (int j = 0; i < n; ++i, ++j) acc[j] += static_cast<double>(x[i]) * x[i];
  } else {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
    for (int j = 0; i < n; ++i, ++j) acc[j] += x[i];
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void reduce_all(const ath_reduce_args* a) {
  const int64_t n = a->n, nblocks = (n + kBlock - 1) / kBlock;
  const int nt = num_threads();
  std::vector<double> partial(static_cast<size_t>(nt), 0.0);
  const bool squares = a->op == ATH_RED_SUM_SQUARES;
  parallel_for(nblocks, 8, [&](int64_t b0, int64_t b1, int tid) {
    float x[kBlock];
    double s = 0;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      load_row(a->x, a->dtype, off, len, x);
      s += block_sum(x, len, squares);
    }
    partial[static_cast<size_t>(tid)] = s;
  });
  double total = 0;
  for (double p : partial) total += p;
  a->out[0] = static_cast<float>(total);
}

void sum_rows(const ath_reduce_args* a) {
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return;
  const int nt = num_threads();
  const int64_t col_units = (cols + kColChunk - 1) / kColChunk;
  if (col_units >= nt || nt == 1 || rows < 4 * nt) {
    // Column ranges: each thread walks all rows for its columns.
    parallel_for(col_units, 1, [&](int64_t u0, int64_t u1, int) {
      float x[kColChunk];
      double acc[kColChunk];
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t c0 = u * kColChunk, len = std::min(kColChunk, cols - c0);
        for (int64_t c = 0; c < len; ++c) acc[c] = 0.0;
        for (int64_t r = 0; r < rows; ++r) {
          load_row(a->x, a->dtype, r * cols + c0, len, x);
          for (int64_t c = 0; c < len; ++c) acc[c] += x[c];
        }
        for (int64_t c = 0; c < len; ++c) a->out[c0 + c] += static_cast<float>(acc[c]);
      }
    });
    return;
  }
  // Row ranges with per-thread double column sums, combined in thread order.
  std::vector<double> partial(static_cast<size_t>(nt * cols), 0.0);
  FloatBuf scratch(cols * nt);
  parallel_for(rows, grain_for(cols), [&](int64_t r0, int64_t r1, int tid) {
    float* x = scratch.get() + cols * tid;
    double* acc = partial.data() + cols * tid;
    for (int64_t r = r0; r < r1; ++r) {
      load_row(a->x, a->dtype, r * cols, cols, x);
      for (int64_t c = 0; c < cols; ++c) acc[c] += x[c];
    }
  });
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0;
    for (int t = 0; t < nt; ++t) s += partial[static_cast<size_t>(t * cols + c)];
    a->out[c] += static_cast<float>(s);
  }
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_reduce(const ath_reduce_args* a) {
  static const char* kOp = "ath_cpu_reduce";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(validate(a, kOp));
  if (a->op == ATH_RED_SUM_ROWS) {
    sum_rows(a);
  } else {
    reduce_all(a);
  }
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

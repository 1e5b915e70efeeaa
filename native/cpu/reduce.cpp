// ath_cpu_reduce: reductions to F32 on the CPU; x has dtype F32/BF16/F16, out is F32.
//   SUM:         out[0] = sum(x[0, n))                (written)
//   SUM_SQUARES: out[0] = sum(x[0, n)^2)              (written; for the global gradient norm)
//   SUM_ROWS:    x is (rows, cols), n = rows * cols;  out[0, cols) += S, S the column sums
//                (accumulated; bias gradients): S is formed first and added once, so out ends as
//                H + S for the H it held
// Accumulation is in double, rounded to F32 once. The order of every sum is a function of the
// shape only, so results are bit-identical for any thread count:
//   SUM / SUM_SQUARES: blocks of 2048 elements, each summed with 8 partial sums; the block sums
//     are added in block order.
//   SUM_ROWS: tiles of 256 rows x 256 columns; each tile sums its rows in order per column; the
//     tiles of a column are combined in row-chunk order (cpu_common.h, sum_partials).
// Threads only decide who computes which block or tile.
#include <vector>

#include "cpu_common.h"

namespace ath::cpu {
namespace {

constexpr int64_t kBlock = 2048;    // SUM / SUM_SQUARES: elements per block
constexpr int64_t kRowChunk = 256;  // SUM_ROWS: rows per tile (a constant: fixes the summation order)
constexpr int64_t kColChunk = 256;  // SUM_ROWS: columns per tile

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
  std::vector<double> partial(static_cast<size_t>(nblocks), 0.0);  // (nblocks) block sums
  const bool squares = a->op == ATH_RED_SUM_SQUARES;
  parallel_for(nblocks, 8, [&](int64_t b0, int64_t b1, int) {
    float x[kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t off = blk * kBlock, len = std::min(kBlock, n - off);
      load_row(a->x, a->dtype, off, len, x);
      partial[static_cast<size_t>(blk)] = block_sum(x, len, squares);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  a->out[0] = static_cast<float>(total);
}

void sum_rows(const ath_reduce_args* a) {
  const int64_t rows = a->rows, cols = a->cols;
  if (rows == 0) return;
  const int64_t row_chunks = (rows + kRowChunk - 1) / kRowChunk, col_chunks = (cols + kColChunk - 1) / kColChunk;
  std::vector<double> partial(static_cast<size_t>(row_chunks * cols));  // (row_chunks, cols), every element written
  // Tiles in row-chunk-major order: tile t covers row chunk t / col_chunks, column chunk t % col_chunks.
  parallel_for(row_chunks * col_chunks, grain_for(kRowChunk * kColChunk), [&](int64_t t0, int64_t t1, int) {
    float x[kColChunk];
    double acc[kColChunk];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t rc = t / col_chunks, c0 = (t % col_chunks) * kColChunk, len = std::min(kColChunk, cols - c0);
      const int64_t r1 = std::min(rows, (rc + 1) * kRowChunk);
      for (int64_t c = 0; c < len; ++c) acc[c] = 0.0;
      for (int64_t r = rc * kRowChunk; r < r1; ++r) {
        load_row(a->x, a->dtype, r * cols + c0, len, x);
        for (int64_t c = 0; c < len; ++c) acc[c] += x[c];
      }
      std::memcpy(partial.data() + rc * cols + c0, acc, static_cast<size_t>(len) * sizeof(double));
    }
  });
  sum_partials(partial.data(), 1, row_chunks, cols, [&](int64_t j0, int64_t j1, const double* total) {
    for (int64_t j = j0; j < j1; ++j) a->out[j] += static_cast<float>(total[j - j0]);
  });
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

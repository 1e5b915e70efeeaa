// Deterministic second stage of a column reduction: given per-chunk partial column sums
// partial (chunks, ld) F32 (row k holds chunk k's sums for columns [0, cols)), accumulate
//   out[c] += sum_{k = 0}^{chunks - 1} partial[k * ld + slot(c)]
// where slot(c) = (c % vec) * (cols / vec) + c / vec: a chunk row may store its columns
// "vector-transposed" (element k of 16-byte vector j at k * nvec + j, the layout that keeps the
// producers' shared-memory accumulators free of bank conflicts); vec = 1 is plain column order.
// in a fixed order that depends only on `chunks` (never on scheduling): lane ty of a 32x8 block
// sums chunks ty, ty + 8, ty + 16, ... in increasing order, then lane 0 adds the 8 lane sums in
// order 0..7. No atomics. Used by layernorm/rmsnorm backward (dweight, dbias) and reduce(SUM_ROWS).
#pragma once
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kColTileX = 32, kColTileY = 8;

__global__ void col_partials_finalize_kernel(const float* __restrict__ partial,  // (chunks, ld)
                             int64_t chunks, int64_t ld, int64_t cols, int vec,
                             float* __restrict__ out) {           // (cols) +=
  __shared__ float sh[kColTileY][kColTileX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  // Threads walk slots (coalesced reads of the partials); slot -> column is the inverse map.
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * kColTileX + tx;
  const int64_t nvec = cols / vec;
  const int64_t c = (slot % nvec) * vec + slot / nvec;
  float s = 0.f;
  if (slot < cols) {
    for (int64_t k = ty; k < chunks; k += kColTileY) s += partial[k * ld + slot];
  }
  sh[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && slot < cols) {
    float t = sh[0][tx];
#pragma unroll
    for (int j = 1; j < kColTileY; ++j) t += sh[j][tx];
    out[c] += t;
  }
}

// Enqueues the finalize on `stream`. cols >= 1, chunks >= 1, vec >= 1 divides cols.
inline ath_status col_partials_finalize(const char* op, const float* partial, int64_t chunks, int64_t ld,
                                        int64_t cols, int vec, float* out, cudaStream_t stream) {
  const int64_t blocks = (cols + kColTileX - 1) / kColTileX;
  if (blocks > 0x7fffffff) return ::ath::fail(ATH_ERR_INVALID, "%s: cols=%lld too large", op, (long long)cols);
  col_partials_finalize_kernel<<<static_cast<unsigned>(blocks), dim3(kColTileX, kColTileY), 0, stream>>>(
      partial, chunks, ld, cols, vec, out);
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

// Reductions to F32 (ath_cuda_reduce), deterministic: the summation order depends only on the
// shape, never on scheduling or the device, and no atomics are used.
//
//   SUM:         out[0] = sum(x)            (written; 0 for n == 0)
//   SUM_SQUARES: out[0] = sum(x^2)          (written; the global gradient norm's square)
//   SUM_ROWS:    x (rows, cols) contiguous, n == rows * cols; out (cols) += column sums
//                (accumulated: bias gradients)
// x: dtype F32/BF16/F16; out F32; F32 accumulation.
// SUM / SUM_SQUARES: a grid of G = min(1024, ceil(n / 8192)) blocks (a function of n only) each
// sums a grid-stride slice into one partial (per-thread, then block tree), the partials go to the
// context's scratch arena, and one block adds the G partials in a fixed tree order.
// SUM_ROWS: blocks of 32 columns x 8 row lanes sum a chunk of rows per column; the chunks' partial
// column sums go to the scratch arena and col_partials_finalize adds them in a fixed order into out
// (a single chunk adds into out directly).
// Scratch: SUM / SUM_SQUARES 4 * G bytes (G as above, so at most 4 KiB); SUM_ROWS 4 * chunks * cols
// bytes when chunks > 1, else none (chunks: about 1024 / ceil(cols / 32) row chunks of at least 64
// rows, see launch_sum_rows).
#include "col_reduce.cuh"
#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;
constexpr int64_t kElemsPerBlock = 8192;

template <typename T, int V, bool SQUARES>
__global__ void reduce_partials_kernel(const T* __restrict__ x, int64_t n, float* __restrict__ partials) {
  __shared__ float scratch[32];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  float acc[V];
#pragma unroll
  for (int k = 0; k < V; ++k) acc[k] = 0.f;
  for (int64_t j = tid; j < nv; j += stride) {
    float v[V];
    load_vec<T, V>(x + j * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] += SQUARES ? v[k] * v[k] : v[k];
  }
  for (int64_t i = nv * V + tid; i < n; i += stride) {
    const float v = to_f32<T>(x[i]);
    acc[0] += SQUARES ? v * v : v;
  }
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < V; ++k) s += acc[k];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// One block of kMaxPartials threads: out[0] = sum of the partials (fixed tree order).
__global__ void reduce_final_kernel(const float* __restrict__ partials, int count, float* __restrict__ out) {
  __shared__ float scratch[32];
  const float v = static_cast<int>(threadIdx.x) < count ? partials[threadIdx.x] : 0.f;
  const float s = block_sum(v, scratch);
  if (threadIdx.x == 0) out[0] = s;
}

// Block (32 columns, 8 row lanes) sums rows [r0, r1) of its columns; lane ty takes rows
// r0 + ty, r0 + ty + 8, ... in order, then lane 0 adds the 8 lane sums in order.
template <typename T>
__global__ void sum_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, int64_t rows_per_chunk,
                                float* __restrict__ dst,  // (chunks, cols) partials, or out (cols) when direct
                                int direct) {
  __shared__ float sh[kColTileY][kColTileX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTileX + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  int64_t r1 = r0 + rows_per_chunk;
  if (r1 > rows) r1 = rows;
  float s = 0.f;
  if (c < cols) {
    for (int64_t r = r0 + ty; r < r1; r += kColTileY) s += to_f32<T>(x[r * cols + c]);
  }
  sh[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && c < cols) {
    float t = sh[0][tx];
#pragma unroll
    for (int j = 1; j < kColTileY; ++j) t += sh[j][tx];
    if (direct) dst[c] += t;
    else dst[static_cast<int64_t>(blockIdx.y) * cols + c] = t;
  }
}

template <typename T>
ath_status launch_sum(const ath_reduce_args* a, const OpContext& oc, bool squares) {
  static const char* op = "ath_cuda_reduce";
  constexpr int V = kVec16<T>;
  const cudaStream_t stream = oc.stream;
  int64_t g = (a->n + kElemsPerBlock - 1) / kElemsPerBlock;
  if (g > kMaxPartials) g = kMaxPartials;
  if (g < 1) g = 1;
  Scratch scratch = oc.arena();
  float* partials = scratch.take<float>(static_cast<size_t>(g));  // (g)
  ATH_TRY(scratch.fits(op));
  const T* x = static_cast<const T*>(a->x);
  const unsigned grid = static_cast<unsigned>(g);
  // The vector and scalar kernels visit elements in different orders; the choice depends only on
  // the pointer's alignment, so a given buffer always reduces the same way.
  if (is_aligned(a->x, 16)) {
    if (squares) reduce_partials_kernel<T, V, true><<<grid, kThreads, 0, stream>>>(x, a->n, partials);
    else reduce_partials_kernel<T, V, false><<<grid, kThreads, 0, stream>>>(x, a->n, partials);
  } else {
    if (squares) reduce_partials_kernel<T, 1, true><<<grid, kThreads, 0, stream>>>(x, a->n, partials);
    else reduce_partials_kernel<T, 1, false><<<grid, kThreads, 0, stream>>>(x, a->n, partials);
  }
  ATH_CUDA_CHECK_LAUNCH(op);
  reduce_final_kernel<<<1, kMaxPartials, 0, stream>>>(partials, static_cast<int>(g), a->out);
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
}

template <typename T>
ath_status launch_sum_rows(const ath_reduce_args* a, const OpContext& oc) {
  static const char* op = "ath_cuda_reduce";
  const cudaStream_t stream = oc.stream;
  const int64_t col_tiles = (a->cols + kColTileX - 1) / kColTileX;
  if (col_tiles > 0x7fffffff) return ::ath::fail(ATH_ERR_INVALID, "%s: cols=%lld too large", op, (long long)a->cols);
  // Chunks of rows: about 1024 blocks in all, at least 64 rows per chunk (shape-only choice).
  int64_t chunks = (kMaxPartials + col_tiles - 1) / col_tiles;
  const int64_t max_chunks = (a->rows + 63) / 64;
  if (chunks > max_chunks) chunks = max_chunks;
  if (chunks < 1) chunks = 1;
  const int64_t rows_per_chunk = (a->rows + chunks - 1) / chunks;
  chunks = (a->rows + rows_per_chunk - 1) / rows_per_chunk;
  const T* x = static_cast<const T*>(a->x);
  const dim3 block(kColTileX, kColTileY);
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks));
  if (chunks == 1) {
    sum_rows_kernel<T><<<grid, block, 0, stream>>>(x, a->rows, a->cols, rows_per_chunk, a->out, 1);
    ATH_CUDA_CHECK_LAUNCH(op);
    return ATH_OK;
  }
  Scratch scratch = oc.arena();
  float* partial = scratch.take<float>(static_cast<size_t>(chunks) * static_cast<size_t>(a->cols));  // (chunks, cols)
  ATH_TRY(scratch.fits(op));
  sum_rows_kernel<T><<<grid, block, 0, stream>>>(x, a->rows, a->cols, rows_per_chunk, partial, 0);
  ATH_CUDA_CHECK_LAUNCH(op);
  return col_partials_finalize(op, partial, chunks, a->cols, a->cols, 1, a->out, stream);
}

ath_status validate(const char* op, const ath_reduce_args* a) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->op < ATH_RED_SUM || a->op > ATH_RED_SUM_ROWS)
    return ::ath::fail(ATH_ERR_INVALID, "%s: op %d must be 0 (SUM), 1 (SUM_SQUARES) or 2 (SUM_ROWS)", op, a->op);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, a->dtype,
                       dtype_name(a->dtype));
  if (a->n < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->op == ATH_RED_SUM_ROWS) {
    if (a->rows < 0 || a->cols < 1)
      return ::ath::fail(ATH_ERR_INVALID, "%s: SUM_ROWS needs rows=%lld >= 0 and cols=%lld >= 1", op,
                         (long long)a->rows, (long long)a->cols);
    if (a->rows > INT64_MAX / a->cols || a->rows * a->cols != a->n)
      return ::ath::fail(ATH_ERR_INVALID, "%s: SUM_ROWS needs n=%lld == rows=%lld x cols=%lld", op, (long long)a->n,
                         (long long)a->rows, (long long)a->cols);
  }
  if (a->out == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (a->n > 0 && a->x == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: x is null", op);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_reduce(const ath_reduce_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_reduce";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, a));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (a->op == ATH_RED_SUM_ROWS && a->n == 0) return ATH_OK;  // out += nothing
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  if (a->op == ATH_RED_SUM_ROWS) {
    ATH_DISPATCH_FLOAT(a->dtype, T, op, return ath::cuda::launch_sum_rows<T>(a, oc));
  } else {
    if (a->n == 0) {
      ATH_CUDA_CHECK(cudaMemsetAsync(a->out, 0, sizeof(float), oc.stream));
      return ATH_OK;
    }
    const bool squares = a->op == ATH_RED_SUM_SQUARES;
    ATH_DISPATCH_FLOAT(a->dtype, T, op, return ath::cuda::launch_sum<T>(a, oc, squares));
  }
  ATH_GUARD_END(op)
  return ATH_OK;
}

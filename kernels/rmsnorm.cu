// RMSNorm forward and backward (ath_cuda_rmsnorm_fwd / ath_cuda_rmsnorm_bwd).
//
// Layout: x, out, dout, dx (rows, cols) contiguous, dtype F32/BF16/F16; weight (cols) dtype (bias is
// ignored); rstd (rows) F32 (mean is neither written nor read); dweight (cols) F32, ACCUMULATED.
// All arithmetic in F32.
//   forward:  rstd = 1/sqrt(sum(x^2)/cols + eps), out = x * rstd * weight
//   backward: xhat = x * rstd, g = dout * weight,
//             dx = rstd * (g - xhat * mean(g * xhat))      (written)
//             dweight += sum_rows dout * xhat              (accumulated)
// Kernels: one block per row (grid-stride over rows), 16-byte vector loads when every pointer is
// 16-byte aligned and cols is a multiple of the vector width, else a scalar twin.
// Determinism: dweight is reduced without atomics. Each backward block keeps per-column partial
// sums for the rows it visits (rows blockIdx.x, + gridDim.x, ...) in shared memory (or, for very
// wide rows, in its own slice of the workspace), writes them to a cudaMallocAsync'd workspace
// (chunks, cols), and col_partials_finalize adds the chunks in a fixed order into dweight. The
// chunk count depends only on the shape and the device.
#include <cmath>

#include "col_reduce.cuh"
#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kMaxThreads = 256;

template <typename T, int V>
__global__ void rmsnorm_fwd_kernel(const T* __restrict__ x,       // (rows, cols)
                                   const T* __restrict__ weight,  // (cols)
                                   T* __restrict__ out,           // (rows, cols)
                                   float* __restrict__ rstd,      // (rows) or null
                                   int64_t rows, int64_t cols, float eps) {
  __shared__ float scratch[32];
  const int64_t nvec = cols / V;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V];
      load_vec<T, V>(xr + j * V, v);
#pragma unroll
      for (int k = 0; k < V; ++k) ss += v[k] * v[k];
    }
    const float ms = block_sum(ss, scratch) * inv_cols;
    const float rs = 1.0f / sqrtf(ms + eps);
    if (threadIdx.x == 0 && rstd != nullptr) rstd[r] = rs;
    T* orow = out + r * cols;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V], w[V], o[V];
      load_vec<T, V>(xr + j * V, v);
      load_vec<T, V>(weight + j * V, w);
#pragma unroll
      for (int k = 0; k < V; ++k) o[k] = v[k] * rs * w[k];
      store_vec<T, V>(orow + j * V, o);
    }
  }
}

// acc layout per chunk: (cols) dweight partials, "vector-transposed": element k of vector j at
// k * nvec + j (see col_reduce.cuh).
template <typename T, int V, bool kSmemAcc>
__global__ void rmsnorm_bwd_kernel(const T* __restrict__ x,         // (rows, cols)
                                   const T* __restrict__ weight,    // (cols)
                                   const T* __restrict__ dout,      // (rows, cols)
                                   const float* __restrict__ rstd,  // (rows)
                                   T* __restrict__ dx,              // (rows, cols)
                                   float* __restrict__ partial,     // (gridDim.x, cols)
                                   int64_t rows, int64_t cols) {
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  const int64_t nvec = cols / V;
  float* gpart = partial + static_cast<int64_t>(blockIdx.x) * cols;
  float* acc = kSmemAcc ? smem : gpart;
  // Every thread touches only its own accumulator slots (same j, k below): no barrier needed.
  for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k * nvec + j] = 0.f;
  }
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dout + r * cols;
    const float rs = rstd[r];
    float s2 = 0.f;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V], w[V], dy[V];
      load_vec<T, V>(xr + j * V, v);
      load_vec<T, V>(weight + j * V, w);
      load_vec<T, V>(dyr + j * V, dy);
#pragma unroll
      for (int k = 0; k < V; ++k) s2 += dy[k] * w[k] * (v[k] * rs);
    }
    const float c2 = block_sum(s2, scratch) * inv_cols;
    T* dxr = dx + r * cols;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V], w[V], dy[V], o[V];
      load_vec<T, V>(xr + j * V, v);
      load_vec<T, V>(weight + j * V, w);
      load_vec<T, V>(dyr + j * V, dy);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float xh = v[k] * rs;
        o[k] = rs * (dy[k] * w[k] - xh * c2);
        acc[k * nvec + j] += dy[k] * xh;
      }
      store_vec<T, V>(dxr + j * V, o);
    }
  }
  if (kSmemAcc) {
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
#pragma unroll
      for (int k = 0; k < V; ++k) gpart[k * nvec + j] = acc[k * nvec + j];
    }
  }
}

int threads_for(int64_t nvec) {
  int64_t t = (nvec + 31) / 32 * 32;
  if (t > kMaxThreads) t = kMaxThreads;
  if (t < 32) t = 32;
  return static_cast<int>(t);
}

ath_status validate(const char* op, const ath_norm_args* a, bool backward) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->rows < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: rows=%lld must be >= 0", op, (long long)a->rows);
  if (a->cols < 1) return ::ath::fail(ATH_ERR_INVALID, "%s: cols=%lld must be >= 1", op, (long long)a->cols);
  if (a->rows > INT64_MAX / a->cols)
    return ::ath::fail(ATH_ERR_INVALID, "%s: rows=%lld x cols=%lld overflows", op, (long long)a->rows,
                       (long long)a->cols);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, a->dtype,
                       dtype_name(a->dtype));
  if (!backward && !(a->eps >= 0.f && std::isfinite(a->eps)))
    return ::ath::fail(ATH_ERR_INVALID, "%s: eps=%g must be finite and >= 0", op, (double)a->eps);
  if (a->rows == 0) return ATH_OK;
  if (a->x == nullptr || a->weight == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: x (%p) and weight (%p) must not be null", op, a->x, a->weight);
  if (!backward) {
    if (a->out == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: out is null", op);
  } else {
    if (a->dout == nullptr || a->dx == nullptr || a->dweight == nullptr || a->rstd == nullptr)
      return ::ath::fail(ATH_ERR_INVALID, "%s: dout (%p), dx (%p), dweight (%p) and rstd (%p) must not be null", op,
                         a->dout, a->dx, static_cast<void*>(a->dweight), static_cast<void*>(a->rstd));
  }
  return ATH_OK;
}

template <typename T>
ath_status launch_fwd(const ath_norm_args* a, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = kVec16<T>;
  const bool vec = a->cols % V == 0 && is_aligned(a->x, 16) && is_aligned(a->weight, 16) && is_aligned(a->out, 16);
  const T* x = static_cast<const T*>(a->x);
  const T* w = static_cast<const T*>(a->weight);
  T* out = static_cast<T*>(a->out);
  const int threads = threads_for(vec ? a->cols / V : a->cols);
  const unsigned grid = grid_for(a->rows, 1, props.sm_count, 16 * (kMaxThreads / threads));
  if (vec) {
    rmsnorm_fwd_kernel<T, V><<<grid, threads, 0, stream>>>(x, w, out, a->rstd, a->rows, a->cols, a->eps);
  } else {
    rmsnorm_fwd_kernel<T, 1><<<grid, threads, 0, stream>>>(x, w, out, a->rstd, a->rows, a->cols, a->eps);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_rmsnorm_fwd");
  return ATH_OK;
}

template <typename T, int V>
ath_status launch_bwd_v(const ath_norm_args* a, cudaStream_t stream, const DeviceProps& props) {
  static const char* op = "ath_cuda_rmsnorm_bwd";
  const int64_t nvec = a->cols / V;
  const int threads = threads_for(nvec);
  const size_t acc_bytes = static_cast<size_t>(a->cols) * sizeof(float);
  const size_t smem_limit = props.max_smem_optin > 1024 ? static_cast<size_t>(props.max_smem_optin) - 1024 : 0;
  const bool use_smem = acc_bytes <= smem_limit;
  const size_t smem = use_smem ? acc_bytes : 0;
  auto kernel = use_smem ? rmsnorm_bwd_kernel<T, V, true> : rmsnorm_bwd_kernel<T, V, false>;
  if (smem > 48 * 1024)
    ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  int per_sm = 0;
  ATH_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  if (per_sm < 1) per_sm = 1;
  unsigned chunks = grid_for(a->rows, 1, props.sm_count, per_sm);
  // Very wide rows (accumulators in global memory): keep the workspace under ~256 MiB.
  const size_t max_chunks = (size_t{256} << 20) / acc_bytes;
  if (chunks > max_chunks) chunks = static_cast<unsigned>(max_chunks > 0 ? max_chunks : 1);
  StreamWorkspace ws;
  ATH_TRY(ws.alloc(op, static_cast<size_t>(chunks) * acc_bytes, stream));
  float* partial = ws.as<float>();
  kernel<<<chunks, threads, smem, stream>>>(static_cast<const T*>(a->x), static_cast<const T*>(a->weight),
                                            static_cast<const T*>(a->dout), a->rstd, static_cast<T*>(a->dx), partial,
                                            a->rows, a->cols);
  ATH_CUDA_CHECK_LAUNCH(op);
  ATH_TRY(col_partials_finalize(op, partial, chunks, a->cols, a->cols, V, a->dweight, stream));
  return ATH_OK;
}

template <typename T>
ath_status launch_bwd(const ath_norm_args* a, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = kVec16<T>;
  const bool vec = a->cols % V == 0 && is_aligned(a->x, 16) && is_aligned(a->weight, 16) &&
                   is_aligned(a->dout, 16) && is_aligned(a->dx, 16);
  return vec ? launch_bwd_v<T, V>(a, stream, props) : launch_bwd_v<T, 1>(a, stream, props);
}

}  // namespace
}  // namespace ath::cuda

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_rmsnorm_fwd, ath_norm_args, false, launch_fwd)

ATH_CUDA_ROW_OP_ENTRY(ath_cuda_rmsnorm_bwd, ath_norm_args, true, launch_bwd)

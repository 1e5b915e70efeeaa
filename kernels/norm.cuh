// LayerNorm and RMSNorm, forward and backward, written once (kLayer selects LayerNorm) and
// instantiated by layernorm.cu and rmsnorm.cu, which hold the C ABI entries.
//
// Layout: x, out, dout, dx (rows, cols) contiguous, dtype F32/BF16/F16; weight, bias (cols) dtype
// (RMSNorm ignores bias); mean, rstd (rows) F32 (RMSNorm neither writes nor reads mean);
// dweight, dbias (cols) F32, ACCUMULATED. All arithmetic in F32.
//   LayerNorm forward:  mean = sum(x)/cols, var = sum((x - mean)^2)/cols (two passes, biased),
//                       rstd = 1/sqrt(var + eps), out = (x - mean) * rstd * weight + bias
//   RMSNorm forward:    rstd = 1/sqrt(sum(x^2)/cols + eps), out = x * rstd * weight
//   LayerNorm backward: xhat = (x - mean) * rstd, g = dout * weight,
//                       dx = rstd * (g - mean(g) - xhat * mean(g * xhat))          (written)
//                       dweight += sum_rows dout * xhat, dbias += sum_rows dout    (accumulated)
//   RMSNorm backward:   xhat = x * rstd, g = dout * weight,
//                       dx = rstd * (g - xhat * mean(g * xhat))                   (written)
//                       dweight += sum_rows dout * xhat                           (accumulated)
// The two variants share the structure; where their arithmetic differs, each keeps its own
// expression (if constexpr), so each computes exactly what it computed as a separate kernel.
// Kernels: one block per row (grid-stride over rows), 16-byte vector loads when every pointer is
// 16-byte aligned and cols is a multiple of the vector width, else a scalar twin.
// Determinism: the parameter gradients are reduced without atomics. Each backward block keeps
// per-column partial sums for the rows it visits (rows blockIdx.x, + gridDim.x, ...) in shared
// memory (or, for very wide rows, directly in its own slice of the partials), writes them to the
// partials buffer (chunks, nacc, cols) in the context's scratch arena (nacc = 2 for LayerNorm with
// dbias: dweight then dbias partials, else 1), and col_partials_finalize adds the chunks in a fixed
// order into dweight/dbias. The chunk count depends only on the shape, the kernel and the device.
// Scratch: chunks * nacc * cols * 4 bytes (backward only), chunks = min(blocks that fill the device
// at the kernel's occupancy but not more than rows, floor(256 MiB / (nacc * cols * 4))).
#pragma once
#include <cmath>

#include "col_reduce.cuh"
#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda::norm {
namespace {

constexpr int kMaxThreads = 256;

template <typename T, int V, bool kLayer>
__global__ void norm_fwd_kernel(const T* __restrict__ x,       // (rows, cols)
                                const T* __restrict__ weight,  // (cols)
                                const T* __restrict__ bias,    // (cols) or null; LayerNorm only
                                T* __restrict__ out,           // (rows, cols)
                                float* __restrict__ mean,      // (rows) or null; LayerNorm only
                                float* __restrict__ rstd,      // (rows) or null
                                int64_t rows, int64_t cols, float eps) {
  __shared__ float scratch[32];
  const int64_t nvec = cols / V;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    float mu = 0.f;
    if constexpr (kLayer) {
      float s = 0.f;
      for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
        float v[V];
        load_vec<T, V>(xr + j * V, v);
#pragma unroll
        for (int k = 0; k < V; ++k) s += v[k];
      }
      mu = block_sum(s, scratch) * inv_cols;
    }
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V];
      load_vec<T, V>(xr + j * V, v);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if constexpr (kLayer) {
          const float d = v[k] - mu;
          ss += d * d;
        } else {
          ss += v[k] * v[k];
        }
      }
    }
    const float var = block_sum(ss, scratch) * inv_cols;  // RMSNorm: mean(x^2)
    const float rs = 1.0f / sqrtf(var + eps);
    if (threadIdx.x == 0) {
      if constexpr (kLayer) {
        if (mean != nullptr) mean[r] = mu;
      }
      if (rstd != nullptr) rstd[r] = rs;
    }
    T* orow = out + r * cols;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V], w[V], o[V];
      load_vec<T, V>(xr + j * V, v);
      load_vec<T, V>(weight + j * V, w);
      if constexpr (kLayer) {
        float b[V];
        if (bias != nullptr) {
          load_vec<T, V>(bias + j * V, b);
        } else {
#pragma unroll
          for (int k = 0; k < V; ++k) b[k] = 0.f;
        }
#pragma unroll
        for (int k = 0; k < V; ++k) o[k] = (v[k] - mu) * rs * w[k] + b[k];
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) o[k] = v[k] * rs * w[k];
      }
      store_vec<T, V>(orow + j * V, o);
    }
  }
}

// Partials of one chunk (block): nacc rows of cols floats, [0, cols) dweight then (LayerNorm with
// bias) [cols, 2 cols) dbias, each "vector-transposed": element k of vector j at k * nvec + j (see
// col_reduce.cuh).
template <typename T, int V, bool kSmemAcc, bool kLayer>
__global__ void norm_bwd_kernel(const T* __restrict__ x,         // (rows, cols)
                                const T* __restrict__ weight,    // (cols)
                                const T* __restrict__ dout,      // (rows, cols)
                                const float* __restrict__ mean,  // (rows); LayerNorm only
                                const float* __restrict__ rstd,  // (rows)
                                T* __restrict__ dx,              // (rows, cols)
                                float* __restrict__ partial,     // (gridDim.x, nacc * cols)
                                int64_t rows, int64_t cols,
                                int has_bias) {                  // LayerNorm only
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  const int64_t nvec = cols / V;
  const int nacc = kLayer && has_bias ? 2 : 1;
  float* gpart = partial + static_cast<int64_t>(blockIdx.x) * nacc * cols;
  float* acc_w = kSmemAcc ? smem : gpart;
  float* acc_b = acc_w + cols;  // LayerNorm with bias only
  // Every thread touches only its own accumulator slots (same j, k below): no barrier needed.
  for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
#pragma unroll
    for (int k = 0; k < V; ++k) {
      acc_w[k * nvec + j] = 0.f;
      if constexpr (kLayer) {
        if (has_bias) acc_b[k * nvec + j] = 0.f;
      }
    }
  }
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dout + r * cols;
    float mu = 0.f;
    if constexpr (kLayer) mu = mean[r];
    const float rs = rstd[r];
    float s1 = 0.f, s2 = 0.f;  // sum(g) (LayerNorm only), sum(g * xhat)
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V], w[V], dy[V];
      load_vec<T, V>(xr + j * V, v);
      load_vec<T, V>(weight + j * V, w);
      load_vec<T, V>(dyr + j * V, dy);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if constexpr (kLayer) {
          const float g = dy[k] * w[k];
          s1 += g;
          s2 += g * ((v[k] - mu) * rs);
        } else {
          s2 += dy[k] * w[k] * (v[k] * rs);
        }
      }
    }
    float c1 = 0.f;
    if constexpr (kLayer) c1 = block_sum(s1, scratch) * inv_cols;
    const float c2 = block_sum(s2, scratch) * inv_cols;
    T* dxr = dx + r * cols;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      float v[V], w[V], dy[V], o[V];
      load_vec<T, V>(xr + j * V, v);
      load_vec<T, V>(weight + j * V, w);
      load_vec<T, V>(dyr + j * V, dy);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        if constexpr (kLayer) {
          const float xh = (v[k] - mu) * rs;
          o[k] = rs * (dy[k] * w[k] - c1 - xh * c2);
          acc_w[k * nvec + j] += dy[k] * xh;
          if (has_bias) acc_b[k * nvec + j] += dy[k];
        } else {
          const float xh = v[k] * rs;
          o[k] = rs * (dy[k] * w[k] - xh * c2);
          acc_w[k * nvec + j] += dy[k] * xh;
        }
      }
      store_vec<T, V>(dxr + j * V, o);
    }
  }
  if (kSmemAcc) {
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        gpart[k * nvec + j] = acc_w[k * nvec + j];
        if constexpr (kLayer) {
          if (has_bias) gpart[cols + k * nvec + j] = acc_b[k * nvec + j];
        }
      }
    }
  }
}

inline int threads_for(int64_t nvec) {
  int64_t t = (nvec + 31) / 32 * 32;
  if (t > kMaxThreads) t = kMaxThreads;
  if (t < 32) t = 32;
  return static_cast<int>(t);
}

template <bool kLayer>
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
  } else if (a->dout == nullptr || a->dx == nullptr || a->dweight == nullptr || a->rstd == nullptr ||
             (kLayer && a->mean == nullptr)) {
    return ::ath::fail(ATH_ERR_INVALID, "%s: dout (%p), dx (%p), dweight (%p)%s and rstd (%p) must not be null", op,
                       a->dout, a->dx, static_cast<void*>(a->dweight), kLayer ? ", mean" : "",
                       static_cast<void*>(a->rstd));
  }
  return ATH_OK;
}

template <typename T, bool kLayer>
ath_status launch_fwd(const char* op, const ath_norm_args* a, const OpContext& oc) {
  constexpr int V = kVec16<T>;
  const T* bias = kLayer ? static_cast<const T*>(a->bias) : nullptr;
  float* mean = kLayer ? a->mean : nullptr;
  const bool vec = a->cols % V == 0 && is_aligned(a->x, 16) && is_aligned(a->weight, 16) && is_aligned(bias, 16) &&
                   is_aligned(a->out, 16);
  const T* x = static_cast<const T*>(a->x);
  const T* w = static_cast<const T*>(a->weight);
  T* out = static_cast<T*>(a->out);
  const int threads = threads_for(vec ? a->cols / V : a->cols);
  const unsigned grid = grid_for(a->rows, 1, oc.props.sm_count, 16 * (kMaxThreads / threads));
  if (vec) {
    norm_fwd_kernel<T, V, kLayer>
        <<<grid, threads, 0, oc.stream>>>(x, w, bias, out, mean, a->rstd, a->rows, a->cols, a->eps);
  } else {
    norm_fwd_kernel<T, 1, kLayer>
        <<<grid, threads, 0, oc.stream>>>(x, w, bias, out, mean, a->rstd, a->rows, a->cols, a->eps);
  }
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
}

template <typename T, int V, bool kLayer>
ath_status launch_bwd_v(const char* op, const ath_norm_args* a, const OpContext& oc) {
  const int has_bias = kLayer && a->dbias != nullptr;
  const int nacc = has_bias ? 2 : 1;
  const int64_t nvec = a->cols / V;
  const int threads = threads_for(nvec);
  const size_t acc_bytes = static_cast<size_t>(nacc) * static_cast<size_t>(a->cols) * sizeof(float);
  const size_t smem_limit =
      oc.props.max_smem_optin > 1024 ? static_cast<size_t>(oc.props.max_smem_optin) - 1024 : 0;
  const bool use_smem = acc_bytes <= smem_limit;
  const size_t smem = use_smem ? acc_bytes : 0;
  auto kernel = use_smem ? norm_bwd_kernel<T, V, true, kLayer> : norm_bwd_kernel<T, V, false, kLayer>;
  if (smem > 48 * 1024)
    ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  int per_sm = 0;
  ATH_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  if (per_sm < 1) per_sm = 1;
  unsigned chunks = grid_for(a->rows, 1, oc.props.sm_count, per_sm);
  // Very wide rows (accumulators in global memory): keep the partials under ~256 MiB.
  const size_t max_chunks = (size_t{256} << 20) / acc_bytes;
  if (chunks > max_chunks) chunks = static_cast<unsigned>(max_chunks > 0 ? max_chunks : 1);
  Scratch scratch = oc.arena();
  float* partial = scratch.take<float>(static_cast<size_t>(chunks) * acc_bytes / sizeof(float));  // (chunks, nacc, cols)
  ATH_TRY(scratch.fits(op));
  kernel<<<chunks, threads, smem, oc.stream>>>(static_cast<const T*>(a->x), static_cast<const T*>(a->weight),
                                               static_cast<const T*>(a->dout), kLayer ? a->mean : nullptr, a->rstd,
                                               static_cast<T*>(a->dx), partial, a->rows, a->cols, has_bias);
  ATH_CUDA_CHECK_LAUNCH(op);
  const int64_t ld = static_cast<int64_t>(nacc) * a->cols;
  ATH_TRY(col_partials_finalize(op, partial, chunks, ld, a->cols, V, a->dweight, oc.stream));
  if (has_bias) ATH_TRY(col_partials_finalize(op, partial + a->cols, chunks, ld, a->cols, V, a->dbias, oc.stream));
  return ATH_OK;
}

template <typename T, bool kLayer>
ath_status launch_bwd(const char* op, const ath_norm_args* a, const OpContext& oc) {
  constexpr int V = kVec16<T>;
  const bool vec = a->cols % V == 0 && is_aligned(a->x, 16) && is_aligned(a->weight, 16) &&
                   is_aligned(a->dout, 16) && is_aligned(a->dx, 16);
  return vec ? launch_bwd_v<T, V, kLayer>(op, a, oc) : launch_bwd_v<T, 1, kLayer>(op, a, oc);
}

}  // namespace
}  // namespace ath::cuda::norm

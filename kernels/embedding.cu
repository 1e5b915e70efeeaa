// Embedding lookup, forward and backward (ath_cuda_embedding_fwd / ath_cuda_embedding_bwd).
//
// Layout: ids (n) I32; table (vocab, dim) dtype F32/BF16/F16; out, dout (n, dim) dtype;
// dtable (vocab, dim) F32, ACCUMULATED.
//   forward:  out[i, :] = table[ids[i], :]; a bad id (outside [0, vocab)) writes a zero row (the
//             CUDA op cannot report it synchronously; the CPU op returns ATH_ERR_INVALID).
//   backward: dtable[v, :] += S_v, S_v = sum over i with ids[i] == v of dout[i, :] formed in
//             increasing i, then added once (athanor.h): with a tied output head's gradient H
//             already in dtable a row ends as H + (g_1 + g_2 + ...). Bad ids are skipped.
// Backward, per window of `rows` vocab rows [v0, v0 + rows) (at most kWindowBytes of F32, taken
// from the context's scratch arena; one window when the table is small):
//   1. acc (rows, dim) F32 = 0 (cudaMemsetAsync);
//   2. embedding_bwd_kernel adds the dout rows of the window's ids into acc, in increasing i. It is
//      deterministic and uses no atomics and no sort: block (g, c) of the grid owns the window rows
//      r with r % groups == g and the column chunk c (blockDim.x * V columns). It scans all ids in
//      tiles of blockDim.x, compacts the positions it owns in increasing order (warp ballots and a
//      block prefix), and then adds those dout rows into its acc rows one position at a time. Each
//      acc element is written by exactly one thread, in increasing i, so acc[r] = ((0 + g_1) + g_2)
//      + ..., the same bits for every grid shape. Every block reads all n ids (from L2); dout is
//      read once; a very frequent id serializes onto one block;
//   3. add_window_kernel: dtable[v0 + r, :] += acc[r, :] (rows of absent ids get +0.0 added).
#include "context.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kMaxThreads = 256;

template <typename T, int V>
__global__ void embedding_fwd_kernel(const int32_t* __restrict__ ids,  // (n)
                                     const T* __restrict__ table,      // (vocab, dim)
                                     T* __restrict__ out,              // (n, dim)
                                     int64_t n, int64_t vocab, int64_t dim) {
  const int64_t nvec = dim / V;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const int32_t id = ids[i];
    T* orow = out + i * dim;
    if (id < 0 || id >= vocab) {
      const float z[V] = {};
      for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) store_vec<T, V>(orow + j * V, z);
      continue;
    }
    const T* trow = table + static_cast<int64_t>(id) * dim;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      *reinterpret_cast<Pack<T, V>*>(orow + j * V) = *reinterpret_cast<const Pack<T, V>*>(trow + j * V);
    }
  }
}

// V floats of dtable (16-byte accesses when V is a multiple of 4; p is then 16-byte aligned).
template <int V>
__device__ __forceinline__ void load_f32v(const float* p, float (&v)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q) {
      const float4 t = reinterpret_cast<const float4*>(p)[q];
      v[4 * q + 0] = t.x;
      v[4 * q + 1] = t.y;
      v[4 * q + 2] = t.z;
      v[4 * q + 3] = t.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = p[k];
  }
}

template <int V>
__device__ __forceinline__ void store_f32v(float* p, const float (&v)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q)
      reinterpret_cast<float4*>(p)[q] = make_float4(v[4 * q + 0], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = v[k];
  }
}

// p[0 .. V) += v, in place.
template <int V>
__device__ __forceinline__ void add_f32(float* p, const float (&v)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q) {
      float4 t = reinterpret_cast<float4*>(p)[q];
      t.x += v[4 * q + 0];
      t.y += v[4 * q + 1];
      t.z += v[4 * q + 2];
      t.w += v[4 * q + 3];
      reinterpret_cast<float4*>(p)[q] = t;
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] += v[k];
  }
}

template <typename T, int V>
__global__ void embedding_bwd_kernel(const int32_t* __restrict__ ids,  // (n)
                                     const T* __restrict__ dout,       // (n, dim)
                                     float* __restrict__ acc,          // (rows, dim) +=, row r = vocab row v0 + r
                                     int64_t n, int64_t v0, int64_t rows, int64_t dim, int groups) {
  __shared__ int64_t s_pos[kMaxThreads];
  __shared__ int32_t s_id[kMaxThreads];
  __shared__ int s_warp[kMaxThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int g = static_cast<int>(blockIdx.x);
  const int64_t col = (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  const bool active = col < dim;
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const int64_t v = i < n ? ids[i] : -1;
    const int32_t id = static_cast<int32_t>(v - v0);  // the window row (valid when mine)
    const bool mine = v >= v0 && v < v0 + rows && id % groups == g;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) s_warp[warp] = __popc(ballot);
    __syncthreads();
    int offset = 0, total = 0;
    for (int w = 0; w < nwarps; ++w) {
      const int c = s_warp[w];
      offset += w < warp ? c : 0;
      total += c;
    }
    if (mine) {
      const int slot = offset + __popc(ballot & ((1u << lane) - 1u));
      s_pos[slot] = i;
      s_id[slot] = id;
    }
    __syncthreads();
    if (active) {
      int k = 0;
      // Batches of 4 positions with 4 distinct ids: their acc loads may all be in flight at once.
      // (A repeated id inside a batch falls back to one position at a time, keeping increasing i.)
      for (; k + 4 <= total; k += 4) {
        const int32_t i0 = s_id[k], i1 = s_id[k + 1], i2 = s_id[k + 2], i3 = s_id[k + 3];
        if (i0 != i1 && i0 != i2 && i0 != i3 && i1 != i2 && i1 != i3 && i2 != i3) {
          float v0[V], v1[V], v2[V], v3[V];
          load_vec<T, V>(dout + s_pos[k] * dim + col, v0);
          load_vec<T, V>(dout + s_pos[k + 1] * dim + col, v1);
          load_vec<T, V>(dout + s_pos[k + 2] * dim + col, v2);
          load_vec<T, V>(dout + s_pos[k + 3] * dim + col, v3);
          float* d0 = acc + static_cast<int64_t>(i0) * dim + col;
          float* d1 = acc + static_cast<int64_t>(i1) * dim + col;
          float* d2 = acc + static_cast<int64_t>(i2) * dim + col;
          float* d3 = acc + static_cast<int64_t>(i3) * dim + col;
          float t0[V], t1[V], t2[V], t3[V];
          load_f32v<V>(d0, t0);
          load_f32v<V>(d1, t1);
          load_f32v<V>(d2, t2);
          load_f32v<V>(d3, t3);
#pragma unroll
          for (int q = 0; q < V; ++q) {
            t0[q] += v0[q];
            t1[q] += v1[q];
            t2[q] += v2[q];
            t3[q] += v3[q];
          }
          store_f32v<V>(d0, t0);
          store_f32v<V>(d1, t1);
          store_f32v<V>(d2, t2);
          store_f32v<V>(d3, t3);
        } else {
          for (int kk = k; kk < k + 4; ++kk) {
            float v[V];
            load_vec<T, V>(dout + s_pos[kk] * dim + col, v);
            add_f32<V>(acc + static_cast<int64_t>(s_id[kk]) * dim + col, v);
          }
        }
      }
      for (; k < total; ++k) {
        float v[V];
        load_vec<T, V>(dout + s_pos[k] * dim + col, v);
        add_f32<V>(acc + static_cast<int64_t>(s_id[k]) * dim + col, v);
      }
    }
    __syncthreads();  // s_pos/s_id/s_warp are rewritten by the next tile
  }
}

// dtable[v0 + r, c] += acc[r, c] for r < rows, c < dim: (rows, dim) elements, both row-major with row
// stride dim; a grid-stride loop, 4 floats at a time when dim % 4 == 0 and both are 16-byte aligned.
template <int V>
__global__ void add_window_kernel(const float* __restrict__ acc,  // (rows, dim)
                                  float* __restrict__ dtable,      // (vocab, dim), from row v0
                                  int64_t count) {                 // rows * dim
  const int64_t nvec = count / V;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < nvec;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float a[V];
    load_f32v<V>(acc + j * V, a);
    add_f32<V>(dtable + j * V, a);
  }
}

int threads_for(int64_t nvec) {
  int64_t t = (nvec + 31) / 32 * 32;
  if (t > kMaxThreads) t = kMaxThreads;
  if (t < 32) t = 32;
  return static_cast<int>(t);
}

ath_status validate(const char* op, const ath_embedding_args* a, bool backward) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->n < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)a->n);
  if (a->vocab < 1 || a->vocab > INT32_MAX)
    return ::ath::fail(ATH_ERR_INVALID, "%s: vocab=%lld must be in [1, %d]", op, (long long)a->vocab, INT32_MAX);
  if (a->dim < 1) return ::ath::fail(ATH_ERR_INVALID, "%s: dim=%lld must be >= 1", op, (long long)a->dim);
  const int64_t big = a->n > a->vocab ? a->n : a->vocab;
  if (big > INT64_MAX / a->dim)
    return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld / vocab=%lld x dim=%lld overflows", op, (long long)a->n,
                       (long long)a->vocab, (long long)a->dim);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, a->dtype,
                       dtype_name(a->dtype));
  if (a->n == 0) return ATH_OK;
  if (a->ids == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: ids is null", op);
  if (!backward) {
    if (a->table == nullptr || a->out == nullptr)
      return ::ath::fail(ATH_ERR_INVALID, "%s: table (%p) and out (%p) must not be null", op, a->table, a->out);
  } else {
    if (a->dout == nullptr || a->dtable == nullptr)
      return ::ath::fail(ATH_ERR_INVALID, "%s: dout (%p) and dtable (%p) must not be null", op, a->dout,
                         static_cast<void*>(a->dtable));
  }
  return ATH_OK;
}

template <typename T>
ath_status launch_fwd(const ath_embedding_args* a, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = kVec16<T>;
  const bool vec = a->dim % V == 0 && is_aligned(a->table, 16) && is_aligned(a->out, 16);
  const T* table = static_cast<const T*>(a->table);
  T* out = static_cast<T*>(a->out);
  const int threads = threads_for(vec ? a->dim / V : a->dim);
  const unsigned grid = grid_for(a->n, 1, props.sm_count, 8 * (kMaxThreads / threads));
  if (vec) {
    embedding_fwd_kernel<T, V><<<grid, threads, 0, stream>>>(a->ids, table, out, a->n, a->vocab, a->dim);
  } else {
    embedding_fwd_kernel<T, 1><<<grid, threads, 0, stream>>>(a->ids, table, out, a->n, a->vocab, a->dim);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_embedding_fwd");
  return ATH_OK;
}

// Bytes of the backward's F32 window (taken from the context's scratch arena).
constexpr int64_t kWindowBytes = 64LL << 20;

// Vocab rows per backward window: the whole table when it fits in kWindowBytes, else as many rows as
// fit (at least one).
int64_t window_rows(int64_t vocab, int64_t dim) {
  int64_t r = kWindowBytes / (dim * 4);
  if (r < 1) r = 1;
  return r < vocab ? r : vocab;
}

template <typename T, int V>
ath_status launch_bwd_v(const ath_embedding_args* a, const OpContext& oc, float* acc, int64_t rows) {
  static const char* op = "ath_cuda_embedding_bwd";
  const int64_t nvec = a->dim / V;
  const int threads = threads_for(nvec);
  const int64_t chunks = (nvec + threads - 1) / threads;
  if (chunks > 65535)
    return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: dim=%lld too large (at most %lld)", op, (long long)a->dim,
                       65535LL * threads * V);
  const int64_t target = static_cast<int64_t>(oc.props.sm_count > 0 ? oc.props.sm_count : 1) * 8;
  const T* dout = static_cast<const T*>(a->dout);
  for (int64_t v0 = 0; v0 < a->vocab; v0 += rows) {
    const int64_t r = rows < a->vocab - v0 ? rows : a->vocab - v0;
    const int64_t count = r * a->dim;
    ATH_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<size_t>(count) * sizeof(float), oc.stream));
    // Enough blocks to fill the device; never more row groups than window rows or positions.
    int64_t groups = (target + chunks - 1) / chunks;
    if (groups > r) groups = r;
    if (groups > a->n) groups = a->n;
    if (groups < 1) groups = 1;
    const dim3 grid(static_cast<unsigned>(groups), static_cast<unsigned>(chunks));
    embedding_bwd_kernel<T, V><<<grid, threads, 0, oc.stream>>>(a->ids, dout, acc, a->n, v0, r, a->dim,
                                                                static_cast<int>(groups));
    ATH_CUDA_CHECK_LAUNCH(op);
    float* drows = a->dtable + v0 * a->dim;  // (r, dim)
    if (count % 4 == 0 && is_aligned(drows, 16)) {
      add_window_kernel<4><<<grid_for(count / 4, 256, oc.props.sm_count), 256, 0, oc.stream>>>(acc, drows, count);
    } else {
      add_window_kernel<1><<<grid_for(count, 256, oc.props.sm_count), 256, 0, oc.stream>>>(acc, drows, count);
    }
    ATH_CUDA_CHECK_LAUNCH(op);
  }
  return ATH_OK;
}

template <typename T>
ath_status launch_bwd(const ath_embedding_args* a, const OpContext& oc, float* acc, int64_t rows) {
  constexpr int V = kVec16<T>;
  // acc comes from the scratch arena (256-byte aligned), so only dout decides the vector path
  const bool vec = a->dim % V == 0 && is_aligned(a->dout, 16);
  return vec ? launch_bwd_v<T, V>(a, oc, acc, rows) : launch_bwd_v<T, 1>(a, oc, acc, rows);
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_embedding_fwd(const ath_embedding_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_embedding_fwd";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, a, false));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (a->n == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  ATH_DISPATCH_FLOAT(a->dtype, T, op, return ath::cuda::launch_fwd<T>(a, oc.stream, oc.props));
  ATH_GUARD_END(op)
  return ATH_OK;
}

extern "C" ath_status ath_cuda_embedding_bwd(const ath_embedding_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_embedding_bwd";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, a, true));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (a->n == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  const int64_t rows = ath::cuda::window_rows(a->vocab, a->dim);
  ath::cuda::Scratch scratch = oc.arena();
  float* acc = scratch.take<float>(static_cast<size_t>(rows * a->dim));  // (rows, dim) F32
  ATH_TRY(scratch.fits(op));
  ATH_DISPATCH_FLOAT(a->dtype, T, op, return ath::cuda::launch_bwd<T>(a, oc, acc, rows));
  ATH_GUARD_END(op)
  return ATH_OK;
}

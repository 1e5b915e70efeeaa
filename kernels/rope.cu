// Rotary position embedding (ath_cuda_rope), forward and backward (inverse != 0).
//
// Layout: x, out (B, T, H, D) addressed by element strides x_sb, x_st, x_sh (last dim contiguous);
// out uses the same strides and may alias x. dtype F32/BF16/F16, arithmetic in F32.
// For each (b, t, h) and i < D/2, with half = D/2 ("rotate_half", Hugging Face Llama):
//   inv_freq_i = powf(theta, -2.0f * i / D)          (exponent in float, exactly this expression;
//                                                     powf correctly rounded: computed in double here)
//   angle      = (float)(pos0 + t) * inv_freq_i      (F32 product; negated when inverse != 0)
//   cos, sin   = of that F32 angle, evaluated in double and rounded to F32 once
//   out[i]        = x[i] * cos(angle) - x[i + half] * sin(angle)
//   out[i + half] = x[i + half] * cos(angle) + x[i] * sin(angle)
// Kernel: one block per (b, t) row (grid-stride); the block first tabulates cos/sin for its
// position in shared memory (D/2 pairs), then rotates all H heads. Each pair is read and written
// by one thread, so out == x is safe. 16-byte vectors when half and the three strides are
// multiples of the vector width and both pointers are 16-byte aligned.
#include <cmath>
#include <utility>

#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kThreads = 256;

// No __restrict__ on x/out: they may alias.
template <typename T, int V>
__global__ void rope_kernel(const T* x, T* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                            int64_t sb, int64_t st, int64_t sh, int64_t pos0, float theta, int inverse) {
  extern __shared__ float tab[];  // cos (half), sin (half)
  const int64_t half = head_dim / 2;
  float* cs = tab;
  float* sn = tab + half;
  const int64_t hv = half / V;  // vectors per half row
  const float sign = inverse ? -1.0f : 1.0f;
  for (int64_t bt = blockIdx.x; bt < batch * seq; bt += gridDim.x) {
    const int64_t b = bt / seq, t = bt % seq;
    const float pos = static_cast<float>(pos0 + t);
    __syncthreads();  // the previous row's readers of the table are done
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
      // powf(theta, e) correctly rounded (as a host libm gives it): evaluated in double, rounded once.
      const float e = -2.0f * static_cast<float>(i) / static_cast<float>(head_dim);
      const float inv_freq = static_cast<float>(pow(static_cast<double>(theta), static_cast<double>(e)));
      // cos/sin of the F32 angle evaluated in double and rounded once (as the CPU twin does).
      double s, c;
      sincos(static_cast<double>(pos * inv_freq), &s, &c);
      cs[i] = static_cast<float>(c);
      sn[i] = sign * static_cast<float>(s);
    }
    __syncthreads();
    const int64_t base = b * sb + t * st;
    const int nhv = static_cast<int>(heads * hv), hv32 = static_cast<int>(hv);  // < 2^31 (validated)
    for (int p = threadIdx.x; p < nhv; p += blockDim.x) {
      const int64_t h = p / hv32, i0 = static_cast<int64_t>(p % hv32) * V;
      const int64_t off = base + h * sh + i0;
      float lo[V], hi[V], o1[V], o2[V];
      load_vec<T, V>(x + off, lo);
      load_vec<T, V>(x + off + half, hi);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float c = cs[i0 + k], s = sn[i0 + k];
        o1[k] = lo[k] * c - hi[k] * s;
        o2[k] = hi[k] * c + lo[k] * s;
      }
      store_vec<T, V>(out + off, o1);
      store_vec<T, V>(out + off + half, o2);
    }
  }
}

// True when the (n0, n1, n2) rows of d contiguous elements at strides s0, s1, s2 never overlap
// (sort the dimensions by stride; each stride must clear the span of the smaller ones).
bool rows_disjoint(int64_t d, int64_t n0, int64_t s0, int64_t n1, int64_t s1, int64_t n2, int64_t s2) {
  int64_t st[3] = {s0, s1, s2}, ext[3] = {n0, n1, n2};
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      if (st[j] < st[i]) {
        std::swap(st[i], st[j]);
        std::swap(ext[i], ext[j]);
      }
  int64_t span = d;
  for (int i = 0; i < 3; ++i) {
    if (ext[i] <= 1) continue;
    if (st[i] < span) return false;
    span = st[i] * (ext[i] - 1) + span;
  }
  return true;
}

ath_status validate(const char* op, const ath_rope_args* a) {
  if (a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (a->batch < 0 || a->seq < 0)
    return ::ath::fail(ATH_ERR_INVALID, "%s: batch=%lld and seq=%lld must be >= 0", op, (long long)a->batch,
                       (long long)a->seq);
  if (a->heads < 1) return ::ath::fail(ATH_ERR_INVALID, "%s: heads=%lld must be >= 1", op, (long long)a->heads);
  if (a->head_dim < 2 || a->head_dim % 2 != 0)
    return ::ath::fail(ATH_ERR_INVALID, "%s: head_dim=%lld must be even and >= 2", op, (long long)a->head_dim);
  if (a->dtype != ATH_F32 && a->dtype != ATH_BF16 && a->dtype != ATH_F16)
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, a->dtype,
                       dtype_name(a->dtype));
  if (!(a->theta > 0.f) || !std::isfinite(a->theta))
    return ::ath::fail(ATH_ERR_INVALID, "%s: theta=%g must be finite and > 0", op, (double)a->theta);
  if (a->x_sb < 0 || a->x_st < 0 || a->x_sh < 0)
    return ::ath::fail(ATH_ERR_INVALID, "%s: strides x_sb=%lld, x_st=%lld, x_sh=%lld must be >= 0", op,
                       (long long)a->x_sb, (long long)a->x_st, (long long)a->x_sh);
  if (!rows_disjoint(a->head_dim, a->batch, a->x_sb, a->seq, a->x_st, a->heads, a->x_sh))
    return ::ath::fail(ATH_ERR_INVALID,
                       "%s: strides x_sb=%lld, x_st=%lld, x_sh=%lld make rows of head_dim=%lld overlap (out is written "
                       "with them)",
                       op, (long long)a->x_sb, (long long)a->x_st, (long long)a->x_sh, (long long)a->head_dim);
  if (a->batch == 0 || a->seq == 0) return ATH_OK;
  if (a->heads > INT32_MAX / a->head_dim)
    return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: heads=%lld x head_dim=%lld exceeds 2^31 elements per position", op,
                       (long long)a->heads, (long long)a->head_dim);
  if (a->batch > INT64_MAX / a->seq)
    return ::ath::fail(ATH_ERR_INVALID, "%s: batch=%lld x seq=%lld overflows", op, (long long)a->batch,
                       (long long)a->seq);
  if (a->x == nullptr || a->out == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: x (%p) and out (%p) must not be null", op, a->x, a->out);
  return ATH_OK;
}

template <typename T>
ath_status launch(const ath_rope_args* a, cudaStream_t stream, const DeviceProps& props) {
  static const char* op = "ath_cuda_rope";
  constexpr int V = kVec16<T>;
  const int64_t half = a->head_dim / 2;
  const bool vec = half % V == 0 && a->x_sb % V == 0 && a->x_st % V == 0 && a->x_sh % V == 0 &&
                   is_aligned(a->x, 16) && is_aligned(a->out, 16);
  const size_t smem = static_cast<size_t>(a->head_dim) * sizeof(float);
  if (smem > static_cast<size_t>(props.max_smem_optin))
    return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: head_dim=%lld too large (table of %zu bytes)", op,
                       (long long)a->head_dim, smem);
  auto kernel = vec ? rope_kernel<T, V> : rope_kernel<T, 1>;
  if (smem > 48 * 1024)
    ATH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const unsigned grid = grid_for(a->batch * a->seq, 1, props.sm_count, 8);
  kernel<<<grid, kThreads, smem, stream>>>(static_cast<const T*>(a->x), static_cast<T*>(a->out), a->batch, a->seq,
                                           a->heads, a->head_dim, a->x_sb, a->x_st, a->x_sh, a->pos0, a->theta,
                                           a->inverse != 0);
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_rope(const ath_rope_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_rope";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, a));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (a->batch == 0 || a->seq == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  ATH_DISPATCH_FLOAT(a->dtype, T, op, return ath::cuda::launch<T>(a, oc.stream, oc.props));
  ATH_GUARD_END(op)
  return ATH_OK;
}

// Elementwise ops over n contiguous elements (ath_cuda_elementwise).
//
//   ADD:   out = a + b          MUL:  out = a * b
//   SCALE: out = alpha * a      AXPY: out = out + alpha * a
//   FILL:  out = alpha          CONVERT: out (dtype_out) = a (dtype), round-to-nearest-even
// dtype F32/BF16/F16; all but CONVERT use `dtype` for every operand (dtype_out is then ignored).
// CONVERT: any of F32/BF16/F16 to any of them, plus (as the CPU twin) I32 -> F32 (nearest even),
// F32 -> I32 (nearest even, saturated, NaN -> 0) and I32 -> I32 (copy); other I32 pairs are
// ATH_ERR_UNSUPPORTED. Arithmetic in F32, each product and sum rounded separately (no FMA
// contraction), so F32 results equal a plain scalar loop's. out may alias a or b exactly (same
// pointer; for CONVERT only between dtypes of one size); other overlaps are ATH_ERR_INVALID for
// CONVERT and unsupported otherwise.
// Kernel: grid-stride loop with 64-bit indices; 16-byte vectors (by the wider of the two dtypes
// for CONVERT) when every pointer is aligned to its vector size, the n % V tail in scalar code.
#include <type_traits>

#include "common.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr int kThreads = 256;

template <typename TA, typename TO, int OP, int V>
__device__ __forceinline__ void ew_apply(int64_t i, const TA* a, const TA* b, TO* out, float alpha) {
  float va[V], vb[V], vo[V];
  if (OP != ATH_EW_FILL) load_vec<TA, V>(a + i, va);
  if (OP == ATH_EW_ADD || OP == ATH_EW_MUL) load_vec<TA, V>(b + i, vb);
  if (OP == ATH_EW_AXPY) load_vec<TO, V>(out + i, vo);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    if (OP == ATH_EW_ADD) vo[k] = __fadd_rn(va[k], vb[k]);
    else if (OP == ATH_EW_MUL) vo[k] = __fmul_rn(va[k], vb[k]);
    else if (OP == ATH_EW_SCALE) vo[k] = __fmul_rn(alpha, va[k]);
    else if (OP == ATH_EW_AXPY) vo[k] = __fadd_rn(vo[k], __fmul_rn(alpha, va[k]));
    else if (OP == ATH_EW_FILL) vo[k] = alpha;
    else vo[k] = va[k];  // CONVERT
  }
  store_vec<TO, V>(out + i, vo);
}

// No __restrict__: out may alias a or b.
template <typename TA, typename TO, int OP, int V>
__global__ void ew_kernel(int64_t n, const TA* a, const TA* b, TO* out, float alpha) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t j = tid; j < nv; j += stride) ew_apply<TA, TO, OP, V>(j * V, a, b, out, alpha);
  if (V > 1) {
    for (int64_t i = nv * V + tid; i < n; i += stride) ew_apply<TA, TO, OP, 1>(i, a, b, out, alpha);
  }
}

template <typename TA, typename TO, int OP>
ath_status launch(const ath_elementwise_args* e, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = static_cast<int>(16 / (sizeof(TA) > sizeof(TO) ? sizeof(TA) : sizeof(TO)));
  const bool vec = is_aligned(e->a, V * sizeof(TA)) && is_aligned(e->b, V * sizeof(TA)) &&
                   is_aligned(e->out, V * sizeof(TO));
  const TA* a = static_cast<const TA*>(e->a);
  const TA* b = static_cast<const TA*>(e->b);
  TO* out = static_cast<TO*>(e->out);
  if (vec) {
    const unsigned grid = grid_for(e->n / V + 1, kThreads, props.sm_count, 8);
    ew_kernel<TA, TO, OP, V><<<grid, kThreads, 0, stream>>>(e->n, a, b, out, e->alpha);
  } else {
    const unsigned grid = grid_for(e->n, kThreads, props.sm_count, 8);
    ew_kernel<TA, TO, OP, 1><<<grid, kThreads, 0, stream>>>(e->n, a, b, out, e->alpha);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_elementwise");
  return ATH_OK;
}

// CONVERT with I32 on either side (I32 -> F32, F32 -> I32, I32 -> I32).
template <typename TA, typename TO>
__device__ __forceinline__ TO convert_int(TA v) {
  if constexpr (std::is_same<TA, TO>::value) return v;
  else if constexpr (std::is_same<TO, float>::value) return __int2float_rn(v);
  else return v != v ? 0 : __float2int_rn(v);  // nearest even, saturated (cvt.rni clamps); NaN -> 0
}

template <typename TA, typename TO, int V>
__global__ void convert_int_kernel(int64_t n, const TA* a, TO* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t j = tid; j < nv; j += stride) {
    const Pack<TA, V> in = *reinterpret_cast<const Pack<TA, V>*>(a + j * V);
    Pack<TO, V> o;
#pragma unroll
    for (int k = 0; k < V; ++k) o.v[k] = convert_int<TA, TO>(in.v[k]);
    *reinterpret_cast<Pack<TO, V>*>(out + j * V) = o;
  }
  if (V > 1) {
    for (int64_t i = nv * V + tid; i < n; i += stride) out[i] = convert_int<TA, TO>(a[i]);
  }
}

template <typename TA, typename TO>
ath_status launch_convert_int(const ath_elementwise_args* e, cudaStream_t stream, const DeviceProps& props) {
  constexpr int V = 4;
  const TA* a = static_cast<const TA*>(e->a);
  TO* out = static_cast<TO*>(e->out);
  if (is_aligned(a, 16) && is_aligned(out, 16)) {
    const unsigned grid = grid_for(e->n / V + 1, kThreads, props.sm_count, 8);
    convert_int_kernel<TA, TO, V><<<grid, kThreads, 0, stream>>>(e->n, a, out);
  } else {
    const unsigned grid = grid_for(e->n, kThreads, props.sm_count, 8);
    convert_int_kernel<TA, TO, 1><<<grid, kThreads, 0, stream>>>(e->n, a, out);
  }
  ATH_CUDA_CHECK_LAUNCH("ath_cuda_elementwise");
  return ATH_OK;
}

template <typename T>
ath_status launch_same(const ath_elementwise_args* e, cudaStream_t stream, const DeviceProps& props) {
  switch (e->op) {
    case ATH_EW_ADD: return launch<T, T, ATH_EW_ADD>(e, stream, props);
    case ATH_EW_MUL: return launch<T, T, ATH_EW_MUL>(e, stream, props);
    case ATH_EW_SCALE: return launch<T, T, ATH_EW_SCALE>(e, stream, props);
    case ATH_EW_AXPY: return launch<T, T, ATH_EW_AXPY>(e, stream, props);
    default: return launch<T, T, ATH_EW_FILL>(e, stream, props);
  }
}

template <typename TA>
ath_status launch_convert(const ath_elementwise_args* e, cudaStream_t stream, const DeviceProps& props) {
  ATH_DISPATCH_FLOAT(e->dtype_out, TO, "ath_cuda_elementwise",
                     return launch<TA, TO, ATH_EW_CONVERT>(e, stream, props));
  return ATH_OK;
}

bool is_float(int d) { return d == ATH_F32 || d == ATH_BF16 || d == ATH_F16; }
bool is_convert_dtype(int d) { return is_float(d) || d == ATH_I32; }

ath_status validate(const char* op, const ath_elementwise_args* e) {
  if (e == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: args is null", op);
  if (e->n < 0) return ::ath::fail(ATH_ERR_INVALID, "%s: n=%lld must be >= 0", op, (long long)e->n);
  if (e->op < ATH_EW_ADD || e->op > ATH_EW_CONVERT)
    return ::ath::fail(ATH_ERR_INVALID, "%s: op %d must be in [0, 5] (ADD, MUL, SCALE, AXPY, FILL, CONVERT)", op,
                       e->op);
  if (e->op == ATH_EW_CONVERT) {
    if (!is_convert_dtype(e->dtype) || !is_convert_dtype(e->dtype_out))
      return ::ath::fail(ATH_ERR_INVALID, "%s: CONVERT dtype %d (%s) and dtype_out %d (%s) must be F32, BF16, F16 or I32",
                         op, e->dtype, dtype_name(e->dtype), e->dtype_out, dtype_name(e->dtype_out));
    const bool i_in = e->dtype == ATH_I32, i_out = e->dtype_out == ATH_I32;
    if (i_in != i_out && e->dtype != ATH_F32 && e->dtype_out != ATH_F32)
      return ::ath::fail(ATH_ERR_UNSUPPORTED, "%s: CONVERT %s -> %s is not supported (I32 converts only to and from F32)",
                         op, dtype_name(e->dtype), dtype_name(e->dtype_out));
  } else if (!is_float(e->dtype)) {
    return ::ath::fail(ATH_ERR_INVALID, "%s: dtype %d (%s) must be F32, BF16 or F16", op, e->dtype,
                       dtype_name(e->dtype));
  }
  if (e->n == 0) return ATH_OK;
  if (e->out == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: out is null", op);
  if (e->op != ATH_EW_FILL && e->a == nullptr) return ::ath::fail(ATH_ERR_INVALID, "%s: a is null (op %d)", op, e->op);
  if ((e->op == ATH_EW_ADD || e->op == ATH_EW_MUL) && e->b == nullptr)
    return ::ath::fail(ATH_ERR_INVALID, "%s: b is null (op %d)", op, e->op);
  if (e->op == ATH_EW_CONVERT) {
    const size_t in_bytes = static_cast<size_t>(e->n) * ath_dtype_size(e->dtype);
    const size_t out_bytes = static_cast<size_t>(e->n) * ath_dtype_size(e->dtype_out);
    const char* ia = static_cast<const char*>(e->a);
    const char* io = static_cast<const char*>(e->out);
    const bool overlap = ia < io + out_bytes && io < ia + in_bytes;
    const bool exact = ia == io && in_bytes == out_bytes;
    if (overlap && !exact)
      return ::ath::fail(ATH_ERR_INVALID, "%s: CONVERT %s -> %s: out (%p) overlaps a (%p) without being identical to it",
                         op, dtype_name(e->dtype), dtype_name(e->dtype_out), e->out, e->a);
  }
  return ATH_OK;
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_elementwise(const ath_elementwise_args* e, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_elementwise";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::cuda::validate(op, e));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (e->n == 0) return ATH_OK;
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  const cudaStream_t stream = oc.stream;
  const ath::cuda::DeviceProps& props = oc.props;
  // Operands the op does not read are ignored (nulled so they do not affect the alignment test).
  ath_elementwise_args f = *e;
  if (f.op == ATH_EW_FILL) f.a = nullptr;
  if (f.op != ATH_EW_ADD && f.op != ATH_EW_MUL) f.b = nullptr;
  if (f.op == ATH_EW_CONVERT && (f.dtype == ATH_I32 || f.dtype_out == ATH_I32)) {
    if (f.dtype == ATH_I32 && f.dtype_out == ATH_I32)
      return ath::cuda::launch_convert_int<int32_t, int32_t>(&f, stream, props);
    if (f.dtype == ATH_I32) return ath::cuda::launch_convert_int<int32_t, float>(&f, stream, props);
    return ath::cuda::launch_convert_int<float, int32_t>(&f, stream, props);
  } else if (f.op == ATH_EW_CONVERT) {
    ATH_DISPATCH_FLOAT(f.dtype, TA, op, return ath::cuda::launch_convert<TA>(&f, stream, props));
  } else {
    ATH_DISPATCH_FLOAT(f.dtype, T, op, return ath::cuda::launch_same<T>(&f, stream, props));
  }
  ATH_GUARD_END(op)
  return ATH_OK;
}

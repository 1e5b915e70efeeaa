// ath_cuda_copy: dst[i] = src[i] for every index i of a shape, between two strided views of device
// memory of ctx->device (device to device, never staged through the host); ath_cuda_memset: a
// byte fill (cudaMemsetAsync). Both are enqueued on ctx->stream and use no scratch.
//
// Layout contract (athanor.h, as ath_cpu_copy): rank 0..8 (rank 0 is one element), elements of
// elem_size 1/2/4/8 bytes, element strides >= 0; dst must not overlap src and dst's elements must
// be distinct (the caller's contract, not checked beyond a dst stride 0 on a dimension of size > 1).
// Pointers need no alignment.
//
// The arguments are validated and reduced by ath::plan_copy (native/common/copy_plan.h, shared
// with the CPU op): size-1 dimensions dropped, the rest ordered by decreasing dst stride, adjacent
// dimensions contiguous on both sides merged. Then, by the plan's shape:
//  - contiguous on both sides (rank 0, or rank 1 with unit strides): one cudaMemcpyAsync;
//  - rows (rank 2, inner dimension contiguous on both sides, both pitches >= the row's bytes and
//    < 2^31): one cudaMemcpy2DAsync;
//  - anything else: strided_copy_kernel, a grid-stride loop over the plan's elements that turns
//    each flat index into the plan's multi-index (32-bit index arithmetic when the count fits).
//    Its unit of copy: when the inner dimension is contiguous on both sides, rows are copied in
//    units of U bytes, U the widest of 16, 8, 4, 2, 1 dividing the row's bytes, both bases and every
//    outer stride in bytes (16-byte loads and stores for aligned rows); otherwise one element of
//    elem_size bytes, or, when a base is not aligned to elem_size, the element's bytes as an extra
//    innermost dimension (then widened the same way).
#include <climits>

#include "common/copy_plan.h"
#include "context.cuh"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

constexpr const char* kOpCopy = "ath_cuda_copy";
constexpr const char* kOpMemset = "ath_cuda_memset";
constexpr int kThreads = 256;
constexpr int kMaxDims = ATH_MAX_RANK + 1;  // + the byte dimension of an unaligned element copy

// The kernel's view of the plan, in units of the kernel's copy unit U (bytes = sizeof(U)).
struct CopyParams {
  char* dst;
  const char* src;
  int64_t count;                  // units in all, >= 1
  int rank;                       // >= 1
  int64_t shape[kMaxDims];        // outer to inner
  int64_t dst_strides[kMaxDims];  // units
  int64_t src_strides[kMaxDims];  // units
};

// Copies unit i (0 <= i < p.count) of the plan's row-major order: its multi-index, outer to inner,
// gives the unit offsets on both sides. I is the index type (see strided_copy_kernel).
template <typename U, typename I>
__host__ __device__ __forceinline__ void copy_unit(const CopyParams& p, I i) {
  I rem = i;
  int64_t doff = 0, soff = 0;
  for (int d = p.rank - 1; d > 0; --d) {
    const I len = static_cast<I>(p.shape[d]);
    const I q = rem / len;
    const int64_t c = static_cast<int64_t>(rem - q * len);
    rem = q;
    doff += c * p.dst_strides[d];
    soff += c * p.src_strides[d];
  }
  doff += static_cast<int64_t>(rem) * p.dst_strides[0];  // rem < shape[0]
  soff += static_cast<int64_t>(rem) * p.src_strides[0];
  reinterpret_cast<U*>(p.dst)[doff] = reinterpret_cast<const U*>(p.src)[soff];
}

// Grid-stride loop over [0, p.count). I: uint32_t when count <= INT32_MAX (i + the grid's stride
// then never wraps), else int64_t.
template <typename U, typename I>
__global__ void __launch_bounds__(kThreads) strided_copy_kernel(const CopyParams p) {
  const I count = static_cast<I>(p.count);
  const I step = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < count;
       i += step)
    copy_unit<U, I>(p, i);
}

CopyParams params_of(const ath::CopyPlan& plan) {
  CopyParams p{};
  p.dst = plan.dst;
  p.src = plan.src;
  p.count = plan.count;
  p.rank = plan.rank;
  for (int d = 0; d < plan.rank; ++d) {
    p.shape[d] = plan.shape[d];
    p.dst_strides[d] = plan.dst_strides[d];
    p.src_strides[d] = plan.src_strides[d];
  }
  return p;
}

// Element strides -> byte strides, with the es bytes of each element as a new innermost
// dimension (contiguous on both sides). Byte offsets fit in int64 (checked by plan_copy).
void split_bytes(CopyParams* p, int es) {
  for (int d = 0; d < p->rank; ++d) {
    p->dst_strides[d] *= es;
    p->src_strides[d] *= es;
  }
  p->shape[p->rank] = es;
  p->dst_strides[p->rank] = 1;
  p->src_strides[p->rank] = 1;
  ++p->rank;
  p->count *= es;
}

// The widest unit (16, 8, 4, 2 or 1 bytes) in which rows of p, whose inner dimension is contiguous
// on both sides, can be copied: it divides the row's bytes, both bases and every outer byte stride.
int widest_unit(const CopyParams& p, int es) {
  const int inner = p.rank - 1;
  for (int u : {16, 8, 4, 2}) {
    bool ok = (p.shape[inner] * es) % u == 0 && is_aligned(p.dst, u) && is_aligned(p.src, u);
    for (int d = 0; ok && d < inner; ++d)
      ok = (p.dst_strides[d] * es) % u == 0 && (p.src_strides[d] * es) % u == 0;
    if (ok) return u;
  }
  return 1;
}

// Re-expresses p (elements of es bytes, inner dimension contiguous on both sides) in units of u
// bytes, u from widest_unit.
void widen(CopyParams* p, int es, int u) {
  const int inner = p->rank - 1;
  for (int d = 0; d < inner; ++d) {
    p->dst_strides[d] = p->dst_strides[d] * es / u;
    p->src_strides[d] = p->src_strides[d] * es / u;
  }
  p->shape[inner] = p->shape[inner] * es / u;
  p->count = p->count * es / u;
}

template <typename U>
ath_status launch(const CopyParams& p, const OpContext& oc) {
  const unsigned grid = grid_for(p.count, kThreads, oc.props.sm_count, 8);
  if (p.count <= INT32_MAX) {
    strided_copy_kernel<U, uint32_t><<<grid, kThreads, 0, oc.stream>>>(p);
  } else {
    strided_copy_kernel<U, int64_t><<<grid, kThreads, 0, oc.stream>>>(p);
  }
  ATH_CUDA_CHECK_LAUNCH(kOpCopy);
  return ATH_OK;
}

// How a plan is carried out (chosen on the host, before anything is enqueued).
enum class CopyPath { kMemcpy, kMemcpy2D, kKernel };
struct CopyLaunch {
  CopyPath path = CopyPath::kKernel;
  size_t bytes = 0;                                   // kMemcpy
  size_t dpitch = 0, spitch = 0, width = 0, height = 0;  // kMemcpy2D (bytes; height rows)
  CopyParams params{};                                // kKernel, in units of `unit` bytes
  int unit = 1;                                       // kKernel: 1, 2, 4, 8 or 16
};

CopyLaunch choose_launch(const ath::CopyPlan& plan) {
  CopyLaunch l;
  const int es = plan.elem_size;
  if (plan.rank == 0 || (plan.rank == 1 && plan.inner_contiguous())) {
    l.path = CopyPath::kMemcpy;
    l.bytes = static_cast<size_t>(plan.count) * es;
    return l;
  }
  if (plan.rank == 2 && plan.inner_contiguous()) {
    const int64_t width = plan.shape[1] * es, dpitch = plan.dst_strides[0] * es, spitch = plan.src_strides[0] * es;
    if (dpitch >= width && spitch >= width && dpitch <= INT_MAX && spitch <= INT_MAX) {
      l.path = CopyPath::kMemcpy2D;
      l.dpitch = static_cast<size_t>(dpitch);
      l.spitch = static_cast<size_t>(spitch);
      l.width = static_cast<size_t>(width);
      l.height = static_cast<size_t>(plan.shape[0]);
      return l;
    }
  }
  l.path = CopyPath::kKernel;
  l.params = params_of(plan);
  l.unit = es;
  if (plan.inner_contiguous()) {
    l.unit = widest_unit(l.params, es);
    widen(&l.params, es, l.unit);
  } else if (!is_aligned(plan.dst, es) || !is_aligned(plan.src, es)) {
    split_bytes(&l.params, es);
    l.unit = widest_unit(l.params, 1);
    widen(&l.params, 1, l.unit);
  }
  return l;
}

ath_status run_copy(const ath::CopyPlan& plan, const OpContext& oc) {
  const CopyLaunch l = choose_launch(plan);
  switch (l.path) {
    case CopyPath::kMemcpy:
      ATH_CUDA_CHECK(cudaMemcpyAsync(plan.dst, plan.src, l.bytes, cudaMemcpyDeviceToDevice, oc.stream));
      return ATH_OK;
    case CopyPath::kMemcpy2D:
      ATH_CUDA_CHECK(cudaMemcpy2DAsync(plan.dst, l.dpitch, plan.src, l.spitch, l.width, l.height,
                                       cudaMemcpyDeviceToDevice, oc.stream));
      return ATH_OK;
    default:
      break;
  }
  switch (l.unit) {
    case 1: return launch<uint8_t>(l.params, oc);
    case 2: return launch<uint16_t>(l.params, oc);
    case 4: return launch<uint32_t>(l.params, oc);
    case 8: return launch<uint2>(l.params, oc);
    default: return launch<uint4>(l.params, oc);
  }
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_copy(const ath_copy_args* a, const ath_cuda_ctx* ctx) {
  using namespace ath::cuda;
  ATH_GUARD_BEGIN
  ath::CopyPlan plan;
  ATH_TRY(ath::plan_copy(kOpCopy, a, &plan));
  ATH_TRY(check_context(kOpCopy, ctx));
  if (plan.count == 0) return ATH_OK;
  OpContext oc;
  ATH_TRY(enter(kOpCopy, ctx, &oc));
  return run_copy(plan, oc);
  ATH_GUARD_END(kOpCopy)
}

extern "C" ath_status ath_cuda_memset(const ath_memset_args* a, const ath_cuda_ctx* ctx) {
  using namespace ath::cuda;
  ATH_GUARD_BEGIN
  ATH_TRY(ath::validate_memset(kOpMemset, a));
  ATH_TRY(check_context(kOpMemset, ctx));
  if (a->bytes == 0) return ATH_OK;
  OpContext oc;
  ATH_TRY(enter(kOpMemset, ctx, &oc));
  ATH_CUDA_CHECK(cudaMemsetAsync(a->dst, a->value, static_cast<size_t>(a->bytes), oc.stream));
  return ATH_OK;
  ATH_GUARD_END(kOpMemset)
}

// Sampling of the next token on the device (ath_cuda_sample): only the ids (rows) I32 travel to the host.
//
// logits (rows, cols) F32 with row stride ld; uniforms (rows) F32 in [0, 1); ids (rows) I32 written. The
// algorithm is ath_cpu_sample's (native/cpu/sample.cpp, the reference): rank keys, integer weights q in
// [0, 2^32] and the helpers of native/common/sampling.h. The id chosen equals the CPU's for the same logits and
// uniforms, always: per-element float work is the same expression (_rn intrinsics, no FMA, no device libm) and
// every mass is an exact uint64 sum, so the order of the atomics below does not matter.
//
// One block of kThreads per row; every phase streams the row from global memory (L2 after the first pass) in
// coalesced tiles of kThreads, recomputing keys and weights rather than storing them (no scratch):
//  1. One pass: the first NaN/+inf column (min reduction) and the largest rank key (max reduction). An error or
//     greedy (T = 0) ends here.
//  2. Top-k (K < vocab): radix select of the K-th largest 64-bit rank key, 8 bits per pass from the top (at most
//     8 passes; it stops as soon as the bucket holding the K-th key has no other key to tell apart). Each pass
//     histograms the digit of the keys that share the prefix found so far (256 counters in shared memory; the
//     lanes of a warp with equal digits are combined with __match_any_sync first, so one atomic per distinct
//     digit and warp). C = {key >= kappa_K}.
//  3. Top-p (P < 2^24): the same radix descent weighted by mass instead of count: each pass histograms the masses
//     (and counts) of C's keys under the prefix by digit; the first pass's buckets add up to M_C and give the
//     target ceil(M_C P / 2^24); walking the buckets from the top, the one where the running mass reaches the
//     target is kept. It stops when that bucket holds one key (at most 8 passes). Its result is the boundary key
//     of the shortest rank prefix reaching the target, found without sorting the vocabulary, and M_N. Without
//     top-p, one reduction gives M_N = M_C.
//  4. Draw: t = floor(M_N U / 2^24); a block-wide inclusive scan of the weights of N in id order, tile by tile,
//     finds the first id whose running mass exceeds t.
// Shared memory: 256 x (8 + 4) bytes of histogram plus small reduction slots.
#include <climits>
#include <cstdint>

#include "common.cuh"
#include "common/sampling.h"
#include "op_helpers.cuh"

namespace ath::cuda {
namespace {

namespace s = ::ath::sampling;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBuckets = 256;
constexpr unsigned kFull = 0xffffffffu;

struct Params {
  const float* logits;
  const float* uniforms;
  int32_t* ids;
  int64_t cols, vocab, ld, top_k;
  float temperature;
  uint64_t top_p_frac;
};

struct Shared {
  unsigned long long mass[kBuckets];
  unsigned int count[kBuckets];
  unsigned long long u64[kWarps];
  long long i64[kWarps];
  unsigned long long prefix, mass_n;
  int done;
};

__device__ __forceinline__ unsigned long long max_u64(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// Reductions over the block; every thread gets the result. slots: kWarps entries, reused by the next call only
// after the barrier that starts it.
__device__ unsigned long long block_max(unsigned long long v, unsigned long long* slots) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max_u64(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
  __syncthreads();
  unsigned long long r = slots[0];
  for (int w = 1; w < kWarps; ++w) r = max_u64(r, slots[w]);
  return r;
}
__device__ long long block_min(long long v, long long* slots) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
  __syncthreads();
  long long r = slots[0];
  for (int w = 1; w < kWarps; ++w) r = min(r, slots[w]);
  return r;
}
__device__ unsigned long long block_sum(unsigned long long v, unsigned long long* slots) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
  __syncthreads();
  unsigned long long r = 0;
  for (int w = 0; w < kWarps; ++w) r += slots[w];
  return r;
}

// Inclusive prefix sum over the block in thread order; *total gets the block's sum.
__device__ unsigned long long block_scan(unsigned long long v, unsigned long long* slots, unsigned long long* total) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long y = __shfl_up_sync(kFull, v, o);
    if (lane >= o) v += y;
  }
  __syncthreads();
  if (lane == 31) slots[w] = v;
  __syncthreads();
  if (w == 0) {
    unsigned long long x = lane < kWarps ? slots[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned long long y = __shfl_up_sync(kFull, x, o);
      if (lane >= o) x += y;
    }
    if (lane < kWarps) slots[lane] = x;
  }
  __syncthreads();
  if (w > 0) v += slots[w - 1];
  *total = slots[kWarps - 1];
  return v;
}

// Adds (1, q) to bucket `digit` for the lanes with `valid`: lanes of equal digit are combined first (one atomic
// per distinct digit and warp). q <= 2^32: summed as 16-bit halves so the 32-bit warp sums cannot overflow.
// Called by every lane of the warp.
template <bool kMass>
__device__ __forceinline__ void hist_add(Shared& sh, bool valid, unsigned digit, unsigned long long q) {
  const unsigned lane = threadIdx.x & 31;
  const unsigned peers = __match_any_sync(kFull, valid ? digit : (0x100u | lane));
  unsigned lo = 0, hi = 0;
  if (kMass) {
    lo = __reduce_add_sync(peers, static_cast<unsigned>(q & 0xffffu));
    hi = __reduce_add_sync(peers, static_cast<unsigned>(q >> 16));
  }
  if (valid && lane == static_cast<unsigned>(__ffs(peers) - 1)) {
    atomicAdd(&sh.count[digit], static_cast<unsigned>(__popc(peers)));
    if (kMass) atomicAdd(&sh.mass[digit], (static_cast<unsigned long long>(hi) << 16) + lo);
  }
}

// Radix descent over the 64-bit rank keys of [0, vocab) that are >= floor_key. kMass = false: the threshold
// kappa with exactly `need` keys >= kappa (top-k). kMass = true: the boundary of the shortest rank prefix whose
// mass reaches ceil(M * frac / 2^24), M the mass of all those keys; *mass_n gets that prefix's mass (top-p).
// Either way the keys >= the result (and >= floor_key) are the set chosen.
template <bool kMass>
__device__ uint64_t radix_select(const float* x, const Params& p, float m, float inv_t, uint64_t floor_key,
                                 uint64_t need, uint64_t* mass_n, Shared& sh) {
  uint64_t prefix = 0;
  unsigned long long above = 0, target = 0;  // thread 0 only (kMass)
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kBuckets; b += kThreads) {
      sh.count[b] = 0;
      if (kMass) sh.mass[b] = 0;
    }
    __syncthreads();
    const uint64_t hi_mask = shift == 56 ? 0 : (~0ull << (shift + 8));
    for (int64_t i0 = 0; i0 < p.vocab; i0 += kThreads) {
      const int64_t i = i0 + threadIdx.x;
      const bool in = i < p.vocab;
      const float l = in ? x[i] : 0.0f;
      const uint64_t key = s::rank_key(l, i);
      const bool valid = in && key >= floor_key && (key & hi_mask) == prefix;
      const unsigned long long q = kMass && valid ? s::weight(l, m, inv_t) : 0;
      hist_add<kMass>(sh, valid, static_cast<unsigned>(key >> shift) & 0xffu, q);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int d;
      if (kMass) {
        if (shift == 56) {
          unsigned long long total = 0;
          for (int b = 0; b < kBuckets; ++b) total += sh.mass[b];
          target = s::mul_shr24(total, p.top_p_frac, true);
        }
        d = s::pick_by_mass(sh.mass, &above, target);
        sh.mass_n = above + sh.mass[d];
        sh.done = sh.count[d] == 1 || shift == 0;
      } else {
        d = s::pick_by_count(sh.count, &need);
        sh.done = sh.count[d] == need || shift == 0;
      }
      sh.prefix = prefix | (static_cast<uint64_t>(d) << shift);
    }
    __syncthreads();
    prefix = sh.prefix;
    const bool done = sh.done;
    if (kMass) *mass_n = sh.mass_n;
    __syncthreads();  // the next pass clears the buckets and thread 0 rewrites the broadcast slots
    if (done) break;
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(Params p) {
  __shared__ Shared sh;
  const int64_t row = blockIdx.x;
  const float* x = p.logits + row * p.ld;

  // 1. validity and the largest key
  long long bad = LLONG_MAX;
  unsigned long long best = 0;
  for (int64_t i = threadIdx.x; i < p.cols; i += kThreads) {
    const float l = x[i];
    if (s::is_bad(l)) {
      bad = min(bad, static_cast<long long>(i));
    } else if (i < p.vocab) {
      best = max_u64(best, s::rank_key(l, i));
    }
  }
  bad = block_min(bad, sh.i64);
  best = block_max(best, sh.u64);
  const float m = s::key_logit(best);
  if (bad != LLONG_MAX || isinf(m) || p.temperature == 0.0f) {
    if (threadIdx.x == 0) {
      p.ids[row] = bad != LLONG_MAX ? static_cast<int32_t>(-1 - bad)
                   : isinf(m) ? -1
                                        : static_cast<int32_t>(s::key_index(best));
    }
    return;
  }
  const float inv_t = __fdiv_rn(1.0f, p.temperature);

  // 2. top-k
  const int64_t k = p.top_k > 0 && p.top_k < p.vocab ? p.top_k : p.vocab;
  uint64_t kappa = 0, mass = 0;
  if (k < p.vocab) kappa = radix_select<false>(x, p, m, inv_t, 0, static_cast<uint64_t>(k), nullptr, sh);

  // 3. top-p (or the mass of C)
  if (p.top_p_frac < (1ull << 24)) {
    const uint64_t kp = radix_select<true>(x, p, m, inv_t, kappa, 0, &mass, sh);
    kappa = kp > kappa ? kp : kappa;
  } else {
    unsigned long long part = 0;
    for (int64_t i = threadIdx.x; i < p.vocab; i += kThreads) {
      const float l = x[i];
      if (s::rank_key(l, i) >= kappa) part += s::weight(l, m, inv_t);
    }
    mass = block_sum(part, sh.u64);
  }

  // 4. the draw, in id order
  const uint64_t t = s::mul_shr24(mass, s::uniform_fraction(p.uniforms[row]), false);
  unsigned long long base = 0;
  for (int64_t i0 = 0; i0 < p.vocab; i0 += kThreads) {
    const int64_t i = i0 + threadIdx.x;
    unsigned long long q = 0;
    if (i < p.vocab) {
      const float l = x[i];
      if (s::rank_key(l, i) >= kappa) q = s::weight(l, m, inv_t);
    }
    unsigned long long total;
    const unsigned long long incl = block_scan(q, sh.u64, &total);
    const int below = __syncthreads_count(base + incl <= t);  // the running mass is non-decreasing in i
    if (below < kThreads) {
      if (threadIdx.x == below) p.ids[row] = static_cast<int32_t>(i);
      return;
    }
    base += total;
  }
  if (threadIdx.x == 0) p.ids[row] = static_cast<int32_t>(s::key_index(best));  // unreachable: t < mass
}

}  // namespace
}  // namespace ath::cuda

extern "C" ath_status ath_cuda_sample(const ath_sample_args* a, const ath_cuda_ctx* ctx) {
  static const char* op = "ath_cuda_sample";
  ATH_GUARD_BEGIN
  ATH_TRY(ath::sampling::validate(a, op));
  ATH_TRY(ath::cuda::check_context(op, ctx));
  if (a->rows == 0) return ATH_OK;
  if (a->rows > INT_MAX) return ::ath::fail(ATH_ERR_INVALID, "%s: rows=%lld exceeds the grid", op, (long long)a->rows);
  ath::cuda::OpContext oc;
  ATH_TRY(ath::cuda::enter(op, ctx, &oc));
  ath::cuda::Params p{static_cast<const float*>(a->logits), a->uniforms, a->ids, a->cols, a->vocab, a->ld,
                      a->top_k, a->temperature, ath::sampling::top_p_fraction(a->top_p)};
  ath::cuda::sample_kernel<<<static_cast<unsigned>(a->rows), ath::cuda::kThreads, 0, oc.stream>>>(p);
  ATH_CUDA_CHECK_LAUNCH(op);
  return ATH_OK;
  ATH_GUARD_END(op)
}

// ath_cpu_sample: the next token of each row of decode logits, the reference of ath_cuda_sample (kernels/sample.cu).
//
// logits (rows, cols) F32, row stride ld; uniforms (rows) F32 in [0, 1); ids (rows) I32 written. Per row, with
// the element arithmetic of native/common/sampling.h (rank key, integer weight q, exp from +, -, * only):
//  1. Validity: the first column in [0, cols) holding NaN or +inf gives ids = -1 - that column. The sampled
//     columns are [0, vocab); if all of them are -inf, ids = -1 (column 0).
//  2. Greedy (temperature 0): the id of the largest rank key = the largest logit, the lowest id on ties.
//  3. Weights: m = the largest sampled logit; q_i = floor(exp((l_i - m) / T) * 2^32) for i < vocab, so the top
//     token weighs exactly 2^32 and a token e^-80 below it weighs 0.
//  4. Top-k: C = the K ids of largest rank key, K = min(top_k, vocab) (top_k 0: K = vocab). M_C = sum of q over C.
//  5. Top-p: P = ceil(top_p * 2^24); when P < 2^24, N = the shortest prefix of C in rank order whose mass
//     reaches ceil(M_C * P / 2^24); else N = C. M_N = the mass of N.
//  6. Draw: U = floor(u * 2^24) (clamped to [0, 2^24 - 1]), t = floor(M_N * U / 2^24) in [0, M_N); the chosen id
//     is the smallest id i of N (in id order) whose running mass over N up to i exceeds t.
// Masses are uint64 sums of integers (exact), so no summation order exists to disagree on: CUDA computes them
// with atomics in any order and chooses the same id as this code for the same logits and uniforms; the only
// floating-point work is per element and identical by construction. Every step is a function of the row alone:
// rows run in parallel, each on one thread, so results never depend on the thread count.
// The distribution sampled is softmax(l / T) restricted to N, with each probability relative to the top one
// rounded down to a multiple of 2^-32 (a total error below vocab * 2^-32 of the top probability).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <vector>

#include "../common/sampling.h"
#include "cpu_common.h"

namespace ath::cpu {
namespace {

namespace s = ::ath::sampling;

constexpr size_t kHead = 1024;

// The buffers of a row's work (sized by sample_row when a row needs them; greedy needs none).
struct RowWork {
  std::vector<uint64_t> q, order;
};

int32_t sample_row(const ath_sample_args* a, const float* x, float u, RowWork& w) {
  const int64_t cols = a->cols, vocab = a->vocab;
  uint64_t best = 0;
  for (int64_t i = 0; i < cols; ++i) {
    if (s::is_bad(x[i])) return static_cast<int32_t>(-1 - i);
    if (i < vocab) best = std::max(best, s::rank_key(x[i], i));
  }
  const float m = s::key_logit(best);
  if (std::isinf(m)) return -1;  // every sampled logit is -inf
  if (a->temperature == 0.0f) return static_cast<int32_t>(s::key_index(best));

  // C = {key >= kappa}; kappa = the K-th largest key (0: every key)
  const int64_t k = a->top_k > 0 ? std::min<int64_t>(a->top_k, vocab) : vocab;
  uint64_t kappa = 0;
  std::vector<uint64_t>& order = w.order;
  if (k < vocab) {
    order.resize(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) order[i] = s::rank_key(x[i], i);
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), std::greater<uint64_t>());
    kappa = order[k - 1];
  }
  // q of C's members (0 elsewhere) and M_C
  const float inv_t = 1.0f / a->temperature;
  std::vector<uint64_t>& q = w.q;
  q.resize(static_cast<size_t>(vocab));
  uint64_t mass = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    q[i] = s::rank_key(x[i], i) >= kappa ? s::weight(x[i], m, inv_t) : 0;
    mass += q[i];
  }
  const uint64_t frac = s::top_p_fraction(a->top_p);
  if (frac < (1ull << 24)) {  // N = the shortest rank prefix of C reaching the target mass
    const uint64_t target = s::mul_shr24(mass, frac, true);
    order.clear();  // C's members of weight > 0: the prefix ends at one of them
    for (int64_t i = 0; i < vocab; ++i) {
      if (q[i] > 0) order.push_back(s::rank_key(x[i], i));
    }
    // rank order: the best kHead first (a nucleus is usually short), the rest only when the walk gets there
    const size_t head = std::min(order.size(), kHead);
    std::partial_sort(order.begin(), order.begin() + head, order.end(), std::greater<uint64_t>());
    uint64_t acc = 0;
    for (size_t j = 0; j < order.size(); ++j) {
      if (j == head) std::sort(order.begin() + head, order.end(), std::greater<uint64_t>());
      acc += q[s::key_index(order[j])];
      if (acc >= target) {
        kappa = order[j];
        break;
      }
    }
    mass = acc;
  }
  const uint64_t t = s::mul_shr24(mass, s::uniform_fraction(u), false);
  uint64_t acc = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (q[i] == 0 || s::rank_key(x[i], i) < kappa) continue;
    acc += q[i];
    if (acc > t) return static_cast<int32_t>(i);
  }
  return INT32_MIN;  // unreachable: t < mass
}

}  // namespace
}  // namespace ath::cpu

extern "C" ath_status ath_cpu_sample(const ath_sample_args* a) {
  static const char* kOp = "ath_cpu_sample";
  ATH_GUARD_BEGIN
  using namespace ath::cpu;
  ATH_TRY(ath::sampling::validate(a, kOp));
  const float* logits = static_cast<const float*>(a->logits);
  std::vector<int32_t> ids(static_cast<size_t>(a->rows));
  std::atomic<bool> out_of_memory{false};
  parallel_for(a->rows, 1, [&](int64_t r0, int64_t r1, int) {
    thread_local RowWork work;  // kept by each pool thread: no allocation per call once sized
    try {
      for (int64_t r = r0; r < r1; ++r) ids[r] = sample_row(a, logits + r * a->ld, a->uniforms[r], work);
    } catch (const std::bad_alloc&) {  // never thrown across the pool
      out_of_memory = true;
    }
  });
  if (out_of_memory) {
    return ath::fail(ATH_ERR_OOM, "%s: no host memory for the work buffers (2 x %lld x 8 bytes per thread)", kOp,
                     (long long)a->vocab);
  }
  for (int64_t r = 0; r < a->rows; ++r) {
    if (ids[r] == INT32_MIN) return ath::fail(ATH_ERR_INTERNAL, "%s: row %lld: the draw found no token", kOp, (long long)r);
    a->ids[r] = ids[r];
  }
  return ATH_OK;
  ATH_GUARD_END(kOp)
}

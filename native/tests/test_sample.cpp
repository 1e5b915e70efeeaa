// Tests of the sample op: ath_cpu_sample (native/cpu/sample.cpp) for its error reports, greedy ties, thread-count
// independence and the accuracy of its exp (native/common/sampling.h), and ath_cuda_sample (kernels/sample.cu)
// against it: the same id for every row on awkward shapes (vocab 1, 7, 50257, 128256; 1, 3, 16 rows; top-k 1,
// 40, all; top-p 0.1, 0.9, 1; temperatures 0, 0.7, 1.3; ties, -inf, NaN). The CPU op's agreement with a plain
// reference of the algorithm is tested from Java (SampleOpTest). Without a usable GPU the CUDA test skips with
// the reason.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "common/sampling.h"
#include "cuda_test_context.h"
#include "testing.h"

namespace {

using ath::testing::format;
using ath::testing::Rng;

// Logits of `rows` rows of `cols` with row stride ld. kind 0: Gaussian; 1: few distinct values (ties);
// 2: Gaussian with a third of them -inf; 3: peaked (one value far above the rest).
std::vector<float> make_logits(Rng& g, int64_t rows, int64_t cols, int64_t ld, int kind) {
  std::vector<float> x(static_cast<size_t>(rows * ld), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < cols; ++i) {
      const double gauss = std::sqrt(-2 * std::log(g.uniform(1e-12, 1))) * std::cos(6.283185307 * g.uniform(0, 1));
      float v = static_cast<float>(3 * gauss);
      if (kind == 1) v = static_cast<float>(g.below(4)) - 1.0f;
      if (kind == 2 && g.below(3) == 0) v = -std::numeric_limits<float>::infinity();
      if (kind == 3 && i == (r * 7919) % cols) v = 25.0f;
      x[static_cast<size_t>(r * ld + i)] = v;
    }
  return x;
}

std::vector<float> make_uniforms(Rng& g, int64_t rows) {
  std::vector<float> u(static_cast<size_t>(rows));
  for (auto& v : u) v = static_cast<float>(g.next() >> 40) * 0x1p-24f;
  return u;
}

ath_sample_args args(int64_t rows, int64_t cols, int64_t vocab, int64_t ld, float t, int64_t k, float p,
                     const float* logits, const float* u, int32_t* ids) {
  ath_sample_args a{};
  a.rows = rows;
  a.cols = cols;
  a.vocab = vocab;
  a.ld = ld;
  a.dtype = ATH_F32;
  a.temperature = t;
  a.top_k = k;
  a.top_p = p;
  a.logits = logits;
  a.uniforms = u;
  a.ids = ids;
  return a;
}

std::vector<int32_t> cpu_ids(const ath_sample_args& a) {
  std::vector<int32_t> ids(static_cast<size_t>(a.rows), INT32_MIN);
  ath_sample_args c = a;
  c.ids = ids.data();
  ATH_EXPECT_OK(ath_cpu_sample(&c));
  return ids;
}

ATH_TEST(cpu_sample_reports_non_finite_logits_and_breaks_ties_by_id) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // row 0: NaN at 5; row 1: +inf at 2; row 2: all sampled -inf (col 4 is padding); row 3: NaN in padding col 5;
  // row 4: ties at 1 and 3, -inf elsewhere
  const int64_t cols = 6, vocab = 5;
  std::vector<float> x = {0, 1, 2, 3, 4, nan, 0, 1, inf, 0, 0, 0, -inf, -inf, -inf, -inf, -inf, 0,
                          1, 2, 3, 4, 5, nan, -inf, 2, -inf, 2, -inf, 0};
  std::vector<float> u = {0.5f, 0.5f, 0.5f, 0.5f, 0.999f};
  for (float t : {0.0f, 1.0f}) {
    const auto ids = cpu_ids(args(5, cols, vocab, cols, t, 0, 1.0f, x.data(), u.data(), nullptr));
    ATH_EXPECT(ids[0] == -1 - 5 && ids[1] == -1 - 2 && ids[2] == -1 && ids[3] == -1 - 5,
               "T=%g: errors %d %d %d %d", (double)t, ids[0], ids[1], ids[2], ids[3]);
    ATH_EXPECT(ids[4] == 1 || (t > 0 && ids[4] == 3), "T=%g: row 4 chose %d", (double)t, ids[4]);
  }
  // u near 1 at T = 1 takes the second of the two equal candidates; top-k 1 keeps only the lower id
  ATH_EXPECT(cpu_ids(args(5, cols, vocab, cols, 1.0f, 0, 1.0f, x.data(), u.data(), nullptr))[4] == 3, "u=0.999");
  ATH_EXPECT(cpu_ids(args(5, cols, vocab, cols, 1.0f, 1, 1.0f, x.data(), u.data(), nullptr))[4] == 1, "top-k 1");
  ATH_EXPECT(cpu_ids(args(5, cols, vocab, cols, 1.0f, 0, 0.5f, x.data(), u.data(), nullptr))[4] == 1, "top-p 0.5");

  int32_t id = 0;
  float one = 1.0f, half = 0.5f;
  auto bad = [&](ath_sample_args a, const char* what) { ATH_EXPECT_INVALID(ath_cpu_sample(&a), what); };
  bad(args(1, 1, 2, 1, 1.0f, 0, 1.0f, &one, &half, &id), "vocab > cols");
  bad(args(1, 2, 1, 1, 1.0f, 0, 1.0f, &one, &half, &id), "cols > ld");
  bad(args(1, 1, 1, 1, -1.0f, 0, 1.0f, &one, &half, &id), "negative temperature");
  bad(args(1, 1, 1, 1, nan, 0, 1.0f, &one, &half, &id), "NaN temperature");
  bad(args(1, 1, 1, 1, 1.0f, -1, 1.0f, &one, &half, &id), "negative top-k");
  bad(args(1, 1, 1, 1, 1.0f, 0, 0.0f, &one, &half, &id), "top-p 0");
  bad(args(1, 1, 1, 1, 1.0f, 0, 1.5f, &one, &half, &id), "top-p 1.5");
  bad(args(1, 1, 1, 1, 1.0f, 0, 1.0f, &one, &half, nullptr), "null ids");
  ath_sample_args bf = args(1, 1, 1, 1, 1.0f, 0, 1.0f, &one, &half, &id);
  bf.dtype = ATH_BF16;
  ATH_EXPECT(ath_cpu_sample(&bf) == ATH_ERR_UNSUPPORTED, "BF16 logits: %s", ath_last_error());
}

ATH_TEST(cpu_sample_is_independent_of_the_thread_count) {
  Rng g(7);
  const int64_t rows = 16, vocab = 50257, cols = 50304;
  const auto x = make_logits(g, rows, cols, cols, 0);
  const auto u = make_uniforms(g, rows);
  for (float p : {0.9f, 1.0f})
    for (int64_t k : {int64_t{0}, int64_t{40}}) {
      const auto a = args(rows, cols, vocab, cols, 0.7f, k, p, x.data(), u.data(), nullptr);
      std::vector<int32_t> one, many;
      ath::testing::with_threads(1, [&] { one = cpu_ids(a); });
      ath::testing::with_threads(4, [&] { many = cpu_ids(a); });
      ATH_EXPECT(one == many, "top-k %lld top-p %g: 1 and 4 threads differ", (long long)k, (double)p);
    }
}

ATH_TEST(sample_exp_is_within_two_ulp) {
  double worst = 0;
  for (int i = 0; i <= 800000; ++i) {
    const float z = -80.0f * static_cast<float>(i) / 800000.0f;
    const double ref = std::exp(static_cast<double>(z));
    const double got = ath::sampling::det_exp(z);
    const double ulp = std::ldexp(1.0, std::ilogb(ref) - 23);
    worst = std::max(worst, std::fabs(got - ref) / ulp);
  }
  ATH_EXPECT(worst <= 2.0, "det_exp is %.2f ulp from exp at worst", worst);
  ATH_EXPECT(ath::sampling::det_exp(0.0f) == 1.0f, "E(0) = %.9g", (double)ath::sampling::det_exp(0.0f));
  ATH_EXPECT(ath::sampling::det_exp(-std::numeric_limits<float>::infinity()) == 0.0f, "E(-inf) != 0");
}

// kernels/sample.cu's selection for one row, run sequentially on the host: the same passes over the row and the
// same per-level choices (pick_by_count, pick_by_mass of common/sampling.h); the buckets are filled by a loop
// instead of warp-combined atomics, which add the same integers. Lets the CPU-only build test the radix descents
// (early exits, the index bits of tied logits, top-p inside top-k) against ath_cpu_sample.
uint64_t emulate_select(const float* x, int64_t vocab, float m, float inv_t, uint64_t floor_key, uint64_t need,
                        uint64_t frac, uint64_t* mass_n) {
  namespace s = ath::sampling;
  const bool by_mass = mass_n != nullptr;
  uint64_t prefix = 0;
  unsigned long long above = 0, target = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    unsigned count[256] = {};
    unsigned long long mass[256] = {};
    const uint64_t hi_mask = shift == 56 ? 0 : (~0ull << (shift + 8));
    for (int64_t i = 0; i < vocab; ++i) {
      const uint64_t key = s::rank_key(x[i], i);
      if (key < floor_key || (key & hi_mask) != prefix) continue;
      const unsigned d = static_cast<unsigned>(key >> shift) & 0xffu;
      ++count[d];
      if (by_mass) mass[d] += s::weight(x[i], m, inv_t);
    }
    int d;
    bool done;
    if (by_mass) {
      if (shift == 56) {
        unsigned long long total = 0;
        for (unsigned long long b : mass) total += b;
        target = s::mul_shr24(total, frac, true);
      }
      d = s::pick_by_mass(mass, &above, target);
      *mass_n = above + mass[d];
      done = count[d] == 1 || shift == 0;
    } else {
      d = s::pick_by_count(count, &need);
      done = count[d] == need || shift == 0;
    }
    prefix |= static_cast<uint64_t>(d) << shift;
    if (done) break;
  }
  return prefix;
}

int32_t emulate_kernel_row(const ath_sample_args& a, const float* x, float u) {
  namespace s = ath::sampling;
  uint64_t best = 0;
  for (int64_t i = 0; i < a.cols; ++i) {
    if (s::is_bad(x[i])) return static_cast<int32_t>(-1 - i);
    if (i < a.vocab) best = std::max(best, s::rank_key(x[i], i));
  }
  const float m = s::key_logit(best);
  if (std::isinf(m)) return -1;
  if (a.temperature == 0.0f) return static_cast<int32_t>(s::key_index(best));
  const float inv_t = 1.0f / a.temperature;
  const int64_t k = a.top_k > 0 && a.top_k < a.vocab ? a.top_k : a.vocab;
  uint64_t kappa = k < a.vocab ? emulate_select(x, a.vocab, m, inv_t, 0, static_cast<uint64_t>(k), 0, nullptr) : 0;
  uint64_t mass = 0;
  const uint64_t frac = s::top_p_fraction(a.top_p);
  if (frac < (1ull << 24)) {
    kappa = std::max(kappa, emulate_select(x, a.vocab, m, inv_t, kappa, 0, frac, &mass));
  } else {
    for (int64_t i = 0; i < a.vocab; ++i) mass += s::rank_key(x[i], i) >= kappa ? s::weight(x[i], m, inv_t) : 0;
  }
  const uint64_t t = s::mul_shr24(mass, s::uniform_fraction(u), false);
  uint64_t run = 0;
  for (int64_t i = 0; i < a.vocab; ++i) {
    if (s::rank_key(x[i], i) >= kappa) run += s::weight(x[i], m, inv_t);
    if (run > t) return static_cast<int32_t>(i);
  }
  return INT32_MIN;
}

ATH_TEST(sample_kernel_algorithm_emulated_matches_cpu) {
  Rng g(13);
  int64_t rows_checked = 0;
  for (int64_t vocab : {int64_t{1}, int64_t{7}, int64_t{300}, int64_t{5000}})
    for (int kind = 0; kind < 4; ++kind) {
      const int64_t rows = 4;
      const auto x = make_logits(g, rows, vocab, vocab, kind);
      for (float t : {0.0f, 0.7f, 1.3f, 40.0f})
        for (int64_t k : {int64_t{1}, int64_t{2}, int64_t{40}, int64_t{0}})
          for (float p : {0.1f, 0.5f, 0.9f, 1.0f}) {
            const auto u = make_uniforms(g, rows);
            const auto a = args(rows, vocab, vocab, vocab, t, k, p, x.data(), u.data(), nullptr);
            const auto want = cpu_ids(a);
            for (int64_t r = 0; r < rows; ++r) {
              const int32_t got = emulate_kernel_row(a, x.data() + r * vocab, u[r]);
              ATH_EXPECT(got == want[r], "vocab %lld kind %d T %g k %lld p %g row %lld: emulated kernel %d, cpu %d",
                         (long long)vocab, kind, (double)t, (long long)k, (double)p, (long long)r, got, want[r]);
              ++rows_checked;
            }
          }
    }
  ATH_EXPECT(rows_checked > 3000, "only %lld rows", (long long)rows_checked);
}

// Device memory of one vector, freed on scope exit.
template <typename T>
struct DeviceVec {
  void* p = nullptr;
  size_t n;
  explicit DeviceVec(const std::vector<T>& h) : n(h.size()) {
    ath::testing::ok(ath_cuda_malloc(0, n * sizeof(T) + 16, &p), "ath_cuda_malloc");
    ath::testing::ok(ath::testing::cuda_upload(p, h.data(), n * sizeof(T)), "upload");
  }
  ~DeviceVec() { ath_cuda_free(0, p); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  T* get() const { return static_cast<T*>(p); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    ath::testing::ok(ath::testing::cuda_download(h.data(), p, n * sizeof(T)), "download");
    return h;
  }
};

ATH_TEST(cuda_sample_matches_cpu) {
  ath::testing::require_gpu();
  Rng g(11);
  struct Shape {
    int64_t rows, vocab, cols;
    int kinds;  // of make_logits, from 0 (the CPU's top-p sorts make the largest shapes slow: fewer kinds there)
  };
  const Shape shapes[] = {{1, 1, 1, 4}, {3, 7, 9, 4}, {16, 7, 7, 4}, {1, 50257, 50304, 4}, {16, 50257, 50304, 2},
                          {3, 128256, 128256, 4}, {16, 128256, 128256, 1}};
  int64_t checked = 0;
  for (const Shape& sh : shapes)
    for (int kind = 0; kind < sh.kinds; ++kind) {
      const int64_t ld = sh.cols + (sh.rows > 1 ? 3 : 0);
      const auto x = make_logits(g, sh.rows, sh.cols, ld, kind);
      DeviceVec<float> dx(x);
      for (float t : {0.0f, 0.7f, 1.3f})
        for (int64_t k : {int64_t{1}, int64_t{40}, int64_t{0}})
          for (float p : {0.1f, 0.9f, 1.0f}) {
            if (t == 0.0f && (k != 0 || p != 1.0f)) continue;  // greedy ignores them
            const auto u = make_uniforms(g, sh.rows);
            const auto a = args(sh.rows, sh.cols, sh.vocab, ld, t, k, p, x.data(), u.data(), nullptr);
            const auto want = cpu_ids(a);
            DeviceVec<float> du(u);
            DeviceVec<int32_t> did(std::vector<int32_t>(static_cast<size_t>(sh.rows), INT32_MIN));
            ath_sample_args c = a;
            c.logits = dx.get();
            c.uniforms = du.get();
            c.ids = did.get();
            ath::testing::ok(ath::testing::cuda_run(ath_cuda_sample, &c), "ath_cuda_sample");
            const auto got = did.download();
            for (int64_t r = 0; r < sh.rows; ++r) {
              ATH_EXPECT(got[r] == want[r], "%s", format("rows %lld vocab %lld kind %d T %g k %lld p %g row %lld: cuda %d cpu %d",
                                                       (long long)sh.rows, (long long)sh.vocab, kind, (double)t,
                                                       (long long)k, (double)p, (long long)r, got[r], want[r]).c_str());
            }
            checked += sh.rows;
          }
    }
  // NaN reported as on the CPU
  std::vector<float> x(128256, 0.5f);
  x[70000] = std::numeric_limits<float>::quiet_NaN();
  x[90000] = std::numeric_limits<float>::infinity();
  DeviceVec<float> dx(x), du(std::vector<float>{0.25f});
  DeviceVec<int32_t> did(std::vector<int32_t>{0});
  auto a = args(1, 128256, 128000, 128256, 1.0f, 0, 0.9f, dx.get(), du.get(), did.get());
  ath::testing::ok(ath::testing::cuda_run(ath_cuda_sample, &a), "ath_cuda_sample (NaN)");
  ATH_EXPECT(did.download()[0] == -1 - 70000, "NaN at 70000 reported as %d", did.download()[0]);
  ATH_EXPECT(checked > 1000, "only %lld rows compared", (long long)checked);
}

}  // namespace

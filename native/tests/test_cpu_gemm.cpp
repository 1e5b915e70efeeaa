// Tests of ath_cpu_gemm against a plain double-precision triple loop, for every ISA this CPU
// supports (forced with ath_cpu_set_isa): awkward shapes, all four trans combinations, padded
// leading dimensions, batches with strides (and a broadcast B), alpha/beta/bias, every dtype
// combination, K blocks and A blocks crossing the kernels' cache-blocking boundaries; exact
// results on small integers; bit-identical results run to run and across thread counts; argument
// validation. Untouched memory (the padding of C, C's contents when beta == 0) is checked too.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "common/dtype.h"
#include "tests/testing.h"

namespace {

using ath::testing::format;
using ath::testing::HostBuf;
using ath::testing::IsaScope;
using ath::testing::supported_isas;
using ath::testing::ThreadsScope;

struct Case {
  int64_t m, n, k;
  int64_t batch = 1;
  int ta = 0, tb = 0;
  int dt_ab = ATH_F32, dt_c = ATH_F32;
  float alpha = 1.0f, beta = 0.0f;
  bool bias = false;
  int64_t pad = 0;        // extra elements per row of A, B and C
  int64_t batch_pad = 0;  // extra elements between batch entries
  bool broadcast_b = false;  // stride_b = 0: every batch entry uses the same B
  bool ints = false;      // small integers: the result must be exact
};

std::string describe(const Case& c) {
  return format("%s m=%lld n=%lld k=%lld batch=%lld ta=%d tb=%d ab=%s c=%s alpha=%g beta=%g bias=%d pad=%lld%s%s",
                ath_cpu_isa(), (long long)c.m, (long long)c.n, (long long)c.k, (long long)c.batch, c.ta, c.tb,
                ath::testing::dtype_name(c.dt_ab), ath::testing::dtype_name(c.dt_c), c.alpha, c.beta, c.bias ? 1 : 0,
                (long long)c.pad, c.broadcast_b ? " broadcast_b" : "", c.ints ? " ints" : "");
}

// Runs one case and checks it; returns C (all of its storage, as floats) for determinism checks.
std::vector<float> run_case(const Case& c, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  auto value = [&] { return c.ints ? static_cast<float>(small(rng)) : real(rng); };

  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  const int64_t lda = std::max<int64_t>(1, a_cols) + c.pad;
  const int64_t ldb = std::max<int64_t>(1, b_cols) + c.pad;
  const int64_t ldc = std::max<int64_t>(1, c.n) + c.pad;
  const int64_t stride_a = a_rows * lda + c.batch_pad;
  const int64_t stride_b = c.broadcast_b ? 0 : b_rows * ldb + c.batch_pad;
  const int64_t stride_c = c.m * ldc + c.batch_pad;
  const int64_t b_entries = c.broadcast_b ? 1 : c.batch;

  HostBuf A(c.dt_ab, std::max<int64_t>(1, c.batch * stride_a));
  HostBuf B(c.dt_ab, std::max<int64_t>(1, b_entries * (b_rows * ldb + c.batch_pad)));
  HostBuf C(c.dt_c, std::max<int64_t>(1, c.batch * stride_c));
  HostBuf bias(c.dt_c, std::max<int64_t>(1, c.n));
  for (int64_t i = 0; i < A.n; ++i) A.set(i, value());
  for (int64_t i = 0; i < B.n; ++i) B.set(i, value());
  for (int64_t i = 0; i < bias.n; ++i) bias.set(i, value());
  // C: NaN where it must not be read (beta == 0), a sentinel in the padding that must survive.
  for (int64_t i = 0; i < C.n; ++i) C.set(i, -99.0f);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) C.set(b * stride_c + i * ldc + j, c.beta == 0.0f ? NAN : value());
  const HostBuf C0 = C;

  ath_gemm_args g{};
  g.m = c.m; g.n = c.n; g.k = c.k; g.batch = c.batch;
  g.dtype_ab = c.dt_ab; g.dtype_c = c.dt_c;
  g.trans_a = c.ta; g.trans_b = c.tb;
  g.a = A.data(); g.lda = lda; g.stride_a = stride_a;
  g.b = B.data(); g.ldb = ldb; g.stride_b = stride_b;
  g.c = C.data(); g.ldc = ldc; g.stride_c = stride_c;
  g.bias = c.bias ? bias.data() : nullptr;
  g.alpha = c.alpha; g.beta = c.beta;
  const std::string what = describe(c);
  ath_status st = ath_cpu_gemm(&g);
  ATH_EXPECT(st == ATH_OK, "%s: status %d: %s", what.c_str(), (int)st, ath_last_error());

  // Tolerance per element, relative to mag = |alpha| sum_k |a b| + |beta c| + |bias|: F32
  // accumulation over K (worst-case bound ~K eps) plus the rounding of a 16-bit C.
  const double acc_tol = 2.4e-7 * static_cast<double>(c.k + 16);
  const double out_eps = c.dt_c == ATH_BF16 ? 1.0 / 256 : c.dt_c == ATH_F16 ? 1.0 / 2048 : 0.0;
  int64_t bad = 0;
  double max_err = 0;
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        double s = 0, mag = 0;
        for (int64_t p = 0; p < c.k; ++p) {
          const double av = A.get(b * stride_a + (c.ta ? p * lda + i : i * lda + p));
          const double bv = B.get(b * stride_b + (c.tb ? j * ldb + p : p * ldb + j));
          s += av * bv;
          mag += std::fabs(av * bv);
        }
        const int64_t ci = b * stride_c + i * ldc + j;
        double ref = c.alpha * s;
        mag *= std::fabs(c.alpha);
        if (c.beta != 0.0f) {
          ref += static_cast<double>(c.beta) * C0.get(ci);
          mag += std::fabs(static_cast<double>(c.beta) * C0.get(ci));
        }
        if (c.bias) {
          ref += bias.get(j);
          mag += std::fabs(bias.get(j));
        }
        const double got = C.get(ci);
        const double err = std::fabs(got - ref);
        const bool ok = c.ints ? got == ref : err <= acc_tol * mag + out_eps * (std::fabs(ref) + acc_tol * mag) + 1e-30;
        if (!(err <= max_err)) max_err = err;
        if (!ok) {
          if (++bad <= 3)
            ATH_EXPECT(ok, "%s: C[b=%lld, i=%lld, j=%lld] = %.9g, reference %.9g (err %.3g, mag %.3g)", what.c_str(),
                       (long long)b, (long long)i, (long long)j, got, ref, err, mag);
        }
      }
    }
  }
  ATH_EXPECT(bad == 0, "%s: %lld of %lld elements wrong, max abs error %.3g", what.c_str(), (long long)bad,
             (long long)(c.batch * c.m * c.n), max_err);

  // The padding of C (right of column n, between batch entries) must be untouched.
  int64_t touched = 0;
  for (int64_t idx = 0; idx < C.n; ++idx) {
    const int64_t b = idx / stride_c, r = idx % stride_c, i = r / ldc, j = r % ldc;
    const bool inside = b < c.batch && i < c.m && j < c.n;
    const size_t esz = ath_dtype_size(c.dt_c);
    if (!inside && std::memcmp(&C.bytes[idx * esz], &C0.bytes[idx * esz], esz) != 0) ++touched;
  }
  ATH_EXPECT(touched == 0, "%s: %lld padding elements of C were overwritten", what.c_str(), (long long)touched);

  std::vector<float> out(static_cast<size_t>(C.n));
  for (int64_t i = 0; i < C.n; ++i) out[i] = C.get(i);
  return out;
}

struct Shape {
  int64_t m, n, k;
};

// Awkward sizes around every ISA's register tile (4x8, 6x16, 12x32); the small-M (skinny) path
// (M <= 8: every row-group width, K tails, K past its 256-row sweeps) and its boundary; past the K
// blocks (256/384) and the B block widths (256..384).
const Shape kShapes[] = {{1, 1, 1},     {7, 33, 127},  {33, 7, 1},    {127, 1, 33},  {1, 127, 7},  {2, 3, 4},
                         {4, 130, 16},  {5, 100, 50},  {6, 90, 600},  {8, 300, 64},  {9, 64, 20},  {16, 65, 33},
                         {13, 45, 300}, {64, 64, 64},  {25, 401, 17}, {37, 70, 777}, {12, 32, 385}, {3, 600, 70}};

}  // namespace

ATH_TEST(cpu_gemm_f32_shapes_and_transposes) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (const Shape& s : kShapes)
      for (int t = 0; t < 4; ++t) {
        Case c{s.m, s.n, s.k};
        c.ta = t & 1;
        c.tb = t >> 1;
        c.pad = t;  // exercise ld > row length on some
        run_case(c);
      }
  }
}

ATH_TEST(cpu_gemm_alpha_beta_bias) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (float beta : {0.0f, 1.0f, -0.75f}) {
      for (int t = 0; t < 4; ++t) {
        Case c{29, 51, 400};  // two K blocks: the first applies beta, the second accumulates
        c.ta = t & 1;
        c.tb = t >> 1;
        c.alpha = 1.5f;
        c.beta = beta;
        c.bias = true;
        c.pad = 5;
        run_case(c);
      }
    }
  }
}

ATH_TEST(cpu_gemm_batched_strided) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    // batch 3 on 2 threads: batches are cut into regions; large enough to run threaded
    for (int t = 0; t < 4; ++t) {
      Case c{150, 170, 90, 3};
      c.ta = t & 1;
      c.tb = t >> 1;
      c.beta = 0.5f;
      c.bias = true;
      c.pad = 3;
      c.batch_pad = 11;
      run_case(c);
    }
    Case broadcast{19, 45, 38, 5};
    broadcast.broadcast_b = true;
    broadcast.tb = 1;
    broadcast.batch_pad = 7;
    run_case(broadcast);
    Case many{9, 20, 30, 17};  // more batch entries than threads
    many.alpha = -2.0f;
    many.bias = true;
    run_case(many);
  }
}

ATH_TEST(cpu_gemm_dtypes) {
  const int combos[][2] = {{ATH_BF16, ATH_F32}, {ATH_BF16, ATH_BF16}, {ATH_F16, ATH_F32}, {ATH_F16, ATH_F16}};
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (const auto& dt : combos) {
      for (int t = 0; t < 4; ++t) {
        for (const Shape& s : {Shape{7, 33, 127}, Shape{45, 37, 500}, Shape{1, 70, 19}}) {
          Case c{s.m, s.n, s.k};
          c.dt_ab = dt[0];
          c.dt_c = dt[1];
          c.ta = t & 1;
          c.tb = t >> 1;
          c.beta = t == 3 ? 0.0f : 0.5f;
          c.bias = t != 1;
          c.pad = 2;
          run_case(c);
        }
      }
      Case batched{40, 50, 60, 2};  // low-precision C over several batch entries
      batched.dt_ab = dt[0];
      batched.dt_c = dt[1];
      batched.batch_pad = 3;
      batched.bias = true;
      run_case(batched);
    }
  }
}

ATH_TEST(cpu_gemm_large_blocks) {
  // Crosses the A block (mc = 512/1536 rows) and, with BF16/F16 C, the column chunks of the F32
  // accumulation buffer (4 MiB per thread: one thread, so that the region is 1200 x 2000).
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    {
      ThreadsScope one(1);
      Case chunked{1200, 2000, 10};
      chunked.dt_ab = ATH_F16;
      chunked.dt_c = ATH_F16;
      chunked.beta = -1.0f;
      chunked.bias = true;
      chunked.tb = 1;
      run_case(chunked);
    }
    Case tall{1601, 37, 19};
    tall.ta = 1;
    tall.bias = true;
    run_case(tall);
    Case wide{70, 2500, 40};
    wide.dt_ab = ATH_BF16;
    wide.dt_c = ATH_BF16;
    wide.tb = 1;
    wide.beta = 1.0f;
    run_case(wide);
  }
}

ATH_TEST(cpu_gemm_exact_small_integers) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (int t = 0; t < 4; ++t) {
      // F32: |sum| <= 9 K + ... far below 2^24, every partial sum exact
      Case f{37, 53, 801};
      f.ta = t & 1;
      f.tb = t >> 1;
      f.ints = true;
      f.beta = 2.0f;
      f.bias = true;
      run_case(f);
      // skinny path (small M)
      Case sk{7, 75, 333};
      sk.ta = t & 1;
      sk.tb = t >> 1;
      sk.ints = true;
      sk.beta = 1.0f;
      run_case(sk);
      // BF16 inputs hold small integers exactly; F32 C
      Case b{23, 41, 390};
      b.dt_ab = ATH_BF16;
      b.ta = t & 1;
      b.tb = t >> 1;
      b.ints = true;
      b.bias = true;
      run_case(b);
      // BF16 C: results must stay within bf16's exact integers (|x| <= 256): K = 12 -> |sum| <= 108
      Case bc{17, 35, 12};
      bc.dt_ab = ATH_BF16;
      bc.dt_c = ATH_BF16;
      bc.ta = t & 1;
      bc.tb = t >> 1;
      bc.ints = true;
      bc.beta = 1.0f;
      bc.bias = true;
      run_case(bc);
      // F16 C: exact integers up to 2048
      Case hc{19, 33, 150};
      hc.dt_ab = ATH_F16;
      hc.dt_c = ATH_F16;
      hc.ta = t & 1;
      hc.tb = t >> 1;
      hc.ints = true;
      run_case(hc);
    }
  }
}

ATH_TEST(cpu_gemm_k_zero_and_alpha_zero) {
  for (int dt : {ATH_F32, ATH_BF16}) {
    Case k0{9, 17, 0, 2};
    k0.dt_ab = dt;
    k0.dt_c = dt;
    k0.bias = true;  // beta == 0: C holds NaN and must become exactly the bias
    k0.batch_pad = 4;
    run_case(k0);
    k0.beta = 0.5f;
    run_case(k0);
  }
  // alpha == 0: A and B are not read (NaN there must not reach C)
  std::vector<float> a(6 * 5, NAN), b(5 * 4, NAN), c(6 * 4, 2.0f), bias = {1, 2, 3, 4};
  ath_gemm_args g{};
  g.m = 6; g.n = 4; g.k = 5; g.batch = 1;
  g.dtype_ab = ATH_F32; g.dtype_c = ATH_F32;
  g.a = a.data(); g.lda = 5; g.b = b.data(); g.ldb = 4; g.c = c.data(); g.ldc = 4;
  g.bias = bias.data();
  g.alpha = 0.0f; g.beta = 3.0f;
  ATH_EXPECT(ath_cpu_gemm(&g) == ATH_OK, "alpha=0: %s", ath_last_error());
  for (int i = 0; i < 24; ++i) ATH_EXPECT(c[i] == 6.0f + bias[i % 4], "alpha=0: c[%d] = %g", i, c[i]);
  // m, n or batch == 0: nothing to do, nothing read or written (null pointers allowed)
  ath_gemm_args e{};
  e.m = 0; e.n = 5; e.k = 3; e.batch = 1; e.lda = 3; e.ldb = 5; e.ldc = 5; e.alpha = 1;
  ATH_EXPECT(ath_cpu_gemm(&e) == ATH_OK, "m=0: %s", ath_last_error());
}

ATH_TEST(cpu_gemm_deterministic) {
  const int threads = ath_cpu_threads();  // the count `first` ran with
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    for (int t = 0; t < 10; ++t) {
      Case c{301, 257, 700};
      if (t >= 4) c = Case{5, 3000, 500};  // skinny path, columns split between threads
      if (t >= 8) c = Case{70, 90, 400, 3};  // batch entries cut into regions
      c.ta = t & 1;
      c.tb = (t >> 1) & 1;
      c.beta = 0.25f;
      c.bias = true;
      const std::vector<float> first = run_case(c, 7);
      const std::vector<float> second = run_case(c, 7);
      ATH_EXPECT(std::memcmp(first.data(), second.data(), first.size() * 4) == 0, "%s: two runs differ",
                 describe(c).c_str());
      // The partition never changes an element's summation order: any thread count gives the
      // same bits (odd counts cut C into other grids).
      for (int n : {1, 3, 7}) {
        std::vector<float> other;
        {
          ThreadsScope scope(n);
          other = run_case(c, 7);
        }
        ATH_EXPECT(std::memcmp(first.data(), other.data(), first.size() * 4) == 0,
                   "%s: %d threads and %d threads differ", describe(c).c_str(), threads, n);
      }
    }
  }
}

ATH_TEST(cpu_gemm_invalid_arguments) {
  float a[64] = {}, b[64] = {}, c[64] = {};
  auto base = [&] {
    ath_gemm_args g{};
    g.m = 4; g.n = 4; g.k = 4; g.batch = 1;
    g.dtype_ab = ATH_F32; g.dtype_c = ATH_F32;
    g.a = a; g.lda = 4; g.b = b; g.ldb = 4; g.c = c; g.ldc = 4;
    g.alpha = 1.0f;
    return g;
  };
  ath_gemm_args ok = base();
  ATH_EXPECT(ath_cpu_gemm(&ok) == ATH_OK, "valid arguments rejected: %s", ath_last_error());
  ATH_EXPECT(ath_cpu_gemm(nullptr) == ATH_ERR_INVALID, "null args accepted");

  struct Bad {
    const char* name;
    void (*edit)(ath_gemm_args&);
    const char* must_mention;
  };
  const Bad bad[] = {
      {"m < 0", [](ath_gemm_args& g) { g.m = -1; }, "m=-1"},
      {"n < 0", [](ath_gemm_args& g) { g.n = -2; }, "n=-2"},
      {"k < 0", [](ath_gemm_args& g) { g.k = -3; }, "k=-3"},
      {"batch < 0", [](ath_gemm_args& g) { g.batch = -1; }, "batch=-1"},
      {"dtype_ab I32", [](ath_gemm_args& g) { g.dtype_ab = ATH_I32; }, "dtype_ab"},
      {"dtype_ab unknown", [](ath_gemm_args& g) { g.dtype_ab = 42; }, "dtype_ab=42"},
      {"dtype_c mismatch", [](ath_gemm_args& g) { g.dtype_c = ATH_BF16; }, "dtype_c"},
      {"dtype_c f16 with bf16", [](ath_gemm_args& g) { g.dtype_ab = ATH_BF16; g.dtype_c = ATH_F16; }, "dtype_c"},
      {"trans_a 2", [](ath_gemm_args& g) { g.trans_a = 2; }, "trans_a=2"},
      {"trans_b -1", [](ath_gemm_args& g) { g.trans_b = -1; }, "trans_b=-1"},
      {"lda small", [](ath_gemm_args& g) { g.lda = 3; }, "lda=3"},
      {"lda small transposed", [](ath_gemm_args& g) { g.trans_a = 1; g.m = 5; g.lda = 4; }, "lda=4"},
      {"ldb small", [](ath_gemm_args& g) { g.ldb = 2; }, "ldb=2"},
      {"ldb small transposed", [](ath_gemm_args& g) { g.trans_b = 1; g.k = 6; g.lda = 6; g.ldb = 4; }, "ldb=4"},
      {"ldc small", [](ath_gemm_args& g) { g.ldc = 3; }, "ldc=3"},
      {"null a", [](ath_gemm_args& g) { g.a = nullptr; }, "a is null"},
      {"null b", [](ath_gemm_args& g) { g.b = nullptr; }, "b is null"},
      {"null c", [](ath_gemm_args& g) { g.c = nullptr; }, "c is null"},
      {"overlapping C batches", [](ath_gemm_args& g) { g.batch = 2; g.stride_a = 16; g.stride_b = 16; g.stride_c = 8; }, "stride_c=8"},
      {"negative stride", [](ath_gemm_args& g) { g.batch = 2; g.stride_a = -16; g.stride_c = 16; }, "stride_a=-16"},
  };
  for (const Bad& t : bad) {
    ath_gemm_args g = base();
    t.edit(g);
    const ath_status st = ath_cpu_gemm(&g);
    const std::string msg = ath_last_error();
    ATH_EXPECT(st == ATH_ERR_INVALID, "%s: status %d (%s)", t.name, (int)st, msg.c_str());
    ATH_EXPECT(msg.find("ath_cpu_gemm") != std::string::npos && msg.find(t.must_mention) != std::string::npos,
               "%s: message '%s' should name the op and '%s'", t.name, msg.c_str(), t.must_mention);
  }
}

// Tests of ath_cpu_gemm's GELU epilogues (athanor.h, ath_gemm_epilogue) against the two-op
// sequences they replace, bit for bit, under every ISA this CPU supports:
//   GELU:          C, aux  ==  GEMM into C (aux = that output), then ath_cpu_activation_fwd (GELU)
//   GELU_BACKWARD: C       ==  GEMM into C, then ath_cpu_activation_bwd (GELU, x = aux, dout = C)
// on contiguous C (one activation call over the whole buffer, batches included) and on padded C
// (one activation call per row; the padding must survive), with bias, beta, alpha, K == 0, every
// dtype pair and shapes with tails around the activation's 1024-element blocks; results do not
// depend on the thread count; argument checks of the two new fields.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "tests/testing.h"

namespace {

using ath::testing::format;
using ath::testing::HostBuf;
using ath::testing::Rng;

struct EpiCase {
  int64_t m, n, k, batch = 1;
  int dt_ab = ATH_F32, dt_c = ATH_F32;
  int ta = 0, tb = 0;
  float alpha = 1.0f, beta = 0.0f;
  bool bias = true;
  int64_t pad = 0;  // extra elements per row of C (and aux): C is then not contiguous
};

std::string describe(const EpiCase& c, int epi) {
  return format("%s epi=%d m=%lld n=%lld k=%lld batch=%lld ab=%s c=%s ta=%d tb=%d alpha=%g beta=%g bias=%d pad=%lld",
                ath_cpu_isa(), epi, (long long)c.m, (long long)c.n, (long long)c.k, (long long)c.batch,
                ath::testing::dtype_name(c.dt_ab), ath::testing::dtype_name(c.dt_c), c.ta, c.tb, c.alpha, c.beta,
                c.bias ? 1 : 0, (long long)c.pad);
}

struct Operands {
  HostBuf a, b, c, bias, aux;
  int64_t lda, ldb, ldc, stride_c;
};

Operands make(const EpiCase& c, uint64_t seed) {
  Rng rng(seed);
  Operands o;
  o.lda = std::max<int64_t>(1, c.ta ? c.m : c.k);
  o.ldb = std::max<int64_t>(1, c.tb ? c.k : c.n);
  o.ldc = c.n + c.pad;
  o.stride_c = c.m * o.ldc;
  o.a = HostBuf(c.dt_ab, c.batch * c.m * c.k);
  o.b = HostBuf(c.dt_ab, c.batch * c.k * c.n);
  o.c = HostBuf(c.dt_c, c.batch * o.stride_c);
  o.bias = HostBuf(c.dt_c, c.n);
  o.aux = HostBuf(c.dt_c, c.batch * o.stride_c);
  // Pre-activations around [-4, 4]: GELU's curved part and both tails.
  o.a.fill_uniform(rng, -1.5, 1.5);
  o.b.fill_uniform(rng, -1.5, 1.5);
  o.c.fill_uniform(rng, -2, 2);
  o.bias.fill_uniform(rng, -2, 2);
  o.aux.fill_uniform(rng, -4, 4);  // GELU_BACKWARD's input; GELU overwrites it
  return o;
}

ath_gemm_args args(const EpiCase& c, Operands& o, void* cbuf, int epi, void* aux) {
  ath_gemm_args g{};
  g.m = c.m; g.n = c.n; g.k = c.k; g.batch = c.batch;
  g.dtype_ab = c.dt_ab; g.dtype_c = c.dt_c;
  g.trans_a = c.ta; g.trans_b = c.tb;
  g.a = o.a.data(); g.lda = o.lda; g.stride_a = c.m * c.k;
  g.b = o.b.data(); g.ldb = o.ldb; g.stride_b = c.k * c.n;
  g.c = cbuf; g.ldc = o.ldc; g.stride_c = o.stride_c;
  g.bias = c.bias ? o.bias.data() : nullptr;
  g.alpha = c.alpha; g.beta = c.beta;
  g.epilogue = epi;
  g.aux = aux;
  return g;
}

// Applies the activation op as a caller of the unfused sequence would: over the whole contiguous
// buffer, or row by row when C is padded.
void activation_ref(const EpiCase& c, const Operands& o, bool backward, void* x, void* dout_and_out) {
  const int64_t rows = c.pad == 0 ? 1 : c.batch * c.m;
  const int64_t len = c.pad == 0 ? c.batch * c.m * c.n : c.n;
  const size_t es = ath_dtype_size(c.dt_c);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t off = r * o.ldc;  // with pad == 0 there is one row at 0
    ath_activation_args a{};
    a.n = len;
    a.dtype = c.dt_c;
    a.act = ATH_ACT_GELU_TANH;
    a.x = static_cast<const char*>(backward ? x : dout_and_out) + off * es;
    if (!backward) {
      a.out = static_cast<char*>(dout_and_out) + off * es;
      ATH_EXPECT_OK(ath_cpu_activation_fwd(&a));
    } else {
      a.dout = static_cast<const char*>(dout_and_out) + off * es;
      a.dx = static_cast<char*>(dout_and_out) + off * es;
      ATH_EXPECT_OK(ath_cpu_activation_bwd(&a));
    }
  }
}

void check(const EpiCase& c, int epi, uint64_t seed) {
  const std::string what = describe(c, epi);
  Operands o = make(c, seed);
  // Unfused: the plain GEMM, then the activation op.
  HostBuf ref_c = o.c, ref_aux = o.aux;
  ath_gemm_args plain = args(c, o, ref_c.data(), ATH_GEMM_EPI_NONE, nullptr);
  ATH_EXPECT_OK(ath_cpu_gemm(&plain));
  if (epi == ATH_GEMM_EPI_GELU) {
    for (int64_t bt = 0; bt < c.batch; ++bt)  // aux = the pre-activation (inside the rows only)
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.n; ++j) {
          const int64_t e = bt * o.stride_c + i * o.ldc + j;
          ref_aux.set(e, ref_c.get(e));
        }
    activation_ref(c, o, false, nullptr, ref_c.data());
  } else {
    activation_ref(c, o, true, ref_aux.data(), ref_c.data());
  }
  // Fused.
  HostBuf got_c = o.c, got_aux = o.aux;
  ath_gemm_args fused = args(c, o, got_c.data(), epi, got_aux.data());
  ATH_EXPECT_OK(ath_cpu_gemm(&fused));
  int64_t bad = 0, first = -1;
  for (int64_t e = 0; e < got_c.n; ++e) {
    const bool same = std::memcmp(&got_c.bytes[e * ath_dtype_size(c.dt_c)], &ref_c.bytes[e * ath_dtype_size(c.dt_c)],
                                  ath_dtype_size(c.dt_c)) == 0;
    if (!same && bad++ == 0) first = e;
  }
  ATH_EXPECT(bad == 0, "%s: C differs from GEMM + activation op in %lld elements, first %lld: %.9g vs %.9g",
             what.c_str(), (long long)bad, (long long)first, first >= 0 ? got_c.get(first) : 0.0,
             first >= 0 ? ref_c.get(first) : 0.0);
  ATH_EXPECT(got_aux.same_bits(ref_aux), "%s: aux differs from the pre-activation (or was touched outside C)",
             what.c_str());
  // The epilogue did something: GELU(x) != x for some element (guards against a reference that
  // would silently match a missing epilogue).
  HostBuf plain_c = o.c;
  ath_gemm_args p2 = args(c, o, plain_c.data(), ATH_GEMM_EPI_NONE, nullptr);
  ATH_EXPECT_OK(ath_cpu_gemm(&p2));
  ATH_EXPECT(!plain_c.same_bits(got_c), "%s: the epilogue left C as the plain GEMM's", what.c_str());
}

const EpiCase kCases[] = {
    // contiguous C, tails around 1024-element blocks and the register tiles
    {7, 300, 33},
    {1, 1100, 5},
    {33, 127, 64, 1, ATH_BF16, ATH_BF16},
    {33, 127, 64, 1, ATH_F16, ATH_F16, 1, 1},
    {19, 96, 40, 1, ATH_BF16, ATH_F32, 0, 1},
    {5, 77, 31, 3, ATH_F32, ATH_F32, 1, 0, 0.5f, 0.75f},
    {5, 77, 31, 3, ATH_BF16, ATH_BF16, 0, 0, 1.0f, -1.0f},
    {6, 64, 0, 1, ATH_F32, ATH_F32, 0, 0, 1.0f, 0.5f},        // K == 0: C = beta C + bias, then the epilogue
    {4, 50, 9, 1, ATH_BF16, ATH_BF16, 0, 0, 0.0f, 1.0f},      // alpha == 0
    // padded C: row by row
    {9, 1030, 17, 2, ATH_F32, ATH_F32, 0, 1, 1.0f, 0.0f, true, 5},
    {13, 45, 70, 1, ATH_BF16, ATH_BF16, 1, 0, 1.0f, 0.25f, true, 3},
    {13, 45, 70, 2, ATH_F16, ATH_F32, 0, 0, 1.0f, 0.0f, false, 8},
};

}  // namespace

ATH_TEST(cpu_gemm_epilogue_gelu_matches_gemm_then_activation) {
  ath::testing::for_each_isa([](const char*) {
    uint64_t seed = 1;
    for (const EpiCase& c : kCases) check(c, ATH_GEMM_EPI_GELU, seed++);
  });
}

ATH_TEST(cpu_gemm_epilogue_gelu_backward_matches_gemm_then_activation_backward) {
  ath::testing::for_each_isa([](const char*) {
    uint64_t seed = 100;
    for (const EpiCase& c : kCases) check(c, ATH_GEMM_EPI_GELU_BACKWARD, seed++);
  });
}

ATH_TEST(cpu_gemm_epilogue_gelu_without_aux_and_any_thread_count) {
  // Large enough to be cut between threads (the GEMM and the epilogue pass).
  const EpiCase c{96, 2000, 64, 1, ATH_BF16, ATH_BF16};
  std::vector<HostBuf> results;
  for (int threads : {1, 3, 8}) {
    ath::testing::with_threads(threads, [&] {
      Operands o = make(c, 7);
      HostBuf with_aux = o.c, without_aux = o.c;
      ath_gemm_args g = args(c, o, with_aux.data(), ATH_GEMM_EPI_GELU, o.aux.data());
      ATH_EXPECT_OK(ath_cpu_gemm(&g));
      g = args(c, o, without_aux.data(), ATH_GEMM_EPI_GELU, nullptr);
      ATH_EXPECT_OK(ath_cpu_gemm(&g));
      ATH_EXPECT(with_aux.same_bits(without_aux), "threads=%d: C depends on whether aux is written", threads);
      results.push_back(with_aux);
    });
  }
  for (size_t i = 1; i < results.size(); ++i)
    ATH_EXPECT(results[i].same_bits(results[0]), "thread count %zu gives other bits", i);
}

ATH_TEST(cpu_gemm_epilogue_argument_checks) {
  const EpiCase c{4, 8, 4};
  Operands o = make(c, 3);
  ath_gemm_args g = args(c, o, o.c.data(), 3, o.aux.data());
  ATH_EXPECT_INVALID(ath_cpu_gemm(&g), "epilogue 3");
  ATH_EXPECT(std::string(ath_last_error()).find("epilogue=3") != std::string::npos, "%s", ath_last_error());
  g = args(c, o, o.c.data(), -1, nullptr);
  ATH_EXPECT_INVALID(ath_cpu_gemm(&g), "epilogue -1");
  g = args(c, o, o.c.data(), ATH_GEMM_EPI_GELU_BACKWARD, nullptr);
  ATH_EXPECT_INVALID(ath_cpu_gemm(&g), "GELU_BACKWARD without aux");
  ATH_EXPECT(std::string(ath_last_error()).find("aux is null") != std::string::npos, "%s", ath_last_error());
  g = args(c, o, o.c.data(), ATH_GEMM_EPI_GELU, o.c.data());
  ATH_EXPECT_INVALID(ath_cpu_gemm(&g), "aux == c");
  g = args(c, o, o.c.data(), ATH_GEMM_EPI_NONE, o.c.data());  // NONE ignores aux
  ATH_EXPECT_OK(ath_cpu_gemm(&g));
}

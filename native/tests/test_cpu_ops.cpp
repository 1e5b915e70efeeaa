// Tests of the CPU ops (everything but GEMM) against plain double-precision references written
// here, on awkward shapes, for every activation dtype and every ISA this CPU has (scalar, avx2,
// avx512 through ath_cpu_set_isa). Backward references are themselves checked against central
// differences of the forward references; every op is run twice (and with 1 and N threads where
// that must not matter) and compared bit for bit; bad arguments must return ATH_ERR_INVALID.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "common/dtype.h"
#include "common/philox.h"
#include "testing.h"

namespace {

using ath::testing::dtype_name;
using ath::testing::for_each_isa;
using ath::testing::format;
using ath::testing::HostBuf;
using ath::testing::kFloatDtypes;
using ath::testing::Rng;
using ath::testing::with_threads;

// ------------------------------------------------------------------ helpers

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

bool f32_bits_equal(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// Per-dtype tolerance for values of magnitude about 1 after one rounding of a well-conditioned F32 result.
double tol_for(int dt, double f32_tol) {
  return dt == ATH_F32 ? f32_tol : dt == ATH_BF16 ? 1.6e-2 : 2.5e-3;
}

// ------------------------------------------------------------------ attention

struct AttnShape {
  int64_t B, Hq, Hkv, Tq, Tk, D;
  int causal;
  int layout;  // 0: (B, H, T, D) contiguous; 1: (B, T, H, D); 2: (B, H, T, D) with padded rows
};

struct AttnStrides {
  int64_t sb, sh, st, total;
};

AttnStrides attn_strides(int layout, int64_t B, int64_t H, int64_t T, int64_t D) {
  switch (layout) {
    case 1: return {T * H * D, D, H * D, B * T * H * D};
    case 2: {
      const int64_t st = D + 3, sh = T * st + 5;
      return {H * sh + 7, sh, st, B * (H * sh + 7)};
    }
    default: return {H * T * D, T * D, D, B * H * T * D};
  }
}

struct AttnData {
  AttnShape s;
  int dtype;
  float scale;
  AttnStrides qs, ks, os;
  HostBuf q, k, v, o, dout, dq, dk, dv;
  std::vector<float> lse;

  AttnData(const AttnShape& shape, int dt, uint64_t seed) : s(shape), dtype(dt) {
    qs = attn_strides(s.layout, s.B, s.Hq, s.Tq, s.D);
    ks = attn_strides(s.layout, s.B, s.Hkv, s.Tk, s.D);
    os = qs;
    scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.D)));
    q = HostBuf(dt, qs.total);
    k = HostBuf(dt, ks.total);
    v = HostBuf(dt, ks.total);
    o = HostBuf(dt, os.total);
    dout = HostBuf(dt, os.total);
    dq = HostBuf(dt, qs.total);
    dk = HostBuf(dt, ks.total);
    dv = HostBuf(dt, ks.total);
    Rng rng(seed);
    // Larger q/k spread than N(0,1)/sqrt(D) makes the softmax peaky enough to test the max logic.
    q.fill_uniform(rng, -2.0, 2.0);
    k.fill_uniform(rng, -2.0, 2.0);
    v.fill_uniform(rng, -1.0, 1.0);
    dout.fill_uniform(rng, -1.0, 1.0);
    o.fill(NAN);  // every written row must be overwritten
    dq.fill(NAN);
    dk.fill(NAN);
    dv.fill(NAN);
    lse.assign(static_cast<size_t>(std::max<int64_t>(1, s.B * s.Hq * s.Tq)), NAN);
  }

  ath_attention_args args() {
    ath_attention_args a{};
    a.batch = s.B; a.heads_q = s.Hq; a.heads_kv = s.Hkv; a.tq = s.Tq; a.tk = s.Tk; a.head_dim = s.D;
    a.dtype = dtype; a.causal = s.causal; a.scale = scale;
    a.q = q.data(); a.q_sb = qs.sb; a.q_sh = qs.sh; a.q_st = qs.st;
    a.k = k.data(); a.k_sb = ks.sb; a.k_sh = ks.sh; a.k_st = ks.st;
    a.v = v.data(); a.v_sb = ks.sb; a.v_sh = ks.sh; a.v_st = ks.st;
    a.o = o.data(); a.o_sb = os.sb; a.o_sh = os.sh; a.o_st = os.st;
    a.lse = lse.data();
    a.dout = dout.data(); a.dq = dq.data(); a.dk = dk.data(); a.dv = dv.data();
    return a;
  }
  int64_t qi(int64_t b, int64_t h, int64_t t, int64_t d) const { return b * qs.sb + h * qs.sh + t * qs.st + d; }
  int64_t ki(int64_t b, int64_t h, int64_t t, int64_t d) const { return b * ks.sb + h * ks.sh + t * ks.st + d; }
};

// Double-precision reference attention on dense (B, H, T, D) arrays.
struct AttnRef {
  int64_t B, Hq, Hkv, Tq, Tk, D;
  bool causal;
  double scale;
  std::vector<double> q, k, v, dout, o_in;  // inputs (o_in: the o the backward receives)
  std::vector<double> o, lse, dq, dk, dv;

  bool visible(int64_t i, int64_t j) const { return !causal || j <= i + (Tk - Tq); }
  double& at(std::vector<double>& x, int64_t H, int64_t T, int64_t b, int64_t h, int64_t t, int64_t d) const {
    return x[static_cast<size_t>(((b * H + h) * T + t) * D + d)];
  }
  double atc(const std::vector<double>& x, int64_t H, int64_t T, int64_t b, int64_t h, int64_t t, int64_t d) const {
    return x[static_cast<size_t>(((b * H + h) * T + t) * D + d)];
  }
  // probabilities of query row (b, h, i) over keys, exact.
  std::vector<double> probs(int64_t b, int64_t h, int64_t i, double* lse_out) const {
    const int64_t kvh = h / (Hq / Hkv);
    std::vector<double> p(static_cast<size_t>(Tk), 0.0);
    double m = -INFINITY;
    for (int64_t j = 0; j < Tk; ++j) {
      if (!visible(i, j)) continue;
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += atc(q, Hq, Tq, b, h, i, d) * atc(k, Hkv, Tk, b, kvh, j, d);
      p[static_cast<size_t>(j)] = s * scale;
      m = std::max(m, s * scale);
    }
    if (m == -INFINITY) {
      *lse_out = -INFINITY;
      return std::vector<double>(static_cast<size_t>(Tk), 0.0);
    }
    double l = 0;
    for (int64_t j = 0; j < Tk; ++j) {
      if (!visible(i, j)) { p[static_cast<size_t>(j)] = 0; continue; }
      p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - m);
      l += p[static_cast<size_t>(j)];
    }
    for (auto& x : p) x /= l;
    *lse_out = m + std::log(l);
    return p;
  }
  void forward() {
    o.assign(static_cast<size_t>(B * Hq * Tq * D), 0.0);
    lse.assign(static_cast<size_t>(B * Hq * Tq), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t i = 0; i < Tq; ++i) {
          double L;
          auto p = probs(b, h, i, &L);
          lse[static_cast<size_t>((b * Hq + h) * Tq + i)] = L;
          const int64_t kvh = h / (Hq / Hkv);
          for (int64_t d = 0; d < D; ++d) {
            double acc = 0;
            for (int64_t j = 0; j < Tk; ++j) acc += p[static_cast<size_t>(j)] * atc(v, Hkv, Tk, b, kvh, j, d);
            at(o, Hq, Tq, b, h, i, d) = acc;
          }
        }
  }
  // loss = sum(dout * o(q, k, v)) for the finite-difference check
  double loss() {
    forward();
    double s = 0;
    for (size_t i = 0; i < o.size(); ++i) s += o[i] * dout[i];
    return s;
  }
  void backward() {
    dq.assign(q.size(), 0.0);
    dk.assign(k.size(), 0.0);
    dv.assign(v.size(), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h) {
        const int64_t kvh = h / (Hq / Hkv);
        for (int64_t i = 0; i < Tq; ++i) {
          double L;
          auto p = probs(b, h, i, &L);
          double Di = 0;
          for (int64_t d = 0; d < D; ++d) Di += atc(dout, Hq, Tq, b, h, i, d) * atc(o_in, Hq, Tq, b, h, i, d);
          for (int64_t j = 0; j < Tk; ++j) {
            const double pj = p[static_cast<size_t>(j)];
            if (pj == 0) continue;
            double dp = 0;
            for (int64_t d = 0; d < D; ++d) dp += atc(dout, Hq, Tq, b, h, i, d) * atc(v, Hkv, Tk, b, kvh, j, d);
            const double ds = pj * (dp - Di);
            for (int64_t d = 0; d < D; ++d) {
              at(dv, Hkv, Tk, b, kvh, j, d) += pj * atc(dout, Hq, Tq, b, h, i, d);
              at(dq, Hq, Tq, b, h, i, d) += scale * ds * atc(k, Hkv, Tk, b, kvh, j, d);
              at(dk, Hkv, Tk, b, kvh, j, d) += scale * ds * atc(q, Hq, Tq, b, h, i, d);
            }
          }
        }
      }
  }
};

AttnRef make_ref(const AttnData& a) {
  AttnRef r;
  r.B = a.s.B; r.Hq = a.s.Hq; r.Hkv = a.s.Hkv; r.Tq = a.s.Tq; r.Tk = a.s.Tk; r.D = a.s.D;
  r.causal = a.s.causal != 0;
  r.scale = a.scale;
  r.q.resize(static_cast<size_t>(r.B * r.Hq * r.Tq * r.D));
  r.dout.resize(r.q.size());
  r.o_in.resize(r.q.size());
  r.k.resize(static_cast<size_t>(r.B * r.Hkv * r.Tk * r.D));
  r.v.resize(r.k.size());
  for (int64_t b = 0; b < r.B; ++b)
    for (int64_t d = 0; d < r.D; ++d) {
      for (int64_t h = 0; h < r.Hq; ++h)
        for (int64_t t = 0; t < r.Tq; ++t) {
          r.at(r.q, r.Hq, r.Tq, b, h, t, d) = a.q.get(a.qi(b, h, t, d));
          r.at(r.dout, r.Hq, r.Tq, b, h, t, d) = a.dout.get(a.qi(b, h, t, d));
          r.at(r.o_in, r.Hq, r.Tq, b, h, t, d) = a.o.get(a.qi(b, h, t, d));
        }
      for (int64_t h = 0; h < r.Hkv; ++h)
        for (int64_t t = 0; t < r.Tk; ++t) {
          r.at(r.k, r.Hkv, r.Tk, b, h, t, d) = a.k.get(a.ki(b, h, t, d));
          r.at(r.v, r.Hkv, r.Tk, b, h, t, d) = a.v.get(a.ki(b, h, t, d));
        }
    }
  return r;
}

// Gathers a strided (B, H, T, D) tensor into dense order as floats.
std::vector<float> gather(const HostBuf& x, const AttnStrides& st, int64_t B, int64_t H, int64_t T, int64_t D) {
  std::vector<float> r;
  r.reserve(static_cast<size_t>(B * H * T * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) r.push_back(x.get(b * st.sb + h * st.sh + t * st.st + d));
  return r;
}

const AttnShape kAttnShapes[] = {
    {1, 1, 1, 1, 1, 1, 0, 0},      {1, 2, 1, 7, 7, 8, 1, 0},      {2, 4, 2, 33, 33, 64, 1, 1},
    {1, 3, 3, 65, 65, 33, 0, 2},   {1, 2, 2, 130, 130, 64, 1, 0}, {1, 4, 1, 17, 127, 64, 1, 1},
    {2, 2, 1, 127, 17, 128, 1, 2}, {1, 2, 2, 40, 200, 16, 0, 0},  {1, 1, 1, 70, 70, 256, 1, 0},
    {1, 2, 1, 64, 128, 96, 1, 1},  {1, 1, 1, 5, 3, 40, 1, 0},     {1, 2, 2, 129, 1, 7, 0, 2},
};

std::string shape_str(const AttnShape& s, int dt, const char* isa) {
  return format("%s %s B=%lld Hq=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld causal=%d layout=%d", isa, dtype_name(dt),
                (long long)s.B, (long long)s.Hq, (long long)s.Hkv, (long long)s.Tq, (long long)s.Tk, (long long)s.D,
                s.causal, s.layout);
}

ATH_TEST(cpu_attention_fwd_matches_reference) {
  for_each_isa([](const char* isa) {
    uint64_t seed = 1;
    for (const AttnShape& s : kAttnShapes)
      for (int dt : kFloatDtypes) {
        AttnData a(s, dt, seed++);
        ath_attention_args args = a.args();
        ATH_EXPECT_OK(ath_cpu_attention_fwd(&args));
        AttnRef r = make_ref(a);
        r.forward();
        const std::string what = shape_str(s, dt, isa);
        const double tol = tol_for(dt, 2e-5);
        auto got = gather(a.o, a.os, s.B, s.Hq, s.Tq, s.D);
        auto ref = to_float(r.o);
        ATH_EXPECT_CLOSE(got.data(), ref.data(), (int64_t)got.size(), tol, tol, (what + " o").c_str());
        auto lse_ref = to_float(r.lse);
        ATH_EXPECT_CLOSE(a.lse.data(), lse_ref.data(), (int64_t)lse_ref.size(), 2e-5, 2e-5, (what + " lse").c_str());
      }
  });
}

ATH_TEST(cpu_attention_fwd_no_visible_key_gives_zero_and_neg_inf) {
  // Tq > Tk with causal: the first Tq - Tk queries see no key.
  AttnShape s{1, 2, 1, 9, 4, 16, 1, 0};
  for (int dt : kFloatDtypes) {
    AttnData a(s, dt, 7);
    ath_attention_args args = a.args();
    ATH_EXPECT_OK(ath_cpu_attention_fwd(&args));
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 9; ++i) {
        const float l = a.lse[static_cast<size_t>(h * 9 + i)];
        if (i < 5) {
          ATH_EXPECT(std::isinf(l) && l < 0, "%s row %lld: lse %g, expected -inf", dtype_name(dt), (long long)i, l);
          for (int64_t d = 0; d < 16; ++d)
            ATH_EXPECT(a.o.get(a.qi(0, h, i, d)) == 0.0f, "row %lld not zero", (long long)i);
        } else {
          ATH_EXPECT(std::isfinite(l), "row %lld: lse %g", (long long)i, l);
        }
      }
    // lse may be NULL in the forward pass
    args.lse = nullptr;
    ATH_EXPECT_OK(ath_cpu_attention_fwd(&args));
  }
}

ATH_TEST(cpu_attention_bwd_reference_matches_finite_differences) {
  // Validates the double reference backward itself: central differences of the reference loss.
  AttnShape s{1, 2, 1, 5, 6, 3, 1, 0};
  AttnData a(s, ATH_F32, 11);
  AttnRef r = make_ref(a);
  r.forward();
  r.o_in = r.o;  // exact o, as the math assumes
  r.backward();
  const double h = 1e-6;
  auto check = [&](std::vector<double>& x, const std::vector<double>& grad, const char* name) {
    std::vector<float> fd(x.size()), g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double lp = r.loss();
      x[i] = x0 - h;
      const double lm = r.loss();
      x[i] = x0;
      fd[i] = static_cast<float>((lp - lm) / (2 * h));
      g[i] = static_cast<float>(grad[i]);
    }
    ATH_EXPECT_CLOSE(g.data(), fd.data(), (int64_t)fd.size(), 1e-6, 1e-5, name);
  };
  auto dq = r.dq, dk = r.dk, dv = r.dv;
  check(r.q, dq, "dq vs central differences");
  check(r.k, dk, "dk vs central differences");
  check(r.v, dv, "dv vs central differences");
}

ATH_TEST(cpu_attention_bwd_matches_reference) {
  for_each_isa([](const char* isa) {
    uint64_t seed = 100;
    for (const AttnShape& s : kAttnShapes)
      for (int dt : kFloatDtypes) {
        AttnData a(s, dt, seed++);
        ath_attention_args args = a.args();
        ATH_EXPECT_OK(ath_cpu_attention_fwd(&args));
        ATH_EXPECT_OK(ath_cpu_attention_bwd(&args));
        AttnRef r = make_ref(a);  // o_in = the o the op produced (rounded to dtype)
        r.backward();
        const std::string what = shape_str(s, dt, isa);
        // Gradients sum many terms; scale the tolerance by their typical size.
        const double tol = dt == ATH_F32 ? 1e-4 : dt == ATH_BF16 ? 3e-2 : 5e-3;
        auto cmp = [&](const HostBuf& got_buf, const AttnStrides& st, int64_t H, int64_t T, const std::vector<double>& ref,
                       const char* name) {
          auto got = gather(got_buf, st, s.B, H, T, s.D);
          double mx = 0.05;  // floor: a gradient that is 0 exactly (Tk = 1) still carries rounding noise
          for (double x : ref) mx = std::max(mx, std::fabs(x));
          auto rf = to_float(ref);
          ATH_EXPECT_CLOSE(got.data(), rf.data(), (int64_t)got.size(), tol * mx, tol, (what + " " + name).c_str());
        };
        cmp(a.dq, a.qs, s.Hq, s.Tq, r.dq, "dq");
        cmp(a.dk, a.ks, s.Hkv, s.Tk, r.dk, "dk");
        cmp(a.dv, a.ks, s.Hkv, s.Tk, r.dv, "dv");
      }
  });
}

ATH_TEST(cpu_attention_random_shapes) {
  // Random shapes, layouts and masks (fixed seed), forward and backward, every ISA.
  Rng pick(2024);
  std::vector<AttnShape> shapes;
  for (int i = 0; i < 8; ++i) {
    AttnShape s;
    s.B = 1 + pick.below(2);
    s.Hkv = 1 + pick.below(3);
    s.Hq = s.Hkv * (1 + pick.below(3));
    s.Tq = 1 + pick.below(150);
    s.Tk = 1 + pick.below(150);
    s.D = 1 + pick.below(140);
    s.causal = static_cast<int>(pick.below(2));
    s.layout = static_cast<int>(pick.below(3));
    shapes.push_back(s);
  }
  for_each_isa([&](const char* isa) {
    uint64_t seed = 900;
    for (const AttnShape& s : shapes)
      for (int dt : {(int)ATH_F32, (int)ATH_BF16}) {
        AttnData a(s, dt, seed++);
        ath_attention_args args = a.args();
        ATH_EXPECT_OK(ath_cpu_attention_fwd(&args));
        ATH_EXPECT_OK(ath_cpu_attention_bwd(&args));
        AttnRef r = make_ref(a);
        r.forward();
        r.backward();
        const std::string what = shape_str(s, dt, isa);
        const double tol = tol_for(dt, 2e-5);
        auto o = gather(a.o, a.os, s.B, s.Hq, s.Tq, s.D);
        auto oref = to_float(r.o);
        ATH_EXPECT_CLOSE(o.data(), oref.data(), (int64_t)o.size(), tol, tol, (what + " o").c_str());
        const double gtol = dt == ATH_F32 ? 1e-4 : 3e-2;
        auto cmp = [&](const HostBuf& got_buf, const AttnStrides& st, int64_t H, int64_t T, const std::vector<double>& ref,
                       const char* name) {
          auto got = gather(got_buf, st, s.B, H, T, s.D);
          double mx = 0.05;
          for (double x : ref) mx = std::max(mx, std::fabs(x));
          auto rf = to_float(ref);
          ATH_EXPECT_CLOSE(got.data(), rf.data(), (int64_t)got.size(), gtol * mx, gtol, (what + " " + name).c_str());
        };
        cmp(a.dq, a.qs, s.Hq, s.Tq, r.dq, "dq");
        cmp(a.dk, a.ks, s.Hkv, s.Tk, r.dk, "dk");
        cmp(a.dv, a.ks, s.Hkv, s.Tk, r.dv, "dv");
      }
  });
}

ATH_TEST(cpu_attention_deterministic) {
  AttnShape s{2, 4, 2, 150, 150, 64, 1, 1};
  for (int dt : kFloatDtypes) {
    AttnData a(s, dt, 5), b2(s, dt, 5);
    ath_attention_args x = a.args(), y = b2.args();
    ATH_EXPECT_OK(ath_cpu_attention_fwd(&x));
    ATH_EXPECT_OK(ath_cpu_attention_bwd(&x));
    with_threads(1, [&] {
      ATH_EXPECT_OK(ath_cpu_attention_fwd(&y));
      ATH_EXPECT_OK(ath_cpu_attention_bwd(&y));
    });
    ATH_EXPECT(a.o.same_bits(b2.o), "%s: o differs between runs / thread counts", dtype_name(dt));
    ATH_EXPECT(a.lse == b2.lse, "%s: lse differs", dtype_name(dt));
    ATH_EXPECT(a.dq.same_bits(b2.dq) && a.dk.same_bits(b2.dk) && a.dv.same_bits(b2.dv), "%s: grads differ", dtype_name(dt));
  }
}

ATH_TEST(cpu_attention_rejects_bad_arguments) {
  AttnShape s{1, 4, 2, 8, 8, 16, 1, 0};
  AttnData a(s, ATH_F32, 3);
  ATH_EXPECT_INVALID(ath_cpu_attention_fwd(nullptr), "null args");
  auto bad = [&](const char* what, const std::function<void(ath_attention_args&)>& mutate, bool bwd) {
    ath_attention_args x = a.args();
    mutate(x);
    if (bwd) {
      ATH_EXPECT_INVALID(ath_cpu_attention_bwd(&x), what);
    } else {
      ATH_EXPECT_INVALID(ath_cpu_attention_fwd(&x), what);
    }
  };
  bad("Hq % Hkv", [](ath_attention_args& x) { x.heads_kv = 3; }, false);
  bad("heads 0", [](ath_attention_args& x) { x.heads_q = 0; }, false);
  bad("D 0", [](ath_attention_args& x) { x.head_dim = 0; }, false);
  bad("D 257", [](ath_attention_args& x) { x.head_dim = 257; }, false);
  bad("dtype I32", [](ath_attention_args& x) { x.dtype = ATH_I32; }, false);
  bad("dtype 9", [](ath_attention_args& x) { x.dtype = 9; }, false);
  bad("null q", [](ath_attention_args& x) { x.q = nullptr; }, false);
  bad("null o", [](ath_attention_args& x) { x.o = nullptr; }, false);
  bad("negative tq", [](ath_attention_args& x) { x.tq = -1; }, false);
  bad("negative stride", [](ath_attention_args& x) { x.k_st = -16; }, false);
  bad("overlapping o rows", [](ath_attention_args& x) { x.o_st = 8; }, false);
  bad("nan scale", [](ath_attention_args& x) { x.scale = NAN; }, false);
  bad("null lse in bwd", [](ath_attention_args& x) { x.lse = nullptr; }, true);
  bad("null dk in bwd", [](ath_attention_args& x) { x.dk = nullptr; }, true);
  bad("overlapping dq rows", [](ath_attention_args& x) { x.q_sh = 0; }, true);
  const std::string msg = [&] {
    ath_attention_args x = a.args();
    x.heads_kv = 3;
    ath_cpu_attention_fwd(&x);
    return std::string(ath_last_error());
  }();
  ATH_EXPECT(msg.find("heads_q=4") != std::string::npos && msg.find("heads_kv=3") != std::string::npos,
             "message should name the values: %s", msg.c_str());
}

// ------------------------------------------------------------------ layernorm / rmsnorm

struct NormCase {
  int64_t rows, cols;
};
const NormCase kNormCases[] = {{1, 1}, {7, 33}, {33, 127}, {5, 768}, {3, 1031}, {64, 64}};

// Double reference of LayerNorm (rms = false) or RMSNorm (rms = true) forward and backward.
struct NormRef {
  int64_t rows, cols;
  bool rms, has_bias;
  double eps;
  std::vector<double> x, w, b, dout;
  std::vector<double> out, mean, rstd, dx, dw, db;
  void forward() {
    out.assign(x.size(), 0);
    mean.assign(static_cast<size_t>(rows), 0);
    rstd.assign(static_cast<size_t>(rows), 0);
    for (int64_t r = 0; r < rows; ++r) {
      const double* xr = &x[static_cast<size_t>(r * cols)];
      double mu = 0, var = 0;
      if (!rms) {
        for (int64_t c = 0; c < cols; ++c) mu += xr[c];
        mu /= cols;
      }
      for (int64_t c = 0; c < cols; ++c) var += (xr[c] - mu) * (xr[c] - mu);
      var /= cols;
      const double rs = 1.0 / std::sqrt(var + eps);
      mean[static_cast<size_t>(r)] = mu;
      rstd[static_cast<size_t>(r)] = rs;
      for (int64_t c = 0; c < cols; ++c)
        out[static_cast<size_t>(r * cols + c)] =
            (xr[c] - mu) * rs * w[static_cast<size_t>(c)] + (has_bias && !rms ? b[static_cast<size_t>(c)] : 0.0);
    }
  }
  double loss() {
    forward();
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * dout[i];
    return s;
  }
  void backward() {
    forward();
    dx.assign(x.size(), 0);
    dw.assign(static_cast<size_t>(cols), 0);
    db.assign(static_cast<size_t>(cols), 0);
    for (int64_t r = 0; r < rows; ++r) {
      const double mu = mean[static_cast<size_t>(r)], rs = rstd[static_cast<size_t>(r)];
      double mg = 0, mgx = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r * cols + c);
        const double xh = (x[i] - mu) * rs, g = dout[i] * w[static_cast<size_t>(c)];
        mg += g;
        mgx += g * xh;
        dw[static_cast<size_t>(c)] += dout[i] * xh;
        db[static_cast<size_t>(c)] += dout[i];
      }
      mg /= cols;
      mgx /= cols;
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r * cols + c);
        const double xh = (x[i] - mu) * rs, g = dout[i] * w[static_cast<size_t>(c)];
        dx[i] = rs * (g - (rms ? 0.0 : mg) - xh * mgx);
      }
    }
  }
};

std::vector<double> to_double(const HostBuf& b) {
  std::vector<double> r(static_cast<size_t>(b.n));
  for (int64_t i = 0; i < b.n; ++i) r[static_cast<size_t>(i)] = b.get(i);
  return r;
}

void run_norm_test(bool rms) {
  for_each_isa([&](const char* isa) {
    uint64_t seed = rms ? 500 : 400;
    for (const NormCase& nc : kNormCases)
      for (int dt : kFloatDtypes)
        for (int with_bias = 0; with_bias < (rms ? 1 : 2); ++with_bias) {
          const std::string what =
              format("%s %s %s rows=%lld cols=%lld bias=%d", rms ? "rmsnorm" : "layernorm", isa, dtype_name(dt),
                     (long long)nc.rows, (long long)nc.cols, with_bias);
          Rng rng(seed++);
          const int64_t n = nc.rows * nc.cols;
          HostBuf x(dt, n), w(dt, nc.cols), b(dt, nc.cols), out(dt, n), dout(dt, n), dx(dt, n);
          x.fill_uniform(rng, -2.0, 3.0);  // non-zero mean
          w.fill_uniform(rng, 0.5, 1.5);
          b.fill_uniform(rng, -0.5, 0.5);
          dout.fill_uniform(rng, -1.0, 1.0);
          out.fill(NAN);
          dx.fill(NAN);
          std::vector<float> mean(static_cast<size_t>(nc.rows), NAN), rstd(mean);
          std::vector<float> dw(static_cast<size_t>(nc.cols), 0.25f), db(static_cast<size_t>(nc.cols), -0.5f);
          ath_norm_args a{};
          a.rows = nc.rows; a.cols = nc.cols; a.dtype = dt; a.eps = 1e-5f;
          a.x = x.data(); a.weight = w.data(); a.bias = with_bias ? b.data() : nullptr;
          a.out = out.data(); a.mean = mean.data(); a.rstd = rstd.data();
          a.dout = dout.data(); a.dx = dx.data(); a.dweight = dw.data(); a.dbias = with_bias ? db.data() : nullptr;
          ATH_EXPECT_OK(rms ? ath_cpu_rmsnorm_fwd(&a) : ath_cpu_layernorm_fwd(&a));
          ATH_EXPECT_OK(rms ? ath_cpu_rmsnorm_bwd(&a) : ath_cpu_layernorm_bwd(&a));
          NormRef r;
          r.rows = nc.rows; r.cols = nc.cols; r.rms = rms; r.has_bias = with_bias != 0; r.eps = 1e-5;
          r.x = to_double(x); r.w = to_double(w); r.b = to_double(b); r.dout = to_double(dout);
          r.backward();
          const double tol = tol_for(dt, 2e-5);
          auto got = out.f32();
          auto ref = to_float(r.out);
          ATH_EXPECT_CLOSE(got.data(), ref.data(), n, tol * 4, tol, (what + " out").c_str());
          auto rs_ref = to_float(r.rstd);
          ATH_EXPECT_CLOSE(rstd.data(), rs_ref.data(), nc.rows, 1e-5, 1e-5, (what + " rstd").c_str());
          if (!rms) {
            auto mu_ref = to_float(r.mean);
            ATH_EXPECT_CLOSE(mean.data(), mu_ref.data(), nc.rows, 1e-5, 1e-5, (what + " mean").c_str());
          }
          auto gdx = dx.f32();
          auto rdx = to_float(r.dx);
          ATH_EXPECT_CLOSE(gdx.data(), rdx.data(), n, tol * 4, tol * 2, (what + " dx").c_str());
          std::vector<float> rdw(static_cast<size_t>(nc.cols)), rdb(rdw.size());
          for (size_t c = 0; c < rdw.size(); ++c) {
            rdw[c] = static_cast<float>(0.25 + r.dw[c]);
            rdb[c] = static_cast<float>(-0.5 + r.db[c]);
          }
          ATH_EXPECT_CLOSE(dw.data(), rdw.data(), nc.cols, 1e-4 * nc.rows, 1e-4, (what + " dweight (accumulated)").c_str());
          if (with_bias) {
            ATH_EXPECT_CLOSE(db.data(), rdb.data(), nc.cols, 1e-4 * nc.rows, 1e-4, (what + " dbias (accumulated)").c_str());
          } else if (!rms) {
            ATH_EXPECT(db[0] == -0.5f, "%s: dbias touched although NULL was passed", what.c_str());
          }
        }
  });
}

ATH_TEST(cpu_layernorm_matches_reference) { run_norm_test(false); }
ATH_TEST(cpu_rmsnorm_matches_reference) { run_norm_test(true); }

ATH_TEST(cpu_norm_reference_backward_matches_finite_differences) {
  for (int rms = 0; rms < 2; ++rms) {
    NormRef r;
    r.rows = 3; r.cols = 5; r.rms = rms != 0; r.has_bias = true; r.eps = 1e-5;
    Rng rng(77);
    for (int i = 0; i < 15; ++i) { r.x.push_back(rng.uniform(-2, 2)); r.dout.push_back(rng.uniform(-1, 1)); }
    for (int i = 0; i < 5; ++i) { r.w.push_back(rng.uniform(0.5, 1.5)); r.b.push_back(rng.uniform(-1, 1)); }
    r.backward();
    auto dx = r.dx, dw = r.dw, db = r.db;
    auto check = [&](std::vector<double>& v, const std::vector<double>& g, const char* name) {
      std::vector<float> fd(v.size()), gf(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        const double v0 = v[i], h = 1e-6;
        v[i] = v0 + h;
        const double lp = r.loss();
        v[i] = v0 - h;
        const double lm = r.loss();
        v[i] = v0;
        fd[i] = static_cast<float>((lp - lm) / (2 * h));
        gf[i] = static_cast<float>(g[i]);
      }
      ATH_EXPECT_CLOSE(gf.data(), fd.data(), (int64_t)fd.size(), 1e-6, 1e-5, format("%s %s", rms ? "rms" : "ln", name).c_str());
    };
    check(r.x, dx, "dx");
    check(r.w, dw, "dweight");
    if (!rms) check(r.b, db, "dbias");
  }
}

ATH_TEST(cpu_norm_deterministic_and_validates) {
  const int64_t rows = 300, cols = 96;
  for (int rms = 0; rms < 2; ++rms) {
    Rng rng(9);
    HostBuf x(ATH_BF16, rows * cols), w(ATH_BF16, cols), dout(ATH_BF16, rows * cols);
    x.fill_uniform(rng, -1, 1);
    w.fill_uniform(rng, 0, 1);
    dout.fill_uniform(rng, -1, 1);
    auto run = [&](std::vector<float>& dw, HostBuf& out, HostBuf& dx) {
      std::vector<float> mean(rows), rstd(rows), db(cols, 0.0f);
      ath_norm_args a{};
      a.rows = rows; a.cols = cols; a.dtype = ATH_BF16; a.eps = 1e-6f;
      a.x = x.data(); a.weight = w.data(); a.bias = w.data(); a.out = out.data(); a.mean = mean.data();
      a.rstd = rstd.data(); a.dout = dout.data(); a.dx = dx.data(); a.dweight = dw.data(); a.dbias = db.data();
      ATH_EXPECT_OK(rms ? ath_cpu_rmsnorm_fwd(&a) : ath_cpu_layernorm_fwd(&a));
      ATH_EXPECT_OK(rms ? ath_cpu_rmsnorm_bwd(&a) : ath_cpu_layernorm_bwd(&a));
    };
    std::vector<float> dw1(cols, 0.0f), dw2(cols, 0.0f);
    HostBuf o1(ATH_BF16, rows * cols), o2(ATH_BF16, rows * cols), dx1(ATH_BF16, rows * cols), dx2(ATH_BF16, rows * cols);
    run(dw1, o1, dx1);
    run(dw2, o2, dx2);
    ATH_EXPECT(dw1 == dw2 && o1.same_bits(o2) && dx1.same_bits(dx2), "%s: results differ between runs", rms ? "rms" : "ln");

    ath_norm_args a{};
    a.rows = rows; a.cols = cols; a.dtype = ATH_F32; a.eps = 1e-5f;
    a.x = x.data(); a.weight = w.data(); a.out = o1.data();
    auto fwd = rms ? ath_cpu_rmsnorm_fwd : ath_cpu_layernorm_fwd;
    auto bwd = rms ? ath_cpu_rmsnorm_bwd : ath_cpu_layernorm_bwd;
    ATH_EXPECT_INVALID(fwd(nullptr), "null args");
    ath_norm_args b = a; b.cols = 0; ATH_EXPECT_INVALID(fwd(&b), "cols 0");
    b = a; b.rows = -1; ATH_EXPECT_INVALID(fwd(&b), "rows -1");
    b = a; b.dtype = ATH_I32; ATH_EXPECT_INVALID(fwd(&b), "dtype I32");
    b = a; b.eps = -1; ATH_EXPECT_INVALID(fwd(&b), "eps -1");
    b = a; b.x = nullptr; ATH_EXPECT_INVALID(fwd(&b), "null x");
    b = a; b.out = nullptr; ATH_EXPECT_INVALID(fwd(&b), "null out");
    b = a; ATH_EXPECT_INVALID(bwd(&b), "bwd without dout/dx/dweight/rstd");
  }
}

// ------------------------------------------------------------------ activations

double act_ref(int act, double x, double y) {
  const double s = 1.0 / (1.0 + std::exp(-x));
  switch (act) {
    case ATH_ACT_GELU_TANH: return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case ATH_ACT_SILU: return x * s;
    default: return x * s * y;
  }
}
// analytic derivative of act_ref with respect to x (and y for SwiGLU)
void act_ref_grad(int act, double x, double y, double* dx, double* dy) {
  const double s = 1.0 / (1.0 + std::exp(-x));
  *dy = 0;
  switch (act) {
    case ATH_ACT_GELU_TANH: {
      const double k = 0.7978845608028654, t = std::tanh(k * (x + 0.044715 * x * x * x));
      *dx = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
      break;
    }
    case ATH_ACT_SILU: *dx = s * (1 + x * (1 - s)); break;
    default:
      *dx = y * s * (1 + x * (1 - s));
      *dy = x * s;
      break;
  }
}

ATH_TEST(cpu_activation_reference_gradient_matches_finite_differences) {
  for (int act = 0; act < 3; ++act)
    for (double x : {-6.0, -2.5, -0.7, 0.0, 0.3, 1.1, 4.0}) {
      const double y = 0.8, h = 1e-6;
      double dx, dy;
      act_ref_grad(act, x, y, &dx, &dy);
      const double fdx = (act_ref(act, x + h, y) - act_ref(act, x - h, y)) / (2 * h);
      const double fdy = (act_ref(act, x, y + h) - act_ref(act, x, y - h)) / (2 * h);
      ATH_EXPECT(std::fabs(dx - fdx) < 1e-7, "act %d x=%g: dx %.10g vs fd %.10g", act, x, dx, fdx);
      if (act == ATH_ACT_SWIGLU) ATH_EXPECT(std::fabs(dy - fdy) < 1e-7, "swiglu x=%g: dy %.10g vs fd %.10g", x, dy, fdy);
    }
}

ATH_TEST(cpu_activations_match_reference) {
  const int64_t sizes[] = {1, 7, 33, 1024, 1025, 5000};
  for_each_isa([&](const char* isa) {
    uint64_t seed = 600;
    for (int64_t n : sizes)
      for (int dt : kFloatDtypes)
        for (int act = 0; act < 3; ++act) {
          const std::string what = format("%s %s act=%d n=%lld", isa, dtype_name(dt), act, (long long)n);
          Rng rng(seed++);
          HostBuf x(dt, n), y(dt, n), out(dt, n), dout(dt, n), dx(dt, n), dy(dt, n);
          x.fill_uniform(rng, -6, 6);
          y.fill_uniform(rng, -2, 2);
          dout.fill_uniform(rng, -1, 1);
          ath_activation_args a{};
          a.n = n; a.dtype = dt; a.act = act; a.x = x.data(); a.y = y.data(); a.out = out.data();
          a.dout = dout.data(); a.dx = dx.data(); a.dy = dy.data();
          ATH_EXPECT_OK(ath_cpu_activation_fwd(&a));
          ATH_EXPECT_OK(ath_cpu_activation_bwd(&a));
          std::vector<float> ro(static_cast<size_t>(n)), rdx(ro.size()), rdy(ro.size());
          for (int64_t i = 0; i < n; ++i) {
            double gx, gy;
            act_ref_grad(act, x.get(i), y.get(i), &gx, &gy);
            ro[static_cast<size_t>(i)] = static_cast<float>(act_ref(act, x.get(i), y.get(i)));
            rdx[static_cast<size_t>(i)] = static_cast<float>(dout.get(i) * gx);
            rdy[static_cast<size_t>(i)] = static_cast<float>(dout.get(i) * gy);
          }
          const double tol = tol_for(dt, 1e-5);
          auto go = out.f32(), gdx = dx.f32();
          ATH_EXPECT_CLOSE(go.data(), ro.data(), n, tol, tol, (what + " out").c_str());
          ATH_EXPECT_CLOSE(gdx.data(), rdx.data(), n, tol, tol, (what + " dx").c_str());
          if (act == ATH_ACT_SWIGLU) {
            auto gdy = dy.f32();
            ATH_EXPECT_CLOSE(gdy.data(), rdy.data(), n, tol, tol, (what + " dy").c_str());
          }
          // in place: out == x
          HostBuf xi = x;
          a.out = xi.data();
          a.x = xi.data();
          ATH_EXPECT_OK(ath_cpu_activation_fwd(&a));
          ATH_EXPECT(xi.same_bits(out), "%s: in-place forward differs", what.c_str());
        }
  });
  ath_activation_args a{};
  a.n = 4; a.dtype = ATH_F32; a.act = 5;
  float buf[4] = {0, 0, 0, 0};
  a.x = buf; a.y = buf; a.out = buf; a.dout = buf; a.dx = buf; a.dy = buf;
  ATH_EXPECT_INVALID(ath_cpu_activation_fwd(&a), "act 5");
  a.act = ATH_ACT_SWIGLU; a.y = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_activation_fwd(&a), "swiglu without y");
  a.y = buf; a.dy = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_activation_bwd(&a), "swiglu bwd without dy");
  a.dy = buf; a.n = -1;
  ATH_EXPECT_INVALID(ath_cpu_activation_fwd(&a), "n -1");
  a.n = 4; a.dtype = ATH_I32;
  ATH_EXPECT_INVALID(ath_cpu_activation_fwd(&a), "dtype I32");
}

// ------------------------------------------------------------------ cross-entropy

ATH_TEST(cpu_cross_entropy_matches_reference) {
  struct Case { int64_t rows, vocab, ld; };
  const Case cases[] = {{1, 1, 1}, {7, 33, 40}, {5, 1000, 1000}, {3, 5003, 5010}, {64, 17, 17}};
  for_each_isa([&](const char* isa) {
    uint64_t seed = 700;
    for (const Case& c : cases)
      for (int dt : kFloatDtypes) {
        const std::string what = format("%s %s rows=%lld vocab=%lld ld=%lld", isa, dtype_name(dt), (long long)c.rows,
                                        (long long)c.vocab, (long long)c.ld);
        Rng rng(seed++);
        HostBuf logits(dt, c.rows * c.ld), dlogits(dt, c.rows * c.ld);
        logits.fill_uniform(rng, -8, 8);
        dlogits.fill(777.0f);  // sentinel: columns >= vocab must stay
        std::vector<int32_t> targets(static_cast<size_t>(c.rows));
        std::vector<float> losses(targets.size(), NAN), lse(targets.size(), NAN), dl(targets.size());
        for (int64_t r = 0; r < c.rows; ++r) {
          targets[static_cast<size_t>(r)] = (r % 3 == 2) ? -1 : static_cast<int32_t>(rng.below(c.vocab));
          dl[static_cast<size_t>(r)] = static_cast<float>(rng.uniform(0.1, 2.0));
        }
        ath_cross_entropy_args a{};
        a.rows = c.rows; a.vocab = c.vocab; a.ld = c.ld; a.dtype = dt;
        a.logits = logits.data(); a.targets = targets.data(); a.losses = losses.data(); a.lse = lse.data();
        a.dlosses = dl.data(); a.dlogits = dlogits.data();
        ATH_EXPECT_OK(ath_cpu_cross_entropy_fwd(&a));
        ATH_EXPECT_OK(ath_cpu_cross_entropy_bwd(&a));
        std::vector<float> rl(targets.size()), rlse(targets.size()), rd(static_cast<size_t>(c.rows * c.ld));
        for (int64_t r = 0; r < c.rows; ++r) {
          double m = -INFINITY, s = 0;
          for (int64_t j = 0; j < c.vocab; ++j) m = std::max(m, (double)logits.get(r * c.ld + j));
          for (int64_t j = 0; j < c.vocab; ++j) s += std::exp(logits.get(r * c.ld + j) - m);
          const double L = m + std::log(s);
          const int32_t t = targets[static_cast<size_t>(r)];
          rlse[static_cast<size_t>(r)] = static_cast<float>(L);
          rl[static_cast<size_t>(r)] = t < 0 ? 0.0f : static_cast<float>(L - logits.get(r * c.ld + t));
          for (int64_t j = 0; j < c.ld; ++j) {
            double g = 777.0;
            if (j < c.vocab)
              g = t < 0 ? 0.0 : dl[static_cast<size_t>(r)] * (std::exp(logits.get(r * c.ld + j) - L) - (j == t ? 1.0 : 0.0));
            rd[static_cast<size_t>(r * c.ld + j)] = static_cast<float>(g);
          }
        }
        ATH_EXPECT_CLOSE(losses.data(), rl.data(), c.rows, 2e-5, 2e-5, (what + " losses").c_str());
        ATH_EXPECT_CLOSE(lse.data(), rlse.data(), c.rows, 2e-5, 2e-5, (what + " lse").c_str());
        auto gd = dlogits.f32();
        const double tol = tol_for(dt, 1e-5);
        ATH_EXPECT_CLOSE(gd.data(), rd.data(), c.rows * c.ld, tol * 0.1, tol, (what + " dlogits").c_str());
      }
  });
}

ATH_TEST(cpu_cross_entropy_gradient_matches_finite_differences) {
  // d/dlogits of sum_r dlosses[r] * loss[r], by central differences of the op's own F32 forward
  // on logits of moderate size (the F32 loss is accurate to ~1e-7 relative).
  const int64_t rows = 3, V = 6;
  Rng rng(42);
  std::vector<float> logits(static_cast<size_t>(rows * V)), dl = {0.7f, 1.3f, 2.0f};
  for (auto& v : logits) v = static_cast<float>(rng.uniform(-2, 2));
  std::vector<int32_t> targets = {2, -1, 5};
  std::vector<float> losses(rows), lse(rows), dlogits(logits.size());
  ath_cross_entropy_args a{};
  a.rows = rows; a.vocab = V; a.ld = V; a.dtype = ATH_F32; a.logits = logits.data(); a.targets = targets.data();
  a.losses = losses.data(); a.lse = lse.data(); a.dlosses = dl.data(); a.dlogits = dlogits.data();
  ATH_EXPECT_OK(ath_cpu_cross_entropy_fwd(&a));
  ATH_EXPECT_OK(ath_cpu_cross_entropy_bwd(&a));
  auto total = [&]() {
    ATH_EXPECT_OK(ath_cpu_cross_entropy_fwd(&a));
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += static_cast<double>(dl[static_cast<size_t>(r)]) * losses[static_cast<size_t>(r)];
    return s;
  };
  std::vector<float> fd(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v0 = logits[i], h = 1e-2f;
    logits[i] = v0 + h;
    const double lp = total();
    logits[i] = v0 - h;
    const double lm = total();
    logits[i] = v0;
    fd[i] = static_cast<float>((lp - lm) / (2.0 * h));
  }
  ATH_EXPECT_CLOSE(dlogits.data(), fd.data(), (int64_t)fd.size(), 2e-3, 2e-3, "dlogits vs central differences");
}

ATH_TEST(cpu_cross_entropy_rejects_bad_targets) {
  std::vector<float> logits(12, 0.0f), losses(3), lse(3), dl(3, 1.0f), dlog(12);
  std::vector<int32_t> targets = {1, 4, 0};
  ath_cross_entropy_args a{};
  a.rows = 3; a.vocab = 4; a.ld = 4; a.dtype = ATH_F32; a.logits = logits.data(); a.targets = targets.data();
  a.losses = losses.data(); a.lse = lse.data(); a.dlosses = dl.data(); a.dlogits = dlog.data();
  ATH_EXPECT_INVALID(ath_cpu_cross_entropy_fwd(&a), "target 4 >= vocab 4");
  const std::string msg = ath_last_error();
  ATH_EXPECT(msg.find("targets[1]=4") != std::string::npos, "message should name the row: %s", msg.c_str());
  ATH_EXPECT_INVALID(ath_cpu_cross_entropy_bwd(&a), "bwd target 4 >= vocab 4");
  targets[1] = -7;  // ignored
  ATH_EXPECT_OK(ath_cpu_cross_entropy_fwd(&a));
  ath_cross_entropy_args b = a; b.ld = 3; ATH_EXPECT_INVALID(ath_cpu_cross_entropy_fwd(&b), "ld < vocab");
  b = a; b.vocab = 0; ATH_EXPECT_INVALID(ath_cpu_cross_entropy_fwd(&b), "vocab 0");
  b = a; b.lse = nullptr; ATH_EXPECT_INVALID(ath_cpu_cross_entropy_bwd(&b), "bwd without lse");
  b = a; b.losses = nullptr; ATH_EXPECT_INVALID(ath_cpu_cross_entropy_fwd(&b), "fwd without losses");
  b = a; b.dtype = 7; ATH_EXPECT_INVALID(ath_cpu_cross_entropy_fwd(&b), "dtype 7");
}

// ------------------------------------------------------------------ embedding

ATH_TEST(cpu_embedding_forward_and_backward) {
  for (int64_t dim : {1, 8, 100, 300}) {
    for (int dt : kFloatDtypes) {
      const std::string what = format("%s dim=%lld", dtype_name(dt), (long long)dim);
      const int64_t vocab = 37, n = 211;
      Rng rng(static_cast<uint64_t>(dim * 10 + dt));
      HostBuf table(dt, vocab * dim), out(dt, n * dim), dout(dt, n * dim);
      table.fill_uniform(rng, -1, 1);
      dout.fill_uniform(rng, -1, 1);
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (auto& id : ids) id = static_cast<int32_t>(rng.below(5) == 0 ? 3 : rng.below(vocab));  // many repeats of 3
      ath_embedding_args a{};
      a.n = n; a.vocab = vocab; a.dim = dim; a.dtype = dt; a.ids = ids.data(); a.table = table.data(); a.out = out.data();
      a.dout = dout.data();
      ATH_EXPECT_OK(ath_cpu_embedding_fwd(&a));
      bool same = true;
      for (int64_t i = 0; i < n && same; ++i)
        same = std::memcmp(static_cast<const char*>(out.data()) + i * dim * ath_dtype_size(dt),
                           static_cast<const char*>(table.data()) + ids[static_cast<size_t>(i)] * dim * ath_dtype_size(dt),
                           static_cast<size_t>(dim) * ath_dtype_size(dt)) == 0;
      ATH_EXPECT(same, "%s: forward rows are not exact copies", what.c_str());
      // backward: accumulate onto a non-zero dtable; 1 thread and N threads must agree bit for bit
      std::vector<float> d1(static_cast<size_t>(vocab * dim), 0.5f), d2(d1);
      a.dtable = d1.data();
      ATH_EXPECT_OK(ath_cpu_embedding_bwd(&a));
      with_threads(1, [&] {
        a.dtable = d2.data();
        ATH_EXPECT_OK(ath_cpu_embedding_bwd(&a));
      });
      ATH_EXPECT(d1 == d2, "%s: backward differs between thread counts", what.c_str());
      std::vector<double> ref(d1.size(), 0.5);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < dim; ++c) ref[static_cast<size_t>(ids[static_cast<size_t>(i)] * dim + c)] += dout.get(i * dim + c);
      auto rf = to_float(ref);
      ATH_EXPECT_CLOSE(d1.data(), rf.data(), vocab * dim, 1e-5, 1e-5, (what + " dtable").c_str());
    }
  }
  // bad ids
  std::vector<float> table(8, 1.0f), out(8), dt(8, 0.0f);
  std::vector<int32_t> ids = {0, 1, 4, -1};
  ath_embedding_args a{};
  a.n = 4; a.vocab = 4; a.dim = 2; a.dtype = ATH_F32; a.ids = ids.data(); a.table = table.data(); a.out = out.data();
  a.dout = out.data(); a.dtable = dt.data();
  ATH_EXPECT_INVALID(ath_cpu_embedding_fwd(&a), "id 4 >= vocab 4");
  const std::string msg = ath_last_error();
  ATH_EXPECT(msg.find("ids[2]=4") != std::string::npos, "message should name position and id: %s", msg.c_str());
  ATH_EXPECT_INVALID(ath_cpu_embedding_bwd(&a), "bwd bad id");
  ATH_EXPECT(dt[0] == 0.0f, "dtable was modified although an id was bad");
  ids[2] = 1;
  ATH_EXPECT_INVALID(ath_cpu_embedding_fwd(&a), "id -1");
  ids[3] = 0;
  ATH_EXPECT_OK(ath_cpu_embedding_fwd(&a));
  a.dim = 0;
  ATH_EXPECT_INVALID(ath_cpu_embedding_fwd(&a), "dim 0");
}

// ------------------------------------------------------------------ rope

ATH_TEST(cpu_rope_matches_reference_and_inverts) {
  struct Case { int64_t B, T, H, D, pos0; int layout; };
  const Case cases[] = {{1, 1, 1, 2, 0, 0}, {2, 7, 3, 8, 5, 0}, {1, 33, 4, 64, 100, 1}, {2, 17, 2, 128, 0, 1}, {1, 5, 3, 6, 3, 2}};
  for_each_isa([&](const char* isa) {
    uint64_t seed = 800;
    for (const Case& c : cases)
      for (int dt : kFloatDtypes) {
        const std::string what = format("%s %s B=%lld T=%lld H=%lld D=%lld pos0=%lld layout=%d", isa, dtype_name(dt), (long long)c.B,
                                        (long long)c.T, (long long)c.H, (long long)c.D, (long long)c.pos0, c.layout);
        // layout 0: (B, T, H, D); 1: (B, H, T, D) through strides; 2: padded rows
        int64_t sb, st, sh, total;
        if (c.layout == 0) { sh = c.D; st = c.H * c.D; sb = c.T * st; }
        else if (c.layout == 1) { st = c.D; sh = c.T * c.D; sb = c.H * sh; }
        else { sh = c.D + 2; st = c.H * sh + 1; sb = c.T * st + 3; }
        total = c.B * sb;
        Rng rng(seed++);
        HostBuf x(dt, total), out(dt, total), y(dt, total), back(dt, total);
        x.fill_uniform(rng, -1, 1);
        y.fill_uniform(rng, -1, 1);
        out = x;  // padding of layout 2 must stay as it is
        ath_rope_args a{};
        a.batch = c.B; a.seq = c.T; a.heads = c.H; a.head_dim = c.D; a.dtype = dt; a.inverse = 0; a.pos0 = c.pos0;
        a.theta = 10000.0f; a.x = x.data(); a.out = out.data(); a.x_sb = sb; a.x_st = st; a.x_sh = sh;
        ATH_EXPECT_OK(ath_cpu_rope(&a));
        std::vector<float> got, ref;
        const int64_t half = c.D / 2;
        for (int64_t b = 0; b < c.B; ++b)
          for (int64_t t = 0; t < c.T; ++t)
            for (int64_t h = 0; h < c.H; ++h) {
              const int64_t off = b * sb + t * st + h * sh;
              for (int64_t i = 0; i < half; ++i) {
                const double ang = (double)(c.pos0 + t) * std::pow(10000.0, -2.0 * (double)i / (double)c.D);
                const double x1 = x.get(off + i), x2 = x.get(off + i + half);
                ref.push_back(static_cast<float>(x1 * std::cos(ang) - x2 * std::sin(ang)));
                ref.push_back(static_cast<float>(x2 * std::cos(ang) + x1 * std::sin(ang)));
                got.push_back(out.get(off + i));
                got.push_back(out.get(off + i + half));
              }
            }
        const double tol = tol_for(dt, 2e-5);
        ATH_EXPECT_CLOSE(got.data(), ref.data(), (int64_t)got.size(), tol, tol, (what + " out").c_str());
        if (c.layout == 2)
          ATH_EXPECT(out.get(c.D) == x.get(c.D) && out.get(c.D + 1) == x.get(c.D + 1), "%s: padding between rows was written",
                     what.c_str());
        // Backward (inverse) is the adjoint: <rope(x), y> == <x, rope_inv(y)>.
        if (dt == ATH_F32) {
          a.inverse = 1; a.x = y.data(); a.out = back.data();
          ATH_EXPECT_OK(ath_cpu_rope(&a));
          double lhs = 0, rhs = 0;
          for (int64_t b = 0; b < c.B; ++b)
            for (int64_t t = 0; t < c.T; ++t)
              for (int64_t h = 0; h < c.H; ++h)
                for (int64_t d = 0; d < c.D; ++d) {
                  const int64_t off = b * sb + t * st + h * sh + d;
                  lhs += (double)out.get(off) * y.get(off);
                  rhs += (double)x.get(off) * back.get(off);
                }
          ATH_EXPECT(std::fabs(lhs - rhs) < 1e-4 * (1 + std::fabs(lhs)), "%s: adjoint mismatch %.9g vs %.9g", what.c_str(), lhs, rhs);
          // in place forward then inverse gives back x
          HostBuf z = x;
          a.inverse = 0; a.x = z.data(); a.out = z.data();
          ATH_EXPECT_OK(ath_cpu_rope(&a));
          ATH_EXPECT(z.same_bits(out), "%s: in-place result differs from out-of-place", what.c_str());
          a.inverse = 1;
          ATH_EXPECT_OK(ath_cpu_rope(&a));
          auto zf = z.f32(), xf = x.f32();
          ATH_EXPECT_CLOSE(zf.data(), xf.data(), total, 1e-5, 1e-5, (what + " inverse(forward(x))").c_str());
        }
      }
  });
  float buf[16] = {};
  ath_rope_args a{};
  a.batch = 1; a.seq = 2; a.heads = 1; a.head_dim = 3; a.dtype = ATH_F32; a.theta = 10000; a.x = buf; a.out = buf;
  a.x_sb = 8; a.x_st = 4; a.x_sh = 4;
  ATH_EXPECT_INVALID(ath_cpu_rope(&a), "odd head_dim");
  a.head_dim = 4; a.theta = 0;
  ATH_EXPECT_INVALID(ath_cpu_rope(&a), "theta 0");
  a.theta = 10000; a.x_st = 2;
  ATH_EXPECT_INVALID(ath_cpu_rope(&a), "overlapping rows");
  a.x_st = 4; a.x = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_rope(&a), "null x");
}

// ------------------------------------------------------------------ elementwise

ATH_TEST(cpu_elementwise_ops_round_once) {
  const int64_t sizes[] = {1, 7, 1025, 3000};
  for (int64_t n : sizes)
    for (int dt : kFloatDtypes)
      for (int op = ATH_EW_ADD; op <= ATH_EW_FILL; ++op) {
        const std::string what = format("%s op=%d n=%lld", dtype_name(dt), op, (long long)n);
        Rng rng(static_cast<uint64_t>(n * 31 + dt * 7 + op));
        HostBuf a(dt, n), b(dt, n), out(dt, n), expect(dt, n);
        a.fill_uniform(rng, -3, 3);
        b.fill_uniform(rng, -3, 3);
        out.fill_uniform(rng, -3, 3);
        const float alpha = 0.37f;
        for (int64_t i = 0; i < n; ++i) {
          const float x = a.get(i), y = b.get(i), o = out.get(i);
          float r = 0;
          switch (op) {
            case ATH_EW_ADD: r = x + y; break;
            case ATH_EW_MUL: r = x * y; break;
            case ATH_EW_SCALE: r = alpha * x; break;
            case ATH_EW_AXPY: r = o + alpha * x; break;
            default: r = alpha; break;
          }
          expect.set(i, r);
        }
        ath_elementwise_args e{};
        e.n = n; e.op = op; e.dtype = dt; e.dtype_out = dt; e.a = a.data(); e.b = b.data(); e.out = out.data(); e.alpha = alpha;
        ATH_EXPECT_OK(ath_cpu_elementwise(&e));
        ATH_EXPECT(out.same_bits(expect), "%s: result is not the F32 result rounded once", what.c_str());
        if (op == ATH_EW_ADD || op == ATH_EW_MUL) {  // out aliases b
          HostBuf bb = b;
          e.b = bb.data(); e.out = bb.data();
          ATH_EXPECT_OK(ath_cpu_elementwise(&e));
          ATH_EXPECT(bb.same_bits(expect), "%s: aliased result differs", what.c_str());
        }
      }
}

ATH_TEST(cpu_elementwise_convert) {
  const int all[] = {ATH_F32, ATH_BF16, ATH_F16};
  for (int64_t n : {1, 9, 2049})
    for (int from : all)
      for (int to : all) {
        Rng rng(static_cast<uint64_t>(n + from * 3 + to));
        HostBuf a(from, n), out(to, n), expect(to, n);
        a.fill_uniform(rng, -70000, 70000);  // F16 overflows to inf beyond 65504
        if (n > 5) { a.set(1, 1e-6f); a.set(2, -3.0e-5f); a.set(3, INFINITY); a.set(4, 0.0f); }
        for (int64_t i = 0; i < n; ++i) expect.set(i, a.get(i));
        ath_elementwise_args e{};
        e.n = n; e.op = ATH_EW_CONVERT; e.dtype = from; e.dtype_out = to; e.a = a.data(); e.out = out.data();
        ATH_EXPECT_OK(ath_cpu_elementwise(&e));
        ATH_EXPECT(out.same_bits(expect), "%s -> %s n=%lld: not round-to-nearest-even", dtype_name(from), dtype_name(to), (long long)n);
      }
  // I32 <-> F32
  std::vector<int32_t> iv = {0, -5, 16777217, 2147483647, -2147483647 - 1};
  std::vector<float> fv(iv.size()), expect_f(iv.size());
  for (size_t i = 0; i < iv.size(); ++i) expect_f[i] = static_cast<float>(iv[i]);
  ath_elementwise_args e{};
  e.n = (int64_t)iv.size(); e.op = ATH_EW_CONVERT; e.dtype = ATH_I32; e.dtype_out = ATH_F32; e.a = iv.data(); e.out = fv.data();
  ATH_EXPECT_OK(ath_cpu_elementwise(&e));
  ATH_EXPECT(fv == expect_f, "I32 -> F32");
  std::vector<float> fin = {2.5f, -3.5f, 1e10f, -1e10f, NAN, 7.49f};
  std::vector<int32_t> iout(fin.size()), iexp = {2, -4, 2147483647, -2147483647 - 1, 0, 7};
  e.n = (int64_t)fin.size(); e.dtype = ATH_F32; e.dtype_out = ATH_I32; e.a = fin.data(); e.out = iout.data();
  ATH_EXPECT_OK(ath_cpu_elementwise(&e));
  ATH_EXPECT(iout == iexp, "F32 -> I32 (nearest even, saturated): got %d %d %d %d %d %d", iout[0], iout[1], iout[2], iout[3], iout[4], iout[5]);
  e.dtype_out = ATH_BF16; e.dtype = ATH_I32; e.a = iv.data(); e.out = fv.data();
  ath_status st = ath_cpu_elementwise(&e);
  ATH_EXPECT(st == ATH_ERR_UNSUPPORTED, "I32 -> BF16 should be UNSUPPORTED, got %d", (int)st);
  // overlapping convert with different sizes
  std::vector<float> buf(16, 1.0f);
  e.n = 8; e.dtype = ATH_F32; e.dtype_out = ATH_BF16; e.a = buf.data(); e.out = buf.data() + 1;
  ATH_EXPECT_INVALID(ath_cpu_elementwise(&e), "overlapping F32 -> BF16");
  e.out = buf.data();
  ATH_EXPECT_INVALID(ath_cpu_elementwise(&e), "in-place F32 -> BF16");
  // exact in-place for equal sizes
  HostBuf h(ATH_BF16, 5), expect(ATH_F16, 5);
  for (int i = 0; i < 5; ++i) { h.set(i, 0.1f * (float)i - 0.2f); expect.set(i, h.get(i)); }
  e.n = 5; e.dtype = ATH_BF16; e.dtype_out = ATH_F16; e.a = h.data(); e.out = h.data();
  ATH_EXPECT_OK(ath_cpu_elementwise(&e));
  ATH_EXPECT(h.bytes == expect.bytes, "in-place BF16 -> F16");
  e.op = 6;
  ATH_EXPECT_INVALID(ath_cpu_elementwise(&e), "op 6");
  e.op = ATH_EW_ADD; e.dtype = ATH_I32;
  ATH_EXPECT_INVALID(ath_cpu_elementwise(&e), "ADD on I32");
  e.dtype = ATH_F32; e.b = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_elementwise(&e), "ADD without b");
}

// ------------------------------------------------------------------ reduce

ATH_TEST(cpu_reduce_matches_reference) {
  for (int64_t n : {0, 1, 7, 5000, 100003})
    for (int dt : kFloatDtypes)
      for (int op : {(int)ATH_RED_SUM, (int)ATH_RED_SUM_SQUARES}) {
        Rng rng(static_cast<uint64_t>(n + dt + 10 * op));
        HostBuf x(dt, n);
        x.fill_uniform(rng, -1, 2);
        double ref = 0;
        for (int64_t i = 0; i < n; ++i) ref += op == ATH_RED_SUM ? (double)x.get(i) : (double)x.get(i) * x.get(i);
        float out = NAN, out2 = NAN;
        ath_reduce_args a{};
        a.n = n; a.op = op; a.dtype = dt; a.x = x.data(); a.out = &out;
        ATH_EXPECT_OK(ath_cpu_reduce(&a));
        a.out = &out2;
        ATH_EXPECT_OK(ath_cpu_reduce(&a));
        const float rf = static_cast<float>(ref);
        ATH_EXPECT(out == rf || std::fabs(out - ref) <= 1e-6 * std::fabs(ref), "%s op=%d n=%lld: got %.9g ref %.9g", dtype_name(dt), op,
                   (long long)n, out, ref);
        ATH_EXPECT(f32_bits_equal(out, out2), "run-to-run difference");
      }
  struct Case { int64_t rows, cols; };
  for (const Case& c : {Case{1, 1}, Case{7, 3}, Case{1000, 5}, Case{33, 700}, Case{5, 1031}, Case{0, 4}})
    for (int dt : kFloatDtypes) {
      Rng rng(static_cast<uint64_t>(c.rows * 7 + c.cols + dt));
      HostBuf x(dt, c.rows * c.cols);
      x.fill_uniform(rng, -1, 1);
      std::vector<float> out(static_cast<size_t>(c.cols), 1.5f), out2(out);
      ath_reduce_args a{};
      a.n = c.rows * c.cols; a.rows = c.rows; a.cols = c.cols; a.op = ATH_RED_SUM_ROWS; a.dtype = dt; a.x = x.data();
      a.out = out.data();
      ATH_EXPECT_OK(ath_cpu_reduce(&a));
      a.out = out2.data();
      ATH_EXPECT_OK(ath_cpu_reduce(&a));
      std::vector<float> ref(out.size());
      for (int64_t col = 0; col < c.cols; ++col) {
        double s = 0;
        for (int64_t r = 0; r < c.rows; ++r) s += x.get(r * c.cols + col);
        ref[static_cast<size_t>(col)] = static_cast<float>(1.5 + s);
      }
      const std::string what = format("SUM_ROWS %s rows=%lld cols=%lld", dtype_name(dt), (long long)c.rows, (long long)c.cols);
      ATH_EXPECT_CLOSE(out.data(), ref.data(), c.cols, 1e-5, 1e-6, what.c_str());
      ATH_EXPECT(out == out2, "%s: run-to-run difference", what.c_str());
    }
  float out = 0;
  ath_reduce_args a{};
  a.n = 6; a.rows = 2; a.cols = 4; a.op = ATH_RED_SUM_ROWS; a.dtype = ATH_F32; a.x = &out; a.out = &out;
  ATH_EXPECT_INVALID(ath_cpu_reduce(&a), "n != rows * cols");
  a.op = 9;
  ATH_EXPECT_INVALID(ath_cpu_reduce(&a), "op 9");
  a.op = ATH_RED_SUM; a.out = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_reduce(&a), "null out");
}

// ------------------------------------------------------------------ adamw

ATH_TEST(cpu_adamw_matches_formula) {
  for (int lowp : {0, (int)ATH_BF16, (int)ATH_F16}) {
    const int64_t n = 3001;
    Rng rng(1234);
    std::vector<float> p(n), g(n), m(n, 0.0f), v(n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      p[static_cast<size_t>(i)] = static_cast<float>(rng.uniform(-1, 1));
      g[static_cast<size_t>(i)] = static_cast<float>(rng.uniform(-0.1, 0.1));
    }
    std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
    HostBuf low(lowp ? lowp : ATH_BF16, n);
    ath_adamw_args a{};
    a.n = n; a.params = p.data(); a.grads = g.data(); a.m = m.data(); a.v = v.data();
    a.params_lowp = lowp ? low.data() : nullptr; a.dtype_lowp = lowp;
    a.lr = 1e-3f; a.beta1 = 0.9f; a.beta2 = 0.95f; a.eps = 1e-8f; a.weight_decay = 0.1f; a.grad_scale = 0.5f;
    for (int64_t step = 1; step <= 5; ++step) {
      a.step = step;
      ATH_EXPECT_OK(ath_cpu_adamw(&a));
      const double b1 = 0.9f, b2 = 0.95f;
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        const double gk = (double)g[k] * 0.5;
        rm[k] = b1 * rm[k] + (1 - b1) * gk;
        rv[k] = b2 * rv[k] + (1 - b2) * gk * gk;
        const double mh = rm[k] / (1 - std::pow(b1, step)), vh = rv[k] / (1 - std::pow(b2, step));
        rp[k] -= 1e-3 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * rp[k]);
      }
    }
    auto rpf = to_float(rp), rmf = to_float(rm), rvf = to_float(rv);
    ATH_EXPECT_CLOSE(p.data(), rpf.data(), n, 1e-6, 1e-5, "params");
    ATH_EXPECT_CLOSE(m.data(), rmf.data(), n, 1e-8, 1e-5, "m");
    ATH_EXPECT_CLOSE(v.data(), rvf.data(), n, 1e-10, 1e-5, "v");
    if (lowp) {
      HostBuf expect(lowp, n);
      for (int64_t i = 0; i < n; ++i) expect.set(i, p[static_cast<size_t>(i)]);
      ATH_EXPECT(low.same_bits(expect), "%s copy is not the rounded params", dtype_name(lowp));
    }
  }
  float x = 0;
  ath_adamw_args a{};
  a.n = 1; a.params = &x; a.grads = &x; a.m = &x; a.v = &x; a.lr = 1e-3f; a.beta1 = 0.9f; a.beta2 = 0.99f; a.eps = 1e-8f;
  a.grad_scale = 1; a.step = 0;
  ATH_EXPECT_INVALID(ath_cpu_adamw(&a), "step 0");
  a.step = 1; a.beta1 = 1.0f;
  ATH_EXPECT_INVALID(ath_cpu_adamw(&a), "beta1 1");
  a.beta1 = 0.9f; a.params_lowp = &x; a.dtype_lowp = ATH_F32;
  ATH_EXPECT_INVALID(ath_cpu_adamw(&a), "lowp F32");
  a.params_lowp = nullptr; a.grads = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_adamw(&a), "null grads");
}

// ------------------------------------------------------------------ rand

ATH_TEST(cpu_rand_follows_philox_formula) {
  const int64_t n = 100000;
  const uint64_t seed = 0x1234567890ull, offset = 77;
  for (int dist : {(int)ATH_RAND_UNIFORM, (int)ATH_RAND_NORMAL}) {
    const float a = dist == ATH_RAND_UNIFORM ? -2.0f : 0.5f, b = dist == ATH_RAND_UNIFORM ? 3.0f : 2.0f;
    std::vector<float> out(n), out1(n);
    ath_rand_args r{};
    r.n = n; r.dtype = ATH_F32; r.dist = dist; r.seed = seed; r.offset = offset; r.a = a; r.b = b; r.out = out.data();
    ATH_EXPECT_OK(ath_cpu_rand(&r));
    with_threads(1, [&] {
      r.out = out1.data();
      ATH_EXPECT_OK(ath_cpu_rand(&r));
    });
    ATH_EXPECT(out == out1, "dist %d: values depend on the thread count", dist);
    double sum = 0, sq = 0, worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const ath::Philox4 w = ath::philox4x32_10(static_cast<uint64_t>(i) + offset, seed);
      double expect;
      if (dist == ATH_RAND_UNIFORM) {
        expect = a + (b - a) * ath::philox_uniform01(w.v[0]);
        ATH_EXPECT(out[static_cast<size_t>(i)] >= a && out[static_cast<size_t>(i)] < b, "uniform value out of range");
      } else {
        expect = a + b * std::sqrt(-2.0 * std::log((double)ath::philox_uniform01_open0(w.v[0]))) *
                         std::cos(2 * M_PI * (double)ath::philox_uniform01(w.v[1]));
      }
      worst = std::max(worst, std::fabs(out[static_cast<size_t>(i)] - expect));
      sum += out[static_cast<size_t>(i)];
      sq += (double)out[static_cast<size_t>(i)] * out[static_cast<size_t>(i)];
    }
    ATH_EXPECT(worst < 5e-6, "dist %d: max deviation from the formula %g", dist, worst);
    const double mean = sum / n, var = sq / n - mean * mean;
    const double want_mean = dist == ATH_RAND_UNIFORM ? 0.5 : 0.5, want_var = dist == ATH_RAND_UNIFORM ? 25.0 / 12 : 4.0;
    ATH_EXPECT(std::fabs(mean - want_mean) < 0.03, "dist %d: mean %g", dist, mean);
    ATH_EXPECT(std::fabs(var - want_var) < 0.05 * want_var, "dist %d: variance %g", dist, var);
    // the stream is addressed by counter: a fill at offset + 10 equals the tail of this one
    std::vector<float> tail(n - 10);
    r.n = n - 10; r.offset = offset + 10; r.out = tail.data();
    ATH_EXPECT_OK(ath_cpu_rand(&r));
    ATH_EXPECT(std::equal(tail.begin(), tail.end(), out.begin() + 10), "dist %d: offset does not shift the stream", dist);
    // BF16/F16 are the F32 values rounded once
    for (int dt : {(int)ATH_BF16, (int)ATH_F16}) {
      HostBuf low(dt, n), expect(dt, n);
      r.n = n; r.offset = offset; r.dtype = dt; r.out = low.data();
      ATH_EXPECT_OK(ath_cpu_rand(&r));
      for (int64_t i = 0; i < n; ++i) expect.set(i, out[static_cast<size_t>(i)]);
      ATH_EXPECT(low.same_bits(expect), "dist %d %s: not the rounded F32 values", dist, dtype_name(dt));
      r.dtype = ATH_F32;
    }
  }
  ath_rand_args r{};
  float x;
  r.n = 1; r.dtype = ATH_I32; r.out = &x; r.b = 1;
  ATH_EXPECT_INVALID(ath_cpu_rand(&r), "I32");
  r.dtype = ATH_F32; r.dist = 3;
  ATH_EXPECT_INVALID(ath_cpu_rand(&r), "dist 3");
  r.dist = 0; r.out = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_rand(&r), "null out");
}

}  // namespace

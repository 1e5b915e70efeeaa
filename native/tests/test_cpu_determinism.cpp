// Thread-count independence of every CPU op, as a guarantee: each op runs on awkward shapes (odd
// row counts, widths off the vector width, sizes on both sides of the kernels' chunk sizes, more
// threads than rows) at 1, 2, 3 and 7 threads (under every ISA this CPU has, for the ops with
// per-ISA kernels), in F32 and BF16 where the op takes them, and every output must equal the
// 1-thread output bit for bit (memcmp). And the thread pool's default size follows the affinity mask.
//
// Also the "formed, then added once" contract of the accumulated outputs (athanor.h): the norms'
// dweight/dbias, SUM_ROWS' out and the embedding's dtable end as H + S, where H is what they held
// before and S the op's sum on its own; the embedding's S for a row is the sum of its tokens'
// gradient rows in token order, starting from the first of them.
#include <sched.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "cpu/threadpool.h"
#include "testing.h"

namespace {

using ath::testing::dtype_name;
using ath::testing::for_each_isa;
using ath::testing::format;
using ath::testing::HostBuf;
using ath::testing::Rng;
using ath::testing::ThreadsScope;

using Bytes = std::vector<unsigned char>;
using Outputs = std::vector<Bytes>;

const int kThreadCounts[] = {2, 3, 7};  // compared against 1 thread
const int kDtypes[] = {ATH_F32, ATH_BF16};

Bytes bytes_of(const HostBuf& b) { return Bytes(b.bytes.begin(), b.bytes.begin() + b.n * ath_dtype_size(b.dtype)); }
Bytes bytes_of(const std::vector<float>& v) {
  Bytes out(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// Runs op (which makes fresh outputs from fixed inputs and returns them) at 1 thread and at every
// count of kThreadCounts; each output must be identical to the 1-thread one.
void expect_thread_invariant(const std::string& what, const std::function<Outputs()>& op) {
  Outputs ref;
  {
    ThreadsScope one(1);
    ref = op();
  }
  for (int n : kThreadCounts) {
    Outputs got;
    {
      ThreadsScope scope(n);
      got = op();
    }
    ATH_EXPECT(got.size() == ref.size(), "%s: %zu outputs, expected %zu", what.c_str(), got.size(), ref.size());
    for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
      if (got[i] == ref[i]) continue;
      size_t at = 0;
      while (at < got[i].size() && at < ref[i].size() && got[i][at] == ref[i][at]) ++at;
      ATH_EXPECT(false, "%s [%s]: output %zu differs between 1 and %d threads (first differing byte %zu of %zu)",
                 what.c_str(), ath_cpu_isa(), i, n, at, ref[i].size());
    }
  }
}

HostBuf random_buf(int dt, int64_t n, uint64_t seed, double lo = -1, double hi = 1) {
  Rng rng(seed);
  HostBuf b(dt, n);
  b.fill_uniform(rng, lo, hi);
  return b;
}

// Values spread over 2^-30 .. 2^30 with random signs: sums of these are sensitive to their order.
std::vector<float> wide_range(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.uniform(-1, 1) * std::ldexp(1.0, static_cast<int>(rng.below(61)) - 30));
  return v;
}

std::vector<float> filled(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.uniform(-2, 2));
  return v;
}

// ------------------------------------------------------------------ GEMM (packed and small-M paths)

ATH_TEST(cpu_threads_gemm) {
  struct Shape { int64_t m, n, k, batch; };
  const Shape shapes[] = {{301, 257, 700, 1}, {5, 3000, 500, 1}, {1, 777, 1000, 1},
                          {8, 1031, 333, 1},  {70, 90, 400, 3},  {13, 517, 64, 5}};
  for_each_isa([&](const char*) {
    for (const Shape& s : shapes)
      for (int dt : kDtypes)
        for (int t = 0; t < 4; ++t) {
          if (dt == ATH_BF16 && (t == 1 || t == 2)) continue;  // BF16: NN and TT suffice
          const int ta = t & 1, tb = t >> 1;
          const int dt_c = dt;
          const int64_t lda = ta ? s.m : s.k, ldb = tb ? s.k : s.n;
          const HostBuf a = random_buf(dt, s.batch * s.m * s.k, 1), b = random_buf(dt, s.batch * s.k * s.n, 2);
          const HostBuf c0 = random_buf(dt_c, s.batch * s.m * s.n, 3), bias = random_buf(dt_c, s.n, 4);
          expect_thread_invariant(format("gemm %s m=%lld n=%lld k=%lld batch=%lld ta=%d tb=%d", dtype_name(dt),
                                         (long long)s.m, (long long)s.n, (long long)s.k, (long long)s.batch, ta, tb),
                                  [&] {
                                    HostBuf c = c0;
                                    ath_gemm_args g{};
                                    g.m = s.m; g.n = s.n; g.k = s.k; g.batch = s.batch;
                                    g.dtype_ab = dt; g.dtype_c = dt_c; g.trans_a = ta; g.trans_b = tb;
                                    g.a = a.data(); g.lda = lda; g.stride_a = s.m * s.k;
                                    g.b = b.data(); g.ldb = ldb; g.stride_b = s.k * s.n;
                                    g.c = c.data(); g.ldc = s.n; g.stride_c = s.m * s.n;
                                    g.bias = bias.data(); g.alpha = 1.25f; g.beta = 0.5f;
                                    ATH_EXPECT_OK(ath_cpu_gemm(&g));
                                    return Outputs{bytes_of(c)};
                                  });
        }
  });
}

// ------------------------------------------------------------------ attention

ATH_TEST(cpu_threads_attention) {
  struct Shape { int64_t b, hq, hkv, tq, tk, d; int causal; };
  const Shape shapes[] = {{2, 4, 2, 150, 150, 64, 1}, {1, 3, 1, 37, 101, 40, 1}, {3, 2, 2, 65, 65, 17, 0},
                          {1, 8, 8, 1, 77, 32, 1}};
  for_each_isa([&](const char*) {
    for (const Shape& s : shapes)
      for (int dt : kDtypes) {
        const HostBuf q = random_buf(dt, s.b * s.hq * s.tq * s.d, 11), k = random_buf(dt, s.b * s.hkv * s.tk * s.d, 12);
        const HostBuf v = random_buf(dt, s.b * s.hkv * s.tk * s.d, 13), dout = random_buf(dt, s.b * s.hq * s.tq * s.d, 14);
        expect_thread_invariant(
            format("attention %s B=%lld Hq=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld causal=%d", dtype_name(dt),
                   (long long)s.b, (long long)s.hq, (long long)s.hkv, (long long)s.tq, (long long)s.tk, (long long)s.d,
                   s.causal),
            [&] {
              HostBuf o(dt, s.b * s.hq * s.tq * s.d), dq(dt, q.n), dk(dt, k.n), dv(dt, v.n);
              std::vector<float> lse(static_cast<size_t>(s.b * s.hq * s.tq));
              ath_attention_args a{};
              a.batch = s.b; a.heads_q = s.hq; a.heads_kv = s.hkv; a.tq = s.tq; a.tk = s.tk; a.head_dim = s.d;
              a.dtype = dt; a.causal = s.causal; a.scale = 0.3f;
              a.q = q.data(); a.q_sb = s.hq * s.tq * s.d; a.q_sh = s.tq * s.d; a.q_st = s.d;
              a.k = k.data(); a.k_sb = s.hkv * s.tk * s.d; a.k_sh = s.tk * s.d; a.k_st = s.d;
              a.v = v.data(); a.v_sb = a.k_sb; a.v_sh = a.k_sh; a.v_st = a.k_st;
              a.o = o.data(); a.o_sb = a.q_sb; a.o_sh = a.q_sh; a.o_st = a.q_st;
              a.lse = lse.data(); a.dout = dout.data(); a.dq = dq.data(); a.dk = dk.data(); a.dv = dv.data();
              ATH_EXPECT_OK(ath_cpu_attention_fwd(&a));
              ATH_EXPECT_OK(ath_cpu_attention_bwd(&a));
              return Outputs{bytes_of(o), bytes_of(lse), bytes_of(dq), bytes_of(dk), bytes_of(dv)};
            });
      }
  });
}

// ------------------------------------------------------------------ LayerNorm, RMSNorm

struct NormShape { int64_t rows, cols; };
// Both sides of the row chunk (32) and of the vector widths; more threads than rows; one column.
const NormShape kNormShapes[] = {{1, 7},    {5, 3},     {31, 33},   {33, 1},    {63, 64},  {65, 100},
                                 {257, 129}, {1000, 96}, {4099, 17}, {300, 1031}, {96, 768}};

// Runs forward and backward; dweight/dbias start from the given values (accumulated into).
Outputs run_norm(bool rms, int dt, const NormShape& s, const HostBuf& x, const HostBuf& w, const HostBuf& bias,
                 const HostBuf& dout, const std::vector<float>& dw0, const std::vector<float>& db0) {
  HostBuf out(dt, s.rows * s.cols), dx(dt, s.rows * s.cols);
  std::vector<float> mean(static_cast<size_t>(s.rows)), rstd(static_cast<size_t>(s.rows)), dw = dw0, db = db0;
  ath_norm_args a{};
  a.rows = s.rows; a.cols = s.cols; a.dtype = dt; a.eps = 1e-5f;
  a.x = x.data(); a.weight = w.data(); a.bias = rms ? nullptr : bias.data();
  a.out = out.data(); a.mean = mean.data(); a.rstd = rstd.data();
  a.dout = dout.data(); a.dx = dx.data(); a.dweight = dw.data(); a.dbias = rms ? nullptr : db.data();
  ATH_EXPECT_OK(rms ? ath_cpu_rmsnorm_fwd(&a) : ath_cpu_layernorm_fwd(&a));
  ATH_EXPECT_OK(rms ? ath_cpu_rmsnorm_bwd(&a) : ath_cpu_layernorm_bwd(&a));
  Outputs r{bytes_of(out), bytes_of(rstd), bytes_of(dx), bytes_of(dw)};
  if (!rms) {
    r.push_back(bytes_of(mean));
    r.push_back(bytes_of(db));
  }
  return r;
}

ATH_TEST(cpu_threads_norms) {
  for_each_isa([&](const char*) {
    for (int rms = 0; rms < 2; ++rms)
      for (const NormShape& s : kNormShapes)
        for (int dt : kDtypes) {
          const HostBuf x = random_buf(dt, s.rows * s.cols, 21, -2, 3), w = random_buf(dt, s.cols, 22, 0.5, 1.5);
          const HostBuf bias = random_buf(dt, s.cols, 23), dout = random_buf(dt, s.rows * s.cols, 24);
          const std::vector<float> dw0 = filled(s.cols, 25), db0 = filled(s.cols, 26);
          expect_thread_invariant(format("%s %s rows=%lld cols=%lld", rms ? "rmsnorm" : "layernorm", dtype_name(dt),
                                         (long long)s.rows, (long long)s.cols),
                                  [&] { return run_norm(rms, dt, s, x, w, bias, dout, dw0, db0); });
        }
  });
}

// dweight and dbias end as H + S, S the op's sum from zero: the sum is formed, then added once.
ATH_TEST(cpu_norm_parameter_gradients_added_once) {
  for (int rms = 0; rms < 2; ++rms)
    for (const NormShape& s : kNormShapes)
      for (int threads : {1, 3}) {
        ThreadsScope scope(threads);
        const int dt = ATH_F32;
        const HostBuf x = random_buf(dt, s.rows * s.cols, 31, -2, 3), w = random_buf(dt, s.cols, 32, 0.5, 1.5);
        const HostBuf bias = random_buf(dt, s.cols, 33), dout = random_buf(dt, s.rows * s.cols, 34);
        const std::vector<float> h = wide_range(s.cols, 35), zero(static_cast<size_t>(s.cols), 0.0f);
        const Outputs from_h = run_norm(rms, dt, s, x, w, bias, dout, h, h);
        const Outputs from_zero = run_norm(rms, dt, s, x, w, bias, dout, zero, zero);
        for (size_t o : {size_t{3}, size_t{5}}) {
          if (o >= from_h.size()) continue;
          std::vector<float> sum(static_cast<size_t>(s.cols)), expect(static_cast<size_t>(s.cols));
          std::memcpy(sum.data(), from_zero[o].data(), from_zero[o].size());
          for (size_t c = 0; c < sum.size(); ++c) expect[c] = h[c] + sum[c];
          ATH_EXPECT(from_h[o] == bytes_of(expect), "%s rows=%lld cols=%lld threads=%d: %s != H + (sum from zero)",
                     rms ? "rmsnorm" : "layernorm", (long long)s.rows, (long long)s.cols, threads,
                     o == 3 ? "dweight" : "dbias");
        }
      }
}

// ------------------------------------------------------------------ activations, cross-entropy

ATH_TEST(cpu_threads_activations) {
  for_each_isa([&](const char*) {
    for (int64_t n : {1, 1023, 1025, 100003})
      for (int act : {(int)ATH_ACT_GELU_TANH, (int)ATH_ACT_SILU, (int)ATH_ACT_SWIGLU})
        for (int dt : kDtypes) {
          const HostBuf x = random_buf(dt, n, 41, -4, 4), y = random_buf(dt, n, 42), dout = random_buf(dt, n, 43);
          expect_thread_invariant(format("activation %d %s n=%lld", act, dtype_name(dt), (long long)n), [&] {
            HostBuf out(dt, n), dx(dt, n), dy(dt, n);
            ath_activation_args a{};
            a.n = n; a.dtype = dt; a.act = act; a.x = x.data(); a.y = y.data(); a.out = out.data();
            a.dout = dout.data(); a.dx = dx.data(); a.dy = dy.data();
            ATH_EXPECT_OK(ath_cpu_activation_fwd(&a));
            ATH_EXPECT_OK(ath_cpu_activation_bwd(&a));
            return Outputs{bytes_of(out), bytes_of(dx), bytes_of(dy)};
          });
        }
  });
}

ATH_TEST(cpu_threads_cross_entropy) {
  for_each_isa([&](const char*) {
    for (int64_t rows : {1, 3, 67, 300})
      for (int64_t vocab : {1, 17, 5003})
        for (int dt : kDtypes) {
          const int64_t ld = vocab + 3;
          const HostBuf logits = random_buf(dt, rows * ld, 51, -6, 6);
          std::vector<float> dl = filled(rows, 52);
          Rng rng(53);
          std::vector<int32_t> targets(static_cast<size_t>(rows));
          for (auto& t : targets) t = rng.below(7) == 0 ? -1 : static_cast<int32_t>(rng.below(vocab));
          expect_thread_invariant(
              format("cross_entropy %s rows=%lld vocab=%lld", dtype_name(dt), (long long)rows, (long long)vocab), [&] {
                HostBuf dlogits(dt, rows * ld);
                std::vector<float> losses(static_cast<size_t>(rows)), lse(static_cast<size_t>(rows));
                ath_cross_entropy_args a{};
                a.rows = rows; a.vocab = vocab; a.ld = ld; a.dtype = dt; a.logits = logits.data();
                a.targets = targets.data(); a.losses = losses.data(); a.lse = lse.data(); a.dlosses = dl.data();
                a.dlogits = dlogits.data();
                ATH_EXPECT_OK(ath_cpu_cross_entropy_fwd(&a));
                ATH_EXPECT_OK(ath_cpu_cross_entropy_bwd(&a));
                return Outputs{bytes_of(losses), bytes_of(lse), bytes_of(dlogits)};
              });
        }
  });
}

// ------------------------------------------------------------------ embedding

struct EmbShape { int64_t n, vocab, dim; };
// Repeated ids; a vocabulary much larger than the token count; a few ids only; wide and narrow rows.
const EmbShape kEmbShapes[] = {{1, 1, 1},    {211, 37, 1},  {211, 37, 300},   {8192, 50, 64},
                               {5, 1000, 700}, {3000, 200000, 8}, {1000, 3, 33}, {777, 129, 257}};

std::vector<int32_t> skewed_ids(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng.below(4) == 0 ? vocab / 2 : rng.below(vocab));  // one id is common
  return ids;
}

ATH_TEST(cpu_threads_embedding) {
  for (const EmbShape& s : kEmbShapes)
    for (int dt : kDtypes) {
      const HostBuf table = random_buf(dt, s.vocab * s.dim, 61), dout = random_buf(dt, s.n * s.dim, 62);
      const std::vector<int32_t> ids = skewed_ids(s.n, s.vocab, 63);
      const std::vector<float> h = filled(s.vocab * s.dim, 64);
      expect_thread_invariant(format("embedding %s n=%lld vocab=%lld dim=%lld", dtype_name(dt), (long long)s.n,
                                     (long long)s.vocab, (long long)s.dim),
                              [&] {
                                HostBuf out(dt, s.n * s.dim);
                                std::vector<float> dtable = h;
                                ath_embedding_args a{};
                                a.n = s.n; a.vocab = s.vocab; a.dim = s.dim; a.dtype = dt; a.ids = ids.data();
                                a.table = table.data(); a.out = out.data(); a.dout = dout.data();
                                a.dtable = dtable.data();
                                ATH_EXPECT_OK(ath_cpu_embedding_fwd(&a));
                                ATH_EXPECT_OK(ath_cpu_embedding_bwd(&a));
                                return Outputs{bytes_of(out), bytes_of(dtable)};
                              });
    }
}

// dtable[id] = H[id] + (g_first + g_next + ...): each row's tokens summed in token order from the
// first of them, then added once (a tied head's gradient H is never summed into token by token).
ATH_TEST(cpu_embedding_backward_adds_token_sums_once) {
  for (const EmbShape& s : kEmbShapes)
    for (int dt : kDtypes)
      for (int threads : {1, 2, 3}) {
        ThreadsScope scope(threads);
        const HostBuf dout = random_buf(dt, s.n * s.dim, 71);
        const std::vector<int32_t> ids = skewed_ids(s.n, s.vocab, 72);
        const std::vector<float> h = wide_range(s.vocab * s.dim, 73);
        std::vector<float> expect = h, sum(static_cast<size_t>(s.vocab * s.dim));
        std::vector<char> seen(static_cast<size_t>(s.vocab), 0);
        for (int64_t i = 0; i < s.n; ++i) {
          const int64_t id = ids[static_cast<size_t>(i)];
          for (int64_t c = 0; c < s.dim; ++c) {
            float& acc = sum[static_cast<size_t>(id * s.dim + c)];
            acc = seen[static_cast<size_t>(id)] ? acc + dout.get(i * s.dim + c) : dout.get(i * s.dim + c);
          }
          seen[static_cast<size_t>(id)] = 1;
        }
        for (int64_t id = 0; id < s.vocab; ++id)
          if (seen[static_cast<size_t>(id)])
            for (int64_t c = 0; c < s.dim; ++c) {
              const size_t e = static_cast<size_t>(id * s.dim + c);
              expect[e] = h[e] + sum[e];
            }
        std::vector<float> dtable = h;
        ath_embedding_args a{};
        a.n = s.n; a.vocab = s.vocab; a.dim = s.dim; a.dtype = dt; a.ids = ids.data(); a.dout = dout.data();
        a.dtable = dtable.data();
        ATH_EXPECT_OK(ath_cpu_embedding_bwd(&a));
        int64_t bad = 0, first = -1;
        for (size_t e = 0; e < dtable.size(); ++e)
          if (std::memcmp(&dtable[e], &expect[e], sizeof(float)) != 0 && bad++ == 0) first = static_cast<int64_t>(e);
        ATH_EXPECT(bad == 0, "%s n=%lld vocab=%lld dim=%lld threads=%d: %lld elements differ from H + token-order sums, "
                   "first at row %lld col %lld: got %.9g, expected %.9g", dtype_name(dt), (long long)s.n,
                   (long long)s.vocab, (long long)s.dim, threads, (long long)bad, (long long)(first / s.dim),
                   (long long)(first % s.dim), first >= 0 ? dtable[static_cast<size_t>(first)] : 0.0,
                   first >= 0 ? expect[static_cast<size_t>(first)] : 0.0);
      }
}

// ------------------------------------------------------------------ rope, elementwise, adamw, rand

ATH_TEST(cpu_threads_rope) {
  struct Shape { int64_t b, t, h, d; };
  for (const Shape& s : {Shape{2, 37, 3, 10}, Shape{1, 300, 8, 64}, Shape{3, 1, 2, 2}})
    for (int dt : kDtypes)
      for (int inverse = 0; inverse < 2; ++inverse) {
        const HostBuf x = random_buf(dt, s.b * s.t * s.h * s.d, 81);
        expect_thread_invariant(format("rope %s B=%lld T=%lld H=%lld D=%lld inverse=%d", dtype_name(dt), (long long)s.b,
                                       (long long)s.t, (long long)s.h, (long long)s.d, inverse),
                                [&] {
                                  HostBuf out(dt, x.n);
                                  ath_rope_args a{};
                                  a.batch = s.b; a.seq = s.t; a.heads = s.h; a.head_dim = s.d; a.dtype = dt;
                                  a.inverse = inverse; a.pos0 = 5; a.theta = 10000.0f; a.x = x.data();
                                  a.out = out.data(); a.x_sb = s.t * s.h * s.d; a.x_st = s.h * s.d; a.x_sh = s.d;
                                  ATH_EXPECT_OK(ath_cpu_rope(&a));
                                  return Outputs{bytes_of(out)};
                                });
      }
}

ATH_TEST(cpu_threads_elementwise) {
  for (int64_t n : {1, 1023, 100003})
    for (int dt : kDtypes)
      for (int op = ATH_EW_ADD; op <= ATH_EW_CONVERT; ++op) {
        const HostBuf a0 = random_buf(dt, n, 91), b0 = random_buf(dt, n, 92), out0 = random_buf(dt, n, 93);
        const int dt_out = op == ATH_EW_CONVERT ? (dt == ATH_F32 ? ATH_BF16 : ATH_F32) : dt;
        expect_thread_invariant(format("elementwise op=%d %s n=%lld", op, dtype_name(dt), (long long)n), [&] {
          HostBuf out = op == ATH_EW_CONVERT ? HostBuf(dt_out, n) : out0;
          ath_elementwise_args e{};
          e.n = n; e.op = op; e.dtype = dt; e.dtype_out = dt_out; e.a = a0.data(); e.b = b0.data(); e.out = out.data();
          e.alpha = 0.75f;
          ATH_EXPECT_OK(ath_cpu_elementwise(&e));
          return Outputs{bytes_of(out)};
        });
      }
}

ATH_TEST(cpu_threads_adamw) {
  for (int64_t n : {1, 1023, 100003}) {
    const std::vector<float> p0 = filled(n, 101), g = filled(n, 102), m0 = filled(n, 103);
    std::vector<float> v0 = filled(n, 104);
    for (auto& x : v0) x = x * x;
    expect_thread_invariant(format("adamw n=%lld", (long long)n), [&] {
      std::vector<float> p = p0, m = m0, v = v0;
      HostBuf low(ATH_BF16, n);
      ath_adamw_args a{};
      a.n = n; a.params = p.data(); a.grads = g.data(); a.m = m.data(); a.v = v.data();
      a.params_lowp = low.data(); a.dtype_lowp = ATH_BF16;
      a.lr = 1e-3f; a.beta1 = 0.9f; a.beta2 = 0.95f; a.eps = 1e-8f; a.weight_decay = 0.1f; a.grad_scale = 0.5f;
      a.step = 7;
      ATH_EXPECT_OK(ath_cpu_adamw(&a));
      return Outputs{bytes_of(p), bytes_of(m), bytes_of(v), bytes_of(low)};
    });
  }
}

ATH_TEST(cpu_threads_rand) {
  for (int64_t n : {1, 1025, 100003})
    for (int dt : kDtypes)
      for (int dist : {(int)ATH_RAND_UNIFORM, (int)ATH_RAND_NORMAL})
        expect_thread_invariant(format("rand dist=%d %s n=%lld", dist, dtype_name(dt), (long long)n), [&] {
          HostBuf out(dt, n);
          ath_rand_args r{};
          r.n = n; r.dtype = dt; r.dist = dist; r.seed = 99; r.offset = 3; r.a = -1.0f; r.b = 2.0f; r.out = out.data();
          ATH_EXPECT_OK(ath_cpu_rand(&r));
          return Outputs{bytes_of(out)};
        });
}

// ------------------------------------------------------------------ reductions

// One reduction of x (dtype dt, given as floats) into a copy of out0.
std::vector<float> run_reduce(int op, int dt, const std::vector<float>& xs, int64_t rows, int64_t cols,
                              const std::vector<float>& out0) {
  HostBuf x(dt, static_cast<int64_t>(xs.size()));
  for (size_t i = 0; i < xs.size(); ++i) x.set(static_cast<int64_t>(i), xs[i]);
  std::vector<float> out = out0;
  ath_reduce_args a{};
  a.n = static_cast<int64_t>(xs.size()); a.rows = rows; a.cols = cols; a.op = op; a.dtype = dt; a.x = x.data();
  a.out = out.data();
  ATH_EXPECT_OK(ath_cpu_reduce(&a));
  return out;
}

ATH_TEST(cpu_threads_reduce) {
  for (int64_t n : {int64_t{1}, int64_t{2047}, int64_t{2049}, int64_t{100003}, (int64_t{1} << 20) + 13})
    for (int dt : kDtypes)
      for (int op : {(int)ATH_RED_SUM, (int)ATH_RED_SUM_SQUARES}) {
        const std::vector<float> xs = wide_range(n, 111 + static_cast<uint64_t>(n));
        expect_thread_invariant(format("reduce op=%d %s n=%lld", op, dtype_name(dt), (long long)n),
                                [&] { return Outputs{bytes_of(run_reduce(op, dt, xs, 0, 0, {0.0f}))}; });
      }
  struct Shape { int64_t rows, cols; };
  for (const Shape& s : {Shape{1, 1}, Shape{7, 3}, Shape{1000, 5}, Shape{33, 700}, Shape{5, 1031}, Shape{4097, 33},
                         Shape{300, 300}, Shape{2000, 1}, Shape{257, 2049}})
    for (int dt : kDtypes) {
      const std::vector<float> xs = wide_range(s.rows * s.cols, 121), out0 = filled(s.cols, 122);
      expect_thread_invariant(
          format("reduce SUM_ROWS %s rows=%lld cols=%lld", dtype_name(dt), (long long)s.rows, (long long)s.cols),
          [&] { return Outputs{bytes_of(run_reduce(ATH_RED_SUM_ROWS, dt, xs, s.rows, s.cols, out0))}; });
      // out ends as H + S (the column sums formed first, then added once)
      const std::vector<float> zero(static_cast<size_t>(s.cols), 0.0f);
      const std::vector<float> from_h = run_reduce(ATH_RED_SUM_ROWS, dt, xs, s.rows, s.cols, out0);
      const std::vector<float> sums = run_reduce(ATH_RED_SUM_ROWS, dt, xs, s.rows, s.cols, zero);
      std::vector<float> expect(out0.size());
      for (size_t c = 0; c < expect.size(); ++c) expect[c] = out0[c] + sums[c];
      ATH_EXPECT(bytes_of(from_h) == bytes_of(expect), "SUM_ROWS %s rows=%lld cols=%lld: out != H + (sums from zero)",
                 dtype_name(dt), (long long)s.rows, (long long)s.cols);
    }
}

// ------------------------------------------------------------------ thread pool size

// The pool's default size is the affinity mask's CPU count (processes pinned to disjoint cores do
// not oversubscribe them): pinned to one CPU, the default is 1.
ATH_TEST(cpu_thread_pool_default_follows_affinity) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) ath::testing::skip("sched_getaffinity failed");
  ATH_EXPECT(ath::cpu::default_num_threads() == CPU_COUNT(&mask), "default %d, affinity mask has %d CPUs",
             ath::cpu::default_num_threads(), CPU_COUNT(&mask));
  int first = 0;
  while (!CPU_ISSET(first, &mask)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ATH_EXPECT(sched_setaffinity(0, sizeof one, &one) == 0, "sched_setaffinity to CPU %d failed", first);
  const int pinned = ath::cpu::default_num_threads();
  sched_setaffinity(0, sizeof mask, &mask);  // restore before checking
  ATH_EXPECT(pinned == 1, "pinned to CPU %d, the default pool size is %d (expected 1)", first, pinned);
}

}  // namespace

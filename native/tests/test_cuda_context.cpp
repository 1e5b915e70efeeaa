// Tests of the CUDA execution context (athanor.h, ath_cuda_ctx) shared by every CUDA op:
//  - a NULL context, a NULL stream (the legacy default stream is never used), a NULL arena of
//    non-zero size and a negative device are ATH_ERR_INVALID for every op (any CUDA build: the
//    checks come before any CUDA call);
//  - an op that needs scratch (layernorm/rmsnorm backward, reduce, attention backward) given too
//    small an arena returns ATH_ERR_SCRATCH with ath_scratch_needed() above what it had, and
//    enqueues nothing (its outputs keep their bytes); with exactly the bytes it asked for it
//    succeeds, one byte less still fails, and its results equal, bit for bit, those computed with
//    the tests' large arena (the scratch layout never depends on the arena's size);
//  - where the bytes needed follow from the shape alone (reduce, attention backward), they are
//    the documented ones.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "common/dtype.h"
#include "cuda_test_context.h"
#include "testing.h"

namespace {

using ath::testing::CudaTestContext;
using ath::testing::cuda_ctx;
using ath::testing::cuda_download;
using ath::testing::cuda_run;
using ath::testing::cuda_upload;
using ath::testing::format;
using ath::testing::ok;
using ath::testing::require_gpu;

size_t round256(size_t b) { return (b + 255) / 256 * 256; }

// ------------------------------------------------------------------ bad contexts (no GPU needed)

// Every CUDA op with valid, non-empty arguments over host dummies (never dereferenced: the
// context check fails first), called with the given context.
struct OpCall {
  const char* name;
  std::function<ath_status(const ath_cuda_ctx*)> call;
};

std::vector<OpCall> all_ops() {
  alignas(256) static float f[4096];
  alignas(256) static int32_t ids[64];
  std::vector<OpCall> ops;
  ops.push_back({"ath_cuda_gemm", [](const ath_cuda_ctx* c) {
                   ath_gemm_args g{};
                   g.m = g.n = g.k = 4; g.batch = 1; g.dtype_ab = g.dtype_c = ATH_F32;
                   g.a = f; g.lda = 4; g.b = f; g.ldb = 4; g.c = f + 64; g.ldc = 4; g.alpha = 1.f;
                   return ath_cuda_gemm(&g, c);
                 }});
  auto attn = [] {
    ath_attention_args a{};
    a.batch = 1; a.heads_q = a.heads_kv = 1; a.tq = a.tk = 8; a.head_dim = 64; a.dtype = ATH_BF16; a.scale = 0.125f;
    a.q = a.k = a.v = f; a.o = f + 1024; a.lse = f + 2048; a.dout = f; a.dq = a.dk = a.dv = f + 3072;
    a.q_st = a.k_st = a.v_st = a.o_st = 64;
    return a;
  };
  ops.push_back({"ath_cuda_attention_fwd", [attn](const ath_cuda_ctx* c) { auto a = attn(); return ath_cuda_attention_fwd(&a, c); }});
  ops.push_back({"ath_cuda_attention_bwd", [attn](const ath_cuda_ctx* c) { auto a = attn(); return ath_cuda_attention_bwd(&a, c); }});
  auto norm = [] {
    ath_norm_args a{};
    a.rows = 2; a.cols = 4; a.dtype = ATH_F32; a.eps = 1e-5f;
    a.x = f; a.weight = f; a.out = f + 64; a.mean = f + 128; a.rstd = f + 192;
    a.dout = f; a.dx = f + 256; a.dweight = f + 320;
    return a;
  };
  ops.push_back({"ath_cuda_layernorm_fwd", [norm](const ath_cuda_ctx* c) { auto a = norm(); return ath_cuda_layernorm_fwd(&a, c); }});
  ops.push_back({"ath_cuda_layernorm_bwd", [norm](const ath_cuda_ctx* c) { auto a = norm(); return ath_cuda_layernorm_bwd(&a, c); }});
  ops.push_back({"ath_cuda_rmsnorm_fwd", [norm](const ath_cuda_ctx* c) { auto a = norm(); return ath_cuda_rmsnorm_fwd(&a, c); }});
  ops.push_back({"ath_cuda_rmsnorm_bwd", [norm](const ath_cuda_ctx* c) { auto a = norm(); return ath_cuda_rmsnorm_bwd(&a, c); }});
  auto act = [] {
    ath_activation_args a{};
    a.n = 4; a.dtype = ATH_F32; a.act = ATH_ACT_GELU_TANH; a.x = f; a.out = f + 64; a.dout = f; a.dx = f + 128;
    return a;
  };
  ops.push_back({"ath_cuda_activation_fwd", [act](const ath_cuda_ctx* c) { auto a = act(); return ath_cuda_activation_fwd(&a, c); }});
  ops.push_back({"ath_cuda_activation_bwd", [act](const ath_cuda_ctx* c) { auto a = act(); return ath_cuda_activation_bwd(&a, c); }});
  auto xent = [] {
    ath_cross_entropy_args a{};
    a.rows = 2; a.vocab = 4; a.ld = 4; a.dtype = ATH_F32; a.logits = f; a.targets = ids; a.losses = f + 64;
    a.lse = f + 128; a.dlosses = f; a.dlogits = f + 192;
    return a;
  };
  ops.push_back({"ath_cuda_cross_entropy_fwd", [xent](const ath_cuda_ctx* c) { auto a = xent(); return ath_cuda_cross_entropy_fwd(&a, c); }});
  ops.push_back({"ath_cuda_cross_entropy_bwd", [xent](const ath_cuda_ctx* c) { auto a = xent(); return ath_cuda_cross_entropy_bwd(&a, c); }});
  auto emb = [] {
    ath_embedding_args a{};
    a.n = 2; a.vocab = 4; a.dim = 4; a.dtype = ATH_F32; a.ids = ids; a.table = f; a.out = f + 64; a.dout = f;
    a.dtable = f + 128;
    return a;
  };
  ops.push_back({"ath_cuda_embedding_fwd", [emb](const ath_cuda_ctx* c) { auto a = emb(); return ath_cuda_embedding_fwd(&a, c); }});
  ops.push_back({"ath_cuda_embedding_bwd", [emb](const ath_cuda_ctx* c) { auto a = emb(); return ath_cuda_embedding_bwd(&a, c); }});
  ops.push_back({"ath_cuda_rope", [](const ath_cuda_ctx* c) {
                   ath_rope_args a{};
                   a.batch = 1; a.seq = 2; a.heads = 1; a.head_dim = 4; a.dtype = ATH_F32; a.theta = 10000.f;
                   a.x = f; a.out = f + 64; a.x_sb = 8; a.x_st = 4; a.x_sh = 4;
                   return ath_cuda_rope(&a, c);
                 }});
  ops.push_back({"ath_cuda_elementwise", [](const ath_cuda_ctx* c) {
                   ath_elementwise_args a{};
                   a.n = 4; a.op = ATH_EW_ADD; a.dtype = a.dtype_out = ATH_F32; a.a = f; a.b = f; a.out = f + 64;
                   return ath_cuda_elementwise(&a, c);
                 }});
  ops.push_back({"ath_cuda_reduce", [](const ath_cuda_ctx* c) {
                   ath_reduce_args a{};
                   a.n = 4; a.op = ATH_RED_SUM; a.dtype = ATH_F32; a.x = f; a.out = f + 64;
                   return ath_cuda_reduce(&a, c);
                 }});
  ops.push_back({"ath_cuda_adamw", [](const ath_cuda_ctx* c) {
                   ath_adamw_args a{};
                   a.n = 4; a.params = f; a.grads = f + 64; a.m = f + 128; a.v = f + 192; a.lr = 1e-3f; a.beta1 = 0.9f;
                   a.beta2 = 0.999f; a.eps = 1e-8f; a.grad_scale = 1.f; a.step = 1;
                   return ath_cuda_adamw(&a, c);
                 }});
  ops.push_back({"ath_cuda_rand", [](const ath_cuda_ctx* c) {
                   ath_rand_args a{};
                   a.n = 4; a.dtype = ATH_F32; a.dist = ATH_RAND_UNIFORM; a.a = 0.f; a.b = 1.f; a.out = f;
                   return ath_cuda_rand(&a, c);
                 }});
  ops.push_back({"ath_cuda_copy", [](const ath_cuda_ctx* c) {
                   ath_copy_args a{};
                   a.rank = 1; a.elem_size = 4; a.shape[0] = 4; a.dst_strides[0] = 1; a.src_strides[0] = 1;
                   a.dst = f + 64; a.src = f;
                   return ath_cuda_copy(&a, c);
                 }});
  ops.push_back({"ath_cuda_memset", [](const ath_cuda_ctx* c) {
                   ath_memset_args a{};
                   a.dst = f; a.bytes = 16; a.value = 0;
                   return ath_cuda_memset(&a, c);
                 }});
  return ops;
}

}  // namespace

ATH_TEST(cuda_ops_reject_bad_contexts) {
  if (!ath_built_with_cuda()) ath::testing::skip("CPU-only build: the CUDA ops are stubs");
  static char fake_stream;  // never reaches CUDA: each case fails the context check first
  const ath_cuda_ctx good{0, &fake_stream, nullptr, 0};
  ath_cuda_ctx no_stream = good;
  no_stream.stream = nullptr;
  ath_cuda_ctx no_arena = good;
  no_arena.scratch_bytes = 1024;
  ath_cuda_ctx bad_device = good;
  bad_device.device = -1;
  const auto ops = all_ops();
  ATH_EXPECT(ops.size() == 20, "%zu ops listed, the C ABI has 20 CUDA ops", ops.size());
  for (const OpCall& op : ops) {
    struct Bad {
      const ath_cuda_ctx* ctx;
      const char* what;
      const char* in_message;
    };
    const Bad cases[] = {{nullptr, "NULL ctx", "ctx"},
                         {&no_stream, "NULL stream", "legacy default stream"},
                         {&no_arena, "NULL scratch of 1024 bytes", "scratch"},
                         {&bad_device, "device -1", "device"}};
    for (const Bad& b : cases) {
      const ath_status st = op.call(b.ctx);
      ATH_EXPECT(st == ATH_ERR_INVALID, "%s with %s: status %d (%s)", op.name, b.what, (int)st, ath_last_error());
      ATH_EXPECT(std::strstr(ath_last_error(), op.name) != nullptr && std::strstr(ath_last_error(), b.in_message),
                 "%s with %s: message '%s' lacks the op or '%s'", op.name, b.what, ath_last_error(), b.in_message);
    }
  }
}

namespace {

// ------------------------------------------------------------------ scratch sizing (GPU)

struct DeviceBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DeviceBuf(size_t n) : bytes(n) { ok(ath_cuda_malloc(0, n, &p), "ath_cuda_malloc"); }
  ~DeviceBuf() {
    if (p != nullptr) ath_cuda_free(0, p);
  }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  void upload(const std::vector<unsigned char>& h) { ok(cuda_upload(p, h.data(), bytes), "upload"); }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> h(bytes);
    ok(cuda_download(h.data(), p, bytes), "download");
    return h;
  }
};

std::vector<unsigned char> random_f32_bytes(size_t n, uint64_t seed, float lo, float hi) {
  std::vector<unsigned char> b(n * 4);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 11;
  for (size_t i = 0; i < n; ++i) {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float v = lo + (hi - lo) * static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-53);
    std::memcpy(&b[i * 4], &v, 4);
  }
  return b;
}

std::vector<unsigned char> to_bf16_bytes(const std::vector<unsigned char>& f32) {
  std::vector<unsigned char> b(f32.size() / 2);
  for (size_t i = 0; i < f32.size() / 4; ++i) {
    float v;
    std::memcpy(&v, &f32[i * 4], 4);
    const uint16_t h = ath::f32_to_bf16(v);
    std::memcpy(&b[i * 2], &h, 2);
  }
  return b;
}

// One op that uses scratch: `call` runs it in a context, `reset` restores its outputs (written
// ones poisoned, accumulated ones to fixed values), `outputs` downloads them all.
struct ScratchCase {
  std::string name;
  std::function<ath_status(const ath_cuda_ctx*)> call;
  std::function<void()> reset;
  std::function<std::vector<unsigned char>()> outputs;
  size_t expected_need;  // 0: depends on the device (occupancy)
};

void check_scratch_case(const ScratchCase& c) {
  // Reference: the tests' large arena.
  c.reset();
  ok(ath::testing::cuda_test_context().run_call(c.call), c.name + " with the large arena");
  ok(ath::testing::cuda_sync(), c.name + ": synchronize");
  const std::vector<unsigned char> want = c.outputs();

  // Empty arena: ATH_ERR_SCRATCH, the bytes needed, nothing enqueued.
  c.reset();
  const std::vector<unsigned char> before = c.outputs();
  CudaTestContext empty(0);
  const ath_status st = c.call(empty.get());
  const size_t need = ath_scratch_needed();
  ATH_EXPECT(st == ATH_ERR_SCRATCH, "%s with no arena: status %d (%s)", c.name.c_str(), (int)st, ath_last_error());
  if (st != ATH_ERR_SCRATCH) return;
  ATH_EXPECT(need > 0 && need % 256 == 0, "%s: ath_scratch_needed() = %zu", c.name.c_str(), need);
  ATH_EXPECT(std::strstr(ath_last_error(), "scratch") != nullptr, "%s: message '%s'", c.name.c_str(), ath_last_error());
  if (c.expected_need != 0)
    ATH_EXPECT(need == c.expected_need, "%s: needs %zu bytes, expected %zu", c.name.c_str(), need, c.expected_need);
  ok(empty.sync(), c.name + ": synchronize the empty context");
  ATH_EXPECT(c.outputs() == before, "%s: a failed call (ATH_ERR_SCRATCH) changed its outputs", c.name.c_str());

  // One byte short: still ATH_ERR_SCRATCH with the same need.
  {
    CudaTestContext short_by_one(need - 1);
    const ath_status s1 = c.call(short_by_one.get());
    ATH_EXPECT(s1 == ATH_ERR_SCRATCH && ath_scratch_needed() == need, "%s with %zu bytes: status %d, needs %zu",
               c.name.c_str(), need - 1, (int)s1, ath_scratch_needed());
    ok(short_by_one.sync(), c.name + ": synchronize");
  }

  // Exactly the bytes asked for: the results of the large arena, bit for bit.
  ok(empty.grow(need), c.name + ": grow");
  c.reset();
  ok(c.call(empty.get()), c.name + " with exactly the bytes needed");
  ok(empty.sync(), c.name + ": synchronize");
  ATH_EXPECT(c.outputs() == want, "%s: results with a grown arena differ from the large arena's", c.name.c_str());
  ATH_EXPECT(empty.grows() == 1, "%s: %d grows", c.name.c_str(), empty.grows());
}

}  // namespace

ATH_TEST(cuda_scratch_norm_backward) {
  require_gpu();
  struct Shape {
    bool layer;
    int dtype;
    int64_t rows, cols;
  };
  for (const Shape& sh : {Shape{true, ATH_BF16, 300, 768}, Shape{false, ATH_F32, 123, 4099}}) {
    const int64_t n = sh.rows * sh.cols;
    const size_t es = ath_dtype_size(sh.dtype);
    auto f32 = [&](size_t count, uint64_t seed, float lo, float hi) { return random_f32_bytes(count, seed, lo, hi); };
    auto in = [&](size_t count, uint64_t seed) {
      auto b = f32(count, seed, -1.f, 1.f);
      return sh.dtype == ATH_BF16 ? to_bf16_bytes(b) : b;
    };
    DeviceBuf x(n * es), w(sh.cols * es), dout(n * es), mean(sh.rows * 4), rstd(sh.rows * 4), dx(n * es),
        dw(sh.cols * 4), db(sh.cols * 4), out(n * es);
    x.upload(in(n, 1));
    w.upload(in(sh.cols, 2));
    dout.upload(in(n, 3));
    ath_norm_args a{};
    a.rows = sh.rows; a.cols = sh.cols; a.dtype = sh.dtype; a.eps = 1e-5f;
    a.x = x.p; a.weight = w.p; a.out = out.p; a.mean = static_cast<float*>(mean.p); a.rstd = static_cast<float*>(rstd.p);
    ok(cuda_run(sh.layer ? ath_cuda_layernorm_fwd : ath_cuda_rmsnorm_fwd, &a), "forward (mean, rstd)");
    a.dout = dout.p; a.dx = dx.p; a.dweight = static_cast<float*>(dw.p);
    a.dbias = sh.layer ? static_cast<float*>(db.p) : nullptr;
    const auto dw0 = f32(sh.cols, 4, -1.f, 1.f), db0 = f32(sh.cols, 5, -1.f, 1.f);
    ScratchCase c;
    c.name = format("%s backward rows=%lld cols=%lld", sh.layer ? "layernorm" : "rmsnorm", (long long)sh.rows,
                    (long long)sh.cols);
    c.call = [a, layer = sh.layer](const ath_cuda_ctx* ctx) {
      return layer ? ath_cuda_layernorm_bwd(&a, ctx) : ath_cuda_rmsnorm_bwd(&a, ctx);
    };
    c.reset = [&] {
      dx.upload(std::vector<unsigned char>(dx.bytes, 0xff));
      dw.upload(dw0);
      db.upload(db0);
    };
    c.outputs = [&] {
      auto r = dx.download();
      for (const DeviceBuf* b : {&dw, &db}) {
        const auto v = b->download();
        r.insert(r.end(), v.begin(), v.end());
      }
      return r;
    };
    c.expected_need = 0;  // chunks depend on the device's occupancy
    check_scratch_case(c);
  }
}

ATH_TEST(cuda_scratch_reduce) {
  require_gpu();
  // SUM over 1e6 F32: G = ceil(1e6 / 8192) = 123 partials -> 492 bytes -> 512.
  {
    const int64_t n = 1000000;
    DeviceBuf x(n * 4), out(4);
    x.upload(random_f32_bytes(n, 7, -1.f, 1.f));
    ath_reduce_args a{};
    a.n = n; a.op = ATH_RED_SUM; a.dtype = ATH_F32; a.x = x.p; a.out = static_cast<float*>(out.p);
    ScratchCase c{"reduce SUM n=1e6", [a](const ath_cuda_ctx* ctx) { return ath_cuda_reduce(&a, ctx); },
                  [&] { out.upload(std::vector<unsigned char>(4, 0xff)); }, [&] { return out.download(); },
                  round256(123 * 4)};
    check_scratch_case(c);
  }
  // SUM_ROWS (5000, 70): 3 column tiles, min(ceil(1024 / 3), ceil(5000 / 64)) = 79 chunks of 64
  // rows -> 79 x 70 F32 partials.
  {
    const int64_t rows = 5000, cols = 70;
    DeviceBuf x(rows * cols * 4), out(cols * 4);
    x.upload(random_f32_bytes(rows * cols, 8, -1.f, 1.f));
    const auto out0 = random_f32_bytes(cols, 9, -1.f, 1.f);
    ath_reduce_args a{};
    a.n = rows * cols; a.rows = rows; a.cols = cols; a.op = ATH_RED_SUM_ROWS; a.dtype = ATH_F32; a.x = x.p;
    a.out = static_cast<float*>(out.p);
    ScratchCase c{"reduce SUM_ROWS (5000, 70)", [a](const ath_cuda_ctx* ctx) { return ath_cuda_reduce(&a, ctx); },
                  [&] { out.upload(out0); }, [&] { return out.download(); }, round256(79 * 70 * 4)};
    check_scratch_case(c);
  }
}

ATH_TEST(cuda_scratch_attention_backward) {
  require_gpu();
  // (B, Hq, Hkv, T, D) = (2, 4, 2, 67, D): delta needs 4 * B * Hq * Tq = 2144 bytes -> 2304. BF16
  // D=64 takes the tensor-core kernels, F32 D=32 the SIMT ones.
  struct Shape {
    int dtype;
    int64_t d;
  };
  for (const Shape& sh : {Shape{ATH_BF16, 64}, Shape{ATH_F32, 32}}) {
    const int64_t b = 2, hq = 4, hkv = 2, t = 67, d = sh.d;
    const size_t es = ath_dtype_size(sh.dtype);
    const int64_t nq = b * hq * t * d, nk = b * hkv * t * d;
    auto in = [&](size_t count, uint64_t seed) {
      auto f = random_f32_bytes(count, seed, -1.f, 1.f);
      return sh.dtype == ATH_BF16 ? to_bf16_bytes(f) : f;
    };
    DeviceBuf q(nq * es), k(nk * es), v(nk * es), o(nq * es), lse(b * hq * t * 4), dout(nq * es), dq(nq * es),
        dk(nk * es), dv(nk * es);
    q.upload(in(nq, 11));
    k.upload(in(nk, 12));
    v.upload(in(nk, 13));
    dout.upload(in(nq, 14));
    ath_attention_args a{};
    a.batch = b; a.heads_q = hq; a.heads_kv = hkv; a.tq = a.tk = t; a.head_dim = d; a.dtype = sh.dtype;
    a.causal = 1; a.scale = 1.f / std::sqrt(static_cast<float>(d));
    a.q = q.p; a.q_sb = hq * t * d; a.q_sh = t * d; a.q_st = d;
    a.k = k.p; a.k_sb = hkv * t * d; a.k_sh = t * d; a.k_st = d;
    a.v = v.p; a.v_sb = hkv * t * d; a.v_sh = t * d; a.v_st = d;
    a.o = o.p; a.o_sb = hq * t * d; a.o_sh = t * d; a.o_st = d;
    a.lse = static_cast<float*>(lse.p);
    ok(cuda_run(ath_cuda_attention_fwd, &a), "attention forward");
    a.dout = dout.p; a.dq = dq.p; a.dk = dk.p; a.dv = dv.p;
    ScratchCase c;
    c.name = format("attention backward %s D=%lld", sh.dtype == ATH_BF16 ? "BF16" : "F32", (long long)d);
    c.call = [a](const ath_cuda_ctx* ctx) { return ath_cuda_attention_bwd(&a, ctx); };
    c.reset = [&] {
      for (DeviceBuf* g : {&dq, &dk, &dv}) g->upload(std::vector<unsigned char>(g->bytes, 0xff));
    };
    c.outputs = [&] {
      std::vector<unsigned char> r;
      for (const DeviceBuf* g : {&dq, &dk, &dv}) {
        const auto x = g->download();
        r.insert(r.end(), x.begin(), x.end());
      }
      return r;
    };
    c.expected_need = round256(static_cast<size_t>(b * hq * t) * 4);
    check_scratch_case(c);
  }
}

// Tests of the CUDA host runtime (native/cuda/runtime.cu) and of the CUDA non-GEMM, non-attention
// ops (kernels/{layernorm,rmsnorm,activation,cross_entropy,embedding,rope,elementwise,reduce,
// adamw,rand}.cu).
//
// Every op is compared with its CPU twin (ath_cpu_*) on the same random inputs (generated in F32,
// rounded to the dtype once, so both backends read identical bytes), for F32/BF16/F16 and awkward
// shapes, both through the 16-byte vector kernels (aligned buffers) and the scalar ones (buffers
// offset by one element). Written outputs are poisoned with NaN first (unwritten elements fail);
// accumulated outputs start from random values (an overwrite fails). Deterministic ops are run
// twice and compared bit for bit.
// Without a usable GPU these tests skip with ath_cuda_unavailable_reason(), except
// cuda_runtime_reports_availability (runs everywhere: count 0 and a non-empty reason, failing ops
// instead of crashes) and cuda_ops_validate_arguments (runs in any CUDA build: bad arguments give
// ATH_ERR_INVALID before CUDA is touched).
// Only the C ABI is used (plus the header-only dtype conversions).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../common/dtype.h"
#include "athanor/athanor.h"
#include "cuda_test_context.h"
#include "testing.h"

namespace {

using ath::testing::cuda_ctx;
using ath::testing::cuda_download;
using ath::testing::cuda_run;
using ath::testing::cuda_sync;
using ath::testing::cuda_upload;
using ath::testing::format;
using ath::testing::ok;
using ath::testing::require_gpu;

// ------------------------------------------------------------------ helpers

using ath::testing::kFloatDtypes;
using ath::testing::Rng;

const char* dname(int dt) { return ath::testing::dtype_name(dt); }

// A host buffer of one dtype with element access as float.
struct HBuf {
  int dtype = ATH_F32;
  int64_t n = 0;
  std::vector<unsigned char> bytes;
  HBuf() = default;
  HBuf(int dt, int64_t count)
      : dtype(dt), n(count), bytes(static_cast<size_t>(std::max<int64_t>(count, 1)) * ath_dtype_size(dt)) {}
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
  size_t size_bytes() const { return static_cast<size_t>(n) * ath_dtype_size(dtype); }
  float get(int64_t i) const { return ath::load_f32(bytes.data(), dtype, i); }
  void set(int64_t i, float v) { ath::store_f32(bytes.data(), dtype, i, v); }
  std::vector<float> f32() const {
    std::vector<float> r(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i)] = get(i);
    return r;
  }
  void fill_uniform(Rng& g, float lo, float hi) {
    for (int64_t i = 0; i < n; ++i) set(i, g.uniform(lo, hi));
  }
  void fill(float v) {
    for (int64_t i = 0; i < n; ++i) set(i, v);
  }
};

// Device memory from ath_cuda_malloc, optionally offset by `offset_bytes` from the (256-byte
// aligned) allocation so that the scalar (unaligned) kernel paths are exercised.
struct DBuf {
  void* base = nullptr;
  char* p = nullptr;
  size_t bytes = 0;
  DBuf(size_t nbytes, size_t offset_bytes = 0) : bytes(nbytes) {
    ok(ath_cuda_malloc(0, nbytes + offset_bytes + 64, &base), "ath_cuda_malloc");
    p = static_cast<char*>(base) + offset_bytes;
  }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  ~DBuf() {
    if (base != nullptr) ath_cuda_free(0, base);
  }
  template <typename P = void>
  P* ptr() const { return reinterpret_cast<P*>(p); }
  void upload(const void* h, size_t n) { ok(cuda_upload(p, h, n), "upload"); }
  void download(void* h, size_t n) const { ok(cuda_download(h, p, n), "download"); }
  void poison() {  // all bits set: NaN in F32, BF16 and F16
    std::vector<unsigned char> ff(bytes, 0xff);
    upload(ff.data(), bytes);
  }
};

// A device copy of a host buffer at element offset `off` (0: aligned, 1: misaligned).
struct DTensor {
  DBuf buf;
  int dtype;
  int64_t n;
  DTensor(const HBuf& h, int off) : buf(h.size_bytes(), static_cast<size_t>(off) * ath_dtype_size(h.dtype)), dtype(h.dtype), n(h.n) {
    if (h.n > 0) buf.upload(h.data(), h.size_bytes());
  }
  DTensor(int dt, int64_t count, int off)
      : buf(static_cast<size_t>(count) * ath_dtype_size(dt), static_cast<size_t>(off) * ath_dtype_size(dt)), dtype(dt), n(count) {
    buf.poison();
  }
  void* ptr() const { return buf.ptr(); }
  HBuf get() const {
    HBuf h(dtype, n);
    if (n > 0) buf.download(h.data(), h.size_bytes());
    return h;
  }
};

void sync(const char* what) { ok(cuda_sync(), std::string(what) + ": synchronize"); }

struct Tol {
  double atol, rtol;
};
// Tolerance of a value written in `dtype` (about two units in the last place of the dtype).
Tol out_tol(int dtype, double scale = 1.0) {
  switch (dtype) {
    case ATH_BF16: return {1.6e-2 * scale, 1.6e-2};
    case ATH_F16: return {2e-3 * scale, 2e-3};
    default: return {2e-5 * scale, 2e-5};
  }
}

void expect_close(const HBuf& got, const HBuf& ref, Tol t, const std::string& what) {
  auto g = got.f32(), r = ref.f32();
  ATH_EXPECT_CLOSE(g.data(), r.data(), (int64_t)r.size(), t.atol, t.rtol, what.c_str());
}
void expect_close(const std::vector<float>& g, const std::vector<float>& r, Tol t, const std::string& what) {
  ATH_EXPECT(g.size() == r.size(), "%s: sizes %zu vs %zu", what.c_str(), g.size(), r.size());
  ATH_EXPECT_CLOSE(g.data(), r.data(), (int64_t)std::min(g.size(), r.size()), t.atol, t.rtol, what.c_str());
}
void expect_bits_equal(const HBuf& a, const HBuf& b, const std::string& what) {
  ATH_EXPECT(a.bytes.size() == b.bytes.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0,
             "%s: not bit-identical", what.c_str());
}

std::vector<float> dl_f32(const DBuf& d, int64_t n) {
  std::vector<float> v(static_cast<size_t>(std::max<int64_t>(n, 1)));
  if (n > 0) d.download(v.data(), static_cast<size_t>(n) * 4);
  v.resize(static_cast<size_t>(n));
  return v;
}
void ul_f32(DBuf& d, const std::vector<float>& v) {
  if (!v.empty()) d.upload(v.data(), v.size() * 4);
}
std::vector<float> rand_f32(Rng& g, int64_t n, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = g.uniform(lo, hi);
  return v;
}

// ------------------------------------------------------------------ runtime

ATH_TEST(cuda_runtime_reports_availability) {
  const int count = ath_cuda_device_count();
  const char* reason = ath_cuda_unavailable_reason();
  ATH_EXPECT(reason != nullptr, "ath_cuda_unavailable_reason returned NULL");
  if (reason == nullptr) return;
  ATH_EXPECT(count >= 0, "device count %d", count);
  // Probed once and cached: asking again gives the same answers.
  ATH_EXPECT(ath_cuda_device_count() == count, "device count changed between calls");
  ATH_EXPECT(std::strcmp(ath_cuda_unavailable_reason(), reason) == 0, "reason changed between calls");
  if (count == 0) {
    std::fprintf(stderr, "    (CUDA unavailable: %s)\n", reason);
    ATH_EXPECT(std::strlen(reason) > 0, "count is 0 but the reason is empty");
    void* p = reinterpret_cast<void*>(0x1);
    const ath_status st = ath_cuda_malloc(0, 1024, &p);
    ATH_EXPECT(st != ATH_OK, "ath_cuda_malloc succeeded without a device");
    ATH_EXPECT(p == nullptr, "ath_cuda_malloc left *out non-null on failure");
    ATH_EXPECT(std::strlen(ath_last_error()) > 0, "no error message after a failed ath_cuda_malloc");
    char buf[256];
    ATH_EXPECT(ath_cuda_device_info(0, buf, sizeof buf) != ATH_OK, "device_info succeeded without a device");
    ATH_EXPECT(ath_cuda_set_device(0) != ATH_OK, "set_device succeeded without a device");
    size_t fr = 1, tot = 1;
    ATH_EXPECT(ath_cuda_mem_get_info(0, &fr, &tot) != ATH_OK, "mem_get_info succeeded without a device");
    ath_stream s = nullptr;
    ATH_EXPECT(ath_cuda_stream_create(0, &s) != ATH_OK && s == nullptr, "stream_create succeeded without a device");
    ATH_EXPECT(ath_cuda_stream_synchronize(nullptr) != ATH_OK, "stream_synchronize succeeded without a device");
    ATH_EXPECT(ath_cuda_device_synchronize(0) != ATH_OK, "device_synchronize succeeded without a device");
    // A well-formed op fails cleanly instead of crashing.
    float x[4] = {1, 2, 3, 4};
    ath_elementwise_args e{};
    e.n = 4;
    e.op = ATH_EW_SCALE;
    e.dtype = ATH_F32;
    e.a = x;
    e.out = x;
    e.alpha = 2.f;
    ATH_EXPECT(ath_cuda_elementwise(&e, cuda_ctx()) != ATH_OK, "an op succeeded without a device");
  } else {
    ATH_EXPECT(reason[0] == '\0', "count %d but reason '%s'", count, reason);
  }
}

ATH_TEST(cuda_runtime_memory_streams_events) {
  require_gpu();
  char info[512];
  ok(ath_cuda_device_info(0, info, sizeof info), "device_info");
  ATH_EXPECT(std::strstr(info, "compute capability") != nullptr, "device_info: '%s'", info);
  std::fprintf(stderr, "    %s\n", info);
  char tiny[8];
  ok(ath_cuda_device_info(0, tiny, sizeof tiny), "device_info into a short buffer");
  ATH_EXPECT(std::strlen(tiny) == 7, "short buffer not truncated: '%s'", tiny);
  ok(ath_cuda_set_device(0), "set_device");
  const int count = ath_cuda_device_count();
  void* q = nullptr;
  ATH_EXPECT(ath_cuda_malloc(count, 16, &q) == ATH_ERR_INVALID, "device index %d accepted", count);
  ATH_EXPECT(ath_cuda_malloc(-1, 16, &q) == ATH_ERR_INVALID, "device index -1 accepted");
  size_t fr = 0, tot = 0;
  ok(ath_cuda_mem_get_info(0, &fr, &tot), "mem_get_info");
  ATH_EXPECT(tot > 0 && fr <= tot, "free %zu total %zu", fr, tot);

  // Synchronous round trip host -> device -> device -> host, and kind 3 (default).
  const size_t n = 1 << 20;
  std::vector<unsigned char> h(n), back(n, 0);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<unsigned char>(i * 131 + 7);
  DBuf d1(n), d2(n);
  ok(ath_cuda_memcpy(d1.p, h.data(), n, 0), "memcpy H2D");
  ok(ath_cuda_memcpy(d2.p, d1.p, n, 2), "memcpy D2D");
  ok(ath_cuda_memcpy(back.data(), d2.p, n, 1), "memcpy D2H");
  ATH_EXPECT(back == h, "sync round trip differs");
  std::vector<unsigned char> back3(n, 0);
  ok(ath_cuda_memcpy(back3.data(), d2.p, n, 3), "memcpy default");
  ATH_EXPECT(back3 == h, "kind-3 copy differs");
  ATH_EXPECT(ath_cuda_memcpy(d1.p, h.data(), n, 4) == ATH_ERR_INVALID, "kind 4 accepted");
  ATH_EXPECT(ath_cuda_memcpy(nullptr, h.data(), n, 0) == ATH_ERR_INVALID, "null dst accepted");
  ok(ath_cuda_memcpy(nullptr, nullptr, 0, 0), "zero-byte copy");

  // Async copies through pinned memory on a created stream, ordered with an event.
  ath_stream s1 = nullptr, s2 = nullptr;
  ok(ath_cuda_stream_create(0, &s1), "stream_create");
  ok(ath_cuda_stream_create(0, &s2), "stream_create");
  void* pinned = nullptr;
  ok(ath_cuda_host_alloc(n, &pinned), "host_alloc");
  std::memcpy(pinned, h.data(), n);
  void* ev = nullptr;
  ok(ath_cuda_event_create(0, 0, &ev), "event_create");
  ok(ath_cuda_memcpy_async(d2.p, pinned, n, 0, s1), "memcpy_async H2D");
  ok(ath_cuda_event_record(ev, s1), "event_record");
  ok(ath_cuda_stream_wait_event(s2, ev), "stream_wait_event");
  std::vector<unsigned char> back2(n, 0);
  void* pinned2 = nullptr;
  ok(ath_cuda_host_alloc(n, &pinned2), "host_alloc");
  std::memset(pinned2, 0, n);
  ok(ath_cuda_memcpy_async(pinned2, d2.p, n, 1, s2), "memcpy_async D2H");
  ok(ath_cuda_stream_synchronize(s2), "stream_synchronize");
  ok(ath_cuda_event_synchronize(ev), "event_synchronize");
  ATH_EXPECT(std::memcmp(pinned2, h.data(), n) == 0, "async round trip differs");

  // 2-D copy: a 37 x 100-byte window out of a 300-byte-pitch host matrix into a 128-pitch buffer.
  const size_t rows = 37, width = 100, spitch = 300, dpitch = 128;
  ok(ath_cuda_memcpy2d_async(d1.p, dpitch, h.data(), spitch, width, rows, 0, s1), "memcpy2d H2D");
  std::vector<unsigned char> win(rows * width, 0);
  ok(ath_cuda_memcpy2d_async(win.data(), width, d1.p, dpitch, width, rows, 1, s1), "memcpy2d D2H");
  ok(ath_cuda_stream_synchronize(s1), "stream_synchronize");
  bool same = true;
  for (size_t r = 0; r < rows; ++r) same = same && std::memcmp(&win[r * width], &h[r * spitch], width) == 0;
  ATH_EXPECT(same, "2-D copy differs");
  ATH_EXPECT(ath_cuda_memcpy2d_async(d1.p, 64, h.data(), spitch, width, rows, 0, s1) == ATH_ERR_INVALID,
             "width > dpitch accepted");

  // Timing events around a device-to-device copy; query never blocks; an event made without timing
  // cannot be timed.
  void* t0 = nullptr;
  void* t1 = nullptr;
  ok(ath_cuda_event_create(0, 1, &t0), "event_create with timing");
  ok(ath_cuda_event_create(0, 1, &t1), "event_create with timing");
  ok(ath_cuda_event_record(t0, s1), "event_record t0");
  ok(ath_cuda_memcpy_async(d1.p, d2.p, n, 2, s1), "memcpy_async D2D");
  ok(ath_cuda_event_record(t1, s1), "event_record t1");
  int done = -1;
  ok(ath_cuda_event_query(t1, &done), "event_query");
  ATH_EXPECT(done == 0 || done == 1, "event_query gave %d", done);
  ok(ath_cuda_event_synchronize(t1), "event_synchronize t1");
  ok(ath_cuda_event_query(t1, &done), "event_query after synchronize");
  ATH_EXPECT(done == 1, "event_query after synchronize gave %d", done);
  float ms = -1.f;
  ok(ath_cuda_event_elapsed(t0, t1, &ms), "event_elapsed");
  ATH_EXPECT(ms >= 0.f && ms < 60000.f, "elapsed %g ms", ms);
  ATH_EXPECT(ath_cuda_event_elapsed(ev, t1, &ms) == ATH_ERR_CUDA, "an event made without timing was timed");
  ATH_EXPECT(ath_cuda_event_elapsed(t0, nullptr, &ms) == ATH_ERR_INVALID, "NULL end event accepted");
  ATH_EXPECT(ath_cuda_event_query(nullptr, &done) == ATH_ERR_INVALID, "NULL event queried");
  ok(ath_cuda_event_destroy(t0), "event_destroy");
  ok(ath_cuda_event_destroy(t1), "event_destroy");

  ok(ath_cuda_event_destroy(ev), "event_destroy");
  ok(ath_cuda_stream_destroy(s1), "stream_destroy");
  ok(ath_cuda_stream_destroy(s2), "stream_destroy");
  ATH_EXPECT(ath_cuda_stream_destroy(nullptr) == ATH_ERR_INVALID, "destroying the default stream accepted");
  ok(ath_cuda_host_free(pinned), "host_free");
  ok(ath_cuda_host_free(pinned2), "host_free");
  ok(ath_cuda_device_synchronize(0), "device_synchronize");
  void* z = reinterpret_cast<void*>(0x1);
  ok(ath_cuda_malloc(0, 0, &z), "malloc 0 bytes");
  ATH_EXPECT(z == nullptr, "malloc(0) gave %p", z);
  ok(ath_cuda_free(0, nullptr), "free(NULL)");
}

ATH_TEST(cuda_runtime_out_of_memory_is_reported_and_recoverable) {
  require_gpu();
  size_t fr = 0, tot = 0;
  ok(ath_cuda_mem_get_info(0, &fr, &tot), "mem_get_info");
  void* p = reinterpret_cast<void*>(0x1);
  const size_t huge = tot * 4 + (size_t{1} << 30);
  const ath_status st = ath_cuda_malloc(0, huge, &p);
  ATH_EXPECT(st == ATH_ERR_OOM, "malloc of %zu bytes: status %d (%s)", huge, (int)st, ath_last_error());
  ATH_EXPECT(p == nullptr, "*out not null after OOM");
  const std::string msg = ath_last_error();
  ATH_EXPECT(msg.find(std::to_string(huge)) != std::string::npos && msg.find("free") != std::string::npos,
             "OOM message lacks the request or free/total: %s", msg.c_str());
  // The failed allocation must not poison the next launch's error check.
  DTensor x(ATH_F32, 1000, 0);
  ath_elementwise_args e{};
  e.n = 1000;
  e.op = ATH_EW_FILL;
  e.dtype = ATH_F32;
  e.out = x.ptr();
  e.alpha = 3.f;
  ok(cuda_run(ath_cuda_elementwise, &e), "fill after OOM");
  sync("fill after OOM");
  HBuf h = x.get();
  ATH_EXPECT(h.get(0) == 3.f && h.get(999) == 3.f, "fill after OOM wrote %g %g", h.get(0), h.get(999));
}

// ------------------------------------------------------------------ validation (no GPU needed)

ATH_TEST(cuda_ops_validate_arguments) {
  if (!ath_built_with_cuda()) ath::testing::skip("CPU-only build: the CUDA ops are stubs");
  // The ops validate their arguments before touching CUDA, so this runs without a GPU too.
  ATH_EXPECT(ath_cuda_layernorm_fwd(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_rmsnorm_bwd(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_activation_fwd(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_cross_entropy_fwd(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_embedding_bwd(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_rope(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_elementwise(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_reduce(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_adamw(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  ATH_EXPECT(ath_cuda_rand(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "null args");
  float dummy[16] = {};
  auto expect_invalid = [](ath_status st, const char* what) {
    ATH_EXPECT(st == ATH_ERR_INVALID, "%s: status %d (%s)", what, (int)st, ath_last_error());
    ATH_EXPECT(std::strlen(ath_last_error()) > 0, "%s: empty message", what);
  };
  {
    ath_norm_args a{};
    a.rows = 2; a.cols = 0; a.dtype = ATH_F32; a.eps = 1e-5f; a.x = dummy; a.weight = dummy; a.out = dummy;
    expect_invalid(ath_cuda_layernorm_fwd(&a, cuda_ctx()), "layernorm cols=0");
    a.cols = 4; a.dtype = ATH_I32;
    expect_invalid(ath_cuda_layernorm_fwd(&a, cuda_ctx()), "layernorm dtype I32");
    a.dtype = ATH_F32; a.eps = -1.f;
    expect_invalid(ath_cuda_rmsnorm_fwd(&a, cuda_ctx()), "rmsnorm eps<0");
    a.eps = 1e-5f; a.out = nullptr;
    expect_invalid(ath_cuda_rmsnorm_fwd(&a, cuda_ctx()), "rmsnorm null out");
    a.out = dummy; a.dout = dummy; a.dx = dummy; a.rstd = dummy; a.mean = nullptr; a.dweight = dummy;
    expect_invalid(ath_cuda_layernorm_bwd(&a, cuda_ctx()), "layernorm bwd null mean");
  }
  {
    ath_activation_args a{};
    a.n = 4; a.dtype = ATH_F32; a.act = 7; a.x = dummy; a.out = dummy;
    expect_invalid(ath_cuda_activation_fwd(&a, cuda_ctx()), "act 7");
    a.act = ATH_ACT_SWIGLU;
    expect_invalid(ath_cuda_activation_fwd(&a, cuda_ctx()), "swiglu without y");
    a.n = -1; a.act = ATH_ACT_SILU;
    expect_invalid(ath_cuda_activation_fwd(&a, cuda_ctx()), "n<0");
  }
  {
    int32_t t[2] = {0, 1};
    ath_cross_entropy_args a{};
    a.rows = 2; a.vocab = 8; a.ld = 4; a.dtype = ATH_F32; a.logits = dummy; a.targets = t; a.losses = dummy;
    expect_invalid(ath_cuda_cross_entropy_fwd(&a, cuda_ctx()), "ld < vocab");
    a.ld = 8; a.vocab = 0;
    expect_invalid(ath_cuda_cross_entropy_fwd(&a, cuda_ctx()), "vocab 0");
  }
  {
    int32_t ids[2] = {0, 1};
    ath_embedding_args a{};
    a.n = 2; a.vocab = 4; a.dim = 0; a.dtype = ATH_F32; a.ids = ids; a.table = dummy; a.out = dummy;
    expect_invalid(ath_cuda_embedding_fwd(&a, cuda_ctx()), "dim 0");
  }
  {
    ath_rope_args a{};
    a.batch = 1; a.seq = 2; a.heads = 1; a.head_dim = 3; a.dtype = ATH_F32; a.theta = 10000.f; a.x = dummy;
    a.out = dummy; a.x_sb = 6; a.x_st = 3; a.x_sh = 3;
    expect_invalid(ath_cuda_rope(&a, cuda_ctx()), "odd head_dim");
    a.head_dim = 4; a.theta = 0.f;
    expect_invalid(ath_cuda_rope(&a, cuda_ctx()), "theta 0");
  }
  {
    ath_elementwise_args a{};
    a.n = 4; a.op = 9; a.dtype = ATH_F32; a.a = dummy; a.b = dummy; a.out = dummy;
    expect_invalid(ath_cuda_elementwise(&a, cuda_ctx()), "ew op 9");
    a.op = ATH_EW_CONVERT; a.dtype_out = 9;
    expect_invalid(ath_cuda_elementwise(&a, cuda_ctx()), "convert to dtype 9");
    a.dtype = ATH_BF16; a.dtype_out = ATH_I32;
    ATH_EXPECT(ath_cuda_elementwise(&a, cuda_ctx()) == ATH_ERR_UNSUPPORTED, "convert BF16 -> I32: %s", ath_last_error());
    a.dtype = ATH_F32; a.dtype_out = ATH_BF16; a.out = dummy + 1;
    expect_invalid(ath_cuda_elementwise(&a, cuda_ctx()), "convert with partially overlapping out");
    a.out = dummy; a.dtype = ATH_F32;
    a.op = ATH_EW_ADD; a.b = nullptr;
    expect_invalid(ath_cuda_elementwise(&a, cuda_ctx()), "add without b");
  }
  {
    ath_reduce_args a{};
    a.n = 10; a.rows = 3; a.cols = 3; a.op = ATH_RED_SUM_ROWS; a.dtype = ATH_F32; a.x = dummy; a.out = dummy;
    expect_invalid(ath_cuda_reduce(&a, cuda_ctx()), "n != rows*cols");
    a.op = 5;
    expect_invalid(ath_cuda_reduce(&a, cuda_ctx()), "reduce op 5");
  }
  {
    ath_adamw_args a{};
    a.n = 4; a.params = dummy; a.grads = dummy; a.m = dummy; a.v = dummy; a.lr = 1e-3f; a.beta1 = 0.9f;
    a.beta2 = 0.999f; a.eps = 1e-8f; a.grad_scale = 1.f; a.step = 0;
    expect_invalid(ath_cuda_adamw(&a, cuda_ctx()), "step 0");
    a.step = 1; a.beta2 = 1.f;
    expect_invalid(ath_cuda_adamw(&a, cuda_ctx()), "beta2 1");
    a.beta2 = 0.999f; a.params_lowp = dummy; a.dtype_lowp = ATH_F32;
    expect_invalid(ath_cuda_adamw(&a, cuda_ctx()), "lowp F32");
  }
  {
    ath_rand_args a{};
    a.n = 4; a.dtype = ATH_F32; a.dist = 5; a.out = dummy;
    expect_invalid(ath_cuda_rand(&a, cuda_ctx()), "dist 5");
  }
}

// ------------------------------------------------------------------ normalization

struct NormShape {
  int64_t rows, cols;
};
const NormShape kNormShapes[] = {{1, 1}, {3, 7}, {5, 64}, {17, 768}, {64, 1000}, {33, 4099}, {300, 256}, {3, 40000}};

void run_norm_case(bool layer, int dt, NormShape sh, int off, bool with_bias, Rng& g) {
  const std::string what = format("%s %s rows=%lld cols=%lld off=%d bias=%d", layer ? "layernorm" : "rmsnorm",
                                  dname(dt), (long long)sh.rows, (long long)sh.cols, off, (int)with_bias);
  const int64_t n = sh.rows * sh.cols;
  HBuf x(dt, n), w(dt, sh.cols), b(dt, sh.cols), dout(dt, n);
  x.fill_uniform(g, -2.f, 3.f);
  w.fill_uniform(g, 0.5f, 1.5f);
  b.fill_uniform(g, -0.5f, 0.5f);
  dout.fill_uniform(g, -1.f, 1.f);

  // CPU reference: forward, then backward from the CPU's mean/rstd.
  HBuf out_c(dt, n), dx_c(dt, n);
  std::vector<float> mean_c(sh.rows), rstd_c(sh.rows);
  std::vector<float> dw0 = rand_f32(g, sh.cols, -1.f, 1.f), db0 = rand_f32(g, sh.cols, -1.f, 1.f);
  std::vector<float> dw_c = dw0, db_c = db0;
  ath_norm_args a{};
  a.rows = sh.rows;
  a.cols = sh.cols;
  a.dtype = dt;
  a.eps = 1e-5f;
  a.x = x.data();
  a.weight = w.data();
  a.bias = (layer && with_bias) ? b.data() : nullptr;
  a.out = out_c.data();
  a.mean = layer ? mean_c.data() : nullptr;
  a.rstd = rstd_c.data();
  ok(layer ? ath_cpu_layernorm_fwd(&a) : ath_cpu_rmsnorm_fwd(&a), what + " cpu fwd");
  a.dout = dout.data();
  a.dx = dx_c.data();
  a.dweight = dw_c.data();
  a.dbias = (layer && with_bias) ? db_c.data() : nullptr;
  ok(layer ? ath_cpu_layernorm_bwd(&a) : ath_cpu_rmsnorm_bwd(&a), what + " cpu bwd");

  // CUDA.
  DTensor xd(x, off), wd(w, off), bd(b, off), doutd(dout, off);
  DTensor outd(dt, n, off), dxd(dt, n, off);
  DBuf meand(sh.rows * 4), rstdd(sh.rows * 4), dwd(sh.cols * 4), dbd(sh.cols * 4);
  meand.poison();
  rstdd.poison();
  ath_norm_args c = a;
  c.x = xd.ptr();
  c.weight = wd.ptr();
  c.bias = (layer && with_bias) ? bd.ptr() : nullptr;
  c.out = outd.ptr();
  c.mean = layer ? meand.ptr<float>() : nullptr;
  c.rstd = rstdd.ptr<float>();
  c.dout = c.dx = nullptr;
  c.dweight = c.dbias = nullptr;
  ok(cuda_run(layer ? ath_cuda_layernorm_fwd : ath_cuda_rmsnorm_fwd, &c), what + " cuda fwd");
  sync(what.c_str());
  expect_close(outd.get(), out_c, out_tol(dt, 4.0), what + " out");
  if (layer) expect_close(dl_f32(meand, sh.rows), mean_c, {1e-5, 1e-5}, what + " mean");
  expect_close(dl_f32(rstdd, sh.rows), rstd_c, {1e-5, 2e-5}, what + " rstd");

  // Backward from the CPU's statistics, so it is compared independently of the forward.
  ul_f32(meand, mean_c);
  ul_f32(rstdd, rstd_c);
  ul_f32(dwd, dw0);
  ul_f32(dbd, db0);
  c.dout = doutd.ptr();
  c.dx = dxd.ptr();
  c.dweight = dwd.ptr<float>();
  c.dbias = (layer && with_bias) ? dbd.ptr<float>() : nullptr;
  ok(cuda_run(layer ? ath_cuda_layernorm_bwd : ath_cuda_rmsnorm_bwd, &c), what + " cuda bwd");
  sync(what.c_str());
  expect_close(dxd.get(), dx_c, out_tol(dt, 8.0), what + " dx");
  const double scale = std::sqrt(static_cast<double>(sh.rows));
  expect_close(dl_f32(dwd, sh.cols), dw_c, {1e-4 * scale, 1e-4}, what + " dweight (accumulated)");
  if (layer && with_bias) expect_close(dl_f32(dbd, sh.cols), db_c, {1e-4 * scale, 1e-4}, what + " dbias (accumulated)");
  if (!(layer && with_bias)) {
    // dbias untouched when NULL
    expect_close(dl_f32(dbd, sh.cols), db0, {0, 0}, what + " dbias untouched");
  }

  // Determinism: a second backward from the same starting gradients is bit-identical.
  HBuf dx1 = dxd.get();
  std::vector<float> dw1 = dl_f32(dwd, sh.cols);
  ul_f32(dwd, dw0);
  ul_f32(dbd, db0);
  ok(cuda_run(layer ? ath_cuda_layernorm_bwd : ath_cuda_rmsnorm_bwd, &c), what + " cuda bwd 2");
  sync(what.c_str());
  expect_bits_equal(dxd.get(), dx1, what + " dx rerun");
  std::vector<float> dw2 = dl_f32(dwd, sh.cols);
  ATH_EXPECT(std::memcmp(dw1.data(), dw2.data(), dw1.size() * 4) == 0, "%s: dweight not deterministic", what.c_str());
}

ATH_TEST(cuda_layernorm_matches_cpu) {
  require_gpu();
  Rng g(11);
  for (int dt : kFloatDtypes)
    for (const auto& sh : kNormShapes)
      for (int off : {0, 1}) run_norm_case(true, dt, sh, off, off == 0, g);
}

ATH_TEST(cuda_rmsnorm_matches_cpu) {
  require_gpu();
  Rng g(12);
  for (int dt : kFloatDtypes)
    for (const auto& sh : kNormShapes)
      for (int off : {0, 1}) run_norm_case(false, dt, sh, off, false, g);
}

// ------------------------------------------------------------------ activations

ATH_TEST(cuda_activations_match_cpu) {
  require_gpu();
  Rng g(13);
  const int64_t sizes[] = {1, 7, 1000, 4099, 65539};
  for (int dt : kFloatDtypes)
    for (int act : {ATH_ACT_GELU_TANH, ATH_ACT_SILU, ATH_ACT_SWIGLU})
      for (int64_t n : sizes)
        for (int off : {0, 1}) {
          const std::string what = format("act %d %s n=%lld off=%d", act, dname(dt), (long long)n, off);
          const bool sw = act == ATH_ACT_SWIGLU;
          HBuf x(dt, n), y(dt, n), dout(dt, n), out_c(dt, n), dx_c(dt, n), dy_c(dt, n);
          x.fill_uniform(g, -6.f, 6.f);
          y.fill_uniform(g, -2.f, 2.f);
          dout.fill_uniform(g, -1.f, 1.f);
          ath_activation_args a{};
          a.n = n;
          a.dtype = dt;
          a.act = act;
          a.x = x.data();
          a.y = sw ? y.data() : nullptr;
          a.out = out_c.data();
          ok(ath_cpu_activation_fwd(&a), what + " cpu fwd");
          a.dout = dout.data();
          a.dx = dx_c.data();
          a.dy = sw ? dy_c.data() : nullptr;
          ok(ath_cpu_activation_bwd(&a), what + " cpu bwd");

          DTensor xd(x, off), yd(y, off), doutd(dout, off), outd(dt, n, off), dxd(dt, n, off), dyd(dt, n, off);
          ath_activation_args c = a;
          c.x = xd.ptr();
          c.y = sw ? yd.ptr() : nullptr;
          c.out = outd.ptr();
          c.dout = doutd.ptr();
          c.dx = dxd.ptr();
          c.dy = sw ? dyd.ptr() : nullptr;
          ok(cuda_run(ath_cuda_activation_fwd, &c), what + " cuda fwd");
          ok(cuda_run(ath_cuda_activation_bwd, &c), what + " cuda bwd");
          sync(what.c_str());
          expect_close(outd.get(), out_c, out_tol(dt, 4.0), what + " out");
          expect_close(dxd.get(), dx_c, out_tol(dt, 4.0), what + " dx");
          if (sw) expect_close(dyd.get(), dy_c, out_tol(dt, 4.0), what + " dy");
        }
  // In place: out == x.
  HBuf x(ATH_BF16, 1001), ref(ATH_BF16, 1001);
  x.fill_uniform(g, -3.f, 3.f);
  ath_activation_args a{};
  a.n = 1001;
  a.dtype = ATH_BF16;
  a.act = ATH_ACT_GELU_TANH;
  a.x = x.data();
  a.out = ref.data();
  ok(ath_cpu_activation_fwd(&a), "cpu gelu");
  DTensor xd(x, 0);
  a.x = xd.ptr();
  a.out = xd.ptr();
  ok(cuda_run(ath_cuda_activation_fwd, &a), "cuda gelu in place");
  sync("gelu in place");
  expect_close(xd.get(), ref, out_tol(ATH_BF16, 4.0), "gelu in place");
}

// ------------------------------------------------------------------ cross-entropy

ATH_TEST(cuda_cross_entropy_matches_cpu) {
  require_gpu();
  Rng g(14);
  struct S {
    int64_t rows, vocab, ld;
  };
  const S shapes[] = {{1, 1, 1}, {3, 10, 16}, {7, 1000, 1000}, {5, 50257, 50264}, {4, 32000, 32003}, {300, 129, 136}};
  for (int dt : kFloatDtypes)
    for (const S& sh : shapes)
      for (int off : {0, 1}) {
        const std::string what = format("xent %s rows=%lld vocab=%lld ld=%lld off=%d", dname(dt), (long long)sh.rows,
                                        (long long)sh.vocab, (long long)sh.ld, off);
        const int64_t n = sh.rows * sh.ld;
        HBuf logits(dt, n);
        logits.fill_uniform(g, -8.f, 8.f);
        std::vector<int32_t> targets(sh.rows);
        for (int64_t r = 0; r < sh.rows; ++r) targets[r] = static_cast<int32_t>(g.below(sh.vocab));
        if (sh.rows > 2) targets[1] = -1;  // ignored row
        std::vector<float> dl = rand_f32(g, sh.rows, 0.1f, 2.f);
        std::vector<float> loss_c(sh.rows), lse_c(sh.rows);
        HBuf dlog_c(dt, n);
        dlog_c.fill(7.f);  // sentinel in the [vocab, ld) gap
        ath_cross_entropy_args a{};
        a.rows = sh.rows;
        a.vocab = sh.vocab;
        a.ld = sh.ld;
        a.dtype = dt;
        a.logits = logits.data();
        a.targets = targets.data();
        a.losses = loss_c.data();
        a.lse = lse_c.data();
        ok(ath_cpu_cross_entropy_fwd(&a), what + " cpu fwd");
        a.dlosses = dl.data();
        a.dlogits = dlog_c.data();
        ok(ath_cpu_cross_entropy_bwd(&a), what + " cpu bwd");

        DTensor ld_(logits, off);
        DBuf td(sh.rows * 4), lossd(sh.rows * 4), lsed(sh.rows * 4), dld(sh.rows * 4);
        td.upload(targets.data(), sh.rows * 4);
        lossd.poison();
        lsed.poison();
        ul_f32(dld, dl);
        HBuf sentinel(dt, n);
        sentinel.fill(7.f);
        DTensor dlogd(sentinel, off);
        ath_cross_entropy_args c = a;
        c.logits = ld_.ptr();
        c.targets = td.ptr<int32_t>();
        c.losses = lossd.ptr<float>();
        c.lse = lsed.ptr<float>();
        c.dlosses = nullptr;
        c.dlogits = nullptr;
        ok(cuda_run(ath_cuda_cross_entropy_fwd, &c), what + " cuda fwd");
        sync(what.c_str());
        expect_close(dl_f32(lossd, sh.rows), loss_c, {2e-5, 2e-5}, what + " losses");
        std::vector<float> lse_g = dl_f32(lsed, sh.rows), lse_gv, lse_cv;
        for (int64_t r = 0; r < sh.rows; ++r)
          if (targets[r] >= 0) {
            lse_gv.push_back(lse_g[r]);
            lse_cv.push_back(lse_c[r]);
          }
        expect_close(lse_gv, lse_cv, {2e-5, 2e-5}, what + " lse");
        // Backward from the CPU's lse.
        ul_f32(lsed, lse_c);
        c.dlosses = dld.ptr<float>();
        c.dlogits = dlogd.ptr();
        ok(cuda_run(ath_cuda_cross_entropy_bwd, &c), what + " cuda bwd");
        sync(what.c_str());
        expect_close(dlogd.get(), dlog_c, out_tol(dt, 1e-2), what + " dlogits (incl. untouched gap)");
      }
}

ATH_TEST(cuda_cross_entropy_out_of_range_target_is_ignored) {
  require_gpu();
  // CUDA-only semantics (the CPU op rejects it): target >= vocab gives loss 0 and a zero gradient.
  const int64_t rows = 2, vocab = 5;
  std::vector<float> logits = {1, 2, 3, 4, 5, 1, 1, 1, 1, 1};
  std::vector<int32_t> targets = {2, 5};
  DBuf ld(40), td(8), lossd(8), lsed(8), dld(8), dlogd(40);
  ul_f32(ld, logits);
  td.upload(targets.data(), 8);
  ul_f32(dld, {1.f, 1.f});
  dlogd.poison();
  ath_cross_entropy_args c{};
  c.rows = rows;
  c.vocab = vocab;
  c.ld = vocab;
  c.dtype = ATH_F32;
  c.logits = ld.ptr();
  c.targets = td.ptr<int32_t>();
  c.losses = lossd.ptr<float>();
  c.lse = lsed.ptr<float>();
  c.dlosses = dld.ptr<float>();
  c.dlogits = dlogd.ptr();
  ok(cuda_run(ath_cuda_cross_entropy_fwd, &c), "fwd");
  ok(cuda_run(ath_cuda_cross_entropy_bwd, &c), "bwd");
  sync("xent");
  auto loss = dl_f32(lossd, 2);
  auto lse = dl_f32(lsed, 2);
  auto grad = dl_f32(dlogd, 10);
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0) + std::exp(5.0));
  ATH_EXPECT(std::fabs(lse[0] - lse0) < 1e-5, "lse[0] %g vs %g", lse[0], lse0);
  ATH_EXPECT(std::fabs(loss[0] - (lse0 - 3.0)) < 1e-5, "loss[0] %g", loss[0]);
  ATH_EXPECT(loss[1] == 0.f, "loss of the out-of-range row %g", loss[1]);
  for (int j = 5; j < 10; ++j) ATH_EXPECT(grad[j] == 0.f, "grad[1][%d] = %g", j - 5, grad[j]);
}

// ------------------------------------------------------------------ embedding

ATH_TEST(cuda_embedding_matches_cpu) {
  require_gpu();
  Rng g(15);
  struct S {
    int64_t n, vocab, dim;
  };
  // {64, 50257, 400}: a table over 64 MiB of F32, so the backward runs in two vocab windows
  const S shapes[] = {{1, 1, 1},       {10, 7, 3},        {100, 50, 64},    {257, 1000, 768},
                      {1000, 5, 40},   {3000, 300, 4100}, {64, 50257, 400}};
  for (int dt : kFloatDtypes)
    for (const S& sh : shapes)
      for (int off : {0, 1}) {
        const std::string what = format("embedding %s n=%lld vocab=%lld dim=%lld off=%d", dname(dt), (long long)sh.n,
                                        (long long)sh.vocab, (long long)sh.dim, off);
        HBuf table(dt, sh.vocab * sh.dim), dout(dt, sh.n * sh.dim), out_c(dt, sh.n * sh.dim);
        table.fill_uniform(g, -1.f, 1.f);
        dout.fill_uniform(g, -1.f, 1.f);
        std::vector<int32_t> ids(sh.n);
        for (auto& id : ids) id = static_cast<int32_t>(g.below(sh.vocab));
        std::vector<float> dt0 = rand_f32(g, sh.vocab * sh.dim, -1.f, 1.f), dt_c = dt0;
        ath_embedding_args a{};
        a.n = sh.n;
        a.vocab = sh.vocab;
        a.dim = sh.dim;
        a.dtype = dt;
        a.ids = ids.data();
        a.table = table.data();
        a.out = out_c.data();
        ok(ath_cpu_embedding_fwd(&a), what + " cpu fwd");
        a.dout = dout.data();
        a.dtable = dt_c.data();
        ok(ath_cpu_embedding_bwd(&a), what + " cpu bwd");

        DTensor tabd(table, off), doutd(dout, off), outd(dt, sh.n * sh.dim, off);
        DBuf idd(sh.n * 4), dtd(sh.vocab * sh.dim * 4 + 4);
        idd.upload(ids.data(), sh.n * 4);
        ath_embedding_args c = a;
        c.ids = idd.ptr<int32_t>();
        c.table = tabd.ptr();
        c.out = outd.ptr();
        c.dout = doutd.ptr();
        // the F32 table is offset by one float when off == 1 (scalar path)
        float* dtp = dtd.ptr<float>() + off;
        c.dtable = dtp;
        ok(ath_cuda_memcpy(dtp, dt0.data(), dt0.size() * 4, 0), "upload dtable");
        ok(cuda_run(ath_cuda_embedding_fwd, &c), what + " cuda fwd");
        ok(cuda_run(ath_cuda_embedding_bwd, &c), what + " cuda bwd");
        sync(what.c_str());
        expect_bits_equal(outd.get(), out_c, what + " out (a copy)");
        std::vector<float> got(dt0.size());
        ok(ath_cuda_memcpy(got.data(), dtp, got.size() * 4, 1), "download dtable");
        expect_close(got, dt_c, {1e-5, 1e-5}, what + " dtable (accumulated)");
        // Both backends form each row's sum in token order and add it once: the same bits.
        ATH_EXPECT(std::memcmp(got.data(), dt_c.data(), got.size() * 4) == 0,
                   "%s: dtable differs from the CPU's bits (sums not added once?)", what.c_str());
        // Deterministic: the same accumulation again gives the same bits.
        std::vector<float> again(dt0.size());
        ok(ath_cuda_memcpy(dtp, dt0.data(), dt0.size() * 4, 0), "upload dtable");
        ok(cuda_run(ath_cuda_embedding_bwd, &c), what + " cuda bwd 2");
        sync(what.c_str());
        ok(ath_cuda_memcpy(again.data(), dtp, again.size() * 4, 1), "download dtable");
        ATH_EXPECT(std::memcmp(again.data(), got.data(), got.size() * 4) == 0, "%s: dtable not deterministic",
                   what.c_str());
      }
}

ATH_TEST(cuda_embedding_bad_id_writes_zeros) {
  require_gpu();
  const int64_t vocab = 4, dim = 8;
  std::vector<float> table(vocab * dim);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<float>(i + 1);
  std::vector<int32_t> ids = {1, -3, 4, 0};
  DBuf td(table.size() * 4), idd(16), outd(4 * dim * 4), dtab(table.size() * 4);
  ul_f32(td, table);
  idd.upload(ids.data(), 16);
  outd.poison();
  ul_f32(dtab, std::vector<float>(table.size(), 0.f));
  std::vector<float> dout(4 * dim, 1.f);
  DBuf doutd(dout.size() * 4);
  ul_f32(doutd, dout);
  ath_embedding_args c{};
  c.n = 4;
  c.vocab = vocab;
  c.dim = dim;
  c.dtype = ATH_F32;
  c.ids = idd.ptr<int32_t>();
  c.table = td.ptr();
  c.out = outd.ptr();
  c.dout = doutd.ptr();
  c.dtable = dtab.ptr<float>();
  ok(cuda_run(ath_cuda_embedding_fwd, &c), "fwd");
  ok(cuda_run(ath_cuda_embedding_bwd, &c), "bwd");
  sync("embedding bad ids");
  auto out = dl_f32(outd, 4 * dim);
  auto grad = dl_f32(dtab, vocab * dim);
  for (int j = 0; j < dim; ++j) {
    ATH_EXPECT(out[j] == table[dim + j], "row 0 col %d: %g", j, out[j]);
    ATH_EXPECT(out[dim + j] == 0.f && out[2 * dim + j] == 0.f, "bad-id rows not zero at col %d", j);
    ATH_EXPECT(out[3 * dim + j] == table[j], "row 3 col %d: %g", j, out[3 * dim + j]);
    ATH_EXPECT(grad[j] == 1.f && grad[dim + j] == 1.f && grad[2 * dim + j] == 0.f && grad[3 * dim + j] == 0.f,
               "dtable col %d: %g %g %g %g", j, grad[j], grad[dim + j], grad[2 * dim + j], grad[3 * dim + j]);
  }
}

// ------------------------------------------------------------------ rope

ATH_TEST(cuda_rope_matches_cpu) {
  require_gpu();
  Rng g(16);
  struct S {
    int64_t b, t, h, d, pad;  // pad: extra elements per position (strided layout)
  };
  const S shapes[] = {{1, 1, 1, 2, 0}, {2, 5, 3, 8, 0}, {2, 17, 4, 64, 0}, {1, 33, 2, 128, 16}, {3, 9, 5, 6, 3}};
  for (int dt : kFloatDtypes)
    for (const S& sh : shapes)
      for (int inverse : {0, 1})
        for (int off : {0, 1}) {
          const int64_t pos0 = inverse ? 1000 : 3;
          const int64_t sh_ = sh.d, st = sh.h * sh.d + sh.pad, sb = sh.t * st;
          const int64_t n = sh.b * sb;
          const std::string what = format("rope %s B=%lld T=%lld H=%lld D=%lld pad=%lld inv=%d off=%d", dname(dt),
                                          (long long)sh.b, (long long)sh.t, (long long)sh.h, (long long)sh.d,
                                          (long long)sh.pad, inverse, off);
          HBuf x(dt, n), out_c(dt, n);
          x.fill_uniform(g, -2.f, 2.f);
          out_c = x;  // the padding is not written: keep it equal on both sides
          ath_rope_args a{};
          a.batch = sh.b;
          a.seq = sh.t;
          a.heads = sh.h;
          a.head_dim = sh.d;
          a.dtype = dt;
          a.inverse = inverse;
          a.pos0 = pos0;
          a.theta = 10000.f;
          a.x = x.data();
          a.out = out_c.data();
          a.x_sb = sb;
          a.x_st = st;
          a.x_sh = sh_;
          ok(ath_cpu_rope(&a), what + " cpu");
          DTensor xd(x, off), outd(x, off);
          ath_rope_args c = a;
          c.x = xd.ptr();
          c.out = outd.ptr();
          ok(cuda_run(ath_cuda_rope, &c), what + " cuda");
          // in place on xd
          c.out = xd.ptr();
          ok(cuda_run(ath_cuda_rope, &c), what + " cuda in place");
          sync(what.c_str());
          expect_close(outd.get(), out_c, out_tol(dt, 2.0), what);
          expect_close(xd.get(), out_c, out_tol(dt, 2.0), what + " in place");
        }
}

// ------------------------------------------------------------------ elementwise

ATH_TEST(cuda_elementwise_matches_cpu) {
  require_gpu();
  Rng g(17);
  const int64_t sizes[] = {1, 13, 4099, 100003};
  for (int dt : kFloatDtypes)
    for (int op : {ATH_EW_ADD, ATH_EW_MUL, ATH_EW_SCALE, ATH_EW_AXPY, ATH_EW_FILL, ATH_EW_CONVERT})
      for (int dto : kFloatDtypes) {
        if (op != ATH_EW_CONVERT && dto != dt) continue;
        for (int64_t n : sizes)
          for (int off : {0, 1}) {
            const std::string what = format("ew op %d %s->%s n=%lld off=%d", op, dname(dt), dname(dto), (long long)n, off);
            HBuf a(dt, n), b(dt, n), out_c(dto, n);
            a.fill_uniform(g, -3.f, 3.f);
            b.fill_uniform(g, -3.f, 3.f);
            out_c.fill_uniform(g, -3.f, 3.f);  // AXPY reads it
            HBuf out0 = out_c;
            ath_elementwise_args e{};
            e.n = n;
            e.op = op;
            e.dtype = dt;
            e.dtype_out = dto;
            e.a = a.data();
            e.b = b.data();
            e.out = out_c.data();
            e.alpha = -1.75f;
            ok(ath_cpu_elementwise(&e), what + " cpu");
            DTensor ad(a, off), bd(b, off), outd(out0, off);
            ath_elementwise_args c = e;
            c.a = ad.ptr();
            c.b = bd.ptr();
            c.out = outd.ptr();
            ok(cuda_run(ath_cuda_elementwise, &c), what + " cuda");
            sync(what.c_str());
            // Each result is one rounding of an exact F32 expression on both backends.
            expect_close(outd.get(), out_c, op == ATH_EW_AXPY ? out_tol(dto, 4.0) : Tol{0, 0}, what);
          }
      }
  // CONVERT with I32: F32 -> I32 (nearest even, saturated, NaN -> 0), I32 -> F32, I32 -> I32.
  for (int64_t n : {int64_t{1}, int64_t{4099}})
    for (int off : {0, 1})
      for (int pair = 0; pair < 3; ++pair) {
        const int din = pair == 1 ? ATH_F32 : ATH_I32, dout = pair == 0 ? ATH_F32 : ATH_I32;
        const std::string what = format("ew CONVERT %s->%s n=%lld off=%d", dname(din), dname(dout), (long long)n, off);
        std::vector<int32_t> in(static_cast<size_t>(n)), ref(static_cast<size_t>(n), 0);
        for (int64_t i = 0; i < n; ++i) {
          if (din == ATH_I32) {
            in[i] = static_cast<int32_t>(g.next());
          } else {
            const float specials[] = {2.5f, -2.5f, 3.5f, 3e9f, -3e9f, NAN, 0.49999997f};
            const float v = i < 7 ? specials[i] : g.uniform(-1e6f, 1e6f);
            std::memcpy(&in[i], &v, 4);
          }
        }
        ath_elementwise_args e{};
        e.n = n;
        e.op = ATH_EW_CONVERT;
        e.dtype = din;
        e.dtype_out = dout;
        e.a = in.data();
        e.out = ref.data();
        ok(ath_cpu_elementwise(&e), what + " cpu");
        DBuf ind(n * 4, off * 4), outd(n * 4, off * 4);
        ind.upload(in.data(), n * 4);
        outd.poison();
        e.a = ind.ptr();
        e.out = outd.ptr();
        ok(cuda_run(ath_cuda_elementwise, &e), what + " cuda");
        sync(what.c_str());
        std::vector<int32_t> got(static_cast<size_t>(n));
        outd.download(got.data(), n * 4);
        ATH_EXPECT(std::memcmp(got.data(), ref.data(), n * 4) == 0, "%s: differs from the CPU", what.c_str());
      }
  // Aliasing: out == a (ADD) and out == b (MUL).
  HBuf a(ATH_F16, 5001), b(ATH_F16, 5001), r1(ATH_F16, 5001), r2(ATH_F16, 5001);
  a.fill_uniform(g, -2.f, 2.f);
  b.fill_uniform(g, -2.f, 2.f);
  ath_elementwise_args e{};
  e.n = 5001;
  e.dtype = ATH_F16;
  e.op = ATH_EW_ADD;
  e.a = a.data();
  e.b = b.data();
  e.out = r1.data();
  ok(ath_cpu_elementwise(&e), "cpu add");
  e.op = ATH_EW_MUL;
  e.out = r2.data();
  ok(ath_cpu_elementwise(&e), "cpu mul");
  DTensor ad(a, 0), bd(b, 0);
  e.op = ATH_EW_ADD;
  e.a = ad.ptr();
  e.b = bd.ptr();
  e.out = ad.ptr();
  ok(cuda_run(ath_cuda_elementwise, &e), "cuda add in place");
  DTensor a2(a, 0);
  e.op = ATH_EW_MUL;
  e.a = a2.ptr();
  e.out = bd.ptr();
  ok(cuda_run(ath_cuda_elementwise, &e), "cuda mul in place");
  sync("ew alias");
  expect_close(ad.get(), r1, Tol{0, 0}, "add out==a");
  expect_close(bd.get(), r2, Tol{0, 0}, "mul out==b");
}

// ------------------------------------------------------------------ reduce

ATH_TEST(cuda_reduce_matches_cpu_and_is_deterministic) {
  require_gpu();
  Rng g(18);
  for (int dt : kFloatDtypes) {
    for (int op : {ATH_RED_SUM, ATH_RED_SUM_SQUARES})
      for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 3}})
        for (int off : {0, 1}) {
          const std::string what = format("reduce op %d %s n=%lld off=%d", op, dname(dt), (long long)n, off);
          HBuf x(dt, n);
          x.fill_uniform(g, -1.f, 1.f);
          float ref = -1.f;
          ath_reduce_args r{};
          r.n = n;
          r.op = op;
          r.dtype = dt;
          r.x = x.data();
          r.out = &ref;
          ok(ath_cpu_reduce(&r), what + " cpu");
          DTensor xd(x, off);
          DBuf od(4);
          od.poison();
          ath_reduce_args c = r;
          c.x = xd.ptr();
          c.out = od.ptr<float>();
          ok(cuda_run(ath_cuda_reduce, &c), what + " cuda");
          sync(what.c_str());
          const float got = dl_f32(od, 1)[0];
          const double tol = 2e-7 * std::max<double>(1.0, static_cast<double>(n)) + 1e-5 * std::fabs(ref);
          ATH_EXPECT(std::fabs(got - ref) <= tol, "%s: got %.9g ref %.9g", what.c_str(), got, ref);
          ok(cuda_run(ath_cuda_reduce, &c), what + " cuda 2");
          sync(what.c_str());
          const float again = dl_f32(od, 1)[0];
          ATH_EXPECT(std::memcmp(&got, &again, 4) == 0, "%s: %.9g then %.9g", what.c_str(), got, again);
        }
    struct S {
      int64_t rows, cols;
    };
    for (S sh : {S{1, 1}, S{1000, 3}, S{37, 4099}, S{5000, 64}, S{70000, 5}})
      for (int off : {0, 1}) {
        const std::string what =
            format("reduce SUM_ROWS %s rows=%lld cols=%lld off=%d", dname(dt), (long long)sh.rows, (long long)sh.cols, off);
        HBuf x(dt, sh.rows * sh.cols);
        x.fill_uniform(g, -1.f, 1.f);
        std::vector<float> out0 = rand_f32(g, sh.cols, -1.f, 1.f), ref = out0;
        ath_reduce_args r{};
        r.n = sh.rows * sh.cols;
        r.rows = sh.rows;
        r.cols = sh.cols;
        r.op = ATH_RED_SUM_ROWS;
        r.dtype = dt;
        r.x = x.data();
        r.out = ref.data();
        ok(ath_cpu_reduce(&r), what + " cpu");
        DTensor xd(x, off);
        DBuf od(sh.cols * 4);
        ul_f32(od, out0);
        ath_reduce_args c = r;
        c.x = xd.ptr();
        c.out = od.ptr<float>();
        ok(cuda_run(ath_cuda_reduce, &c), what + " cuda");
        sync(what.c_str());
        const auto got = dl_f32(od, sh.cols);
        const double scale = std::sqrt(static_cast<double>(sh.rows));
        expect_close(got, ref, {2e-5 * scale, 1e-5}, what + " (accumulated)");
        ul_f32(od, out0);
        ok(cuda_run(ath_cuda_reduce, &c), what + " cuda 2");
        sync(what.c_str());
        const auto again = dl_f32(od, sh.cols);
        ATH_EXPECT(std::memcmp(got.data(), again.data(), got.size() * 4) == 0, "%s: not deterministic", what.c_str());
      }
  }
}

// ------------------------------------------------------------------ adamw

ATH_TEST(cuda_adamw_matches_cpu) {
  require_gpu();
  Rng g(19);
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{4099}, int64_t{100003}})
    for (int lowp : {-1, static_cast<int>(ATH_BF16), static_cast<int>(ATH_F16)})
      for (int off : {0, 1}) {
        const std::string what = format("adamw n=%lld lowp=%d off=%d", (long long)n, lowp, off);
        std::vector<float> p = rand_f32(g, n, -1.f, 1.f), m = rand_f32(g, n, -0.1f, 0.1f),
                           v = rand_f32(g, n, 0.f, 0.01f);
        HBuf low_c(lowp < 0 ? ATH_F32 : lowp, n);
        DBuf pd(n * 4, off * 4), gd(n * 4, off * 4), md(n * 4, off * 4), vd(n * 4, off * 4);
        DTensor lowd(lowp < 0 ? ATH_F32 : lowp, n, off);
        ul_f32(pd, p);
        ul_f32(md, m);
        ul_f32(vd, v);
        for (int64_t step = 1; step <= 3; ++step) {
          std::vector<float> grad = rand_f32(g, n, -2.f, 2.f);
          ul_f32(gd, grad);
          ath_adamw_args a{};
          a.n = n;
          a.params = p.data();
          a.grads = grad.data();
          a.m = m.data();
          a.v = v.data();
          a.params_lowp = lowp < 0 ? nullptr : low_c.data();
          a.dtype_lowp = lowp < 0 ? ATH_BF16 : lowp;
          a.lr = 1e-2f;
          a.beta1 = 0.9f;
          a.beta2 = 0.95f;
          a.eps = 1e-8f;
          a.weight_decay = 0.1f;
          a.grad_scale = 0.5f;
          a.step = step;
          ok(ath_cpu_adamw(&a), what + " cpu");
          ath_adamw_args c = a;
          c.params = pd.ptr<float>();
          c.grads = gd.ptr<float>();
          c.m = md.ptr<float>();
          c.v = vd.ptr<float>();
          c.params_lowp = lowp < 0 ? nullptr : lowd.ptr();
          ok(cuda_run(ath_cuda_adamw, &c), what + " cuda");
        }
        sync(what.c_str());
        expect_close(dl_f32(pd, n), p, {1e-5, 1e-5}, what + " params");
        expect_close(dl_f32(md, n), m, {1e-6, 1e-5}, what + " m");
        expect_close(dl_f32(vd, n), v, {1e-7, 1e-5}, what + " v");
        if (lowp >= 0) expect_close(lowd.get(), low_c, out_tol(lowp), what + " params_lowp");
      }
}

// The factor read from device memory (grad_scale_ptr) gives the bits of the same factor passed by
// value; a non-finite factor there leaves params, m, v and the low-precision copy untouched.
ATH_TEST(cuda_adamw_scale_pointer_matches_scalar) {
  require_gpu();
  Rng g(23);
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4099}, int64_t{100003}})
    for (int lowp : {-1, static_cast<int>(ATH_BF16)})
      for (int off : {0, 1}) {
        const std::string what = format("adamw scale pointer n=%lld lowp=%d off=%d", (long long)n, lowp, off);
        std::vector<float> p = rand_f32(g, n, -1.f, 1.f), m = rand_f32(g, n, -0.1f, 0.1f),
                           v = rand_f32(g, n, 0.f, 0.01f), grad = rand_f32(g, n, -2.f, 2.f);
        const float scale = 0.3712f, nan = std::nanf("");
        DBuf gd(n * 4, off * 4), sd(4), nd(4);
        ul_f32(gd, grad);
        sd.upload(&scale, 4);
        nd.upload(&nan, 4);
        DBuf pa(n * 4, off * 4), ma(n * 4, off * 4), va(n * 4, off * 4), pb(n * 4, off * 4), mb(n * 4, off * 4),
            vb(n * 4, off * 4);
        DTensor la(lowp < 0 ? ATH_F32 : lowp, n, off), lb(lowp < 0 ? ATH_F32 : lowp, n, off);
        for (DBuf* d : {&pa, &pb}) ul_f32(*d, p);
        for (DBuf* d : {&ma, &mb}) ul_f32(*d, m);
        for (DBuf* d : {&va, &vb}) ul_f32(*d, v);
        for (int64_t step = 1; step <= 3; ++step) {
          ath_adamw_args a{};
          a.n = n; a.grads = gd.ptr<float>(); a.dtype_lowp = lowp < 0 ? ATH_BF16 : lowp;
          a.lr = 1e-2f; a.beta1 = 0.9f; a.beta2 = 0.95f; a.eps = 1e-8f; a.weight_decay = 0.1f; a.step = step;
          ath_adamw_args b = a;
          a.params = pa.ptr<float>(); a.m = ma.ptr<float>(); a.v = va.ptr<float>();
          a.params_lowp = lowp < 0 ? nullptr : la.ptr();
          a.grad_scale = scale;
          ok(cuda_run(ath_cuda_adamw, &a), what + " by value");
          b.params = pb.ptr<float>(); b.m = mb.ptr<float>(); b.v = vb.ptr<float>();
          b.params_lowp = lowp < 0 ? nullptr : lb.ptr();
          b.grad_scale = 123.f;  // ignored: the pointed-to factor is read in its place
          b.grad_scale_ptr = sd.ptr<float>();
          ok(cuda_run(ath_cuda_adamw, &b), what + " by pointer");
          b.grad_scale_ptr = nd.ptr<float>();
          ok(cuda_run(ath_cuda_adamw, &b), what + " NaN factor");  // refused: nothing changes
        }
        sync(what.c_str());
        expect_close(dl_f32(pb, n), dl_f32(pa, n), {0, 0}, what + " params");
        expect_close(dl_f32(mb, n), dl_f32(ma, n), {0, 0}, what + " m");
        expect_close(dl_f32(vb, n), dl_f32(va, n), {0, 0}, what + " v");
        if (lowp >= 0) expect_close(lb.get(), la.get(), {0, 0}, what + " params_lowp");
      }
}

// The device's loss mean and clipping factor are the CPU twin's bits (one thread, the same double sums).
ATH_TEST(cuda_train_scalars_match_cpu) {
  require_gpu();
  Rng g(29);
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{16385}}) {
    const std::string what = format("train_scalars n=%lld", (long long)n);
    std::vector<float> x = rand_f32(g, n, 0.f, 12.f);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& ti : t) ti = g.below(4) == 0 ? -1 : static_cast<int32_t>(g.below(100));
    DBuf xd(n * 4), td(n * 4), od(8);
    ul_f32(xd, x);
    td.upload(t.data(), static_cast<size_t>(n) * 4);
    for (float max_norm : {0.f, 0.5f, 1e6f}) {
      for (int op : {static_cast<int>(ATH_TS_LOSS_MEAN), static_cast<int>(ATH_TS_CLIP_SCALE)}) {
        float want[2] = {0, 0};
        ath_train_scalars_args a{};
        a.op = op; a.n = n; a.x = x.data(); a.targets = t.data(); a.n_losses = 1; a.losses = x.data();
        a.max_norm = max_norm; a.out = want;
        ok(ath_cpu_train_scalars(&a), what + " cpu");
        a.x = xd.ptr<float>(); a.targets = td.ptr<int32_t>(); a.losses = xd.ptr<float>(); a.out = od.ptr<float>();
        ok(cuda_run(ath_cuda_train_scalars, &a), what + " cuda");
        sync(what.c_str());
        std::vector<float> got = dl_f32(od, 2);
        const int outs = op == ATH_TS_LOSS_MEAN ? 1 : 2;
        ATH_EXPECT(std::memcmp(got.data(), want, outs * 4) == 0, "%s op %d max_norm %g: (%.9g, %.9g) vs CPU (%.9g, %.9g)",
                   what.c_str(), op, (double)max_norm, (double)got[0], (double)got[1], (double)want[0], (double)want[1]);
      }
    }
  }
}

// ------------------------------------------------------------------ rand

ATH_TEST(cuda_rand_matches_cpu) {
  require_gpu();
  for (int dt : kFloatDtypes)
    for (int dist : {ATH_RAND_UNIFORM, ATH_RAND_NORMAL})
      for (int64_t n : {int64_t{1}, int64_t{1001}, int64_t{65536 + 5}})
        for (int off : {0, 1}) {
          const std::string what = format("rand dist %d %s n=%lld off=%d", dist, dname(dt), (long long)n, off);
          HBuf ref(dt, n);
          ath_rand_args r{};
          r.n = n;
          r.dtype = dt;
          r.dist = dist;
          r.seed = 0x1234567890abcdefull;
          r.offset = (uint64_t{1} << 33) + 17;
          r.a = dist == ATH_RAND_UNIFORM ? -0.5f : 0.25f;
          r.b = dist == ATH_RAND_UNIFORM ? 2.5f : 0.02f;
          r.out = ref.data();
          ok(ath_cpu_rand(&r), what + " cpu");
          DTensor od(dt, n, off);
          ath_rand_args c = r;
          c.out = od.ptr();
          ok(cuda_run(ath_cuda_rand, &c), what + " cuda");
          sync(what.c_str());
          if (dist == ATH_RAND_UNIFORM) {
            // The same Philox words and the same affine map, rounded the same way: bit-identical.
            expect_bits_equal(od.get(), ref, what + " (uniform)");
          } else {
            // libm vs device logf/cosf: last bits of F32, at most one rounding step of the dtype.
            expect_close(od.get(), ref, dt == ATH_F32 ? Tol{1e-6, 1e-5} : out_tol(dt, 0.1), what);
          }
        }
}

}  // namespace

// CUDA attention (ath_cuda_attention_fwd / _bwd) against the CPU twins (ath_cpu_attention_fwd /
// _bwd) on the same random inputs, through the C ABI only: awkward lengths (1, 7, 33, 127, 300),
// Tq != Tk with bottom-right causal alignment (including rows that see no key), GQA, every
// supported head dim, BF16 / F16 / F32, strided layouts (16-byte aligned -> tensor-core kernels,
// unaligned -> SIMT fallback), run-to-run bit reproducibility, empty sequences and argument
// validation. Device outputs are poisoned with NaN bytes first, so an element the kernels forget
// to write fails the comparison.
//
// Reference: the CPU op in F32 on contiguous copies of the very same (dtype-rounded) inputs.
// Tolerances are relative to the largest reference magnitude: F32 1e-4; F16 5e-3; BF16 3e-2
// (P and dS are rounded to 16 bits before the tensor-core products, and outputs to the dtype).
// Without a GPU every test skips with ath_cuda_unavailable_reason(). The cuda_attention_hopper_*
// tests run the sm_90a forward (kernels/attention_fwd_wgmma.cu) and skip unless the Hopper switch
// is on (ATHANOR_CUDA_HOPPER=1) on a device of compute capability 9.0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "../common/dtype.h"
#include "cuda_test_context.h"
#include "testing.h"

namespace {

using ath::testing::cuda_ctx;
using ath::testing::cuda_run;
using ath::testing::format;
using ath::testing::ScopedEnv;

constexpr int kDevice = 0;

void require_gpu() {
  if (ath_cuda_device_count() <= 0) ath::testing::skip(std::string("no CUDA device: ") + ath_cuda_unavailable_reason());
  ATH_EXPECT(ath_cuda_set_device(kDevice) == ATH_OK, "ath_cuda_set_device: %s", ath_last_error());
}

// Device buffer owned through the C ABI.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    if (ath_cuda_malloc(kDevice, n, &ptr) != ATH_OK) throw std::runtime_error(std::string("ath_cuda_malloc: ") + ath_last_error());
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) ath_cuda_free(kDevice, ptr);
  }
  void upload(const void* src) {
    if (ath::testing::cuda_upload(ptr, src, bytes) != ATH_OK) throw std::runtime_error(std::string("upload: ") + ath_last_error());
  }
  void download(void* dst) const {
    if (ath::testing::cuda_download(dst, ptr, bytes) != ATH_OK) throw std::runtime_error(std::string("download: ") + ath_last_error());
  }
  void poison() {
    std::vector<unsigned char> nan(bytes, 0xff);  // NaN in F32, BF16 and F16
    upload(nan.data());
  }
};

void sync_device() {
  if (ath::testing::cuda_sync() != ATH_OK)
    throw std::runtime_error(std::string("synchronize the test stream: ") + ath_last_error());
}

enum class Layout {
  kContiguous,  // (B, H, T, D)
  kBTHD,        // (B, T, H, D) viewed as (B, H, T, D): the usual fused-QKV layout, 16-byte aligned
  kPadded,      // rows padded to D + 8 elements and heads by 8 more: strided but 16-byte aligned
  kUnaligned,   // rows of D + 3 elements: not 16-byte aligned (SIMT fallback for 16-bit types)
};

struct Strides {
  int64_t sb, sh, st;
};

Strides make_strides(Layout l, int64_t H, int64_t T, int64_t D) {
  switch (l) {
    case Layout::kBTHD: return {T * H * D, D, H * D};
    case Layout::kPadded: return {H * (T * (D + 8) + 8), T * (D + 8) + 8, D + 8};
    case Layout::kUnaligned: return {H * (T * (D + 3) + 1), T * (D + 3) + 1, D + 3};
    default: return {H * T * D, T * D, D};
  }
}

int64_t span(const Strides& s, int64_t B, int64_t H, int64_t T, int64_t D) {
  if (B == 0 || T == 0) return 1;
  return (B - 1) * s.sb + (H - 1) * s.sh + (T - 1) * s.st + D;
}

size_t esize(int dtype) { return dtype == ATH_F32 ? 4 : 2; }

// A (B, H, T, D) tensor: F32 values (already rounded to dtype) plus its strided device image.
struct Tensor4 {
  int64_t B, H, T, D;
  int dtype;
  Strides st;
  std::vector<float> vals;           // contiguous (B, H, T, D)
  std::vector<unsigned char> image;  // strided, dtype
  Tensor4(int64_t b, int64_t h, int64_t t, int64_t d, int dt, Layout l)
      : B(b), H(h), T(t), D(d), dtype(dt), st(make_strides(l, h, t, d)),
        vals(static_cast<size_t>(b * h * t * d)), image(static_cast<size_t>(span(st, b, h, t, d)) * esize(dt), 0xff) {}
  int64_t at(int64_t b, int64_t h, int64_t t, int64_t d) const { return b * st.sb + h * st.sh + t * st.st + d; }
  void fill_random(std::mt19937& rng, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t d = 0; d < D; ++d, ++n) {
            ath::store_f32(image.data(), dtype, at(b, h, t, d), u(rng));
            vals[n] = ath::load_f32(image.data(), dtype, at(b, h, t, d));  // the rounded value
          }
  }
  // Reads the strided image back into vals (after a download).
  void unpack() {
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t d = 0; d < D; ++d, ++n) vals[n] = ath::load_f32(image.data(), dtype, at(b, h, t, d));
  }
};

struct Case {
  int64_t B, Hq, Hkv, Tq, Tk, D;
  int dtype;
  int causal;
  Layout layout;
};

std::string describe(const Case& c) {
  static const char* const dt[] = {"F32", "BF16", "F16"};
  static const char* const lay[] = {"contiguous", "BTHD", "padded", "unaligned"};
  return format("B=%lld Hq=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld %s %s %s", (long long)c.B, (long long)c.Hq,
                (long long)c.Hkv, (long long)c.Tq, (long long)c.Tk, (long long)c.D, dt[c.dtype],
                c.causal ? "causal" : "full", lay[static_cast<int>(c.layout)]);
}

double tolerance(int dtype) { return dtype == ATH_F32 ? 1e-4 : dtype == ATH_F16 ? 5e-3 : 3e-2; }

// Compares got against ref with an absolute tolerance of tol * max(|ref|) (floor 1e-2).
void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double tol, const std::string& what) {
  ATH_EXPECT(got.size() == ref.size(), "%s: size %zu vs %zu", what.c_str(), got.size(), ref.size());
  if (got.size() != ref.size() || ref.empty()) return;
  double maxref = 0;
  for (float r : ref)
    if (std::isfinite(r)) maxref = std::fmax(maxref, std::fabs(r));
  const double atol = tol * std::fmax(maxref, 1e-2);
  ATH_EXPECT_CLOSE(got.data(), ref.data(), static_cast<int64_t>(ref.size()), atol, tol, what.c_str());
}

ath_attention_args make_args(const Case& c, float scale) {
  ath_attention_args a{};
  a.batch = c.B; a.heads_q = c.Hq; a.heads_kv = c.Hkv; a.tq = c.Tq; a.tk = c.Tk; a.head_dim = c.D;
  a.dtype = c.dtype; a.causal = c.causal; a.scale = scale;
  return a;
}

// CPU reference (F32, contiguous) for forward and backward.
struct Reference {
  std::vector<float> o, lse, dq, dk, dv;
};

Reference cpu_reference(const Case& c, float scale, const Tensor4& q, const Tensor4& k, const Tensor4& v,
                        const Tensor4& dout) {
  Reference r;
  const size_t nq = q.vals.size(), nk = k.vals.size();
  r.o.assign(nq, NAN); r.lse.assign(static_cast<size_t>(c.B * c.Hq * c.Tq), NAN);
  r.dq.assign(nq, NAN); r.dk.assign(nk, NAN); r.dv.assign(nk, NAN);
  ath_attention_args a = make_args(c, scale);
  a.dtype = ATH_F32;
  const int64_t D = c.D;
  a.q = q.vals.data(); a.q_sb = c.Hq * c.Tq * D; a.q_sh = c.Tq * D; a.q_st = D;
  a.k = k.vals.data(); a.k_sb = c.Hkv * c.Tk * D; a.k_sh = c.Tk * D; a.k_st = D;
  a.v = v.vals.data(); a.v_sb = a.k_sb; a.v_sh = a.k_sh; a.v_st = D;
  a.o = r.o.data(); a.o_sb = a.q_sb; a.o_sh = a.q_sh; a.o_st = D;
  a.lse = r.lse.data();
  ATH_EXPECT(ath_cpu_attention_fwd(&a) == ATH_OK, "ath_cpu_attention_fwd: %s", ath_last_error());
  a.dout = dout.vals.data(); a.dq = r.dq.data(); a.dk = r.dk.data(); a.dv = r.dv.data();
  ATH_EXPECT(ath_cpu_attention_bwd(&a) == ATH_OK, "ath_cpu_attention_bwd: %s", ath_last_error());
  return r;
}

// Device-side tensors of one case.
struct DeviceCase {
  Tensor4 q, k, v, o, dout, dq, dk, dv;
  std::vector<float> lse;
  DeviceBuffer dq_buf, dk_buf, dv_buf, q_buf, k_buf, v_buf, o_buf, do_buf, lse_buf;
  DeviceCase(const Case& c, std::mt19937& rng)
      : q(c.B, c.Hq, c.Tq, c.D, c.dtype, c.layout), k(c.B, c.Hkv, c.Tk, c.D, c.dtype, c.layout),
        v(c.B, c.Hkv, c.Tk, c.D, c.dtype, c.layout), o(c.B, c.Hq, c.Tq, c.D, c.dtype, c.layout),
        dout(c.B, c.Hq, c.Tq, c.D, c.dtype, c.layout), dq(c.B, c.Hq, c.Tq, c.D, c.dtype, c.layout),
        dk(c.B, c.Hkv, c.Tk, c.D, c.dtype, c.layout), dv(c.B, c.Hkv, c.Tk, c.D, c.dtype, c.layout),
        lse(static_cast<size_t>(c.B * c.Hq * c.Tq)),
        dq_buf(dq.image.size()), dk_buf(dk.image.size()), dv_buf(dv.image.size()), q_buf(q.image.size()),
        k_buf(k.image.size()), v_buf(v.image.size()), o_buf(o.image.size()), do_buf(dout.image.size()),
        lse_buf(std::max<size_t>(lse.size(), 1) * sizeof(float)) {
    q.fill_random(rng, -1.f, 1.f);
    k.fill_random(rng, -2.f, 2.f);  // wider scores: peakier softmax rows
    v.fill_random(rng, -1.f, 1.f);
    dout.fill_random(rng, -1.f, 1.f);
    q_buf.upload(q.image.data());
    k_buf.upload(k.image.data());
    v_buf.upload(v.image.data());
    do_buf.upload(dout.image.data());
  }
  ath_attention_args args(const Case& c, float scale) {
    ath_attention_args a = make_args(c, scale);
    a.q = q_buf.ptr; a.q_sb = q.st.sb; a.q_sh = q.st.sh; a.q_st = q.st.st;
    a.k = k_buf.ptr; a.k_sb = k.st.sb; a.k_sh = k.st.sh; a.k_st = k.st.st;
    a.v = v_buf.ptr; a.v_sb = v.st.sb; a.v_sh = v.st.sh; a.v_st = v.st.st;
    a.o = o_buf.ptr; a.o_sb = o.st.sb; a.o_sh = o.st.sh; a.o_st = o.st.st;
    a.lse = static_cast<float*>(lse_buf.ptr);
    a.dout = do_buf.ptr; a.dq = dq_buf.ptr; a.dk = dk_buf.ptr; a.dv = dv_buf.ptr;
    return a;
  }
  // Runs forward then backward on the device (outputs poisoned first) and downloads everything.
  bool run(const Case& c, float scale) {
    for (DeviceBuffer* b : {&o_buf, &lse_buf, &dq_buf, &dk_buf, &dv_buf}) b->poison();
    ath_attention_args a = args(c, scale);
    if (cuda_run(ath_cuda_attention_fwd, &a) != ATH_OK) {
      ATH_EXPECT(false, "ath_cuda_attention_fwd: %s", ath_last_error());
      return false;
    }
    if (cuda_run(ath_cuda_attention_bwd, &a) != ATH_OK) {
      ATH_EXPECT(false, "ath_cuda_attention_bwd: %s", ath_last_error());
      return false;
    }
    sync_device();
    o_buf.download(o.image.data());
    std::vector<float> lse_all(lse_buf.bytes / sizeof(float));
    lse_buf.download(lse_all.data());
    std::copy(lse_all.begin(), lse_all.begin() + static_cast<int64_t>(lse.size()), lse.begin());
    dq_buf.download(dq.image.data());
    dk_buf.download(dk.image.data());
    dv_buf.download(dv.image.data());
    for (Tensor4* t : {&o, &dq, &dk, &dv}) t->unpack();
    return true;
  }
};

void run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const float scale = 1.f / std::sqrt(static_cast<float>(c.D));
  DeviceCase dc(c, rng);
  if (!dc.run(c, scale)) return;
  const Reference ref = cpu_reference(c, scale, dc.q, dc.k, dc.v, dc.dout);
  const double tol = tolerance(c.dtype);
  const std::string d = describe(c);
  expect_close(dc.o.vals, ref.o, tol, d + ": o");
  // lse comes from F32 scores of exactly representable products: tight for every dtype.
  ATH_EXPECT_CLOSE(dc.lse.data(), ref.lse.data(), static_cast<int64_t>(ref.lse.size()), 2e-4, 1e-4,
                   (d + ": lse").c_str());
  expect_close(dc.dq.vals, ref.dq, tol, d + ": dq");
  expect_close(dc.dk.vals, ref.dk, tol, d + ": dk");
  expect_close(dc.dv.vals, ref.dv, tol, d + ": dv");
}

// Lengths, causal alignment, every head dim; one dtype per test.
std::vector<Case> shape_sweep(int dtype) {
  std::vector<Case> cases;
  const int64_t dims[] = {32, 64, 96, 128};
  const int64_t lens[][2] = {{1, 1}, {7, 7}, {33, 33}, {127, 127}, {300, 300}, {7, 300}, {300, 33}, {33, 127}};
  int i = 0;
  for (const auto& len : lens)
    for (int causal = 0; causal < 2; ++causal) {
      const int64_t D = dims[i++ % 4];
      cases.push_back({2, 2, 1, len[0], len[1], D, dtype, causal, Layout::kContiguous});
    }
  return cases;
}

void run_sweep(int dtype, uint32_t seed) {
  require_gpu();
  for (const Case& c : shape_sweep(dtype)) run_case(c, seed++);
}

}  // namespace

ATH_TEST(cuda_attention_bf16_shapes) { run_sweep(ATH_BF16, 100); }
ATH_TEST(cuda_attention_f16_shapes) { run_sweep(ATH_F16, 200); }
ATH_TEST(cuda_attention_f32_shapes) { run_sweep(ATH_F32, 300); }

ATH_TEST(cuda_attention_gqa_and_cross_lengths) {
  require_gpu();
  uint32_t seed = 400;
  for (int dtype : {ATH_BF16, ATH_F16, ATH_F32})
    for (int64_t D : {64, 128}) {
      run_case({1, 8, 2, 127, 300, D, dtype, 1, Layout::kContiguous}, seed++);  // decode-like: Tq < Tk
      run_case({1, 8, 2, 300, 127, D, dtype, 1, Layout::kContiguous}, seed++);  // rows with no key
      run_case({2, 8, 2, 33, 300, D, dtype, 0, Layout::kContiguous}, seed++);
    }
}

ATH_TEST(cuda_attention_strided_layouts) {
  require_gpu();
  uint32_t seed = 500;
  for (int dtype : {ATH_BF16, ATH_F16, ATH_F32})
    for (Layout l : {Layout::kBTHD, Layout::kPadded, Layout::kUnaligned})
      for (int64_t D : {32, 96}) run_case({2, 4, 2, 127, 65, D, dtype, 1, l}, seed++);
}

ATH_TEST(cuda_attention_long_causal) {
  require_gpu();
  run_case({1, 2, 2, 1024, 1024, 128, ATH_BF16, 1, Layout::kContiguous}, 600);
  run_case({1, 4, 2, 1000, 1000, 64, ATH_F16, 1, Layout::kBTHD}, 601);
  run_case({1, 2, 1, 513, 1030, 96, ATH_BF16, 1, Layout::kContiguous}, 602);
}

// Forward and backward are free of atomics: two runs give identical bits.
ATH_TEST(cuda_attention_bit_reproducible) {
  require_gpu();
  for (int dtype : {ATH_BF16, ATH_F32}) {
    const Case c{2, 4, 2, 300, 300, 64, dtype, 1, Layout::kContiguous};
    std::mt19937 rng(700);
    DeviceCase dc(c, rng);
    const float scale = 0.125f;
    if (!dc.run(c, scale)) return;
    const auto o1 = dc.o.image, dq1 = dc.dq.image, dk1 = dc.dk.image, dv1 = dc.dv.image;
    const auto lse1 = dc.lse;
    if (!dc.run(c, scale)) return;
    ATH_EXPECT(o1 == dc.o.image, "%s: o differs between runs", describe(c).c_str());
    ATH_EXPECT(lse1 == dc.lse, "%s: lse differs between runs", describe(c).c_str());
    ATH_EXPECT(dq1 == dc.dq.image, "%s: dq differs between runs", describe(c).c_str());
    ATH_EXPECT(dk1 == dc.dk.image, "%s: dk differs between runs", describe(c).c_str());
    ATH_EXPECT(dv1 == dc.dv.image, "%s: dv differs between runs", describe(c).c_str());
  }
}

// Tk = 0: every row sees nothing (o = 0, lse = -inf, dq = 0). Tq = 0: dk = dv = 0.
ATH_TEST(cuda_attention_empty_sequences) {
  require_gpu();
  for (int dtype : {ATH_BF16, ATH_F32}) {
    {
      const Case c{1, 2, 1, 5, 0, 64, dtype, 0, Layout::kContiguous};
      std::mt19937 rng(800);
      DeviceCase dc(c, rng);
      if (!dc.run(c, 0.125f)) return;
      for (float x : dc.o.vals) ATH_EXPECT(x == 0.f, "Tk=0: o must be 0, got %g", x);
      for (float x : dc.lse) ATH_EXPECT(std::isinf(x) && x < 0, "Tk=0: lse must be -inf, got %g", x);
      for (float x : dc.dq.vals) ATH_EXPECT(x == 0.f, "Tk=0: dq must be 0, got %g", x);
    }
    {
      const Case c{1, 2, 1, 0, 9, 64, dtype, 1, Layout::kContiguous};
      std::mt19937 rng(801);
      DeviceCase dc(c, rng);
      if (!dc.run(c, 0.125f)) return;
      for (float x : dc.dk.vals) ATH_EXPECT(x == 0.f, "Tq=0: dk must be 0, got %g", x);
      for (float x : dc.dv.vals) ATH_EXPECT(x == 0.f, "Tq=0: dv must be 0, got %g", x);
    }
  }
}

// ------------------------------------------------------------------ Hopper forward (sm_90a)
// With the Hopper switch on (ATHANOR_CUDA_HOPPER=1) on compute capability 9.0, the forward of
// BF16/F16 with D = 64 or 128 and aligned layouts runs kernels/attention_fwd_wgmma.cu (every test
// above then exercises it too for those cases, in its default schedule); the backward stays the
// mma.sync kernel and reads the new forward's o and lse, so its gradients check them once more.
// Each case below runs in both schedules of the kernel (ATHANOR_ATTN_WGMMA_SCHEDULE: pipelined with
// ping-pong, and simple). Skipped without the switch or on another device.
void require_hopper_attention() {
  require_gpu();
  ath::testing::require_hopper("the Hopper attention tests");
}

const char* const kSchedules[] = {"pipelined", "simple"};

// Tails in Tq and Tk (not multiples of the 128-row block nor of the 128-key tile), Tq != Tk with
// causal masking (Tq < Tk: decode-like; Tq > Tk: rows that see no key), GQA 6:2, B = 2, D 64/128,
// one key tile and several.
ATH_TEST(cuda_attention_hopper_fwd_shapes) {
  require_hopper_attention();
  // The default (pipelined) schedule on every length pair, the simple one on the first five.
  const int64_t lens[][2] = {{7, 7}, {129, 129}, {300, 33}, {200, 517}, {1, 300}, {1, 1}, {127, 127},
                             {300, 300}, {33, 300}, {517, 200}, {256, 256}};
  for (const char* sched : kSchedules) {
    ScopedEnv env("ATHANOR_ATTN_WGMMA_SCHEDULE", sched);
    const size_t n_lens = std::strcmp(sched, "simple") == 0 ? 5 : sizeof lens / sizeof lens[0];
    uint32_t seed = 900;
    for (int64_t D : {64, 128})
      for (size_t l = 0; l < n_lens; ++l)
        for (int causal = 0; causal < 2; ++causal) {
          const int64_t tq = lens[l][0], tk = lens[l][1];
          run_case({2, 6, 2, tq, tk, D, ATH_BF16, causal, Layout::kContiguous}, seed++);
          if (tq % 2 == 1) run_case({2, 6, 2, tq, tk, D, ATH_F16, causal, Layout::kContiguous}, seed++);
        }
  }
}

// Strided layouts the tensor maps must address: (B, T, H, D) viewed as (B, H, T, D) (the head
// stride below the row stride) and padded rows and heads; long sequences with causal masking.
ATH_TEST(cuda_attention_hopper_fwd_layouts_long) {
  require_hopper_attention();
  for (const char* sched : kSchedules) {
    ScopedEnv env("ATHANOR_ATTN_WGMMA_SCHEDULE", sched);
    uint32_t seed = 950;
    for (Layout l : {Layout::kBTHD, Layout::kPadded})
      for (int64_t D : {64, 128}) run_case({2, 6, 2, 300, 517, D, ATH_BF16, 1, l}, seed++);
    run_case({1, 4, 2, 1024, 1024, 128, ATH_BF16, 1, Layout::kContiguous}, seed++);
    run_case({2, 2, 1, 1000, 1030, 64, ATH_F16, 1, Layout::kBTHD}, seed++);
    run_case({1, 2, 2, 777, 1500, 64, ATH_BF16, 0, Layout::kContiguous}, seed++);
  }
}

// Deterministic (two runs of a schedule, the same bits), and the switch really selects another
// kernel: its 128-key tiles sum the softmax denominators in another order than the mma.sync
// kernel's 64-key tiles, so over 2 x 6 x 300 rows some F32 lse differs in the last bits (were every
// lse bit equal, the dispatch would have fallen back).
ATH_TEST(cuda_attention_hopper_fwd_reproducible_and_dispatched) {
  require_hopper_attention();
  const Case c{2, 6, 2, 300, 300, 64, ATH_BF16, 1, Layout::kContiguous};
  std::mt19937 rng(990);
  DeviceCase dc(c, rng);
  const float scale = 0.125f;
  std::vector<float> lse_hopper;
  for (const char* sched : kSchedules) {
    ScopedEnv env("ATHANOR_ATTN_WGMMA_SCHEDULE", sched);
    if (!dc.run(c, scale)) return;
    const auto o1 = dc.o.image;
    const auto lse1 = dc.lse;
    if (!dc.run(c, scale)) return;
    ATH_EXPECT(o1 == dc.o.image, "%s [%s]: o differs between runs", describe(c).c_str(), sched);
    ATH_EXPECT(lse1 == dc.lse, "%s [%s]: lse differs between runs", describe(c).c_str(), sched);
    lse_hopper = lse1;
  }
  ScopedEnv off("ATHANOR_CUDA_HOPPER", "0");
  if (!dc.run(c, scale)) return;
  ATH_EXPECT(lse_hopper != dc.lse, "%s: the lse of the Hopper switch equals the mma.sync kernel's bit for bit: the "
             "sm_90a forward did not run", describe(c).c_str());
}

// Validation happens before any CUDA call, so this runs in every CUDA build, GPU or not.
ATH_TEST(cuda_attention_rejects_bad_arguments) {
  if (!ath_built_with_cuda()) ath::testing::skip(std::string("CPU-only build: ") + ath_cuda_unavailable_reason());
  const Case c{1, 4, 2, 8, 8, 64, ATH_BF16, 1, Layout::kContiguous};
  ath_attention_args a = make_args(c, 0.125f);
  // Pointers are never dereferenced: validation fails first.
  static float dummy[16];
  a.q = a.k = a.v = dummy; a.o = dummy; a.lse = dummy; a.dout = dummy; a.dq = a.dk = a.dv = dummy;
  a.q_st = a.k_st = a.v_st = a.o_st = 64;

  ath_attention_args bad = a;
  bad.head_dim = 48;
  ATH_EXPECT(ath_cuda_attention_fwd(&bad, cuda_ctx()) == ATH_ERR_UNSUPPORTED, "head_dim 48 must be unsupported");
  ATH_EXPECT(std::strstr(ath_last_error(), "48") != nullptr, "message must name 48: %s", ath_last_error());
  ATH_EXPECT(ath_cuda_attention_bwd(&bad, cuda_ctx()) == ATH_ERR_UNSUPPORTED, "bwd head_dim 48 must be unsupported");

  bad = a;
  bad.heads_kv = 3;
  ATH_EXPECT(ath_cuda_attention_fwd(&bad, cuda_ctx()) == ATH_ERR_INVALID, "heads_kv 3 of 4 must be invalid");
  ATH_EXPECT(std::strstr(ath_last_error(), "heads_kv=3") != nullptr, "message: %s", ath_last_error());

  bad = a;
  bad.dtype = ATH_I32;
  ATH_EXPECT(ath_cuda_attention_fwd(&bad, cuda_ctx()) == ATH_ERR_INVALID, "I32 must be invalid");

  bad = a;
  bad.tq = -1;
  ATH_EXPECT(ath_cuda_attention_fwd(&bad, cuda_ctx()) == ATH_ERR_INVALID, "tq -1 must be invalid");

  bad = a;
  bad.q = nullptr;
  ATH_EXPECT(ath_cuda_attention_fwd(&bad, cuda_ctx()) == ATH_ERR_INVALID, "NULL q must be invalid");

  bad = a;
  bad.lse = nullptr;
  ATH_EXPECT(ath_cuda_attention_bwd(&bad, cuda_ctx()) == ATH_ERR_INVALID, "backward needs lse");

  bad = a;
  bad.k_st = -64;
  ATH_EXPECT(ath_cuda_attention_fwd(&bad, cuda_ctx()) == ATH_ERR_INVALID, "negative stride must be invalid");

  ATH_EXPECT(ath_cuda_attention_fwd(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "NULL args must be invalid");
}

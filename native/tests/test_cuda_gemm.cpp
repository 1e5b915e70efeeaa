// Tests of ath_cuda_gemm (kernels/gemm*.cu) against ath_cpu_gemm and against an exact float64
// reference computed here from the same (dtype-rounded) inputs. Only the C ABI is used (device
// memory through ath_cuda_malloc / ath_cuda_memcpy), so this file needs no CUDA headers.
//
// Every case runs with each kernel forced in turn (ATHANOR_CUDA_GEMM_KERNEL, see kernels/gemm.cu)
// plus the automatic choice, and checks:
//   - the valid region of C against the float64 reference and against ath_cpu_gemm,
//   - that every byte of C outside the valid region (row padding, batch gaps, bytes before the
//     base) is untouched, i.e. no out-of-bounds writes,
//   - with beta == 0, that C was not read (its valid region starts as NaN).
// Without a CUDA device every GPU test skips with the reason; argument validation is tested
// whenever the library was built with CUDA (it runs before any CUDA call).
// The split-K tests (cuda_gemm_splitk_*) force the Hopper kernel with a split count
// (ATHANOR_WGMMA_SPLITK); they run with the Hopper switch on (ATHANOR_CUDA_HOPPER=1) on a device
// of compute capability 9.0 and skip otherwise.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "common/dtype.h"
#include "cuda_test_context.h"
#include "testing.h"

namespace {

using ath::testing::cuda_ctx;
using ath::testing::cuda_download;
using ath::testing::cuda_run;
using ath::testing::cuda_upload;
using ath::testing::format;
using ath::testing::ScopedEnv;

void require_cuda_device() {
  if (!ath_built_with_cuda()) ath::testing::skip(std::string("no CUDA device: ") + ath_cuda_unavailable_reason());
  if (ath_cuda_device_count() <= 0) {
    ath::testing::skip(std::string("no CUDA device: ") + ath_cuda_unavailable_reason());
  }
  ATH_EXPECT(ath_cuda_set_device(0) == ATH_OK, "ath_cuda_set_device(0): %s", ath_last_error());
}

// Device allocation released on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    ath_status st = ath_cuda_malloc(0, bytes > 0 ? bytes : 1, &ptr);
    if (st != ATH_OK) {
      ptr = nullptr;
      ath::testing::record_failure(__FILE__, __LINE__, format("ath_cuda_malloc(%zu): %s", bytes, ath_last_error()));
    }
  }
  ~DeviceBuffer() {
    if (ptr != nullptr) ath_cuda_free(0, ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Forces a kernel for the calls made while it lives (nullptr or "auto": the heuristic).
struct ForceKernel {
  explicit ForceKernel(const char* name) {
    if (name != nullptr) setenv("ATHANOR_CUDA_GEMM_KERNEL", name, 1);
    else unsetenv("ATHANOR_CUDA_GEMM_KERNEL");
  }
  ~ForceKernel() { unsetenv("ATHANOR_CUDA_GEMM_KERNEL"); }
};

const char* dtype_str(int dt) { return dt == ATH_F32 ? "f32" : dt == ATH_BF16 ? "bf16" : dt == ATH_F16 ? "f16" : "?"; }

// Kernels worth forcing for an input dtype ("auto" first). The Hopper kernels join while their
// switch is on (ATHANOR_CUDA_HOPPER=1, kernels/gemm.cu); elsewhere than on compute capability 9.0
// forcing them falls back to the heuristic.
std::vector<const char*> kernels_for(int dtype_ab) {
  if (dtype_ab == ATH_F32) return {"auto", "f32_128x128", "f32_64x64", "generic"};
  std::vector<const char*> k = {"auto", "mma_128x256", "mma_128x128", "mma_64x64", "generic"};
  const char* hopper = std::getenv("ATHANOR_CUDA_HOPPER");
  if (hopper != nullptr && std::strcmp(hopper, "1") == 0) {
    k.push_back("wgmma_128x256");
    k.push_back("wgmma_128x128");
  }
  return k;
}

struct Setup {
  int64_t m = 1, n = 1, k = 1, batch = 1;
  int dtype_ab = ATH_BF16, dtype_c = ATH_F32;
  int ta = 0, tb = 0;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per row beyond the minimum ld
  int64_t gap_a = 0, gap_b = 0, gap_c = 0;  // extra elements between batches; gap_a/b < 0: stride 0
  int64_t off_a = 0, off_b = 0, off_c = 0;  // element offset of the base inside its allocation
  // Leading dimensions are rounded up to a multiple of this (8: the fast kernels' requirement, so
  // odd M/N/K exercise their boundary handling instead of routing to the generic kernel).
  int64_t ld_align = 8;
  bool ab_nan = false;  // A and B hold NaN (with alpha == 0 they must not be read)
  float alpha = 1.f, beta = 0.f;
  bool bias = false;
  bool integers = false;  // small integers: every result is exact
  int int_range = 3;      // integers are drawn from [-int_range, int_range]
  uint64_t seed = 1;
  int epilogue = ATH_GEMM_EPI_NONE;  // GELU: aux written (unless aux_null); GELU_BACKWARD: aux read
  bool aux_null = false;

  std::string describe() const {
    return format("m=%lld n=%lld k=%lld batch=%lld %s->%s ta=%d tb=%d pad=(%lld,%lld,%lld) off=(%lld,%lld,%lld) "
                  "ld_align=%lld alpha=%g beta=%g bias=%d int=%d epi=%d%s",
                  (long long)m, (long long)n, (long long)k, (long long)batch, dtype_str(dtype_ab), dtype_str(dtype_c),
                  ta, tb, (long long)pad_a, (long long)pad_b, (long long)pad_c, (long long)off_a, (long long)off_b,
                  (long long)off_c, (long long)ld_align, alpha, beta, bias ? 1 : 0, integers ? 1 : 0, epilogue,
                  aux_null ? " aux=NULL" : "");
  }
};

// One operand's geometry: `rows` stored rows of `cols` elements, row stride ld, batch stride.
struct Geometry {
  int64_t rows, cols, ld, stride, batch, offset;
  int64_t span() const {  // elements from the base to one past the last element of the last batch
    if (rows == 0 || cols == 0 || batch == 0) return 0;
    return stride * (batch - 1) + (rows - 1) * ld + cols;
  }
  int64_t total() const { return offset + span(); }
  int64_t index(int64_t b, int64_t r, int64_t c) const { return offset + b * stride + r * ld + c; }
};

Geometry operand(int64_t rows, int64_t cols, int64_t pad, int64_t gap, int64_t batch, int64_t offset, int64_t align) {
  Geometry g;
  g.rows = rows;
  g.cols = cols;
  g.ld = (cols > 1 ? cols : 1) + pad;
  g.ld = (g.ld + align - 1) / align * align;
  g.stride = gap < 0 ? 0 : rows * g.ld + gap;
  g.batch = batch;
  g.offset = offset;
  return g;
}

// GELU (tanh approximation) and its derivative in float64, the formulas of the activation op.
double gelu_ref(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(u));
}
double gelu_grad_ref(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x), t = std::tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

float round_to(int dtype, float v) {
  if (dtype == ATH_BF16) return ath::bf16_to_f32(ath::f32_to_bf16(v));
  if (dtype == ATH_F16) return ath::f16_to_f32(ath::f32_to_f16(v));
  return v;
}

// Host buffer of `n` elements of `dtype`.
struct HostBuffer {
  int dtype;
  std::vector<unsigned char> bytes;
  HostBuffer(int dt, int64_t n) : dtype(dt), bytes(static_cast<size_t>(n) * ath_dtype_size(dt)) {}
  float get(int64_t i) const { return ath::load_f32(bytes.data(), dtype, i); }
  void set(int64_t i, float v) { ath::store_f32(bytes.data(), dtype, i, v); }
  size_t size() const { return bytes.size(); }
};

// A sentinel pattern for bytes the GEMM must not touch.
void fill_sentinel(HostBuffer& h) {
  for (size_t i = 0; i < h.bytes.size(); ++i) h.bytes[i] = static_cast<unsigned char>(0xA5 ^ (i * 7));
}

struct Tolerance {
  double atol, rtol;
};

Tolerance tolerance(const Setup& s) {
  if (s.integers) return {0.0, 0.0};
  // F32 accumulation of k products of magnitude <= 1 (|alpha| <= 1), then one rounding to dtype_c.
  const double acc = 1e-5 + 2e-6 * static_cast<double>(s.k);
  const double round = s.dtype_c == ATH_BF16 ? 1.0 / 128 : s.dtype_c == ATH_F16 ? 1.0 / 1024 : 1e-5;
  return {acc, round};
}

// Runs one setup with every kernel of `kernels` (empty: kernels_for(dtype_ab)) and checks the results.
void run_setup(const Setup& s, const std::vector<const char*>& kernels = {}) {
  const Geometry ga = operand(s.ta ? s.k : s.m, s.ta ? s.m : s.k, s.pad_a, s.gap_a, s.batch, s.off_a, s.ld_align);
  const Geometry gb = operand(s.tb ? s.n : s.k, s.tb ? s.k : s.n, s.pad_b, s.gap_b, s.batch, s.off_b, s.ld_align);
  const Geometry gc = operand(s.m, s.n, s.pad_c, s.gap_c < 0 ? 0 : s.gap_c, s.batch, s.off_c, s.ld_align);

  std::mt19937_64 rng(s.seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::uniform_int_distribution<int> ints(-s.int_range, s.int_range);
  auto draw = [&]() { return s.integers ? static_cast<float>(ints(rng)) : uni(rng); };

  // C gets kTailGuard sentinel elements past its last element: a kernel that writes whole 16-byte
  // units (the copy engine's stores do, seen on an H200) past the end of the last row shows there.
  constexpr int64_t kTailGuard = 64;
  HostBuffer ha(s.dtype_ab, ga.total()), hb(s.dtype_ab, gb.total()), hc(s.dtype_c, gc.total() + kTailGuard);
  for (int64_t i = 0; i < ga.total(); ++i) ha.set(i, s.ab_nan ? NAN : draw());
  for (int64_t i = 0; i < gb.total(); ++i) hb.set(i, s.ab_nan ? NAN : draw());
  fill_sentinel(hc);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t r = 0; r < s.m; ++r)
      for (int64_t c = 0; c < s.n; ++c) hc.set(gc.index(b, r, c), s.beta != 0.f ? draw() : NAN);
  HostBuffer hbias(s.dtype_c, s.n);
  for (int64_t j = 0; j < s.n; ++j) hbias.set(j, draw());
  // aux (C's geometry): sentinel bytes; GELU_BACKWARD's pre-activation in [-4, 4] in the valid region.
  const bool epi = s.epilogue != ATH_GEMM_EPI_NONE;
  const bool aux_used = epi && !s.aux_null;
  HostBuffer haux(s.dtype_c, epi ? gc.total() + kTailGuard : 0);
  fill_sentinel(haux);
  if (s.epilogue == ATH_GEMM_EPI_GELU_BACKWARD)
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t r = 0; r < s.m; ++r)
        for (int64_t c = 0; c < s.n; ++c) haux.set(gc.index(b, r, c), 4.f * uni(rng));

  // float64 reference from the stored (rounded) values.
  const int64_t count = s.batch * s.m * s.n;
  std::vector<float> ref(static_cast<size_t>(count)), aux_ref(epi ? static_cast<size_t>(count) : 0);
  double max_pre = 0;  // largest |pre-activation|, for the epilogue's tolerance
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < s.k; ++p) {
          const double av = ha.get(s.ta ? ga.index(b, p, i) : ga.index(b, i, p));
          const double bv = hb.get(s.tb ? gb.index(b, j, p) : gb.index(b, p, j));
          acc += av * bv;
        }
        double v = s.alpha != 0.f ? static_cast<double>(s.alpha) * acc : 0.0;  // alpha == 0: no A @ B
        if (s.beta != 0.f) v += static_cast<double>(s.beta) * hc.get(gc.index(b, i, j));
        if (s.bias) v += hbias.get(j);
        const size_t e = static_cast<size_t>((b * s.m + i) * s.n + j);
        ref[e] = round_to(s.dtype_c, static_cast<float>(v));
        if (s.epilogue == ATH_GEMM_EPI_GELU) {  // aux = the rounded pre-activation, C = gelu of it
          aux_ref[e] = ref[e];
          ref[e] = round_to(s.dtype_c, static_cast<float>(gelu_ref(aux_ref[e])));
        } else if (s.epilogue == ATH_GEMM_EPI_GELU_BACKWARD) {
          aux_ref[e] = haux.get(gc.index(b, i, j));
          max_pre = std::max(max_pre, std::fabs(static_cast<double>(ref[e])));
          ref[e] = round_to(s.dtype_c, static_cast<float>(ref[e] * gelu_grad_ref(aux_ref[e])));
        }
        if (s.epilogue == ATH_GEMM_EPI_GELU) max_pre = std::max(max_pre, std::fabs(static_cast<double>(aux_ref[e])));
      }

  auto make_args = [&](const void* a, const void* bm, void* c, const void* bias, void* aux = nullptr) {
    ath_gemm_args g{};
    g.m = s.m; g.n = s.n; g.k = s.k; g.batch = s.batch;
    g.dtype_ab = s.dtype_ab; g.dtype_c = s.dtype_c;
    g.trans_a = s.ta; g.trans_b = s.tb;
    const size_t eab = ath_dtype_size(s.dtype_ab), ec = ath_dtype_size(s.dtype_c);
    g.a = static_cast<const unsigned char*>(a) + ga.offset * eab; g.lda = ga.ld; g.stride_a = ga.stride;
    g.b = static_cast<const unsigned char*>(bm) + gb.offset * eab; g.ldb = gb.ld; g.stride_b = gb.stride;
    g.c = static_cast<unsigned char*>(c) + gc.offset * ec; g.ldc = gc.ld; g.stride_c = gc.stride;
    g.bias = s.bias ? bias : nullptr;
    g.alpha = s.alpha; g.beta = s.beta;
    g.epilogue = s.epilogue;
    g.aux = aux_used ? static_cast<unsigned char*>(aux) + gc.offset * ec : nullptr;
    return g;
  };
  // Valid region of C (or aux: before = haux) as floats, and a count of changed bytes outside it.
  auto extract = [&](const HostBuffer& out, std::vector<float>* vals, const HostBuffer* before = nullptr) {
    if (before == nullptr) before = &hc;
    std::vector<unsigned char> inside(out.size(), 0);
    const size_t ec = ath_dtype_size(s.dtype_c);
    vals->assign(static_cast<size_t>(count), 0.f);
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          const int64_t idx = gc.index(b, i, j);
          (*vals)[static_cast<size_t>((b * s.m + i) * s.n + j)] = out.get(idx);
          std::memset(&inside[static_cast<size_t>(idx) * ec], 1, ec);
        }
    int64_t changed = 0;
    for (size_t i = 0; i < out.size(); ++i)
      if (!inside[i] && out.bytes[i] != before->bytes[i]) ++changed;
    return changed;
  };
  Tolerance tol = tolerance(s);
  // The epilogues: an error e in the pre-activation (accumulation, one rounding) moves the result by
  // at most |gelu'| e <= 1.13 e (GELU) or |gelu'(aux)| e <= 1.13 e (GELU_BACKWARD, |aux| <= 4).
  if (epi) tol.atol = tol.atol + 1.2 * (tol.atol + tol.rtol * max_pre);
  // aux (GELU): the pre-activation itself; GELU_BACKWARD leaves it as it was.
  auto check_aux = [&](const HostBuffer& out, const std::string& what) {
    if (!epi) return;
    if (!aux_used || s.epilogue == ATH_GEMM_EPI_GELU_BACKWARD) {
      ATH_EXPECT(out.bytes == haux.bytes, "aux was modified (%s)", what.c_str());
      return;
    }
    std::vector<float> vals;
    const int64_t changed = extract(out, &vals, &haux);
    ATH_EXPECT(changed == 0, "%lld bytes outside aux's valid region were modified: %s", (long long)changed, what.c_str());
    const Tolerance t0 = tolerance(s);
    ATH_EXPECT_CLOSE(vals.data(), aux_ref.data(), count, t0.atol, t0.rtol, format("aux %s", what.c_str()).c_str());
  };

  // CPU reference run.
  std::vector<float> cpu_vals;
  {
    HostBuffer cpu_c = hc, cpu_aux = haux;
    ath_gemm_args g =
        make_args(ha.bytes.data(), hb.bytes.data(), cpu_c.bytes.data(), hbias.bytes.data(), cpu_aux.bytes.data());
    const ath_status st = ath_cpu_gemm(&g);
    ATH_EXPECT(st == ATH_OK, "ath_cpu_gemm failed (%s): %s", s.describe().c_str(), ath_last_error());
    if (st == ATH_OK) {
      check_aux(cpu_aux, "cpu " + s.describe());
      extract(cpu_c, &cpu_vals);
      ATH_EXPECT_CLOSE(cpu_vals.data(), ref.data(), count, tol.atol, tol.rtol,
                       format("cpu vs float64 reference, %s", s.describe().c_str()).c_str());
    } else {
      cpu_vals.clear();
    }
  }

  DeviceBuffer da(ha.size()), db(hb.size()), dc(hc.size()), dbias(hbias.size()), daux(haux.size());
  if (!da.ptr || !db.ptr || !dc.ptr || !dbias.ptr || !daux.ptr) return;
  ATH_EXPECT(cuda_upload(da.ptr, ha.bytes.data(), ha.size()) == ATH_OK, "memcpy A: %s", ath_last_error());
  ATH_EXPECT(cuda_upload(db.ptr, hb.bytes.data(), hb.size()) == ATH_OK, "memcpy B: %s", ath_last_error());
  ATH_EXPECT(cuda_upload(dbias.ptr, hbias.bytes.data(), hbias.size()) == ATH_OK, "memcpy bias: %s", ath_last_error());

  for (const char* kernel : kernels.empty() ? kernels_for(s.dtype_ab) : kernels) {
    const char* split = std::getenv("ATHANOR_WGMMA_SPLITK");
    const std::string what = format("[%s%s%s] %s", kernel, split != nullptr ? " split " : "", split != nullptr ? split : "",
                                    s.describe().c_str());
    // Fresh C (NaN in the valid region when beta == 0, sentinel bytes elsewhere).
    ATH_EXPECT(cuda_upload(dc.ptr, hc.bytes.data(), hc.size()) == ATH_OK, "memcpy C: %s", ath_last_error());
    if (epi) ATH_EXPECT(cuda_upload(daux.ptr, haux.bytes.data(), haux.size()) == ATH_OK, "memcpy aux: %s", ath_last_error());
    ath_gemm_args g = make_args(da.ptr, db.ptr, dc.ptr, dbias.ptr, daux.ptr);
    ath_status st;
    {
      ForceKernel force(kernel);
      st = cuda_run(ath_cuda_gemm, &g);
    }
    ATH_EXPECT(st == ATH_OK, "ath_cuda_gemm failed %s: %s", what.c_str(), ath_last_error());
    if (st != ATH_OK) continue;
    st = ath_cuda_device_synchronize(0);
    ATH_EXPECT(st == ATH_OK, "kernel failed %s: %s", what.c_str(), ath_last_error());
    if (st != ATH_OK) return;  // a sticky CUDA error: later cases cannot run meaningfully
    HostBuffer out(s.dtype_c, gc.total() + kTailGuard);
    ATH_EXPECT(cuda_download(out.bytes.data(), dc.ptr, out.size()) == ATH_OK, "memcpy back: %s", ath_last_error());
    if (epi) {
      HostBuffer aux_out(s.dtype_c, gc.total() + kTailGuard);
      ATH_EXPECT(cuda_download(aux_out.bytes.data(), daux.ptr, aux_out.size()) == ATH_OK, "memcpy aux back: %s",
                 ath_last_error());
      check_aux(aux_out, "cuda " + what);
    }
    std::vector<float> gpu_vals;
    const int64_t changed = extract(out, &gpu_vals);
    ATH_EXPECT(changed == 0, "%lld bytes outside C's valid region were modified: %s", (long long)changed, what.c_str());
    ATH_EXPECT_CLOSE(gpu_vals.data(), ref.data(), count, tol.atol, tol.rtol,
                     format("cuda vs float64 reference %s", what.c_str()).c_str());
    if (!cpu_vals.empty()) {
      // Both round the same F32-accumulated value once: they may differ by one ulp of dtype_c.
      ATH_EXPECT_CLOSE(gpu_vals.data(), cpu_vals.data(), count, tol.atol, s.integers ? 0.0 : 2 * tol.rtol,
                       format("cuda vs ath_cpu_gemm %s", what.c_str()).c_str());
    }
  }
}

struct DtypePair {
  int ab, c;
};
const DtypePair kDtypes[] = {{ATH_BF16, ATH_F32}, {ATH_BF16, ATH_BF16}, {ATH_F16, ATH_F32}, {ATH_F16, ATH_F16},
                             {ATH_F32, ATH_F32}};

}  // namespace

// Awkward shapes x all four layouts x all dtype combinations x every kernel; beta == 0 (C is NaN
// before the call and must not be read).
ATH_TEST(cuda_gemm_shapes_layouts_dtypes) {
  require_cuda_device();
  const int64_t shapes[][3] = {{1, 1, 1},     {1, 7, 33},     {7, 1, 5},      {33, 127, 65}, {127, 33, 17},
                               {64, 64, 32},  {128, 128, 32}, {129, 257, 95}, {200, 72, 8},  {16, 300, 129},
                               {3, 517, 264}, {255, 8, 40}};
  uint64_t seed = 100;
  for (const auto& sh : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (const DtypePair& dt : kDtypes) {
          Setup s;
          s.m = sh[0]; s.n = sh[1]; s.k = sh[2];
          s.ta = ta; s.tb = tb;
          s.dtype_ab = dt.ab; s.dtype_c = dt.c;
          s.seed = ++seed;
          run_setup(s);
        }
}

// alpha, beta and bias in the epilogue; row padding of every operand (ld > minimum).
ATH_TEST(cuda_gemm_epilogue_alpha_beta_bias) {
  require_cuda_device();
  const int64_t shapes[][3] = {{33, 65, 40}, {128, 256, 64}, {5, 130, 17}};
  const float betas[] = {0.f, 0.75f, -1.f};
  uint64_t seed = 1000;
  for (const auto& sh : shapes)
    for (float beta : betas)
      for (int bias = 0; bias < 2; ++bias)
        for (int layout = 0; layout < 4; ++layout)
          for (const DtypePair& dt : kDtypes) {
            Setup s;
            s.m = sh[0]; s.n = sh[1]; s.k = sh[2];
            s.ta = layout & 1; s.tb = layout >> 1;
            s.dtype_ab = dt.ab; s.dtype_c = dt.c;
            s.alpha = 0.5f; s.beta = beta; s.bias = bias != 0;
            s.pad_a = 8; s.pad_b = 16; s.pad_c = 3;
            s.seed = ++seed;
            run_setup(s);
          }
}

// Strided batches: padded strides, A shared by every batch (stride 0), gaps in C.
ATH_TEST(cuda_gemm_batched) {
  require_cuda_device();
  uint64_t seed = 2000;
  for (int layout = 0; layout < 4; ++layout)
    for (const DtypePair& dt : kDtypes)
      for (int variant = 0; variant < 2; ++variant) {
        Setup s;
        s.m = 37; s.n = 70; s.k = 45; s.batch = 3;
        s.ta = layout & 1; s.tb = layout >> 1;
        s.dtype_ab = dt.ab; s.dtype_c = dt.c;
        s.gap_a = variant == 0 ? 8 : -1;  // -1: stride_a = 0 (shared A)
        s.gap_b = 16; s.gap_c = variant == 0 ? 5 : 0;
        s.beta = variant == 0 ? 0.f : 0.5f;
        s.bias = variant == 1;
        s.seed = ++seed;
        run_setup(s);
      }
}

// Small-integer inputs: every product and sum is exact in F32 (and the results fit the 16-bit
// output formats exactly), so every kernel must match the reference bit for bit.
ATH_TEST(cuda_gemm_exact_integers) {
  require_cuda_device();
  // {48, 80, 700}: many k-tiles, so the pipeline's steady state (prefetch into the stage freed by
  // the previous k-tile) runs; its inputs are in [-1, 1] to keep |C| < 2048.
  const int64_t shapes[][3] = {{1, 1, 1}, {17, 33, 9}, {130, 260, 28}, {64, 64, 64}, {7, 129, 3}, {48, 80, 700}};
  uint64_t seed = 3000;
  for (const auto& sh : shapes)
    for (int layout = 0; layout < 4; ++layout)
      for (const DtypePair& dt : kDtypes) {
        Setup s;
        s.m = sh[0]; s.n = sh[1]; s.k = sh[2];
        s.ta = layout & 1; s.tb = layout >> 1;
        s.dtype_ab = dt.ab; s.dtype_c = dt.c;
        s.integers = true;
        s.int_range = s.k > 64 ? 1 : 3;
        s.alpha = 2.f; s.beta = layout == 3 ? -1.f : 1.f; s.bias = true;  // |C| <= 2*9*64+3+3 < 2048
        if (dt.c == ATH_BF16) s.k = s.k > 10 ? 10 : s.k;  // |C| <= 2*9*10+6 = 186 < 256: exact in BF16
        s.batch = layout == 2 ? 2 : 1;
        s.seed = ++seed;
        run_setup(s);
      }
}

// Layouts the fast kernels cannot take: odd leading dimensions and bases misaligned for 16-byte
// loads (the generic kernel must take them), and 16-byte aligned offsets (fast kernels again).
ATH_TEST(cuda_gemm_unaligned) {
  require_cuda_device();
  uint64_t seed = 4000;
  for (int layout = 0; layout < 4; ++layout)
    for (const DtypePair& dt : kDtypes)
      for (int variant = 0; variant < 4; ++variant) {
        Setup s;
        s.m = 45; s.n = 67; s.k = 51;
        s.ta = layout & 1; s.tb = layout >> 1;
        s.dtype_ab = dt.ab; s.dtype_c = dt.c;
        switch (variant) {
          case 0: s.pad_a = 1; s.pad_b = 3; s.pad_c = 1; break;      // odd ld everywhere
          case 1: s.off_a = 1; s.off_b = 3; s.off_c = 1; break;      // bases off by elements
          case 2: s.off_a = 8; s.off_b = 16; s.off_c = 4; break;    // 16-byte aligned offsets
          case 3: s.m = 64; s.n = 64; s.k = 64; s.off_c = 1; s.pad_c = 1; s.beta = 1.f; s.bias = true; break;
        }
        s.ld_align = variant == 2 ? 8 : 1;  // variant 2: every ld a multiple of 8
        s.batch = variant == 1 ? 2 : 1;
        s.gap_a = s.gap_b = s.gap_c = variant == 1 ? 1 : 0;
        s.seed = ++seed;
        run_setup(s);
      }
}

// K == 0, and alpha == 0 with NaN in A and B: C = beta * C + bias (A and B are not read).
ATH_TEST(cuda_gemm_k_zero_alpha_zero) {
  require_cuda_device();
  uint64_t seed = 5000;
  for (const DtypePair& dt : kDtypes)
    for (int variant = 0; variant < 4; ++variant) {
      Setup s;
      s.m = 19; s.n = 41;
      s.k = variant < 2 ? 0 : 72;
      s.alpha = variant < 2 ? 1.f : 0.f;
      s.ab_nan = variant >= 2;
      s.dtype_ab = dt.ab; s.dtype_c = dt.c;
      s.beta = variant % 2 == 0 ? 0.f : 1.5f;
      s.bias = variant % 2 == 1;
      s.seed = ++seed;
      run_setup(s);
    }
}

// Larger problems: several waves of the largest tiles on the automatic path.
ATH_TEST(cuda_gemm_large) {
  require_cuda_device();
  uint64_t seed = 6000;
  const DtypePair dts[] = {{ATH_BF16, ATH_BF16}, {ATH_F16, ATH_F32}, {ATH_F32, ATH_F32}};
  for (const DtypePair& dt : dts) {
    Setup s;
    s.m = 1040; s.n = 2320; s.k = 200;
    s.ta = dt.ab == ATH_F16; s.tb = dt.ab == ATH_BF16;
    s.dtype_ab = dt.ab; s.dtype_c = dt.c;
    s.beta = 0.25f; s.bias = true;
    s.seed = ++seed;
    run_setup(s);
  }
}

// More batches than one grid's z dimension holds (65535): the launcher must tile z.
ATH_TEST(cuda_gemm_batch_over_65535) {
  require_cuda_device();
  Setup s;
  s.m = 3; s.n = 5; s.k = 4; s.batch = 70000;
  s.dtype_ab = ATH_BF16; s.dtype_c = ATH_F32;
  s.integers = true;
  s.seed = 7000;
  run_setup(s);
}

// The CUDA kernels are deterministic: the same call twice gives identical bytes.
ATH_TEST(cuda_gemm_deterministic) {
  require_cuda_device();
  const int64_t m = 300, n = 264, k = 336;  // ld multiples of 8: the tensor-core path
  std::mt19937_64 rng(8000);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<uint16_t> a(m * k), b(k * n);
  for (auto& v : a) v = ath::f32_to_bf16(uni(rng));
  for (auto& v : b) v = ath::f32_to_bf16(uni(rng));
  DeviceBuffer da(a.size() * 2), db(b.size() * 2), dc(m * n * 4);
  if (!da.ptr || !db.ptr || !dc.ptr) return;
  cuda_upload(da.ptr, a.data(), a.size() * 2);
  cuda_upload(db.ptr, b.data(), b.size() * 2);
  ath_gemm_args g{};
  g.m = m; g.n = n; g.k = k; g.batch = 1;
  g.dtype_ab = ATH_BF16; g.dtype_c = ATH_F32;
  g.a = da.ptr; g.lda = k; g.b = db.ptr; g.ldb = n; g.c = dc.ptr; g.ldc = n;
  g.alpha = 1.f;
  std::vector<float> first(m * n), second(m * n);
  ATH_EXPECT(cuda_run(ath_cuda_gemm, &g) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(cuda_download(first.data(), dc.ptr, first.size() * 4) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(cuda_run(ath_cuda_gemm, &g) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(cuda_download(second.data(), dc.ptr, second.size() * 4) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(std::memcmp(first.data(), second.data(), first.size() * 4) == 0, "two identical calls differ");
}

// ------------------------------------------------------------------ split-K (Hopper kernel)

// Skips unless the Hopper switch is on (ATHANOR_CUDA_HOPPER=1: the GPU check's native-hopper step
// runs these) and device 0 has compute capability 9.0, the only target of the sm_90a kernel
// (elsewhere a forced wgmma kernel falls back to the heuristic and split-K would not run).
void require_hopper_device() {
  require_cuda_device();
  ath::testing::require_hopper("split-K tests");
}


const std::vector<const char*> kWgmmaKernels = {"wgmma_128x256", "wgmma_128x128"};

// Forced split counts on awkward shapes x all four layouts x the 16-bit input dtypes with F32 and
// 16-bit C: K not a multiple of 64 nor of splits x 64 (slices of unequal k-tile counts), M and N
// tails, N odd (the workspace's row padding), more splits than k-tiles (clamped: one k-tile per
// slice), against the float64 reference and ath_cpu_gemm, with the out-of-bounds and NaN checks.
ATH_TEST(cuda_gemm_splitk_shapes_layouts) {
  require_hopper_device();
  struct Case {
    int64_t m, n, k;
    const char* splits;
  };
  const Case cases[] = {{200, 150, 1000, "3"}, {130, 72, 2100, "5"}, {1, 7, 300, "8"},
                        {129, 257, 95, "2"},   {33, 131, 700, "7"},  {256, 264, 192, "64"}};
  const DtypePair dts[] = {{ATH_BF16, ATH_F32}, {ATH_BF16, ATH_BF16}, {ATH_F16, ATH_F16}};
  uint64_t seed = 9000;
  for (const Case& c : cases) {
    ScopedEnv split("ATHANOR_WGMMA_SPLITK", c.splits);
    for (int layout = 0; layout < 4; ++layout)
      for (const DtypePair& dt : dts) {
        Setup s;
        s.m = c.m; s.n = c.n; s.k = c.k;
        s.ta = layout & 1; s.tb = layout >> 1;
        s.dtype_ab = dt.ab; s.dtype_c = dt.c;
        s.seed = ++seed;
        run_setup(s, kWgmmaKernels);
      }
  }
}

// The reduction's epilogue: alpha, beta = 1 (accumulating into an existing gradient) and -0.5,
// bias, padded rows of C, F32 and 16-bit C.
ATH_TEST(cuda_gemm_splitk_epilogue) {
  require_hopper_device();
  ScopedEnv split("ATHANOR_WGMMA_SPLITK", "4");
  const float betas[] = {1.f, -0.5f};
  const DtypePair dts[] = {{ATH_BF16, ATH_F32}, {ATH_BF16, ATH_BF16}, {ATH_F16, ATH_F16}};
  uint64_t seed = 9100;
  for (float beta : betas)
    for (int bias = 0; bias < 2; ++bias)
      for (const DtypePair& dt : dts) {
        Setup s;
        s.m = 150; s.n = 138; s.k = 900;  // 15 k-tiles: slices of 3, 4, 4, 4
        s.ta = bias; s.tb = 1 - bias;
        s.dtype_ab = dt.ab; s.dtype_c = dt.c;
        s.alpha = 0.5f; s.beta = beta; s.bias = bias != 0;
        s.pad_c = 5;
        s.seed = ++seed;
        run_setup(s, kWgmmaKernels);
      }
}

// Batches (strided, gaps in C): the workspace holds one (splits, M, ldw) block per batch.
ATH_TEST(cuda_gemm_splitk_batched) {
  require_hopper_device();
  ScopedEnv split("ATHANOR_WGMMA_SPLITK", "3");
  uint64_t seed = 9200;
  for (int layout = 0; layout < 4; ++layout)
    for (int variant = 0; variant < 2; ++variant) {
      Setup s;
      s.m = 70; s.n = 90; s.k = 777; s.batch = 3;
      s.ta = layout & 1; s.tb = layout >> 1;
      s.dtype_ab = ATH_BF16; s.dtype_c = variant == 0 ? ATH_F32 : ATH_BF16;
      s.gap_a = 8; s.gap_b = 16; s.gap_c = variant == 0 ? 5 : 0;
      s.beta = variant == 0 ? 0.f : 1.f;
      s.bias = variant == 1;
      s.seed = ++seed;
      run_setup(s, kWgmmaKernels);
    }
}

// The GELU epilogues (ath_gemm_epilogue) on every kernel (the wgmma ones too with the Hopper switch
// on): C against the float64 reference of gelu(round(pre)) / round(pre) * gelu'(aux) and against
// ath_cpu_gemm's epilogue; aux against the rounded pre-activation (GELU) or untouched
// (GELU_BACKWARD); nothing outside C's and aux's valid regions written. Tails in M and N, N a
// multiple of 8 with 16-bit C and beta == 0 (the wgmma TMA-store epilogue), beta and bias, padded
// and batched C, aux == NULL.
ATH_TEST(cuda_gemm_gelu_epilogues) {
  require_cuda_device();
  struct Shape {
    int64_t m, n, k, batch, pad_c, gap_c;
  };
  const Shape shapes[] = {{33, 127, 65, 1, 0, 0}, {129, 264, 95, 1, 0, 0}, {5, 130, 17, 1, 3, 0}, {37, 72, 45, 3, 0, 8}};
  uint64_t seed = 9500;
  for (int e : {ATH_GEMM_EPI_GELU, ATH_GEMM_EPI_GELU_BACKWARD})
    for (const Shape& sh : shapes)
      for (const DtypePair& dt : kDtypes)
        for (float beta : {0.f, 0.5f}) {
          Setup s;
          s.m = sh.m; s.n = sh.n; s.k = sh.k; s.batch = sh.batch;
          s.pad_c = sh.pad_c; s.gap_c = sh.gap_c;
          s.gap_a = sh.batch > 1 ? 8 : 0;
          s.ta = (seed & 1) != 0; s.tb = (seed & 2) != 0;
          s.dtype_ab = dt.ab; s.dtype_c = dt.c;
          s.beta = beta; s.bias = true;
          s.epilogue = e;
          s.seed = ++seed;
          run_setup(s);
        }
  Setup s;  // GELU without aux
  s.m = 65; s.n = 136; s.k = 70;
  s.dtype_ab = ATH_BF16; s.dtype_c = ATH_BF16;
  s.bias = true;
  s.epilogue = ATH_GEMM_EPI_GELU;
  s.aux_null = true;
  run_setup(s);
}

// The wgmma kernel's two epilogues with GELU: the TMA store (staging holds gelu(pre), aux written
// from registers) and the register epilogue (ATHANOR_WGMMA_EPILOGUE=registers), 16-bit C, N a
// multiple of 8, M and N tails inside the tile; and split-K, where the reduction applies both
// epilogues (padded C, beta, bias).
ATH_TEST(cuda_gemm_splitk_gelu_epilogues) {
  require_hopper_device();
  uint64_t seed = 9600;
  for (const char* regs : {static_cast<const char*>(nullptr), "registers"}) {
    ScopedEnv epilogue_env("ATHANOR_WGMMA_EPILOGUE", regs);
    for (int e : {ATH_GEMM_EPI_GELU, ATH_GEMM_EPI_GELU_BACKWARD})
      for (int layout = 0; layout < 4; ++layout) {
        Setup s;
        s.m = 200; s.n = 392; s.k = 136;
        s.ta = layout & 1; s.tb = layout >> 1;
        s.dtype_ab = layout < 2 ? ATH_BF16 : ATH_F16; s.dtype_c = s.dtype_ab;
        s.bias = true;
        s.epilogue = e;
        s.seed = ++seed;
        run_setup(s, kWgmmaKernels);
      }
  }
  ScopedEnv split("ATHANOR_WGMMA_SPLITK", "3");
  const DtypePair dts[] = {{ATH_BF16, ATH_F32}, {ATH_BF16, ATH_BF16}, {ATH_F16, ATH_F16}};
  for (int e : {ATH_GEMM_EPI_GELU, ATH_GEMM_EPI_GELU_BACKWARD})
    for (const DtypePair& dt : dts)
      for (float beta : {0.f, 1.f}) {
        Setup s;
        s.m = 150; s.n = 138; s.k = 900;
        s.ta = (seed & 1) != 0; s.tb = (seed & 2) != 0;
        s.dtype_ab = dt.ab; s.dtype_c = dt.c;
        s.alpha = 0.5f; s.beta = beta; s.bias = true;
        s.pad_c = 5;
        s.epilogue = e;
        s.seed = ++seed;
        run_setup(s, kWgmmaKernels);
      }
}

// Small integers: every partial sum is exact, so the split result equals the reference bit for bit.
ATH_TEST(cuda_gemm_splitk_exact_integers) {
  require_hopper_device();
  uint64_t seed = 9300;
  for (const char* splits : {"2", "5"})
    for (int layout = 0; layout < 4; ++layout) {
      ScopedEnv split("ATHANOR_WGMMA_SPLITK", splits);
      Setup s;
      s.m = 64; s.n = 80; s.k = 700;
      s.ta = layout & 1; s.tb = layout >> 1;
      s.dtype_ab = layout < 2 ? ATH_BF16 : ATH_F16; s.dtype_c = layout % 2 == 0 ? ATH_F32 : ATH_F16;
      s.integers = true; s.int_range = 1;
      s.alpha = 2.f; s.beta = 1.f; s.bias = true;  // |C| <= 2*700 + 2 < 2048: exact in F16
      s.seed = ++seed;
      run_setup(s, kWgmmaKernels);
    }
}

// The heuristic's own choice (no override) on a weight-gradient-like shape: few tiles, K = 4096.
ATH_TEST(cuda_gemm_splitk_heuristic_shape) {
  require_hopper_device();
  ScopedEnv split("ATHANOR_WGMMA_SPLITK", nullptr);
  Setup s;
  s.m = 130; s.n = 140; s.k = 4096;  // 128x256 tiles: 2 units; the heuristic splits 4 ways
  s.ta = 1; s.tb = 0;  // dW = x^T @ dy
  s.dtype_ab = ATH_BF16; s.dtype_c = ATH_F32;
  s.beta = 1.f;
  s.seed = 9400;
  run_setup(s, {"auto", "wgmma_128x256", "wgmma_128x128"});
}

// One split GEMM in `ctx`: (M, N) F32 C from fixed BF16 inputs; returns C's bytes.
struct SplitProblem {
  int64_t m = 200, n = 301, k = 2000;
  std::vector<uint16_t> a, b;
  SplitProblem() {
    std::mt19937_64 rng(9500);
    std::uniform_real_distribution<float> uni(-1.f, 1.f);
    a.resize(static_cast<size_t>(m * k));
    b.resize(static_cast<size_t>(k * n));
    for (auto& v : a) v = ath::f32_to_bf16(uni(rng));
    for (auto& v : b) v = ath::f32_to_bf16(uni(rng));
  }
  ath_gemm_args args(const void* da, const void* db, void* dc) const {
    ath_gemm_args g{};
    g.m = m; g.n = n; g.k = k; g.batch = 1;
    g.dtype_ab = ATH_BF16; g.dtype_c = ATH_F32;
    g.a = da; g.lda = k; g.b = db; g.ldb = n + 3; g.c = dc; g.ldc = n;  // ldb: a multiple of 8
    g.alpha = 1.f;
    return g;
  }
};

// Deterministic: the same split call twice gives identical bytes, and the scratch contract holds:
// an empty arena returns ATH_ERR_SCRATCH asking for exactly the documented workspace
// (splits * M * ldw * 4 bytes, ldw = N rounded up to 4, rounded up to 256) with nothing written,
// one byte less still fails, and exactly that arena gives the large arena's bytes.
ATH_TEST(cuda_gemm_splitk_deterministic_scratch) {
  require_hopper_device();
  ScopedEnv kernel("ATHANOR_CUDA_GEMM_KERNEL", "wgmma_128x256");
  ScopedEnv split("ATHANOR_WGMMA_SPLITK", "6");
  SplitProblem pr;
  const int64_t ldb = pr.n + 3;
  std::vector<uint16_t> bpad(static_cast<size_t>(pr.k * ldb), 0);
  for (int64_t r = 0; r < pr.k; ++r)
    for (int64_t c = 0; c < pr.n; ++c) bpad[static_cast<size_t>(r * ldb + c)] = pr.b[static_cast<size_t>(r * pr.n + c)];
  const size_t cbytes = static_cast<size_t>(pr.m * pr.n) * 4;
  DeviceBuffer da(pr.a.size() * 2), db(bpad.size() * 2), dc(cbytes);
  if (!da.ptr || !db.ptr || !dc.ptr) return;
  ATH_EXPECT(cuda_upload(da.ptr, pr.a.data(), pr.a.size() * 2) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(cuda_upload(db.ptr, bpad.data(), bpad.size() * 2) == ATH_OK, "%s", ath_last_error());
  const ath_gemm_args g = pr.args(da.ptr, db.ptr, dc.ptr);
  auto result = [&]() {
    std::vector<unsigned char> out(cbytes);
    ATH_EXPECT(cuda_download(out.data(), dc.ptr, cbytes) == ATH_OK, "%s", ath_last_error());
    return out;
  };
  const std::vector<unsigned char> sentinel(cbytes, 0x7F);
  auto reset = [&]() { ATH_EXPECT(cuda_upload(dc.ptr, sentinel.data(), cbytes) == ATH_OK, "%s", ath_last_error()); };

  reset();
  ATH_EXPECT(cuda_run(ath_cuda_gemm, &g) == ATH_OK, "%s", ath_last_error());
  const std::vector<unsigned char> first = result();
  reset();
  ATH_EXPECT(cuda_run(ath_cuda_gemm, &g) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(result() == first, "two identical split-K calls differ");

  // The unsplit kernel agrees within rounding (different summation order).
  {
    ScopedEnv off("ATHANOR_WGMMA_SPLITK", "1");
    reset();
    ATH_EXPECT(cuda_run(ath_cuda_gemm, &g) == ATH_OK, "%s", ath_last_error());
    const std::vector<unsigned char> unsplit = result();
    std::vector<float> x(static_cast<size_t>(pr.m * pr.n)), y(x.size());
    std::memcpy(x.data(), first.data(), cbytes);
    std::memcpy(y.data(), unsplit.data(), cbytes);
    ATH_EXPECT_CLOSE(x.data(), y.data(), pr.m * pr.n, 1e-3, 1e-5, "split-K (6) vs unsplit");
  }

  const size_t want = (static_cast<size_t>(6 * pr.m * ((pr.n + 3) / 4 * 4)) * 4 + 255) / 256 * 256;
  ath::testing::CudaTestContext empty(0);
  reset();
  const ath_status st = ath_cuda_gemm(&g, empty.get());
  const size_t need = ath_scratch_needed();
  ATH_EXPECT(st == ATH_ERR_SCRATCH, "split-K with no arena: status %d (%s)", (int)st, ath_last_error());
  ATH_EXPECT(need == want, "split-K needs %zu bytes of scratch, expected %zu", need, want);
  ATH_EXPECT(empty.sync() == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(result() == sentinel, "a call that returned ATH_ERR_SCRATCH wrote C");
  if (st != ATH_ERR_SCRATCH || need != want) return;
  {
    ath::testing::CudaTestContext short_by_one(need - 1);
    ATH_EXPECT(ath_cuda_gemm(&g, short_by_one.get()) == ATH_ERR_SCRATCH, "%zu bytes were enough", need - 1);
    ATH_EXPECT(short_by_one.sync() == ATH_OK, "%s", ath_last_error());
  }
  ATH_EXPECT(empty.grow(need) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(ath_cuda_gemm(&g, empty.get()) == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(empty.sync() == ATH_OK, "%s", ath_last_error());
  ATH_EXPECT(result() == first, "split-K with an arena of exactly the bytes needed differs from the large arena's");
}

// Argument validation: runs before any CUDA call, so it is tested in every CUDA build, with or
// without a device. The CPU op must reject the same arguments.
ATH_TEST(cuda_gemm_invalid_arguments) {
  if (!ath_built_with_cuda()) ath::testing::skip(std::string("no CUDA device: ") + ath_cuda_unavailable_reason());
  // Plausible (never dereferenced) pointers: every case below is rejected before any access.
  alignas(16) static float dummy[64];
  ath_gemm_args base{};
  base.m = 4; base.n = 4; base.k = 4; base.batch = 1;
  base.dtype_ab = ATH_F32; base.dtype_c = ATH_F32;
  base.a = dummy; base.lda = 4; base.b = dummy; base.ldb = 4; base.c = dummy; base.ldc = 4;
  base.alpha = 1.f;

  struct Bad {
    const char* what;
    void (*mutate)(ath_gemm_args*);
    bool cpu_too;  // the CPU op must reject it as well
  };
  const Bad cases[] = {
      {"m < 0", [](ath_gemm_args* g) { g->m = -1; }, true},
      {"n < 0", [](ath_gemm_args* g) { g->n = -2; }, true},
      {"k < 0", [](ath_gemm_args* g) { g->k = -3; }, true},
      {"batch < 0", [](ath_gemm_args* g) { g->batch = -1; }, true},
      {"dtype_ab I32", [](ath_gemm_args* g) { g->dtype_ab = ATH_I32; g->dtype_c = ATH_I32; }, true},
      {"dtype_ab 99", [](ath_gemm_args* g) { g->dtype_ab = 99; }, true},
      {"dtype_c BF16 with F32 inputs", [](ath_gemm_args* g) { g->dtype_c = ATH_BF16; }, true},
      {"dtype_c F16 with BF16 inputs", [](ath_gemm_args* g) { g->dtype_ab = ATH_BF16; g->dtype_c = ATH_F16; }, true},
      {"lda < k", [](ath_gemm_args* g) { g->lda = 3; }, true},
      {"lda < m (trans_a)", [](ath_gemm_args* g) { g->trans_a = 1; g->m = 6; g->lda = 5; g->ldc = 4; }, true},
      {"ldb < n", [](ath_gemm_args* g) { g->ldb = 3; }, true},
      {"ldb < k (trans_b)", [](ath_gemm_args* g) { g->trans_b = 1; g->k = 6; g->lda = 6; g->ldb = 5; }, true},
      {"ldc < n", [](ath_gemm_args* g) { g->ldc = 2; }, true},
      {"a NULL", [](ath_gemm_args* g) { g->a = nullptr; }, true},
      {"b NULL", [](ath_gemm_args* g) { g->b = nullptr; }, true},
      {"c NULL", [](ath_gemm_args* g) { g->c = nullptr; }, true},
      {"trans_a = 2", [](ath_gemm_args* g) { g->trans_a = 2; }, true},
      {"trans_b = -1", [](ath_gemm_args* g) { g->trans_b = -1; }, true},
      {"stride_a < 0", [](ath_gemm_args* g) { g->batch = 2; g->stride_a = -16; g->stride_b = 16; g->stride_c = 16; }, true},
      {"stride_b < 0", [](ath_gemm_args* g) { g->batch = 2; g->stride_a = 16; g->stride_b = -1; g->stride_c = 16; }, true},
      {"overlapping C batches", [](ath_gemm_args* g) { g->batch = 2; g->stride_a = 16; g->stride_b = 16; g->stride_c = 8; }, true},
      {"misaligned c for F32", [](ath_gemm_args* g) { g->c = reinterpret_cast<char*>(dummy) + 2; }, false},
      {"epilogue 3", [](ath_gemm_args* g) { g->epilogue = 3; }, true},
      {"GELU_BACKWARD without aux", [](ath_gemm_args* g) { g->epilogue = ATH_GEMM_EPI_GELU_BACKWARD; }, true},
      {"aux == c", [](ath_gemm_args* g) { g->epilogue = ATH_GEMM_EPI_GELU; g->aux = g->c; }, true},
      {"misaligned aux for F32",
       [](ath_gemm_args* g) { g->epilogue = ATH_GEMM_EPI_GELU; g->aux = reinterpret_cast<char*>(dummy) + 130; }, false},
  };
  for (const Bad& bad : cases) {
    ath_gemm_args g = base;
    bad.mutate(&g);
    const ath_status st = ath_cuda_gemm(&g, cuda_ctx());
    ATH_EXPECT(st == ATH_ERR_INVALID, "%s: ath_cuda_gemm returned %d, expected ATH_ERR_INVALID", bad.what, (int)st);
    ATH_EXPECT(std::strstr(ath_last_error(), "ath_cuda_gemm") != nullptr, "%s: message '%s' does not name the op",
               bad.what, ath_last_error());
    if (bad.cpu_too) {
      const ath_status cst = ath_cpu_gemm(&g);
      ATH_EXPECT(cst == ATH_ERR_INVALID, "%s: ath_cpu_gemm returned %d, expected ATH_ERR_INVALID", bad.what, (int)cst);
    }
  }
  ATH_EXPECT(ath_cuda_gemm(nullptr, cuda_ctx()) == ATH_ERR_INVALID, "NULL args must be ATH_ERR_INVALID");

  // Empty problems are valid and touch nothing (no device needed: nothing is launched).
  ath_gemm_args g = base;
  g.m = 0; g.a = nullptr; g.b = nullptr; g.c = nullptr;
  ATH_EXPECT(ath_cuda_gemm(&g, cuda_ctx()) == ATH_OK, "m == 0 must be OK: %s", ath_last_error());
  g = base;
  g.batch = 0;
  ATH_EXPECT(ath_cuda_gemm(&g, cuda_ctx()) == ATH_OK, "batch == 0 must be OK: %s", ath_last_error());
}

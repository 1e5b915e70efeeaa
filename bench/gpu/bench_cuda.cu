// GPU benchmark driver for the GPU check (bench/gpu/run.sh): times Athanor's CUDA GEMM and attention
// forward/backward through the C ABI (ath_cuda_gemm, ath_cuda_attention_fwd/bwd, in an execution
// context on a non-blocking stream) with CUDA events,
// on the shapes listed in bench/gpu/cases.txt, and spot-checks every result against a float64
// reference computed on the host from the same inputs. bench/gpu/peer.py times PyTorch on the
// same cases; bench/gpu/report.py joins the two.
//
// Layouts (the C ABI's): GEMM A (M, K), B (K, N), C (M, N) row-major, no transposes, alpha 1,
// beta 0. Attention q, k, v, o, dout, dq, dk, dv (B, H, T, D) contiguous, Hq == Hkv, scale
// 1/sqrt(D), lse (B, H, T) F32.
//
// Output: one JSON object per measurement, appended as a line to --out (JSON Lines), written and
// flushed as soon as it is known, so a crash loses only the case in flight. A CUDA error that
// poisons the context (illegal address and the like) ends the process with exit code 3 after its
// record is written; run.sh then restarts the driver with --from <next case>.
//
// Usage: bench_cuda --cases FILE --out FILE [--from N] [--seconds S] [--fwd-only] [--list]
// --fwd-only times and checks only the attention forward (the Hopper attention step,
// bench/gpu/hopper/attention.sh, compares forward kernels; the backward is the same in both runs).
#include <cuda_runtime.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "athanor/athanor.h"

namespace {

// ------------------------------------------------------------------ cases
struct Case {
  std::string op;     // "gemm" or "attn"
  std::string dtype;  // "bf16" or "f32"
  int64_t m = 0, n = 0, k = 0;            // gemm
  int64_t b = 0, h = 0, t = 0, d = 0;     // attn
  int causal = 0;
  std::string name() const {
    char buf[160];
    if (op == "gemm") {
      std::snprintf(buf, sizeof buf, "gemm-%s-%lldx%lldx%lld", dtype.c_str(), (long long)m, (long long)n, (long long)k);
    } else {
      std::snprintf(buf, sizeof buf, "attn-%s-b%lld-h%lld-t%lld-d%lld%s", dtype.c_str(), (long long)b, (long long)h,
                    (long long)t, (long long)d, causal ? "-causal" : "");
    }
    return buf;
  }
};

bool parse_cases(const char* path, std::vector<Case>* out, std::string* err) {
  std::ifstream in(path);
  if (!in) { *err = std::string("cannot open cases file ") + path; return false; }
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream ss(line);
    Case c;
    if (!(ss >> c.op)) continue;  // blank or comment
    bool ok = static_cast<bool>(ss >> c.dtype) && (c.dtype == "bf16" || c.dtype == "f32");
    if (ok && c.op == "gemm") ok = static_cast<bool>(ss >> c.m >> c.n >> c.k) && c.m > 0 && c.n > 0 && c.k > 0;
    else if (ok && c.op == "attn")
      ok = static_cast<bool>(ss >> c.b >> c.h >> c.t >> c.d >> c.causal) && c.b > 0 && c.h > 0 && c.t > 0 && c.d > 0;
    else ok = false;
    if (!ok) { *err = std::string(path) + ":" + std::to_string(lineno) + ": cannot parse '" + line + "'"; return false; }
    out->push_back(c);
  }
  return true;
}

// ------------------------------------------------------------------ output
std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') { o += '\\'; o += ch; }
    else if (c == '\n') o += "\\n";
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += ch;
  }
  return o;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

struct Record {
  std::string key, op, dtype, shape, pass, error;
  double flops = 0, ms_median = NAN, ms_min = NAN, check_rel_err = NAN, check_limit = NAN;
  int reps = 0;
  bool check_ok = false, checked = false;
  std::string check_what;
};

void write_record(const char* path, const Record& r) {
  std::string s = "{\"impl\":\"athanor\",\"key\":\"" + json_escape(r.key) + "\",\"op\":\"" + r.op + "\",\"pass\":\"" +
                  r.pass + "\",\"dtype\":\"" + r.dtype + "\",\"shape\":\"" + json_escape(r.shape) +
                  "\",\"flops\":" + num(r.flops) + ",\"ms_median\":" + num(r.ms_median) + ",\"ms_min\":" + num(r.ms_min) +
                  ",\"reps\":" + std::to_string(r.reps) + ",\"tflops\":" +
                  num(std::isfinite(r.ms_median) ? r.flops / (r.ms_median * 1e-3) / 1e12 : NAN);
  if (r.checked) {
    s += ",\"check\":{\"what\":\"" + json_escape(r.check_what) + "\",\"rel_err\":" + num(r.check_rel_err) +
         ",\"limit\":" + num(r.check_limit) + ",\"ok\":" + (r.check_ok ? "true" : "false") + "}";
  }
  s += ",\"error\":" + (r.error.empty() ? std::string("null") : "\"" + json_escape(r.error) + "\"") + "}\n";
  FILE* f = std::fopen(path, "a");
  if (f) { std::fputs(s.c_str(), f); std::fclose(f); }
  std::fputs(s.c_str(), stderr);
}

// ------------------------------------------------------------------ CUDA helpers
// A CUDA failure outside our ops (allocation, copy, event) aborts the case with this message.
struct CudaError { std::string msg; bool sticky; };

void cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  // Errors after which the context is unusable: the process must restart to go on.
  bool sticky = e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorMisalignedAddress ||
                e == cudaErrorIllegalInstruction || e == cudaErrorHardwareStackError || e == cudaErrorInvalidPc ||
                e == cudaErrorAssert || e == cudaErrorLaunchTimeout || e == cudaErrorUnknown;
  throw CudaError{std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")", sticky};
}
#define CK(call) cuda_check((call), #call)

struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t n) : bytes(n) { CK(cudaMalloc(&p, n)); }
  ~DevBuf() { if (p) cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// The execution context of every op call (athanor.h, ath_cuda_ctx): device 0, the driver's
// non-blocking stream, and a scratch arena grown to what an op asks for when it returns
// ATH_ERR_SCRATCH. The untimed calls before each timing size it, so no timed launch reallocates.
ath_cuda_ctx g_ctx{};

template <typename A>
ath_status run_op(ath_status (*op)(const A*, const ath_cuda_ctx*), const A* args) {
  const ath_status st = op(args, &g_ctx);
  if (st != ATH_ERR_SCRATCH) return st;
  const size_t need = ath_scratch_needed();
  CK(cudaStreamSynchronize(static_cast<cudaStream_t>(g_ctx.stream)));  // the old arena may be in use
  if (g_ctx.scratch != nullptr) CK(cudaFree(g_ctx.scratch));
  g_ctx.scratch = nullptr;
  g_ctx.scratch_bytes = 0;
  CK(cudaMalloc(&g_ctx.scratch, need));
  g_ctx.scratch_bytes = need;
  return op(args, &g_ctx);
}

// Fills n elements with uniform values in [-1, 1) from a counter hash (splitmix64), so inputs
// are random, reproducible, and never zeros (zeros can time faster than real data).
__global__ void fill_uniform(void* out, int64_t n, int bf16, uint64_t seed) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float v = (float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
    if (bf16) static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
    else static_cast<float*>(out)[i] = v;
  }
}

void fill(DevBuf& b, int64_t n, bool bf16, uint64_t seed, cudaStream_t s) {
  fill_uniform<<<1024, 256, 0, s>>>(b.p, n, bf16 ? 1 : 0, seed);
  CK(cudaGetLastError());
}

float bf16_bits_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; std::memcpy(&f, &u, 4); return f; }

// Copies `count` elements starting at element `offset` of a device buffer to host floats.
std::vector<double> fetch(const DevBuf& b, bool bf16, int64_t offset, int64_t count) {
  std::vector<double> out(count);
  if (bf16) {
    std::vector<uint16_t> h(count);
    CK(cudaMemcpy(h.data(), static_cast<const uint16_t*>(b.p) + offset, count * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < count; ++i) out[i] = bf16_bits_to_f32(h[i]);
  } else {
    std::vector<float> h(count);
    CK(cudaMemcpy(h.data(), static_cast<const float*>(b.p) + offset, count * 4, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < count; ++i) out[i] = h[i];
  }
  return out;
}

// Column j of a (rows, cols) row-major matrix.
std::vector<double> fetch_column(const DevBuf& b, bool bf16, int64_t rows, int64_t cols, int64_t j) {
  size_t es = bf16 ? 2 : 4;
  std::vector<unsigned char> h(rows * es);
  CK(cudaMemcpy2D(h.data(), es, static_cast<const unsigned char*>(b.p) + j * es, cols * es, es, rows,
                  cudaMemcpyDeviceToHost));
  std::vector<double> out(rows);
  for (int64_t i = 0; i < rows; ++i) {
    if (bf16) { uint16_t v; std::memcpy(&v, &h[i * 2], 2); out[i] = bf16_bits_to_f32(v); }
    else { float v; std::memcpy(&v, &h[i * 4], 4); out[i] = v; }
  }
  return out;
}

// Accumulates ||got - ref||^2 and ||ref||^2; NaN/inf in got makes the error infinite.
struct RelErr {
  double num = 0, den = 0;
  bool bad = false;
  void add(double got, double ref) {
    if (!std::isfinite(got)) bad = true;
    num += (got - ref) * (got - ref);
    den += ref * ref;
  }
  double value() const { return bad ? INFINITY : std::sqrt(num / std::max(den, 1e-300)); }
};

// ------------------------------------------------------------------ timing
struct Timing { double median_ms = NAN, min_ms = NAN; int reps = 0; };

// Runs `launch` (which enqueues one op on s and returns its ath_status) twice to warm up, times one
// launch to size the run, then `reps` launches each bracketed by its own pair of events, so that
// the median is over single launches. Target: about `seconds` of timed work, 5..200 launches.
template <class F>
Timing time_op(F launch, cudaStream_t s, double seconds, std::string* err) {
  Timing t;
  for (int i = 0; i < 2; ++i) {
    ath_status st = launch();
    if (st != ATH_OK) { *err = std::string("status ") + std::to_string((int)st) + ": " + ath_last_error(); return t; }
  }
  CK(cudaStreamSynchronize(s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  CK(cudaEventRecord(e0, s));
  ath_status st = launch();
  CK(cudaEventRecord(e1, s));
  CK(cudaEventSynchronize(e1));
  float one_ms = 0;
  CK(cudaEventElapsedTime(&one_ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  if (st != ATH_OK) { *err = std::string("status ") + std::to_string((int)st) + ": " + ath_last_error(); return t; }
  int reps = (int)std::clamp(seconds * 1e3 / std::max(one_ms, 1e-3f), 5.0, 200.0);
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) CK(cudaEventCreate(&e));
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(ev[2 * r], s));
    st = launch();
    CK(cudaEventRecord(ev[2 * r + 1], s));
    if (st != ATH_OK) break;
  }
  CK(cudaStreamSynchronize(s));
  std::vector<float> ms(reps);
  for (int r = 0; r < reps && st == ATH_OK; ++r) CK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
  for (auto& e : ev) cudaEventDestroy(e);
  if (st != ATH_OK) { *err = std::string("status ") + std::to_string((int)st) + ": " + ath_last_error(); return t; }
  std::sort(ms.begin(), ms.end());
  t.reps = reps;
  t.min_ms = ms.front();
  t.median_ms = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
  return t;
}

// ------------------------------------------------------------------ GEMM
void run_gemm(const Case& c, const char* out, double seconds, cudaStream_t s) {
  const bool bf = c.dtype == "bf16";
  const size_t es = bf ? 2 : 4;
  Record r;
  r.key = c.name(); r.op = "gemm"; r.pass = "fwd"; r.dtype = c.dtype;
  r.shape = std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k);
  r.flops = 2.0 * c.m * c.n * c.k;
  try {
    DevBuf A(c.m * c.k * es), B(c.k * c.n * es), C(c.m * c.n * es);
    fill(A, c.m * c.k, bf, 11, s);
    fill(B, c.k * c.n, bf, 22, s);
    CK(cudaMemsetAsync(C.p, 0xff, C.bytes, s));  // NaN everywhere: an unwritten element shows
    ath_gemm_args g{};
    g.m = c.m; g.n = c.n; g.k = c.k; g.batch = 1;
    g.dtype_ab = bf ? ATH_BF16 : ATH_F32; g.dtype_c = g.dtype_ab;
    g.a = A.p; g.lda = c.k; g.b = B.p; g.ldb = c.n; g.c = C.p; g.ldc = c.n;
    g.alpha = 1.0f; g.beta = 0.0f;
    // Check first, from the poisoned output, on one launch.
    ath_status st = run_op(ath_cuda_gemm, &g);
    if (st != ATH_OK) { r.error = std::string("ath_cuda_gemm: ") + ath_last_error(); write_record(out, r); return; }
    CK(cudaStreamSynchronize(s));
    RelErr err;
    uint64_t z = 12345;
    for (int sample = 0; sample < 48; ++sample) {
      z = z * 6364136223846793005ull + 1442695040888963407ull;
      int64_t i = sample == 0 ? 0 : sample == 1 ? c.m - 1 : (int64_t)((z >> 33) % (uint64_t)c.m);
      int64_t j = sample == 0 ? 0 : sample == 1 ? c.n - 1 : (int64_t)((z >> 13) % (uint64_t)c.n);
      auto arow = fetch(A, bf, i * c.k, c.k);
      auto bcol = fetch_column(B, bf, c.k, c.n, j);
      double ref = 0;
      for (int64_t q = 0; q < c.k; ++q) ref += arow[q] * bcol[q];
      err.add(fetch(C, bf, i * c.n + j, 1)[0], ref);
    }
    r.checked = true;
    r.check_what = "48 elements (incl. corners) vs float64 host dot products, from a NaN-poisoned C";
    r.check_rel_err = err.value();
    // bf16 output rounding alone gives ~3e-3; strict FP32 accumulation errors are ~1e-6 at K=8192
    // (TF32-class arithmetic would show ~1e-3 and fail the f32 limit).
    r.check_limit = bf ? 1e-2 : 1e-4;
    r.check_ok = r.check_rel_err <= r.check_limit;
    std::string terr;
    Timing t = time_op([&] { return run_op(ath_cuda_gemm, &g); }, s, seconds, &terr);
    r.error = terr;
    r.ms_median = t.median_ms; r.ms_min = t.min_ms; r.reps = t.reps;
  } catch (const CudaError& e) {
    r.error = e.msg;
    write_record(out, r);
    if (e.sticky) std::exit(3);
    return;
  }
  write_record(out, r);
}

// ------------------------------------------------------------------ attention
// float64 reference for one (b, h) slice, rows/columns picked by the caller. All slices (T, D).
struct Slice {
  int64_t t, d;
  std::vector<double> q, k, v, o, dout, lse;
};

// Visible keys for query i (bottom-right aligned causal, Tq == Tk here): j <= i.
int64_t visible(const Slice& s, int64_t i, bool causal) { return causal ? i + 1 : s.t; }

double dot(const double* a, const double* b, int64_t n) { double r = 0; for (int64_t i = 0; i < n; ++i) r += a[i] * b[i]; return r; }

void ref_forward_row(const Slice& s, int64_t i, bool causal, double scale, std::vector<double>* o, double* lse) {
  int64_t nk = visible(s, i, causal);
  std::vector<double> p(nk);
  double mx = -INFINITY;
  for (int64_t j = 0; j < nk; ++j) { p[j] = scale * dot(&s.q[i * s.d], &s.k[j * s.d], s.d); mx = std::max(mx, p[j]); }
  double l = 0;
  for (int64_t j = 0; j < nk; ++j) { p[j] = std::exp(p[j] - mx); l += p[j]; }
  o->assign(s.d, 0.0);
  for (int64_t j = 0; j < nk; ++j)
    for (int64_t x = 0; x < s.d; ++x) (*o)[x] += p[j] / l * s.v[j * s.d + x];
  *lse = mx + std::log(l);
}

// dq row i, using the device's lse and o (delta_i = dout_i . o_i), as FlashAttention defines them.
std::vector<double> ref_dq_row(const Slice& s, int64_t i, bool causal, double scale) {
  std::vector<double> dq(s.d, 0.0);
  double delta = dot(&s.dout[i * s.d], &s.o[i * s.d], s.d);
  for (int64_t j = 0; j < visible(s, i, causal); ++j) {
    double p = std::exp(scale * dot(&s.q[i * s.d], &s.k[j * s.d], s.d) - s.lse[i]);
    double dp = dot(&s.dout[i * s.d], &s.v[j * s.d], s.d);
    for (int64_t x = 0; x < s.d; ++x) dq[x] += p * (dp - delta) * scale * s.k[j * s.d + x];
  }
  return dq;
}

// dk and dv row j (key j is seen by queries i >= j when causal).
void ref_dkdv_row(const Slice& s, int64_t j, bool causal, double scale, std::vector<double>* dk, std::vector<double>* dv) {
  dk->assign(s.d, 0.0);
  dv->assign(s.d, 0.0);
  for (int64_t i = causal ? j : 0; i < s.t; ++i) {
    double p = std::exp(scale * dot(&s.q[i * s.d], &s.k[j * s.d], s.d) - s.lse[i]);
    double dp = dot(&s.dout[i * s.d], &s.v[j * s.d], s.d);
    double delta = dot(&s.dout[i * s.d], &s.o[i * s.d], s.d);
    for (int64_t x = 0; x < s.d; ++x) {
      (*dv)[x] += p * s.dout[i * s.d + x];
      (*dk)[x] += p * (dp - delta) * scale * s.q[i * s.d + x];
    }
  }
}

void run_attention(const Case& c, const char* out, double seconds, bool fwd_only, cudaStream_t s) {
  const bool bf = c.dtype == "bf16";
  const size_t es = bf ? 2 : 4;
  const bool causal = c.causal != 0;
  const int64_t n = c.b * c.h * c.t * c.d;
  const double fwd_flops = 4.0 * c.b * c.h * c.t * c.t * c.d * (causal ? 0.5 : 1.0);
  Record f, bw;
  f.key = c.name() + "-fwd"; bw.key = c.name() + "-bwd";
  f.op = bw.op = "attention"; f.pass = "fwd"; bw.pass = "bwd"; f.dtype = bw.dtype = c.dtype;
  f.shape = bw.shape = "B" + std::to_string(c.b) + " H" + std::to_string(c.h) + " T" + std::to_string(c.t) + " D" +
                       std::to_string(c.d) + (causal ? " causal" : "");
  f.flops = fwd_flops; bw.flops = 2.5 * fwd_flops;
  bool fwd_written = false;
  try {
    DevBuf q(n * es), k(n * es), v(n * es), o(n * es), dout(n * es), dq(n * es), dk(n * es), dv(n * es);
    DevBuf lse(c.b * c.h * c.t * sizeof(float));
    fill(q, n, bf, 101, s); fill(k, n, bf, 202, s); fill(v, n, bf, 303, s); fill(dout, n, bf, 404, s);
    CK(cudaMemsetAsync(o.p, 0xff, o.bytes, s));
    CK(cudaMemsetAsync(lse.p, 0xff, lse.bytes, s));
    ath_attention_args a{};
    a.batch = c.b; a.heads_q = c.h; a.heads_kv = c.h; a.tq = c.t; a.tk = c.t; a.head_dim = c.d;
    a.dtype = bf ? ATH_BF16 : ATH_F32; a.causal = c.causal; a.scale = (float)(1.0 / std::sqrt((double)c.d));
    const int64_t sb = c.h * c.t * c.d, sh = c.t * c.d, st = c.d;
    a.q = q.p; a.q_sb = sb; a.q_sh = sh; a.q_st = st;
    a.k = k.p; a.k_sb = sb; a.k_sh = sh; a.k_st = st;
    a.v = v.p; a.v_sb = sb; a.v_sh = sh; a.v_st = st;
    a.o = o.p; a.o_sb = sb; a.o_sh = sh; a.o_st = st;
    a.lse = static_cast<float*>(lse.p);
    a.dout = dout.p; a.dq = dq.p; a.dk = dk.p; a.dv = dv.p;

    // ---- forward: check one launch from poisoned outputs, then time.
    ath_status st_f = run_op(ath_cuda_attention_fwd, &a);
    if (st_f != ATH_OK) {
      f.error = std::string("ath_cuda_attention_fwd: ") + ath_last_error();
      bw.error = "skipped: forward failed";
      write_record(out, f); write_record(out, bw);
      return;
    }
    CK(cudaStreamSynchronize(s));
    // The (b, h) slice checked: the last one (its offsets stress 64-bit indexing the most).
    const int64_t bi = c.b - 1, hi = c.h - 1, base = bi * sb + hi * sh;
    Slice sl;
    sl.t = c.t; sl.d = c.d;
    sl.q = fetch(q, bf, base, c.t * c.d);
    sl.k = fetch(k, bf, base, c.t * c.d);
    sl.v = fetch(v, bf, base, c.t * c.d);
    sl.o = fetch(o, bf, base, c.t * c.d);
    sl.dout = fetch(dout, bf, base, c.t * c.d);
    {
      std::vector<float> l(c.t);
      CK(cudaMemcpy(l.data(), static_cast<const float*>(lse.p) + (bi * c.h + hi) * c.t, c.t * 4, cudaMemcpyDeviceToHost));
      sl.lse.assign(l.begin(), l.end());
    }
    const int64_t rows[4] = {0, 1, c.t / 2 + 3, c.t - 1};
    RelErr eo;
    double lse_err = 0;
    for (int64_t i : rows) {
      std::vector<double> ro;
      double rl;
      ref_forward_row(sl, i, causal, a.scale, &ro, &rl);
      for (int64_t x = 0; x < c.d; ++x) eo.add(sl.o[i * c.d + x], ro[x]);
      lse_err = std::max(lse_err, std::isfinite(sl.lse[i]) ? std::fabs(sl.lse[i] - rl) : INFINITY);
    }
    f.checked = true;
    f.check_what = "o rows {0,1,T/2+3,T-1} of the last (b,h) vs float64 host reference from NaN-poisoned o; "
                   "lse max abs err " + num(lse_err);
    f.check_rel_err = std::max(eo.value(), lse_err > 1e-3 ? INFINITY : 0.0);
    f.check_limit = bf ? 2e-2 : 1e-4;
    f.check_ok = f.check_rel_err <= f.check_limit;
    std::string terr;
    Timing t = time_op([&] { return run_op(ath_cuda_attention_fwd, &a); }, s, seconds, &terr);
    f.error = terr; f.ms_median = t.median_ms; f.ms_min = t.min_ms; f.reps = t.reps;
    write_record(out, f);
    fwd_written = true;
    if (fwd_only) return;  // --fwd-only: no backward record

    // ---- backward (uses o and lse of the forward just run; they are unchanged by re-runs).
    CK(cudaMemsetAsync(dq.p, 0xff, dq.bytes, s));
    CK(cudaMemsetAsync(dk.p, 0xff, dk.bytes, s));
    CK(cudaMemsetAsync(dv.p, 0xff, dv.bytes, s));
    ath_status st_b = run_op(ath_cuda_attention_bwd, &a);
    if (st_b != ATH_OK) { bw.error = std::string("ath_cuda_attention_bwd: ") + ath_last_error(); write_record(out, bw); return; }
    CK(cudaStreamSynchronize(s));
    RelErr eq, ek, ev;
    for (int64_t i : rows) {
      auto r = ref_dq_row(sl, i, causal, a.scale);
      auto got = fetch(dq, bf, base + i * c.d, c.d);
      for (int64_t x = 0; x < c.d; ++x) eq.add(got[x], r[x]);
      std::vector<double> rk, rv;
      ref_dkdv_row(sl, i, causal, a.scale, &rk, &rv);
      auto gk = fetch(dk, bf, base + i * c.d, c.d);
      auto gv = fetch(dv, bf, base + i * c.d, c.d);
      for (int64_t x = 0; x < c.d; ++x) { ek.add(gk[x], rk[x]); ev.add(gv[x], rv[x]); }
    }
    bw.checked = true;
    bw.check_what = "dq, dk, dv rows {0,1,T/2+3,T-1} of the last (b,h) vs float64 host reference (rel err dq " +
                    num(eq.value()) + ", dk " + num(ek.value()) + ", dv " + num(ev.value()) + ")";
    bw.check_rel_err = std::max({eq.value(), ek.value(), ev.value()});
    bw.check_limit = bf ? 3e-2 : 1e-4;
    bw.check_ok = bw.check_rel_err <= bw.check_limit;
    terr.clear();
    t = time_op([&] { return run_op(ath_cuda_attention_bwd, &a); }, s, seconds, &terr);
    bw.error = terr; bw.ms_median = t.median_ms; bw.ms_min = t.min_ms; bw.reps = t.reps;
    write_record(out, bw);
  } catch (const CudaError& e) {
    if (!fwd_written) { f.error = e.msg; write_record(out, f); bw.error = "skipped: " + e.msg; }
    else bw.error = e.msg;
    write_record(out, bw);
    if (e.sticky) std::exit(3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* cases_path = "bench/gpu/cases.txt";
  const char* out = "ours.jsonl";
  int from = 0;
  double seconds = 0.4;
  bool list = false, fwd_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--cases" && i + 1 < argc) cases_path = argv[++i];
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--from" && i + 1 < argc) from = std::atoi(argv[++i]);
    else if (a == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (a == "--list") list = true;
    else if (a == "--fwd-only") fwd_only = true;
    else {
      std::fprintf(stderr, "usage: %s --cases FILE --out FILE [--from N] [--seconds S] [--fwd-only] [--list]\n", argv[0]);
      return 2;
    }
  }
  std::vector<Case> cases;
  std::string err;
  if (!parse_cases(cases_path, &cases, &err)) { std::fprintf(stderr, "bench_cuda: %s\n", err.c_str()); return 2; }
  if (list) {
    for (size_t i = 0; i < cases.size(); ++i) std::printf("%zu %s\n", i, cases[i].name().c_str());
    return 0;
  }
  std::fprintf(stderr, "bench_cuda: libathanor %s, built with CUDA: %d\n", ath_version(), ath_built_with_cuda());
  if (ath_cuda_device_count() <= 0) {
    std::fprintf(stderr, "bench_cuda: no usable CUDA device: %s\n", ath_cuda_unavailable_reason());
    return 4;
  }
  char info[512] = {0};
  if (ath_cuda_device_info(0, info, sizeof info) == ATH_OK) std::fprintf(stderr, "bench_cuda: device 0: %s\n", info);
  if (ath_cuda_set_device(0) != ATH_OK) std::fprintf(stderr, "bench_cuda: ath_cuda_set_device(0): %s\n", ath_last_error());
  cudaStream_t s = nullptr;
  if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
    std::fprintf(stderr, "bench_cuda: cannot create a stream\n");
    return 4;
  }
  g_ctx.device = 0;
  g_ctx.stream = s;
  for (size_t i = (size_t)std::max(from, 0); i < cases.size(); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "bench_cuda: case %zu %s\n", i, cases[i].name().c_str());
    if (cases[i].op == "gemm") run_gemm(cases[i], out, seconds, s);
    else run_attention(cases[i], out, seconds, fwd_only, s);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "bench_cuda: case %zu done in %.1f s\n", i, secs);
  }
  cudaStreamSynchronize(s);
  if (g_ctx.scratch != nullptr) cudaFree(g_ctx.scratch);
  cudaStreamDestroy(s);
  return 0;
}

// Tests of ath_cuda_copy and ath_cuda_memset (kernels/copy.cu) against their CPU twins
// (ath_cpu_copy, ath_cpu_memset) on the same bytes: every element size; rank 0 and rank 8;
// contiguous copies (cudaMemcpyAsync), copies of rows (cudaMemcpy2DAsync), broadcast rows and
// permutations (the strided kernel, in 16-byte units for aligned rows, in elements for transposes,
// in bytes for unaligned bases); random views. The whole destination buffer, sentinel-filled
// first, must equal the CPU twin's byte for byte (elements outside the view stay untouched).
// Without a usable GPU these tests skip with the reason, except the argument checks (any CUDA
// build: they fail before CUDA is touched).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "copy_test_views.h"
#include "cuda_test_context.h"
#include "testing.h"

namespace {

using ath::testing::cuda_ctx;
using ath::testing::cuda_download;
using ath::testing::cuda_run;
using ath::testing::cuda_upload;
using ath::testing::format;
using ath::testing::ok;
using ath::testing::require_gpu;
using namespace ath::testing::copy;

// Device memory of device 0 (256-byte aligned from ath_cuda_malloc).
struct DeviceBytes {
  void* p = nullptr;
  explicit DeviceBytes(size_t n) { ok(ath_cuda_malloc(0, n > 0 ? n : 1, &p), "ath_cuda_malloc"); }
  ~DeviceBytes() {
    if (p != nullptr) ath_cuda_free(0, p);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  unsigned char* bytes() const { return static_cast<unsigned char*>(p); }
};

// One case on both backends; `misalign` bytes shift both bases. Returns false on a mismatch.
bool run_case(const View& dv, const View& sv, int es, int misalign, const std::string& what) {
  const size_t sbytes = static_cast<size_t>(sv.extent) * es + misalign;
  const size_t dbytes = static_cast<size_t>(dv.extent) * es + misalign;
  std::vector<unsigned char> src(sbytes), cpu(dbytes, 0xA5), gpu(dbytes, 0);
  for (size_t i = 0; i < sbytes; ++i) src[i] = static_cast<unsigned char>((i * 131 + 7) ^ (i >> 8));
  const ath_copy_args ca = args_of(dv, cpu.data() + misalign, sv, src.data() + misalign, es);
  ok(ath_cpu_copy(&ca), what + ": ath_cpu_copy");

  DeviceBytes dsrc(sbytes), ddst(dbytes);
  ok(cuda_upload(dsrc.p, src.data(), sbytes), what + ": upload src");
  const std::vector<unsigned char> sentinel(dbytes, 0xA5);
  ok(cuda_upload(ddst.p, sentinel.data(), dbytes), what + ": upload sentinel");
  const ath_copy_args ga = args_of(dv, ddst.bytes() + misalign, sv, dsrc.bytes() + misalign, es);
  ok(cuda_run(ath_cuda_copy, &ga), what + ": ath_cuda_copy");
  ok(cuda_download(gpu.data(), ddst.p, dbytes), what + ": download");
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < dbytes; ++i)
    if (gpu[i] != cpu[i] && bad++ == 0) first = i;
  ATH_EXPECT(bad == 0, "%s: %zu of %zu bytes differ from ath_cpu_copy, first at byte %zu: got 0x%02x, want 0x%02x",
             what.c_str(), bad, dbytes, first, bad ? gpu[first] : 0, bad ? cpu[first] : 0);
  return bad == 0;
}

}  // namespace

ATH_TEST(cuda_copy_paths_match_cpu) {
  require_gpu();
  for (int es : kElemSizes) {
    const View r0 = make_view(0, nullptr, nullptr, nullptr, nullptr, 0);
    run_case(r0, r0, es, 0, format("rank 0 es=%d", es));
    // Contiguous (cudaMemcpyAsync), odd and large lengths, aligned and not.
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4099}, int64_t{1} << 20}) {
      const int order[1] = {0};
      const int64_t pad[1] = {0};
      const View v = make_view(1, &n, order, pad, nullptr, 0);
      run_case(v, v, es, 0, format("contiguous n=%lld es=%d", (long long)n, es));
      if (es > 1) run_case(v, v, es, 1, format("contiguous misaligned n=%lld es=%d", (long long)n, es));
    }
    // Rows (cudaMemcpy2DAsync): slices with padded pitches on either side.
    const int64_t s2[2] = {37, 100};
    const int row[2] = {1, 0}, col[2] = {0, 1};
    const int64_t nopad[2] = {0, 0}, pad[2] = {0, 29};
    const View rm = make_view(2, s2, row, nopad, nullptr, 0);
    const View rs = make_view(2, s2, row, pad, nullptr, 5);
    run_case(rm, rs, es, 0, format("rows from slice es=%d", es));
    run_case(rs, rm, es, 0, format("rows into slice es=%d", es));
    run_case(rs, rm, es, 3, format("rows misaligned es=%d", es));
    // Broadcast row (spitch 0: the kernel), transpose (element kernel), both directions.
    const bool brow[2] = {true, false};
    run_case(rm, make_view(2, s2, row, nopad, brow, 3), es, 0, format("broadcast row es=%d", es));
    run_case(rm, make_view(2, s2, col, nopad, nullptr, 0), es, 0, format("transpose read es=%d", es));
    run_case(make_view(2, s2, col, nopad, nullptr, 0), rm, es, 0, format("transpose write es=%d", es));
    if (es > 1) run_case(rm, make_view(2, s2, col, nopad, nullptr, 0), es, 1, format("transpose misaligned es=%d", es));
    // (B, H, T, D) <- (B, T, H, D): rows of D contiguous on both sides (16-byte units when aligned).
    const int64_t s4[4] = {2, 3, 17, 64};
    const int bhtd[4] = {3, 2, 1, 0}, bthd[4] = {3, 1, 2, 0};
    const int64_t p4[4] = {0, 0, 0, 0};
    const View a4 = make_view(4, s4, bhtd, p4, nullptr, 0), b4 = make_view(4, s4, bthd, p4, nullptr, 0);
    run_case(a4, b4, es, 0, format("BHTD <- BTHD es=%d", es));
    run_case(a4, b4, es, 2, format("BHTD <- BTHD misaligned es=%d", es));
    // Rank 8, permuted and padded.
    const int64_t shape8[8] = {2, 3, 1, 2, 3, 1, 2, 5};
    const int id8[8] = {7, 6, 5, 4, 3, 2, 1, 0}, perm8[8] = {3, 0, 6, 1, 7, 2, 5, 4};
    const int64_t pad0[8] = {}, pad8[8] = {1, 0, 2, 0, 1, 3, 0, 1};
    run_case(make_view(8, shape8, id8, pad0, nullptr, 0), make_view(8, shape8, perm8, pad8, nullptr, 3), es, 0,
             format("rank 8 es=%d", es));
  }
}

ATH_TEST(cuda_copy_random_views_match_cpu) {
  require_gpu();
  run_random_cases(4242, 300, run_case);
}

ATH_TEST(cuda_memset_matches_cpu) {
  require_gpu();
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{4096}, (int64_t{3} << 20) + 5}) {
    for (int value : {0, 0x5A, 255}) {
      const size_t total = static_cast<size_t>(n) + 16;
      std::vector<unsigned char> cpu(total, 0x11), gpu(total, 0);
      ath_memset_args m{};
      m.dst = cpu.data() + 3;
      m.bytes = n;
      m.value = value;
      ok(ath_cpu_memset(&m), "ath_cpu_memset");
      DeviceBytes d(total);
      const std::vector<unsigned char> init(total, 0x11);
      ok(cuda_upload(d.p, init.data(), total), "upload");
      m.dst = d.bytes() + 3;
      ok(cuda_run(ath_cuda_memset, &m), "ath_cuda_memset");
      ok(cuda_download(gpu.data(), d.p, total), "download");
      ATH_EXPECT(gpu == cpu, "memset of %lld bytes to %d differs from ath_cpu_memset", (long long)n, value);
    }
  }
}

// Bad arguments fail before CUDA is touched (any CUDA build); so does a bad context.
ATH_TEST(cuda_copy_and_memset_validate_arguments) {
  if (!ath_built_with_cuda()) ath::testing::skip("CPU-only build: the CUDA ops are stubs");
  unsigned char buf[64] = {};
  ath_copy_args a{};
  a.rank = 1;
  a.elem_size = 4;
  a.shape[0] = 4;
  a.dst_strides[0] = 1;
  a.src_strides[0] = 1;
  a.dst = buf;
  a.src = buf + 32;
  ath_copy_args bad = a;
  bad.rank = 9;
  ATH_EXPECT(ath_cuda_copy(&bad, cuda_ctx()) == ATH_ERR_INVALID, "rank 9: %s", ath_last_error());
  bad = a;
  bad.elem_size = 3;
  ATH_EXPECT(ath_cuda_copy(&bad, cuda_ctx()) == ATH_ERR_INVALID, "elem_size 3: %s", ath_last_error());
  ATH_EXPECT(std::strstr(ath_last_error(), "ath_cuda_copy") != nullptr, "message '%s' lacks the op", ath_last_error());
  bad = a;
  bad.src_strides[0] = -1;
  ATH_EXPECT(ath_cuda_copy(&bad, cuda_ctx()) == ATH_ERR_INVALID, "negative stride: %s", ath_last_error());
  ATH_EXPECT(std::strstr(ath_last_error(), "src_strides[0]") != nullptr, "message '%s'", ath_last_error());
  ATH_EXPECT(ath_cuda_copy(&a, nullptr) == ATH_ERR_INVALID, "NULL ctx accepted");
  ath_cuda_ctx no_stream = *cuda_ctx();
  no_stream.stream = nullptr;
  ATH_EXPECT(ath_cuda_copy(&a, &no_stream) == ATH_ERR_INVALID, "NULL stream accepted");
  ATH_EXPECT(std::strstr(ath_last_error(), "legacy default stream") != nullptr, "message '%s'", ath_last_error());
  ath_memset_args m{};
  m.dst = buf;
  m.bytes = 8;
  m.value = 300;
  ATH_EXPECT(ath_cuda_memset(&m, cuda_ctx()) == ATH_ERR_INVALID, "value 300: %s", ath_last_error());
  m.value = 0;
  ATH_EXPECT(ath_cuda_memset(&m, nullptr) == ATH_ERR_INVALID, "NULL ctx accepted by memset");
  ATH_EXPECT(ath_cuda_memset(&m, &no_stream) == ATH_ERR_INVALID, "NULL stream accepted by memset");
  // Nothing to do: OK without touching CUDA.
  a.shape[0] = 0;
  a.dst = nullptr;
  a.src = nullptr;
  ATH_EXPECT(ath_cuda_copy(&a, cuda_ctx()) == ATH_OK, "empty copy: %s", ath_last_error());
  m.bytes = 0;
  m.dst = nullptr;
  ATH_EXPECT(ath_cuda_memset(&m, cuda_ctx()) == ATH_OK, "empty memset: %s", ath_last_error());
}

// Tests of ath_cpu_copy and ath_cpu_memset (native/cpu/copy.cpp) against a plain reference: an
// element-by-element loop over the caller's shape in row-major order. Views are built over padded
// buffers with random dimension orders (transposes, permutations), slices (padding, offsets),
// broadcast sources (stride 0), rank 0 and rank 8, odd sizes, every element size and unaligned
// bases. The whole destination buffer is compared byte for byte, so elements outside the view
// must stay untouched. Large copies (which run on several threads) must give the same bytes with
// 1 thread and with the pool's default. Bad arguments must return ATH_ERR_INVALID naming the field.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "copy_test_views.h"
#include "testing.h"

namespace {

using ath::testing::format;
using namespace ath::testing::copy;

// Runs one copy case: src filled with a pattern, dst with a sentinel; `misalign` bytes shift both
// bases off their natural alignment. Returns false (with a recorded failure) on a mismatch.
bool run_case(const View& dv, const View& sv, int es, int misalign, const std::string& what) {
  const size_t sbytes = static_cast<size_t>(sv.extent) * es + misalign, dbytes = static_cast<size_t>(dv.extent) * es + misalign;
  std::vector<unsigned char> src(sbytes), dst(dbytes, 0xA5), ref(dbytes, 0xA5);
  for (size_t i = 0; i < sbytes; ++i) src[i] = static_cast<unsigned char>((i * 131 + 7) ^ (i >> 8));
  reference_copy(dv, ref.data() + misalign, sv, src.data() + misalign, es);
  const ath_copy_args a = args_of(dv, dst.data() + misalign, sv, src.data() + misalign, es);
  const ath_status st = ath_cpu_copy(&a);
  ATH_EXPECT(st == ATH_OK, "%s: status %d: %s", what.c_str(), (int)st, ath_last_error());
  if (st != ATH_OK) return false;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < dbytes; ++i)
    if (dst[i] != ref[i] && bad++ == 0) first = i;
  ATH_EXPECT(bad == 0, "%s: %zu of %zu bytes differ, first at byte %zu: got 0x%02x, want 0x%02x", what.c_str(), bad,
             dbytes, first, bad ? dst[first] : 0, bad ? ref[first] : 0);
  return bad == 0;
}

}  // namespace

ATH_TEST(cpu_copy_contiguous_rank0_and_rank8) {
  for (int es : kElemSizes) {
    // Rank 0: one element.
    {
      const View v = make_view(0, nullptr, nullptr, nullptr, nullptr, 0);
      run_case(v, v, es, 0, format("rank 0 es=%d", es));
    }
    // Rank 1, odd lengths (memcpy path), including 0.
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{4099}}) {
      const int order[1] = {0};
      const int64_t pad[1] = {0};
      const View v = make_view(1, &n, order, pad, nullptr, 0);
      run_case(v, v, es, 0, format("contiguous n=%lld es=%d", (long long)n, es));
    }
    // Rank 8 contiguous (coalesces to one run) and rank 8 fully permuted.
    const int64_t shape8[8] = {2, 3, 1, 2, 3, 1, 2, 5};
    const int id8[8] = {7, 6, 5, 4, 3, 2, 1, 0};
    const int perm8[8] = {3, 0, 6, 1, 7, 2, 5, 4};
    const int64_t pad0[8] = {};
    const int64_t pad8[8] = {1, 0, 2, 0, 1, 3, 0, 1};
    const View c8 = make_view(8, shape8, id8, pad0, nullptr, 0);
    run_case(c8, c8, es, 0, format("rank 8 contiguous es=%d", es));
    const View p8 = make_view(8, shape8, perm8, pad8, nullptr, 3);
    run_case(c8, p8, es, 0, format("rank 8 permuted padded src es=%d", es));
    run_case(p8, c8, es, 0, format("rank 8 permuted padded dst es=%d", es));
  }
}

ATH_TEST(cpu_copy_transposes_slices_and_broadcasts) {
  for (int es : kElemSizes) {
    // 2-D transpose, odd sizes, both directions.
    const int64_t s2[2] = {13, 7};
    const int row[2] = {1, 0}, col[2] = {0, 1};
    const int64_t nopad[2] = {0, 0}, pad[2] = {3, 5};
    const View rm = make_view(2, s2, row, nopad, nullptr, 0);
    const View cm = make_view(2, s2, col, nopad, nullptr, 0);
    run_case(rm, cm, es, 0, format("transpose read es=%d", es));
    run_case(cm, rm, es, 0, format("transpose write es=%d", es));
    // Row slices (row memcpy path) with offsets on both sides.
    const View rs = make_view(2, s2, row, pad, nullptr, 11);
    run_case(rm, rs, es, 0, format("slice to contiguous es=%d", es));
    run_case(rs, rm, es, 0, format("contiguous to slice es=%d", es));
    run_case(rs, make_view(2, s2, row, nopad, nullptr, 4), es, 0, format("slice to slice es=%d", es));
    // Broadcast sources: a row over rows, a column over columns, a scalar over everything.
    const bool brow[2] = {true, false}, bcol[2] = {false, true}, ball[2] = {true, true};
    run_case(rm, make_view(2, s2, row, nopad, brow, 2), es, 0, format("broadcast row es=%d", es));
    run_case(rm, make_view(2, s2, row, nopad, bcol, 2), es, 0, format("broadcast column es=%d", es));
    run_case(cm, make_view(2, s2, row, nopad, ball, 5), es, 0, format("broadcast scalar es=%d", es));
    // 4-D (B, H, T, D) -> (B, T, H, D) permute (inner rows of D contiguous on both sides).
    const int64_t s4[4] = {2, 3, 5, 8};
    const int bhtd[4] = {3, 2, 1, 0}, bthd[4] = {3, 1, 2, 0};
    const int64_t p4[4] = {0, 0, 0, 0};
    run_case(make_view(4, s4, bhtd, p4, nullptr, 0), make_view(4, s4, bthd, p4, nullptr, 0), es, 0,
             format("BHTD <- BTHD es=%d", es));
    // Unaligned bases.
    if (es > 1) {
      run_case(rm, cm, es, 1, format("transpose misaligned es=%d", es));
      run_case(rs, rm, es, 3, format("slice misaligned es=%d", es));
    }
  }
}

ATH_TEST(cpu_copy_random_views) { run_random_cases(42, 600, run_case); }

ATH_TEST(cpu_copy_large_is_thread_count_independent) {
  // 3-D (64, 96, 130) F32-sized elements: permuted source (strided runs) and row slices (memcpy
  // runs), both large enough to be split over the pool.
  const int64_t shape[3] = {64, 96, 130};
  const int rm[3] = {2, 1, 0}, perm[3] = {1, 2, 0};
  const int64_t nopad[3] = {0, 0, 0}, pad[3] = {0, 3, 1};
  const View dv = make_view(3, shape, rm, nopad, nullptr, 0);
  const View cases[2] = {make_view(3, shape, perm, nopad, nullptr, 0), make_view(3, shape, rm, pad, nullptr, 7)};
  const int threads = ath_cpu_threads();
  for (const View& sv : cases) {
    for (int es : {4, 2}) {
      std::vector<unsigned char> src(static_cast<size_t>(sv.extent) * es);
      for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 2654435761u >> 13);
      std::vector<unsigned char> one(static_cast<size_t>(dv.extent) * es, 0), many(one.size(), 0);
      ath_copy_args a = args_of(dv, one.data(), sv, src.data(), es);
      ATH_EXPECT(ath_cpu_set_threads(1) == ATH_OK, "set_threads(1): %s", ath_last_error());
      ATH_EXPECT(ath_cpu_copy(&a) == ATH_OK, "copy on 1 thread: %s", ath_last_error());
      ATH_EXPECT(ath_cpu_set_threads(std::max(threads, 4)) == ATH_OK, "set_threads: %s", ath_last_error());
      a.dst = many.data();
      ATH_EXPECT(ath_cpu_copy(&a) == ATH_OK, "copy on several threads: %s", ath_last_error());
      ATH_EXPECT(ath_cpu_set_threads(threads) == ATH_OK, "restore threads: %s", ath_last_error());
      ATH_EXPECT(one == many, "es=%d: 1 thread and several threads differ", es);
      run_case(dv, sv, es, 0, format("large es=%d", es));
    }
  }
}

ATH_TEST(cpu_copy_validates_arguments) {
  unsigned char buf[64] = {};
  auto expect_invalid = [](const ath_copy_args& a, const char* field, const char* what) {
    const ath_status st = ath_cpu_copy(&a);
    ATH_EXPECT(st == ATH_ERR_INVALID, "%s: status %d, expected ATH_ERR_INVALID", what, (int)st);
    ATH_EXPECT(std::strstr(ath_last_error(), field) != nullptr && std::strstr(ath_last_error(), "ath_cpu_copy"),
               "%s: message '%s' does not name '%s' and the op", what, ath_last_error(), field);
  };
  ath_copy_args ok{};
  ok.rank = 2;
  ok.elem_size = 4;
  ok.shape[0] = 2; ok.shape[1] = 3;
  ok.dst_strides[0] = 3; ok.dst_strides[1] = 1;
  ok.src_strides[0] = 3; ok.src_strides[1] = 1;
  ok.dst = buf; ok.src = buf + 32;
  ATH_EXPECT(ath_cpu_copy(&ok) == ATH_OK, "valid copy: %s", ath_last_error());
  ATH_EXPECT(ath_cpu_copy(nullptr) == ATH_ERR_INVALID, "NULL args accepted");
  ath_copy_args a = ok;
  a.rank = -1; expect_invalid(a, "rank", "rank -1");
  a.rank = 9; expect_invalid(a, "rank", "rank 9");
  a = ok; a.elem_size = 3; expect_invalid(a, "elem_size", "elem_size 3");
  a = ok; a.elem_size = 16; expect_invalid(a, "elem_size", "elem_size 16");
  a = ok; a.shape[1] = -2; expect_invalid(a, "shape[1]", "negative shape");
  a = ok; a.dst_strides[0] = -3; expect_invalid(a, "dst_strides[0]", "negative dst stride");
  a = ok; a.src_strides[1] = -1; expect_invalid(a, "src_strides[1]", "negative src stride");
  a = ok; a.dst = nullptr; expect_invalid(a, "dst", "null dst");
  a = ok; a.src = nullptr; expect_invalid(a, "src", "null src");
  a = ok; a.dst_strides[0] = 0; expect_invalid(a, "dst_strides[0]", "dst stride 0 over 2 elements");
  a = ok; a.src_strides[1] = int64_t{1} << 62; expect_invalid(a, "src_strides", "offsets beyond int64");
  // Zero elements: null pointers are fine; a dst stride 0 on a size-1 dimension is fine.
  a = ok; a.shape[0] = 0; a.dst = nullptr; a.src = nullptr;
  ATH_EXPECT(ath_cpu_copy(&a) == ATH_OK, "empty copy with null pointers: %s", ath_last_error());
  a = ok; a.shape[0] = 1; a.dst_strides[0] = 0;
  ATH_EXPECT(ath_cpu_copy(&a) == ATH_OK, "dst stride 0 on a size-1 dim: %s", ath_last_error());
}

ATH_TEST(cpu_memset_fills_bytes) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{17}, int64_t{4096}, (int64_t{3} << 20) + 5}) {
    for (int value : {0, 0x5A, 255}) {
      std::vector<unsigned char> buf(static_cast<size_t>(n) + 16, 0x11);
      ath_memset_args m{};
      m.dst = buf.data() + 3;
      m.bytes = n;
      m.value = value;
      ATH_EXPECT(ath_cpu_memset(&m) == ATH_OK, "memset %lld: %s", (long long)n, ath_last_error());
      bool good = true;
      for (size_t i = 0; i < buf.size(); ++i) {
        const bool inside = i >= 3 && i < 3 + static_cast<size_t>(n);
        if (buf[i] != (inside ? value : 0x11)) good = false;
      }
      ATH_EXPECT(good, "memset of %lld bytes to %d wrote the wrong bytes", (long long)n, value);
    }
  }
  ath_memset_args m{};
  m.bytes = 4;
  m.value = 1;
  ATH_EXPECT(ath_cpu_memset(&m) == ATH_ERR_INVALID, "null dst accepted");
  ATH_EXPECT(std::strstr(ath_last_error(), "dst") != nullptr, "message '%s' does not name dst", ath_last_error());
  unsigned char b[4];
  m.dst = b;
  m.value = 256;
  ATH_EXPECT(ath_cpu_memset(&m) == ATH_ERR_INVALID, "value 256 accepted");
  ATH_EXPECT(std::strstr(ath_last_error(), "value") != nullptr, "message '%s' does not name value", ath_last_error());
  m.value = 0;
  m.bytes = -1;
  ATH_EXPECT(ath_cpu_memset(&m) == ATH_ERR_INVALID, "bytes -1 accepted");
  m.dst = nullptr;
  m.bytes = 0;
  ATH_EXPECT(ath_cpu_memset(&m) == ATH_OK, "zero bytes with null dst: %s", ath_last_error());
  ATH_EXPECT(ath_cpu_memset(nullptr) == ATH_ERR_INVALID, "NULL args accepted");
}

// Minimal native test framework: ATH_TEST(name) registers a test; ATH_EXPECT records a failure with
// file:line and continues; ath_skip("reason") marks the test skipped (e.g. no GPU). The runner
// (testing.cpp) runs every test, or those whose name contains argv[1], and ends with the plain
// line "N passed, N failed, N skipped".
//
// Also the helpers the CPU op tests share: a seeded generator (Rng), a host buffer of any dtype
// (HostBuf), dtype names, running a body under every ISA the CPU has (for_each_isa, IsaScope) or
// with the thread pool resized (ThreadsScope, with_threads), and status checks (ATH_EXPECT_OK,
// ATH_EXPECT_INVALID).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "athanor/athanor.h"

namespace ath::testing {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};

std::vector<TestCase>& registry();
void record_failure(const char* file, int line, const std::string& message);
void skip(const std::string& reason);

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

// Largest absolute and relative error between two float arrays; relative to max(|ref|, floor).
struct ErrorStats {
  double max_abs = 0, max_rel = 0;
  int64_t worst_index = -1;
  int64_t mismatches = 0;
};
ErrorStats compare(const float* got, const float* ref, int64_t n, double atol, double rtol);

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ------------------------------------------------------------------ shared helpers of the op tests

// splitmix64: a small seeded generator, the same sequence on every platform.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53; }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// The activation dtypes every float op supports.
extern const int kFloatDtypes[3];
// "F32", "BF16", "F16", "I32" (or "?").
const char* dtype_name(int dtype);

// A host buffer of n elements of one dtype (at least one element of storage), read and written as
// float (I32 elements as their float value).
struct HostBuf {
  int dtype = ATH_F32;
  int64_t n = 0;
  std::vector<unsigned char> bytes;
  HostBuf() = default;
  HostBuf(int dt, int64_t count);
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
  float get(int64_t i) const;
  void set(int64_t i, float v);
  std::vector<float> f32() const;
  void fill_uniform(Rng& rng, double lo, double hi);
  void fill(float v);
  bool same_bits(const HostBuf& o) const { return bytes == o.bytes; }
};

// The ISAs this CPU supports, of "scalar", "avx2", "avx512".
std::vector<std::string> supported_isas();
// Forces an ISA (ath_cpu_set_isa) for its lifetime, then restores "auto".
struct IsaScope {
  explicit IsaScope(const std::string& isa) { ath_cpu_set_isa(isa.c_str()); }
  ~IsaScope() { ath_cpu_set_isa("auto"); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;
};
// Runs body once under each supported ISA, that ISA forced; restores "auto".
void for_each_isa(const std::function<void(const char* isa)>& body);

// Resizes the CPU thread pool to n for its lifetime, then restores the previous size.
struct ThreadsScope {
  int prev;
  explicit ThreadsScope(int n) : prev(ath_cpu_threads()) { ath_cpu_set_threads(n); }
  ~ThreadsScope() { ath_cpu_set_threads(prev); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;
};
// Runs fn with the thread pool resized to n threads, restoring the previous size.
inline void with_threads(int n, const std::function<void()>& fn) {
  ThreadsScope scope(n);
  fn();
}

}  // namespace ath::testing

#define ATH_TEST_CAT2(a, b) a##b
#define ATH_TEST_CAT(a, b) ATH_TEST_CAT2(a, b)
#define ATH_TEST(name)                                                                \
  static void ath_test_##name();                                                      \
  static ::ath::testing::Registrar ATH_TEST_CAT(ath_reg_, name)(#name, ath_test_##name); \
  static void ath_test_##name()

#define ATH_EXPECT(cond, ...)                                                                 \
  do {                                                                                        \
    if (!(cond)) ::ath::testing::record_failure(__FILE__, __LINE__,                           \
                                                std::string(#cond) + ": " + ::ath::testing::format(__VA_ARGS__)); \
  } while (0)

// Compares arrays and records a failure with max abs/rel error and the worst index.
#define ATH_EXPECT_CLOSE(got, ref, n, atol, rtol, what)                                      \
  do {                                                                                        \
    auto ath_st_ = ::ath::testing::compare((got), (ref), (n), (atol), (rtol));                \
    if (ath_st_.mismatches > 0)                                                               \
      ::ath::testing::record_failure(__FILE__, __LINE__, ::ath::testing::format(              \
          "%s: %lld of %lld mismatch (atol %g rtol %g), max abs %.3g max rel %.3g, worst at %lld: got %.7g ref %.7g", \
          (what), (long long)ath_st_.mismatches, (long long)(n), (double)(atol), (double)(rtol), \
          ath_st_.max_abs, ath_st_.max_rel, (long long)ath_st_.worst_index,                   \
          (double)(got)[ath_st_.worst_index], (double)(ref)[ath_st_.worst_index]));           \
  } while (0)

// The status of expr must be ATH_OK (else a failure naming the status and ath_last_error()).
#define ATH_EXPECT_OK(expr)                                                                  \
  do {                                                                                       \
    ath_status ath_st_ = (expr);                                                             \
    ATH_EXPECT(ath_st_ == ATH_OK, "status %d: %s", static_cast<int>(ath_st_), ath_last_error()); \
  } while (0)

// The status of expr must be ATH_ERR_INVALID with a non-empty message.
#define ATH_EXPECT_INVALID(expr, what)                                                       \
  do {                                                                                       \
    ath_status ath_st_ = (expr);                                                             \
    ATH_EXPECT(ath_st_ == ATH_ERR_INVALID, "%s: expected ATH_ERR_INVALID, got %d (%s)", (what), \
               static_cast<int>(ath_st_), ath_last_error());                                 \
    ATH_EXPECT(ath_last_error()[0] != '\0', "%s: empty error message", (what));              \
  } while (0)

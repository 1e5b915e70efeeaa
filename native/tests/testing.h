// Minimal native test framework: ATH_TEST(name) registers a test; ATH_EXPECT records a failure with
// file:line and continues; ath_skip("reason") marks the test skipped (e.g. no GPU). The runner
// (testing.cpp) runs every test, or those whose name contains argv[1], and ends with the plain
// line "N passed, N failed, N skipped".
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

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

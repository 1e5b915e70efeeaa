// Runner for the native tests (see testing.h).
#include "testing.h"

#include <cstdarg>
#include <cstring>

#include "common/dtype.h"

namespace ath::testing {
namespace {
struct SkipSignal {
  std::string reason;
};
int g_failures_in_test = 0;
}  // namespace

std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}

void record_failure(const char* file, int line, const std::string& message) {
  ++g_failures_in_test;
  if (g_failures_in_test <= 10) std::fprintf(stderr, "    FAIL %s:%d: %s\n", file, line, message.c_str());
}

void skip(const std::string& reason) { throw SkipSignal{reason}; }

std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

ErrorStats compare(const float* got, const float* ref, int64_t n, double atol, double rtol) {
  ErrorStats s;
  double worst = -1;
  for (int64_t i = 0; i < n; ++i) {
    double g = got[i], r = ref[i];
    double abs = std::fabs(g - r);
    if (std::isnan(g) != std::isnan(r) || std::isinf(g) != std::isinf(r)) abs = INFINITY;
    if (std::isinf(g) && std::isinf(r) && g == r) abs = 0;
    if (std::isnan(g) && std::isnan(r)) abs = 0;
    double rel = abs / std::fmax(std::fabs(r), 1e-6);
    if (abs > s.max_abs) s.max_abs = abs;
    if (rel > s.max_rel && std::fabs(r) > atol) s.max_rel = rel;
    bool bad = !(abs <= atol + rtol * std::fabs(r));
    if (bad) {
      ++s.mismatches;
      if (abs > worst) { worst = abs; s.worst_index = i; }
    }
  }
  if (s.worst_index < 0 && n > 0) s.worst_index = 0;
  return s;
}

const int kFloatDtypes[3] = {ATH_F32, ATH_BF16, ATH_F16};

const char* dtype_name(int dt) {
  switch (dt) {
    case ATH_F32: return "F32";
    case ATH_BF16: return "BF16";
    case ATH_F16: return "F16";
    case ATH_I32: return "I32";
    default: return "?";
  }
}

HostBuf::HostBuf(int dt, int64_t count)
    : dtype(dt), n(count), bytes(static_cast<size_t>(std::max<int64_t>(count, 1)) * ath_dtype_size(dt)) {}

float HostBuf::get(int64_t i) const {
  if (dtype == ATH_I32) return static_cast<float>(reinterpret_cast<const int32_t*>(bytes.data())[i]);
  return ath::load_f32(bytes.data(), dtype, i);
}

void HostBuf::set(int64_t i, float v) {
  if (dtype == ATH_I32) {
    reinterpret_cast<int32_t*>(bytes.data())[i] = static_cast<int32_t>(v);
    return;
  }
  ath::store_f32(bytes.data(), dtype, i, v);
}

std::vector<float> HostBuf::f32() const {
  std::vector<float> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i)] = get(i);
  return r;
}

void HostBuf::fill_uniform(Rng& rng, double lo, double hi) {
  for (int64_t i = 0; i < n; ++i) set(i, static_cast<float>(rng.uniform(lo, hi)));
}

void HostBuf::fill(float v) {
  for (int64_t i = 0; i < n; ++i) set(i, v);
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const char* isa : {"scalar", "avx2", "avx512"})
    if (ath_cpu_set_isa(isa) == ATH_OK) out.push_back(isa);
  ath_cpu_set_isa("auto");
  return out;
}

void for_each_isa(const std::function<void(const char*)>& body) {
  for (const std::string& isa : supported_isas()) {
    IsaScope scope(isa);
    body(isa.c_str());
  }
}

}  // namespace ath::testing

int main(int argc, char** argv) {
  using namespace ath::testing;
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0, skipped = 0;
  for (auto& t : registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    g_failures_in_test = 0;
    std::fprintf(stderr, "[ RUN  ] %s\n", t.name);
    try {
      t.fn();
    } catch (const SkipSignal& s) {
      std::fprintf(stderr, "[ SKIP ] %s: %s\n", t.name, s.reason.c_str());
      ++skipped;
      continue;
    } catch (const std::exception& e) {
      record_failure(__FILE__, __LINE__, std::string("exception: ") + e.what());
    }
    if (g_failures_in_test == 0) {
      std::fprintf(stderr, "[  OK  ] %s\n", t.name);
      ++passed;
    } else {
      std::fprintf(stderr, "[FAILED] %s (%d failures)\n", t.name, g_failures_in_test);
      ++failed;
    }
  }
  std::printf("native: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}

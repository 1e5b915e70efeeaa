// Library information entry points: version, build flavour, CPU features, ISA override, thread
// count, kernel inventory, and aligned host allocation.
#include "cpu_info.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/status.h"
#include "threadpool.h"

namespace ath::cpu {
namespace {

bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && has_avx2();
}

std::atomic<int> g_override{-1};

}  // namespace

Isa best_isa() {
  static const Isa best = has_avx512() ? Isa::kAvx512 : has_avx2() ? Isa::kAvx2 : Isa::kScalar;
  return best;
}

Isa active_isa() {
  int o = g_override.load(std::memory_order_relaxed);
  return o < 0 ? best_isa() : static_cast<Isa>(o);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace ath::cpu

using ath::cpu::Isa;

extern "C" {

const char* ath_version(void) { return ATHANOR_VERSION; }

int ath_built_with_cuda(void) {
#ifdef ATHANOR_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

const char* ath_cpu_features(void) {
  static const std::string features = [] {
    std::string s;
    const char* names[] = {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                           "avx512dq", "avx512bf16", "avx512fp16", "amx-tile"};
    __builtin_cpu_init();
    for (const char* n : names) {
      bool has = false;
      if (!std::strcmp(n, "sse4.2")) has = __builtin_cpu_supports("sse4.2");
      else if (!std::strcmp(n, "avx")) has = __builtin_cpu_supports("avx");
      else if (!std::strcmp(n, "avx2")) has = __builtin_cpu_supports("avx2");
      else if (!std::strcmp(n, "fma")) has = __builtin_cpu_supports("fma");
      else if (!std::strcmp(n, "f16c")) has = __builtin_cpu_supports("f16c");
      else if (!std::strcmp(n, "avx512f")) has = __builtin_cpu_supports("avx512f");
      else if (!std::strcmp(n, "avx512bw")) has = __builtin_cpu_supports("avx512bw");
      else if (!std::strcmp(n, "avx512vl")) has = __builtin_cpu_supports("avx512vl");
      else if (!std::strcmp(n, "avx512dq")) has = __builtin_cpu_supports("avx512dq");
      else if (!std::strcmp(n, "avx512bf16")) has = __builtin_cpu_supports("avx512bf16");
      else if (!std::strcmp(n, "avx512fp16")) has = __builtin_cpu_supports("avx512fp16");
      else if (!std::strcmp(n, "amx-tile")) has = __builtin_cpu_supports("amx-tile");
      if (has) {
        if (!s.empty()) s += ' ';
        s += n;
      }
    }
    return s;
  }();
  return features.c_str();
}

const char* ath_cpu_isa(void) { return ath::cpu::isa_name(ath::cpu::active_isa()); }

ath_status ath_cpu_set_isa(const char* isa) {
  if (isa == nullptr) return ath::fail(ATH_ERR_INVALID, "ath_cpu_set_isa: isa is null");
  Isa want;
  if (!std::strcmp(isa, "avx512")) want = Isa::kAvx512;
  else if (!std::strcmp(isa, "avx2")) want = Isa::kAvx2;
  else if (!std::strcmp(isa, "scalar")) want = Isa::kScalar;
  else if (!std::strcmp(isa, "auto")) { ath::cpu::g_override.store(-1); return ATH_OK; }
  else return ath::fail(ATH_ERR_INVALID, "ath_cpu_set_isa: unknown isa '%s' (expected avx512, avx2, scalar or auto)", isa);
  if (static_cast<int>(want) > static_cast<int>(ath::cpu::best_isa()))
    return ath::fail(ATH_ERR_UNSUPPORTED, "ath_cpu_set_isa: this CPU does not support %s (best: %s)", isa,
                     ath::cpu::isa_name(ath::cpu::best_isa()));
  ath::cpu::g_override.store(static_cast<int>(want));
  return ATH_OK;
}

int ath_cpu_threads(void) { return ath::cpu::num_threads(); }

ath_status ath_cpu_set_threads(int n) {
  if (n < 1 || n > 4096) return ath::fail(ATH_ERR_INVALID, "ath_cpu_set_threads: n=%d must be in [1, 4096]", n);
  ath::cpu::set_num_threads(n);
  return ATH_OK;
}

const char* ath_kernels(const char* backend) {
  static const char* kOps =
      "gemm attention_fwd attention_bwd layernorm_fwd layernorm_bwd rmsnorm_fwd rmsnorm_bwd "
      "gelu_tanh silu swiglu cross_entropy_fwd cross_entropy_bwd embedding_fwd embedding_bwd rope elementwise reduce "
      "adamw rand sample copy memset";
  if (backend && !std::strcmp(backend, "cpu")) return kOps;
  if (backend && !std::strcmp(backend, "cuda")) return ath_built_with_cuda() ? kOps : "";
  return "";
}

ath_status ath_host_alloc(size_t bytes, void** out) {
  if (out == nullptr) return ath::fail(ATH_ERR_INVALID, "ath_host_alloc: out is null");
  *out = nullptr;
  size_t rounded = (bytes + 63) & ~static_cast<size_t>(63);
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) return ath::fail(ATH_ERR_OOM, "ath_host_alloc: could not allocate %zu bytes of host memory", bytes);
  *out = p;
  return ATH_OK;
}

void ath_host_free(void* p) { std::free(p); }

}  // extern "C"

// CUDA execution contexts for the native tests (test_cuda_*.cpp): every CUDA op runs in an
// ath_cuda_ctx with a non-blocking stream of device 0 and a scratch arena, and host <-> device
// copies of the tests go through that stream, so nothing relies on the legacy default stream.
//
//   cuda_run(ath_cuda_op, &args)   runs an op in the shared context (a 256 MiB arena; the
//                                  environment variable ATHANOR_TEST_SCRATCH_MIB sets another
//                                  size, 0 starts empty and grows on each ATH_ERR_SCRATCH)
//   cuda_ctx()                     the shared context itself (for status checks of bad arguments)
//   cuda_upload / cuda_download    synchronous copies ordered with the shared stream
//   cuda_sync()                    waits for the shared stream
//   CudaTestContext(bytes)         a private context, e.g. starting with an empty arena
//   require_gpu()                  skips the test, with the reason, when no usable GPU exists
//   require_hopper(what)           also skips unless ATHANOR_CUDA_HOPPER=1 and device 0 is cc 9.0
//   ScopedEnv(name, value)         sets (or unsets) an environment variable, restored on scope exit
//   ok(status, what)               throws (a recorded failure) on a non-OK status
// Without a usable GPU the shared context is a placeholder whose stream handle is never passed to
// CUDA (every CUDA call fails first with ATH_ERR_UNSUPPORTED), so tests of argument validation
// still run; GPU tests skip before using it.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <string>

#include "athanor/athanor.h"

namespace ath::testing {

class CudaTestContext {
 public:
  // Device 0, a new non-blocking stream and an arena of scratch_bytes (none for 0). Throws
  // std::runtime_error when a GPU exists but the stream or arena cannot be made.
  explicit CudaTestContext(size_t scratch_bytes);
  ~CudaTestContext();
  CudaTestContext(const CudaTestContext&) = delete;
  CudaTestContext& operator=(const CudaTestContext&) = delete;

  const ath_cuda_ctx* get() const { return &ctx_; }
  ath_stream stream() const { return ctx_.stream; }
  size_t scratch_bytes() const { return ctx_.scratch_bytes; }
  int grows() const { return grows_; }  // arena replacements so far

  // Replaces the arena by one of `bytes` after synchronizing the stream (the old one may be in use).
  ath_status grow(size_t bytes);
  ath_status sync() const;

  // call(ctx) -> ath_status; on ATH_ERR_SCRATCH grows the arena to ath_scratch_needed() and calls
  // again.
  template <typename F>
  ath_status run_call(F call) {
    ath_status st = call(get());
    if (st == ATH_ERR_SCRATCH) {
      const ath_status g = grow(ath_scratch_needed());
      if (g != ATH_OK) return g;
      st = call(get());
    }
    return st;
  }

  // op(args, ctx), through run_call.
  template <typename A>
  ath_status run(ath_status (*op)(const A*, const ath_cuda_ctx*), const A* args) {
    return run_call([&](const ath_cuda_ctx* c) { return op(args, c); });
  }

 private:
  ath_cuda_ctx ctx_{};
  void* arena_ = nullptr;
  bool owns_stream_ = false;
  int grows_ = 0;
};

CudaTestContext& cuda_test_context();
inline const ath_cuda_ctx* cuda_ctx() { return cuda_test_context().get(); }

template <typename A>
ath_status cuda_run(ath_status (*op)(const A*, const ath_cuda_ctx*), const A* args) {
  return cuda_test_context().run(op, args);
}

ath_status cuda_upload(void* dst, const void* src, size_t bytes);
ath_status cuda_download(void* dst, const void* src, size_t bytes);
ath_status cuda_sync();

void require_gpu();
// Skips unless a usable GPU exists, the Hopper switch is on (ATHANOR_CUDA_HOPPER=1: the GPU check's
// Hopper steps set it) and device 0 has compute capability 9.0, the only target of the sm_90a
// kernels; `what` names the tests in the skip reason.
void require_hopper(const char* what);

// Sets an environment variable for its lifetime (nullptr: unsets it) and restores the old value.
struct ScopedEnv {
  std::string name, old;
  bool had;
  ScopedEnv(const char* n, const char* value) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    if (value != nullptr) setenv(n, value, 1);
    else unsetenv(n);
  }
  ~ScopedEnv() {
    if (had) setenv(name.c_str(), old.c_str(), 1);
    else unsetenv(name.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};
// Fatal check inside a test: the runner records the exception as a failure and moves on.
void ok(ath_status st, const std::string& what);

}  // namespace ath::testing

// CUDA execution contexts for the native tests (see cuda_test_context.h).
#include "cuda_test_context.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "testing.h"

namespace ath::testing {
namespace {

constexpr int kDevice = 0;
char g_placeholder_stream;  // the placeholder context's stream handle (never given to CUDA)

void check(ath_status st, const char* what) {
  if (st != ATH_OK) throw std::runtime_error(std::string(what) + ": " + ath_last_error());
}

size_t shared_scratch_bytes() {
  const char* env = std::getenv("ATHANOR_TEST_SCRATCH_MIB");
  const size_t mib = env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : 256;
  return mib << 20;
}

}  // namespace

CudaTestContext::CudaTestContext(size_t scratch_bytes) {
  ctx_.device = kDevice;
  if (ath_cuda_device_count() <= 0) {
    ctx_.stream = &g_placeholder_stream;
    return;
  }
  check(ath_cuda_stream_create(kDevice, &ctx_.stream), "ath_cuda_stream_create");
  owns_stream_ = true;
  if (scratch_bytes > 0) {
    const ath_status st = ath_cuda_malloc(kDevice, scratch_bytes, &arena_);
    if (st != ATH_OK) {
      ath_cuda_stream_destroy(ctx_.stream);
      throw std::runtime_error(std::string("scratch arena: ") + ath_last_error());
    }
  }
  ctx_.scratch = arena_;
  ctx_.scratch_bytes = scratch_bytes;
}

CudaTestContext::~CudaTestContext() {
  if (!owns_stream_) return;
  ath_cuda_stream_synchronize(ctx_.stream);
  if (arena_ != nullptr) ath_cuda_free(kDevice, arena_);
  ath_cuda_stream_destroy(ctx_.stream);
}

ath_status CudaTestContext::grow(size_t bytes) {
  if (!owns_stream_) return ath_cuda_stream_synchronize(ctx_.stream);  // the placeholder's reason
  ath_status st = sync();
  if (st != ATH_OK) return st;
  if (arena_ != nullptr) {
    st = ath_cuda_free(kDevice, arena_);
    arena_ = nullptr;
    ctx_.scratch = nullptr;
    ctx_.scratch_bytes = 0;
    if (st != ATH_OK) return st;
  }
  st = ath_cuda_malloc(kDevice, bytes, &arena_);
  if (st != ATH_OK) return st;
  ctx_.scratch = arena_;
  ctx_.scratch_bytes = bytes;
  ++grows_;
  return ATH_OK;
}

ath_status CudaTestContext::sync() const { return ath_cuda_stream_synchronize(ctx_.stream); }

CudaTestContext& cuda_test_context() {
  static CudaTestContext* shared = new CudaTestContext(shared_scratch_bytes());  // lives until exit
  return *shared;
}

ath_status cuda_upload(void* dst, const void* src, size_t bytes) {
  ath_status st = ath_cuda_memcpy_async(dst, src, bytes, 0, cuda_test_context().stream());
  return st != ATH_OK ? st : cuda_sync();
}

ath_status cuda_download(void* dst, const void* src, size_t bytes) {
  ath_status st = ath_cuda_memcpy_async(dst, src, bytes, 1, cuda_test_context().stream());
  return st != ATH_OK ? st : cuda_sync();
}

ath_status cuda_sync() { return cuda_test_context().sync(); }

void require_gpu() {
  if (ath_cuda_device_count() <= 0) skip(std::string("no usable CUDA device: ") + ath_cuda_unavailable_reason());
}

void require_hopper(const char* what) {
  require_gpu();
  const char* sw = std::getenv("ATHANOR_CUDA_HOPPER");
  if (sw == nullptr || std::strcmp(sw, "1") != 0) skip(format("%s run with ATHANOR_CUDA_HOPPER=1", what));
  char info[512];
  if (ath_cuda_device_info(0, info, sizeof info) != ATH_OK)
    throw std::runtime_error(format("ath_cuda_device_info: %s", ath_last_error()));
  if (std::strstr(info, "compute capability 9.0,") == nullptr)
    skip(format("%s run on the sm_90a kernels, compute capability 9.0 only: %s", what, info));
}

void ok(ath_status st, const std::string& what) {
  if (st != ATH_OK) throw std::runtime_error(format("%s: status %d: %s", what.c_str(), (int)st, ath_last_error()));
}

}  // namespace ath::testing

// CUDA host runtime behind the C ABI (ath_cuda_device_count ... ath_cuda_device_synchronize):
// device discovery, device memory, pinned host memory, copies, streams and events; and, for the
// op launchers in kernels/*.cu, cached device properties and the check of an op's execution
// context (ath::cuda::enter_context, see cuda/runtime.h).
//
// Contract (see athanor.h): every function returns an ath_status; CUDA failures become
// ATH_ERR_CUDA with file:line, the call and the CUDA error string (ATH_CUDA_CHECK). libathanor
// links the CUDA runtime statically so that it loads on machines without an NVIDIA driver; the
// first call probes CUDA once (thread-safe, cached) and, when it is unusable, ath_cuda_device_count()
// returns 0, ath_cuda_unavailable_reason() says why ("no NVIDIA driver", "driver too old for this
// CUDA runtime", "no CUDA device", ...), and every other function returns ATH_ERR_UNSUPPORTED with
// that reason instead of touching CUDA.
//
// Functions taking a device index make that device current only for the duration of the call and
// restore the caller's current device afterwards (an op's execution context, in contrast, leaves
// its device current). Streams are created non-blocking: they never synchronize with the legacy
// default stream, which no op uses. The functions below that still accept a NULL stream (copies,
// event record, synchronize) mean the legacy default stream by it, and ath_cuda_memcpy runs on it:
// work on the non-blocking streams is not ordered with them (order it with events or synchronize
// the stream first). Events are created with or without timing, as asked.
//
// This file replaces native/cuda/cpu_only_stubs.cpp in CUDA builds and defines every runtime
// symbol that file defines (the op entry points live in kernels/*.cu).
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "athanor/athanor.h"
#include "common.cuh"
#include "common/status.h"
#include "cuda/runtime.h"

namespace {

// Oldest compute capability our kernels are built for (sm_80; PTX for compute_90 and newer).
constexpr int kMinMajor = 8;

struct Probe {
  int count = 0;       // usable devices (0 when CUDA is unusable)
  std::string reason;  // "" when usable
};

std::string version_string(int v) {  // 12080 -> "12.8"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d.%d", v / 1000, (v % 1000) / 10);
  return buf;
}

Probe run_probe() {
  Probe p;
  int runtime_version = CUDART_VERSION;
  (void)cudaRuntimeGetVersion(&runtime_version);
  const std::string rt = version_string(runtime_version);

  int driver_version = 0;
  cudaError_t e = cudaDriverGetVersion(&driver_version);
  (void)cudaGetLastError();
  if (e != cudaSuccess || driver_version == 0) {
    // No libcuda.so.1 could be loaded. Say what the loader said, for the user's benefit.
    std::string why;
    void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h == nullptr) {
      const char* d = dlerror();
      why = d ? d : "libcuda.so.1 not found";
    } else {
      dlclose(h);
      why = std::string("libcuda.so.1 loads but the CUDA runtime reports no driver (") + cudaGetErrorString(e) + ")";
    }
    p.reason = "no NVIDIA driver: the CUDA driver library could not be used (" + why +
               "); install the NVIDIA driver (libathanor's CUDA runtime is " + rt + ")";
    return p;
  }
  const std::string drv = version_string(driver_version);

  int n = 0;
  e = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  if (e == cudaErrorInsufficientDriver) {
    p.reason = "driver too old for this CUDA runtime: the NVIDIA driver supports CUDA " + drv +
               ", libathanor was built with CUDA runtime " + rt + "; update the NVIDIA driver";
    return p;
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
    const char* vis = std::getenv("CUDA_VISIBLE_DEVICES");
    p.reason = "no CUDA device: the NVIDIA driver (CUDA " + drv + ") is loaded but reports no GPU";
    if (vis != nullptr) p.reason += std::string(" (CUDA_VISIBLE_DEVICES=\"") + vis + "\")";
    return p;
  }
  if (e != cudaSuccess) {
    p.reason = std::string("CUDA initialization failed: ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) +
               " (driver supports CUDA " + drv + ", runtime " + rt + ")";
    return p;
  }
  // Require at least one device our kernels can run on.
  int best_major = 0, best_minor = 0;
  for (int d = 0; d < n; ++d) {
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, d) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    if (major > best_major || (major == best_major && minor > best_minor)) { best_major = major; best_minor = minor; }
  }
  if (best_major < kMinMajor) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "no supported CUDA device: %d device(s) found, the newest of compute capability %d.%d; "
                  "libathanor's kernels need compute capability %d.0 or newer",
                  n, best_major, best_minor, kMinMajor);
    p.reason = buf;
    return p;
  }
  p.count = n;
  return p;
}

const Probe& probe() {
  // Function-local static: initialized exactly once, thread-safe (C++11).
  static const Probe p = [] {
    try {
      return run_probe();
    } catch (...) {  // std::bad_alloc from the strings; never let it escape
      Probe q;
      q.reason = "CUDA probe failed: out of host memory";
      return q;
    }
  }();
  return p;
}

ath_status check_device(const char* op, int device) {
  ATH_TRY(ath::cuda::require_cuda(op));
  const int n = probe().count;
  if (device < 0 || device >= n)
    return ath::fail(ATH_ERR_INVALID, "%s: device %d out of range [0, %d)", op, device, n);
  return ATH_OK;
}

ath_status check_kind(const char* op, int kind, cudaMemcpyKind* out) {
  switch (kind) {
    case 0: *out = cudaMemcpyHostToDevice; return ATH_OK;
    case 1: *out = cudaMemcpyDeviceToHost; return ATH_OK;
    case 2: *out = cudaMemcpyDeviceToDevice; return ATH_OK;
    case 3: *out = cudaMemcpyDefault; return ATH_OK;
    default:
      return ath::fail(ATH_ERR_INVALID,
                       "%s: kind %d out of range [0, 3] (0 host->device, 1 device->host, 2 device->device, 3 default)",
                       op, kind);
  }
}

// Makes `device` current for the scope and restores the previous current device on exit.
class DeviceScope {
 public:
  DeviceScope() = default;
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  ath_status enter(int device) {
    ATH_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) {
      ATH_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
    return ATH_OK;
  }
  ~DeviceScope() {
    if (changed_ && cudaSetDevice(prev_) != cudaSuccess) (void)cudaGetLastError();
  }

 private:
  int prev_ = 0;
  bool changed_ = false;
};

// Formats a CUDA failure like ATH_CUDA_CHECK for calls whose result is inspected first.
ath_status cuda_failure(cudaError_t e, const char* file, int line, const char* call) {
  (void)cudaGetLastError();
  return ath::fail(ATH_ERR_CUDA, "%s:%d: %s failed: %s (%s)", file, line, call, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

double mib(size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

}  // namespace

namespace ath::cuda {

ath_status require_cuda(const char* op) {
  const Probe& p = probe();
  if (p.count > 0) return ATH_OK;
  return ath::fail(ATH_ERR_UNSUPPORTED, "%s: CUDA is unavailable: %s", op, p.reason.c_str());
}

ath_status device_props(const char* op, int device, DeviceProps* out) {
  ATH_TRY(check_device(op, device));
  static std::mutex mu;
  static std::vector<DeviceProps> cache;  // indexed by device; device == -1 until filled
  {
    std::lock_guard<std::mutex> lock(mu);
    if (device < static_cast<int>(cache.size()) && cache[device].device == device) {
      *out = cache[device];
      return ATH_OK;
    }
  }
  DeviceProps p;
  p.device = device;
  ATH_CUDA_CHECK(cudaDeviceGetAttribute(&p.sm_count, cudaDevAttrMultiProcessorCount, device));
  ATH_CUDA_CHECK(cudaDeviceGetAttribute(&p.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  ATH_CUDA_CHECK(cudaDeviceGetAttribute(&p.cc_major, cudaDevAttrComputeCapabilityMajor, device));
  ATH_CUDA_CHECK(cudaDeviceGetAttribute(&p.cc_minor, cudaDevAttrComputeCapabilityMinor, device));
  try {
    std::lock_guard<std::mutex> lock(mu);
    if (device >= static_cast<int>(cache.size())) cache.resize(device + 1);
    cache[device] = p;
  } catch (...) {
    // Caching is an optimization; the queried values are still valid.
  }
  *out = p;
  return ATH_OK;
}

ath_status check_context(const char* op, const ath_cuda_ctx* ctx) {
  if (ctx == nullptr) return ath::fail(ATH_ERR_INVALID, "%s: the execution context (ctx) is NULL", op);
  if (ctx->stream == nullptr)
    return ath::fail(ATH_ERR_INVALID,
                     "%s: ctx->stream is NULL: ops run on a stream of the context (ath_cuda_stream_create); the "
                     "legacy default stream is not used",
                     op);
  if (ctx->scratch == nullptr && ctx->scratch_bytes > 0)
    return ath::fail(ATH_ERR_INVALID, "%s: ctx->scratch is NULL with ctx->scratch_bytes=%zu", op, ctx->scratch_bytes);
  if (ctx->device < 0) return ath::fail(ATH_ERR_INVALID, "%s: ctx->device=%d must be >= 0", op, ctx->device);
  return ATH_OK;
}

ath_status enter_context(const char* op, const ath_cuda_ctx* ctx, DeviceProps* props) {
  ATH_TRY(check_context(op, ctx));
  ATH_TRY(device_props(op, ctx->device, props));  // checks the device index first
  int current = -1;
  ATH_CUDA_CHECK(cudaGetDevice(&current));
  if (current != ctx->device) ATH_CUDA_CHECK(cudaSetDevice(ctx->device));
  return ATH_OK;
}

}  // namespace ath::cuda

extern "C" {

int ath_cuda_device_count(void) { return probe().count; }

const char* ath_cuda_unavailable_reason(void) { return probe().reason.c_str(); }

ath_status ath_cuda_device_info(int device, char* buf, size_t buf_len) {
  static const char* op = "ath_cuda_device_info";
  ATH_CHECK_ARG(buf != nullptr, "ath_cuda_device_info", "buf is null");
  ATH_CHECK_ARG(buf_len > 0, "ath_cuda_device_info", "buf_len is 0");
  buf[0] = '\0';
  ATH_TRY(check_device(op, device));
  cudaDeviceProp prop;
  ATH_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int driver = 0, runtime = 0;
  ATH_CUDA_CHECK(cudaDriverGetVersion(&driver));
  ATH_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  std::snprintf(buf, buf_len,
                "device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs, L2 %.0f MiB, "
                "shared memory per block %zu KiB (opt-in), driver CUDA %d.%d, runtime CUDA %d.%d",
                device, prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), prop.multiProcessorCount,
                mib(static_cast<size_t>(prop.l2CacheSize)), prop.sharedMemPerBlockOptin / 1024, driver / 1000,
                (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
  return ATH_OK;
}

ath_status ath_cuda_set_device(int device) {
  ATH_TRY(check_device("ath_cuda_set_device", device));
  ATH_CUDA_CHECK(cudaSetDevice(device));
  return ATH_OK;
}

// cudaMalloc; on out-of-memory: synchronize the device, return whatever the device's default
// stream-ordered pool still caches to the driver, and retry once. Athanor's ops take nothing from
// that pool (their temporaries come from the caller's scratch arena); the trim frees what other
// code in the process (a library using the stream-ordered allocator) left cached. Caches of the
// caller (the Java caching allocator) are the caller's to free before retrying. A second failure
// is ATH_ERR_OOM naming the request and the device's free/total memory. bytes == 0 succeeds with
// *out == NULL.
ath_status ath_cuda_malloc(int device, size_t bytes, void** out) {
  static const char* op = "ath_cuda_malloc";
  ATH_CHECK_ARG(out != nullptr, "ath_cuda_malloc", "out is null");
  *out = nullptr;
  ATH_TRY(check_device(op, device));
  if (bytes == 0) return ATH_OK;
  DeviceScope scope;
  ATH_TRY(scope.enter(device));
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: clear it so that it is not reported by a later launch
    ATH_CUDA_CHECK(cudaDeviceSynchronize());
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      ATH_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    } else {
      (void)cudaGetLastError();
    }
    p = nullptr;
    e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
      return ath::fail(ATH_ERR_OOM,
                       "%s: out of device memory on device %d: requested %zu bytes (%.1f MiB), free %zu of %zu "
                       "bytes (%.1f of %.1f MiB) after synchronizing and retrying once",
                       op, device, bytes, mib(bytes), free_b, total_b, mib(free_b), mib(total_b));
    }
  }
  if (e != cudaSuccess) return cuda_failure(e, __FILE__, __LINE__, "cudaMalloc(&p, bytes)");
  *out = p;
  return ATH_OK;
}

ath_status ath_cuda_free(int device, void* p) {
  ATH_TRY(check_device("ath_cuda_free", device));
  if (p == nullptr) return ATH_OK;
  DeviceScope scope;
  ATH_TRY(scope.enter(device));
  ATH_CUDA_CHECK(cudaFree(p));
  return ATH_OK;
}

ath_status ath_cuda_host_alloc(size_t bytes, void** out) {
  static const char* op = "ath_cuda_host_alloc";
  ATH_CHECK_ARG(out != nullptr, "ath_cuda_host_alloc", "out is null");
  *out = nullptr;
  ATH_TRY(ath::cuda::require_cuda(op));
  if (bytes == 0) return ATH_OK;
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return ath::fail(ATH_ERR_OOM, "%s: could not allocate %zu bytes (%.1f MiB) of pinned host memory", op, bytes,
                     mib(bytes));
  }
  if (e != cudaSuccess) return cuda_failure(e, __FILE__, __LINE__, "cudaHostAlloc(&p, bytes, cudaHostAllocPortable)");
  *out = p;
  return ATH_OK;
}

ath_status ath_cuda_host_free(void* p) {
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_host_free"));
  if (p == nullptr) return ATH_OK;
  ATH_CUDA_CHECK(cudaFreeHost(p));
  return ATH_OK;
}

ath_status ath_cuda_mem_get_info(int device, size_t* free_bytes, size_t* total_bytes) {
  ATH_CHECK_ARG(free_bytes != nullptr && total_bytes != nullptr, "ath_cuda_mem_get_info",
                "free_bytes (%p) and total_bytes (%p) must not be null", static_cast<void*>(free_bytes),
                static_cast<void*>(total_bytes));
  *free_bytes = 0;
  *total_bytes = 0;
  ATH_TRY(check_device("ath_cuda_mem_get_info", device));
  DeviceScope scope;
  ATH_TRY(scope.enter(device));
  ATH_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
  return ATH_OK;
}

ath_status ath_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind) {
  static const char* op = "ath_cuda_memcpy";
  cudaMemcpyKind k = cudaMemcpyDefault;
  ATH_TRY(check_kind(op, kind, &k));
  if (bytes == 0) return ATH_OK;
  ATH_CHECK_ARG(dst != nullptr && src != nullptr, "ath_cuda_memcpy", "dst (%p) and src (%p) must not be null for %zu bytes",
                dst, src, bytes);
  ATH_TRY(ath::cuda::require_cuda(op));
  ATH_CUDA_CHECK(cudaMemcpy(dst, src, bytes, k));
  return ATH_OK;
}

ath_status ath_cuda_memcpy_async(void* dst, const void* src, size_t bytes, int kind, ath_stream s) {
  static const char* op = "ath_cuda_memcpy_async";
  cudaMemcpyKind k = cudaMemcpyDefault;
  ATH_TRY(check_kind(op, kind, &k));
  if (bytes == 0) return ATH_OK;
  ATH_CHECK_ARG(dst != nullptr && src != nullptr, "ath_cuda_memcpy_async",
                "dst (%p) and src (%p) must not be null for %zu bytes", dst, src, bytes);
  ATH_TRY(ath::cuda::require_cuda(op));
  ATH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, static_cast<cudaStream_t>(s)));
  return ATH_OK;
}

ath_status ath_cuda_memcpy2d_async(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                   size_t height, int kind, ath_stream s) {
  static const char* op = "ath_cuda_memcpy2d_async";
  cudaMemcpyKind k = cudaMemcpyDefault;
  ATH_TRY(check_kind(op, kind, &k));
  if (width == 0 || height == 0) return ATH_OK;
  ATH_CHECK_ARG(dst != nullptr && src != nullptr, "ath_cuda_memcpy2d_async", "dst (%p) and src (%p) must not be null",
                dst, src);
  ATH_CHECK_ARG(width <= dpitch && width <= spitch, "ath_cuda_memcpy2d_async",
                "width %zu bytes exceeds dpitch %zu or spitch %zu", width, dpitch, spitch);
  ATH_TRY(ath::cuda::require_cuda(op));
  ATH_CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, k, static_cast<cudaStream_t>(s)));
  return ATH_OK;
}

ath_status ath_cuda_stream_create(int device, ath_stream* out) {
  ATH_CHECK_ARG(out != nullptr, "ath_cuda_stream_create", "out is null");
  *out = nullptr;
  ATH_TRY(check_device("ath_cuda_stream_create", device));
  DeviceScope scope;
  ATH_TRY(scope.enter(device));
  cudaStream_t st = nullptr;
  ATH_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  *out = st;
  return ATH_OK;
}

ath_status ath_cuda_stream_destroy(ath_stream s) {
  ATH_CHECK_ARG(s != nullptr, "ath_cuda_stream_destroy", "the default stream (NULL) cannot be destroyed");
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_stream_destroy"));
  ATH_CUDA_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(s)));
  return ATH_OK;
}

ath_status ath_cuda_stream_synchronize(ath_stream s) {
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_stream_synchronize"));
  ATH_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(s)));
  return ATH_OK;
}

ath_status ath_cuda_event_create(int device, int timing, void** out) {
  ATH_CHECK_ARG(out != nullptr, "ath_cuda_event_create", "out is null");
  *out = nullptr;
  ATH_TRY(check_device("ath_cuda_event_create", device));
  DeviceScope scope;
  ATH_TRY(scope.enter(device));
  cudaEvent_t e = nullptr;
  ATH_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing != 0 ? cudaEventDefault : cudaEventDisableTiming));
  *out = e;
  return ATH_OK;
}

// cudaEventElapsedTime: fails (ATH_ERR_CUDA) while either event has not completed, and for events
// created without timing.
ath_status ath_cuda_event_elapsed(void* start, void* end, float* ms) {
  ATH_CHECK_ARG(ms != nullptr, "ath_cuda_event_elapsed", "ms is null");
  *ms = 0.f;
  ATH_CHECK_ARG(start != nullptr && end != nullptr, "ath_cuda_event_elapsed",
                "start (%p) and end (%p) must not be null", start, end);
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_event_elapsed"));
  ATH_CUDA_CHECK(cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ATH_OK;
}

ath_status ath_cuda_event_query(void* e, int* done) {
  ATH_CHECK_ARG(done != nullptr, "ath_cuda_event_query", "done is null");
  *done = 0;
  ATH_CHECK_ARG(e != nullptr, "ath_cuda_event_query", "event is null");
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_event_query"));
  const cudaError_t r = cudaEventQuery(static_cast<cudaEvent_t>(e));
  if (r == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error: leave no error behind
    return ATH_OK;
  }
  if (r != cudaSuccess) return cuda_failure(r, __FILE__, __LINE__, "cudaEventQuery(e)");
  *done = 1;
  return ATH_OK;
}

ath_status ath_cuda_event_destroy(void* e) {
  ATH_CHECK_ARG(e != nullptr, "ath_cuda_event_destroy", "event is null");
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_event_destroy"));
  ATH_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(e)));
  return ATH_OK;
}

ath_status ath_cuda_event_record(void* e, ath_stream s) {
  ATH_CHECK_ARG(e != nullptr, "ath_cuda_event_record", "event is null");
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_event_record"));
  ATH_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), static_cast<cudaStream_t>(s)));
  return ATH_OK;
}

ath_status ath_cuda_stream_wait_event(ath_stream s, void* e) {
  ATH_CHECK_ARG(e != nullptr, "ath_cuda_stream_wait_event", "event is null");
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_stream_wait_event"));
  ATH_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(s), static_cast<cudaEvent_t>(e), 0));
  return ATH_OK;
}

ath_status ath_cuda_event_synchronize(void* e) {
  ATH_CHECK_ARG(e != nullptr, "ath_cuda_event_synchronize", "event is null");
  ATH_TRY(ath::cuda::require_cuda("ath_cuda_event_synchronize"));
  ATH_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(e)));
  return ATH_OK;
}

ath_status ath_cuda_device_synchronize(int device) {
  ATH_TRY(check_device("ath_cuda_device_synchronize", device));
  DeviceScope scope;
  ATH_TRY(scope.enter(device));
  ATH_CUDA_CHECK(cudaDeviceSynchronize());
  return ATH_OK;
}

}  // extern "C"

// JNI for dev.athanor.runtime.NativeRuntime: library info, host memory (plus an aligned allocator), the CUDA
// runtime (devices, memory, asynchronous copies, streams, events) and DISK-tier file I/O. Each function
// translates Java arguments, calls the C ABI and turns a non-OK status into NativeException (ath_jni::throw_status). Argument validation
// that protects native memory (null pointers, negative sizes, ranks) happens in NativeRuntime.java first;
// the checks here are the last line, so a bad call from elsewhere still cannot crash the JVM through them.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/status.h"
#include "io/file_io.h"
#include "jni_common.h"

namespace {

jstring new_string(JNIEnv* env, const char* s) { return env->NewStringUTF(s == nullptr ? "" : s); }

// Java long <-> pointer and size_t.
void* ptr(jlong v) { return reinterpret_cast<void*>(static_cast<intptr_t>(v)); }
jlong jl(const void* p) { return static_cast<jlong>(reinterpret_cast<intptr_t>(p)); }

bool check_nonneg(JNIEnv* env, jlong v, const char* what) {
  if (v >= 0) return true;
  ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "%s=%lld must be >= 0", what, static_cast<long long>(v)));
  return false;
}

// ------------------------------------------------------------------ library info
jstring version0(JNIEnv* env, jclass) { return new_string(env, ath_version()); }
jboolean builtWithCuda0(JNIEnv*, jclass) { return ath_built_with_cuda() ? JNI_TRUE : JNI_FALSE; }
jstring cpuFeatures0(JNIEnv* env, jclass) { return new_string(env, ath_cpu_features()); }
jstring cpuIsa0(JNIEnv* env, jclass) { return new_string(env, ath_cpu_isa()); }

void setCpuIsa0(JNIEnv* env, jclass, jstring isa) {
  if (isa == nullptr) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "setCpuIsa: isa is null"));
    return;
  }
  const char* s = env->GetStringUTFChars(isa, nullptr);
  if (s == nullptr) return;  // OutOfMemoryError pending
  ath_status st = ath_cpu_set_isa(s);
  env->ReleaseStringUTFChars(isa, s);
  ath_jni::throw_status(env, st);
}

jint cpuThreads0(JNIEnv*, jclass) { return ath_cpu_threads(); }
void setCpuThreads0(JNIEnv* env, jclass, jint n) { ath_jni::throw_status(env, ath_cpu_set_threads(n)); }

jstring kernels0(JNIEnv* env, jclass, jstring backend) {
  if (backend == nullptr) return new_string(env, "");
  const char* s = env->GetStringUTFChars(backend, nullptr);
  if (s == nullptr) return nullptr;
  jstring r = new_string(env, ath_kernels(s));
  env->ReleaseStringUTFChars(backend, s);
  return r;
}

// ------------------------------------------------------------------ host memory
jlong hostAlloc0(JNIEnv* env, jclass, jlong bytes) {
  if (!check_nonneg(env, bytes, "hostAlloc: bytes")) return 0;
  void* p = nullptr;
  if (ath_jni::throw_status(env, ath_host_alloc(static_cast<size_t>(bytes), &p))) return 0;
  return jl(p);
}

void hostFree0(JNIEnv*, jclass, jlong p) { ath_host_free(ptr(p)); }

jlong hostAllocAligned0(JNIEnv* env, jclass, jlong bytes, jlong alignment) {
  if (!check_nonneg(env, bytes, "hostAllocAligned: bytes")) return 0;
  if (alignment < static_cast<jlong>(sizeof(void*)) || (alignment & (alignment - 1)) != 0) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "hostAllocAligned: alignment=%lld must be a power of two >= %zu",
                                         static_cast<long long>(alignment), sizeof(void*)));
    return 0;
  }
  void* p = nullptr;
  size_t n = bytes == 0 ? 1 : static_cast<size_t>(bytes);
  int rc = posix_memalign(&p, static_cast<size_t>(alignment), n);
  if (rc != 0 || p == nullptr) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_OOM, "hostAllocAligned: could not allocate %lld bytes of host memory "
                                         "aligned to %lld: %s", static_cast<long long>(bytes),
                                         static_cast<long long>(alignment), std::strerror(rc)));
    return 0;
  }
  return jl(p);
}

void hostFreeAligned0(JNIEnv*, jclass, jlong p) { std::free(ptr(p)); }

// ------------------------------------------------------------------ CUDA runtime
jint cudaDeviceCount0(JNIEnv*, jclass) { return ath_cuda_device_count(); }
jstring cudaUnavailableReason0(JNIEnv* env, jclass) { return new_string(env, ath_cuda_unavailable_reason()); }

jstring cudaDeviceInfo0(JNIEnv* env, jclass, jint device) {
  char buf[512] = {0};
  if (ath_jni::throw_status(env, ath_cuda_device_info(device, buf, sizeof buf))) return nullptr;
  return new_string(env, buf);
}

jlong cudaMalloc0(JNIEnv* env, jclass, jint device, jlong bytes) {
  if (!check_nonneg(env, bytes, "cudaMalloc: bytes")) return 0;
  void* p = nullptr;
  if (ath_jni::throw_status(env, ath_cuda_malloc(device, static_cast<size_t>(bytes), &p))) return 0;
  return jl(p);
}

void cudaFree0(JNIEnv* env, jclass, jint device, jlong p) { ath_jni::throw_status(env, ath_cuda_free(device, ptr(p))); }

jlong cudaHostAlloc0(JNIEnv* env, jclass, jlong bytes) {
  if (!check_nonneg(env, bytes, "cudaHostAlloc: bytes")) return 0;
  void* p = nullptr;
  if (ath_jni::throw_status(env, ath_cuda_host_alloc(static_cast<size_t>(bytes), &p))) return 0;
  return jl(p);
}

void cudaHostFree0(JNIEnv* env, jclass, jlong p) { ath_jni::throw_status(env, ath_cuda_host_free(ptr(p))); }

jlongArray cudaMemGetInfo0(JNIEnv* env, jclass, jint device) {
  size_t free_b = 0, total_b = 0;
  if (ath_jni::throw_status(env, ath_cuda_mem_get_info(device, &free_b, &total_b))) return nullptr;
  jlongArray r = env->NewLongArray(2);
  if (r == nullptr) return nullptr;
  jlong v[2] = {static_cast<jlong>(free_b), static_cast<jlong>(total_b)};
  env->SetLongArrayRegion(r, 0, 2, v);
  return r;
}

void cudaMemcpyAsync0(JNIEnv* env, jclass, jlong dst, jlong src, jlong bytes, jint kind, jlong stream) {
  if (!check_nonneg(env, bytes, "cudaMemcpyAsync: bytes")) return;
  ath_jni::throw_status(env, ath_cuda_memcpy_async(ptr(dst), ptr(src), static_cast<size_t>(bytes), kind,
                                                   static_cast<ath_stream>(ptr(stream))));
}

jlong cudaStreamCreate0(JNIEnv* env, jclass, jint device) {
  ath_stream s = nullptr;
  if (ath_jni::throw_status(env, ath_cuda_stream_create(device, &s))) return 0;
  return jl(s);
}

void cudaStreamDestroy0(JNIEnv* env, jclass, jlong s) {
  ath_jni::throw_status(env, ath_cuda_stream_destroy(static_cast<ath_stream>(ptr(s))));
}

void cudaStreamSynchronize0(JNIEnv* env, jclass, jlong s) {
  ath_jni::throw_status(env, ath_cuda_stream_synchronize(static_cast<ath_stream>(ptr(s))));
}

jlong cudaEventCreate0(JNIEnv* env, jclass, jint device, jboolean timing) {
  void* e = nullptr;
  if (ath_jni::throw_status(env, ath_cuda_event_create(device, timing ? 1 : 0, &e))) return 0;
  return jl(e);
}

jboolean cudaEventQuery0(JNIEnv* env, jclass, jlong e) {
  int done = 0;
  if (ath_jni::throw_status(env, ath_cuda_event_query(ptr(e), &done))) return JNI_FALSE;
  return done ? JNI_TRUE : JNI_FALSE;
}

jfloat cudaEventElapsed0(JNIEnv* env, jclass, jlong start, jlong end) {
  float ms = 0;
  if (ath_jni::throw_status(env, ath_cuda_event_elapsed(ptr(start), ptr(end), &ms))) return 0;
  return ms;
}

void cudaEventDestroy0(JNIEnv* env, jclass, jlong e) { ath_jni::throw_status(env, ath_cuda_event_destroy(ptr(e))); }

void cudaEventRecord0(JNIEnv* env, jclass, jlong e, jlong s) {
  ath_jni::throw_status(env, ath_cuda_event_record(ptr(e), static_cast<ath_stream>(ptr(s))));
}

void cudaStreamWaitEvent0(JNIEnv* env, jclass, jlong s, jlong e) {
  ath_jni::throw_status(env, ath_cuda_stream_wait_event(static_cast<ath_stream>(ptr(s)), ptr(e)));
}

void cudaEventSynchronize0(JNIEnv* env, jclass, jlong e) { ath_jni::throw_status(env, ath_cuda_event_synchronize(ptr(e))); }
void cudaDeviceSynchronize0(JNIEnv* env, jclass, jint d) { ath_jni::throw_status(env, ath_cuda_device_synchronize(d)); }

// ------------------------------------------------------------------ file I/O
// The path arrives as bytes in the platform's file name encoding (Java encodes it), without a NUL.
jlong fileOpen0(JNIEnv* env, jclass, jbyteArray path, jboolean create) {
  if (path == nullptr) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "fileOpen: path is null"));
    return -1;
  }
  jsize n = env->GetArrayLength(path);
  std::vector<char> p(static_cast<size_t>(n) + 1, '\0');
  if (n > 0) env->GetByteArrayRegion(path, 0, n, reinterpret_cast<jbyte*>(p.data()));
  if (std::memchr(p.data(), '\0', static_cast<size_t>(n)) != nullptr) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "fileOpen: path contains a NUL byte"));
    return -1;
  }
  int64_t fd = -1;
  if (ath_jni::throw_status(env, ath_file_open(p.data(), create ? 1 : 0, &fd))) return -1;
  return static_cast<jlong>(fd);
}

void fileClose0(JNIEnv* env, jclass, jlong fd) { ath_jni::throw_status(env, ath_file_close(fd)); }

void fileWrite0(JNIEnv* env, jclass, jlong fd, jlong src, jlong bytes, jlong offset) {
  if (!check_nonneg(env, bytes, "fileWrite: bytes")) return;
  ath_jni::throw_status(env, ath_file_write(fd, ptr(src), static_cast<size_t>(bytes), offset));
}

void fileRead0(JNIEnv* env, jclass, jlong fd, jlong dst, jlong bytes, jlong offset) {
  if (!check_nonneg(env, bytes, "fileRead: bytes")) return;
  ath_jni::throw_status(env, ath_file_read(fd, ptr(dst), static_cast<size_t>(bytes), offset));
}

void fileSync0(JNIEnv* env, jclass, jlong fd) { ath_jni::throw_status(env, ath_file_sync(fd)); }
void fileTruncate0(JNIEnv* env, jclass, jlong fd, jlong bytes) { ath_jni::throw_status(env, ath_file_truncate(fd, bytes)); }

jboolean fileIsDirect0(JNIEnv* env, jclass, jlong fd) {
  int r = ath::io::is_direct(fd);
  if (r < 0) {
    ath_jni::throw_status(env, ath::fail(ATH_ERR_INVALID, "fileIsDirect: unknown or closed file handle %lld",
                                         static_cast<long long>(fd)));
    return JNI_FALSE;
  }
  return r ? JNI_TRUE : JNI_FALSE;
}

#define M(name, sig) {const_cast<char*>(#name), const_cast<char*>(sig), reinterpret_cast<void*>(name)}
const JNINativeMethod kMethods[] = {
    M(version0, "()Ljava/lang/String;"),
    M(builtWithCuda0, "()Z"),
    M(cpuFeatures0, "()Ljava/lang/String;"),
    M(cpuIsa0, "()Ljava/lang/String;"),
    M(setCpuIsa0, "(Ljava/lang/String;)V"),
    M(cpuThreads0, "()I"),
    M(setCpuThreads0, "(I)V"),
    M(kernels0, "(Ljava/lang/String;)Ljava/lang/String;"),
    M(hostAlloc0, "(J)J"),
    M(hostFree0, "(J)V"),
    M(hostAllocAligned0, "(JJ)J"),
    M(hostFreeAligned0, "(J)V"),
    M(cudaDeviceCount0, "()I"),
    M(cudaUnavailableReason0, "()Ljava/lang/String;"),
    M(cudaDeviceInfo0, "(I)Ljava/lang/String;"),
    M(cudaMalloc0, "(IJ)J"),
    M(cudaFree0, "(IJ)V"),
    M(cudaHostAlloc0, "(J)J"),
    M(cudaHostFree0, "(J)V"),
    M(cudaMemGetInfo0, "(I)[J"),
    M(cudaMemcpyAsync0, "(JJJIJ)V"),
    M(cudaStreamCreate0, "(I)J"),
    M(cudaStreamDestroy0, "(J)V"),
    M(cudaStreamSynchronize0, "(J)V"),
    M(cudaEventCreate0, "(IZ)J"),
    M(cudaEventQuery0, "(J)Z"),
    M(cudaEventElapsed0, "(JJ)F"),
    M(cudaEventDestroy0, "(J)V"),
    M(cudaEventRecord0, "(JJ)V"),
    M(cudaStreamWaitEvent0, "(JJ)V"),
    M(cudaEventSynchronize0, "(J)V"),
    M(cudaDeviceSynchronize0, "(I)V"),
    M(fileOpen0, "([BZ)J"),
    M(fileClose0, "(J)V"),
    M(fileWrite0, "(JJJJ)V"),
    M(fileRead0, "(JJJJ)V"),
    M(fileSync0, "(J)V"),
    M(fileTruncate0, "(JJ)V"),
    M(fileIsDirect0, "(J)Z"),
};
#undef M

}  // namespace

namespace ath_jni {

bool register_NativeRuntime(JNIEnv* env) {
  return register_natives(env, "dev/athanor/runtime/NativeRuntime", kMethods,
                          static_cast<int>(sizeof kMethods / sizeof kMethods[0]));
}

}  // namespace ath_jni

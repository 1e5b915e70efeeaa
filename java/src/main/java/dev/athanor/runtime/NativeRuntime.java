package dev.athanor.runtime;

import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;

/**
 * Thin bindings to the runtime part of the C ABI (native/include/athanor/athanor.h): library info, host
 * memory, the CUDA runtime, disk I/O. JNI: native/jni/jni_NativeRuntime.cpp.
 *
 * <p>Every method loads the library on first use ({@link NativeLibrary#load()}) and turns a non-OK status
 * into a {@link NativeException} carrying {@code ath_last_error()}. These are raw bindings: pointers are
 * {@code long} addresses and are NOT checked for liveness here. Higher layers (Storage, Tensor) check that
 * an address is alive and large enough before they hand it down; code calling these directly must do the
 * same. Null pointers and negative sizes are rejected here, in Java, before any native call.
 */
public final class NativeRuntime {
  private NativeRuntime() {}

  /** How the JVM encodes file names for the OS (sun.jnu.encoding), used for paths handed to native code. */
  private static final Charset FILE_NAME_CHARSET = fileNameCharset();

  private static Charset fileNameCharset() {
    try {
      return Charset.forName(System.getProperty("sun.jnu.encoding", "UTF-8"));
    } catch (RuntimeException e) {
      return StandardCharsets.UTF_8;
    }
  }

  /** Copy directions of {@link #cudaMemcpyAsync}: the {@code kind} argument of ath_cuda_memcpy_async. */
  public static final int H2D = 0, D2H = 1, D2D = 2, DEFAULT = 3;

  // ------------------------------------------------------------------ library info
  public static String version() {
    NativeLibrary.load();
    return version0();
  }

  public static boolean builtWithCuda() {
    NativeLibrary.load();
    return builtWithCuda0();
  }

  /** Space-separated CPU features detected at run time, e.g. "avx2 fma avx512f". */
  public static String cpuFeatures() {
    NativeLibrary.load();
    return cpuFeatures0();
  }

  /** The ISA the CPU kernels dispatch to: "avx512", "avx2" or "scalar". */
  public static String cpuIsa() {
    NativeLibrary.load();
    return cpuIsa0();
  }

  /** Forces the CPU kernels' ISA ("avx512", "avx2", "scalar" or "auto"). */
  public static void setCpuIsa(String isa) {
    NativeLibrary.load();
    if (isa == null) throw new IllegalArgumentException("isa is null; expected avx512, avx2, scalar or auto");
    setCpuIsa0(isa);
  }

  /**
   * The CPU backend's thread count: by default the CPUs in the process's affinity mask (so processes
   * pinned to disjoint cores do not oversubscribe them). CPU results do not depend on it.
   */
  public static int cpuThreads() {
    NativeLibrary.load();
    return cpuThreads0();
  }

  /** The most CPU backend threads (ath_cpu_set_threads' limit). */
  public static final int MAX_CPU_THREADS = 4096;

  /** Resizes the CPU backend's thread pool (n >= 1); waits for running work. Results do not change. */
  public static void setCpuThreads(int n) {
    if (n < 1 || n > MAX_CPU_THREADS) {
      throw new IllegalArgumentException("CPU threads must be in [1, " + MAX_CPU_THREADS + "], got " + n);
    }
    NativeLibrary.load();
    setCpuThreads0(n);
  }

  /** Space-separated kernel names of a backend ("cpu" or "cuda"). */
  public static String kernels(String backend) {
    NativeLibrary.load();
    if (backend == null) throw new IllegalArgumentException("backend is null; expected cpu or cuda");
    return kernels0(backend);
  }

  // ------------------------------------------------------------------ host memory
  /** ath_host_alloc: 64-byte aligned host memory, free with {@link #hostFree}. */
  public static long hostAlloc(long bytes) {
    NativeLibrary.load();
    checkBytes(bytes, "hostAlloc");
    return hostAlloc0(bytes);
  }

  public static void hostFree(long address) {
    NativeLibrary.load();
    if (address != 0) hostFree0(address);
  }

  /**
   * Host memory aligned to {@code alignment} bytes (a power of two >= 8), e.g. 4096 so that the DISK tier
   * can use O_DIRECT on it. Free with {@link #hostFreeAligned}, never with {@link #hostFree}.
   */
  public static long hostAllocAligned(long bytes, long alignment) {
    NativeLibrary.load();
    checkBytes(bytes, "hostAllocAligned");
    if (alignment < 8 || Long.bitCount(alignment) != 1) {
      throw new IllegalArgumentException("hostAllocAligned: alignment=" + alignment + " must be a power of two >= 8");
    }
    return hostAllocAligned0(bytes, alignment);
  }

  public static void hostFreeAligned(long address) {
    NativeLibrary.load();
    if (address != 0) hostFreeAligned0(address);
  }

  // ------------------------------------------------------------------ CUDA runtime
  public static int cudaDeviceCount() {
    NativeLibrary.load();
    return cudaDeviceCount0();
  }

  /** Why CUDA is unusable (no driver, no device, CPU-only build), or "" when it is usable. */
  public static String cudaUnavailableReason() {
    NativeLibrary.load();
    return cudaUnavailableReason0();
  }

  public static String cudaDeviceInfo(int device) {
    NativeLibrary.load();
    return cudaDeviceInfo0(device);
  }

  public static long cudaMalloc(int device, long bytes) {
    NativeLibrary.load();
    checkBytes(bytes, "cudaMalloc");
    return cudaMalloc0(device, bytes);
  }

  public static void cudaFree(int device, long address) {
    NativeLibrary.load();
    if (address != 0) cudaFree0(device, address);
  }

  /** Pinned (page-locked) host memory. */
  public static long cudaHostAlloc(long bytes) {
    NativeLibrary.load();
    checkBytes(bytes, "cudaHostAlloc");
    return cudaHostAlloc0(bytes);
  }

  public static void cudaHostFree(long address) {
    NativeLibrary.load();
    if (address != 0) cudaHostFree0(address);
  }

  /** {free bytes, total bytes} of a device. */
  public static long[] cudaMemGetInfo(int device) {
    NativeLibrary.load();
    return cudaMemGetInfo0(device);
  }

  /**
   * cudaMemcpyAsync on {@code stream}; {@code kind} is {@link #H2D}, {@link #D2H}, {@link #D2D} or
   * {@link #DEFAULT}. Returns at once (from pageable host memory: once the source has been staged).
   */
  public static void cudaMemcpyAsync(long dst, long src, long bytes, int kind, long stream) {
    NativeLibrary.load();
    checkBytes(bytes, "cudaMemcpyAsync");
    if (bytes == 0) return;
    checkPtr(dst, "cudaMemcpyAsync dst");
    checkPtr(src, "cudaMemcpyAsync src");
    checkPtr(stream, "cudaMemcpyAsync stream (0 would be the legacy default stream, which Athanor never uses)");
    checkKind(kind);
    cudaMemcpyAsync0(dst, src, bytes, kind, stream);
  }

  public static long cudaStreamCreate(int device) {
    NativeLibrary.load();
    return cudaStreamCreate0(device);
  }

  public static void cudaStreamDestroy(long stream) {
    NativeLibrary.load();
    if (stream != 0) cudaStreamDestroy0(stream);
  }

  public static void cudaStreamSynchronize(long stream) {
    NativeLibrary.load();
    checkPtr(stream, "cudaStreamSynchronize stream (0 would be the legacy default stream)");
    cudaStreamSynchronize0(stream);
  }

  /** A CUDA event; {@code timing} makes it usable with {@link #cudaEventElapsed}. */
  public static long cudaEventCreate(int device, boolean timing) {
    NativeLibrary.load();
    return cudaEventCreate0(device, timing);
  }

  /** Whether all work before the event has completed (never blocks). */
  public static boolean cudaEventQuery(long event) {
    NativeLibrary.load();
    checkPtr(event, "cudaEventQuery event");
    return cudaEventQuery0(event);
  }

  /** Milliseconds between two recorded, completed timing events. */
  public static float cudaEventElapsed(long start, long end) {
    NativeLibrary.load();
    checkPtr(start, "cudaEventElapsed start");
    checkPtr(end, "cudaEventElapsed end");
    return cudaEventElapsed0(start, end);
  }

  public static void cudaEventDestroy(long event) {
    NativeLibrary.load();
    if (event != 0) cudaEventDestroy0(event);
  }

  public static void cudaEventRecord(long event, long stream) {
    NativeLibrary.load();
    checkPtr(event, "cudaEventRecord event");
    checkPtr(stream, "cudaEventRecord stream (0 would be the legacy default stream)");
    cudaEventRecord0(event, stream);
  }

  public static void cudaStreamWaitEvent(long stream, long event) {
    NativeLibrary.load();
    checkPtr(stream, "cudaStreamWaitEvent stream (0 would be the legacy default stream)");
    checkPtr(event, "cudaStreamWaitEvent event");
    cudaStreamWaitEvent0(stream, event);
  }

  public static void cudaEventSynchronize(long event) {
    NativeLibrary.load();
    checkPtr(event, "cudaEventSynchronize event");
    cudaEventSynchronize0(event);
  }

  public static void cudaDeviceSynchronize(int device) {
    NativeLibrary.load();
    cudaDeviceSynchronize0(device);
  }

  // ------------------------------------------------------------------ disk I/O
  /** Opens (and with {@code create}, creates) a file for the DISK tier; returns its handle. */
  public static long fileOpen(String path, boolean create) {
    NativeLibrary.load();
    if (path == null || path.isEmpty()) throw new IllegalArgumentException("fileOpen: path is null or empty");
    if (path.indexOf('\0') >= 0) throw new IllegalArgumentException("fileOpen: path contains a NUL character: " + path);
    return fileOpen0(path.getBytes(FILE_NAME_CHARSET), create);
  }

  public static void fileClose(long fd) {
    NativeLibrary.load();
    fileClose0(fd);
  }

  public static void fileWrite(long fd, long src, long bytes, long offset) {
    NativeLibrary.load();
    checkBytes(bytes, "fileWrite");
    if (offset < 0) throw new IllegalArgumentException("fileWrite: offset=" + offset + " must be >= 0");
    if (bytes == 0) return;
    checkPtr(src, "fileWrite src");
    fileWrite0(fd, src, bytes, offset);
  }

  public static void fileRead(long fd, long dst, long bytes, long offset) {
    NativeLibrary.load();
    checkBytes(bytes, "fileRead");
    if (offset < 0) throw new IllegalArgumentException("fileRead: offset=" + offset + " must be >= 0");
    if (bytes == 0) return;
    checkPtr(dst, "fileRead dst");
    fileRead0(fd, dst, bytes, offset);
  }

  public static void fileSync(long fd) {
    NativeLibrary.load();
    fileSync0(fd);
  }

  public static void fileTruncate(long fd, long bytes) {
    NativeLibrary.load();
    checkBytes(bytes, "fileTruncate");
    fileTruncate0(fd, bytes);
  }

  /**
   * Whether transfers on this handle can use O_DIRECT (the file system accepted it and it has not failed
   * with EINVAL since). Aligned transfers (address, offset and length multiples of 4096) then bypass the page
   * cache; all others are buffered.
   */
  public static boolean fileIsDirect(long fd) {
    NativeLibrary.load();
    return fileIsDirect0(fd);
  }

  // ------------------------------------------------------------------ checks
  private static void checkBytes(long bytes, String op) {
    if (bytes < 0) throw new IllegalArgumentException(op + ": bytes=" + bytes + " must be >= 0");
  }

  private static void checkPtr(long p, String what) {
    if (p == 0) throw new IllegalArgumentException(what + " is a null pointer");
  }

  private static void checkKind(int kind) {
    if (kind < 0 || kind > 3) throw new IllegalArgumentException("memcpy kind=" + kind + " must be in [0, 3]");
  }

  // ------------------------------------------------------------------ natives (RegisterNatives in jni_NativeRuntime.cpp)
  private static native String version0();
  private static native boolean builtWithCuda0();
  private static native String cpuFeatures0();
  private static native String cpuIsa0();
  private static native void setCpuIsa0(String isa);
  private static native int cpuThreads0();
  private static native void setCpuThreads0(int n);
  private static native String kernels0(String backend);

  private static native long hostAlloc0(long bytes);
  private static native void hostFree0(long address);
  private static native long hostAllocAligned0(long bytes, long alignment);
  private static native void hostFreeAligned0(long address);

  private static native int cudaDeviceCount0();
  private static native String cudaUnavailableReason0();
  private static native String cudaDeviceInfo0(int device);
  private static native long cudaMalloc0(int device, long bytes);
  private static native void cudaFree0(int device, long address);
  private static native long cudaHostAlloc0(long bytes);
  private static native void cudaHostFree0(long address);
  private static native long[] cudaMemGetInfo0(int device);
  private static native void cudaMemcpyAsync0(long dst, long src, long bytes, int kind, long stream);
  private static native long cudaStreamCreate0(int device);
  private static native void cudaStreamDestroy0(long stream);
  private static native void cudaStreamSynchronize0(long stream);
  private static native long cudaEventCreate0(int device, boolean timing);
  private static native boolean cudaEventQuery0(long event);
  private static native float cudaEventElapsed0(long start, long end);
  private static native void cudaEventDestroy0(long event);
  private static native void cudaEventRecord0(long event, long stream);
  private static native void cudaStreamWaitEvent0(long stream, long event);
  private static native void cudaEventSynchronize0(long event);
  private static native void cudaDeviceSynchronize0(int device);

  private static native long fileOpen0(byte[] path, boolean create);
  private static native void fileClose0(long fd);
  private static native void fileWrite0(long fd, long src, long bytes, long offset);
  private static native void fileRead0(long fd, long dst, long bytes, long offset);
  private static native void fileSync0(long fd);
  private static native void fileTruncate0(long fd, long bytes);
  private static native boolean fileIsDirect0(long fd);
}

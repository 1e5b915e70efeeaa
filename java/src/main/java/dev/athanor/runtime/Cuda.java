package dev.athanor.runtime;

/**
 * Whether CUDA can be used, and if not why; device queries. Never throws from {@link #isAvailable()} or
 * {@link #unavailableReason()}: a library that fails to load makes CUDA unavailable with that reason.
 */
public final class Cuda {
  private static volatile String reason; // cached: devices do not come and go while the JVM runs

  private Cuda() {}

  /** True when libathanor was built with CUDA, a driver is present and at least one device is visible. */
  public static boolean isAvailable() {
    return unavailableReason().isEmpty();
  }

  /** A human-readable reason why CUDA is unusable (no driver, no device, CPU-only build, ...), "" when usable. */
  public static String unavailableReason() {
    String r = reason;
    if (r == null) {
      r = computeReason();
      reason = r;
    }
    return r;
  }

  private static String computeReason() {
    String loadError = NativeLibrary.tryLoad();
    if (loadError != null) return "libathanor could not be loaded: " + loadError;
    String r = NativeRuntime.cudaUnavailableReason();
    if (r != null && !r.isEmpty()) return r;
    if (!NativeRuntime.builtWithCuda()) return "CPU-only build: libathanor was built without CUDA";
    if (NativeRuntime.cudaDeviceCount() <= 0) return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES)";
    return "";
  }

  /** Number of visible CUDA devices; 0 when CUDA is unavailable. */
  public static int deviceCount() {
    if (!isAvailable()) return 0;
    int n = count;
    if (n < 0) count = n = NativeRuntime.cudaDeviceCount();
    return n;
  }

  private static volatile int count = -1; // cached like the reason

  /** One line: name, compute capability, memory, SMs. */
  public static String deviceInfo(int device) {
    checkDevice(device);
    return NativeRuntime.cudaDeviceInfo(device);
  }

  /** {free, total} bytes of a device as the driver reports them. */
  public static long[] memoryInfo(int device) {
    checkDevice(device);
    return NativeRuntime.cudaMemGetInfo(device);
  }

  /** Waits for all work on a device. */
  public static void synchronize(int device) {
    checkDevice(device);
    NativeRuntime.cudaDeviceSynchronize(device);
  }

  /**
   * Throws unless {@code device} names a usable CUDA device: {@link AthanorException} with the reason when
   * CUDA is unavailable, {@link IllegalArgumentException} when the index is out of range.
   */
  public static void checkDevice(int device) {
    String r = unavailableReason();
    if (!r.isEmpty()) throw new AthanorException("CUDA device cuda:" + device + " requested but CUDA is unavailable: " + r);
    int n = deviceCount();
    if (device < 0 || device >= n) {
      throw new IllegalArgumentException("CUDA device index " + device + " out of range [0, " + n + ")");
    }
  }

  /** {@link #checkDevice(int)} for a {@link Device}, which must be a CUDA device. */
  public static void checkDevice(Device device) {
    if (!device.isCuda()) throw new IllegalArgumentException("expected a CUDA device, got " + device);
    checkDevice(device.index());
  }
}

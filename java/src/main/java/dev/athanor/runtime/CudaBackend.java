package dev.athanor.runtime;

import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The CUDA kernels ({@code ath_cuda_*}) of one device, enqueued on one stream. Each op makes the
 * device current on the calling thread, enqueues its kernels and returns without waiting; order
 * between streams is the caller's business (events), and {@link #synchronize()} waits for this
 * backend's stream.
 */
public final class CudaBackend implements Backend {
  private static final ConcurrentHashMap<Integer, CudaBackend> DEFAULTS = new ConcurrentHashMap<>();

  private final Device device;
  private final Stream stream;

  private CudaBackend(Device device, Stream stream) {
    this.device = device;
    this.stream = stream;
  }

  /**
   * The backend of a CUDA device on that device's default stream ({@link Stream#defaultFor}).
   *
   * @throws AthanorException when CUDA is unavailable (with the reason)
   * @throws IllegalArgumentException when the device is not CUDA or its index is out of range
   */
  public static CudaBackend forDevice(Device device) {
    Objects.requireNonNull(device, "device");
    CudaBackend cached = DEFAULTS.get(device.index());
    if (cached != null && device.isCuda()) return cached;
    checkDevice(device);
    return DEFAULTS.computeIfAbsent(device.index(), i -> new CudaBackend(device, Stream.defaultFor(device)));
  }

  /** A backend that enqueues on {@code stream}, which must belong to {@code device}; the caller keeps it open. */
  public static CudaBackend on(Device device, Stream stream) {
    checkDevice(device);
    Objects.requireNonNull(stream, "stream");
    if (!stream.device().equals(device)) {
      throw new IllegalArgumentException("stream " + stream + " belongs to " + stream.device() + ", not " + device);
    }
    return new CudaBackend(device, stream);
  }

  private static void checkDevice(Device device) {
    Objects.requireNonNull(device, "device");
    Cuda.checkDevice(device);
  }

  @Override
  public Device device() {
    return device;
  }

  @Override
  public int nativeDevice() {
    return device.index();
  }

  @Override
  public long stream() {
    return stream.handle();
  }

  @Override
  public void synchronize() {
    stream.synchronize();
  }

  @Override
  public String toString() {
    return "CudaBackend[" + device + "]";
  }
}

package dev.athanor.runtime;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An ordered queue of work on one device. For CUDA it wraps a cudaStream_t; {@link #defaultFor(Device)} is
 * the legacy default stream (handle 0), which is never destroyed. On the CPU, work runs synchronously and a
 * stream is only a placeholder (handle 0, {@link #synchronize()} does nothing), so code can be written once
 * for both.
 */
public final class Stream implements AutoCloseable {
  private static final ConcurrentHashMap<Device, Stream> DEFAULTS = new ConcurrentHashMap<>();

  private final Device device;
  private final long handle;
  private final boolean owned;
  private final AtomicBoolean closed = new AtomicBoolean();

  private Stream(Device device, long handle, boolean owned) {
    this.device = device;
    this.handle = handle;
    this.owned = owned;
  }

  /** The default stream of a device (not owned: {@link #close()} does nothing). */
  public static Stream defaultFor(Device device) {
    if (device.isCuda()) Cuda.checkDevice(device);
    return DEFAULTS.computeIfAbsent(device, d -> new Stream(d, 0L, false));
  }

  /** A new stream on {@code device} (CUDA: cudaStreamCreate; CPU: a placeholder). Close it when done. */
  public static Stream create(Device device) {
    if (!device.isCuda()) return new Stream(device, 0L, false);
    Cuda.checkDevice(device);
    return new Stream(device, NativeRuntime.cudaStreamCreate(device.index()), true);
  }

  public Device device() {
    return device;
  }

  /** The native cudaStream_t (0 for a default or CPU stream). */
  public long handle() {
    checkOpen();
    return handle;
  }

  public boolean isDefault() {
    return handle == 0;
  }

  /** Blocks until all work queued on this stream has finished. */
  public void synchronize() {
    checkOpen();
    if (!device.isCuda()) return;
    if (handle == 0) NativeRuntime.cudaSetDevice(device.index());
    NativeRuntime.cudaStreamSynchronize(handle);
  }

  private void checkOpen() {
    if (closed.get()) throw new IllegalStateException("stream " + this + " is closed");
  }

  /** Destroys an owned stream (idempotent); does nothing for default and CPU streams. */
  @Override
  public void close() {
    if (owned && closed.compareAndSet(false, true)) NativeRuntime.cudaStreamDestroy(handle);
  }

  @Override
  public String toString() {
    return "Stream(" + device + (handle == 0 ? ", default" : ", 0x" + Long.toHexString(handle)) + ")";
  }
}

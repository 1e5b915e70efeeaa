package dev.athanor.runtime;

import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A marker in a stream: {@link #record(Stream)} places it, {@link #wait(Stream)} makes another stream wait
 * for it without blocking the host, {@link #synchronize()} blocks the host until it is reached. On the CPU
 * (where streams are synchronous) all three do nothing.
 */
public final class Event implements AutoCloseable {
  private final Device device;
  private final long handle;
  private final AtomicBoolean closed = new AtomicBoolean();

  private Event(Device device, long handle) {
    this.device = device;
    this.handle = handle;
  }

  public static Event create(Device device) {
    if (!device.isCuda()) return new Event(device, 0L);
    Cuda.checkDevice(device);
    return new Event(device, NativeRuntime.cudaEventCreate(device.index()));
  }

  public Device device() {
    return device;
  }

  public long handle() {
    checkOpen();
    return handle;
  }

  /** Records this event at the current end of {@code stream}. */
  public Event record(Stream stream) {
    checkOpen();
    checkSameDevice(stream);
    if (device.isCuda()) NativeRuntime.cudaEventRecord(handle, stream.handle());
    return this;
  }

  /** Makes {@code stream} wait (on the device) until this event has been reached. */
  public void wait(Stream stream) {
    checkOpen();
    if (device.isCuda() && stream.device().isCuda()) NativeRuntime.cudaStreamWaitEvent(stream.handle(), handle);
  }

  /** Blocks the host until this event has been reached. */
  public void synchronize() {
    checkOpen();
    if (device.isCuda()) NativeRuntime.cudaEventSynchronize(handle);
  }

  private void checkSameDevice(Stream stream) {
    if (!stream.device().equals(device)) {
      throw new IllegalArgumentException("event on " + device + " cannot be recorded on " + stream);
    }
  }

  private void checkOpen() {
    if (closed.get()) throw new IllegalStateException("event on " + device + " is closed");
  }

  @Override
  public void close() {
    if (closed.compareAndSet(false, true) && handle != 0) NativeRuntime.cudaEventDestroy(handle);
  }

  @Override
  public String toString() {
    return "Event(" + device + ")";
  }
}

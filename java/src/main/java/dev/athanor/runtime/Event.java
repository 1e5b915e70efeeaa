package dev.athanor.runtime;

import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A marker in a stream, the way streams are ordered: {@link #record(Stream)} places it after the work queued so
 * far, {@link #wait(Stream)} makes another stream wait for it on the device (the host does not block),
 * {@link #synchronize()} blocks the host until it is reached, {@link #isComplete()} asks without blocking.
 * Typical use: a host-to-device copy on a copy stream, an event recorded after it, the compute stream waits on
 * the event, then kernels read the copied data.
 *
 * <p>A timing event ({@link #create(Device, boolean)}) also measures: {@link #elapsedMillis(Event, Event)}.
 *
 * <p>On the CPU, work is synchronous, so a CPU event is complete as soon as it is recorded; a timing CPU event
 * remembers the host clock at {@link #record}, which is when the work before it finished.
 */
public final class Event implements AutoCloseable {
  private final Device device;
  private final long handle;
  private final boolean timing;
  private volatile long recordedNanos = -1; // CPU timing events
  private final AtomicBoolean closed = new AtomicBoolean();

  private Event(Device device, long handle, boolean timing) {
    this.device = device;
    this.handle = handle;
    this.timing = timing;
  }

  /** An event without timing (cheaper to record). */
  public static Event create(Device device) {
    return create(device, false);
  }

  /** An event on {@code device}; {@code timing} makes it usable with {@link #elapsedMillis}. Close it when done. */
  public static Event create(Device device, boolean timing) {
    if (!device.isCuda()) return new Event(device, 0L, timing);
    Cuda.checkDevice(device);
    return new Event(device, NativeRuntime.cudaEventCreate(device.index(), timing), timing);
  }

  public Device device() {
    return device;
  }

  public boolean isTiming() {
    return timing;
  }

  /** The native cudaEvent_t (0 on the CPU). */
  public long handle() {
    checkOpen();
    return handle;
  }

  /** Records this event at the current end of {@code stream}, which must be on this event's device. */
  public Event record(Stream stream) {
    checkOpen();
    if (!stream.device().equals(device)) {
      throw new IllegalArgumentException("event on " + device + " cannot be recorded on " + stream);
    }
    if (!stream.recordIfOpen(handle)) throw new IllegalStateException("cannot record " + this + " on " + stream + ": it is closed");
    if (!device.isCuda()) recordedNanos = System.nanoTime();
    return this;
  }

  /**
   * Makes later work on {@code stream} wait until this event has been reached: on the device for a CUDA stream
   * (the host does not block); for a CPU stream, whose work runs on the calling thread, the host waits.
   */
  public void wait(Stream stream) {
    checkOpen();
    if (!device.isCuda()) return;
    if (stream.device().isCuda()) NativeRuntime.cudaStreamWaitEvent(stream.handle(), handle);
    else synchronize();
  }

  /** Blocks the host until this event has been reached. */
  public void synchronize() {
    checkOpen();
    if (device.isCuda()) NativeRuntime.cudaEventSynchronize(handle);
  }

  /** Whether all work before this event has completed (true when it was never recorded). Never blocks. */
  public boolean isComplete() {
    checkOpen();
    return !device.isCuda() || NativeRuntime.cudaEventQuery(handle);
  }

  /**
   * Milliseconds between two recorded timing events of one device; waits for {@code end} first.
   *
   * @throws IllegalArgumentException when an event is not a timing event or the devices differ
   */
  public static float elapsedMillis(Event start, Event end) {
    for (Event e : new Event[] {start, end}) {
      e.checkOpen();
      if (!e.timing) throw new IllegalArgumentException(e + " was created without timing; use Event.create(device, true)");
    }
    if (!start.device.equals(end.device)) {
      throw new IllegalArgumentException("elapsedMillis: events on different devices: " + start + ", " + end);
    }
    end.synchronize();
    if (start.device.isCuda()) return NativeRuntime.cudaEventElapsed(start.handle, end.handle);
    if (start.recordedNanos < 0 || end.recordedNanos < 0) {
      throw new IllegalStateException("elapsedMillis: " + (start.recordedNanos < 0 ? start : end) + " was never recorded");
    }
    return (end.recordedNanos - start.recordedNanos) / 1e6f;
  }

  private void checkOpen() {
    if (closed.get()) throw new IllegalStateException(this + " is closed");
  }

  /** Destroys the event (idempotent). */
  @Override
  public void close() {
    if (closed.compareAndSet(false, true) && handle != 0) NativeRuntime.cudaEventDestroy(handle);
  }

  @Override
  public String toString() {
    return "Event(" + device + (timing ? ", timing" : "") + ")";
  }
}

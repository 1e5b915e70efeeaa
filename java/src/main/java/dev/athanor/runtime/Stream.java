package dev.athanor.runtime;

/**
 * An ordered queue of work on one device. For CUDA it wraps a non-blocking {@code cudaStream_t} (it does not
 * synchronize with the legacy default stream, which nothing in Athanor uses); ordering between streams is
 * expressed with {@link Event}s. On the CPU, work runs synchronously and a stream is only a placeholder (handle
 * 0, {@link #synchronize()} returns at once), so code can be written once for both.
 *
 * <p>A device's "default" stream is the compute stream of the calling thread's {@link ExecutionContext}
 * ({@link #current(Device)}). Streams made by {@link #create} belong to the caller, who closes them; the streams
 * of an execution context belong to it ({@link #close()} on them does nothing, the context closes them).
 *
 * <p>Thread-safe: {@link #close()} synchronizes and destroys the stream under the stream's lock, and
 * {@link #recordIfOpen} records under the same lock, so an event is never recorded on a destroyed stream.
 */
public final class Stream implements AutoCloseable {
  private final Device device;
  private final long handle;
  private final boolean ownedByContext;
  private volatile boolean closed;

  private Stream(Device device, long handle, boolean ownedByContext) {
    this.device = device;
    this.handle = handle;
    this.ownedByContext = ownedByContext;
  }

  /** A new stream on {@code device} (CUDA: non-blocking; CPU: a placeholder). The caller closes it. */
  public static Stream create(Device device) {
    return create(device, false);
  }

  /** A stream owned by an execution context (closed by the context, not by {@link #close()}). */
  static Stream create(Device device, boolean ownedByContext) {
    if (!device.isCuda()) return new Stream(device, 0L, ownedByContext);
    Cuda.checkDevice(device);
    return new Stream(device, NativeRuntime.cudaStreamCreate(device.index()), ownedByContext);
  }

  /** The compute stream of the calling thread's current context for {@code device}. */
  public static Stream current(Device device) {
    return ExecutionContext.current(device).computeStream();
  }

  public Device device() {
    return device;
  }

  /** The native cudaStream_t (never 0 on CUDA; 0 for a CPU placeholder). */
  public long handle() {
    checkOpen();
    return handle;
  }

  public boolean isClosed() {
    return closed;
  }

  /** Blocks until all work queued on this stream has finished. */
  public void synchronize() {
    checkOpen();
    if (device.isCuda()) NativeRuntime.cudaStreamSynchronize(handle);
  }

  /**
   * Records {@code event} at the current end of this stream unless the stream is closed (then all its work has
   * finished, since closing synchronizes). Returns whether it recorded.
   */
  synchronized boolean recordIfOpen(long event) {
    if (closed) return false;
    if (device.isCuda()) NativeRuntime.cudaEventRecord(event, handle);
    return true;
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException(this + " is closed");
  }

  /**
   * Waits for the stream's work and destroys it (idempotent). Does nothing for a stream owned by an
   * {@link ExecutionContext}: closing the context closes it.
   */
  @Override
  public void close() {
    if (!ownedByContext) destroy();
  }

  /** Synchronizes and destroys the stream (idempotent). */
  synchronized void destroy() {
    if (closed) return;
    try {
      if (device.isCuda()) NativeRuntime.cudaStreamSynchronize(handle);
    } finally {
      closed = true;
      if (device.isCuda()) NativeRuntime.cudaStreamDestroy(handle);
    }
  }

  @Override
  public String toString() {
    return "Stream(" + device + (device.isCuda() ? ", 0x" + Long.toHexString(handle) : ", synchronous") + ")";
  }
}

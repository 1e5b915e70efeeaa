package dev.athanor.offload;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.Event;
import dev.athanor.runtime.Stream;
import dev.athanor.tensor.Tensor;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;

/**
 * {@link UnitCopies} on a copy stream of its own, ordered with the calling thread's compute stream of the device by
 * events: before each copy the copy stream waits for an event recorded at the end of the compute stream (the copy
 * reads what the computation wrote, or overwrites what it read, only after it); after a copy to the device the compute
 * stream waits for an event recorded behind it (later kernels read the new weights); each ticket is an event recorded
 * behind its copy, which {@link #await} synchronizes. The host side of a copy should be HOST_PINNED memory (a truly
 * asynchronous cudaMemcpyAsync; {@link Tensor#copyFromAsync} checks it), and both storages stay allocated until the
 * copy has run even when their tensors are closed.
 *
 * <p>On the CPU the stream and events are placeholders and every copy has run when it returns; the ordering logic of
 * the callers is the same, which is what the CPU tests run.
 *
 * <p>Events are reused (a pool); {@link #close()} synchronizes the copy stream and destroys the stream and every event.
 * CUDA failures surface as {@link dev.athanor.runtime.NativeException}s from the calls that hit them. Safe for two
 * threads (the computing one and a worker enqueueing with {@link #queueToHost} and {@link #queueToDevice}): the calls
 * are serialized, and {@link #await} blocks outside the lock; {@link #close()} only when no other thread uses them.
 */
public final class StreamCopies implements UnitCopies {
  private final Device device;
  private final Stream copy;
  private final Event computeDone;                // recorded on the compute stream before each copy
  private final Map<Long, Event> pending = new HashMap<>();
  private final ArrayDeque<Event> free = new ArrayDeque<>();
  private long next;
  private long toHost, toDevice;
  private boolean closed;

  /** Copies between {@code device}'s memory and the host on a new copy stream of {@code device}. */
  public StreamCopies(Device device) {
    this.device = Objects.requireNonNull(device, "device");
    Stream s = Stream.create(device);
    try {
      this.computeDone = Event.create(device);
    } catch (RuntimeException e) {
      s.close();
      throw e;
    }
    this.copy = s;
  }

  public Device device() {
    return device;
  }

  @Override
  public synchronized long toHost(Tensor dst, Tensor src) {
    return copy(dst, src, false, true);
  }

  @Override
  public synchronized long toDevice(Tensor dst, Tensor src) {
    return copy(dst, src, true, true);
  }

  @Override
  public synchronized void afterCompute() {
    checkOpen();
    waitForCompute();
  }

  @Override
  public synchronized long queueToHost(Tensor dst, Tensor src) {
    return copy(dst, src, false, false);
  }

  @Override
  public synchronized long queueToDevice(Tensor dst, Tensor src) {
    return copy(dst, src, true, false);
  }

  @Override
  public synchronized void computeWaits(long ticket) {
    checkOpen();
    Event e = pending.get(ticket);
    if (e != null) e.wait(Stream.current(device));  // takes the event as recorded behind the copy: reuse does not move it
  }

  /**
   * Enqueues {@code src -> dst} on the copy stream (with {@code ordered}, after the compute stream's work so far, and
   * for a copy to the device the compute stream then waits for it); returns its ticket.
   */
  private long copy(Tensor dst, Tensor src, boolean toDevice, boolean ordered) {
    checkOpen();
    if (ordered) waitForCompute();
    dst.copyFromAsync(src, copy);
    if (toDevice) this.toDevice += src.byteSize();
    else this.toHost += src.byteSize();
    return ticket(toDevice && ordered);
  }

  /** The copy stream waits for the work queued on the compute stream so far. */
  private void waitForCompute() {
    computeDone.record(Stream.current(device));
    computeDone.wait(copy);  // the wait takes the event as recorded now: re-recording it later does not move it
  }

  /** An event behind the copy just enqueued (the compute stream waits for it when {@code computeWaits}). */
  private long ticket(boolean computeWaits) {
    Event e = free.isEmpty() ? Event.create(device) : free.pop();
    try {
      e.record(copy);
      if (computeWaits) e.wait(Stream.current(device));
    } catch (RuntimeException x) {
      free.push(e);
      throw x;
    }
    pending.put(next, e);
    return next++;
  }

  @Override
  public void await(long ticket) {
    Event e;
    synchronized (this) {
      checkOpen();
      e = pending.get(ticket);
      if (e == null) return;
    }
    e.synchronize();  // outside the lock: the other thread may enqueue meanwhile
    synchronized (this) {
      if (pending.get(ticket) == e) {  // not already given back by another thread awaiting the same ticket
        pending.remove(ticket);
        free.push(e);
      }
    }
  }

  @Override
  public synchronized long bytesToHost() {
    return toHost;
  }

  @Override
  public synchronized long bytesToDevice() {
    return toDevice;
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("these copies are closed");
  }

  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    RuntimeException failure = null;
    try {
      copy.close();  // synchronizes: every copy has run
    } catch (RuntimeException e) {
      failure = e;
    }
    free.addAll(pending.values());
    pending.clear();
    free.add(computeDone);
    for (Event e : free) {
      try {
        e.close();
      } catch (RuntimeException x) {
        if (failure == null) failure = x;
        else failure.addSuppressed(x);
      }
    }
    free.clear();
    if (failure != null) throw failure;
  }
}

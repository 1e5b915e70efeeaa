package dev.athanor.dist;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.Event;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Stream;
import java.util.Objects;

/**
 * {@link ReductionStreams} on one device: the communication stream is the compute stream of an {@link ExecutionContext}
 * of its own (created once, with its own scratch arena; closed with this object), made current around each {@link
 * #onComm}, so the collectives (NCCL enqueues on the current context's stream) and the deterministic fold's kernels and
 * temporaries ({@link GatheredFold}: its memory belongs to that stream) go there. Ordering is by events, each reused: a
 * stream wait takes an event as last recorded when the wait is enqueued, so recording it again later does not move it.
 *
 * <p>Timing: {@link #computeWaitsForComm} records two timing events, one on the compute stream before its wait and one
 * at the end of the communication stream (the one it waits on); their difference, when positive, is how long the compute stream stood
 * waiting for the communication (what the backward did not hide). It is read with cudaEventElapsedTime when asked
 * ({@link #waitedNanos}) or before the pair is recorded again, which waits for the communication event; the trainer
 * has read the step's gradient norm on the host by then, so that has already run.
 *
 * <p>On the CPU the streams and events are placeholders: everything runs as it is enqueued, the waits are no-ops, and
 * the wait measured is the host time between the two records (about 0).
 */
final class CommunicationStream implements ReductionStreams {
  private final Device device;
  private final ExecutionContext comm;
  private final Event computeDone;            // the compute stream's end, for the communication stream to wait on
  private final Event waitFrom, commDone;     // timing: the compute stream at its wait; the communication's end (waited on)
  private boolean timed;                      // a timing pair recorded and not yet read
  private long waitedNanos;

  /** A communication stream on {@code device}. */
  CommunicationStream(Device device) {
    this.device = Objects.requireNonNull(device, "device");
    ExecutionContext c = ExecutionContext.create(device);
    Event[] events = new Event[3];
    try {
      for (int i = 0; i < 3; i++) events[i] = Event.create(device, i > 0);
    } catch (RuntimeException e) {
      for (Event x : events) if (x != null) x.close();
      c.close();
      throw e;
    }
    this.comm = c;
    this.computeDone = events[0];
    this.waitFrom = events[1];
    this.commDone = events[2];
  }

  @Override
  public void commWaitsForCompute() {
    computeDone.record(Stream.current(device));
    computeDone.wait(comm.computeStream());
  }

  @Override
  public void onComm(Runnable work) {
    try (ExecutionContext.Current c = comm.makeCurrent()) {
      work.run();
    }
  }

  @Override
  public void computeWaitsForComm() {
    readTiming();  // the previous pair, before it is recorded again
    Stream compute = Stream.current(device);
    waitFrom.record(compute);
    commDone.record(comm.computeStream());
    commDone.wait(compute);
    timed = true;
  }

  @Override
  public long waitedNanos() {
    readTiming();
    return waitedNanos;
  }

  private void readTiming() {
    if (!timed) return;
    timed = false;
    float ms = Event.elapsedMillis(waitFrom, commDone);  // negative: the communication had ended before the wait
    if (ms > 0) waitedNanos += Math.round(ms * 1e6);
  }

  /** Waits for the communication stream, then destroys it and the events. */
  @Override
  public void close() {
    RuntimeException failure = null;
    try {
      comm.close();
    } catch (RuntimeException e) {
      failure = e;
    }
    for (Event e : new Event[] {computeDone, waitFrom, commDone}) {
      try {
        e.close();
      } catch (RuntimeException x) {
        if (failure == null) failure = x;
        else failure.addSuppressed(x);
      }
    }
    if (failure != null) throw failure;
  }
}

package dev.athanor.dist;

import dev.athanor.tensor.Tensor;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A communicator that counts what passes through another one: the wall time spent inside its collectives and
 * point-to-point calls (waiting for the other ranks included: that is what a step loses to communication) and the
 * bytes this rank handed to them (each call's input tensor; for {@link #recv}, the bytes received), and the bytes the
 * calls delivered from this rank to the others ({@link Communicator#sentBytes} of the wrapped communicator, whose
 * difference around each call is added: what leaves the process, the quantity {@link
 * dev.athanor.dist.plan.ParallelPlanner} predicts). A training loop takes the counts before and after a step and logs
 * the difference. Closing it closes the wrapped communicator.
 */
public final class TimedCommunicator implements Communicator {
  private final Communicator inner;
  private final AtomicLong nanos, bytes, sent, calls;

  /** Counts the calls on {@code inner}. */
  public TimedCommunicator(Communicator inner) {
    this(inner, new AtomicLong(), new AtomicLong(), new AtomicLong(), new AtomicLong());
  }

  private TimedCommunicator(Communicator inner, AtomicLong nanos, AtomicLong bytes, AtomicLong sent, AtomicLong calls) {
    this.inner = Objects.requireNonNull(inner, "inner");
    this.nanos = nanos;
    this.bytes = bytes;
    this.sent = sent;
    this.calls = calls;
  }

  /** A group of the wrapped communicator whose calls add to these same counts. */
  @Override
  public Communicator split(int color, int key) {
    return new TimedCommunicator(inner.split(color, key), nanos, bytes, sent, calls);
  }

  /**
   * Totals since creation; subtract two to get an interval's. {@code bytes}: handed to the calls; {@code sent}:
   * delivered to other ranks ({@link Communicator#sentBytes}).
   */
  public record Counts(long nanos, long bytes, long sent, long calls) {
    /** This minus {@code earlier}. */
    public Counts minus(Counts earlier) {
      return new Counts(nanos - earlier.nanos, bytes - earlier.bytes, sent - earlier.sent, calls - earlier.calls);
    }

    /** The time in milliseconds. */
    public double millis() {
      return nanos / 1e6;
    }
  }

  /** The totals so far. */
  public Counts counts() {
    return new Counts(nanos.get(), bytes.get(), sent.get(), calls.get());
  }

  /** The wrapped communicator. */
  public Communicator inner() {
    return inner;
  }

  /** Runs {@code call} and counts its time and {@code payload} bytes. */
  private void timed(Runnable call, long payload) {
    long s0 = inner.sentBytes(), t0 = System.nanoTime();
    call.run();
    nanos.addAndGet(System.nanoTime() - t0);
    sent.addAndGet(inner.sentBytes() - s0);
    bytes.addAndGet(payload);
    calls.incrementAndGet();
  }

  @Override
  public int rank() {
    return inner.rank();
  }

  @Override
  public int size() {
    return inner.size();
  }

  @Override
  public ReduceMode mode() {
    return inner.mode();
  }

  @Override
  public String describe() {
    return inner.describe();
  }

  @Override
  public void allReduceSum(Tensor t) {
    timed(() -> inner.allReduceSum(t), t.byteSize());
  }

  @Override
  public void reduceScatter(Tensor in, Tensor out) {
    timed(() -> inner.reduceScatter(in, out), in.byteSize());
  }

  @Override
  public void allGather(Tensor in, Tensor out) {
    timed(() -> inner.allGather(in, out), in.byteSize());
  }

  @Override
  public void allGatherV(Tensor in, Tensor out, long[] counts) {
    timed(() -> inner.allGatherV(in, out, counts), in.byteSize());
  }

  @Override
  public void reduceScatterAccumulate(Tensor in, Tensor acc, boolean first) {
    timed(() -> inner.reduceScatterAccumulate(in, acc, first), in.byteSize());
  }

  @Override
  public void reduceScatterAccumulateV(Tensor in, Tensor acc, long[] counts, boolean first) {
    timed(() -> inner.reduceScatterAccumulateV(in, acc, counts, first), in.byteSize());
  }

  @Override
  public void broadcast(Tensor t, int root) {
    timed(() -> inner.broadcast(t, root), rank() == root ? t.byteSize() : 0);
  }

  @Override
  public void send(Tensor t, int dest) {
    timed(() -> inner.send(t, dest), t.byteSize());
  }

  @Override
  public void recv(Tensor t, int src) {
    timed(() -> inner.recv(t, src), t.byteSize());
  }

  @Override
  public void barrier() {
    timed(() -> inner.barrier(), 0);
  }

  /** What the wrapped communicator delivered so far (all of its calls, counted here or not). */
  @Override
  public long sentBytes() {
    return inner.sentBytes();
  }

  @Override
  public void abort(int code) {
    inner.abort(code);
  }

  @Override
  public void close() {
    inner.close();
  }
}

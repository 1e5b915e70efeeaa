package dev.athanor.dist;

import dev.athanor.tensor.Tensor;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A communicator that counts what passes through another one: the wall time spent inside its collectives and
 * point-to-point calls (waiting for the other ranks included: that is what a step loses to communication) and the
 * bytes this rank handed to them (each call's input tensor; for {@link #recv}, the bytes received). A training loop
 * takes the counts before and after a step and logs the difference. Closing it closes the wrapped communicator.
 */
public final class TimedCommunicator implements Communicator {
  private final Communicator inner;
  private final AtomicLong nanos = new AtomicLong(), bytes = new AtomicLong(), calls = new AtomicLong();

  /** Counts the calls on {@code inner}. */
  public TimedCommunicator(Communicator inner) {
    this.inner = Objects.requireNonNull(inner, "inner");
  }

  /** Totals since creation; subtract two to get an interval's. */
  public record Counts(long nanos, long bytes, long calls) {
    /** This minus {@code earlier}. */
    public Counts minus(Counts earlier) {
      return new Counts(nanos - earlier.nanos, bytes - earlier.bytes, calls - earlier.calls);
    }

    /** The time in milliseconds. */
    public double millis() {
      return nanos / 1e6;
    }
  }

  /** The totals so far. */
  public Counts counts() {
    return new Counts(nanos.get(), bytes.get(), calls.get());
  }

  /** The wrapped communicator. */
  public Communicator inner() {
    return inner;
  }

  private void count(long t0, long payload) {
    nanos.addAndGet(System.nanoTime() - t0);
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
    long t0 = System.nanoTime();
    inner.allReduceSum(t);
    count(t0, t.byteSize());
  }

  @Override
  public void reduceScatter(Tensor in, Tensor out) {
    long t0 = System.nanoTime();
    inner.reduceScatter(in, out);
    count(t0, in.byteSize());
  }

  @Override
  public void allGather(Tensor in, Tensor out) {
    long t0 = System.nanoTime();
    inner.allGather(in, out);
    count(t0, in.byteSize());
  }

  @Override
  public void broadcast(Tensor t, int root) {
    long t0 = System.nanoTime();
    inner.broadcast(t, root);
    count(t0, rank() == root ? t.byteSize() : 0);
  }

  @Override
  public void send(Tensor t, int dest) {
    long t0 = System.nanoTime();
    inner.send(t, dest);
    count(t0, t.byteSize());
  }

  @Override
  public void recv(Tensor t, int src) {
    long t0 = System.nanoTime();
    inner.recv(t, src);
    count(t0, t.byteSize());
  }

  @Override
  public void barrier() {
    long t0 = System.nanoTime();
    inner.barrier();
    count(t0, 0);
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

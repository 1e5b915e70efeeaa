package dev.athanor.dist;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.util.Objects;
import java.util.function.BiConsumer;
import java.util.function.Consumer;

/**
 * A host communicator (MPI) that also takes CUDA tensors by staging them through host memory: each CUDA argument is
 * copied to a host tensor (synchronously), the host collective runs, and what the collective wrote is copied back. Host
 * arguments pass straight through. Results are the host communicator's bit for bit (its deterministic sums included),
 * at the cost of two copies across the bus per call. This is how ranks that share one GPU (where NCCL refuses, one
 * GPU per rank) or machines without NCCL train on CUDA: {@code --collectives mpi}. Closing it closes the host
 * communicator when {@code owns} (a split); the one it was given stays the caller's.
 */
final class StagedCommunicator implements Communicator {
  private final Communicator host;
  private final boolean owns;

  StagedCommunicator(Communicator host, boolean owns) {
    this.host = Objects.requireNonNull(host, "host");
    this.owns = owns;
  }

  @Override
  public int rank() {
    return host.rank();
  }

  @Override
  public int size() {
    return host.size();
  }

  @Override
  public ReduceMode mode() {
    return host.mode();
  }

  @Override
  public String describe() {
    return host.describe() + ", CUDA tensors staged through host memory";
  }

  @Override
  public long sentBytes() {
    return host.sentBytes();
  }

  /** A host tensor with {@code t}'s contents ({@code copy}) or shape only; {@code t} itself when it is on the host. */
  private static Tensor stage(Tensor t, boolean copy) {
    if (t == null || t.isClosed() || t.device().isCpu()) return t;
    if (copy) return t.to(Device.CPU);
    return Tensor.empty(t.dtype(), Device.CPU, t.shape());
  }

  /** Copies {@code h} back into {@code t} when it was staged, and frees it. */
  private static void unstage(Tensor t, Tensor h, boolean back) {
    if (h == t) return;
    try {
      if (back) t.copyFrom(h);
    } finally {
      h.close();
    }
  }

  private static void free(Tensor t, Tensor h) {
    if (h != t && h != null) h.close();
  }

  /** Runs {@code op} on the staged {@code t} ({@code copyIn}: with its contents) and copies the result back ({@code back}). */
  private static void one(Tensor t, boolean copyIn, boolean back, Consumer<Tensor> op) {
    Tensor h = stage(t, copyIn);
    boolean ok = false;
    try {
      op.accept(h);
      ok = true;
    } finally {
      if (ok) unstage(t, h, back);
      else free(t, h);
    }
  }

  /** Runs {@code op} on staged {@code in} (its contents) and {@code out} ({@code readOut}: its contents too), then copies {@code out} back. */
  private static void inOut(Tensor in, Tensor out, boolean readOut, BiConsumer<Tensor, Tensor> op) {
    Tensor hi = stage(in, true), ho = null;
    boolean ok = false;
    try {
      ho = stage(out, readOut);
      op.accept(hi, ho);
      ok = true;
    } finally {
      free(in, hi);
      if (ok) unstage(out, ho, true);
      else free(out, ho);
    }
  }

  @Override
  public void allReduceSum(Tensor t) {
    one(t, true, true, host::allReduceSum);
  }

  @Override
  public void reduceScatter(Tensor in, Tensor out) {
    inOut(in, out, false, host::reduceScatter);
  }

  @Override
  public void reduceScatterAccumulate(Tensor in, Tensor acc, boolean first) {
    inOut(in, acc, !first, (i, a) -> host.reduceScatterAccumulate(i, a, first));
  }

  @Override
  public void reduceScatterAccumulateV(Tensor in, Tensor acc, long[] counts, boolean first) {
    inOut(in, acc, !first, (i, a) -> host.reduceScatterAccumulateV(i, a, counts, first));
  }

  @Override
  public void allGather(Tensor in, Tensor out) {
    inOut(in, out, false, host::allGather);
  }

  @Override
  public void allGatherV(Tensor in, Tensor out, long[] counts) {
    inOut(in, out, false, (i, o) -> host.allGatherV(i, o, counts));
  }

  @Override
  public void broadcast(Tensor t, int root) {
    one(t, rank() == root, rank() != root, h -> host.broadcast(h, root));
  }

  @Override
  public void send(Tensor t, int dest) {
    one(t, true, false, h -> host.send(h, dest));
  }

  @Override
  public void recv(Tensor t, int src) {
    one(t, false, true, h -> host.recv(h, src));
  }

  @Override
  public void barrier() {
    host.barrier();
  }

  @Override
  public Communicator split(int color, int key) {
    return new StagedCommunicator(host.split(color, key), true);
  }

  @Override
  public void abort(int code) {
    host.abort(code);
  }

  @Override
  public void close() {
    if (owns) host.close();
  }
}

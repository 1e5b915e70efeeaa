package dev.athanor.dist;

import dev.athanor.tensor.Tensor;

/** One process, rank 0 of 1: sums are the tensor itself, gathers and scatters are copies, there is no peer. */
final class SingleProcessCommunicator implements Communicator {
  private final ReduceMode mode;

  SingleProcessCommunicator(ReduceMode mode) {
    this.mode = mode;
  }

  @Override
  public int rank() {
    return 0;
  }

  @Override
  public int size() {
    return 1;
  }

  @Override
  public ReduceMode mode() {
    return mode;
  }

  @Override
  public String describe() {
    return "single process";
  }

  @Override
  public void allReduceSum(Tensor t) {
    Checks.host("allReduceSum", "t", t);
  }

  @Override
  public void reduceScatter(Tensor in, Tensor out) {
    copy("reduceScatter", in, out);
  }

  @Override
  public void reduceScatterAccumulate(Tensor in, Tensor acc, boolean first) {
    Checks.parts("reduceScatterAccumulate", in, acc, "acc", acc, in, 0, 1);
    try (Tensor a = in.view(in.numel()); Tensor b = acc.view(acc.numel())) {
      RankOrderSum.fold(java.util.List.of(a), b, first);
    }
  }

  @Override
  public void reduceScatterAccumulateV(Tensor in, Tensor acc, long[] counts, boolean first) {
    Checks.foldCounts("reduceScatterAccumulateV", in, acc, counts, 0, 1);
    try (Tensor a = in.view(in.numel()); Tensor b = acc.view(acc.numel())) {
      RankOrderSum.fold(java.util.List.of(a), b, first);
    }
  }

  @Override
  public void allGather(Tensor in, Tensor out) {
    copy("allGather", in, out);
  }

  @Override
  public void allGatherV(Tensor in, Tensor out, long[] counts) {
    Checks.counts("allGatherV", in, out, counts, 0, 1);
    if (in.address() == out.address()) return;
    try (Tensor a = in.view(in.numel()); Tensor b = out.view(out.numel())) {
      b.copyFrom(a);
    }
  }

  private static void copy(String op, Tensor in, Tensor out) {
    Checks.parts(op, in, out, "in", in, out, 0, 1);
    if (in.address() == out.address()) return;
    try (Tensor a = in.view(in.numel()); Tensor b = out.view(out.numel())) {
      b.copyFrom(a);
    }
  }

  @Override
  public void broadcast(Tensor t, int root) {
    Checks.host("broadcast", "t", t);
    Checks.root("broadcast", root, 1);
  }

  @Override
  public void send(Tensor t, int dest) {
    Checks.host("send", "t", t);
    Checks.peer("send", "destination", dest, 0, 1);
  }

  @Override
  public void recv(Tensor t, int src) {
    Checks.host("recv", "t", t);
    Checks.peer("recv", "source", src, 0, 1);
  }

  @Override
  public void barrier() {}

  @Override
  public Communicator split(int color, int key) {
    if (color < 0) throw new IllegalArgumentException("split color " + color + " must be >= 0");
    return new SingleProcessCommunicator(mode);
  }

  @Override
  public void abort(int code) {}

  @Override
  public void close() {}
}

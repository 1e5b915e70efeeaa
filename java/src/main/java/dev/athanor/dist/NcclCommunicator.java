package dev.athanor.dist;

import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.NativeException;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Locale;
import java.util.Objects;

/**
 * Collectives on CUDA tensors through NCCL ({@link NcclNative}), bootstrapped over a host communicator (MPI, as llm.c
 * does): rank 0 of {@code bootstrap} makes NCCL's unique id, {@link Communicator#broadcast} hands it to the others, and
 * every rank joins with {@code ncclCommInitRank} on its device. CUDA tensors (DEVICE tier of this communicator's device,
 * contiguous) go to NCCL; host tensors go to {@code bootstrap}, so code that mixes both (a trainer's gradients on the
 * GPU, its losses and agreement checks on the host) needs one communicator.
 *
 * <p>Work is enqueued on the compute stream of the calling thread's current {@link ExecutionContext} for the device
 * and nothing waits for it (stream order makes the result visible to the ops that follow, and a host read of a tensor
 * synchronizes), except {@link #barrier}, which waits.
 *
 * <p>Sums. Fast mode uses NCCL's own sums (ncclAllReduce, ncclReduceScatter, ncclReduce), whose order NCCL chooses.
 * Deterministic mode forms each element's sum in rank order as the MPI communicator does: every rank's tensor is
 * gathered (ncclAllGather, in pieces of at most {@value #PIECE_BYTES} bytes of gathered data), then each rank adds the
 * copies left to right in F32 on the device with Athanor's own kernels ({@code x_0 + x_1 + ...}; BF16 and F16 converted
 * to F32 first and rounded once), so every rank holds the same bits. It moves {@code (s − 1)} times the tensor instead
 * of a ring's {@code 2 (s − 1)/s}: determinism costs bandwidth. I32 sums are exact in any order and use ncclAllReduce
 * in both modes. The folds ({@link #reduceScatterAccumulate} in deterministic mode, {@link #reduceScatterAccumulateV}
 * always) are the rank-ordered ones of {@link Communicator}.
 *
 * <p>Counts that do not split evenly ({@link Communicator#partStart}) and {@link #allGatherV} run as grouped
 * ncclReduce / ncclBroadcast calls, one per owner. {@link #split} splits the bootstrap and makes a new NCCL
 * communicator over the group. {@link #close} destroys the NCCL communicator; it closes the bootstrap only when this
 * communicator made it (a split), not the one it was given.
 */
final class NcclCommunicator implements Communicator {
  /** The most bytes of gathered data one deterministic piece holds on the device. */
  static final long PIECE_BYTES = 256L << 20;

  private final Communicator bootstrap;
  private final boolean ownsBootstrap;
  private final Device device;
  private final ReduceMode mode;
  private final String library;
  private final int version;
  private long comm;     // ncclComm_t; 0 once closed
  private long sent;     // see sentBytes (CUDA tensors; host tensors count in the bootstrap)

  private NcclCommunicator(Communicator bootstrap, boolean ownsBootstrap, Device device, ReduceMode mode, String library,
      int version, long comm) {
    this.bootstrap = bootstrap;
    this.ownsBootstrap = ownsBootstrap;
    this.device = device;
    this.mode = mode;
    this.library = library;
    this.version = version;
    this.comm = comm;
  }

  /**
   * A collective of {@code bootstrap}'s ranks; see {@link Communicator#nccl}. Every rank loads NCCL first and the ranks
   * agree (a host all-reduce) before any joins, so a rank without NCCL makes all of them fail instead of leaving the
   * others waiting in ncclCommInitRank. {@code owns}: closing the result closes {@code bootstrap}.
   */
  static NcclCommunicator open(Communicator bootstrap, boolean owns, Device device, ReduceMode mode) {
    Objects.requireNonNull(bootstrap, "bootstrap");
    Objects.requireNonNull(device, "device");
    if (mode == null) throw new IllegalArgumentException("reduce mode is null; expected deterministic or fast");
    if (!device.isCuda()) {
      throw new IllegalArgumentException("NCCL communicates between CUDA devices; " + device + " is not one (host "
          + "tensors use the MPI communicator)");
    }
    String library = null;
    CommunicatorException failed = null;
    try {
      library = NcclNative.load();
    } catch (CommunicatorException e) {
      failed = e;
    }
    int missing;
    try (Tensor flag = Tensor.of(new int[] {failed == null ? 0 : 1}, 1)) {
      bootstrap.allReduceSum(flag);
      missing = flag.toIntArray()[0];
    }
    if (failed != null) throw failed;
    if (missing > 0) {
      throw new CommunicatorException("NCCL could not be loaded on " + missing + " of " + bootstrap.size() + " ranks (their "
          + "messages say why); this rank (" + bootstrap.rank() + ") stops with them");
    }
    int version = NcclNative.version0();
    // the unique id: made by rank 0, broadcast over the bootstrap as 32 ints
    Tensor id = Tensor.empty(DType.I32, Device.CPU, 32);
    try {
      if (bootstrap.rank() == 0) {
        byte[] b = NcclNative.uniqueId0();
        int[] w = new int[32];
        for (int i = 0; i < 32; i++) {
          w[i] = (b[4 * i] & 0xff) | (b[4 * i + 1] & 0xff) << 8 | (b[4 * i + 2] & 0xff) << 16 | (b[4 * i + 3] & 0xff) << 24;
        }
        id.copyFrom(w);
      }
      bootstrap.broadcast(id, 0);
      int[] w = id.toIntArray();
      byte[] b = new byte[128];
      for (int i = 0; i < 128; i++) b[i] = (byte) (w[i / 4] >>> (8 * (i % 4)));
      long c;
      try {
        c = NcclNative.commInit0(bootstrap.size(), b, bootstrap.rank(), device.index());
      } catch (NativeException e) {
        throw new CommunicatorException("NCCL could not join rank " + bootstrap.rank() + " of " + bootstrap.size() + " on "
            + device + ": " + e.detail() + (e.detail().contains("Duplicate GPU") || e.detail().contains("invalid usage")
                ? " (NCCL needs one GPU per rank; ranks that share a GPU can use --collectives mpi)" : ""), e);
      }
      return new NcclCommunicator(bootstrap, owns, device, mode, library, version, c);
    } finally {
      id.close();
    }
  }

  @Override
  public int rank() {
    return bootstrap.rank();
  }

  @Override
  public int size() {
    return bootstrap.size();
  }

  @Override
  public ReduceMode mode() {
    return mode;
  }

  /** The CUDA device this rank's NCCL communicator runs on. */
  Device device() {
    return device;
  }

  @Override
  public String describe() {
    return "NCCL " + NcclNative.versionString(version) + " (" + library + ") on " + device + ", rank " + rank() + " of "
        + size() + ", " + mode.name().toLowerCase(Locale.ROOT) + "; host tensors: " + bootstrap.describe();
  }

  @Override
  public synchronized long sentBytes() {
    return sent + bootstrap.sentBytes();
  }

  // ------------------------------------------------------------------ collectives

  @Override
  public synchronized void allReduceSum(Tensor t) {
    if (isHost(t)) {
      bootstrap.allReduceSum(t);
      return;
    }
    check("allReduceSum", "t", t);
    long n = t.numel();
    int s = size();
    if (s == 1 || n == 0) return;
    int es = t.dtype().byteSize();
    long mine = Communicator.partLength(n, rank(), s);
    sent += (n - mine + mine * (s - 1)) * es;  // counted as a ring's volume, as the MPI communicator counts it
    if (mode == ReduceMode.FAST || t.dtype() == DType.I32) {
      NcclNative.allReduce0(comm, t.address(), t.address(), n, t.dtype().code(), stream());
      return;
    }
    try (Tensor flat = t.view(n)) {
      foldGathered(flat, 0, n, flat, true, t.dtype());
    }
  }

  @Override
  public synchronized void reduceScatter(Tensor in, Tensor out) {
    if (isHost(in) && isHost(out)) {
      bootstrap.reduceScatter(in, out);
      return;
    }
    check("reduceScatter", "in", in);
    check("reduceScatter", "out", out);
    Checks.sameDtype("reduceScatter", in, out);
    long n = in.numel();
    int s = size(), r = rank();
    Checks.partOf("reduceScatter", "out", out, n, r, s);
    long start = Communicator.partStart(n, r, s), len = Communicator.partLength(n, r, s);
    if (n == 0) return;
    sent += (n - len) * in.dtype().byteSize();
    if (mode == ReduceMode.FAST || in.dtype() == DType.I32) {
      if (n % s == 0) {
        NcclNative.reduceScatter0(comm, in.address(), out.address(), n / s, in.dtype().code(), stream());
      } else {
        int es = in.dtype().byteSize();
        NcclNative.group0(true);
        try {
          for (int o = 0; o < s; o++) {
            long os = Communicator.partStart(n, o, s), ol = Communicator.partLength(n, o, s);
            if (ol > 0) NcclNative.reduce0(comm, in.address() + os * es, out.address(), ol, in.dtype().code(), o, stream());
          }
        } finally {
          NcclNative.group0(false);
        }
      }
      return;
    }
    try (Tensor inFlat = in.view(n); Tensor outFlat = out.view(len)) {
      foldGathered(inFlat, start, len, outFlat, true, in.dtype());
    }
  }

  @Override
  public synchronized void reduceScatterAccumulate(Tensor in, Tensor acc, boolean first) {
    if (isHost(in) && isHost(acc)) {
      bootstrap.reduceScatterAccumulate(in, acc, first);
      return;
    }
    check("reduceScatterAccumulate", "in", in);
    check("reduceScatterAccumulate", "acc", acc);
    Checks.bothF32("reduceScatterAccumulate", in, acc);
    long n = in.numel();
    int s = size(), r = rank();
    Checks.partOf("reduceScatterAccumulate", "acc", acc, n, r, s);
    long start = Communicator.partStart(n, r, s), len = Communicator.partLength(n, r, s);
    if (n == 0) return;
    try (Tensor inFlat = in.view(n); Tensor accFlat = acc.view(len)) {
      if (mode == ReduceMode.FAST) {
        if (first) {
          reduceScatter(inFlat, accFlat);
        } else {
          try (Tensor sum = Tensor.empty(DType.F32, device, Tier.DEVICE, len)) {
            reduceScatter(inFlat, sum);
            Ops.add(accFlat, sum, accFlat);
          }
        }
        return;
      }
      sent += (n - len) * 4;
      foldGathered(inFlat, start, len, accFlat, first, DType.F32);
    }
  }

  @Override
  public synchronized void reduceScatterAccumulateV(Tensor in, Tensor acc, long[] counts, boolean first) {
    if (isHost(in) && isHost(acc)) {
      bootstrap.reduceScatterAccumulateV(in, acc, counts, first);
      return;
    }
    check("reduceScatterAccumulateV", "in", in);
    check("reduceScatterAccumulateV", "acc", acc);
    long start = Checks.foldCountsOf("reduceScatterAccumulateV", in, acc, counts, rank(), size());
    if (in.numel() == 0) return;
    sent += (in.numel() - counts[rank()]) * 4;
    try (Tensor inFlat = in.view(in.numel()); Tensor accFlat = acc.view(acc.numel())) {
      foldGathered(inFlat, start, counts[rank()], accFlat, first, DType.F32);
    }
  }

  @Override
  public synchronized void allGather(Tensor in, Tensor out) {
    if (isHost(in) && isHost(out)) {
      bootstrap.allGather(in, out);
      return;
    }
    long n = out.numel();
    int s = size();
    long[] counts = new long[s];
    for (int r = 0; r < s; r++) counts[r] = Communicator.partLength(n, r, s);
    if (n % s == 0) {
      check("allGather", "in", in);
      check("allGather", "out", out);
      Checks.sameDtype("allGather", in, out);
      Checks.partOf("allGather", "in", in, n, rank(), s);
      if (n == 0) return;
      sent += in.numel() * (s - 1) * in.dtype().byteSize();
      NcclNative.allGather0(comm, in.address(), out.address(), n / s, in.dtype().code(), stream());
      return;
    }
    allGatherV(in, out, counts);
  }

  @Override
  public synchronized void allGatherV(Tensor in, Tensor out, long[] counts) {
    if (isHost(in) && isHost(out)) {
      bootstrap.allGatherV(in, out, counts);
      return;
    }
    check("allGatherV", "in", in);
    check("allGatherV", "out", out);
    Checks.sameDtype("allGatherV", in, out);
    Checks.countsOf("allGatherV", in, out, counts, rank(), size());
    if (out.numel() == 0) return;
    int es = in.dtype().byteSize();
    sent += in.numel() * (size() - 1) * es;
    NcclNative.group0(true);
    try {
      long off = 0;
      for (int r = 0; r < size(); r++) {
        if (counts[r] > 0) {
          long dst = out.address() + off * es;
          NcclNative.broadcast0(comm, r == rank() ? in.address() : dst, dst, counts[r], in.dtype().code(), r, stream());
        }
        off += counts[r];
      }
    } finally {
      NcclNative.group0(false);
    }
  }

  @Override
  public synchronized void broadcast(Tensor t, int root) {
    if (isHost(t)) {
      bootstrap.broadcast(t, root);
      return;
    }
    check("broadcast", "t", t);
    Checks.root("broadcast", root, size());
    if (t.numel() == 0 || size() == 1) return;
    if (rank() == root) sent += t.byteSize() * (size() - 1);
    NcclNative.broadcast0(comm, t.address(), t.address(), t.numel(), t.dtype().code(), root, stream());
  }

  @Override
  public synchronized void send(Tensor t, int dest) {
    if (isHost(t)) {
      bootstrap.send(t, dest);
      return;
    }
    check("send", "t", t);
    Checks.peer("send", "destination", dest, rank(), size());
    sent += t.byteSize();
    NcclNative.send0(comm, t.address(), t.numel(), t.dtype().code(), dest, stream());
  }

  @Override
  public synchronized void recv(Tensor t, int src) {
    if (isHost(t)) {
      bootstrap.recv(t, src);
      return;
    }
    check("recv", "t", t);
    Checks.peer("recv", "source", src, rank(), size());
    NcclNative.recv0(comm, t.address(), t.numel(), t.dtype().code(), src, stream());
  }

  /** Waits for this rank's enqueued NCCL work, then for every rank (the bootstrap's barrier). */
  @Override
  public synchronized void barrier() {
    checkOpen();
    ExecutionContext.current(device).computeStream().synchronize();
    bootstrap.barrier();
  }

  @Override
  public synchronized Communicator split(int color, int key) {
    checkOpen();
    Communicator group = bootstrap.split(color, key);
    try {
      return open(group, true, device, mode);
    } catch (RuntimeException e) {
      group.close();
      throw e;
    }
  }

  @Override
  public void abort(int code) {
    long c;
    synchronized (this) {
      c = comm;
      comm = 0;
    }
    try {
      if (c != 0) NcclNative.commDestroy0(c, true);
    } finally {
      bootstrap.abort(code);
    }
  }

  @Override
  public void close() {
    long c;
    synchronized (this) {
      c = comm;
      comm = 0;
    }
    if (c == 0) return;
    try {
      ExecutionContext.current(device).computeStream().synchronize();
      NcclNative.commDestroy0(c, false);
    } finally {
      if (ownsBootstrap) bootstrap.close();
    }
  }

  // ------------------------------------------------------------------ the deterministic fold

  /** {@link GatheredFold#fold} with NCCL's all-gather, in pieces of at most {@link #PIECE_BYTES} gathered bytes. */
  private void foldGathered(Tensor in, long start, long len, Tensor out, boolean first, DType dtype) {
    long piece = Math.max(1, PIECE_BYTES / ((long) dtype.byteSize() * size()));
    GatheredFold.fold(in, start, len, out, first, size(), piece,
        (src, dst) -> NcclNative.allGather0(comm, src.address(), dst.address(), src.numel(), dtype.code(), stream()));
  }

  // ------------------------------------------------------------------ helpers

  private long stream() {
    checkOpen();
    return ExecutionContext.current(device).computeStream().handle();
  }

  private void checkOpen() {
    if (comm == 0) throw new IllegalStateException("NCCL communicator closed: rank " + rank() + " of " + size() + " on " + device);
  }

  /** A host tensor, for the bootstrap (null is not: the device checks name it). */
  private static boolean isHost(Tensor t) {
    return t != null && !t.isClosed() && t.device().isCpu();
  }

  private void check(String op, String name, Tensor t) {
    if (t == null) throw new IllegalArgumentException(op + ": " + name + " is null");
    t.checkOpen();
    if (!t.device().equals(device) || t.tier() != Tier.DEVICE) {
      throw new IllegalArgumentException(op + ": " + name + " " + t + " must be on " + device + " (DEVICE tier) for this "
          + "NCCL communicator, or in host memory (both tensors of a call), is on " + t.device() + " / " + t.tier());
    }
    if (!t.isContiguous()) throw new IllegalArgumentException(op + ": " + name + " " + t + " must be contiguous");
  }
}

package dev.athanor.dist;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * MPI_COMM_WORLD, or a group split from it ({@link #split}), through the shim (see {@link MpiNative}). MPI counts are ints, so transfers are cut into pieces of at
 * most {@value #MAX_BYTES} bytes; {@link #reduceScatter} and {@link #allGather} take at most 2 GiB per call (their
 * displacements are ints too).
 *
 * <p>Deterministic all-reduce of {@code n} elements, per piece: each rank sends part {@code r} of its piece to rank
 * {@code r} (MPI_Alltoallv), rank {@code r} adds the parts it received in rank order ({@link RankOrderSum}) into its
 * part of the tensor, and the summed parts are all-gathered in place (MPI_Allgatherv). Each element is summed by one
 * rank in a fixed order and its bits sent to the others, so all ranks hold identical results.
 */
final class MpiCommunicator implements Communicator {
  /** The most bytes one MPI call moves per rank. */
  static final int MAX_BYTES = 1 << 30;

  private static MpiCommunicator opened;  // guarded by MpiCommunicator.class: MPI starts once per process

  private final ReduceMode mode;
  private final int handle;  // the MPI communicator's Fortran handle
  private final MpiCommunicator parent;  // null for MPI_COMM_WORLD
  private final List<MpiCommunicator> children = new ArrayList<>();  // guarded by this: freed before finalize
  private final int rank;
  private final int size;
  private final String library;
  private boolean closed;  // guarded by this
  private Tensor scratch;  // guarded by this: receive buffer of deterministic sums, kept between calls (grown as needed)

  private MpiCommunicator(ReduceMode mode, int handle, MpiCommunicator parent, int rank, int size, String library) {
    this.mode = mode;
    this.handle = handle;
    this.parent = parent;
    this.rank = rank;
    this.size = size;
    this.library = library;
  }

  static synchronized MpiCommunicator open(ReduceMode mode) {
    if (mode == null) throw new IllegalArgumentException("reduce mode is null; expected deterministic or fast");
    if (opened != null) {
      throw new IllegalStateException("MPI was already started in this process (" + opened.describe()
          + (opened.closed ? ", now finalized: MPI cannot start twice in one process)" : "); use that communicator)"));
    }
    MpiLibrary.load();
    MpiNative.init0();
    int world = MpiNative.worldHandle0();
    MpiCommunicator c = new MpiCommunicator(mode, world, null, MpiNative.rank0(world), MpiNative.size0(world),
        MpiNative.libraryVersion0());
    opened = c;
    return c;
  }

  @Override
  public int rank() {
    return rank;
  }

  @Override
  public int size() {
    return size;
  }

  @Override
  public ReduceMode mode() {
    return mode;
  }

  @Override
  public String describe() {
    return "MPI (" + library.strip() + ")" + (parent == null ? "" : " group") + ", rank " + rank + " of " + size + ", " + mode.name().toLowerCase(Locale.ROOT);
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("communicator closed (MPI finalized): " + describe());
  }

  private static boolean mpiSums(DType d) {
    return d == DType.F32 || d == DType.I32;
  }

  @Override
  public synchronized void allReduceSum(Tensor t) {
    Checks.host("allReduceSum", "t", t);
    checkOpen();
    if (size == 1 || t.numel() == 0) return;
    int es = t.dtype().byteSize();
    long n = t.numel();
    long piece = MAX_BYTES / es;
    if (mode == ReduceMode.FAST && mpiSums(t.dtype())) {
      for (long b = 0; b < n; b += piece) MpiNative.allreduceSum0(handle, t.address() + b * es, (int) Math.min(piece, n - b), t.dtype().code());
      return;
    }
    try (Tensor flat = t.view(n); Tensor scratch = scratch(t.dtype(), Math.min(n, piece) + size)) {
      for (long b = 0; b < n; b += piece) {
        long len = Math.min(piece, n - b);
        long mine = Communicator.partStart(len, rank, size);
        try (Tensor block = flat.slice(0, b, b + len);
            Tensor part = block.slice(0, mine, mine + Communicator.partLength(len, rank, size))) {
          reduceScatterDeterministic(block, part, scratch);
          int[][] cd = countsAndDispls(len, es);
          MpiNative.allgatherv0(handle, 0, cd[0][rank], block.address(), cd[0], cd[1]);
        }
      }
    }
  }

  /**
   * A receive buffer of at least {@code numel} elements of {@code dtype}: the one kept from an earlier call when it is
   * large enough (a training step's all-reduce then allocates nothing), else a new one (the old one is freed). The
   * caller closes the returned view; the buffer itself belongs to no {@link dev.athanor.tensor.Scope} and is freed by
   * {@link #close()}.
   */
  private Tensor scratch(DType dtype, long numel) {
    long bytes = Math.max(1, numel) * dtype.byteSize();
    if (scratch == null || scratch.byteSize() < bytes) {
      if (scratch != null) scratch.close();
      scratch = null;
      // raw bytes, viewed per call in the dtype asked for
      scratch = Tensor.empty(DType.I32, Device.CPU, (bytes + 3) / 4).detach();
    }
    return Tensor.wrap(scratch.storage(), dtype, new long[] {numel}, new long[] {1}, 0);
  }

  /** Byte counts and displacements of the ranks' parts of {@code n} elements of {@code es} bytes. */
  private int[][] countsAndDispls(long n, int es) {
    int[] counts = new int[size], displs = new int[size];
    for (int r = 0; r < size; r++) {
      counts[r] = Math.toIntExact(Communicator.partLength(n, r, size) * es);
      displs[r] = Math.toIntExact(Communicator.partStart(n, r, size) * es);
    }
    return new int[][] {counts, displs};
  }

  /**
   * {@code out} (this rank's part of {@code in}) = the rank-order sum of every rank's part: all-to-all into {@code
   * scratch} (at least size x part elements), then {@link RankOrderSum}. {@code out} may lie inside {@code in}.
   */
  private void reduceScatterDeterministic(Tensor in, Tensor out, Tensor scratch) {
    int es = in.dtype().byteSize();
    long myLen = out.numel();
    int[][] send = countsAndDispls(in.numel(), es);
    int[] recvCounts = new int[size], recvDispls = new int[size];
    for (int r = 0; r < size; r++) {
      recvCounts[r] = Math.toIntExact(myLen * es);
      recvDispls[r] = Math.toIntExact(r * myLen * es);
    }
    MpiNative.alltoallv0(handle, in.address(), send[0], send[1], scratch.address(), recvCounts, recvDispls);
    List<Tensor> parts = new ArrayList<>(size);
    try {
      for (int r = 0; r < size; r++) parts.add(scratch.slice(0, r * myLen, (r + 1) * myLen));
      RankOrderSum.sum(parts, out);
    } finally {
      for (Tensor p : parts) p.close();
    }
  }

  private static void fitsOneCall(String op, Tensor t) {
    if (t.byteSize() > Integer.MAX_VALUE) {
      throw new CommunicatorException(op + " of " + t.byteSize() + " bytes: more than 2 GiB in one call is not supported yet "
          + "(MPI counts are ints); split the tensor");
    }
  }

  @Override
  public synchronized void reduceScatter(Tensor in, Tensor out) {
    Checks.parts("reduceScatter", in, out, "out", out, in, rank, size);
    checkOpen();
    fitsOneCall("reduceScatter", in);
    long n = in.numel();
    if (n == 0) return;
    if (mode == ReduceMode.FAST && mpiSums(in.dtype()) && n % size == 0) {
      MpiNative.reduceScatterSum0(handle, in.address(), out.address(), Math.toIntExact(n / size), in.dtype().code());
      return;
    }
    try (Tensor inFlat = in.view(n); Tensor outFlat = out.view(out.numel());
        Tensor scratch = scratch(in.dtype(), out.numel() * size)) {
      reduceScatterDeterministic(inFlat, outFlat, scratch);
    }
  }

  @Override
  public synchronized void allGather(Tensor in, Tensor out) {
    Checks.parts("allGather", in, out, "in", in, out, rank, size);
    checkOpen();
    fitsOneCall("allGather", out);
    int es = out.dtype().byteSize();
    int[][] cd = countsAndDispls(out.numel(), es);
    boolean inPlace = in.address() == out.address() + cd[1][rank];
    MpiNative.allgatherv0(handle, inPlace ? 0 : in.address(), cd[0][rank], out.address(), cd[0], cd[1]);
  }

  /** One MPI call on a piece of a buffer. */
  @FunctionalInterface
  private interface Piece {
    void run(long address, int bytes);
  }

  /** {@code call} over {@code t}'s bytes in pieces of at most {@value #MAX_BYTES} (one empty piece for an empty tensor). */
  private static void inPieces(Tensor t, Piece call) {
    long bytes = t.byteSize(), b = 0;
    do {
      call.run(t.address() + b, (int) Math.min(MAX_BYTES, bytes - b));
      b += MAX_BYTES;
    } while (b < bytes);
  }

  @Override
  public synchronized void broadcast(Tensor t, int root) {
    Checks.host("broadcast", "t", t);
    Checks.root("broadcast", root, size);
    checkOpen();
    inPieces(t, (a, n) -> MpiNative.bcast0(handle, a, n, root));
  }

  @Override
  public synchronized void send(Tensor t, int dest) {
    Checks.host("send", "t", t);
    Checks.peer("send", "destination", dest, rank, size);
    checkOpen();
    inPieces(t, (a, n) -> MpiNative.send0(handle, a, n, dest, 0));
  }

  @Override
  public synchronized void recv(Tensor t, int src) {
    Checks.host("recv", "t", t);
    Checks.peer("recv", "source", src, rank, size);
    checkOpen();
    inPieces(t, (a, n) -> MpiNative.recv0(handle, a, n, src, 0));
  }

  @Override
  public synchronized void barrier() {
    checkOpen();
    MpiNative.barrier0(handle);
  }

  @Override
  public void abort(int code) {
    MpiNative.abort0(code);
  }

  @Override
  public Communicator split(int color, int key) {
    if (color < 0) throw new IllegalArgumentException("split: color " + color + " must be >= 0");
    MpiCommunicator child;
    synchronized (this) {
      checkOpen();
      int h = MpiNative.split0(handle, color, key);
      child = new MpiCommunicator(mode, h, this, MpiNative.rank0(h), MpiNative.size0(h), library);
      children.add(child);
    }
    return child;
  }

  /**
   * A group ({@link #split}): MPI_Comm_free (collective over the group). The world: frees the groups still open, then
   * MPI_Finalize. Idempotent.
   */
  @Override
  public void close() {
    List<MpiCommunicator> open;
    synchronized (this) {
      if (closed) return;
      open = new ArrayList<>(children);
    }
    for (MpiCommunicator c : open) c.close();  // outside this lock: a child's close takes the parent's to unregister
    synchronized (this) {
      closed = true;
      if (scratch != null) scratch.close();
      scratch = null;
      if (parent == null) {
        MpiNative.finalize0();
      } else {
        MpiNative.free0(handle);
      }
    }
    if (parent != null) {
      synchronized (parent) {
        parent.children.remove(this);
      }
    }
  }
}

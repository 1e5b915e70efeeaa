package dev.athanor.dist;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * An MPI communicator through the shim (see {@link MpiNative}): MPI_COMM_WORLD ({@link #open}), or a process group
 * split from it ({@link #split}; closing a group frees it, closing the world frees its open groups and finalizes MPI). MPI counts are ints, so transfers are cut into pieces of at
 * most {@value #MAX_BYTES} bytes; {@link #reduceScatter} and {@link #allGather} take at most 2 GiB per call (their
 * displacements are ints too).
 *
 * <p>Deterministic all-reduce of {@code n} elements, per piece: each rank sends part {@code r} of its piece to rank
 * {@code r} (MPI_Alltoallv), rank {@code r} adds the parts it received in rank order ({@link RankOrderSum}) into its
 * part of the tensor, and the summed parts are all-gathered in place (MPI_Allgatherv). Each element is summed by one
 * rank in a fixed order and its bits sent to the others, so all ranks hold identical results.
 *
 * <p>{@link #sentBytes}: this communicator's calls (a group counts its own) count what they hand MPI to deliver to the
 * other ranks: the all-to-all's parts for the other ranks, the all-gather's own part once per other rank, a send's
 * bytes, the root's broadcast once per other rank. Fast mode's MPI_Allreduce and MPI_Reduce_scatter are counted as the
 * deterministic algorithm's exchanges of the same sizes (MPI chooses its own algorithm; bandwidth-optimal ones move
 * the same volume).
 */
final class MpiCommunicator implements Communicator {
  /** The most bytes one MPI call moves per rank. */
  static final int MAX_BYTES = 1 << 30;

  private static MpiCommunicator opened;  // guarded by MpiCommunicator.class: MPI starts once per process
  /**
   * Held by every call into MPI on any communicator of this process (the world and its groups): MPI was initialized
   * with MPI_THREAD_SERIALIZED, so threads may take turns calling it (e.g. data parallel's communication thread and the
   * training thread) but never call at once. Also guards each communicator's mutable fields.
   */
  private static final Object CALLS = new Object();

  private final ReduceMode mode;
  private final int handle;  // MpiNative's communicator handle; MpiNative.WORLD for the world
  private final MpiCommunicator world;  // null for the world itself
  private final List<MpiCommunicator> groups = new ArrayList<>();  // the world's open groups, guarded by the world
  private final int rank;
  private final int size;
  private final String library;
  private boolean closed;  // guarded by CALLS
  private Tensor scratch;  // guarded by CALLS: receive buffer of deterministic sums, kept between calls (grown as needed)
  private long sent;  // guarded by CALLS: see sentBytes

  private MpiCommunicator(ReduceMode mode, int handle, MpiCommunicator world, int rank, int size, String library) {
    this.mode = mode;
    this.handle = handle;
    this.world = world;
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
    MpiCommunicator c = new MpiCommunicator(mode, MpiNative.WORLD, null, MpiNative.rank0(MpiNative.WORLD),
        MpiNative.size0(MpiNative.WORLD), MpiNative.libraryVersion0());
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
    return "MPI (" + library.strip() + "), rank " + rank + " of " + size + (world == null ? "" : " in a group of world rank "
        + world.rank) + ", " + mode.name().toLowerCase(Locale.ROOT);
  }

  @Override
  public Communicator split(int color, int key) {
    synchronized (CALLS) {
      if (color < 0) throw new IllegalArgumentException("split color " + color + " must be >= 0");
      checkOpen();
      MpiCommunicator w = world == null ? this : world;
      int h = MpiNative.split0(handle, color, key);
      MpiCommunicator g = new MpiCommunicator(mode, h, w, MpiNative.rank0(h), MpiNative.size0(h), library);
      synchronized (w.groups) {
        w.groups.add(g);
      }
      return g;
    }
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("communicator closed (" + (world == null ? "MPI finalized" : "group freed") + "): "
        + describe());
  }

  private static boolean mpiSums(DType d) {
    return d == DType.F32 || d == DType.I32;
  }

  @Override
  public void allReduceSum(Tensor t) {
    synchronized (CALLS) {
      Checks.host("allReduceSum", "t", t);
      checkOpen();
      if (size == 1 || t.numel() == 0) return;
      int es = t.dtype().byteSize();
      long n = t.numel();
      long piece = MAX_BYTES / es;
      for (long b = 0; b < n; b += piece) {  // per piece: the others' parts to them, then this rank's sums to each of them
        long len = Math.min(piece, n - b), mine = Communicator.partLength(len, rank, size);
        sent += (len - mine + mine * (size - 1)) * es;
      }
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
    long myLen = out.numel();
    exchangeParts(in, myLen, scratch);
    List<Tensor> parts = new ArrayList<>(size);
    try {
      for (int r = 0; r < size; r++) parts.add(scratch.slice(0, r * myLen, (r + 1) * myLen));
      RankOrderSum.sum(parts, out);
    } finally {
      for (Tensor p : parts) p.close();
    }
  }

  /** Every rank's part {@code r} of {@code in} to rank {@code r}: {@code scratch} = this rank's part from rank 0, 1, ... */
  private void exchangeParts(Tensor in, long myLen, Tensor scratch) {
    int es = in.dtype().byteSize();
    int[][] send = countsAndDispls(in.numel(), es);
    int[] recvCounts = new int[size], recvDispls = new int[size];
    for (int r = 0; r < size; r++) {
      recvCounts[r] = Math.toIntExact(myLen * es);
      recvDispls[r] = Math.toIntExact(r * myLen * es);
    }
    MpiNative.alltoallv0(handle, in.address(), send[0], send[1], scratch.address(), recvCounts, recvDispls);
  }

  private static void fitsOneCall(String op, Tensor t) {
    if (t.byteSize() > Integer.MAX_VALUE) {
      throw new CommunicatorException(op + " of " + t.byteSize() + " bytes: more than 2 GiB in one call is not supported yet "
          + "(MPI counts are ints); split the tensor");
    }
  }

  @Override
  public void reduceScatter(Tensor in, Tensor out) {
    synchronized (CALLS) {
      Checks.parts("reduceScatter", in, out, "out", out, in, rank, size);
      checkOpen();
      fitsOneCall("reduceScatter", in);
      long n = in.numel();
      if (n == 0) return;
      sent += (n - out.numel()) * in.dtype().byteSize();  // the other ranks' parts
      if (mode == ReduceMode.FAST && mpiSums(in.dtype()) && n % size == 0) {
        MpiNative.reduceScatterSum0(handle, in.address(), out.address(), Math.toIntExact(n / size), in.dtype().code());
        return;
      }
      try (Tensor inFlat = in.view(n); Tensor outFlat = out.view(out.numel());
          Tensor scratch = scratch(in.dtype(), out.numel() * size)) {
        reduceScatterDeterministic(inFlat, outFlat, scratch);
      }
    }
  }

  @Override
  public void reduceScatterAccumulate(Tensor in, Tensor acc, boolean first) {
    synchronized (CALLS) {
      Checks.parts("reduceScatterAccumulate", in, acc, "acc", acc, in, rank, size);
      checkOpen();
      fitsOneCall("reduceScatterAccumulate", in);
      if (acc.dtype() != DType.F32) throw new IllegalArgumentException("reduceScatterAccumulate: acc is " + acc + "; need F32");
      long n = in.numel();
      if (n == 0) return;
      try (Tensor inFlat = in.view(n); Tensor accFlat = acc.view(acc.numel())) {
        if (mode == ReduceMode.FAST) {
          if (first) {
            reduceScatter(inFlat, accFlat);
          } else {
            try (Tensor sum = Tensor.empty(DType.F32, Device.CPU, accFlat.numel())) {
              reduceScatter(inFlat, sum);
              dev.athanor.ops.Ops.add(accFlat, sum, accFlat);
            }
          }
          return;
        }
        sent += (n - acc.numel()) * 4;  // the other ranks' parts (fast mode's reduceScatter above counts its own)
        long[] counts = new long[size];
        for (int r = 0; r < size; r++) counts[r] = Communicator.partLength(n, r, size);
        fold(inFlat, accFlat, counts, first);
      }
    }
  }

  @Override
  public void reduceScatterAccumulateV(Tensor in, Tensor acc, long[] counts, boolean first) {
    synchronized (CALLS) {
      Checks.foldCounts("reduceScatterAccumulateV", in, acc, counts, rank, size);
      checkOpen();
      fitsOneCall("reduceScatterAccumulateV", in);
      if (in.numel() == 0) return;
      sent += (in.numel() - counts[rank]) * 4;  // the other ranks' parts
      try (Tensor inFlat = in.view(in.numel()); Tensor accFlat = acc.view(acc.numel())) {
        fold(inFlat, accFlat, counts, first);
      }
    }
  }

  /**
   * The deterministic fold of {@link #reduceScatterAccumulate}: rank {@code r}'s part is the {@code counts[r]}
   * elements of {@code in} after the parts of the ranks before it; each rank receives its part of every rank's {@code
   * in} and folds them into {@code acc} in rank order. In pieces of at most P elements of each part, so the receive
   * buffer is size x P, not the whole of n.
   */
  private void fold(Tensor inFlat, Tensor accFlat, long[] counts, boolean first) {
    long[] starts = new long[size];
    for (int r = 1; r < size; r++) starts[r] = starts[r - 1] + counts[r - 1];
    long piece = foldPiece();
    long maxLen = 0;
    for (int r = 0; r < size; r++) maxLen = Math.max(maxLen, counts[r]);
    try (Tensor scratch = scratch(DType.F32, Math.min(piece, maxLen) * size)) {
      for (long j = 0; j * piece < maxLen; j++) {
        long mine = pieceLength(counts[rank], j, piece);
        int[] sendCounts = new int[size], sendDispls = new int[size], recvCounts = new int[size], recvDispls = new int[size];
        for (int r = 0; r < size; r++) {
          sendCounts[r] = Math.toIntExact(pieceLength(counts[r], j, piece) * 4);
          sendDispls[r] = Math.toIntExact(Math.min(starts[r] + counts[r], starts[r] + j * piece) * 4);
          recvCounts[r] = Math.toIntExact(mine * 4);
          recvDispls[r] = Math.toIntExact(r * mine * 4);
        }
        MpiNative.alltoallv0(handle, inFlat.address(), sendCounts, sendDispls, scratch.address(), recvCounts, recvDispls);
        if (mine == 0) continue;
        List<Tensor> parts = new ArrayList<>(size);
        try (Tensor accPiece = accFlat.slice(0, j * piece, j * piece + mine)) {
          for (int r = 0; r < size; r++) parts.add(scratch.slice(0, r * mine, (r + 1) * mine));
          RankOrderSum.fold(parts, accPiece, first);
        } finally {
          for (Tensor p : parts) p.close();
        }
      }
    }
  }

  /** Elements per piece of {@link #reduceScatterAccumulate}: 2^20 (4 MiB of F32), or the system property {@value #FOLD_PIECE}. */
  private static long foldPiece() {
    long p = Long.getLong(FOLD_PIECE, 1L << 20);
    if (p < 1) throw new IllegalArgumentException(FOLD_PIECE + " = " + p + " must be >= 1");
    return p;
  }

  /** The system property that sets {@link #reduceScatterAccumulate}'s piece length in elements (tests cut small pieces). */
  static final String FOLD_PIECE = "athanor.dist.foldPieceElements";

  /** The length of piece {@code j} (pieces of {@code piece} elements) of a part of {@code len} elements: 0 past its end. */
  private static long pieceLength(long len, long j, long piece) {
    return Math.max(0, Math.min(piece, len - j * piece));
  }

  @Override
  public void allGather(Tensor in, Tensor out) {
    synchronized (CALLS) {
      Checks.parts("allGather", in, out, "in", in, out, rank, size);
      checkOpen();
      fitsOneCall("allGather", out);
      int es = out.dtype().byteSize();
      int[][] cd = countsAndDispls(out.numel(), es);
      boolean inPlace = in.address() == out.address() + cd[1][rank];
      sent += (long) cd[0][rank] * (size - 1);
      MpiNative.allgatherv0(handle, inPlace ? 0 : in.address(), cd[0][rank], out.address(), cd[0], cd[1]);
    }
  }

  @Override
  public void allGatherV(Tensor in, Tensor out, long[] counts) {
    synchronized (CALLS) {
      Checks.counts("allGatherV", in, out, counts, rank, size);
      checkOpen();
      fitsOneCall("allGatherV", out);
      int es = out.dtype().byteSize();
      int[] bytes = new int[size], displs = new int[size];
      long at = 0;
      for (int r = 0; r < size; r++) {
        bytes[r] = Math.toIntExact(counts[r] * es);
        displs[r] = Math.toIntExact(at * es);
        at += counts[r];
      }
      boolean inPlace = in.address() == out.address() + displs[rank];
      sent += (long) bytes[rank] * (size - 1);
      MpiNative.allgatherv0(handle, inPlace ? 0 : in.address(), bytes[rank], out.address(), bytes, displs);
    }
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
  public void broadcast(Tensor t, int root) {
    synchronized (CALLS) {
      Checks.host("broadcast", "t", t);
      Checks.root("broadcast", root, size);
      checkOpen();
      if (rank == root) sent += t.byteSize() * (size - 1);
      inPieces(t, (a, n) -> MpiNative.bcast0(handle, a, n, root));
    }
  }

  @Override
  public void send(Tensor t, int dest) {
    synchronized (CALLS) {
      Checks.host("send", "t", t);
      Checks.peer("send", "destination", dest, rank, size);
      checkOpen();
      sent += t.byteSize();
      inPieces(t, (a, n) -> MpiNative.send0(handle, a, n, dest, 0));
    }
  }

  @Override
  public long sentBytes() {
    synchronized (CALLS) {
      return sent;
    }
  }

  @Override
  public void recv(Tensor t, int src) {
    synchronized (CALLS) {
      Checks.host("recv", "t", t);
      Checks.peer("recv", "source", src, rank, size);
      checkOpen();
      inPieces(t, (a, n) -> MpiNative.recv0(handle, a, n, src, 0));
    }
  }

  @Override
  public void barrier() {
    synchronized (CALLS) {
      checkOpen();
      MpiNative.barrier0(handle);
    }
  }

  @Override
  public void abort(int code) {
    MpiNative.abort0(code);
  }

  /**
   * A group: MPI_Comm_free (collective over the group). The world: frees the groups still open, in the order they
   * were made (every rank made them in the same order), then MPI_Finalize.
   */
  @Override
  public void close() {
    synchronized (CALLS) {
      if (closed) return;
      if (world == null) {
        List<MpiCommunicator> open;
        synchronized (groups) {
          open = new ArrayList<>(groups);
        }
        for (MpiCommunicator g : open) g.close();
      }
      closed = true;
      if (scratch != null) scratch.close();
      scratch = null;
      if (world == null) {
        MpiNative.finalize0();
      } else {
        synchronized (world.groups) {
          world.groups.remove(this);
        }
        if (!world.closed) MpiNative.free0(handle);
      }
    }
  }
}

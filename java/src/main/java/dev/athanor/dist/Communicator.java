package dev.athanor.dist;

import dev.athanor.tensor.Tensor;

/**
 * The processes of a distributed run and the collectives between them, on host tensors (contiguous, CPU, HOST or
 * HOST_PINNED tier; F32, BF16, F16, I32). Every rank must call the same collectives in the same order with matching
 * sizes, as in MPI.
 *
 * <p>Partitions: {@link #reduceScatter} and {@link #allGather} cut {@code n} elements into {@link #size()} contiguous
 * parts, rank {@code r} owning {@code [partStart(n, r, size), partStart(n, r + 1, size))}: any {@code n} works, parts
 * differ in length by at most one element.
 *
 * <p>Sums (see {@link ReduceMode}): in deterministic mode every element's sum is {@code x_0 + x_1 + ... + x_{size-1}}
 * added left to right, in F32 for F32 tensors, in F32 and rounded once for BF16 and F16 (see {@link RankOrderSum}), so
 * every rank holds identical bits. I32 sums are exact (two's complement, wrapping) in either mode.
 *
 * <p>Implementations: {@link #single()} (one process, no library) and {@link #mpi(ReduceMode)} (MPI through the shim
 * library; one per process, for the process's lifetime). An NCCL implementation for CUDA tensors is the next one.
 * Instances are thread-safe in that calls are serialized; they are not meant to be shared between concurrent
 * collectives.
 */
public interface Communicator extends AutoCloseable {
  /** This process's rank, {@code 0 <= rank < size}. */
  int rank();

  /** The number of processes. */
  int size();

  /** How sums are formed. */
  ReduceMode mode();

  /** Names the implementation and library, e.g. {@code "MPI (Open MPI v4.1.4), rank 0 of 2, deterministic"}. */
  String describe();

  /** Replaces {@code t} on every rank by the element-wise sum over ranks. */
  void allReduceSum(Tensor t);

  /**
   * {@code out} = this rank's part ({@link #partStart}) of the element-wise sum over ranks of {@code in}; {@code in}
   * holds {@code n} elements on every rank and {@code out} this rank's part length.
   */
  void reduceScatter(Tensor in, Tensor out);

  /** {@code out} ({@code n} elements) = the ranks' {@code in} (each its part's length, {@link #partStart}) in rank order. */
  void allGather(Tensor in, Tensor out);

  /** Copies {@code t} of rank {@code root} into {@code t} of every other rank. */
  void broadcast(Tensor t, int root);

  /** Sends {@code t} to rank {@code dest} (blocks until it may be reused); {@code dest} calls {@link #recv}. */
  void send(Tensor t, int dest);

  /** Receives into {@code t} (same byte size as what is sent) from rank {@code src}. */
  void recv(Tensor t, int src);

  /** Returns once every rank has called it. */
  void barrier();

  /**
   * Ends every process of the run at once with {@code code} (MPI_Abort), for a rank that fails while others may be
   * waiting for it in a collective. Does nothing in one process (the caller just returns or throws).
   */
  void abort(int code);

  /**
   * A group of the processes of this communicator with the same {@code color} ({@code >= 0}), ranked by {@code key}
   * (ties by rank here), as MPI_Comm_split: a collective over this communicator, every rank calling it. The group has
   * this communicator's reduce mode; close it (a collective over the group) when done; closing this communicator closes
   * the groups split from it that are still open first.
   */
  Communicator split(int color, int key);

  /** Ends this process's part in the run (MPI_Finalize, collective), or frees a group ({@link #split}); idempotent. */
  @Override
  void close();

  /** The first element of rank {@code rank}'s part of {@code n} elements cut into {@code size} parts. */
  static long partStart(long n, int rank, int size) {
    if (n < 0) throw new IllegalArgumentException("n = " + n + " must be >= 0");
    if (size < 1 || rank < 0 || rank > size) {
      throw new IllegalArgumentException("rank " + rank + " / size " + size + ": need size >= 1 and 0 <= rank <= size");
    }
    try {
      return Math.multiplyExact(n, (long) rank) / size;
    } catch (ArithmeticException overflow) {
      return java.math.BigInteger.valueOf(n).multiply(java.math.BigInteger.valueOf(rank))
          .divide(java.math.BigInteger.valueOf(size)).longValueExact();
    }
  }

  /** The length of rank {@code rank}'s part of {@code n} elements cut into {@code size} parts. */
  static long partLength(long n, int rank, int size) {
    return partStart(n, rank + 1, size) - partStart(n, rank, size);
  }

  /** The communicator of a single process: rank 0 of 1; collectives are copies, sends have no peer. */
  static Communicator single() {
    return new SingleProcessCommunicator(ReduceMode.DETERMINISTIC);
  }

  /**
   * MPI_COMM_WORLD through the shim library, loaded now: initializes MPI (once per process; after {@link #close()}
   * MPI cannot start again). Throws {@link CommunicatorException} naming what to install when the shim or Open MPI is
   * missing.
   */
  static Communicator mpi(ReduceMode mode) {
    return MpiCommunicator.open(mode);
  }
}

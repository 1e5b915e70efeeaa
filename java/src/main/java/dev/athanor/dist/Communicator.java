package dev.athanor.dist;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;

/**
 * The processes of a distributed run and the collectives between them, on host tensors (contiguous, CPU, HOST or
 * HOST_PINNED tier; F32, BF16, F16, I32), and on CUDA tensors for {@link #nccl} and {@link #staged}. Every rank must call the same collectives in the same order with matching
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
 * <p>Implementations: {@link #single()} (one process, no library), {@link #mpi(ReduceMode)} (MPI through the shim
 * library; one per process, for the process's lifetime), and for CUDA tensors {@link #nccl} (NCCL, bootstrapped over a
 * host communicator, which keeps serving host tensors) and {@link #staged} (a host communicator that copies CUDA
 * tensors through host memory).
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

  /**
   * Gradient accumulation into a shard (ZeRO 2): {@code acc} (F32, this rank's part length of {@code in}'s {@code n}
   * elements) = {@code ((acc + in_0) + in_1) + ... + in_{size-1}} over this rank's part of every rank's {@code in},
   * added left to right, accumulator first; with {@code first} the accumulator is not read: {@code acc = (in_0 + in_1) +
   * ...} (a copy for one rank, never {@code 0 + x}, which would change the sign of a zero). In deterministic mode this
   * is the fold one process forms over the micro-batches in the global order, so its bits equal one process's; fast
   * mode adds MPI's sum of the ranks to the accumulator.
   */
  void reduceScatterAccumulate(Tensor in, Tensor acc, boolean first);

  /**
   * {@link #reduceScatterAccumulate} with a count per rank: rank {@code r}'s part of {@code in} is the {@code
   * counts[r]} elements after the parts of the ranks before it (0 allowed); {@code acc} (F32) holds {@code
   * counts[rank()]} elements, and every rank passes the same counts. The fold is the deterministic one in either mode:
   * {@code ((acc + in_0) + in_1) + ...}, or {@code (in_0 + in_1) + ...} with {@code first}. This is how ZeRO 3 folds
   * one unit's micro-batch gradient into the shards of the owners it straddles.
   */
  void reduceScatterAccumulateV(Tensor in, Tensor acc, long[] counts, boolean first);

  /** {@code out} ({@code n} elements) = the ranks' {@code in} (each its part's length, {@link #partStart}) in rank order. */
  void allGather(Tensor in, Tensor out);

  /**
   * All-gather with a count per rank (MPI_Allgatherv): {@code out} = rank 0's {@code in}, then rank 1's, ... in rank
   * order, rank {@code r} contributing {@code counts[r]} elements (0 allowed); {@code in} holds {@code counts[rank()]}
   * elements and {@code out} their sum. Every rank passes the same counts. {@code in} may be {@code out}'s slice at this
   * rank's offset (in place). This is how ZeRO 3 gathers a unit's weights from owners whose shards it straddles.
   */
  void allGatherV(Tensor in, Tensor out, long[] counts);

  /** Copies {@code t} of rank {@code root} into {@code t} of every other rank. */
  void broadcast(Tensor t, int root);

  /** Sends {@code t} to rank {@code dest} (blocks until it may be reused); {@code dest} calls {@link #recv}. */
  void send(Tensor t, int dest);

  /** Receives into {@code t} (same byte size as what is sent) from rank {@code src}. */
  void recv(Tensor t, int src);

  /** Returns once every rank has called it. */
  void barrier();

  /**
   * The bytes of this rank's data that its calls so far delivered to other ranks, counted once per receiving rank:
   * what the collectives move out of this process, as opposed to the size of the tensors handed to them. Per call, on
   * a group of {@code s} ranks where this rank owns part {@code p} ({@link #partStart}) of {@code n} elements: {@link
   * #send} its bytes; {@link #broadcast} from the root its bytes × (s − 1); {@link #allGather} and {@link #allGatherV}
   * the rank's own contribution × (s − 1); {@link #reduceScatter} and {@link #reduceScatterAccumulate} the other ranks'
   * parts, {@code n − p}; {@link #allReduceSum} a reduce-scatter then an all-gather of the sums, {@code (n − p) + p (s −
   * 1)} (per piece where an implementation cuts long tensors), i.e. {@code 2 (s − 1)/s} of the tensor, a ring's
   * volume. {@link #recv} and {@link #barrier} deliver nothing. One process delivers nothing: 0.
   */
  default long sentBytes() {
    return 0;
  }

  /**
   * Process groups (MPI_Comm_split), a collective: the ranks that pass the same {@code color} ({@code >= 0}) form a
   * new communicator, ranked by {@code key} (ties by rank here). The group is closed (freed) by its owner before this
   * communicator; closing the world frees the groups still open. E.g. {@link ParallelGrid} makes the data-,
   * tensor- and pipeline-parallel groups of a grid. Implementations that cannot split say so.
   */
  default Communicator split(int color, int key) {
    throw new UnsupportedOperationException(describe() + " cannot be split into process groups");
  }

  /**
   * Ends every process of the run at once with {@code code} (MPI_Abort), for a rank that fails while others may be
   * waiting for it in a collective. Does nothing in one process (the caller just returns or throws).
   */
  void abort(int code);

  /** Ends this process's part in the run (MPI_Finalize, collective); idempotent. */
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

  /**
   * The host bytes the MPI communicator keeps as scratch after a deterministic {@link #allReduceSum} of a host tensor
   * of {@code numel} elements of {@code dtype} over {@code size} ranks (a piece of at most 1 GiB at a time, plus one
   * element a rank); 0 for one rank.
   */
  static long hostReduceScratchBytes(dev.athanor.tensor.DType dtype, long numel, int size) {
    if (size <= 1 || numel == 0) return 0;
    long piece = MpiCommunicator.MAX_BYTES / dtype.byteSize();
    return (Math.min(numel, piece) + size) * dtype.byteSize();
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

  /**
   * NCCL between the CUDA devices of {@code bootstrap}'s ranks (a collective: every rank calls it, each with its own
   * {@code device}; NCCL needs one GPU per rank): rank 0 makes NCCL's unique id and {@code bootstrap} broadcasts it.
   * CUDA tensors of {@code device} go to NCCL, host tensors to {@code bootstrap}. libnccl.so.2 is loaded now (see
   * {@link NcclNative}); a missing library is a {@link CommunicatorException} naming where it looked and what to
   * install. Closing the result leaves {@code bootstrap} open (its owner closes it after).
   */
  static Communicator nccl(Communicator bootstrap, Device device, ReduceMode mode) {
    return NcclCommunicator.open(bootstrap, false, device, mode);
  }

  /** {@link #nccl(Communicator, Device, ReduceMode)}; with {@code closeBootstrap} closing the result closes it too. */
  static Communicator nccl(Communicator bootstrap, Device device, ReduceMode mode, boolean closeBootstrap) {
    return NcclCommunicator.open(bootstrap, closeBootstrap, device, mode);
  }

  /**
   * {@code host} (e.g. {@link #mpi}) taking CUDA tensors too, staged through host memory: the same bits as {@code host}
   * at the cost of copies across the bus. For ranks that share a GPU or have no NCCL. Closing the result leaves {@code
   * host} open.
   */
  static Communicator staged(Communicator host) {
    return new StagedCommunicator(host, false);
  }

  /** {@link #staged(Communicator)}; with {@code closeHost} closing the result closes {@code host} too. */
  static Communicator staged(Communicator host, boolean closeHost) {
    return new StagedCommunicator(host, closeHost);
  }
}

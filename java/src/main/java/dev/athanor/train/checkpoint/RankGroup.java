package dev.athanor.train.checkpoint;

import java.util.Objects;

/**
 * The processes of a multi-process run as its checkpoints see them: this process's rank, how many there are, the
 * writer's layout (data-parallel replicas, tensor-parallel ranks and pipeline stages, in {@code
 * dev.athanor.dist.ParallelGrid}'s order: stage {@code rank / (size / pp)}, replica {@code (rank / tp) mod dp},
 * tensor-parallel rank {@code rank mod tp}) and a barrier over all of them (a collective). Every rank of a run with more
 * than one process writes its own part of each checkpoint (format version 3, see {@code Shards}): the replicas of one
 * stage cut that stage's state between them (with tensor parallelism: each its tensor-parallel rank's part).
 *
 * @param rank this process, 0 to {@code size - 1}
 * @param size the number of processes (the world size)
 * @param dp the data-parallel degree
 * @param tp the tensor-parallel degree (1: no tensor parallelism)
 * @param pp the pipeline stages (1: every rank holds the whole model)
 * @param zero the ZeRO stage (0: every rank keeps every moment; 1: each keeps its shard's)
 * @param barrier returns once every rank has called it
 */
public record RankGroup(int rank, int size, int dp, int tp, int pp, int zero, Runnable barrier) {
  public RankGroup {
    if (size < 1 || rank < 0 || rank >= size) {
      throw new IllegalArgumentException("rank " + rank + " of " + size + ": need size >= 1 and 0 <= rank < size");
    }
    if (dp < 1 || size % dp != 0) throw new IllegalArgumentException("dp " + dp + " does not divide the world size " + size);
    if (tp < 1 || pp < 1 || size != (long) dp * tp * pp) {
      throw new IllegalArgumentException("dp " + dp + " x tp " + tp + " x pp " + pp + " is not the world size " + size);
    }
    if (zero < 0) throw new IllegalArgumentException("zero must be >= 0, got " + zero);
    Objects.requireNonNull(barrier, "barrier");
  }

  /** The processes of a run without pipeline stages (every rank holds the whole model). */
  public RankGroup(int rank, int size, int dp, int zero, Runnable barrier) {
    this(rank, size, dp, 1, 1, zero, barrier);
  }

  /** This rank's tensor-parallel rank, 0 to {@code tp - 1}. */
  public int tpRank() {
    return rank % tp;
  }

  /** This rank's data-parallel replica, 0 to {@code dp - 1}. */
  public int replica() {
    return (rank / tp) % dp;
  }

  /**
   * The part of {@code n} flat elements (the state of this rank's model or stage) this rank writes: the same cut as a
   * ZeRO 1 shard over the replicas ({@code n × replica / dp}).
   */
  public dev.athanor.params.Range part(long n) {
    return cut(n, replica(), dp);
  }

  /** Part {@code r} of {@code n} elements cut into {@code parts} nearly equal contiguous parts: {@code [n r / parts, n (r + 1) / parts)}. */
  static dev.athanor.params.Range cut(long n, int r, int parts) {
    return new dev.athanor.params.Range(at(n, r, parts), at(n, r + 1, parts));
  }

  private static long at(long n, int r, int parts) {
    return java.math.BigInteger.valueOf(n).multiply(java.math.BigInteger.valueOf(r))
        .divide(java.math.BigInteger.valueOf(parts)).longValueExact();
  }
}

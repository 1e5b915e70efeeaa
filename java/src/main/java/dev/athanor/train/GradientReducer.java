package dev.athanor.train;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;
import java.util.List;

/**
 * The gradient-reduction phase of a training step: after every micro-batch's gradient has been accumulated and
 * before clipping, combine the step's gradient across replicas (data parallelism) in place. A single process has
 * nothing to combine.
 */
@FunctionalInterface
public interface GradientReducer extends AutoCloseable {
  /**
   * Reduces the step's gradient, held in {@code gradRole} of {@code store}, in place (after {@link #startDuringBackward}
   * returned true: waits for the reduction it started).
   */
  void reduce(ParameterStore store, Role gradRole);

  /**
   * Reduces a step's gradient held outside the store in place: {@code grad} (F32, the store's whole flat layout; the
   * optimizer on the host's copy or sum of it in host memory), summed across replicas as {@link #reduce(ParameterStore,
   * Role)} sums the store's. One process: nothing.
   */
  default void reduce(Tensor grad) {}

  /**
   * Called before the backward of a step's last micro-batch, whose gradient the backward forms in {@code microGrad};
   * the step's gradient is {@code stepGrad} (the same role without accumulation). A reducer that returns true reduces
   * the step's gradient during that backward, unit by unit as each unit's gradient completes, and adds each unit's
   * {@code microGrad} into {@code stepGrad} first when they differ (the trainer then does not {@link
   * Trainer#accumulate} that micro-batch); {@link #reduce} then waits for it. Default: false (the reduction runs after
   * the backward).
   */
  default boolean startDuringBackward(ParameterStore store, Role microGrad, Role stepGrad) {
    return false;
  }

  /** The step failed after {@link #startDuringBackward}: forget what it started. Default: nothing. */
  default void abandonStep() {}

  /** Releases what the reducer holds (e.g. a communication thread); the trainer closes it with itself. Default: nothing. */
  @Override
  default void close() {}

  /**
   * How many replicas take part: each scales its micro-batches' losses by {@code 1 / (accum × replicas)}, so that
   * {@link #reduce} forms the mean over all micro-batches of all replicas as a plain sum. 1 in one process.
   */
  default int replicas() {
    return 1;
  }

  /**
   * The losses of the step's micro-batches of every replica in the global micro-batch order, given this replica's
   * (a collective: every replica calls it once per step, after {@link #reduce}). One process: {@code local} itself.
   */
  default float[] gatherLosses(float[] local) {
    return local;
  }

  /**
   * After the optimizer step (a collective when replicas take part): with a sharded optimizer (ZeRO 1), gathers the
   * parameters the other replicas updated. One process, or an optimizer over everything: nothing.
   */
  default void afterUpdate(ParameterStore store) {}

  /**
   * ZeRO 1 with the optimizer on the host: {@code range} (a unit's elements) of the compute weights ({@link
   * Role#WEIGHT}, where the model computes) made whole from each replica's part in its optimizer shard, a collective
   * called by every replica for the same ranges in the same order; nothing with one replica.
   */
  default void gatherWeights(ParameterStore store, Range range) {
    if (replicas() > 1) throw new UnsupportedOperationException("this reducer cannot gather the replicas' weights");
  }

  /**
   * A sharded optimizer's (ZeRO 1) moments of the flat elements {@code range}, for a checkpoint (a collective when
   * replicas take part: every replica calls it with the same range): replica 0 gets every replica's part of them in
   * {@code m} and {@code v} (F32, {@code range.length()} elements each), the others pass null and only send theirs.
   * One process: this optimizer's part.
   */
  default void gatherMoments(ParameterStore store, AdamW optimizer, Range range, Tensor m, Tensor v) {
    if (m != null) optimizer.getShardMoments(range, m, v);
  }

  /**
   * The global norm of the step's gradient in {@code gradRole} (for clipping; every replica gets the same value). One
   * process, or replicas of the whole model: the norm of the store's flat gradient; tensor parallelism adds its ranks'
   * parts.
   */
  default float gradientNorm(ParameterStore store, Role gradRole) {
    return Ops.globalNorm(List.of(store.flat(gradRole)));
  }

  /**
   * ZeRO 2, after each micro-batch's backward: adds this replica's part ({@code shard}) of every replica's micro-batch
   * gradient in {@code gradRole} into {@code acc} (F32, {@code shard.length()} elements), accumulator first and then the
   * replicas in order; with {@code first} (the step's first micro-batch) the accumulator is overwritten, not added to. A
   * collective when replicas take part. One process: {@code acc = acc + g} (or a copy of {@code g}) over {@code shard}.
   */
  default void accumulateShard(ParameterStore store, Role gradRole, Range shard, Tensor acc, boolean first) {
    try (Tensor g = store.slice(gradRole, shard)) {
      if (first) {
        acc.copyFrom(g);
      } else {
        dev.athanor.ops.Ops.add(acc, g, acc);
      }
    }
  }

  /**
   * ZeRO 2: the global L2 norm of the step's gradient of which this replica holds {@code shard} in {@code grad}, with
   * the bits {@link dev.athanor.ops.Ops#globalNorm} gives over the whole gradient (a collective when replicas take
   * part). One process: {@code shard} must be the whole store.
   */
  default float shardedNorm(ParameterStore store, Range shard, Tensor grad) {
    if (!shard.equals(store.all())) throw new IllegalStateException("one process holds the whole gradient, not " + shard);
    return dev.athanor.ops.Ops.globalNorm(java.util.List.of(grad));
  }

  /** Reads elements of a shard's gradient kept outside memory (ZeRO 3 on DISK) into a new host tensor the caller closes. */
  @FunctionalInterface
  interface ShardReader {
    /** The gradient's elements {@code range} (inside the shard; F32, 1-D, {@code range.length()} elements). */
    Tensor read(Range range);
  }

  /**
   * {@link #shardedNorm(ParameterStore, Range, Tensor)} of a shard's gradient read through {@code grad} one {@link
   * dev.athanor.ops.Ops#NORM_CHUNK} at a time (at most one chunk's elements in memory), with the same bits. One process:
   * {@code shard} must be the whole store.
   */
  default float shardedNorm(ParameterStore store, Range shard, ShardReader grad) {
    if (!shard.equals(store.all())) throw new IllegalStateException("one process holds the whole gradient, not " + shard);
    double total = 0;
    for (long c = 0; c < shard.length(); c += dev.athanor.ops.Ops.NORM_CHUNK) {
      try (Tensor x = grad.read(new Range(c, Math.min(shard.length(), c + dev.athanor.ops.Ops.NORM_CHUNK)))) {
        total += dev.athanor.ops.Ops.sumSquaresPartials(x)[0];  // chunk order, in double, as Ops.globalNorm adds them
      }
    }
    return (float) Math.sqrt(total);
  }

  /** One process: nothing to do. */
  GradientReducer NONE = (store, gradRole) -> {};
}

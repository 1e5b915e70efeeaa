package dev.athanor.train;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;

/**
 * The gradient-reduction phase of a training step: after every micro-batch's gradient has been accumulated and
 * before clipping, combine the step's gradient across replicas (data parallelism) in place. A single process has
 * nothing to combine.
 */
@FunctionalInterface
public interface GradientReducer {
  /** Reduces the step's gradient, held in {@code gradRole} of {@code store}, in place. */
  void reduce(ParameterStore store, Role gradRole);

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
   * A sharded optimizer's (ZeRO 1) moments of the flat elements {@code range}, for a checkpoint (a collective when
   * replicas take part: every replica calls it with the same range): replica 0 gets every replica's part of them in
   * {@code m} and {@code v} (F32, {@code range.length()} elements each), the others pass null and only send theirs.
   * One process: this optimizer's part.
   */
  default void gatherMoments(ParameterStore store, AdamW optimizer, Range range, Tensor m, Tensor v) {
    if (m != null) optimizer.getShardMoments(range, m, v);
  }

  /**
   * The global L2 norm of the step's gradient (for clipping), after {@link #reduce}: by default {@link Ops#globalNorm}
   * of the flat {@code gradRole}. A reducer over a model split into stages combines the stages' partial sums so that
   * every stage gets the bits one process computes.
   */
  default float globalNorm(ParameterStore store, Role gradRole) {
    return Ops.globalNorm(java.util.List.of(store.flat(gradRole)));
  }

  /** One process: nothing to do. */
  GradientReducer NONE = (store, gradRole) -> {};
}

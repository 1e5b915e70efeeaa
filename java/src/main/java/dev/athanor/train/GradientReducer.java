package dev.athanor.train;

import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;

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

  /** One process: nothing to do. */
  GradientReducer NONE = (store, gradRole) -> {};
}

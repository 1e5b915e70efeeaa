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

  /** One process: nothing to do. */
  GradientReducer NONE = (store, gradRole) -> {};
}

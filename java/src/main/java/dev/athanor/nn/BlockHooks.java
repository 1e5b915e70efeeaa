package dev.athanor.nn;

import dev.athanor.params.Unit;

/**
 * Seams at the boundaries of a model's units (embeddings, blocks, head), called in execution order on the thread
 * running the model. They do nothing by default; offload uses them to make a unit's weights resident before it
 * runs and release them after, to stream gradients out as soon as they are complete and to spill and restore
 * activations; pipeline and sharded training use the same points (a stage is a range of units; ZeRO-3 gathers a
 * unit's weights before it runs).
 *
 * <p>Order in training: forward: for each unit in order, {@code beforeWeights(u, FORWARD)}, its computation, for
 * a block {@code saveActivations} (when activations are kept or offloaded rather than recomputed; offloaded, the
 * buffers are a ring shared by blocks, see {@link Transformer#setOffloadedActivations}), {@code afterWeights(u,
 * FORWARD)}; backward: for each unit in reverse, {@code beforeWeights(u, BACKWARD)}, for a block
 * {@code restoreActivations}, its computation, {@code afterWeights(u, BACKWARD)}, {@code afterGradients(u)}. The
 * head of a model with tied embeddings also reads the embedding unit's weights (and accumulates into its gradient,
 * which is complete only after the embedding's own backward): its before/after calls then name both units.
 * Cached decoding calls {@code beforeWeights(u, DECODE)} / {@code afterWeights(u, DECODE)} per unit and step.
 */
public interface BlockHooks {
  /** Which pass needs a unit's weights. */
  enum Pass { FORWARD, BACKWARD, DECODE }

  /** A unit's weights are about to be read. */
  default void beforeWeights(Unit unit, Pass pass) {}

  /** A unit's weights are no longer needed by this pass. */
  default void afterWeights(Unit unit, Pass pass) {}

  /** A unit's gradient for the current micro-batch is complete (nothing adds to it until the next backward). */
  default void afterGradients(Unit unit) {}

  /** Block {@code block}'s forward has filled {@code acts}; they are read again by its backward. */
  default void saveActivations(int block, BlockActs acts) {}

  /** Block {@code block}'s backward is about to read {@code acts}. */
  default void restoreActivations(int block, BlockActs acts) {}

  /** Hooks that do nothing. */
  BlockHooks NONE = new BlockHooks() {};

  /**
   * {@code first}, then {@code second} at every seam (the calls that end something, {@code afterWeights},
   * {@code afterGradients} and {@code restoreActivations}, in the reverse order, so that the pair nests); either may
   * be {@link #NONE}.
   */
  static BlockHooks both(BlockHooks first, BlockHooks second) {
    java.util.Objects.requireNonNull(first, "first");
    java.util.Objects.requireNonNull(second, "second");
    if (first == NONE) return second;
    if (second == NONE) return first;
    return new BlockHooks() {
      @Override
      public void beforeWeights(Unit unit, Pass pass) {
        first.beforeWeights(unit, pass);
        second.beforeWeights(unit, pass);
      }

      @Override
      public void afterWeights(Unit unit, Pass pass) {
        second.afterWeights(unit, pass);
        first.afterWeights(unit, pass);
      }

      @Override
      public void afterGradients(Unit unit) {
        second.afterGradients(unit);
        first.afterGradients(unit);
      }

      @Override
      public void saveActivations(int block, BlockActs acts) {
        first.saveActivations(block, acts);
        second.saveActivations(block, acts);
      }

      @Override
      public void restoreActivations(int block, BlockActs acts) {
        second.restoreActivations(block, acts);
        first.restoreActivations(block, acts);
      }
    };
  }
}

package dev.athanor.offload;

import dev.athanor.params.Unit;
import dev.athanor.tensor.Tensor;

/**
 * An optimizer update of a model's weights that is applied unit by unit when each unit's weights are in host memory
 * anyway (the optimizer step of the last step, deferred into the next forward: see {@link UnitPager#defer}). Each unit
 * is applied once, in the order the update was made for; the state other than the weights (gradients, moments) is
 * the update's own business.
 */
public interface UnitUpdate {
  /**
   * Updates {@code unit}'s weights in {@code masters} (its F32 masters, the unit's elements, in host memory) in place,
   * and writes the rest of the unit's updated state (the moments) behind. A failure leaves the unit half-updated.
   */
  void apply(Unit unit, Tensor masters);

  /** Waits until everything written behind is written (throws its failure) and frees what the update holds. */
  void finish();
}

package dev.athanor.ops;

import dev.athanor.tensor.Tensor;

/**
 * Gradients from {@link Ops#attentionBackward}: {@code dq} with the layout of q, {@code dk} and
 * {@code dv} with the layouts of k and v (summed over the query heads sharing a kv head). Closing
 * the result closes all three.
 */
public record AttentionGrads(Tensor dq, Tensor dk, Tensor dv) implements AutoCloseable {
  @Override
  public void close() {
    Closing.closeAll(dq, dk, dv);
  }
}

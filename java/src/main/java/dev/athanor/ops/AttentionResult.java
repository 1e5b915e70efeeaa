package dev.athanor.ops;

import dev.athanor.tensor.Tensor;

/**
 * Output of {@link Ops#attention}: {@code out} (B, Hq, Tq, D) in the inputs' dtype and {@code lse}
 * (B, Hq, Tq) F32, the per-row log-sum-exp of the scaled scores that the backward pass needs.
 * Closing the result closes both.
 */
public record AttentionResult(Tensor out, Tensor lse) implements AutoCloseable {
  @Override
  public void close() {
    Closing.closeAll(out, lse);
  }
}

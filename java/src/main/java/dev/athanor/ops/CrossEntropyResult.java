package dev.athanor.ops;

import dev.athanor.tensor.Tensor;

/**
 * Output of {@link Ops#crossEntropy}: per-row {@code losses} and {@code lse} (log-sum-exp of the
 * logits, needed by the backward pass), both F32 and shaped like the targets. Closing the result
 * closes both.
 */
public record CrossEntropyResult(Tensor losses, Tensor lse) implements AutoCloseable {
  @Override
  public void close() {
    Closing.closeAll(losses, lse);
  }
}

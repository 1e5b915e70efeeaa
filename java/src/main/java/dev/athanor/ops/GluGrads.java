package dev.athanor.ops;

import dev.athanor.tensor.Tensor;

/**
 * Gradients from {@link Ops#swigluBackward}: {@code dgate} (for x, the gate) and {@code dup} (for
 * y, the up projection). Closing the result closes both.
 */
public record GluGrads(Tensor dgate, Tensor dup) implements AutoCloseable {
  @Override
  public void close() {
    Closing.closeAll(dgate, dup);
  }
}

package dev.athanor.ops;

import dev.athanor.tensor.Tensor;

/**
 * Output of {@link Ops#layerNorm} / {@link Ops#rmsNorm}: {@code out} like x, and the F32 statistics
 * the backward pass needs, shaped like x without its last dimension: {@code mean} (LayerNorm only;
 * null for RMSNorm) and {@code rstd}. Closing the result closes all of them.
 */
public record NormResult(Tensor out, Tensor mean, Tensor rstd) implements AutoCloseable {
  @Override
  public void close() {
    Closing.closeAll(out, mean, rstd);
  }
}

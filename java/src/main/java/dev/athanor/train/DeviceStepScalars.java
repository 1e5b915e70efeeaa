package dev.athanor.train;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;

/**
 * The scalars of one training step kept where the model computes, so that a CUDA step does not wait for the device
 * until it ends: each micro-batch's mean loss in its own slot (filled in micro-batch order by the forward, {@link
 * Ops#lossMean}), the gradient's sums-of-squares partials, the global norm and the clipping factor ({@link
 * Ops#clipScale}: NaN when the norm or a loss is not finite, so the AdamW kernel that reads it leaves the weights and
 * moments as they were). {@link #read()} is the step's one read to the host, at its end. Layout of the scalars:
 * {@code (accum + 2)} F32, the losses then the norm then the factor.
 */
final class DeviceStepScalars implements AutoCloseable {
  private final int accum;
  private final Tensor scalars;   // (accum + 2) F32: losses, norm, factor
  private final Tensor partials;  // (chunks) F32: the step gradient's sums of squares, one per Ops.NORM_CHUNK

  /** Room for {@code accum} losses and the clipping of a gradient the size of {@code grad}, on {@code device}. */
  DeviceStepScalars(Device device, int accum, Tensor grad) {
    if (accum < 1) throw new IllegalArgumentException("accum must be >= 1, got " + accum);
    this.accum = accum;
    this.scalars = Tensor.zeros(DType.F32, device, accum + 2);
    Tensor p = null;
    try {
      p = Tensor.empty(DType.F32, device, Math.max(1, Ops.normChunks(grad)));
    } finally {
      if (p == null) scalars.close();
    }
    this.partials = p;
  }

  /** Micro-batch {@code i}'s loss slot (one F32 element; close the view after use). */
  Tensor loss(int i) {
    if (i < 0 || i >= accum) throw new IndexOutOfBoundsException("micro-batch " + i + " of " + accum);
    return scalars.slice(0, i, i + 1);
  }

  /**
   * Forms the norm of {@code grad} and the clipping factor {@code min(1, maxNorm / (norm + 1e-6))} (1 when maxNorm is
   * 0; NaN when the norm or a loss is not finite) on the device; returns the factor's view (close it after use).
   */
  Tensor clip(Tensor grad, float maxNorm) {
    int chunks = Ops.normChunks(grad);
    try (Tensor parts = partials.slice(0, 0, chunks); Tensor losses = scalars.slice(0, 0, accum);
        Tensor out = scalars.slice(0, accum, accum + 2)) {
      Ops.sumSquaresPartials(grad, parts);
      Ops.clipScale(parts, losses, maxNorm, out);
    }
    return scalars.slice(0, accum + 1, accum + 2);
  }

  /** The step's scalars as the host sees them at its end: the one read (it waits for the step's work). */
  Values read() {
    float[] all = scalars.toFloatArray();
    return new Values(Arrays.copyOf(all, accum), all[accum], all[accum + 1]);
  }

  /** What {@link #read()} returns: the micro-batches' losses in order, the global norm, the clipping factor. */
  record Values(float[] losses, float norm, float factor) {}

  @Override
  public void close() {
    try {
      partials.close();
    } finally {
      scalars.close();
    }
  }
}

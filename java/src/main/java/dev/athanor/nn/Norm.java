package dev.athanor.nn;

import dev.athanor.ops.Ops;
import dev.athanor.tensor.Tensor;

/**
 * A normalization layer of either family: LayerNorm with weight and bias (GPT-2) or RMSNorm with a weight (Llama),
 * over the last dimension of (N, C) rows. Statistics (mean, rstd: (N) F32) are saved for the backward; RMSNorm
 * has no mean.
 */
record Norm(boolean layerNorm, Weight weight, Weight bias, float eps) {
  static Norm of(ModelConfig c, Weight weight, Weight bias) {
    return new Norm(c.family() == Family.GPT2, weight, bias, c.normEps());
  }

  /** out = norm(x); writes mean (LayerNorm) and rstd when non-null. */
  void forward(Tensor x, Tensor out, Tensor mean, Tensor rstd) {
    if (layerNorm) {
      Ops.layerNorm(x, weight.w(), bias.w(), eps, out, mean, rstd);
    } else {
      Ops.rmsNorm(x, weight.w(), eps, out, rstd);
    }
  }

  /** dx from dout; accumulates the weight's (and bias's) gradient. */
  void backward(Tensor dout, Tensor x, Tensor mean, Tensor rstd, Tensor dx) {
    backward(dout, x, mean, rstd, dx, weight.g(), bias.g());
  }

  /** dx from dout; accumulates the weight's gradient into dweight and the bias's (LayerNorm) into dbias (or none). */
  void backward(Tensor dout, Tensor x, Tensor mean, Tensor rstd, Tensor dx, Tensor dweight, Tensor dbias) {
    if (layerNorm) {
      Ops.layerNormBackward(dout, x, weight.w(), mean, rstd, dx, dweight, dbias);
    } else {
      Ops.rmsNormBackward(dout, x, weight.w(), rstd, dx, dweight);
    }
  }

  /** Whether the norm has a bias (LayerNorm with one). */
  boolean hasBias() {
    return bias != Weight.NONE;
  }
}

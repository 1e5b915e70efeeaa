package dev.athanor.params;

import dev.athanor.tensor.DType;

/**
 * What a flat buffer of a {@link ParameterStore} holds. Every role has the same layout (the same element
 * offset for every parameter), so a {@link Range} means the same parameters in each of them.
 */
public enum Role {
  /** The weights the forward and backward read, in the model's compute dtype (the masters when that is F32). */
  WEIGHT,
  /** FP32 master weights: what the optimizer updates and what checkpoints and exports save. */
  MASTER,
  /** FP32 gradient of the current micro-batch: the backward pass accumulates into it from zero. */
  GRAD,
  /**
   * FP32 sum of the micro-batch gradients of one optimizer step, formed as {@code acc + g_i} micro-batch by
   * micro-batch. Only needed with gradient accumulation; with one micro-batch the step's gradient is {@link #GRAD}.
   */
  GRAD_ACC,
  /** AdamW's first moment (FP32). */
  ADAM_M,
  /** AdamW's second moment (FP32). */
  ADAM_V;

  /** The dtype of this role's buffer in a store computing in {@code computeDtype}. */
  public DType dtype(DType computeDtype) {
    return this == WEIGHT ? computeDtype : DType.F32;
  }
}

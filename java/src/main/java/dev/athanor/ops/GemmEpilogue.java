package dev.athanor.ops;

import dev.athanor.runtime.KernelArgs;

/**
 * What {@link Ops#gemm(Tensor, boolean, Tensor, boolean, float, float, Tensor, Tensor, GemmEpilogue, Tensor)} applies
 * to each element of the product after alpha, beta and bias ({@code ath_gemm_epilogue}). With {@code v} the GEMM's
 * value rounded to out's dtype: {@link #GELU} writes {@code aux = v} (when aux is given) and {@code out = gelu(v)};
 * {@link #GELU_BACKWARD} writes {@code out = v * gelu'(aux)}. The same results as {@link Ops#gelu(Tensor, Tensor)} /
 * {@link Ops#geluBackward(Tensor, Tensor, Tensor)} after the plain GEMM (bit for bit on the CPU), in one pass.
 */
public enum GemmEpilogue {
  /** The plain GEMM. */
  NONE(KernelArgs.GEMM_EPI_NONE),
  /** GELU (tanh approximation) of the result; the pre-activation goes to aux. */
  GELU(KernelArgs.GEMM_EPI_GELU),
  /** The result times GELU's derivative at aux (the forward's pre-activation). */
  GELU_BACKWARD(KernelArgs.GEMM_EPI_GELU_BACKWARD);

  private final int code;

  GemmEpilogue(int code) {
    this.code = code;
  }

  /** The {@code ath_gemm_epilogue} code. */
  public int code() {
    return code;
  }
}

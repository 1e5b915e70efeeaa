package dev.athanor.runtime;

/**
 * The JNI entry points of the kernels: one static native per op of the C ABI
 * ({@code native/include/athanor/athanor.h}), implemented in {@code native/jni/jni_NativeKernels.cpp}
 * and registered in {@code JNI_OnLoad}.
 *
 * <p>Every method starts with {@code (int device, long stream)}: {@code device < 0} runs the CPU
 * kernel ({@code ath_cpu_*}, the stream is ignored); {@code device >= 0} makes that CUDA device
 * current on the calling thread and enqueues the CUDA kernel ({@code ath_cuda_*}) on {@code stream}
 * (a {@code cudaStream_t} handle, 0 for the legacy default stream) without synchronizing.
 * Pointer arguments are native addresses (host addresses for the CPU, device addresses for CUDA);
 * 0 means NULL. Dtypes are {@code ath_dtype} codes ({@code DType.code()}).
 *
 * <p>These are raw: they trust the caller for pointer validity and buffer sizes (a wrong address
 * crashes the JVM). Use {@link dev.athanor.ops.Ops}, which validates shapes, dtypes, devices and
 * liveness before it calls here. A non-OK status from the native op is thrown as a
 * {@link NativeException} carrying the status and the native message.
 */
public final class NativeKernels {
  private NativeKernels() {}

  /** Device argument selecting the CPU backend. */
  public static final int CPU = -1;

  /** {@code ath_activation}: GELU, tanh approximation. */
  public static final int ACT_GELU_TANH = 0;
  /** {@code ath_activation}: SiLU. */
  public static final int ACT_SILU = 1;
  /** {@code ath_activation}: SwiGLU, {@code silu(x) * y}. */
  public static final int ACT_SWIGLU = 2;

  /** {@code ath_elementwise_op} codes. */
  public static final int EW_ADD = 0, EW_MUL = 1, EW_SCALE = 2, EW_AXPY = 3, EW_FILL = 4, EW_CONVERT = 5;
  /** {@code ath_reduce_op} codes. */
  public static final int RED_SUM = 0, RED_SUM_SQUARES = 1, RED_SUM_ROWS = 2;
  /** {@code ath_rand_dist} codes. */
  public static final int RAND_UNIFORM = 0, RAND_NORMAL = 1;

  static {
    NativeLibrary.load();
  }

  /** {@code ath_*_gemm}: {@code C_b = alpha op(A_b) op(B_b) + beta C_b (+ bias)} for each batch index. */
  public static native void gemm(int device, long stream, long m, long n, long k, long batch,
      int dtypeAb, int dtypeC, boolean transA, boolean transB,
      long a, long lda, long strideA, long b, long ldb, long strideB,
      long c, long ldc, long strideC, long bias, float alpha, float beta);

  /** {@code ath_*_attention_fwd}: writes o and (when lse != 0) lse. */
  public static native void attentionForward(int device, long stream,
      long batch, long headsQ, long headsKv, long tq, long tk, long headDim,
      int dtype, boolean causal, float scale,
      long q, long qSb, long qSh, long qSt,
      long k, long kSb, long kSh, long kSt,
      long v, long vSb, long vSh, long vSt,
      long o, long oSb, long oSh, long oSt, long lse);

  /** {@code ath_*_attention_bwd}: writes dq, dk, dv (strides of q, k, v); dout has the strides of o. */
  public static native void attentionBackward(int device, long stream,
      long batch, long headsQ, long headsKv, long tq, long tk, long headDim,
      int dtype, boolean causal, float scale,
      long q, long qSb, long qSh, long qSt,
      long k, long kSb, long kSh, long kSt,
      long v, long vSb, long vSh, long vSt,
      long o, long oSb, long oSh, long oSt, long lse,
      long dout, long dq, long dk, long dv);

  /** {@code ath_*_layernorm_fwd}: writes out, and mean/rstd when non-zero. bias may be 0. */
  public static native void layerNormForward(int device, long stream, long rows, long cols, int dtype, float eps,
      long x, long weight, long bias, long out, long mean, long rstd);

  /** {@code ath_*_layernorm_bwd}: writes dx; accumulates dweight and (when non-zero) dbias. */
  public static native void layerNormBackward(int device, long stream, long rows, long cols, int dtype, float eps,
      long x, long weight, long mean, long rstd, long dout, long dx,
      long dweight, long dbias);

  /** {@code ath_*_rmsnorm_fwd}: writes out and (when non-zero) rstd. */
  public static native void rmsNormForward(int device, long stream, long rows, long cols, int dtype, float eps,
      long x, long weight, long out, long rstd);

  /** {@code ath_*_rmsnorm_bwd}: writes dx; accumulates dweight. */
  public static native void rmsNormBackward(int device, long stream, long rows, long cols, int dtype, float eps,
      long x, long weight, long rstd, long dout, long dx, long dweight);

  /** {@code ath_*_activation_fwd}: {@code act} is one of the ACT_ codes; y only for SwiGLU. */
  public static native void activationForward(int device, long stream, long n, int dtype, int act,
      long x, long y, long out);

  /** {@code ath_*_activation_bwd}: writes dx (and dy for SwiGLU). */
  public static native void activationBackward(int device, long stream, long n, int dtype, int act,
      long x, long y, long dout, long dx, long dy);

  /** {@code ath_*_cross_entropy_fwd}: writes losses and (when non-zero) lse. */
  public static native void crossEntropyForward(int device, long stream, long rows, long vocab, long ld, int dtype,
      long logits, long targets, long losses, long lse);

  /** {@code ath_*_cross_entropy_bwd}: writes dlogits (row stride ld). */
  public static native void crossEntropyBackward(int device, long stream, long rows, long vocab, long ld, int dtype,
      long logits, long targets, long lse, long dlosses, long dlogits);

  /** {@code ath_*_embedding_fwd}: writes out. */
  public static native void embeddingForward(int device, long stream, long n, long vocab, long dim, int dtype,
      long ids, long table, long out);

  /** {@code ath_*_embedding_bwd}: accumulates into dtable (F32). */
  public static native void embeddingBackward(int device, long stream, long n, long vocab, long dim, int dtype,
      long ids, long dout, long dtable);

  /** {@code ath_*_rope}: out has the strides of x and may alias it. */
  public static native void rope(int device, long stream, long batch, long seq, long heads, long headDim,
      int dtype, boolean inverse, long pos0, float theta, long x, long out,
      long xSb, long xSt, long xSh);

  /** {@code ath_*_elementwise}: {@code op} is one of the EW_ codes. */
  public static native void elementwise(int device, long stream, long n, int op, int dtype, int dtypeOut,
      long a, long b, long out, float alpha);

  /** {@code ath_*_reduce}: {@code op} is one of the RED_ codes; out is F32. */
  public static native void reduce(int device, long stream, long n, long rows, long cols, int op, int dtype,
      long x, long out);

  /** {@code ath_*_adamw}: updates params, m, v in place; paramsLowp may be 0. */
  public static native void adamw(int device, long stream, long n, long params, long grads, long m, long v,
      long paramsLowp, int dtypeLowp, float lr, float beta1, float beta2, float eps,
      float weightDecay, float gradScale, long step);

  /** {@code ath_*_rand}: {@code dist} is RAND_UNIFORM ([a, b)) or RAND_NORMAL (mean a, std b). */
  public static native void rand(int device, long stream, long n, int dtype, int dist, long seed, long offset,
      float a, float b, long out);
}

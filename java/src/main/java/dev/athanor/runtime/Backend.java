package dev.athanor.runtime;

/**
 * A compute backend: where an op's kernel runs. One interface, two implementations over the same C
 * ABI: {@link CpuBackend} (the native CPU kernels on the shared thread pool) and {@link CudaBackend}
 * (the CUDA kernels, enqueued on one stream of one device). {@link #of(Device)} picks the backend of
 * a device; {@link dev.athanor.ops.Ops} validates tensors and calls these methods.
 *
 * <p>The op methods are raw: pointers are native addresses on this backend's device (host memory for
 * the CPU, device memory for CUDA), 0 means NULL, dtypes are {@code ath_dtype} codes, and the
 * semantics and layouts are those of {@code native/include/athanor/athanor.h}. They do not check
 * pointers or sizes; a non-OK status from the kernel is thrown as a {@link NativeException}. CPU ops
 * have finished when they return; CUDA ops are only enqueued ({@link #synchronize()} waits).
 */
public interface Backend {
  /** The device this backend computes on. */
  Device device();

  /** The device argument of {@link NativeKernels}: {@link NativeKernels#CPU} or the CUDA device index. */
  int nativeDevice();

  /** The CUDA stream handle ops are enqueued on (0 on the CPU). */
  long stream();

  /** Waits until every op enqueued through this backend has finished (nothing to wait for on the CPU). */
  void synchronize();

  /** The backend of a device: the CPU backend, or the CUDA backend on the device's default stream. */
  static Backend of(Device device) {
    if (device == null) throw new IllegalArgumentException("device is null");
    return device.isCuda() ? CudaBackend.forDevice(device) : CpuBackend.INSTANCE;
  }

  /** {@code ath_*_gemm}: {@code C_b = alpha op(A_b) op(B_b) + beta C_b (+ bias)} for each batch index. */
  default void gemm(long m, long n, long k, long batch, int dtypeAb, int dtypeC, boolean transA,
      boolean transB, long a, long lda, long strideA, long b, long ldb, long strideB, long c, long ldc,
      long strideC, long bias, float alpha, float beta) {
    NativeKernels.gemm(nativeDevice(), stream(), m, n, k, batch, dtypeAb, dtypeC, transA, transB, a, lda,
        strideA, b, ldb, strideB, c, ldc, strideC, bias, alpha, beta);
  }

  /** {@code ath_*_attention_fwd}: writes o and (when lse != 0) lse. */
  default void attentionForward(long batch, long headsQ, long headsKv, long tq, long tk, long headDim,
      int dtype, boolean causal, float scale, long q, long qSb, long qSh, long qSt, long k, long kSb,
      long kSh, long kSt, long v, long vSb, long vSh, long vSt, long o, long oSb, long oSh, long oSt,
      long lse) {
    NativeKernels.attentionForward(nativeDevice(), stream(), batch, headsQ, headsKv, tq, tk, headDim, dtype,
        causal, scale, q, qSb, qSh, qSt, k, kSb, kSh, kSt, v, vSb, vSh, vSt, o, oSb, oSh, oSt, lse);
  }

  /** {@code ath_*_attention_bwd}: writes dq, dk, dv (strides of q, k, v); dout has the strides of o. */
  default void attentionBackward(long batch, long headsQ, long headsKv, long tq, long tk, long headDim,
      int dtype, boolean causal, float scale, long q, long qSb, long qSh, long qSt, long k, long kSb,
      long kSh, long kSt, long v, long vSb, long vSh, long vSt, long o, long oSb, long oSh, long oSt,
      long lse, long dout, long dq, long dk, long dv) {
    NativeKernels.attentionBackward(nativeDevice(), stream(), batch, headsQ, headsKv, tq, tk, headDim, dtype,
        causal, scale, q, qSb, qSh, qSt, k, kSb, kSh, kSt, v, vSb, vSh, vSt, o, oSb, oSh, oSt, lse, dout, dq,
        dk, dv);
  }

  /** {@code ath_*_layernorm_fwd}: writes out, and mean/rstd when non-zero. bias may be 0. */
  default void layerNormForward(long rows, long cols, int dtype, float eps, long x, long weight, long bias,
      long out, long mean, long rstd) {
    NativeKernels.layerNormForward(nativeDevice(), stream(), rows, cols, dtype, eps, x, weight, bias, out,
        mean, rstd);
  }

  /** {@code ath_*_layernorm_bwd}: writes dx; accumulates dweight and (when non-zero) dbias. */
  default void layerNormBackward(long rows, long cols, int dtype, float eps, long x, long weight, long mean,
      long rstd, long dout, long dx, long dweight, long dbias) {
    NativeKernels.layerNormBackward(nativeDevice(), stream(), rows, cols, dtype, eps, x, weight, mean, rstd,
        dout, dx, dweight, dbias);
  }

  /** {@code ath_*_rmsnorm_fwd}: writes out and (when non-zero) rstd. */
  default void rmsNormForward(long rows, long cols, int dtype, float eps, long x, long weight, long out,
      long rstd) {
    NativeKernels.rmsNormForward(nativeDevice(), stream(), rows, cols, dtype, eps, x, weight, out, rstd);
  }

  /** {@code ath_*_rmsnorm_bwd}: writes dx; accumulates dweight. */
  default void rmsNormBackward(long rows, long cols, int dtype, float eps, long x, long weight, long rstd,
      long dout, long dx, long dweight) {
    NativeKernels.rmsNormBackward(nativeDevice(), stream(), rows, cols, dtype, eps, x, weight, rstd, dout, dx,
        dweight);
  }

  /** {@code ath_*_activation_fwd}: {@code act} is one of the ACT_ codes; y only for SwiGLU. */
  default void activationForward(long n, int dtype, int act, long x, long y, long out) {
    NativeKernels.activationForward(nativeDevice(), stream(), n, dtype, act, x, y, out);
  }

  /** {@code ath_*_activation_bwd}: writes dx (and dy for SwiGLU). */
  default void activationBackward(long n, int dtype, int act, long x, long y, long dout, long dx, long dy) {
    NativeKernels.activationBackward(nativeDevice(), stream(), n, dtype, act, x, y, dout, dx, dy);
  }

  /** {@code ath_*_cross_entropy_fwd}: writes losses and (when non-zero) lse. */
  default void crossEntropyForward(long rows, long vocab, long ld, int dtype, long logits, long targets,
      long losses, long lse) {
    NativeKernels.crossEntropyForward(nativeDevice(), stream(), rows, vocab, ld, dtype, logits, targets,
        losses, lse);
  }

  /** {@code ath_*_cross_entropy_bwd}: writes dlogits (row stride ld). */
  default void crossEntropyBackward(long rows, long vocab, long ld, int dtype, long logits, long targets,
      long lse, long dlosses, long dlogits) {
    NativeKernels.crossEntropyBackward(nativeDevice(), stream(), rows, vocab, ld, dtype, logits, targets, lse,
        dlosses, dlogits);
  }

  /** {@code ath_*_embedding_fwd}: writes out. */
  default void embeddingForward(long n, long vocab, long dim, int dtype, long ids, long table, long out) {
    NativeKernels.embeddingForward(nativeDevice(), stream(), n, vocab, dim, dtype, ids, table, out);
  }

  /** {@code ath_*_embedding_bwd}: accumulates into dtable (F32). */
  default void embeddingBackward(long n, long vocab, long dim, int dtype, long ids, long dout, long dtable) {
    NativeKernels.embeddingBackward(nativeDevice(), stream(), n, vocab, dim, dtype, ids, dout, dtable);
  }

  /** {@code ath_*_rope}: out has the strides of x and may alias it. */
  default void rope(long batch, long seq, long heads, long headDim, int dtype, boolean inverse, long pos0,
      float theta, long x, long out, long xSb, long xSt, long xSh) {
    NativeKernels.rope(nativeDevice(), stream(), batch, seq, heads, headDim, dtype, inverse, pos0, theta, x,
        out, xSb, xSt, xSh);
  }

  /** {@code ath_*_elementwise}: {@code op} is one of the EW_ codes. */
  default void elementwise(long n, int op, int dtype, int dtypeOut, long a, long b, long out, float alpha) {
    NativeKernels.elementwise(nativeDevice(), stream(), n, op, dtype, dtypeOut, a, b, out, alpha);
  }

  /** {@code ath_*_reduce}: {@code op} is one of the RED_ codes; out is F32. */
  default void reduce(long n, long rows, long cols, int op, int dtype, long x, long out) {
    NativeKernels.reduce(nativeDevice(), stream(), n, rows, cols, op, dtype, x, out);
  }

  /** {@code ath_*_adamw}: updates params, m, v in place; paramsLowp may be 0. */
  default void adamw(long n, long params, long grads, long m, long v, long paramsLowp, int dtypeLowp,
      float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale, long step) {
    NativeKernels.adamw(nativeDevice(), stream(), n, params, grads, m, v, paramsLowp, dtypeLowp, lr, beta1,
        beta2, eps, weightDecay, gradScale, step);
  }

  /** {@code ath_*_rand}: {@code dist} is RAND_UNIFORM ([a, b)) or RAND_NORMAL (mean a, std b). */
  default void rand(long n, int dtype, int dist, long seed, long offset, float a, float b, long out) {
    NativeKernels.rand(nativeDevice(), stream(), n, dtype, dist, seed, offset, a, b, out);
  }
}

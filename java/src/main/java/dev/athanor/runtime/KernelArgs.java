package dev.athanor.runtime;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * The argument structs of the C ABI ({@code native/include/athanor/athanor.h}), one record per struct: the
 * components are the struct's fields in order, named as in C in camelCase ({@code dtype_ab} is
 * {@code dtypeAb}). {@link CStruct} derives the C layout from them (long: int64_t or a pointer; int: int;
 * boolean: int 0/1; float: float; long[]: int64_t[ATH_MAX_RANK]) and writes a record into native memory;
 * {@code KernelLayoutTest} checks every offset and size against the native {@code offsetof}/{@code sizeof}.
 * Semantics, layouts and dtypes are those of the header; see {@link Kernel} for which op takes which struct.
 *
 * <p>Pointers are native addresses (host for the CPU, device for CUDA), 0 is NULL; dtypes are
 * {@code ath_dtype} codes ({@code DType.code()}).
 */
public sealed interface KernelArgs {
  /** The C struct a record mirrors. */
  @Retention(RetentionPolicy.RUNTIME)
  @Target(ElementType.TYPE)
  @interface C {
    String value();
  }

  /** Maximum rank of {@link Copy} ({@code ATH_MAX_RANK}). */
  int MAX_RANK = 8;

  /** {@code ath_activation} codes. */
  int ACT_GELU_TANH = 0, ACT_SILU = 1, ACT_SWIGLU = 2;
  /** {@code ath_elementwise_op} codes. */
  int EW_ADD = 0, EW_MUL = 1, EW_SCALE = 2, EW_AXPY = 3, EW_FILL = 4, EW_CONVERT = 5;
  /** {@code ath_reduce_op} codes. */
  int RED_SUM = 0, RED_SUM_SQUARES = 1, RED_SUM_ROWS = 2;
  /** {@code ath_rand_dist} codes. */
  int RAND_UNIFORM = 0, RAND_NORMAL = 1;

  /** {@code ath_gemm_epilogue} codes. */
  int GEMM_EPI_NONE = 0, GEMM_EPI_GELU = 1, GEMM_EPI_GELU_BACKWARD = 2;

  /**
   * {@code ath_gemm_args}: {@code C_b = alpha op(A_b) op(B_b) + beta C_b (+ bias)} for each batch index, then the
   * {@code epilogue} (a GEMM_EPI_ code) with {@code aux} (C's dtype, shape and strides; 0 = NULL).
   */
  @C("ath_gemm_args")
  record Gemm(long m, long n, long k, long batch, int dtypeAb, int dtypeC, boolean transA, boolean transB,
      long a, long lda, long strideA, long b, long ldb, long strideB, long c, long ldc, long strideC, long bias,
      float alpha, float beta, int epilogue, long aux) implements KernelArgs {
    /** Without an epilogue. */
    public Gemm(long m, long n, long k, long batch, int dtypeAb, int dtypeC, boolean transA, boolean transB,
        long a, long lda, long strideA, long b, long ldb, long strideB, long c, long ldc, long strideC, long bias,
        float alpha, float beta) {
      this(m, n, k, batch, dtypeAb, dtypeC, transA, transB, a, lda, strideA, b, ldb, strideB, c, ldc, strideC, bias,
          alpha, beta, GEMM_EPI_NONE, 0);
    }
  }

  /** {@code ath_attention_args}: forward writes o and (when lse != 0) lse; backward writes dq, dk, dv. */
  @C("ath_attention_args")
  record Attention(long batch, long headsQ, long headsKv, long tq, long tk, long headDim, int dtype,
      boolean causal, float scale, long q, long qSb, long qSh, long qSt, long k, long kSb, long kSh, long kSt,
      long v, long vSb, long vSh, long vSt, long o, long oSb, long oSh, long oSt, long lse, long dout, long dq,
      long dk, long dv) implements KernelArgs {}

  /** {@code ath_norm_args}: LayerNorm / RMSNorm forward (out, mean, rstd) and backward (dx, dweight, dbias). */
  @C("ath_norm_args")
  record Norm(long rows, long cols, int dtype, float eps, long x, long weight, long bias, long out, long mean,
      long rstd, long dout, long dx, long dweight, long dbias) implements KernelArgs {
    public static Norm forward(long rows, long cols, int dtype, float eps, long x, long weight, long bias,
        long out, long mean, long rstd) {
      return new Norm(rows, cols, dtype, eps, x, weight, bias, out, mean, rstd, 0, 0, 0, 0);
    }

    public static Norm backward(long rows, long cols, int dtype, long x, long weight, long mean, long rstd,
        long dout, long dx, long dweight, long dbias) {
      return new Norm(rows, cols, dtype, 0f, x, weight, 0, 0, mean, rstd, dout, dx, dweight, dbias);
    }
  }

  /** {@code ath_activation_args}: {@code act} is an ACT_ code; y only for SwiGLU; backward writes dx (and dy). */
  @C("ath_activation_args")
  record Activation(long n, int dtype, int act, long x, long y, long out, long dout, long dx, long dy)
      implements KernelArgs {}

  /** {@code ath_cross_entropy_args}: forward writes losses (and lse); backward writes dlogits (row stride ld). */
  @C("ath_cross_entropy_args")
  record CrossEntropy(long rows, long vocab, long ld, int dtype, long logits, long targets, long losses, long lse,
      long dlosses, long dlogits) implements KernelArgs {}

  /** {@code ath_embedding_args}: forward writes out; backward accumulates into dtable (F32). */
  @C("ath_embedding_args")
  record Embedding(long n, long vocab, long dim, int dtype, long ids, long table, long out, long dout,
      long dtable) implements KernelArgs {}

  /** {@code ath_rope_args}: out has the strides of x and may alias it. */
  @C("ath_rope_args")
  record Rope(long batch, long seq, long heads, long headDim, int dtype, boolean inverse, long pos0, float theta,
      long x, long out, long xSb, long xSt, long xSh) implements KernelArgs {}

  /** {@code ath_elementwise_args}: {@code op} is an EW_ code. */
  @C("ath_elementwise_args")
  record Elementwise(long n, int op, int dtype, int dtypeOut, long a, long b, long out, float alpha)
      implements KernelArgs {}

  /** {@code ath_reduce_args}: {@code op} is a RED_ code; out is F32. */
  @C("ath_reduce_args")
  record Reduce(long n, long rows, long cols, int op, int dtype, long x, long out) implements KernelArgs {}

  /**
   * {@code ath_adamw_args}: updates params, m, v in place; paramsLowp may be 0; gradScalePtr 0, or the address of one
   * F32 in the op's memory read in place of gradScale (not finite: nothing is updated).
   */
  @C("ath_adamw_args")
  record Adamw(long n, long params, long grads, long m, long v, long paramsLowp, int dtypeLowp, float lr,
      float beta1, float beta2, float eps, float weightDecay, float gradScale, long step, long gradScalePtr)
      implements KernelArgs {}

  int TS_LOSS_MEAN = 0, TS_CLIP_SCALE = 1;

  /**
   * {@code ath_train_scalars_args}: TS_LOSS_MEAN writes out[0], the mean of x's entries whose target is >= 0;
   * TS_CLIP_SCALE writes out[0] the norm from x's sums-of-squares partials and out[1] the clipping factor (NaN when
   * the norm or one of the losses is not finite).
   */
  @C("ath_train_scalars_args")
  record TrainScalars(int op, long n, long x, long targets, long nLosses, long losses, float maxNorm, long out)
      implements KernelArgs {}

  /** {@code ath_rand_args}: {@code dist} is RAND_UNIFORM ([a, b)) or RAND_NORMAL (mean a, std b). */
  @C("ath_rand_args")
  record Rand(long n, int dtype, int dist, long seed, long offset, float a, float b, long out) implements KernelArgs {}

  /**
   * {@code ath_sample_args}: one token id per row of logits (rows, cols), row stride ld, sampled among the columns
   * [0, vocab); ids[r] = -1 - c names the first NaN or +inf column c (or -1 when every sampled logit is -inf).
   */
  @C("ath_sample_args")
  record Sample(long rows, long cols, long vocab, long ld, int dtype, float temperature, float topP, long topK,
      long logits, long uniforms, long ids) implements KernelArgs {}

  /**
   * {@code ath_copy_args}: {@code dst[i] = src[i]} for every index of {@code shape} (rank <= {@link #MAX_RANK});
   * element strides; arrays shorter than MAX_RANK are padded with zeros.
   */
  @C("ath_copy_args")
  record Copy(int rank, int elemSize, long[] shape, long dst, long[] dstStrides, long src, long[] srcStrides)
      implements KernelArgs {}

  /** {@code ath_memset_args}: {@code bytes} bytes at dst set to {@code value}. */
  @C("ath_memset_args")
  record Memset(long dst, long bytes, int value) implements KernelArgs {}

  /** {@code ath_cuda_ctx}: where a CUDA op runs (written by {@link ExecutionContext}, not passed to {@link Kernel}s). */
  @C("ath_cuda_ctx")
  record CudaCtx(int device, long stream, long scratch, long scratchBytes) implements KernelArgs {}
}

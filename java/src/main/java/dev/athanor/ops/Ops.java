package dev.athanor.ops;

import static dev.athanor.ops.Args.bad;
import static dev.athanor.ops.Args.describe;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Kernel;
import dev.athanor.runtime.KernelArgs;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The tensor operations: validated at this boundary, then run in the current {@link ExecutionContext}
 * of the tensors' device ({@link ExecutionContext#current}) with exactly one native call per op
 * ({@link ExecutionContext#run}). Semantics, layouts and dtypes are those of the C ABI
 * ({@code native/include/athanor/athanor.h}).
 *
 * <p>Each op comes in two forms: one that allocates its outputs on the inputs' device (the caller
 * owns and closes them; inside a {@link dev.athanor.tensor.Scope} they belong to the scope), and an
 * "into" form that writes caller-provided outputs. Backward ops write input gradients and
 * <b>accumulate</b> into parameter gradients (dweight, dbias, dtable: always F32), so gradient
 * accumulation needs no extra pass.
 *
 * <p>Validation: every tensor must be open, in a tier with a native address (not DISK), and on the
 * same device as the op's other tensors; shapes, dtypes and layouts must match the op's contract.
 * A violation throws {@link IllegalArgumentException} (a closed tensor: {@link IllegalStateException})
 * naming the op and the offending tensor with its shape, dtype and device. Token ids and targets of
 * host tensors are range-checked here; CUDA tensors are not (that would need a device-to-host copy
 * and a sync: the CUDA kernels treat a bad id as described in the header). Failures inside a kernel
 * surface as {@link dev.athanor.runtime.NativeException}.
 *
 * <p>CPU ops have finished when they return. CUDA ops are enqueued on the compute stream of the
 * calling thread's current context for the device and return at once; reading a result from the host
 * ({@code toFloatArray}, {@code to(Device.CPU)}) waits for that stream. Another thread (another
 * context) sees the results after an {@link dev.athanor.runtime.Event} recorded on that stream.
 */
public final class Ops {
  private Ops() {}

  // ================================================================== GEMM

  /**
   * Matrix product {@code a @ b}: a (M, K) or (batch, M, K), b (K, N) or (batch, K, N); a 2-D operand
   * is shared by every batch entry. Output (M, N), or (batch, M, N) when either input has a batch
   * dimension, in a's dtype. Transposed views (e.g. {@code b.transpose(0, 1)}) are used in place
   * without a copy.
   */
  public static Tensor matmul(Tensor a, Tensor b) {
    return matmul(a, false, b, false);
  }

  /** {@code op(a) @ op(b)} where op transposes the last two dimensions when the flag is set. */
  public static Tensor matmul(Tensor a, boolean transA, Tensor b, boolean transB) {
    final String op = "matmul";
    Args.need(op, "a", a);
    Args.need(op, "b", b);
    Args.context(op, "a", a, "b", b);
    Args.floating(op, "a", a);
    Args.sameDtype(op, "b", b, "a", a);
    Mat ma = Mat.of(op, "a", a, transA);
    Mat mb = Mat.of(op, "b", b, transB);
    if (ma.cols != mb.rows) {
      throw bad(op, "inner dimensions differ: " + describe("a", a) + (transA ? " transposed" : "") + " gives "
          + ma.cols + " columns, " + describe("b", b) + (transB ? " transposed" : "") + " gives " + mb.rows + " rows");
    }
    if (ma.batch != 1 && mb.batch != 1 && ma.batch != mb.batch) {
      throw bad(op, "batch sizes differ: " + describe("a", a) + ", " + describe("b", b));
    }
    long batch = Math.max(ma.batch, mb.batch);
    long[] shape = Math.max(a.rank(), b.rank()) == 3
        ? new long[] {batch, ma.rows, mb.cols}
        : new long[] {ma.rows, mb.cols};
    Tensor out = Tensor.empty(a.dtype(), a.device(), shape);
    try {
      gemm(a, transA, b, transB, 1f, 0f, null, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  /**
   * The full GEMM: for each batch entry, {@code out = alpha op(a) @ op(b) + beta out (+ bias)}.
   *
   * @param a (M, K), or (K, M) when transA; optionally with a leading batch dimension; F32/BF16/F16.
   *     Any view whose last or second-to-last dimension has unit stride (row stride = the other one).
   * @param b (K, N), or (N, K) when transB; optionally batched; a's dtype
   * @param beta 0 means out is not read (it may hold garbage)
   * @param bias null or (N) in out's dtype, added to every row after alpha and beta
   * @param out (M, N) or (batch, M, N), F32 or a's dtype, last dimension contiguous
   */
  public static void gemm(Tensor a, boolean transA, Tensor b, boolean transB, float alpha, float beta,
      Tensor bias, Tensor out) {
    gemm(a, transA, b, transB, alpha, beta, bias, out, GemmEpilogue.NONE, null);
  }

  /**
   * The full GEMM followed by an elementwise epilogue in the same pass (see {@link GemmEpilogue}): the MLP's
   * {@code gelu(x W + b)} keeping the pre-activation in aux, and its backward {@code (dout W^T) * gelu'(aux)}.
   *
   * @param epilogue NONE (aux ignored), GELU (aux written when not null) or GELU_BACKWARD (aux read)
   * @param aux out's dtype, shape and strides, not out itself; null allowed only for NONE and GELU
   */
  public static void gemm(Tensor a, boolean transA, Tensor b, boolean transB, float alpha, float beta,
      Tensor bias, Tensor out, GemmEpilogue epilogue, Tensor aux) {
    final String op = "gemm";
    if (epilogue == null) throw bad(op, "epilogue is null (use GemmEpilogue.NONE)");
    if (epilogue == GemmEpilogue.NONE) aux = null;
    if (epilogue == GemmEpilogue.GELU_BACKWARD) Args.need(op, "aux", aux);
    Args.optional(op, "aux", aux);
    Args.need(op, "a", a);
    Args.need(op, "b", b);
    Args.need(op, "out", out);
    Args.optional(op, "bias", bias);
    var ctx = Args.context(op, "a", a, "b", b, "out", out, "bias", bias);
    if (aux != null) {
      Args.context(op, "aux", aux, "out", out);
      Args.sameDtype(op, "aux", aux, "out", out);
      if (!Arrays.equals(aux.shape(), out.shape()) || !Arrays.equals(aux.strides(), out.strides())) {
        throw bad(op, describe("aux", aux) + " with strides " + Args.shapeString(aux.strides())
            + " must have the shape and strides of " + describe("out", out) + " with strides "
            + Args.shapeString(out.strides()));
      }
      if (aux.address() == out.address()) throw bad(op, "aux must not be out (" + describe("out", out) + ")");
    }
    Args.floating(op, "a", a);
    Args.sameDtype(op, "b", b, "a", a);
    if (out.dtype() != DType.F32 && out.dtype() != a.dtype()) {
      throw bad(op, describe("out", out) + " must be F32 or the inputs' dtype " + a.dtype());
    }
    Args.finite(op, "alpha", alpha);
    Args.finite(op, "beta", beta);
    Mat ma = Mat.of(op, "a", a, transA);
    Mat mb = Mat.of(op, "b", b, transB);
    Mat mc = Mat.of(op, "out", out, false);
    long m = ma.rows, k = ma.cols, n = mb.cols;
    if (mb.rows != k) {
      throw bad(op, "inner dimensions differ: op(a) is (" + m + ", " + k + ") from " + describe("a", a)
          + (transA ? " transposed" : "") + ", op(b) is (" + mb.rows + ", " + n + ") from " + describe("b", b)
          + (transB ? " transposed" : ""));
    }
    if (mc.rows != m || mc.cols != n || mc.trans) {
      throw bad(op, describe("out", out) + " must be (" + m + ", " + n + ") with a contiguous last dimension"
          + " for op(a) (" + m + ", " + k + ") @ op(b) (" + k + ", " + n + ")");
    }
    long batch = mc.batch;
    if (ma.batch != 1 && ma.batch != batch || mb.batch != 1 && mb.batch != batch) {
      throw bad(op, "batch sizes differ: " + describe("a", a) + ", " + describe("b", b) + ", "
          + describe("out", out) + " (inputs may have batch 1 or no batch dimension to be shared)");
    }
    if (bias != null) {
      Args.sameDtype(op, "bias", bias, "out", out);
      Args.shape(op, "bias", bias, new long[] {n}, "(one value per output column)");
      Args.contiguous(op, "bias", bias);
    }
    if (m == 0 || n == 0 || batch == 0) return;
    long strideA = ma.batch == 1 ? 0 : ma.batchStride;
    long strideB = mb.batch == 1 ? 0 : mb.batchStride;
    long strideC = batch == 1 ? 0 : mc.batchStride;
    // A shared B and batches of A and C that are stacked rows: one GEMM with M * batch rows.
    if (batch > 1 && strideB == 0 && ma.batch == batch && !ma.trans
        && strideA == m * ma.ld && strideC == m * mc.ld && ma.ld == ma.cols && mc.ld == mc.cols) {
      m *= batch;
      batch = 1;
      strideA = 0;
      strideC = 0;
    }
    ctx.run(Kernel.GEMM, new KernelArgs.Gemm(m, n, k, batch, a.dtype().code(), out.dtype().code(), ma.trans, mb.trans,
        a.address(), ma.ld, strideA, b.address(), mb.ld, strideB, out.address(), mc.ld, strideC,
        bias == null ? 0 : bias.address(), alpha, beta, epilogue.code(), aux == null ? 0 : aux.address()));
  }

  /**
   * How a (possibly transposed, possibly batched) tensor maps onto the GEMM's (ld, trans) storage
   * description. rows x cols is the logical op(t); trans says the storage is (cols, rows) row-major
   * with row stride ld, as the C ABI's trans flags mean.
   */
  private record Mat(long rows, long cols, boolean trans, long ld, long batch, long batchStride) {
    static Mat of(String op, String name, Tensor t, boolean transpose) {
      int r = t.rank();
      if (r != 2 && r != 3) {
        throw bad(op, describe(name, t) + " must be a matrix (rows, cols) or a batch of matrices (batch, rows, cols)");
      }
      long[] sh = t.shape();
      long[] st = t.strides();
      long rows = sh[r - 2], cols = sh[r - 1], s0 = st[r - 2], s1 = st[r - 1];
      if (transpose) {
        long tmp = rows;
        rows = cols;
        cols = tmp;
        tmp = s0;
        s0 = s1;
        s1 = tmp;
      }
      long batch = r == 3 ? sh[0] : 1;
      long batchStride = r == 3 ? st[0] : 0;
      if (cols <= 1 || s1 == 1) {
        long ld = rows <= 1 ? Math.max(cols, 1) : s0;
        if (ld >= Math.max(cols, 1)) return new Mat(rows, cols, false, ld, batch, batchStride);
      }
      if (rows <= 1 || s0 == 1) {
        long ld = cols <= 1 ? Math.max(rows, 1) : s1;
        if (ld >= Math.max(rows, 1)) return new Mat(rows, cols, true, ld, batch, batchStride);
      }
      throw bad(op, describe(name, t) + " with strides " + Args.shapeString(st)
          + " is not a matrix view with a unit-stride dimension; call contiguous() first");
    }
  }

  // ================================================================== attention

  /** Scaled dot-product attention with scale 1/sqrt(D); see {@link #attention(Tensor, Tensor, Tensor, boolean, float)}. */
  public static AttentionResult attention(Tensor q, Tensor k, Tensor v, boolean causal) {
    Args.need("attention", "q", q);
    Args.rank("attention", "q", q, 4, "(batch, heads, seq, headDim)");
    return attention(q, k, v, causal, (float) (1 / Math.sqrt(q.size(3))));
  }

  /**
   * Scaled dot-product attention: {@code out = softmax(scale q k^T [+ causal mask]) v} per (batch,
   * head), with grouped-query heads (query head h uses kv head h / (Hq / Hkv)).
   *
   * @param q (B, Hq, Tq, D), any strides with a contiguous last dimension (e.g. a permuted view)
   * @param k (B, Hkv, Tk, D), Hq % Hkv == 0
   * @param v like k
   * @param causal query i sees key j iff {@code j <= i + (Tk - Tq)} (bottom-right aligned, as with a KV cache)
   * @return out (B, Hq, Tq, D) contiguous in q's dtype and lse (B, Hq, Tq) F32
   */
  public static AttentionResult attention(Tensor q, Tensor k, Tensor v, boolean causal, float scale) {
    final String op = "attention";
    Args.need(op, "q", q);
    Args.rank(op, "q", q, 4, "(batch, heads, seq, headDim)");
    Args.context(op, "q", q, "k", k, "v", v);
    long[] s = q.shape();
    Tensor out = Tensor.empty(q.dtype(), q.device(), s);
    Tensor lse = null;
    try {
      lse = Tensor.empty(DType.F32, q.device(), s[0], s[1], s[2]);
      attention(q, k, v, out, lse, causal, scale);
      return new AttentionResult(out, lse);
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out, lse);
    }
  }

  /**
   * Attention into caller-provided outputs: out (B, Hq, Tq, D) in q's dtype with a contiguous last
   * dimension (any other strides), lse null or (B, Hq, Tq) F32 contiguous.
   */
  public static void attention(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, boolean causal, float scale) {
    final String op = "attention";
    var ctx = checkAttention(op, q, k, v, out, lse, causal, scale);
    long[] qs = q.strides(), ks = k.strides(), vs = v.strides(), os = out.strides();
    ctx.run(Kernel.ATTENTION_FWD, new KernelArgs.Attention(q.size(0), q.size(1), k.size(1), q.size(2), k.size(2),
        q.size(3), q.dtype().code(), causal, scale, q.address(), qs[0], qs[1], qs[2], k.address(), ks[0], ks[1], ks[2],
        v.address(), vs[0], vs[1], vs[2], out.address(), os[0], os[1], os[2], lse == null ? 0 : lse.address(), 0, 0, 0,
        0));
  }

  /**
   * Attention backward from the forward's saved {@code out} and {@code lse}; allocates dq, dk, dv
   * with the layouts of q, k, v (which must then be contiguous or a permutation of a contiguous
   * tensor; otherwise use the into form).
   */
  public static AttentionGrads attentionBackward(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor dout,
      boolean causal, float scale) {
    final String op = "attentionBackward";
    Args.need(op, "q", q);
    Args.need(op, "k", k);
    Args.need(op, "v", v);
    Args.context(op, "q", q, "k", k, "v", v);
    Tensor dq = null, dk = null, dv = null;
    try {
      dq = Layouts.emptyLike(op, "q", q);
      dk = Layouts.emptyLike(op, "k", k);
      dv = Layouts.emptyLike(op, "v", v);
      attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, causal, scale);
      return new AttentionGrads(dq, dk, dv);
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, dq, dk, dv);
    }
  }

  /**
   * Attention backward into caller-provided gradients (all written, not accumulated): dq with the
   * strides of q, dk and dv with those of k and v; dout must have the strides of out.
   */
  public static void attentionBackward(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor dout,
      Tensor dq, Tensor dk, Tensor dv, boolean causal, float scale) {
    final String op = "attentionBackward";
    Args.need(op, "lse", lse);
    Args.need(op, "dout", dout);
    Args.need(op, "dq", dq);
    Args.need(op, "dk", dk);
    Args.need(op, "dv", dv);
    var ctx = checkAttention(op, q, k, v, out, lse, causal, scale);
    Args.context(op, "q", q, "dout", dout, "dq", dq, "dk", dk, "dv", dv);
    checkGrad(op, "dout", dout, "out", out);
    checkGrad(op, "dq", dq, "q", q);
    checkGrad(op, "dk", dk, "k", k);
    checkGrad(op, "dv", dv, "v", v);
    long[] qs = q.strides(), ks = k.strides(), vs = v.strides(), os = out.strides();
    ctx.run(Kernel.ATTENTION_BWD, new KernelArgs.Attention(q.size(0), q.size(1), k.size(1), q.size(2), k.size(2),
        q.size(3), q.dtype().code(), causal, scale, q.address(), qs[0], qs[1], qs[2], k.address(), ks[0], ks[1], ks[2],
        v.address(), vs[0], vs[1], vs[2], out.address(), os[0], os[1], os[2], lse.address(), dout.address(),
        dq.address(), dk.address(), dv.address()));
  }

  private static void checkGrad(String op, String name, Tensor g, String refName, Tensor ref) {
    Args.sameDtype(op, name, g, refName, ref);
    Args.sameShape(op, name, g, refName, ref);
    Args.sameStrides(op, name, g, refName, ref);
  }

  private static ExecutionContext checkAttention(String op, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse,
      boolean causal, float scale) {
    Args.need(op, "q", q);
    Args.need(op, "k", k);
    Args.need(op, "v", v);
    Args.need(op, "out", out);
    Args.optional(op, "lse", lse);
    var ctx = Args.context(op, "q", q, "k", k, "v", v, "out", out, "lse", lse);
    String layout = "(batch, heads, seq, headDim)";
    Args.rank(op, "q", q, 4, layout);
    Args.rank(op, "k", k, 4, layout);
    Args.rank(op, "v", v, 4, layout);
    Args.floating(op, "q", q);
    Args.sameDtype(op, "k", k, "q", q);
    Args.sameDtype(op, "v", v, "q", q);
    Args.sameDtype(op, "out", out, "q", q);
    long[] qs = q.shape(), ks = k.shape();
    for (int i = 0; i < 4; i++) Args.positive(op, "q dimension " + i + " of " + describe("q", q), qs[i]);
    for (int i = 0; i < 4; i++) Args.positive(op, "k dimension " + i + " of " + describe("k", k), ks[i]);
    if (ks[0] != qs[0] || ks[3] != qs[3]) {
      throw bad(op, describe("k", k) + " must match the batch and head dimension of " + describe("q", q));
    }
    if (qs[1] % ks[1] != 0) {
      throw bad(op, "query heads " + qs[1] + " of " + describe("q", q) + " must be a multiple of the kv heads "
          + ks[1] + " of " + describe("k", k));
    }
    Args.sameShape(op, "v", v, "k", k);
    Args.sameShape(op, "out", out, "q", q);
    Args.innerContiguous(op, "q", q);
    Args.innerContiguous(op, "k", k);
    Args.innerContiguous(op, "v", v);
    Args.innerContiguous(op, "out", out);
    if (lse != null) {
      Args.dtype(op, "lse", lse, DType.F32);
      Args.shape(op, "lse", lse, new long[] {qs[0], qs[1], qs[2]}, "(batch, heads, seq)");
      Args.contiguous(op, "lse", lse);
    }
    if (!Float.isFinite(scale) || scale <= 0) throw bad(op, "scale = " + scale + " must be finite and > 0");
    return ctx;
  }

  // ================================================================== normalization

  /**
   * LayerNorm over the last dimension: {@code out = (x - mean) * rstd * weight + bias}.
   *
   * @param x (..., C) contiguous, floating
   * @param weight (C), x's dtype
   * @param bias null or (C), x's dtype
   * @return out like x, mean and rstd F32 shaped like x without its last dimension
   */
  public static NormResult layerNorm(Tensor x, Tensor weight, Tensor bias, float eps) {
    final String op = "layerNorm";
    Args.need(op, "x", x);
    Tensor out = null, mean = null, rstd = null;
    try {
      out = Tensor.empty(x.dtype(), x.device(), x.shape());
      mean = Tensor.empty(DType.F32, x.device(), Args.leading(x));
      rstd = Tensor.empty(DType.F32, x.device(), Args.leading(x));
      layerNorm(x, weight, bias, eps, out, mean, rstd);
      return new NormResult(out, mean, rstd);
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out, mean, rstd);
    }
  }

  /** LayerNorm into caller-provided outputs; mean and rstd may be null when the backward is not needed. */
  public static void layerNorm(Tensor x, Tensor weight, Tensor bias, float eps, Tensor out, Tensor mean, Tensor rstd) {
    final String op = "layerNorm";
    var ctx = checkNormForward(op, x, weight, bias, eps, out, mean, rstd);
    if (x.numel() == 0) return;
    ctx.run(Kernel.LAYERNORM_FWD, KernelArgs.Norm.forward(Args.rows(x), x.size(-1), x.dtype().code(), eps, x.address(),
        weight.address(), addr(bias), out.address(), addr(mean), addr(rstd)));
  }

  /**
   * LayerNorm backward from the saved mean and rstd: returns dx (like x, written) and accumulates
   * into dweight and (when non-null) dbias, (C) F32.
   */
  public static Tensor layerNormBackward(Tensor dout, Tensor x, Tensor weight, Tensor mean, Tensor rstd,
      Tensor dweight, Tensor dbias) {
    Args.need("layerNormBackward", "x", x);
    Tensor dx = Tensor.empty(x.dtype(), x.device(), x.shape());
    try {
      layerNormBackward(dout, x, weight, mean, rstd, dx, dweight, dbias);
      return dx;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, dx);
    }
  }

  /**
   * The rows per chunk of the CPU norms' parameter-gradient reduction ({@code kNormRowChunk} of {@code
   * native/cpu/norm_impl.h}): a backward over rows sums each chunk of this many rows in order into a partial, then adds
   * the partials in chunk order, and adds that total into dweight (and dbias) once. Code that cuts the rows of one
   * backward into several calls (sequence parallelism) and wants the same bits cuts at multiples of it.
   */
  public static final int NORM_ROW_CHUNK = 32;

  /** LayerNorm backward into dx (written); accumulates dweight and (when non-null) dbias. */
  public static void layerNormBackward(Tensor dout, Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx,
      Tensor dweight, Tensor dbias) {
    final String op = "layerNormBackward";
    Args.need(op, "mean", mean);
    var ctx = checkNormBackward(op, dout, x, weight, mean, rstd, dx, dweight, dbias);
    if (x.numel() == 0) return;
    ctx.run(Kernel.LAYERNORM_BWD, KernelArgs.Norm.backward(Args.rows(x), x.size(-1), x.dtype().code(), x.address(),
        weight.address(), mean.address(), rstd.address(), dout.address(), dx.address(), dweight.address(),
        addr(dbias)));
  }

  /**
   * RMSNorm over the last dimension: {@code out = x * rstd * weight}, {@code rstd = 1/sqrt(mean(x^2) + eps)}.
   *
   * @return out like x, rstd F32 shaped like x without its last dimension (mean is null)
   */
  public static NormResult rmsNorm(Tensor x, Tensor weight, float eps) {
    final String op = "rmsNorm";
    Args.need(op, "x", x);
    Tensor out = null, rstd = null;
    try {
      out = Tensor.empty(x.dtype(), x.device(), x.shape());
      rstd = Tensor.empty(DType.F32, x.device(), Args.leading(x));
      rmsNorm(x, weight, eps, out, rstd);
      return new NormResult(out, null, rstd);
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out, rstd);
    }
  }

  /** RMSNorm into caller-provided outputs; rstd may be null when the backward is not needed. */
  public static void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out, Tensor rstd) {
    final String op = "rmsNorm";
    var ctx = checkNormForward(op, x, weight, null, eps, out, null, rstd);
    if (x.numel() == 0) return;
    ctx.run(Kernel.RMSNORM_FWD, KernelArgs.Norm.forward(Args.rows(x), x.size(-1), x.dtype().code(), eps, x.address(),
        weight.address(), 0, out.address(), 0, addr(rstd)));
  }

  /** RMSNorm backward from the saved rstd: returns dx and accumulates into dweight (C) F32. */
  public static Tensor rmsNormBackward(Tensor dout, Tensor x, Tensor weight, Tensor rstd, Tensor dweight) {
    Args.need("rmsNormBackward", "x", x);
    Tensor dx = Tensor.empty(x.dtype(), x.device(), x.shape());
    try {
      rmsNormBackward(dout, x, weight, rstd, dx, dweight);
      return dx;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, dx);
    }
  }

  /** RMSNorm backward into dx (written); accumulates dweight. */
  public static void rmsNormBackward(Tensor dout, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dweight) {
    final String op = "rmsNormBackward";
    var ctx = checkNormBackward(op, dout, x, weight, null, rstd, dx, dweight, null);
    if (x.numel() == 0) return;
    ctx.run(Kernel.RMSNORM_BWD, KernelArgs.Norm.backward(Args.rows(x), x.size(-1), x.dtype().code(), x.address(),
        weight.address(), 0, rstd.address(), dout.address(), dx.address(), dweight.address(), 0));
  }

  private static ExecutionContext checkNormForward(String op, Tensor x, Tensor weight, Tensor bias, float eps,
      Tensor out, Tensor mean, Tensor rstd) {
    Args.need(op, "x", x);
    Args.need(op, "weight", weight);
    Args.optional(op, "bias", bias);
    Args.need(op, "out", out);
    Args.optional(op, "mean", mean);
    Args.optional(op, "rstd", rstd);
    var ctx = Args.context(op, "x", x, "weight", weight, "bias", bias, "out", out, "mean", mean, "rstd", rstd);
    checkNormInput(op, x, weight);
    if (bias != null) checkParam(op, "bias", bias, x);
    Args.sameDtype(op, "out", out, "x", x);
    Args.sameShape(op, "out", out, "x", x);
    Args.contiguous(op, "out", out);
    checkStat(op, "mean", mean, x);
    checkStat(op, "rstd", rstd, x);
    if (!Float.isFinite(eps) || eps < 0) throw bad(op, "eps = " + eps + " must be finite and >= 0");
    return ctx;
  }

  private static ExecutionContext checkNormBackward(String op, Tensor dout, Tensor x, Tensor weight, Tensor mean,
      Tensor rstd, Tensor dx, Tensor dweight, Tensor dbias) {
    Args.need(op, "dout", dout);
    Args.need(op, "x", x);
    Args.need(op, "weight", weight);
    Args.need(op, "rstd", rstd);
    Args.need(op, "dx", dx);
    Args.need(op, "dweight", dweight);
    Args.optional(op, "dbias", dbias);
    var ctx = Args.context(op, "dout", dout, "x", x, "weight", weight, "mean", mean, "rstd", rstd, "dx", dx,
        "dweight", dweight, "dbias", dbias);
    checkNormInput(op, x, weight);
    for (String name : new String[] {"dout", "dx"}) {
      Tensor t = name.equals("dout") ? dout : dx;
      Args.sameDtype(op, name, t, "x", x);
      Args.sameShape(op, name, t, "x", x);
      Args.contiguous(op, name, t);
    }
    checkStat(op, "mean", mean, x);
    checkStat(op, "rstd", rstd, x);
    checkParamGrad(op, "dweight", dweight, x.size(-1));
    if (dbias != null) checkParamGrad(op, "dbias", dbias, x.size(-1));
    return ctx;
  }

  private static void checkNormInput(String op, Tensor x, Tensor weight) {
    if (x.rank() < 1) throw bad(op, describe("x", x) + " must have at least one dimension (..., C)");
    Args.floating(op, "x", x);
    Args.contiguous(op, "x", x);
    Args.positive(op, "C (last dimension of " + describe("x", x) + ")", x.size(-1));
    checkParam(op, "weight", weight, x);
  }

  private static void checkParam(String op, String name, Tensor p, Tensor x) {
    Args.sameDtype(op, name, p, "x", x);
    Args.shape(op, name, p, new long[] {x.size(-1)}, "(the last dimension of " + describe("x", x) + ")");
    Args.contiguous(op, name, p);
  }

  private static void checkParamGrad(String op, String name, Tensor g, long cols) {
    Args.dtype(op, name, g, DType.F32);
    Args.shape(op, name, g, new long[] {cols}, "(parameter gradients are F32, one per column)");
    Args.contiguous(op, name, g);
  }

  /** mean/rstd: null, or F32 contiguous with one value per row of x. */
  private static void checkStat(String op, String name, Tensor s, Tensor x) {
    if (s == null) return;
    Args.dtype(op, name, s, DType.F32);
    Args.contiguous(op, name, s);
    if (s.numel() != Args.rows(x)) {
      throw bad(op, describe(name, s) + " must hold one value per row of " + describe("x", x) + ", i.e. "
          + Args.rows(x) + " values (shape " + Args.shapeString(Args.leading(x)) + ")");
    }
  }

  // ================================================================== activations

  /** GELU, tanh approximation: {@code 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))}. */
  public static Tensor gelu(Tensor x) {
    return activation("gelu", KernelArgs.ACT_GELU_TANH, x, null);
  }

  /** GELU into out (x's shape and dtype, contiguous). */
  public static void gelu(Tensor x, Tensor out) {
    activation("gelu", KernelArgs.ACT_GELU_TANH, x, null, out);
  }

  /** GELU backward: returns dx from the forward input x and dout. */
  public static Tensor geluBackward(Tensor x, Tensor dout) {
    return activationBackward("geluBackward", KernelArgs.ACT_GELU_TANH, x, dout);
  }

  /** GELU backward into dx. */
  public static void geluBackward(Tensor x, Tensor dout, Tensor dx) {
    activationBackward("geluBackward", KernelArgs.ACT_GELU_TANH, x, null, dout, dx, null);
  }

  /** SiLU: {@code x * sigmoid(x)}. */
  public static Tensor silu(Tensor x) {
    return activation("silu", KernelArgs.ACT_SILU, x, null);
  }

  /** SiLU into out. */
  public static void silu(Tensor x, Tensor out) {
    activation("silu", KernelArgs.ACT_SILU, x, null, out);
  }

  /** SiLU backward: returns dx. */
  public static Tensor siluBackward(Tensor x, Tensor dout) {
    return activationBackward("siluBackward", KernelArgs.ACT_SILU, x, dout);
  }

  /** SiLU backward into dx. */
  public static void siluBackward(Tensor x, Tensor dout, Tensor dx) {
    activationBackward("siluBackward", KernelArgs.ACT_SILU, x, null, dout, dx, null);
  }

  /** SwiGLU: {@code silu(gate) * up}, gate and up of one shape and dtype. */
  public static Tensor swiglu(Tensor gate, Tensor up) {
    return activation("swiglu", KernelArgs.ACT_SWIGLU, gate, up);
  }

  /** SwiGLU into out. */
  public static void swiglu(Tensor gate, Tensor up, Tensor out) {
    activation("swiglu", KernelArgs.ACT_SWIGLU, gate, up, out);
  }

  /** SwiGLU backward: returns (dgate, dup). */
  public static GluGrads swigluBackward(Tensor gate, Tensor up, Tensor dout) {
    final String op = "swigluBackward";
    Args.need(op, "gate", gate);
    Tensor dg = null, du = null;
    try {
      dg = Tensor.empty(gate.dtype(), gate.device(), gate.shape());
      du = Tensor.empty(gate.dtype(), gate.device(), gate.shape());
      activationBackward(op, KernelArgs.ACT_SWIGLU, gate, up, dout, dg, du);
      return new GluGrads(dg, du);
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, dg, du);
    }
  }

  /** SwiGLU backward into dgate and dup (both written). */
  public static void swigluBackward(Tensor gate, Tensor up, Tensor dout, Tensor dgate, Tensor dup) {
    activationBackward("swigluBackward", KernelArgs.ACT_SWIGLU, gate, up, dout, dgate, dup);
  }

  private static Tensor activation(String op, int act, Tensor x, Tensor y) {
    Args.need(op, act == KernelArgs.ACT_SWIGLU ? "gate" : "x", x);
    Tensor out = Tensor.empty(x.dtype(), x.device(), x.shape());
    try {
      activation(op, act, x, y, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  private static void activation(String op, int act, Tensor x, Tensor y, Tensor out) {
    boolean glu = act == KernelArgs.ACT_SWIGLU;
    String xn = glu ? "gate" : "x";
    var ctx = checkElementwise(op, xn, x, glu ? "up" : null, y, "out", out);
    if (x.numel() == 0) return;
    ctx.run(Kernel.ACTIVATION_FWD, new KernelArgs.Activation(x.numel(), x.dtype().code(), act, x.address(), addr(y),
        out.address(), 0, 0, 0));
  }

  private static Tensor activationBackward(String op, int act, Tensor x, Tensor dout) {
    Args.need(op, "x", x);
    Tensor dx = Tensor.empty(x.dtype(), x.device(), x.shape());
    try {
      activationBackward(op, act, x, null, dout, dx, null);
      return dx;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, dx);
    }
  }

  private static void activationBackward(String op, int act, Tensor x, Tensor y, Tensor dout, Tensor dx, Tensor dy) {
    boolean glu = act == KernelArgs.ACT_SWIGLU;
    String xn = glu ? "gate" : "x";
    var ctx = checkElementwise(op, xn, x, glu ? "up" : null, y, "dout", dout);
    Args.need(op, glu ? "dgate" : "dx", dx);
    Args.context(op, xn, x, glu ? "dgate" : "dx", dx, "dup", dy);
    checkLike(op, glu ? "dgate" : "dx", dx, xn, x);
    if (glu) {
      Args.need(op, "dup", dy);
      checkLike(op, "dup", dy, xn, x);
    }
    if (x.numel() == 0) return;
    ctx.run(Kernel.ACTIVATION_BWD, new KernelArgs.Activation(x.numel(), x.dtype().code(), act, x.address(), addr(y), 0,
        dout.address(), dx.address(), addr(dy)));
  }

  /**
   * Checks a same-shape elementwise op: x floating and contiguous; y (when its name is non-null)
   * and the third tensor of x's shape and dtype, contiguous. Returns the backend.
   */
  private static ExecutionContext checkElementwise(String op, String xn, Tensor x, String yn, Tensor y, String zn,
      Tensor z) {
    Args.need(op, xn, x);
    if (yn != null) Args.need(op, yn, y);
    Args.need(op, zn, z);
    var ctx = Args.context(op, xn, x, yn == null ? "y" : yn, yn == null ? null : y, zn, z);
    Args.floating(op, xn, x);
    Args.contiguous(op, xn, x);
    if (yn != null) checkLike(op, yn, y, xn, x);
    checkLike(op, zn, z, xn, x);
    return ctx;
  }

  /** t has ref's shape and dtype and is contiguous. */
  private static void checkLike(String op, String name, Tensor t, String refName, Tensor ref) {
    Args.sameDtype(op, name, t, refName, ref);
    Args.sameShape(op, name, t, refName, ref);
    Args.contiguous(op, name, t);
  }

  // ================================================================== cross-entropy

  /**
   * Fused softmax + cross-entropy per row: {@code loss = lse - logits[target]}; a target {@code < 0} is
   * ignored (loss 0, gradient 0).
   *
   * @param logits (rows, vocab) with a contiguous last dimension (row stride may exceed vocab), or
   *     any contiguous (..., vocab)
   * @param targets I32 with one entry per row, in [0, vocab) or negative (ignored)
   * @return losses and lse, F32, shaped like targets
   */
  public static CrossEntropyResult crossEntropy(Tensor logits, Tensor targets) {
    final String op = "crossEntropy";
    Args.need(op, "targets", targets);
    Tensor losses = null, lse = null;
    try {
      losses = Tensor.empty(DType.F32, targets.device(), targets.shape());
      lse = Tensor.empty(DType.F32, targets.device(), targets.shape());
      crossEntropy(logits, targets, losses, lse);
      return new CrossEntropyResult(losses, lse);
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, losses, lse);
    }
  }

  /** Cross-entropy into losses (rows) F32 and lse (rows) F32 or null. */
  public static void crossEntropy(Tensor logits, Tensor targets, Tensor losses, Tensor lse) {
    final String op = "crossEntropy";
    Args.need(op, "losses", losses);
    Args.optional(op, "lse", lse);
    Logits lg = Logits.of(op, logits, targets);
    var ctx = Args.context(op, "logits", logits, "targets", targets, "losses", losses, "lse", lse);
    checkRowVector(op, "losses", losses, lg.rows, "logits", logits);
    if (lse != null) checkRowVector(op, "lse", lse, lg.rows, "logits", logits);
    checkTargets(op, targets, lg.vocab);
    if (lg.rows == 0) return;
    ctx.run(Kernel.CROSS_ENTROPY_FWD, new KernelArgs.CrossEntropy(lg.rows, lg.vocab, lg.ld, logits.dtype().code(),
        logits.address(), targets.address(), losses.address(), addr(lse), 0, 0));
  }

  /**
   * Cross-entropy backward: {@code dlogits[r, j] = dlosses[r] (softmax(logits[r])[j] - [j == target[r]])}
   * from the saved lse. Returns dlogits with the layout of logits (contiguous logits, or a
   * permutation of a contiguous tensor; otherwise use the into form).
   */
  public static Tensor crossEntropyBackward(Tensor logits, Tensor targets, Tensor lse, Tensor dlosses) {
    final String op = "crossEntropyBackward";
    Args.need(op, "logits", logits);
    Tensor d = Layouts.emptyLike(op, "logits", logits);
    try {
      crossEntropyBackward(logits, targets, lse, dlosses, d);
      return d;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, d);
    }
  }

  /** Cross-entropy backward into dlogits (written), which must have the shape, dtype and strides of logits. */
  public static void crossEntropyBackward(Tensor logits, Tensor targets, Tensor lse, Tensor dlosses, Tensor dlogits) {
    final String op = "crossEntropyBackward";
    Args.need(op, "lse", lse);
    Args.need(op, "dlosses", dlosses);
    Args.need(op, "dlogits", dlogits);
    Logits lg = Logits.of(op, logits, targets);
    var ctx = Args.context(op, "logits", logits, "targets", targets, "lse", lse, "dlosses", dlosses,
        "dlogits", dlogits);
    checkRowVector(op, "lse", lse, lg.rows, "logits", logits);
    checkRowVector(op, "dlosses", dlosses, lg.rows, "logits", logits);
    Args.sameDtype(op, "dlogits", dlogits, "logits", logits);
    Args.sameShape(op, "dlogits", dlogits, "logits", logits);
    Args.sameStrides(op, "dlogits", dlogits, "logits", logits);
    checkTargets(op, targets, lg.vocab);
    if (lg.rows == 0) return;
    ctx.run(Kernel.CROSS_ENTROPY_BWD, new KernelArgs.CrossEntropy(lg.rows, lg.vocab, lg.ld, logits.dtype().code(),
        logits.address(), targets.address(), 0, lse.address(), dlosses.address(), dlogits.address()));
  }

  /** Logits as (rows, vocab) with row stride ld. */
  private record Logits(long rows, long vocab, long ld) {
    static Logits of(String op, Tensor logits, Tensor targets) {
      Args.need(op, "logits", logits);
      Args.need(op, "targets", targets);
      Args.floating(op, "logits", logits);
      if (logits.rank() < 1) throw bad(op, describe("logits", logits) + " must be (rows, vocab)");
      long vocab = logits.size(-1);
      Args.positive(op, "vocab (last dimension of " + describe("logits", logits) + ")", vocab);
      long rows = Args.rows(logits);
      long ld;
      if (logits.isContiguous()) {
        ld = vocab;
      } else if (logits.rank() == 2) {
        Args.innerContiguous(op, "logits", logits);
        ld = rows <= 1 ? vocab : logits.strides()[0];
        if (ld < vocab) {
          throw bad(op, describe("logits", logits) + " has row stride " + ld + " < vocab " + vocab
              + "; call contiguous() first");
        }
      } else {
        throw bad(op, describe("logits", logits) + " must be contiguous, or 2-D (rows, vocab) with a "
            + "contiguous last dimension (strides " + Args.shapeString(logits.strides()) + ")");
      }
      Args.dtype(op, "targets", targets, DType.I32);
      Args.contiguous(op, "targets", targets);
      if (targets.numel() != rows) {
        throw bad(op, describe("targets", targets) + " must hold one target per row of " + describe("logits", logits)
            + " (" + rows + " rows)");
      }
      return new Logits(rows, vocab, ld);
    }
  }

  private static void checkRowVector(String op, String name, Tensor t, long rows, String refName, Tensor ref) {
    Args.dtype(op, name, t, DType.F32);
    Args.contiguous(op, name, t);
    if (t.numel() != rows) {
      throw bad(op, describe(name, t) + " must hold one value per row of " + describe(refName, ref)
          + " (" + rows + " rows)");
    }
  }

  /** Host targets: each in [-inf, vocab); negative means ignored. CUDA targets are not read back. */
  private static void checkTargets(String op, Tensor targets, long vocab) {
    if (targets.device().isCuda()) return;
    int[] t = Tensor.uncounted(targets::toIntArray);  // a host check: not a read a device step makes
    for (int i = 0; i < t.length; i++) {
      if (t[i] >= vocab) {
        throw bad(op, "target " + t[i] + " at position " + i + " of " + describe("targets", targets)
            + " is out of range: must be < vocab " + vocab + " (or negative to ignore the row)");
      }
    }
  }

  // ================================================================== embedding

  /**
   * Embedding lookup: {@code out[i] = table[ids[i]]}.
   *
   * @param ids I32, any shape, contiguous, each in [0, vocab)
   * @param table (vocab, dim) contiguous, floating
   * @return ids' shape + (dim), table's dtype
   */
  public static Tensor embedding(Tensor ids, Tensor table) {
    final String op = "embedding";
    Args.need(op, "ids", ids);
    Args.need(op, "table", table);
    Args.rank(op, "table", table, 2, "(vocab, dim)");
    Tensor out = Tensor.empty(table.dtype(), table.device(), Args.append(ids.shape(), table.size(1)));
    try {
      embedding(ids, table, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  /** Embedding lookup into out (ids' shape + (dim), table's dtype, contiguous). */
  public static void embedding(Tensor ids, Tensor table, Tensor out) {
    final String op = "embedding";
    Args.need(op, "ids", ids);
    Args.need(op, "table", table);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "ids", ids, "table", table, "out", out);
    checkIds(op, ids);
    Args.rank(op, "table", table, 2, "(vocab, dim)");
    Args.floating(op, "table", table);
    Args.contiguous(op, "table", table);
    long vocab = table.size(0), dim = table.size(1);
    Args.positive(op, "vocab (rows of " + describe("table", table) + ")", vocab);
    Args.sameDtype(op, "out", out, "table", table);
    Args.shape(op, "out", out, Args.append(ids.shape(), dim), "(ids' shape + (dim))");
    Args.contiguous(op, "out", out);
    checkIdRange(op, ids, vocab);
    if (ids.numel() == 0) return;
    ctx.run(Kernel.EMBEDDING_FWD, new KernelArgs.Embedding(ids.numel(), vocab, dim, table.dtype().code(),
        ids.address(), table.address(), out.address(), 0, 0));
  }

  /**
   * Embedding backward: accumulates each row of dout into {@code dtable[ids[i]]}.
   *
   * @param dout ids' shape + (dim), floating, contiguous
   * @param dtable (vocab, dim) F32, contiguous (accumulated)
   */
  public static void embeddingBackward(Tensor ids, Tensor dout, Tensor dtable) {
    final String op = "embeddingBackward";
    Args.need(op, "ids", ids);
    Args.need(op, "dout", dout);
    Args.need(op, "dtable", dtable);
    var ctx = Args.context(op, "ids", ids, "dout", dout, "dtable", dtable);
    checkIds(op, ids);
    Args.rank(op, "dtable", dtable, 2, "(vocab, dim)");
    Args.dtype(op, "dtable", dtable, DType.F32);
    Args.contiguous(op, "dtable", dtable);
    long vocab = dtable.size(0), dim = dtable.size(1);
    Args.positive(op, "vocab (rows of " + describe("dtable", dtable) + ")", vocab);
    Args.floating(op, "dout", dout);
    Args.shape(op, "dout", dout, Args.append(ids.shape(), dim), "(ids' shape + (dim))");
    Args.contiguous(op, "dout", dout);
    checkIdRange(op, ids, vocab);
    if (ids.numel() == 0) return;
    ctx.run(Kernel.EMBEDDING_BWD, new KernelArgs.Embedding(ids.numel(), vocab, dim, dout.dtype().code(), ids.address(),
        0, 0, dout.address(), dtable.address()));
  }

  private static void checkIds(String op, Tensor ids) {
    Args.dtype(op, "ids", ids, DType.I32);
    Args.contiguous(op, "ids", ids);
  }

  /** Host ids must lie in [0, vocab); CUDA ids are not read back. */
  private static void checkIdRange(String op, Tensor ids, long vocab) {
    if (ids.device().isCuda()) return;
    int[] v = Tensor.uncounted(ids::toIntArray);  // a host check: not a read a device step makes
    for (int i = 0; i < v.length; i++) {
      if (v[i] < 0 || v[i] >= vocab) {
        throw bad(op, "token id " + v[i] + " at position " + i + " of " + describe("ids", ids)
            + " is out of range [0, " + vocab + ")");
      }
    }
  }

  // ================================================================== rotary position embedding

  /**
   * Rotary position embedding (Hugging Face Llama "rotate_half" convention): rotates the pairs
   * (i, i + D/2) of each head by angle {@code (pos0 + t) * theta^(-2i/D)}.
   *
   * @param x (B, T, H, D), D even, any strides with a contiguous last dimension
   * @return a new tensor with x's layout
   */
  public static Tensor rope(Tensor x, long pos0, float theta) {
    Args.need("rope", "x", x);
    Tensor out = Layouts.emptyLike("rope", "x", x);
    try {
      rope(x, out, pos0, theta, false);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  /** RoPE backward: rotates dout by the negative angle, which is the gradient with respect to x. */
  public static Tensor ropeBackward(Tensor dout, long pos0, float theta) {
    Args.need("ropeBackward", "dout", dout);
    Tensor dx = Layouts.emptyLike("ropeBackward", "dout", dout);
    try {
      rope(dout, dx, pos0, theta, true);
      return dx;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, dx);
    }
  }

  /**
   * RoPE into out, which must have x's shape, dtype and strides, or be x itself (in place).
   * {@code inverse} rotates by the negative angle (the backward pass).
   */
  public static void rope(Tensor x, Tensor out, long pos0, float theta, boolean inverse) {
    final String op = inverse ? "ropeBackward" : "rope";
    Args.need(op, "x", x);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "x", x, "out", out);
    Args.rank(op, "x", x, 4, "(batch, seq, heads, headDim)");
    Args.floating(op, "x", x);
    Args.innerContiguous(op, "x", x);
    long d = x.size(3);
    if (d <= 0 || d % 2 != 0) throw bad(op, "head dimension " + d + " of " + describe("x", x) + " must be even and > 0");
    if (out != x) {
      Args.sameDtype(op, "out", out, "x", x);
      Args.sameShape(op, "out", out, "x", x);
      Args.sameStrides(op, "out", out, "x", x);
    }
    if (pos0 < 0) throw bad(op, "pos0 = " + pos0 + " must be >= 0");
    if (!Float.isFinite(theta) || theta <= 0) throw bad(op, "theta = " + theta + " must be finite and > 0");
    if (x.numel() == 0) return;
    long[] s = x.strides();
    ctx.run(Kernel.ROPE, new KernelArgs.Rope(x.size(0), x.size(1), x.size(2), d, x.dtype().code(), inverse, pos0,
        theta, x.address(), out.address(), s[0], s[1], s[2]));
  }

  // ================================================================== elementwise

  /** {@code a + b}, same shape and dtype, contiguous. */
  public static Tensor add(Tensor a, Tensor b) {
    return binary("add", KernelArgs.EW_ADD, a, b);
  }

  /** {@code out = a + b}; out may be a or b. */
  public static void add(Tensor a, Tensor b, Tensor out) {
    binary("add", KernelArgs.EW_ADD, a, b, out);
  }

  /** {@code a * b}, same shape and dtype, contiguous. */
  public static Tensor mul(Tensor a, Tensor b) {
    return binary("mul", KernelArgs.EW_MUL, a, b);
  }

  /** {@code out = a * b}; out may be a or b. */
  public static void mul(Tensor a, Tensor b, Tensor out) {
    binary("mul", KernelArgs.EW_MUL, a, b, out);
  }

  /** {@code alpha * a}. */
  public static Tensor scale(Tensor a, float alpha) {
    final String op = "scale";
    Args.need(op, "a", a);
    Tensor out = Tensor.empty(a.dtype(), a.device(), a.shape());
    try {
      scale(a, alpha, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  /** {@code out = alpha * a}; out may be a. */
  public static void scale(Tensor a, float alpha, Tensor out) {
    final String op = "scale";
    var ctx = checkElementwise(op, "a", a, null, null, "out", out);
    Args.finite(op, "alpha", alpha);
    if (a.numel() == 0) return;
    ctx.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(a.numel(), KernelArgs.EW_SCALE, a.dtype().code(),
        a.dtype().code(), a.address(), 0, out.address(), alpha));
  }

  /** {@code out += alpha * a} in place. */
  public static void axpy(Tensor out, float alpha, Tensor a) {
    final String op = "axpy";
    var ctx = checkElementwise(op, "a", a, null, null, "out", out);
    Args.finite(op, "alpha", alpha);
    if (a.numel() == 0) return;
    ctx.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(a.numel(), KernelArgs.EW_AXPY, a.dtype().code(),
        a.dtype().code(), a.address(), 0, out.address(), alpha));
  }

  /** Sets every element of out (contiguous, floating) to value (rounded to out's dtype). */
  public static void fill(Tensor out, float value) {
    final String op = "fill";
    Args.need(op, "out", out);
    var ctx = Args.context(op, "out", out);
    Args.floating(op, "out", out);
    Args.contiguous(op, "out", out);
    if (out.numel() == 0) return;
    ctx.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(out.numel(), KernelArgs.EW_FILL, out.dtype().code(),
        out.dtype().code(), 0, 0, out.address(), value));
  }

  /** A copy of a converted to dtype (round-to-nearest-even). */
  public static Tensor convert(Tensor a, DType dtype) {
    final String op = "convert";
    Args.need(op, "a", a);
    if (dtype == null) throw bad(op, "dtype is null");
    Tensor out = Tensor.empty(dtype, a.device(), a.shape());
    try {
      convert(a, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  /** {@code out = a} converted to out's dtype; same shape, both contiguous. */
  public static void convert(Tensor a, Tensor out) {
    final String op = "convert";
    Args.need(op, "a", a);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "a", a, "out", out);
    Args.contiguous(op, "a", a);
    Args.sameShape(op, "out", out, "a", a);
    Args.contiguous(op, "out", out);
    if (a.numel() == 0) return;
    ctx.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(a.numel(), KernelArgs.EW_CONVERT, a.dtype().code(),
        out.dtype().code(), a.address(), 0, out.address(), 0f));
  }

  private static Tensor binary(String op, int code, Tensor a, Tensor b) {
    Args.need(op, "a", a);
    Tensor out = Tensor.empty(a.dtype(), a.device(), a.shape());
    try {
      binary(op, code, a, b, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  private static void binary(String op, int code, Tensor a, Tensor b, Tensor out) {
    var ctx = checkElementwise(op, "a", a, "b", b, "out", out);
    if (a.numel() == 0) return;
    ctx.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(a.numel(), code, a.dtype().code(), a.dtype().code(),
        a.address(), b.address(), out.address(), 0f));
  }

  // ================================================================== reductions

  /** {@code sum(x)} over all elements, as a one-element F32 tensor on x's device (no host sync). */
  public static Tensor sum(Tensor x) {
    return reduceToScalar("sum", KernelArgs.RED_SUM, x);
  }

  /** Writes {@code sum(x)} into out, a one-element F32 tensor. */
  public static void sum(Tensor x, Tensor out) {
    reduceToScalar("sum", KernelArgs.RED_SUM, x, out);
  }

  /** {@code sum(x^2)} over all elements, as a one-element F32 tensor on x's device. */
  public static Tensor sumSquares(Tensor x) {
    return reduceToScalar("sumSquares", KernelArgs.RED_SUM_SQUARES, x);
  }

  /** Writes {@code sum(x^2)} into out, a one-element F32 tensor. */
  public static void sumSquares(Tensor x, Tensor out) {
    reduceToScalar("sumSquares", KernelArgs.RED_SUM_SQUARES, x, out);
  }

  /**
   * Column sums accumulated into out: x (..., cols) contiguous, out (cols) F32 contiguous,
   * {@code out[c] += sum over rows of x[r, c]} (bias gradients).
   */
  public static void sumRows(Tensor x, Tensor out) {
    final String op = "sumRows";
    Args.need(op, "x", x);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "x", x, "out", out);
    if (x.rank() < 1) throw bad(op, describe("x", x) + " must be (rows, cols)");
    Args.floating(op, "x", x);
    Args.contiguous(op, "x", x);
    long cols = x.size(-1);
    Args.dtype(op, "out", out, DType.F32);
    Args.shape(op, "out", out, new long[] {cols}, "(one sum per column of x)");
    Args.contiguous(op, "out", out);
    if (x.numel() == 0) return;
    ctx.run(Kernel.REDUCE, new KernelArgs.Reduce(x.numel(), Args.rows(x), cols, KernelArgs.RED_SUM_ROWS,
        x.dtype().code(), x.address(), out.address()));
  }

  /** Elements per partial sum of {@link #sumSquaresPartials} and {@link #globalNorm}. */
  public static final long NORM_CHUNK = 1L << 20;

  /**
   * The sums of squares of consecutive chunks of {@link #NORM_CHUNK} elements of {@code x} (the last chunk may be
   * shorter), each formed on x's device in a fixed order and rounded to F32 once, returned to the host in chunk
   * order. A chunk's partial depends only on its elements, so any split of a flat buffer at chunk boundaries (a
   * shard, an offload unit) yields the same partials. Synchronizes.
   */
  public static float[] sumSquaresPartials(Tensor x) {
    final String op = "sumSquaresPartials";
    Args.need(op, "x", x);
    Args.floating(op, "x", x);
    Args.contiguous(op, "x", x);
    var ctx = Args.context(op, "x", x);
    int chunks = normChunks(x);
    if (chunks == 0) return new float[0];
    try (Tensor sums = Tensor.empty(DType.F32, x.device(), chunks)) {
      runSumSquares(ctx, x, sums);
      return sums.toFloatArray();
    }
  }

  /** The number of {@link #NORM_CHUNK}-element chunks of {@code x}: the length of its {@link #sumSquaresPartials}. */
  public static int normChunks(Tensor x) {
    return Math.toIntExact((x.numel() + NORM_CHUNK - 1) / NORM_CHUNK);
  }

  /**
   * {@link #sumSquaresPartials} written into {@code sums} (F32, contiguous, {@link #normChunks} elements on x's
   * device) and left there: no synchronisation.
   */
  public static void sumSquaresPartials(Tensor x, Tensor sums) {
    final String op = "sumSquaresPartials";
    Args.need(op, "x", x);
    Args.need(op, "sums", sums);
    Args.floating(op, "x", x);
    Args.contiguous(op, "x", x);
    var ctx = Args.context(op, "x", x, "sums", sums);
    Args.dtype(op, "sums", sums, DType.F32);
    Args.contiguous(op, "sums", sums);
    if (sums.numel() != normChunks(x)) {
      throw bad(op, describe("sums", sums) + " must hold one partial per chunk of x: " + normChunks(x));
    }
    runSumSquares(ctx, x, sums);
  }

  private static void runSumSquares(ExecutionContext ctx, Tensor x, Tensor sums) {
    long n = x.numel(), es = x.dtype().byteSize();
    int chunks = normChunks(x);
    for (int j = 0; j < chunks; j++) {
      long start = j * NORM_CHUNK, len = Math.min(NORM_CHUNK, n - start);
      ctx.run(Kernel.REDUCE, new KernelArgs.Reduce(len, 1, len, KernelArgs.RED_SUM_SQUARES, x.dtype().code(),
          x.address() + start * es, sums.address() + 4L * j));
    }
  }

  /**
   * {@code out[0] = (float) (sum of losses[i] with targets[i] >= 0, in double in index order, / their count)} (0 when
   * there is none), formed where the tensors are: the mean cross-entropy a forward pass returns, without
   * synchronising. losses (n) F32 and targets (n) I32 contiguous, out F32 with one element.
   */
  public static void lossMean(Tensor losses, Tensor targets, Tensor out) {
    final String op = "lossMean";
    Args.need(op, "losses", losses);
    Args.need(op, "targets", targets);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "losses", losses, "targets", targets, "out", out);
    Args.dtype(op, "losses", losses, DType.F32);
    Args.dtype(op, "targets", targets, DType.I32);
    Args.dtype(op, "out", out, DType.F32);
    for (Tensor t : new Tensor[] {losses, targets, out}) Args.contiguous(op, "tensor", t);
    if (targets.numel() != losses.numel()) {
      throw bad(op, describe("targets", targets) + " must have one target per loss of " + describe("losses", losses));
    }
    if (out.numel() != 1) throw bad(op, describe("out", out) + " must hold exactly one element");
    ctx.run(Kernel.TRAIN_SCALARS, new KernelArgs.TrainScalars(KernelArgs.TS_LOSS_MEAN, losses.numel(),
        losses.address(), targets.address(), 0, 0, 0f, out.address()));
  }

  /**
   * The clipping of a training step formed where the tensors are, without synchronising: from {@code partials} (F32,
   * a gradient's {@link #sumSquaresPartials} in order) {@code out[0] = norm} as {@link #globalNorm} forms it and
   * {@code out[1] = (float) min(1, maxNorm / (norm + 1e-6))} (1 when maxNorm is 0), or NaN when the norm or one of
   * {@code losses} (F32; may be null) is not finite: {@link #adamw(Tensor, Tensor, Tensor, Tensor, Tensor, float, float,
   * float, float, float, Tensor, long)} then leaves everything untouched.
   */
  public static void clipScale(Tensor partials, Tensor losses, float maxNorm, Tensor out) {
    final String op = "clipScale";
    Args.need(op, "partials", partials);
    Args.optional(op, "losses", losses);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "partials", partials, "losses", losses, "out", out);
    Args.dtype(op, "partials", partials, DType.F32);
    Args.dtype(op, "out", out, DType.F32);
    Args.contiguous(op, "partials", partials);
    Args.contiguous(op, "out", out);
    if (losses != null) {
      Args.dtype(op, "losses", losses, DType.F32);
      Args.contiguous(op, "losses", losses);
    }
    if (out.numel() != 2) throw bad(op, describe("out", out) + " must hold two elements (norm, factor)");
    if (!Float.isFinite(maxNorm) || maxNorm < 0) throw bad(op, "maxNorm = " + maxNorm + " must be finite and >= 0");
    ctx.run(Kernel.TRAIN_SCALARS, new KernelArgs.TrainScalars(KernelArgs.TS_CLIP_SCALE, partials.numel(),
        partials.address(), 0, losses == null ? 0 : losses.numel(), addr(losses), maxNorm, out.address()));
  }

  /**
   * The global L2 norm {@code sqrt(sum over tensors of sum(t^2))} of a list of tensors (e.g. all gradients, for
   * clipping): the {@link #sumSquaresPartials} of each tensor, added on the host in double in list and chunk
   * order. Synchronizes.
   */
  public static float globalNorm(List<Tensor> tensors) {
    final String op = "globalNorm";
    if (tensors == null) throw bad(op, "tensors is null");
    for (int i = 0; i < tensors.size(); i++) {
      Tensor t = Args.need(op, "tensors[" + i + "]", tensors.get(i));
      Args.floating(op, "tensors[" + i + "]", t);
      Args.contiguous(op, "tensors[" + i + "]", t);
    }
    double total = 0;
    for (Tensor t : tensors) {
      for (float p : sumSquaresPartials(t)) total += p;
    }
    return (float) Math.sqrt(total);
  }

  private static Tensor reduceToScalar(String op, int code, Tensor x) {
    Args.need(op, "x", x);
    Tensor out = Tensor.empty(DType.F32, x.device(), 1);
    try {
      reduceToScalar(op, code, x, out);
      return out;
    } catch (RuntimeException e) {
      throw Closing.closeAfter(e, out);
    }
  }

  private static void reduceToScalar(String op, int code, Tensor x, Tensor out) {
    Args.need(op, "x", x);
    Args.need(op, "out", out);
    var ctx = Args.context(op, "x", x, "out", out);
    Args.floating(op, "x", x);
    Args.contiguous(op, "x", x);
    Args.dtype(op, "out", out, DType.F32);
    if (out.numel() != 1) throw bad(op, describe("out", out) + " must hold exactly one element");
    if (x.numel() == 0) {
      ctx.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(1, KernelArgs.EW_FILL, DType.F32.code(), DType.F32.code(),
          0, 0, out.address(), 0f));
      return;
    }
    ctx.run(Kernel.REDUCE, new KernelArgs.Reduce(x.numel(), 1, x.numel(), code, x.dtype().code(), x.address(),
        out.address()));
  }

  // ================================================================== optimizer

  /**
   * One fused AdamW step (bias-corrected, decoupled weight decay) in place on params, m and v:
   * <pre>
   *   g = grads * gradScale;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
   *   params -= lr * ((m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps) + weightDecay * params)
   * </pre>
   *
   * @param params F32, contiguous, updated in place
   * @param grads params' shape, F32, contiguous
   * @param m first moment, params' shape, F32, contiguous, updated in place
   * @param v second moment, params' shape, F32, contiguous, updated in place
   * @param paramsLowp null, or params' shape in BF16/F16, receiving a rounded copy of the new params
   * @param step the 1-based step number
   */
  public static void adamw(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor paramsLowp, float lr, float beta1,
      float beta2, float eps, float weightDecay, float gradScale, long step) {
    adamw(params, grads, m, v, paramsLowp, lr, beta1, beta2, eps, weightDecay, gradScale, null, step);
  }

  /**
   * {@link #adamw(Tensor, Tensor, Tensor, Tensor, Tensor, float, float, float, float, float, float, long)} with the
   * gradient factor read by the kernel from {@code gradScale} (F32, one element, on params' device; e.g. {@link
   * #clipScale}'s out[1]) instead of passed by the host, so no synchronisation is needed; when the factor is not finite
   * nothing is updated. On the CPU the same kernel as the float overload with the same factor: the same bits.
   */
  public static void adamw(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor paramsLowp, float lr, float beta1,
      float beta2, float eps, float weightDecay, Tensor gradScale, long step) {
    final String op = "adamw";
    Args.need(op, "gradScale", gradScale);
    Args.context(op, "params", params, "gradScale", gradScale);
    Args.dtype(op, "gradScale", gradScale, DType.F32);
    if (gradScale.numel() != 1) throw bad(op, describe("gradScale", gradScale) + " must hold exactly one element");
    adamw(params, grads, m, v, paramsLowp, lr, beta1, beta2, eps, weightDecay, 1f, gradScale, step);
  }

  private static void adamw(Tensor params, Tensor grads, Tensor m, Tensor v, Tensor paramsLowp, float lr, float beta1,
      float beta2, float eps, float weightDecay, float gradScale, Tensor scalePtr, long step) {
    final String op = "adamw";
    Args.need(op, "params", params);
    Args.need(op, "grads", grads);
    Args.need(op, "m", m);
    Args.need(op, "v", v);
    Args.optional(op, "paramsLowp", paramsLowp);
    var ctx = Args.context(op, "params", params, "grads", grads, "m", m, "v", v, "paramsLowp", paramsLowp);
    Args.dtype(op, "params", params, DType.F32);
    Args.contiguous(op, "params", params);
    for (String name : new String[] {"grads", "m", "v"}) {
      Tensor t = name.equals("grads") ? grads : name.equals("m") ? m : v;
      checkLike(op, name, t, "params", params);
    }
    if (paramsLowp != null) {
      if (paramsLowp.dtype() != DType.BF16 && paramsLowp.dtype() != DType.F16) {
        throw bad(op, describe("paramsLowp", paramsLowp) + " must be BF16 or F16");
      }
      Args.sameShape(op, "paramsLowp", paramsLowp, "params", params);
      Args.contiguous(op, "paramsLowp", paramsLowp);
    }
    if (step < 1) throw bad(op, "step = " + step + " must be >= 1");
    if (!Float.isFinite(lr) || lr < 0) throw bad(op, "lr = " + lr + " must be finite and >= 0");
    if (!(beta1 >= 0 && beta1 < 1)) throw bad(op, "beta1 = " + beta1 + " must be in [0, 1)");
    if (!(beta2 >= 0 && beta2 < 1)) throw bad(op, "beta2 = " + beta2 + " must be in [0, 1)");
    if (!Float.isFinite(eps) || eps <= 0) throw bad(op, "eps = " + eps + " must be finite and > 0");
    if (!Float.isFinite(weightDecay) || weightDecay < 0) {
      throw bad(op, "weightDecay = " + weightDecay + " must be finite and >= 0");
    }
    Args.finite(op, "gradScale", gradScale);
    if (params.numel() == 0) return;
    ctx.run(Kernel.ADAMW, new KernelArgs.Adamw(params.numel(), params.address(), grads.address(), m.address(),
        v.address(), addr(paramsLowp), paramsLowp == null ? DType.BF16.code() : paramsLowp.dtype().code(), lr, beta1,
        beta2, eps, weightDecay, gradScale, step, addr(scalePtr)));
  }

  // ================================================================== random fill

  /**
   * Fills out (contiguous, floating) with uniform values in [lo, hi) from the counter-based Philox
   * stream: element i uses counter {@code i + offset} and key {@code seed}, so the values do not
   * depend on the backend or the thread count, and {@code offset} continues a stream.
   */
  public static void randUniform(Tensor out, long seed, long offset, float lo, float hi) {
    final String op = "randUniform";
    Args.finite(op, "lo", lo);
    Args.finite(op, "hi", hi);
    if (!(lo < hi)) throw bad(op, "lo = " + lo + " must be < hi = " + hi);
    rand(op, KernelArgs.RAND_UNIFORM, out, seed, offset, lo, hi);
  }

  /** Fills out with normal values (Box-Muller on the Philox stream, as {@link #randUniform}). */
  public static void randNormal(Tensor out, long seed, long offset, float mean, float std) {
    final String op = "randNormal";
    Args.finite(op, "mean", mean);
    if (!Float.isFinite(std) || std < 0) throw bad(op, "std = " + std + " must be finite and >= 0");
    rand(op, KernelArgs.RAND_NORMAL, out, seed, offset, mean, std);
  }

  private static void rand(String op, int dist, Tensor out, long seed, long offset, float a, float b) {
    Args.need(op, "out", out);
    var ctx = Args.context(op, "out", out);
    Args.floating(op, "out", out);
    Args.contiguous(op, "out", out);
    if (offset < 0) throw bad(op, "offset = " + offset + " must be >= 0");
    if (out.numel() == 0) return;
    ctx.run(Kernel.RAND, new KernelArgs.Rand(out.numel(), out.dtype().code(), dist, seed, offset, a, b,
        out.address()));
  }

  // ================================================================== sampling

  /**
   * The next token of each row of {@code logits} (rows, cols) F32, chosen among the columns [0, vocab) with the
   * uniform draw {@code uniforms[r]} in [0, 1) (F32, one per row), written to {@code ids} (rows) I32; the same id
   * on every backend and thread count (the algorithm: {@code native/cpu/sample.cpp}). temperature 0 is greedy
   * (the lowest id among equal largest logits); topK 0 and topP 1 keep every token. A row with a NaN or +inf
   * logit in [0, cols), or whose sampled logits are all -inf, gets {@code -1 - c} for the first such column c
   * (-1 for all -inf) instead of an id. On CUDA nothing is synchronized: read ids when needed.
   */
  public static void sample(Tensor logits, long vocab, Tensor uniforms, float temperature, int topK, float topP,
      Tensor ids) {
    final String op = "sample";
    Args.need(op, "logits", logits);
    Args.need(op, "uniforms", uniforms);
    Args.need(op, "ids", ids);
    var ctx = Args.context(op, "logits", logits, "uniforms", uniforms, "ids", ids);
    Args.dtype(op, "logits", logits, DType.F32);
    Args.rank(op, "logits", logits, 2, "(rows, cols)");
    Args.innerContiguous(op, "logits", logits);
    long rows = logits.size(0), cols = logits.size(1), ld = rows <= 1 ? cols : logits.strides()[0];
    if (ld < cols) throw bad(op, describe("logits", logits) + " has row stride " + ld + " < cols " + cols);
    if (vocab < 1 || vocab > cols) throw bad(op, "vocab = " + vocab + " must be in [1, " + cols + "] (the columns of logits)");
    if (!Float.isFinite(temperature) || !(temperature >= 0)) throw bad(op, "temperature = " + temperature + " must be finite and >= 0");
    if (topK < 0) throw bad(op, "topK = " + topK + " must be >= 0 (0 = off)");
    if (!(topP > 0 && topP <= 1)) throw bad(op, "topP = " + topP + " must be in (0, 1]");
    checkRowVector(op, "uniforms", uniforms, rows, "logits", logits);
    Args.dtype(op, "ids", ids, DType.I32);
    Args.contiguous(op, "ids", ids);
    if (ids.numel() != rows) throw bad(op, describe("ids", ids) + " must hold one id per row of " + describe("logits", logits));
    if (rows == 0) return;
    ctx.run(Kernel.SAMPLE, new KernelArgs.Sample(rows, cols, vocab, ld, DType.F32.code(), temperature, topP, topK,
        logits.address(), uniforms.address(), ids.address()));
  }

  // ================================================================== helpers

  private static long addr(Tensor t) {
    return t == null ? 0 : t.address();
  }
}

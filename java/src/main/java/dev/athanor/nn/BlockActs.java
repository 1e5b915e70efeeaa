package dev.athanor.nn;

import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.function.UnaryOperator;

/**
 * The activations one block saves in its forward for its backward (or, in cached decoding, the step's transient
 * buffers), for N = B*T rows: C hidden, F intermediate, H query heads, KV key/value heads, D head dim. Views in
 * attention's (B, H, T, D) layout alias the row-major buffers. Under tensor parallelism ({@link TensorParallel}) the
 * buffers of a rank's own heads and MLP columns are its parts: H/tp query heads, KV/tp key/value heads, F/tp.
 */
public final class BlockActs extends TensorGroup {
  final int batch, seq;
  final Tensor n1, mean1, rstd1;   // first norm: (N, C), (N) F32 (mean: GPT-2 only), (N) F32
  final Heads heads;               // q, k, v (GPT-2: one (N, 3C) buffer after bias; Llama: q, k after RoPE) and views
  final Tensor att, atth, lse;     // attention output (N, C), its (B, H, T, D) view, lse (B, H, T) F32
  final Tensor x2;                 // residual after attention (N, C)
  final Tensor n2, mean2, rstd2;   // second norm
  final Tensor fc, gelu;           // GPT-2 (N, F) pre- and post-activation
  final Tensor gate, up, act;      // Llama (N, F)
  final Tensor ones;               // (N, 1) of 1 under tensor parallelism (adds a bias after the ranks' sum), else null
  final SequenceParallel split;    // sequence parallelism: its token cut and shared full-rows buffer; else null

  BlockActs(ModelConfig c, Device dev, DType dt, int b, int t) {
    this(c, TensorParallel.NONE, null, dev, dt, b, t);
  }

  /**
   * With sequence parallelism ({@code split} non-null) the buffers of the token-split region, n1, n2, x2, the norms'
   * statistics and ones, hold this rank's rows only; the rest all N rows.
   */
  BlockActs(ModelConfig c, TensorParallel tp, SequenceParallel split, Device dev, DType dt, int b, int t) {
    this.batch = b;
    this.seq = t;
    this.split = split;
    boolean gpt2 = c.family() == Family.GPT2;
    long n = (long) b * t, C = c.hidden(), F = tp.localIntermediate(c), m = split != null ? split.local : n;
    int h = tp.localHeads(c), d = c.headDim();
    try {
      n1 = own(Tensor.empty(dt, dev, m, C));
      mean1 = gpt2 ? own(Tensor.empty(DType.F32, dev, m)) : null;
      rstd1 = own(Tensor.empty(DType.F32, dev, m));
      att = own(Tensor.empty(dt, dev, n, (long) h * d));  // (N, C/tp)
      atth = own(own(att.view(b, t, h, d)).permute(0, 2, 1, 3));
      lse = own(Tensor.empty(DType.F32, dev, b, h, t));
      x2 = own(Tensor.empty(dt, dev, m, C));
      n2 = own(Tensor.empty(dt, dev, m, C));
      mean2 = gpt2 ? own(Tensor.empty(DType.F32, dev, m)) : null;
      rstd2 = own(Tensor.empty(DType.F32, dev, m));
      heads = Heads.allocate(c, tp, dev, dt, b, t, this::own);
      fc = gpt2 ? own(Tensor.empty(dt, dev, n, F)) : null;
      gelu = gpt2 ? own(Tensor.empty(dt, dev, n, F)) : null;
      gate = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
      up = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
      act = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
      ones = tp.split() ? own(Tensor.empty(dt, dev, m, 1)) : null;
      if (ones != null) Ops.fill(ones, 1f);
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  /** The bytes the constructor allocates (see {@link BufferSizes}). */
  static long bytes(ModelConfig c, Device dev, DType dt, int b, int t) {
    return bytes(c, dev, dt, b, t, (long) b * t, false);
  }

  /**
   * The same for a tensor-parallel rank ({@code tensorParallel}: with the ones column) whose token-split buffers (n1,
   * x2, n2, the norms' statistics, ones) hold {@code rows} of the N rows (sequence parallelism: its part; else N); the
   * others are counted whole (an upper bound under tensor parallelism).
   */
  static long bytes(ModelConfig c, Device dev, DType dt, int b, int t, long rows, boolean tensorParallel) {
    return sizes(new BufferSizes(dev), c, dev, dt, b, t, rows, tensorParallel);
  }

  /**
   * The bytes of one block's activations in a file where each buffer starts at a multiple of {@code align} bytes (so
   * that its transfers can bypass the page cache): each buffer rounded up to {@code align}. One process, all rows.
   */
  static long fileBytes(ModelConfig c, Device dev, DType dt, int b, int t, long align) {
    return sizes(new BufferSizes(dev.isCuda() ? Tier.DEVICE : Tier.HOST, align), c, dev,
        dt, b, t, (long) b * t, false);
  }

  private static long sizes(BufferSizes s, ModelConfig c, Device dev, DType dt, int b, int t, long rows, boolean tensorParallel) {
    boolean gpt2 = c.family() == Family.GPT2;
    long n = (long) b * t, C = c.hidden(), F = c.intermediate();
    return s
        .add(tensorParallel ? 1 : 0, dt, rows, 1)  // ones
        .add(3, dt, rows, C)                      // n1, x2, n2
        .add(1, dt, n, C)                         // att
        .add(gpt2 ? 4 : 2, DType.F32, rows)       // rstd1, rstd2 (GPT-2: mean1, mean2)
        .add(DType.F32, b, c.heads(), t)          // lse
        .add(1, Heads.bytes(c, dev, dt, b, t, s.align()))
        .add(gpt2 ? 2 : 3, dt, n, F)              // fc, gelu or gate, up, act
        .total();
  }

  /**
   * The query/key/value buffers of one block (activations or their gradients) and their views: GPT-2 keeps q,
   * k, v interleaved per row in one (N, 3C) buffer (as {@code c_attn} produces them); Llama has separate (N, C),
   * (N, KVD), (N, KVD) buffers and (B, T, H, D) views for RoPE. qh, kh, vh are the (B, H, T, D) views attention
   * takes. Unused members are null.
   */
  record Heads(Tensor qkv, Tensor q, Tensor k, Tensor v, Tensor qh, Tensor kh, Tensor vh, Tensor q4, Tensor k4) {
    /** The bytes {@link #allocate} allocates. */
    static long bytes(ModelConfig c, Device dev, DType dt, int b, int t) {
      return bytes(c, dev, dt, b, t, 1);
    }

    /** The same, each buffer rounded up to a multiple of {@code align} bytes. */
    static long bytes(ModelConfig c, Device dev, DType dt, int b, int t, long align) {
      long n = (long) b * t, C = c.hidden();
      Tier tier = dev.isCuda() ? Tier.DEVICE : Tier.HOST;
      if (c.family() == Family.GPT2) return new BufferSizes(tier, align).add(dt, n, 3 * C).total();
      return new BufferSizes(tier, align).add(dt, n, C).add(2, dt, n, c.kvDim()).total();
    }

    /** This rank's heads under tensor parallelism: H/tp query and KV/tp key/value heads. */
    static Heads allocate(ModelConfig c, TensorParallel tp, Device dev, DType dt, int b, int t, UnaryOperator<Tensor> own) {
      int h = tp.localHeads(c), kv = tp.localKvHeads(c), d = c.headDim();
      long n = (long) b * t, C = (long) h * d, kvd = (long) kv * d;  // C/tp, KVD/tp
      if (c.family() == Family.GPT2) {
        Tensor qkv = own.apply(Tensor.empty(dt, dev, n, 3 * C));
        Tensor q5 = own.apply(qkv.view(b, t, 3, h, d));
        Tensor[] hv = new Tensor[3];
        for (int i = 0; i < 3; i++) hv[i] = own.apply(own.apply(q5.select(2, i)).permute(0, 2, 1, 3));
        return new Heads(qkv, null, null, null, hv[0], hv[1], hv[2], null, null);
      }
      Tensor q = own.apply(Tensor.empty(dt, dev, n, C));
      Tensor k = own.apply(Tensor.empty(dt, dev, n, kvd));
      Tensor v = own.apply(Tensor.empty(dt, dev, n, kvd));
      Tensor q4 = own.apply(q.view(b, t, h, d)), k4 = own.apply(k.view(b, t, kv, d));
      return new Heads(null, q, k, v, own.apply(q4.permute(0, 2, 1, 3)), own.apply(k4.permute(0, 2, 1, 3)),
          own.apply(own.apply(v.view(b, t, kv, d)).permute(0, 2, 1, 3)), q4, k4);
    }
  }
}

package dev.athanor.nn;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The activation and gradient buffers of one training shape (B, T), allocated once and reused by every
 * step of that shape. N = B*T rows, C hidden, F intermediate, V vocab (Vp: the padded row stride of the
 * logits), H query heads, KV key/value heads, D head dim.
 *
 * <p>Lifetimes, as the layer code uses them: {@code residual[l]} (N, C) is the input of block l and lives
 * from the forward of block l-1 to the backward of block l; a {@link BlockActs} lives from its block's
 * forward to its backward (with recomputation there is one shared {@code BlockActs}, refilled from
 * {@code residual[l]} just before block l's backward); the gradient buffers live within one backward.
 */
final class Workspace implements AutoCloseable {
  final int batch, seq, rows;
  private final List<Tensor> owned = new ArrayList<>();

  final Tensor ids, targets, positions;   // (N) I32 (positions: GPT-2 only, t of each row)
  final Tensor[] residual;                // L+1 of (N, C)
  final BlockActs[] blocks;               // L, or 1 shared when recomputing
  final Tensor normOut, normMean, normRstd; // final norm: (N, C), (N) F32, (N) F32
  final Tensor logitsBuf, logits;         // (N, Vp) and its (N, V) view; holds dlogits in the backward
  final Tensor losses, lse, dlosses;      // (N) F32
  // gradient scratch (compute dtype)
  final Tensor dres, d1, d2, dAtt;        // (N, C)
  final Tensor dF1, dF2, dF3;             // (N, F) (dF3: Llama only)
  final Heads dHeads;                     // gradients of q, k, v and their views (Llama: q4, k4 for the inverse RoPE)
  final Tensor dAtth;                     // (B, H, T, D) view of dAtt
  final Tensor scratch;                   // (N, C)

  Workspace(ModelConfig c, Device dev, DType dt, int batch, int seq, boolean recompute) {
    this.batch = batch;
    this.seq = seq;
    this.rows = batch * seq;
    boolean gpt2 = c.family() == Family.GPT2;
    long n = rows, C = c.hidden(), F = c.intermediate(), V = c.vocabSize();
    long vp = dev.isCuda() ? (V + 127) / 128 * 128 : V;
    try {
      ids = own(Tensor.zeros(DType.I32, dev, n));
      targets = own(Tensor.zeros(DType.I32, dev, n));
      if (gpt2) {
        int[] pos = new int[rows];
        for (int i = 0; i < rows; i++) pos[i] = i % seq;
        positions = own(Tensor.fromInts(pos, dev, n));
      } else {
        positions = null;
      }
      residual = new Tensor[c.layers() + 1];
      for (int l = 0; l <= c.layers(); l++) residual[l] = own(Tensor.empty(dt, dev, n, C));
      blocks = new BlockActs[recompute ? 1 : c.layers()];
      for (int l = 0; l < blocks.length; l++) blocks[l] = new BlockActs(c, dev, dt, batch, seq);
      normOut = own(Tensor.empty(dt, dev, n, C));
      normMean = own(Tensor.empty(DType.F32, dev, n));
      normRstd = own(Tensor.empty(DType.F32, dev, n));
      logitsBuf = own(Tensor.empty(dt, dev, n, vp));
      logits = own(logitsBuf.slice(1, 0, V));
      losses = own(Tensor.empty(DType.F32, dev, n));
      lse = own(Tensor.empty(DType.F32, dev, n));
      dlosses = own(Tensor.empty(DType.F32, dev, n));
      dres = own(Tensor.empty(dt, dev, n, C));
      d1 = own(Tensor.empty(dt, dev, n, C));
      d2 = own(Tensor.empty(dt, dev, n, C));
      dAtt = own(Tensor.empty(dt, dev, n, C));
      scratch = own(Tensor.empty(dt, dev, n, C));
      dF1 = own(Tensor.empty(dt, dev, n, F));
      dF2 = own(Tensor.empty(dt, dev, n, F));
      int h = c.heads(), d = c.headDim();
      dAtth = own(own(dAtt.view(batch, seq, h, d)).permute(0, 2, 1, 3));
      dF3 = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
      dHeads = Heads.allocate(c, dev, dt, batch, seq, this::own);
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  private Tensor own(Tensor t) {
    owned.add(t.detach());
    return t;
  }

  /** The saved activations of block l. */
  BlockActs acts(int l) {
    return blocks[blocks.length == 1 ? 0 : l];
  }

  @Override
  public void close() {
    if (blocks != null) {
      for (BlockActs b : blocks) {
        if (b != null) b.close();
      }
    }
    for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
    owned.clear();
  }

  /**
   * The query/key/value buffers of one block (activations or their gradients) and their views: GPT-2 keeps q,
   * k, v interleaved per row in one (N, 3C) buffer (as {@code c_attn} produces them); Llama has separate (N, C),
   * (N, KVD), (N, KVD) buffers and (B, T, H, D) views for RoPE. qh, kh, vh are the (B, H, T, D) views attention
   * takes. Unused members are null.
   */
  record Heads(Tensor qkv, Tensor q, Tensor k, Tensor v, Tensor qh, Tensor kh, Tensor vh, Tensor q4, Tensor k4) {
    static Heads allocate(ModelConfig c, Device dev, DType dt, int b, int t, java.util.function.UnaryOperator<Tensor> own) {
      long n = (long) b * t, C = c.hidden();
      int h = c.heads(), kv = c.kvHeads(), d = c.headDim();
      if (c.family() == Family.GPT2) {
        Tensor qkv = own.apply(Tensor.empty(dt, dev, n, 3 * C));
        Tensor q5 = own.apply(qkv.view(b, t, 3, h, d));
        Tensor[] hv = new Tensor[3];
        for (int i = 0; i < 3; i++) hv[i] = own.apply(own.apply(q5.select(2, i)).permute(0, 2, 1, 3));
        return new Heads(qkv, null, null, null, hv[0], hv[1], hv[2], null, null);
      }
      Tensor q = own.apply(Tensor.empty(dt, dev, n, C));
      Tensor k = own.apply(Tensor.empty(dt, dev, n, c.kvDim()));
      Tensor v = own.apply(Tensor.empty(dt, dev, n, c.kvDim()));
      Tensor q4 = own.apply(q.view(b, t, h, d)), k4 = own.apply(k.view(b, t, kv, d));
      return new Heads(null, q, k, v, own.apply(q4.permute(0, 2, 1, 3)), own.apply(k4.permute(0, 2, 1, 3)),
          own.apply(own.apply(v.view(b, t, kv, d)).permute(0, 2, 1, 3)), q4, k4);
    }
  }

  /** The activations one block saves for its backward, and views of them in attention's layout. */
  static final class BlockActs implements AutoCloseable {
    private final List<Tensor> owned = new ArrayList<>();
    final Tensor n1, mean1, rstd1;   // first norm: (N, C), (N) F32 (mean: GPT-2 only), (N) F32
    final Heads heads;               // q, k, v (GPT-2: one (N, 3C) buffer after bias; Llama: q, k after RoPE) and views
    final Tensor att, atth, lse;     // attention output (N, C), its (B, H, T, D) view, lse (B, H, T) F32
    final Tensor x2;                 // residual after attention (N, C)
    final Tensor n2, mean2, rstd2;   // second norm
    final Tensor fc, gelu;           // GPT-2 (N, F) pre- and post-activation
    final Tensor gate, up, act;      // Llama (N, F)

    BlockActs(ModelConfig c, Device dev, DType dt, int b, int t) {
      boolean gpt2 = c.family() == Family.GPT2;
      long n = (long) b * t, C = c.hidden(), F = c.intermediate();
      int h = c.heads(), d = c.headDim();
      try {
        n1 = own(Tensor.empty(dt, dev, n, C));
        mean1 = gpt2 ? own(Tensor.empty(DType.F32, dev, n)) : null;
        rstd1 = own(Tensor.empty(DType.F32, dev, n));
        att = own(Tensor.empty(dt, dev, n, C));
        atth = own(own(att.view(b, t, h, d)).permute(0, 2, 1, 3));
        lse = own(Tensor.empty(DType.F32, dev, b, h, t));
        x2 = own(Tensor.empty(dt, dev, n, C));
        n2 = own(Tensor.empty(dt, dev, n, C));
        mean2 = gpt2 ? own(Tensor.empty(DType.F32, dev, n)) : null;
        rstd2 = own(Tensor.empty(DType.F32, dev, n));
        heads = Heads.allocate(c, dev, dt, b, t, this::own);
        fc = gpt2 ? own(Tensor.empty(dt, dev, n, F)) : null;
        gelu = gpt2 ? own(Tensor.empty(dt, dev, n, F)) : null;
        gate = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
        up = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
        act = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
      } catch (RuntimeException e) {
        close();
        throw e;
      }
    }

    private Tensor own(Tensor t) {
      owned.add(t.detach());
      return t;
    }

    @Override
    public void close() {
      for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
      owned.clear();
    }
  }
}

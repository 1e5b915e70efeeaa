package dev.athanor.nn;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;

/**
 * The activation and gradient buffers of one stage for one training shape (B, T), allocated once and reused by
 * every step of that shape. N = B*T rows, C hidden, F intermediate, V vocab (Vp: the padded row stride of the
 * logits), H query heads, D head dim. Members a stage does not need (the embedding's ids without the embedding,
 * the head's buffers without the head) are null.
 *
 * <p>Lifetimes, as the layer code uses them: {@code residual[i]} (N, C) is the input of the stage's i-th block and
 * lives from the forward of the block before it to the backward of block i ({@code residual[blocks]} is the
 * stage's output); a {@link BlockActs} lives from its block's forward to its backward (with recomputation there
 * is one shared {@code BlockActs}, refilled from {@code residual[i]} just before block i's backward); the
 * gradient buffers live within one backward, and {@code dres} holds the gradient of the stage's input after it.
 */
final class Workspace extends TensorGroup {
  final int batch, seq, rows;

  final Tensor ids, positions;            // (N) I32 (positions: GPT-2 only, t of each row); embedding only
  final Tensor targets;                   // (N) I32; head only
  final Tensor[] residual;                // blocks+1 of (N, C)
  final BlockActs[] blocks;               // one per block, or 1 shared when recomputing
  final Tensor normOut, normMean, normRstd; // final norm: (N, C), (N) F32, (N) F32; head only
  final Tensor logitsBuf, logits;         // (N, Vp) and its (N, V) view; holds dlogits in the backward; head only
  final Tensor logitsWide;                // tensor-parallel: (N, V+1) view, column V a dummy target; else null
  final Tensor vocabMask;                 // tensor-parallel embedding: (N, C), 1 where this rank owns the token; else null
  final Tensor localIds;                  // tensor-parallel embedding: (N) I32, ids as rows of this rank's part; else null
  final Tensor losses, lse, dlosses;      // (N) F32; head only
  // gradient scratch (compute dtype)
  final Tensor dres, d1, d2, dAtt;        // (N, C)
  final Tensor dF1, dF2, dF3;             // (N, F) (dF3: Llama only)
  final BlockActs.Heads dHeads;           // gradients of q, k, v and their views (Llama: q4, k4 for the inverse RoPE)
  final Tensor dAtth;                     // (B, H, T, D) view of dAtt
  final Tensor scratch;                   // (N, C)

  /**
   * Buffers of a rank under tensor parallelism hold its parts: dAtt (N, C/tp), dF1..dF3 (N, F/tp), dHeads, and the
   * logits of its vocabulary rows (V is then the rank's part of the vocabulary), with one more column the
   * cross-entropy's backward uses as the target of rows whose target another rank holds.
   */
  Workspace(ModelConfig c, TensorParallel tp, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute) {
    this.batch = batch;
    this.seq = seq;
    this.rows = batch * seq;
    boolean gpt2 = c.family() == Family.GPT2;
    long n = rows, C = c.hidden(), F = tp.localIntermediate(c), V = tp.vocabEnd(c) - tp.vocabStart(c);
    int h = tp.localHeads(c), d = c.headDim();
    long vp = paddedVocab(dev, tp.split() ? V + 1 : V);
    boolean head = stage.head();
    try {
      ids = stage.embedding() ? own(Tensor.zeros(DType.I32, dev, n)) : null;
      if (gpt2 && stage.embedding()) {
        int[] pos = new int[rows];
        for (int i = 0; i < rows; i++) pos[i] = i % seq;
        positions = own(Tensor.fromInts(pos, dev, n));
      } else {
        positions = null;
      }
      targets = head ? own(Tensor.zeros(DType.I32, dev, n)) : null;
      residual = new Tensor[stage.blocks() + 1];
      for (int l = 0; l < residual.length; l++) residual[l] = own(Tensor.empty(dt, dev, n, C));
      blocks = new BlockActs[recompute ? Math.min(1, stage.blocks()) : stage.blocks()];
      for (int l = 0; l < blocks.length; l++) blocks[l] = new BlockActs(c, tp, dev, dt, batch, seq);
      normOut = head ? own(Tensor.empty(dt, dev, n, C)) : null;
      normMean = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      normRstd = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      logitsBuf = head ? own(Tensor.empty(dt, dev, n, vp)) : null;
      logits = head ? own(logitsBuf.slice(1, 0, V)) : null;
      logitsWide = head && tp.split() ? own(logitsBuf.slice(1, 0, V + 1)) : null;
      vocabMask = stage.embedding() && tp.split() ? own(Tensor.empty(dt, dev, n, C)) : null;
      localIds = stage.embedding() && tp.split() ? own(Tensor.zeros(DType.I32, dev, n)) : null;
      losses = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      lse = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      dlosses = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      dres = own(Tensor.empty(dt, dev, n, C));
      d1 = own(Tensor.empty(dt, dev, n, C));
      d2 = own(Tensor.empty(dt, dev, n, C));
      dAtt = own(Tensor.empty(dt, dev, n, (long) h * d));  // (N, C/tp)
      scratch = own(Tensor.empty(dt, dev, n, C));
      dF1 = own(Tensor.empty(dt, dev, n, F));
      dF2 = own(Tensor.empty(dt, dev, n, F));
      dAtth = own(own(dAtt.view(batch, seq, h, d)).permute(0, 2, 1, 3));
      dF3 = gpt2 ? null : own(Tensor.empty(dt, dev, n, F));
      dHeads = BlockActs.Heads.allocate(c, tp, dev, dt, batch, seq, this::own);
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  /**
   * The bytes of the activations the constructor allocates: the residual streams and the blocks' saved activations
   * (one block's when recomputing). See {@link BufferSizes}.
   */
  static long activationBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute) {
    long n = (long) batch * seq;
    int acts = recompute ? Math.min(1, stage.blocks()) : stage.blocks();
    return new BufferSizes(dev)
        .add(stage.blocks() + 1L, dt, n, c.hidden())                      // residual
        .add(acts, BlockActs.bytes(c, dev, dt, batch, seq))               // blocks
        .total();
  }

  /** The bytes of every other buffer the constructor allocates: ids, the head's, the gradient scratch. */
  static long bufferBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq) {
    return bufferBytes(c, stage, dev, dt, batch, seq, TensorParallel.NONE);
  }

  /**
   * {@link #bufferBytes(ModelConfig, Stage, Device, DType, int, int)} of one rank of {@code tp}: its vocabulary part
   * of the logits (the largest buffer of a small model), the embedding's mask. The blocks' gradient scratch is
   * counted whole (an upper bound).
   */
  static long bufferBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq, TensorParallel tp) {
    boolean gpt2 = c.family() == Family.GPT2, head = stage.head(), emb = stage.embedding();
    long n = (long) batch * seq, C = c.hidden(), F = c.intermediate(), V = tp.vocabEnd(c) - tp.vocabStart(c);
    long vp = paddedVocab(dev, tp.split() ? V + 1 : V);
    BufferSizes s = new BufferSizes(dev)
        .add((emb ? 1 : 0) + (gpt2 && emb ? 1 : 0) + (head ? 1 : 0), DType.I32, n)  // ids, positions, targets
        .add(5, dt, n, C)                                                            // dres, d1, d2, dAtt, scratch
        .add(gpt2 ? 2 : 3, dt, n, F)                                                 // dF1, dF2, dF3
        .add(1, BlockActs.Heads.bytes(c, dev, dt, batch, seq))                       // dHeads
        .add(emb && tp.split() ? 1 : 0, dt, n, C)                                    // vocabMask
        .add(emb && tp.split() ? 1 : 0, DType.I32, n);                               // localIds
    if (head) {
      s.add(dt, n, C).add(5, DType.F32, n).add(dt, n, vp);  // normOut; normMean, normRstd, losses, lse, dlosses; logits
    }
    return s.total();
  }

  /** The row stride of the logits: the vocabulary, padded to a multiple of 128 on CUDA. */
  private static long paddedVocab(Device dev, long vocab) {
    return dev.isCuda() ? (vocab + 127) / 128 * 128 : vocab;
  }

  /** The saved activations of the stage's i-th block. */
  BlockActs acts(int i) {
    return blocks[blocks.length == 1 ? 0 : i];
  }

  @Override
  public void close() {
    if (blocks != null) {
      for (BlockActs b : blocks) {
        if (b != null) b.close();
      }
    }
    super.close();
  }
}

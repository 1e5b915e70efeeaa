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
 *
 * <p>Activation sets: a pipeline stage keeps the activations of several micro-batches in flight. With {@code sets > 1}
 * every buffer a forward fills and its backward reads (ids, targets, the residual streams, the blocks' saved
 * activations, the head's) exists once per set, and {@link #select} points these members at one set; the gradient
 * scratch is shared. Under recomputation a set is only its residual streams (the block inputs), the one
 * {@code BlockActs} is shared.
 */
final class Workspace extends TensorGroup {
  /** The blocks' saved activations kept at once with offloaded activations: the one being filled and the one written. */
  static final int OFFLOAD_RING = 2;

  final int batch, seq, rows;

  // the selected activation set's buffers (see select)
  Tensor ids;                             // (N) I32; embedding only
  final Tensor positions;                 // (N) I32, t of each row; GPT-2 embedding only (shared)
  final Tensor localPositions;            // positions of this rank's rows (sequence parallel), else positions
  final SequenceParallel split;           // sequence parallelism: the token cut and the full-rows buffer; else null
  Tensor targets;                         // (N) I32; head only
  Tensor[] residual;                      // blocks+1 of (N, C)
  BlockActs[] blocks;                     // one per block, 1 shared when recomputing, a ring when offloaded
  Tensor normOut, normMean, normRstd;     // final norm: (N, C), (N) F32, (N) F32; head only
  Tensor logitsBuf, logits;               // (N, Vp) and its (N, V) view; holds dlogits in the backward; head only
  Tensor logitsWide;                      // tensor-parallel: (N, V+1) view, column V a dummy target; else null
  Tensor vocabMask;                       // tensor-parallel embedding: (N, C), 1 where this rank owns the token; else null
  Tensor localIds;                        // tensor-parallel embedding: (N) I32, ids as rows of this rank's part; else null
  Tensor losses, lse;                     // (N) F32; head only
  final Tensor dlosses;                   // (N) F32; head only
  private final Set[] sets;               // the activation sets
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
    this(c, tp, stage, dev, dt, batch, seq, recompute, 1, null);
  }

  /**
   * With {@code sets} activation sets (at least 1), the first selected; with {@code tokens} (non-null: sequence
   * parallelism over the tensor-parallel ranks, {@link SequenceParallel}) the residual streams, the token-split
   * activations, the final norm's output and statistics and the (N, C) gradient scratch hold this rank's rows only,
   * and {@link #split} holds the one shared full-rows buffer.
   */
  Workspace(ModelConfig c, TensorParallel tp, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute,
      int sets, TensorParallel.TokenCollectives tokens) {
    this(c, tp, stage, dev, dt, batch, seq, recompute, false, sets, tokens);
  }

  /**
   * As above, with {@code offloaded} (not with {@code recompute}) the blocks' saved activations in a ring of {@link
   * #ringSize} buffers shared by the sets instead of one per block and set.
   */
  Workspace(ModelConfig c, TensorParallel tp, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute,
      boolean offloaded, int sets, TensorParallel.TokenCollectives tokens) {
    if (recompute && offloaded) throw new IllegalArgumentException("activations are recomputed or offloaded, not both");
    if (sets < 1) throw new IllegalArgumentException("activation sets " + sets + " must be >= 1");
    this.batch = batch;
    this.seq = seq;
    this.rows = batch * seq;
    boolean gpt2 = c.family() == Family.GPT2;
    long n = rows, C = c.hidden(), F = tp.localIntermediate(c), V = tp.vocabEnd(c) - tp.vocabStart(c);
    int h = tp.localHeads(c), d = c.headDim();
    long vp = paddedVocab(dev, tp.split() ? V + 1 : V);
    boolean head = stage.head();
    try {
      split = tokens == null ? null : new SequenceParallel(tp, tokens, n, C, dev, dt);
      long m = split != null ? split.local : n;  // the rows of the token-split region
      if (gpt2 && stage.embedding()) {
        int[] pos = new int[rows];
        for (int i = 0; i < rows; i++) pos[i] = i % seq;
        positions = own(Tensor.fromInts(pos, dev, n));
        localPositions = split != null ? own(positions.slice(0, split.start, split.start + m)) : positions;
      } else {
        positions = null;
        localPositions = null;
      }
      this.sets = new Set[sets];
      BlockActs[] shared = null;
      for (int k = 0; k < sets; k++) {
        Set a = new Set();
        this.sets[k] = a;
        a.ids = stage.embedding() ? own(Tensor.zeros(DType.I32, dev, n)) : null;
        a.targets = head ? own(Tensor.zeros(DType.I32, dev, n)) : null;
        a.residual = new Tensor[stage.blocks() + 1];
        for (int l = 0; l < a.residual.length; l++) a.residual[l] = own(Tensor.empty(dt, dev, m, C));
        if (shared == null || !recompute && !offloaded) {
          a.blocks = new BlockActs[keptBlocks(stage, recompute, offloaded)];
          for (int l = 0; l < a.blocks.length; l++) a.blocks[l] = new BlockActs(c, tp, split, dev, dt, batch, seq);
          shared = a.blocks;
        } else {
          a.blocks = shared;
        }
        a.normOut = head ? own(Tensor.empty(dt, dev, m, C)) : null;
        a.normMean = head ? own(Tensor.empty(DType.F32, dev, m)) : null;
        a.normRstd = head ? own(Tensor.empty(DType.F32, dev, m)) : null;
        a.logitsBuf = head ? own(Tensor.empty(dt, dev, n, vp)) : null;
        a.logits = head ? own(a.logitsBuf.slice(1, 0, V)) : null;
        a.logitsWide = head && tp.split() ? own(a.logitsBuf.slice(1, 0, V + 1)) : null;
        a.vocabMask = stage.embedding() && tp.split() ? own(Tensor.empty(dt, dev, n, C)) : null;
        a.localIds = stage.embedding() && tp.split() ? own(Tensor.zeros(DType.I32, dev, n)) : null;
        a.losses = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
        a.lse = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      }
      select(0);
      dlosses = head ? own(Tensor.empty(DType.F32, dev, n)) : null;
      dres = own(Tensor.empty(dt, dev, m, C));
      d1 = own(Tensor.empty(dt, dev, m, C));
      d2 = own(Tensor.empty(dt, dev, m, C));
      dAtt = own(Tensor.empty(dt, dev, n, (long) h * d));  // (N, C/tp)
      scratch = own(Tensor.empty(dt, dev, m, C));
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
    return activationBytes(c, stage, dev, dt, batch, seq, recompute, 1);
  }

  /**
   * The same with {@code sets} activation sets: each set's residual streams and blocks' activations (recomputing: one
   * shared block's), and from the second set on its own ids, targets and head buffers (the first's are counted by
   * {@link #bufferBytes}).
   */
  static long activationBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute,
      int sets) {
    return activationBytes(c, stage, dev, dt, batch, seq, recompute, sets, TensorParallel.NONE, false);
  }

  /**
   * The same on the busiest rank of {@code tp} (with the blocks' ones columns; the split buffers counted whole, an upper
   * bound), with or without sequence parallelism: with it the residual streams and the blocks' token-split buffers hold
   * rank 0's rows ({@link TensorParallel#tokenRows}, the most).
   */
  static long activationBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute,
      int sets, TensorParallel tp, boolean sequenceParallel) {
    return activationBytes(c, stage, dev, dt, batch, seq, recompute, false, sets, tp, sequenceParallel);
  }

  /** The same with the blocks' saved activations offloaded ({@code offloaded}: a ring of {@link #ringSize} in memory). */
  static long activationBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq, boolean recompute,
      boolean offloaded, int sets, TensorParallel tp, boolean sequenceParallel) {
    long n = (long) batch * seq, m = sequenceParallel ? tp.tokenRows(n, 0) : n;
    long acts = recompute || offloaded ? keptBlocks(stage, recompute, offloaded) : (long) stage.blocks() * sets;
    BufferSizes s = new BufferSizes(dev)
        .add((stage.blocks() + 1L) * sets, dt, m, c.hidden())                     // residual
        .add(acts, BlockActs.bytes(c, dev, dt, batch, seq, m, tp.split()));       // blocks
    int extra = sets - 1;
    if (extra > 0) {
      s.add((long) extra * ((stage.embedding() ? 1 : 0) + (stage.head() ? 1 : 0)), DType.I32, n);  // ids, targets
      if (stage.head()) {
        long vp = paddedVocab(dev, c.vocabSize());
        // norm (and its stats); losses, lse; logits
        s.add(extra, dt, m, c.hidden()).add(2L * extra, DType.F32, m).add(2L * extra, DType.F32, n).add(extra, dt, n, vp);
      }
    }
    return s.total();
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
    return bufferBytes(c, stage, dev, dt, batch, seq, tp, false);
  }

  /**
   * The same with or without sequence parallelism: with it the gradient scratch of the token-split region and the final
   * norm's output and statistics hold rank 0's rows (the most), and the one shared full-rows buffer is added.
   */
  static long bufferBytes(ModelConfig c, Stage stage, Device dev, DType dt, int batch, int seq, TensorParallel tp,
      boolean sequenceParallel) {
    boolean gpt2 = c.family() == Family.GPT2, head = stage.head(), emb = stage.embedding();
    long n = (long) batch * seq, C = c.hidden(), F = c.intermediate(), V = tp.vocabEnd(c) - tp.vocabStart(c);
    long m = sequenceParallel ? tp.tokenRows(n, 0) : n;
    long vp = paddedVocab(dev, tp.split() ? V + 1 : V);
    BufferSizes s = new BufferSizes(dev)
        .add((emb ? 1 : 0) + (gpt2 && emb ? 1 : 0) + (head ? 1 : 0), DType.I32, n)  // ids, positions, targets
        .add(4, dt, m, C)                                                            // dres, d1, d2, scratch
        .add(1, dt, n, C)                                                            // dAtt
        .add(sequenceParallel ? 1 : 0, SequenceParallel.bytes(c, dev, dt, n))        // the full-rows buffer
        .add(gpt2 ? 2 : 3, dt, n, F)                                                 // dF1, dF2, dF3
        .add(1, BlockActs.Heads.bytes(c, dev, dt, batch, seq))                       // dHeads
        .add(emb && tp.split() ? 1 : 0, dt, n, C)                                    // vocabMask
        .add(emb && tp.split() ? 1 : 0, DType.I32, n);                               // localIds
    if (head) {  // normOut; normMean, normRstd; losses, lse, dlosses; logits
      s.add(dt, m, C).add(2, DType.F32, m).add(3, DType.F32, n).add(dt, n, vp);
    }
    return s.total();
  }

  /** The row stride of the logits: the vocabulary, padded to a multiple of 128 on CUDA. */
  private static long paddedVocab(Device dev, long vocab) {
    return dev.isCuda() ? (vocab + 127) / 128 * 128 : vocab;
  }

  /** The number of activation sets. */
  int sets() {
    return sets.length;
  }

  /** Points the per-set members at activation set {@code k}. */
  void select(int k) {
    Set a = sets[k];
    ids = a.ids;
    targets = a.targets;
    residual = a.residual;
    blocks = a.blocks;
    normOut = a.normOut;
    normMean = a.normMean;
    normRstd = a.normRstd;
    logitsBuf = a.logitsBuf;
    logits = a.logits;
    logitsWide = a.logitsWide;
    vocabMask = a.vocabMask;
    localIds = a.localIds;
    losses = a.losses;
    lse = a.lse;
  }

  /** One activation set's buffers (owned by the workspace). */
  private static final class Set {
    Tensor ids, targets, normOut, normMean, normRstd, logitsBuf, logits, logitsWide, vocabMask, localIds, losses, lse;
    Tensor[] residual;
    BlockActs[] blocks;
  }

  /** The saved activations of the stage's i-th block (a ring: slot {@code i % } the buffers kept). */
  BlockActs acts(int i) {
    return blocks[i % blocks.length];
  }

  /** The blocks' activation buffers a set keeps: one when recomputing, a ring when offloaded, else one per block. */
  static int keptBlocks(Stage stage, boolean recompute, boolean offloaded) {
    return recompute ? Math.min(1, stage.blocks()) : offloaded ? ringSize(stage) : stage.blocks();
  }

  /** The ring of offloaded activations of {@code stage}: {@link #OFFLOAD_RING} buffers, or one per block when fewer. */
  static int ringSize(Stage stage) {
    return Math.min(OFFLOAD_RING, stage.blocks());
  }

  @Override
  public void close() {
    if (split != null) split.close();
    if (sets != null) {
      BlockActs[] closed = null;
      for (Set a : sets) {
        if (a == null || a.blocks == null || a.blocks == closed) continue;  // recomputation: one shared BlockActs
        for (BlockActs b : a.blocks) {
          if (b != null) b.close();
        }
        closed = a.blocks;
      }
    }
    super.close();
  }
}

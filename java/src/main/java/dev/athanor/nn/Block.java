package dev.athanor.nn;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Unit;
import dev.athanor.tensor.Tensor;

/**
 * One transformer block of a family ({@link Gpt2Block}, {@link LlamaBlock}), its weights and gradients resolved
 * once from the {@link ParameterStore} into typed fields. The same {@link #forward} serves training (saving its
 * activations) and cached decoding (appending keys and values to a {@link KvCache} and attending over it); the
 * {@link #backward} accumulates its parameter gradients. Rows: N = B*T, C hidden (shapes as in {@link BlockActs}).
 */
abstract sealed class Block permits Gpt2Block, LlamaBlock {
  final ModelConfig cfg;
  final int index;       // the block's index in the whole model
  final Unit unit;       // its parameters in the store
  final float scale;     // attention scale 1 / sqrt(D)
  final TensorParallel tp;              // this rank's part of the block's heads and MLP width
  final TensorParallel.AllReduce sum;   // the sum over the tensor-parallel ranks

  Block(ModelConfig cfg, int index, ParameterStore store, TensorParallel tp, TensorParallel.AllReduce sum) {
    this.cfg = cfg;
    this.index = index;
    this.tp = tp;
    this.sum = sum;
    this.unit = store.unit(ModelConfig.blockUnit(index));
    this.scale = (float) (1.0 / Math.sqrt(cfg.headDim()));
  }

  /** The block of {@code cfg}'s family at {@code index}, bound to the store's current buffers. */
  static Block bind(ModelConfig cfg, int index, ParameterStore store, TensorParallel tp, TensorParallel.AllReduce sum) {
    return cfg.family() == Family.GPT2 ? new Gpt2Block(cfg, index, store, tp, sum) : new LlamaBlock(cfg, index, store, tp, sum);
  }

  /**
   * A row-parallel product: out (N, C) = in (N, K/tp) @ op(w) summed over the tensor-parallel ranks (Megatron's g in the
   * forward), then the bias (or none) added once. One process: one GEMM with the bias. Under tensor parallelism the
   * K-sum is cut into per-rank partial sums added in rank order, a different summation order from one process. With
   * sequence parallelism the partial products of all N rows are reduce-scattered: out holds this rank's rows of the sum.
   */
  void rowParallel(Tensor in, Weight w, boolean transW, Weight bias, Tensor out, BlockActs a) {
    Tensor partial = a.split != null ? a.split.full : out;
    Ops.gemm(in, false, w.w(), transW, 1f, 0f, tp.split() ? null : bias.w(), partial);
    if (!tp.split()) return;
    if (a.split != null) {
      a.split.scatterSum(partial, out);
    } else {
      sum.allReduceSum(out);
    }
    Tensor b = bias.w();
    if (b == null) return;
    try (Tensor row = b.view(1, b.numel())) {
      Ops.gemm(a.ones, false, row, false, 1f, 1f, null, out);  // out += ones (N, 1) @ bias (1, C): bias + out, exact
    }
  }

  /**
   * The input of a column-parallel layer, all N rows of the normalized {@code n}: {@code n} itself, or with sequence
   * parallelism this rank's rows gathered from every rank into the shared full-rows buffer (valid until the next use).
   */
  static Tensor allRows(BlockActs a, Tensor n) {
    return a.split != null ? a.split.gather(n) : n;
  }

  /**
   * Where a column-parallel layer's backward writes its input gradient, all N rows of this rank's part: {@code dIn}, or
   * with sequence parallelism the shared full-rows buffer; {@link #columnParallelInputGradient} then sums it.
   */
  static Tensor inputGradientRows(BlockActs a, Tensor dIn) {
    return a.split != null ? a.split.full : dIn;
  }

  /**
   * Backward of a column-parallel layer's input (Megatron's f): each rank's {@code partial} (N, C, from {@link
   * #inputGradientRows}) holds the input gradient through its own heads or MLP columns; their sum over ranks is the
   * whole input's gradient, in {@code dIn} (N, C; with sequence parallelism reduce-scattered: this rank's rows).
   */
  void columnParallelInputGradient(BlockActs a, Tensor partial, Tensor dIn) {
    if (!tp.split()) return;
    if (a.split != null) {
      a.split.scatterSum(partial, dIn);
    } else {
      sum.allReduceSum(dIn);
    }
  }

  /** A norm's backward over the rows this rank holds (all of them, or with sequence parallelism its own). */
  static void normBackward(Norm norm, BlockActs a, Tensor dout, Tensor x, Tensor mean, Tensor rstd, Tensor dx) {
    if (a.split != null) {
      a.split.normBackward(norm, dout, x, mean, rstd, dx);
    } else {
      norm.backward(dout, x, mean, rstd, dx);
    }
  }

  /** The name of this block's parameter {@code suffix}, e.g. {@code transformer.h.3.} + suffix. */
  String name(String suffix) {
    return cfg.blockPrefix(index) + suffix;
  }

  /**
   * x (N, C) -> out (N, C) (out may be x), keeping the activations in {@code a}; tmp (N, C) is scratch. With a
   * cache (decoding), the block's new keys and values are appended at the cache's current length and attention
   * covers everything cached; without one (training), attention covers this call's own keys and values.
   */
  abstract void forward(Tensor x, BlockActs a, Tensor out, Tensor tmp, KvCache cache);

  /** Backward of the last forward from x and a: w.dres holds d(out) on entry and d(x) on exit. */
  abstract void backward(Tensor x, BlockActs a, Workspace w);

  /** Causal attention of the queries in a over their own keys and values, or over the cache's. */
  void attend(BlockActs a, KvCache cache) {
    if (cache == null) {
      Ops.attention(a.heads.qh(), a.heads.kh(), a.heads.vh(), a.atth, a.lse, true, scale);
      return;
    }
    Tensor[] kv = cache.append(index, a.heads.kh(), a.heads.vh());  // (B, KV, pos + n, D) each
    try {
      Ops.attention(a.heads.qh(), kv[0], kv[1], a.atth, null, true, scale);
    } finally {
      kv[0].close();
      kv[1].close();
    }
  }

  /** Backward of {@link #attend} in training: d(attention output) in w.dAtth -> w.dHeads. */
  void attendBackward(BlockActs a, Workspace w) {
    Ops.attentionBackward(a.heads.qh(), a.heads.kh(), a.heads.vh(), a.atth, a.lse, w.dAtth, w.dHeads.qh(),
        w.dHeads.kh(), w.dHeads.vh(), true, scale);
  }
}

package dev.athanor.nn;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Objects;

/**
 * Megatron-style sequence parallelism for one tensor-parallel rank and one training shape: the residual stream, the
 * norms and the residual adds work on this rank's token rows only (the N = B*T rows cut by {@link
 * TensorParallel#tokenStart}: the first {@code N % tp} ranks one row more), the column- and row-parallel layers,
 * attention and the vocabulary-parallel embedding and head on all N rows. Before a column-parallel product the
 * normalized rows are all-gathered in rank order ({@link #gather}); after a row-parallel product the partial outputs
 * are reduce-scattered, each rank getting the rank-order sum of its own rows ({@link #scatterSum}), instead of being
 * all-reduced; the backward uses the duals (the output gradient of a row-parallel product gathered, the input gradient
 * of a column-parallel one reduce-scattered). Every gathered or partial (N, C) tensor lives in one shared buffer,
 * {@link #full}, that the layers use in turn, so the activations a block keeps for its backward (its norms' outputs
 * and statistics, the residual after attention) and the residual streams are 1/tp of the rows; the column-parallel
 * layers' weight gradients gather their normalized input again in the backward.
 *
 * <p>Exactness: a gather is a copy and each reduce-scattered element is the all-reduce's rank-order sum, so the
 * forward and every weight gradient but the norms' have the bits of tensor parallelism without it. A norm's weight
 * (and bias) gradient sums over rows: {@link #normBackward} runs the backward on this rank's rows in pieces cut at
 * multiples of {@link Ops#NORM_ROW_CHUNK} of the global rows (on CUDA one piece per rank), all-gathers every rank's
 * piece partials and adds them in row order on every rank, which is the CPU kernel's own order over all rows when each
 * rank's first row is a multiple of the chunk (B*T / tp a multiple of 32, divisible): then the whole run equals
 * tensor parallelism without sequence parallelism bit for bit. Other cuts are deterministic but differ in the norms'
 * gradients' last bits.
 */
final class SequenceParallel implements AutoCloseable {
  final TensorParallel tp;
  final long rows, start, local;        // N, this rank's first row and its row count
  final Tensor full;                    // (N, C) in the compute dtype: the gathered or partial rows, shared
  private final TensorParallel.TokenCollectives comm;
  private final long[] elements;        // per rank: its rows x C
  private final long grain;             // rows per norm-gradient piece: the CPU kernel's chunk, or N on CUDA

  SequenceParallel(TensorParallel tp, TensorParallel.TokenCollectives comm, long rows, long hidden, Device dev, DType dt) {
    this.tp = Objects.requireNonNull(tp, "tp");
    this.comm = Objects.requireNonNull(comm, "comm");
    if (!tp.split()) throw new IllegalArgumentException("sequence parallelism needs tensor-parallel ranks, got " + tp);
    this.rows = rows;
    this.start = tp.tokenStart(rows, tp.rank());
    this.local = tp.tokenRows(rows, tp.rank());
    this.elements = new long[tp.size()];
    for (int r = 0; r < tp.size(); r++) elements[r] = tp.tokenRows(rows, r) * hidden;
    this.grain = dev.isCuda() ? Math.max(1, rows) : Ops.NORM_ROW_CHUNK;
    this.full = Tensor.empty(dt, dev, rows, hidden).detach();
  }

  /** The bytes of {@link #full}. */
  static long bytes(ModelConfig c, Device dev, DType dt, long rows) {
    return new BufferSizes(dev).add(dt, rows, c.hidden()).total();
  }

  /** {@link #full} = every rank's rows {@code mine} (this rank's (local, C)) in rank order; returns {@link #full}. */
  Tensor gather(Tensor mine) {
    comm.allGather(mine, full, elements);
    return full;
  }

  /** {@code mine} (local, C) = this rank's rows of the rank-order sum over the ranks of {@code all} (N, C). */
  void scatterSum(Tensor all, Tensor mine) {
    comm.reduceScatter(all, mine, elements);
  }

  /** The pieces of rank {@code r}'s rows: the {@link #grain}-row segments of the global rows they meet. */
  private long pieces(int r) {
    long s = tp.tokenStart(rows, r), e = tp.tokenStart(rows, r + 1);
    if (s == e) return 0;
    if (grain >= rows) return 1;
    return (e - 1) / grain - s / grain + 1;
  }

  /**
   * The backward of {@code norm} over this rank's rows: dx (local, C) from dout; the weight's (and bias's) gradient, a
   * sum over all ranks' rows, is added on every rank (see the class comment for its order). A collective.
   */
  void normBackward(Norm norm, Tensor dout, Tensor x, Tensor mean, Tensor rstd, Tensor dx) {
    long c = x.shape()[1];
    long width = norm.hasBias() ? 2 * c : c;
    long mine = pieces(tp.rank()), total = 0;
    long[] counts = new long[tp.size()];
    for (int r = 0; r < tp.size(); r++) {
      counts[r] = pieces(r) * width;
      total += pieces(r);
    }
    try (Tensor parts = Tensor.empty(DType.F32, x.device(), Math.max(1, mine), width);
        Tensor all = Tensor.empty(DType.F32, x.device(), total, width)) {
      Ops.fill(parts, -0f);  // -0 + p = p for every p: each piece's partial keeps the kernel's own bits
      long at = 0;
      for (long i = 0; i < mine; i++) {
        long to = Math.min(local, (Math.floorDiv(start + at, grain) + 1) * grain - start);
        try (Tensor row = parts.select(0, i); Tensor pw = row.slice(0, 0, c);
            Tensor pb = norm.hasBias() ? row.slice(0, c, 2 * c) : null;
            Tensor d = dout.slice(0, at, to); Tensor xs = x.slice(0, at, to); Tensor dxs = dx.slice(0, at, to);
            Tensor ms = mean == null ? null : mean.slice(0, at, to); Tensor rs = rstd.slice(0, at, to)) {
          norm.backward(d, xs, ms, rs, dxs, pw, pb);
        }
        at = to;
      }
      try (Tensor in = parts.slice(0, 0, mine); Tensor flatIn = in.view(mine * width); Tensor flatAll = all.view(total * width)) {
        comm.allGather(flatIn, flatAll, counts);
      }
      // every piece in row order: p_0 + p_1 + ..., then added into the gradient once, as the kernel adds its chunks
      try (Tensor sum = all.select(0, 0)) {
        for (long i = 1; i < total; i++) {
          try (Tensor p = all.select(0, i)) {
            Ops.add(sum, p, sum);
          }
        }
        addInto(norm.weight().g(), sum, 0, c);
        if (norm.hasBias()) addInto(norm.bias().g(), sum, c, 2 * c);
      }
    }
  }

  /** g += sum[from, to). */
  private static void addInto(Tensor g, Tensor sum, long from, long to) {
    try (Tensor s = sum.slice(0, from, to)) {
      Ops.add(g, s, g);
    }
  }

  @Override
  public void close() {
    full.close();
  }
}

package dev.athanor.train.checkpoint;

import dev.athanor.nn.TensorParallel;
import dev.athanor.params.Range;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Where the ZeRO shard of a tensor-parallel rank lies in the global tensors, for a checkpoint's pieces ({@code Shards}).
 * Under ZeRO 1 or 2 with {@code --tp}, a rank owns a flat range of its tensor-parallel part of the store, so of each
 * local tensor a row-major range {@code [a, b)}. A split tensor's local tensor concatenates the slices the rank holds
 * along the split dim ({@link TensorParallel#slices}); the elements of one slice inside {@code [a, b)} are a contiguous
 * range of that slice's own row-major order, so a rank writes, per held slice, pieces of that range: a partial row, the
 * whole rows (a strided view of the local tensor: one row of the slice every local row), and a partial row. A replicated
 * tensor is the same on every tensor-parallel rank: each writes the part of {@code [a, b)} in its cut of the tensor
 * ({@link RankGroup#cut} over the tp ranks). So the pieces of every dp × tp rank together cover each global tensor once,
 * and the manifest describes global tensors as under any other layout.
 */
final class ShardSlices {
  private ShardSlices() {}

  /**
   * Where a part's elements lie in a rank's local tensor (flat, row-major): {@code rows} runs of {@code rowLength}
   * elements, the first starting at element {@code start}, each {@code stride} elements after the one before.
   */
  record Run(long start, long rows, long rowLength, long stride) {
    /** The local elements from the run's first to its last, gaps included. */
    Range span() {
      return new Range(start, start + (rows - 1) * stride + rowLength);
    }
  }

  /**
   * The parts of global tensor {@code tensor} (global shape {@code shape}, cut by {@code split}) that tensor-parallel
   * rank {@code tp} writes when it owns elements {@code [a, b)} of its local tensor, in order.
   */
  static List<Shards.Part> parts(int tensor, long[] shape, TensorParallel tp, TensorParallel.Split split, long a, long b) {
    long[] local = tp.localShape(split, shape);
    long n = numel(local);
    if (a < 0 || b < a || b > n) {
      throw new IllegalArgumentException("elements [" + a + ", " + b + ") outside the " + n + " of a local tensor of tensor " + tensor);
    }
    List<Shards.Part> parts = new ArrayList<>();
    if (split.replicated()) {
      Range r = new Range(a, b).intersect(RankGroup.cut(n, tp.rank(), tp.size()));
      if (!r.isEmpty()) parts.add(new Shards.Part(tensor, r.start(), r.end()));
      return parts;
    }
    int d = split.dim();
    long inner = inner(shape, d), localRow = local[d] * inner, at = 0;
    for (long[] held : tp.slices(split, shape)) {
      long w = (held[1] - held[0]) * inner;  // one row of the slice
      long s = before(a, at * inner, w, localRow), e = before(b, at * inner, w, localRow);
      Shards.Slice slice = new Shards.Slice(d, held[0], held[1]);
      while (s < e) {
        long rowEnd = (s / w + 1) * w;
        // the whole local row (its order is the local order): all of it; else a partial row, or whole rows
        long end = w == localRow ? e : s % w != 0 || e < rowEnd ? Math.min(e, rowEnd) : e / w * w;
        parts.add(new Shards.Part(tensor, slice, s, end));
        s = end;
      }
      at += held[1] - held[0];
    }
    return parts;
  }

  /** How many elements of a slice (rows of {@code w} at {@code offset} in each local row of {@code localRow}) lie before local element {@code x}. */
  private static long before(long x, long offset, long w, long localRow) {
    long c = x % localRow - offset;
    return x / localRow * w + Math.max(0, Math.min(w, c));
  }

  /** Where the elements of {@code part} (one of {@link #parts}) lie in rank {@code tp}'s local tensor. */
  static Run locate(long[] shape, TensorParallel tp, TensorParallel.Split split, Shards.Part part) {
    long s = part.start(), e = part.end();
    if (part.slice().whole()) {
      if (!split.replicated()) throw new IllegalArgumentException("a whole-tensor part of a tensor split along dim " + split.dim());
      return new Run(s, 1, e - s, e - s);
    }
    int d = split.dim();
    long inner = inner(shape, d), localRow = tp.localShape(split, shape)[d] * inner, at = 0;
    Shards.Slice slice = part.slice();
    for (long[] held : tp.slices(split, shape)) {
      if (slice.dim() == d && held[0] <= slice.lo() && slice.hi() <= held[1]) {
        long w = (slice.hi() - slice.lo()) * inner, first = s / w * localRow + (at + slice.lo() - held[0]) * inner + s % w;
        if (w == localRow || (e - 1) / w == s / w) return new Run(first, 1, e - s, localRow);
        if (s % w != 0 || e % w != 0) {
          throw new IllegalArgumentException("elements [" + s + ", " + e + ") of" + slice + " are neither within one row nor whole rows");
        }
        return new Run(first, (e - s) / w, w, localRow);
      }
      at += held[1] - held[0];
    }
    throw new IllegalArgumentException("tensor-parallel rank " + tp.rank() + " of " + tp.size() + " holds no" + slice);
  }

  /**
   * {@code span} (1-D: the local elements of {@code run}'s {@link Run#span}) as a tensor whose row-major elements are the
   * run's: {@code span} itself for one row, else a strided view of its storage (and {@code span} is closed).
   */
  static Tensor view(Tensor span, Run run) {
    if (span.rank() != 1 || span.numel() != run.span().length()) {
      throw new IllegalArgumentException("a span of " + run.span().length() + " elements is needed, got " + java.util.Arrays.toString(span.shape()));
    }
    if (run.rows() == 1) return span;
    try (span) {
      return Tensor.wrap(span.storage(), span.dtype(), new long[] {run.rows(), run.rowLength()},
          new long[] {run.stride() * span.stride(0), span.stride(0)}, span.offset());
    }
  }

  private static long inner(long[] shape, int d) {
    long n = 1;
    for (int i = d + 1; i < shape.length; i++) n *= shape[i];
    return n;
  }

  private static long numel(long[] shape) {
    long n = 1;
    for (long x : shape) n *= x;
    return n;
  }
}

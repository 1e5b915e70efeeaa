package dev.athanor.ops;

import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/** Allocating outputs that must share an input's strides (the C ABI gives some outputs no strides of their own). */
final class Layouts {
  private Layouts() {}

  /**
   * A new tensor with t's shape, dtype, device and strides. Works when t is contiguous or a
   * permutation of a contiguous tensor (e.g. {@code x.permute(0, 2, 1, 3)}); other layouts (slices
   * with gaps) throw, telling the caller to pass the output explicitly.
   */
  static Tensor emptyLike(String op, String name, Tensor t) {
    long[] shape = t.shape();
    if (t.isContiguous()) return Tensor.empty(t.dtype(), t.device(), shape);
    long[] strides = t.strides();
    int r = shape.length;
    // Order the dimensions from the largest stride to the smallest: the storage order.
    Integer[] order = IntStream.range(0, r).boxed().toArray(Integer[]::new);
    Arrays.sort(order, Comparator.comparingLong((Integer d) -> -strides[d]).thenComparingInt(d -> d));
    long[] permShape = new long[r];
    long expect = 1;
    boolean dense = true;
    for (int i = r - 1; i >= 0; i--) {
      int d = order[i];
      permShape[i] = shape[d];
      if (shape[d] != 1 && strides[d] != expect) dense = false;
      expect *= shape[d];
    }
    if (!dense) {
      throw Args.bad(op, Args.describe(name, t) + " has strides " + Args.shapeString(strides)
          + ", which are not a permutation of a contiguous layout, so the output cannot mirror them;"
          + " pass contiguous inputs or use the form of " + op + " that takes the outputs");
    }
    int[] inverse = new int[r];
    for (int i = 0; i < r; i++) inverse[order[i]] = i;
    try (Tensor base = Tensor.empty(t.dtype(), t.device(), permShape)) {
      Tensor view = base.permute(inverse);
      if (!Arrays.equals(view.shape(), shape)) {
        view.close();
        throw new IllegalStateException(op + ": internal: permuted shape " + Args.shapeString(view.shape())
            + " != " + Args.shapeString(shape));
      }
      return view;
    }
  }
}

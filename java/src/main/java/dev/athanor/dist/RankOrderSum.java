package dev.athanor.dist;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.List;

/**
 * The deterministic sum of the ranks' contributions, formed locally by Athanor's kernels in rank order: {@code out =
 * ((parts[0] + parts[1]) + parts[2]) + ...}, element by element. F32 is added in F32 (the same {@link Ops#add} that
 * accumulates micro-batch gradients in one process, so data parallel equals gradient accumulation bit for bit); BF16
 * and F16 are widened to F32, added in F32 in the same order and rounded once (nearest even); I32 is added exactly
 * (wrapping).
 */
public final class RankOrderSum {
  private RankOrderSum() {}

  /**
   * {@code out = parts[0] + parts[1] + ...} in that order. Every tensor is 1-D, contiguous, on the CPU, of {@code
   * out}'s dtype and length; {@code out} may not share memory with a part other than {@code parts[0]} and {@code parts[1]}.
   */
  public static void sum(List<Tensor> parts, Tensor out) {
    if (parts == null || parts.isEmpty()) throw new IllegalArgumentException("rank-order sum: no parts");
    if (out == null) throw new IllegalArgumentException("rank-order sum: out is null");
    for (int i = 0; i < parts.size(); i++) {
      Tensor p = parts.get(i);
      if (p == null) throw new IllegalArgumentException("rank-order sum: part " + i + " is null");
      if (p.dtype() != out.dtype() || p.rank() != 1 || out.rank() != 1 || p.numel() != out.numel()) {
        throw new IllegalArgumentException("rank-order sum: part " + i + " is " + p + " but out is " + out
            + "; need 1-D tensors of one dtype and length");
      }
    }
    long n = out.numel();
    if (n == 0) return;
    switch (out.dtype()) {
      case F32 -> {
        if (parts.size() == 1) {
          if (parts.get(0).address() != out.address()) out.copyFrom(parts.get(0));
          return;
        }
        Ops.add(parts.get(0), parts.get(1), out);
        for (int i = 2; i < parts.size(); i++) Ops.add(out, parts.get(i), out);
      }
      case BF16, F16 -> {
        try (Tensor acc = Ops.convert(parts.get(0), DType.F32); Tensor tmp = Tensor.empty(DType.F32, Device.CPU, n)) {
          for (int i = 1; i < parts.size(); i++) {
            Ops.convert(parts.get(i), tmp);
            Ops.add(acc, tmp, acc);
          }
          Ops.convert(acc, out);
        }
      }
      case I32 -> {
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("rank-order sum: I32 of " + n + " elements is too long");
        int[] acc = parts.get(0).toIntArray();
        for (int i = 1; i < parts.size(); i++) {
          int[] x = parts.get(i).toIntArray();
          for (int j = 0; j < acc.length; j++) acc[j] += x[j];
        }
        out.copyFrom(acc);
      }
    }
  }

  /**
   * The accumulating fold of F32 parts: {@code acc = ((acc + parts[0]) + parts[1]) + ...}, or with {@code first}
   * {@code acc = (parts[0] + parts[1]) + ...} ({@link #sum}): the order in which one process accumulates micro-batch
   * gradients. {@code acc} may not share memory with a part.
   */
  public static void fold(List<Tensor> parts, Tensor acc, boolean first) {
    if (acc != null && acc.dtype() != DType.F32) {
      throw new IllegalArgumentException("rank-order fold: acc is " + acc + "; accumulating needs F32");
    }
    if (first) {
      sum(parts, acc);
      return;
    }
    if (parts == null || parts.isEmpty() || acc == null) throw new IllegalArgumentException("rank-order fold: no parts or no acc");
    for (int i = 0; i < parts.size(); i++) {
      Tensor p = parts.get(i);
      if (p == null || p.dtype() != DType.F32 || p.rank() != 1 || acc.rank() != 1 || p.numel() != acc.numel()) {
        throw new IllegalArgumentException("rank-order fold: part " + i + " is " + p + " but acc is " + acc
            + "; need 1-D F32 tensors of one length");
      }
    }
    for (Tensor p : parts) Ops.add(acc, p, acc);
  }
}

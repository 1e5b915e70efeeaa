package dev.athanor.dist;

import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;

/**
 * The rank-ordered sum of a deterministic collective formed from gathered copies: every rank's tensor is all-gathered
 * piece by piece, then each rank adds the copies of the elements it needs left to right, in F32, with Athanor's own
 * kernels ({@link Ops#add}; BF16 and F16 converted to F32 first and rounded once at the end), so every rank gets the bits
 * of {@link RankOrderSum}. The gather is a parameter: {@link NcclCommunicator} passes NCCL's all-gather on the GPU; the
 * MPI tests pass MPI's on the CPU, which checks the piece bookkeeping and the arithmetic on several ranks without a GPU.
 * Scratch lives where {@code in} lives (DEVICE memory of its CUDA device, or HOST).
 */
final class GatheredFold {
  /** Gathers one piece: {@code into} (size × p elements) = every rank's {@code piece} (p elements) in rank order. */
  @FunctionalInterface
  interface Gather {
    void gather(Tensor piece, Tensor into);
  }

  private GatheredFold() {}

  /**
   * {@code out[i] = x_0[start + i] + x_1[start + i] + ...} ({@code first}) or {@code out[i] + x_0[start + i] + ...} for
   * {@code i < len}, where {@code x_r} is rank {@code r}'s {@code in} ({@code n} elements, the same n on every rank),
   * added left to right in F32. {@code out}: {@code in}'s dtype when {@code first} (BF16/F16 rounded once), F32
   * otherwise (an accumulator). {@code in} may be {@code out} (an all-reduce): each piece is gathered before it is
   * overwritten. {@code piece}: the most elements per rank gathered at once; every rank calls this with the same {@code
   * n} and {@code piece} (the gathers are collectives; a rank takes part also in pieces it folds nothing of).
   */
  static void fold(Tensor in, long start, long len, Tensor out, boolean first, int size, long piece, Gather gather) {
    DType dtype = in.dtype();
    if (!first && out.dtype() != DType.F32) throw new IllegalArgumentException("an accumulator must be F32, is " + out.dtype());
    if (piece < 1) throw new IllegalArgumentException("piece = " + piece + " must be >= 1");
    long n = in.numel();
    if (size == 1) {  // one rank: a copy (first) or one addition
      try (Tensor x = in.slice(0, start, start + len)) {
        if (first) {
          if (x.address() != out.address()) out.copyFrom(x);
        } else {
          Ops.add(out, x, out);
        }
      }
      return;
    }
    Tier tier = in.device().isCuda() ? Tier.DEVICE : Tier.HOST;
    boolean wide = dtype != DType.F32;  // converted to F32 before adding
    boolean rounded = wide && first;    // summed in an F32 temporary, rounded into out at the end
    try (Tensor gathered = Tensor.empty(dtype, in.device(), tier, Math.min(piece, n) * size);
        Tensor acc = rounded ? Tensor.empty(DType.F32, in.device(), tier, Math.min(piece, len)) : null;
        Tensor conv = wide ? Tensor.empty(DType.F32, in.device(), tier, Math.min(piece, len)) : null) {
      for (long b = 0; b < n; b += piece) {
        long p = Math.min(piece, n - b);
        try (Tensor src = in.slice(0, b, b + p); Tensor dst = gathered.slice(0, 0, p * size)) {
          gather.gather(src, dst);
        }
        long lo = Math.max(b, start), hi = Math.min(b + p, start + len);
        if (lo >= hi) continue;
        long m = hi - lo;
        try (Tensor o = out.slice(0, lo - start, hi - start);
            Tensor sum = rounded ? acc.slice(0, 0, m) : null;
            Tensor w = wide ? conv.slice(0, 0, m) : null) {
          Tensor target = rounded ? sum : o;
          for (int r = 0; r < size; r++) {
            try (Tensor x = gathered.slice(0, r * p + (lo - b), r * p + (hi - b))) {
              Tensor xf = x;
              if (wide) {
                Ops.convert(x, w);
                xf = w;
              }
              if (r == 0 && first) target.copyFrom(xf);
              else Ops.add(target, xf, target);
            }
          }
          if (rounded) Ops.convert(sum, o);  // once
        }
      }
    }
  }
}

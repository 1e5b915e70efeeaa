package dev.athanor.dist;

import dev.athanor.memory.Tier;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;

/** Argument checks of the collectives, in Java before any native call; messages name the operation and the value. */
final class Checks {
  private Checks() {}

  /** {@code t} is open, contiguous and in host memory. */
  static void host(String op, String name, Tensor t) {
    if (t == null) throw new IllegalArgumentException(op + ": " + name + " is null");
    t.checkOpen();
    if (!t.device().isCpu() || (t.tier() != Tier.HOST && t.tier() != Tier.HOST_PINNED)) {
      throw new IllegalArgumentException(op + ": " + name + " " + t + " must be in host memory (HOST or HOST_PINNED), is on "
          + t.device() + " / " + t.tier() + " (CUDA tensors need Communicator.nccl or Communicator.staged)");
    }
    if (!t.isContiguous()) throw new IllegalArgumentException(op + ": " + name + " " + t + " must be contiguous");
  }

  static void sameDtype(String op, Tensor a, Tensor b) {
    if (a.dtype() != b.dtype()) {
      throw new IllegalArgumentException(op + ": in is " + a.dtype() + " but out is " + b.dtype() + "; need one dtype");
    }
  }

  /** {@code peer} is a rank other than {@code self}. */
  static void peer(String op, String what, int peer, int self, int size) {
    if (peer < 0 || peer >= size) {
      throw new IllegalArgumentException(op + ": " + what + " rank " + peer + " is outside [0, " + size + ")");
    }
    if (peer == self) throw new IllegalArgumentException(op + ": " + what + " rank " + peer + " is this rank itself");
  }

  static void root(String op, int root, int size) {
    if (root < 0 || root >= size) throw new IllegalArgumentException(op + ": root rank " + root + " is outside [0, " + size + ")");
  }

  /**
   * {@code in} and {@code out} are host tensors of one dtype, and {@code part} (named {@code partName}) holds rank
   * {@code rank}'s part of {@code whole}'s elements.
   */
  static void parts(String op, Tensor in, Tensor out, String partName, Tensor part, Tensor whole, int rank, int size) {
    host(op, "in", in);
    host(op, "out", out);
    sameDtype(op, in, out);
    partOf(op, partName, part, whole.numel(), rank, size);
  }

  /** {@code part} (named {@code partName}) has rank {@code rank}'s part of {@code n} elements over {@code size} ranks. */
  static void partOf(String op, String partName, Tensor part, long n, int rank, int size) {
    long want = Communicator.partLength(n, rank, size);
    if (part.numel() != want) {
      throw new IllegalArgumentException(op + ": " + partName + " has " + part.numel() + " elements but rank " + rank
          + "'s part of " + n + " elements over " + size + " ranks has " + want);
    }
  }

  /**
   * An all-gather with counts: host tensors of one dtype, {@code counts} one non-negative count per rank that add up to
   * {@code out}'s elements, {@code in} this rank's count.
   */
  static void counts(String op, Tensor in, Tensor out, long[] counts, int rank, int size) {
    host(op, "in", in);
    host(op, "out", out);
    sameDtype(op, in, out);
    countsOf(op, in, out, counts, rank, size);
  }

  /**
   * {@code counts} has one non-negative count per rank adding up to {@code out}'s elements, and {@code in} holds this
   * rank's count; returns where this rank's part of {@code out} starts. (No check of where the tensors live.)
   */
  static long countsOf(String op, Tensor in, Tensor out, long[] counts, int rank, int size) {
    long start = perRankStart(op, counts, size, rank, out.numel(), "out");
    if (in.numel() != counts[rank]) {
      throw new IllegalArgumentException(op + ": in has " + in.numel() + " elements but counts[" + rank + "] = " + counts[rank]);
    }
    return start;
  }

  /** {@code in} holds the sum of {@code counts} (one per rank, none negative) elements, F32 {@code acc} this rank's count. */
  static void foldCounts(String op, Tensor in, Tensor acc, long[] counts, int rank, int size) {
    host(op, "in", in);
    host(op, "acc", acc);
    foldCountsOf(op, in, acc, counts, rank, size);
  }

  /**
   * {@link #foldCounts}'s checks without where the tensors live: both F32, {@code counts} adding up to {@code in}'s
   * elements, {@code acc} this rank's count; returns where this rank's part of {@code in} starts.
   */
  static long foldCountsOf(String op, Tensor in, Tensor acc, long[] counts, int rank, int size) {
    bothF32(op, in, acc);
    long start = perRankStart(op, counts, size, rank, in.numel(), "in");
    if (acc.numel() != counts[rank]) {
      throw new IllegalArgumentException(op + ": acc has " + acc.numel() + " elements but counts[" + rank + "] = " + counts[rank]);
    }
    return start;
  }

  /** {@code in} and {@code acc} are F32 (what the accumulating reductions add in). */
  static void bothF32(String op, Tensor in, Tensor acc) {
    if (in.dtype() != DType.F32 || acc.dtype() != DType.F32) {
      throw new IllegalArgumentException(op + ": in is " + in + " and acc " + acc + "; both must be F32");
    }
  }

  /**
   * {@code counts} has one entry per rank, none negative, adding up to {@code total} (the elements of {@code what});
   * returns where rank {@code rank}'s part starts.
   */
  static long perRankStart(String op, long[] counts, int size, int rank, long total, String what) {
    perRank(op, counts, size, total, what);
    long start = 0;
    for (int r = 0; r < rank; r++) start += counts[r];
    return start;
  }

  /** {@code counts} has one entry per rank, none negative, adding up to {@code total}, the elements of {@code what}. */
  private static void perRank(String op, long[] counts, int size, long total, String what) {
    if (counts == null || counts.length != size) {
      throw new IllegalArgumentException(op + ": counts has " + (counts == null ? "no" : counts.length) + " entries, need one per rank ("
          + size + ")");
    }
    long sum = 0;
    for (int r = 0; r < size; r++) {
      if (counts[r] < 0) throw new IllegalArgumentException(op + ": counts[" + r + "] = " + counts[r] + " is negative");
      sum += counts[r];
    }
    if (sum != total) throw new IllegalArgumentException(op + ": counts add up to " + sum + " but " + what + " has " + total + " elements");
  }
}

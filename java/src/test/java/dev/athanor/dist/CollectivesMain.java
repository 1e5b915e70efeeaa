package dev.athanor.dist;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Run by {@link MpiRunTest} under mpirun: every collective of {@link Communicator#mpi} on awkward sizes in every dtype,
 * checked against values this process computes alone (it can draw every rank's inputs, which depend only on the rank).
 * Deterministic mode must match the rank-order reference bit for bit; fast mode within a tolerance for floats (exact
 * for I32). Each call's {@link Communicator#sentBytes} must grow by what this rank's data delivers to the others: the
 * other ranks' parts and its own part's sums to each of them (all-reduce), the other ranks' parts (reduce-scatter),
 * its own part to each of them (all-gather), the whole tensor to each of them (the broadcast's root), the tensor (send).
 * Prints one line per rank and exits 0, or throws (the launcher then reports a failure).
 *
 * <p>Arguments: {@code deterministic|fast}.
 */
public final class CollectivesMain {
  static final long[] SIZES = {0, 1, 2, 3, 5, 7, 64, 1000, 4097, 100_003};

  public static void main(String[] args) {
    ReduceMode mode = ReduceMode.valueOf(args[0].toUpperCase(Locale.ROOT));
    int checks = 0;
    try (Communicator c = Communicator.mpi(mode)) {
      for (DType dt : DType.values()) {
        for (long n : SIZES) {
          checks += allReduce(c, dt, n);
          checks += reduceScatter(c, dt, n);
          if (dt == DType.F32) {
            checks += reduceScatterAccumulate(c, n, null);
            checks += reduceScatterAccumulate(c, n, unevenCounts(n, c.size()));  // the V variant (ZeRO 3's per-unit fold)
          }
          checks += allGather(c, dt, n);
          checks += allGatherV(c, dt, n);
          checks += broadcast(c, dt, n);
          checks += sendRecv(c, dt, n);
          if (mode == ReduceMode.DETERMINISTIC && dt != DType.I32) checks += gatheredFold(c, dt, n);
        }
      }
      c.barrier();
      System.out.println("rank " + c.rank() + " of " + c.size() + " (" + c.describe() + "): " + checks + " checks passed");
    }
  }

  /**
   * {@link GatheredFold} (the NCCL communicator's deterministic sums) over MPI's all-gather, in pieces of 3, 1000 and all
   * elements per rank, equals this communicator's deterministic all-reduce, reduce-scatter and folds bit for bit.
   */
  static int gatheredFold(Communicator c, DType dt, long n) {
    int checks = 0;
    int s = c.size(), r = c.rank();
    long start = Communicator.partStart(n, r, s), len = Communicator.partLength(n, r, s);
    GatheredFold.Gather mpi = (piece, into) -> c.allGather(piece, into);
    for (long piece : new long[] {3, 1000, Math.max(1, n)}) {
      String what = "gathered fold " + dt + " n=" + n + " piece " + piece;
      try (Tensor x = input(dt, n, r, 77); Tensor want = input(dt, n, r, 77); Tensor part = Tensor.empty(dt, Device.CPU, len);
          Tensor wantPart = Tensor.empty(dt, Device.CPU, len)) {
        c.allReduceSum(want);
        GatheredFold.fold(x, 0, n, x, true, s, piece, mpi);  // in place, as allReduceSum
        same(what + " all-reduce", want, x);
        try (Tensor in = input(dt, n, r, 78)) {
          c.reduceScatter(in, wantPart);
          GatheredFold.fold(in, start, len, part, true, s, piece, mpi);
          same(what + " reduce-scatter", wantPart, part);
        }
        checks += 2;
      }
      if (dt != DType.F32) continue;
      long[] counts = unevenCounts(n, s);
      long vStart = 0;
      for (int q = 0; q < r; q++) vStart += counts[q];
      for (boolean first : new boolean[] {true, false}) {
        try (Tensor in = input(dt, n, r, 79); Tensor acc = input(dt, len, r, 80); Tensor wantAcc = input(dt, len, r, 80);
            Tensor accV = input(dt, counts[r], r, 81); Tensor wantV = input(dt, counts[r], r, 81)) {
          c.reduceScatterAccumulate(in, wantAcc, first);
          GatheredFold.fold(in, start, len, acc, first, s, piece, mpi);
          same(what + " fold, first " + first, wantAcc, acc);
          c.reduceScatterAccumulateV(in, wantV, counts, first);
          GatheredFold.fold(in, vStart, counts[r], accV, first, s, piece, mpi);
          same(what + " fold with counts, first " + first, wantV, accV);
          checks += 2;
        }
      }
    }
    return checks;
  }

  private static void same(String what, Tensor want, Tensor got) {
    float[] a = want.toFloatArray(), b = got.toFloatArray();
    for (int i = 0; i < a.length; i++) {
      if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
        throw new AssertionError(what + ": element " + i + " is " + b[i] + ", the communicator's sum " + a[i]);
      }
    }
  }

  /** Rank {@code rank}'s input of {@code n} elements: values of very different magnitudes, so the summation order shows. */
  static Tensor input(DType dt, long n, int rank, long salt) {
    SplittableRandom r = new SplittableRandom(1000L * rank + 31 * n + salt + dt.ordinal());
    if (dt == DType.I32) {
      int[] v = new int[(int) n];
      for (int i = 0; i < n; i++) v[i] = r.nextInt();  // sums wrap
      return Tensor.fromInts(v, Device.CPU, n);
    }
    float[] v = new float[(int) n];
    for (int i = 0; i < n; i++) v[i] = (float) ((r.nextDouble() - 0.5) * Math.scalb(1.0, r.nextInt(-12, 13)));
    return Tensor.fromFloats(v, dt, Device.CPU, n);  // rounded to dt
  }

  /** The rank-order sum of every rank's input, computed here: F32 adds in float, BF16/F16 in float then one rounding. */
  static Tensor reference(DType dt, long n, int size, long salt) {
    if (dt == DType.I32) {
      int[] acc = new int[(int) n];
      for (int q = 0; q < size; q++) {
        try (Tensor t = input(dt, n, q, salt)) {
          int[] x = t.toIntArray();
          for (int i = 0; i < n; i++) acc[i] += x[i];
        }
      }
      return Tensor.fromInts(acc, Device.CPU, n);
    }
    float[] acc = new float[(int) n];
    for (int q = 0; q < size; q++) {
      try (Tensor t = input(dt, n, q, salt)) {
        float[] x = t.toFloatArray();
        for (int i = 0; i < n; i++) acc[i] = q == 0 ? x[i] : acc[i] + x[i];
      }
    }
    return Tensor.fromFloats(acc, dt, Device.CPU, n);
  }

  private static int allReduce(Communicator c, DType dt, long n) {
    try (Tensor t = input(dt, n, c.rank(), 1); Tensor want = reference(dt, n, c.size(), 1)) {
      long before = c.sentBytes(), len = Communicator.partLength(n, c.rank(), c.size());
      c.allReduceSum(t);
      compare(c, "allReduceSum", dt, n, t, want, 0);
      delivered(c, "allReduceSum", dt, n, before, (n - len + len * (c.size() - 1)) * dt.byteSize());
    }
    return 1;
  }

  private static int reduceScatter(Communicator c, DType dt, long n) {
    long a = Communicator.partStart(n, c.rank(), c.size()), len = Communicator.partLength(n, c.rank(), c.size());
    try (Tensor in = input(dt, n, c.rank(), 2); Tensor out = Tensor.zeros(dt, Device.CPU, len);
        Tensor full = reference(dt, n, c.size(), 2); Tensor want = full.slice(0, a, a + len)) {
      long before = c.sentBytes();
      c.reduceScatter(in, out);
      compare(c, "reduceScatter", dt, n, out, want, a);
      delivered(c, "reduceScatter", dt, n, before, (n - len) * dt.byteSize());
    }
    return 1;
  }

  /**
   * Two rounds into one F32 accumulator: the first overwrites it ({@code (x_0 + x_1) + ...}), the second adds to it
   * accumulator first ({@code ((acc + y_0) + y_1) + ...}), as ZeRO 2 folds micro-batch gradients;
   * with {@code counts}, the parts of {@link Communicator#reduceScatterAccumulateV} (as ZeRO 3 folds a unit's).
   */
  private static int reduceScatterAccumulate(Communicator c, long n, long[] counts) {
    long a = Communicator.partStart(n, c.rank(), c.size()), len = Communicator.partLength(n, c.rank(), c.size());
    if (counts != null) {  // rank r's part: counts[r] elements after the parts of the ranks before it
      a = 0;
      for (int q = 0; q < c.rank(); q++) a += counts[q];
      len = counts[c.rank()];
    }
    String op = counts == null ? "reduceScatterAccumulate" : "reduceScatterAccumulateV";
    float[] want = new float[(int) len];
    for (int q = 0; q < c.size(); q++) {
      try (Tensor t = input(DType.F32, n, q, 6)) {
        float[] x = t.toFloatArray();
        for (int i = 0; i < len; i++) want[i] = q == 0 ? x[(int) a + i] : want[i] + x[(int) a + i];
      }
    }
    for (int q = 0; q < c.size(); q++) {
      try (Tensor t = input(DType.F32, n, q, 7)) {
        float[] y = t.toFloatArray();
        for (int i = 0; i < len; i++) want[i] += y[(int) a + i];
      }
    }
    // in one piece (the default piece is 2^20 elements), then in pieces of 7 elements (the last ones short or empty)
    for (String piece : new String[] {null, "7"}) {
      if (piece == null) System.clearProperty(MpiCommunicator.FOLD_PIECE);
      else System.setProperty(MpiCommunicator.FOLD_PIECE, piece);
      try (Tensor acc = Tensor.fromFloats(new float[(int) len], DType.F32, Device.CPU, len);
          Tensor x = input(DType.F32, n, c.rank(), 6); Tensor y = input(DType.F32, n, c.rank(), 7);
          Tensor w = Tensor.fromFloats(want, DType.F32, Device.CPU, len)) {
        Ops.fill(acc, Float.NaN);  // the first round must not read it
        long before = c.sentBytes();
        if (counts == null) {
          c.reduceScatterAccumulate(x, acc, true);
          c.reduceScatterAccumulate(y, acc, false);
          delivered(c, op + " twice", DType.F32, n, before, 2 * (n - len) * 4);
        } else {
          c.reduceScatterAccumulateV(x, acc, counts, true);
          c.reduceScatterAccumulateV(y, acc, counts, false);
          delivered(c, op + " twice", DType.F32, n, before, 2 * (n - counts[c.rank()]) * 4);
        }
        compare(c, op + ", pieces of " + (piece == null ? "2^20" : piece), DType.F32, n, acc, w, a);
      } finally {
        System.clearProperty(MpiCommunicator.FOLD_PIECE);
      }
    }
    return 2;
  }

  private static int allGather(Communicator c, DType dt, long n) {
    long a = Communicator.partStart(n, c.rank(), c.size()), len = Communicator.partLength(n, c.rank(), c.size());
    try (Tensor out = Tensor.zeros(dt, Device.CPU, n); Tensor want = Tensor.zeros(dt, Device.CPU, n)) {
      for (int q = 0; q < c.size(); q++) {  // rank q contributes its part of its own input
        long qa = Communicator.partStart(n, q, c.size()), ql = Communicator.partLength(n, q, c.size());
        try (Tensor src = input(dt, n, q, 3); Tensor part = src.slice(0, qa, qa + ql); Tensor dst = want.slice(0, qa, qa + ql)) {
          dst.copyFrom(part);
        }
      }
      try (Tensor src = input(dt, n, c.rank(), 3); Tensor slice = src.slice(0, a, a + len); Tensor mine = slice.copy()) {
        long before = c.sentBytes();
        c.allGather(mine, out);
        delivered(c, "allGather", dt, n, before, len * (c.size() - 1) * dt.byteSize());
      }
      compare(c, "allGather", dt, n, out, want, 0);
      // in place: this rank's part already sits in out
      try (Tensor inPlace = Tensor.zeros(dt, Device.CPU, n); Tensor src = input(dt, n, c.rank(), 3);
          Tensor part = inPlace.slice(0, a, a + len); Tensor from = src.slice(0, a, a + len)) {
        part.copyFrom(from);
        c.allGather(part, inPlace);
        compare(c, "allGather in place", dt, n, inPlace, want, 0);
      }
    }
    return 2;
  }

  /** Uneven counts that add up to {@code n}, some of them 0 for small {@code n}: the last rank takes the rest. */
  static long[] unevenCounts(long n, int size) {
    long[] counts = new long[size];
    long rest = n;
    for (int r = 0; r < size - 1; r++) {
      counts[r] = Math.min(rest, n / (2 + r) + r % 2);
      rest -= counts[r];
    }
    counts[size - 1] = rest;
    return counts;
  }

  /** Rank q contributes the first counts[q] elements of its own input; then the same in place. */
  private static int allGatherV(Communicator c, DType dt, long n) {
    long[] counts = unevenCounts(n, c.size());
    long a = 0;
    for (int q = 0; q < c.rank(); q++) a += counts[q];
    try (Tensor out = Tensor.zeros(dt, Device.CPU, n); Tensor want = Tensor.zeros(dt, Device.CPU, n)) {
      long at = 0;
      for (int q = 0; q < c.size(); q++) {
        try (Tensor src = input(dt, n, q, 8); Tensor part = src.slice(0, 0, counts[q]); Tensor dst = want.slice(0, at, at + counts[q])) {
          dst.copyFrom(part);
        }
        at += counts[q];
      }
      try (Tensor src = input(dt, n, c.rank(), 8); Tensor slice = src.slice(0, 0, counts[c.rank()]); Tensor mine = slice.copy()) {
        long before = c.sentBytes();
        c.allGatherV(mine, out, counts);
        delivered(c, "allGatherV", dt, n, before, counts[c.rank()] * (c.size() - 1) * dt.byteSize());
      }
      compare(c, "allGatherV " + Arrays.toString(counts), dt, n, out, want, 0);
      try (Tensor inPlace = Tensor.zeros(dt, Device.CPU, n); Tensor src = input(dt, n, c.rank(), 8);
          Tensor part = inPlace.slice(0, a, a + counts[c.rank()]); Tensor from = src.slice(0, 0, counts[c.rank()])) {
        part.copyFrom(from);
        c.allGatherV(part, inPlace, counts);
        compare(c, "allGatherV in place", dt, n, inPlace, want, 0);
      }
    }
    return 2;
  }

  private static int broadcast(Communicator c, DType dt, long n) {
    int root = c.size() - 1;
    try (Tensor t = input(dt, n, c.rank(), 4); Tensor want = input(dt, n, root, 4)) {
      long before = c.sentBytes();
      c.broadcast(t, root);
      delivered(c, "broadcast", dt, n, before, c.rank() == root ? n * (c.size() - 1) * dt.byteSize() : 0);
      compare(c, "broadcast from " + root, dt, n, t, want, 0);
    }
    return 1;
  }

  /** Pairs (0, 1), (2, 3), ...: the even rank sends first, the odd one answers with its own tensor. */
  private static int sendRecv(Communicator c, DType dt, long n) {
    int r = c.rank(), peer = r % 2 == 0 ? r + 1 : r - 1;
    if (peer >= c.size()) return 0;
    try (Tensor mine = input(dt, n, r, 5); Tensor got = Tensor.zeros(dt, Device.CPU, n); Tensor want = input(dt, n, peer, 5)) {
      long before = c.sentBytes();
      if (r % 2 == 0) {
        c.send(mine, peer);
        c.recv(got, peer);
      } else {
        c.recv(got, peer);
        c.send(mine, peer);
      }
      compare(c, "send/recv with " + peer, dt, n, got, want, 0);
      delivered(c, "send/recv", dt, n, before, n * dt.byteSize());
    }
    return 1;
  }

  /** Bit for bit in deterministic mode (and for I32, copies and gathers); within a relative tolerance for fast sums. */
  private static void compare(Communicator c, String op, DType dt, long n, Tensor got, Tensor want, long offset) {
    boolean exact = c.mode() == ReduceMode.DETERMINISTIC || dt == DType.I32 || !op.startsWith("allReduce") && !op.startsWith("reduceScatter");  // and reduceScatterAccumulate
    if (dt == DType.I32) {
      int[] g = got.toIntArray(), w = want.toIntArray();
      for (int i = 0; i < g.length; i++) if (g[i] != w[i]) fail(c, op, dt, n, offset + i, g[i], w[i]);
      return;
    }
    float[] g = got.toFloatArray(), w = want.toFloatArray();
    for (int i = 0; i < g.length; i++) {
      boolean ok = exact ? Float.floatToRawIntBits(g[i]) == Float.floatToRawIntBits(w[i])
          : Math.abs(g[i] - w[i]) <= 1e-2 * Math.max(1e-3, Math.abs(w[i])) * c.size();
      if (!ok) fail(c, op, dt, n, offset + i, g[i], w[i]);
    }
  }

  /** {@link Communicator#sentBytes} grew by {@code want} since {@code before}. */
  private static void delivered(Communicator c, String op, DType dt, long n, long before, long want) {
    long got = c.sentBytes() - before;
    if (got != want) {
      throw new AssertionError("rank " + c.rank() + " of " + c.size() + ", " + c.mode() + ": " + op + " " + dt + " n=" + n
          + " delivered " + got + " bytes by sentBytes, expected " + want);
    }
  }

  private static void fail(Communicator c, String op, DType dt, long n, long i, Object got, Object want) {
    throw new AssertionError("rank " + c.rank() + " of " + c.size() + ", " + c.mode() + ": " + op + " " + dt + " n=" + n
        + ": element " + i + " is " + got + ", expected " + want + " (" + Arrays.toString(new long[] {n}) + ")");
  }
}

package dev.athanor.ops;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Arrays;

/**
 * Assertions for comparing an op's result with its reference: element-wise
 * {@code |actual - expected| <= atol + rtol * |expected|}; on failure the message names what was
 * compared, the number of mismatches, the max abs and rel errors (and where), and the first
 * mismatches with their multi-dimensional indices.
 */
final class Check {
  private Check() {}

  /** Absolute and relative tolerance. */
  record Tol(double atol, double rtol) {
    /** This tolerance with {@code extra} added to the absolute part (a floor for F32 rounding noise). */
    Tol plusAtol(double extra) {
      return new Tol(atol + extra, rtol);
    }

    @Override
    public String toString() {
      return "atol=" + atol + " rtol=" + rtol;
    }
  }

  private static final int SHOW = 8;

  /** Compares with shape-aware messages; shape may be null (flat indices). */
  static void close(String what, double[] expected, float[] actual, Tol tol, long... shape) {
    double[] a = new double[actual.length];
    for (int i = 0; i < a.length; i++) a[i] = actual[i];
    close(what, expected, a, tol, shape);
  }

  static void close(String what, double[] expected, double[] actual, Tol tol, long... shape) {
    if (expected.length != actual.length) {
      fail(what + ": length " + actual.length + " != expected " + expected.length);
    }
    int bad = 0;
    double maxAbs = 0, maxRel = 0;
    int maxAbsAt = -1, maxRelAt = -1;
    StringBuilder first = new StringBuilder();
    for (int i = 0; i < expected.length; i++) {
      double e = expected[i], v = actual[i];
      boolean ok;
      double err;
      if (Double.isNaN(e) || Double.isInfinite(e)) {
        ok = Double.compare(e, v) == 0 || (Double.isNaN(e) && Double.isNaN(v));
        err = ok ? 0 : Double.POSITIVE_INFINITY;
      } else {
        err = Math.abs(v - e);
        if (Double.isNaN(err)) err = Double.POSITIVE_INFINITY;
        ok = err <= tol.atol() + tol.rtol() * Math.abs(e);
      }
      double rel = err / Math.max(Math.abs(e), 1e-30);
      if (err > maxAbs || maxAbsAt < 0) { maxAbs = err; maxAbsAt = i; }
      if (rel > maxRel || maxRelAt < 0) { maxRel = rel; maxRelAt = i; }
      if (!ok) {
        if (bad < SHOW) {
          first.append("\n    at ").append(index(i, shape)).append(": got ").append(v)
              .append(", expected ").append(e).append(" (abs err ").append(err).append(')');
        }
        bad++;
      }
    }
    if (bad > 0) {
      fail(what + ": " + bad + " of " + expected.length + " elements outside " + tol
          + (shape != null && shape.length > 0 ? " (shape " + Arrays.toString(shape) + ")" : "")
          + "; max abs err " + maxAbs + " at " + index(maxAbsAt, shape)
          + ", max rel err " + maxRel + " at " + index(maxRelAt, shape)
          + "; first mismatches:" + first);
    }
  }

  static void close(String what, double expected, double actual, Tol tol) {
    close(what, new double[] {expected}, new double[] {actual}, tol);
  }

  /** Bit-identical float arrays (determinism; an exact expected result): first is the reference. */
  static void identical(String what, float[] first, float[] second) {
    if (first.length != second.length) fail(what + ": lengths differ " + first.length + " vs " + second.length);
    int bad = 0;
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < first.length; i++) {
      if (Float.floatToRawIntBits(first[i]) != Float.floatToRawIntBits(second[i])) {
        if (bad < SHOW) sb.append("\n    at ").append(i).append(": ").append(first[i]).append(" vs ").append(second[i]);
        bad++;
      }
    }
    if (bad > 0) fail(what + ": " + bad + " of " + first.length + " elements differ (first vs second):" + sb);
  }

  static String index(int flat, long[] shape) {
    if (flat < 0) return "-";
    if (shape == null || shape.length == 0) return "[" + flat + "]";
    long[] idx = new long[shape.length];
    long rem = flat;
    for (int d = shape.length - 1; d >= 0; d--) {
      idx[d] = shape[d] == 0 ? 0 : rem % shape[d];
      rem = shape[d] == 0 ? rem : rem / shape[d];
    }
    return Arrays.toString(idx);
  }

  static double[] toDouble(float[] f) {
    double[] d = new double[f.length];
    for (int i = 0; i < f.length; i++) d[i] = f[i];
    return d;
  }

  static double[] toDouble(int[] f) {
    double[] d = new double[f.length];
    for (int i = 0; i < f.length; i++) d[i] = f[i];
    return d;
  }
}

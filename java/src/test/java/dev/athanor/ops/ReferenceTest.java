package dev.athanor.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import java.util.Random;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;

/**
 * Checks the scalar reference itself (it needs no native library): every backward of
 * {@link Reference} against central finite differences of its forward, in double, and the Philox
 * generator against the published known-answer vector. The native tests then only need to compare
 * against the reference.
 */
class ReferenceTest {
  private static final Check.Tol FD = new Check.Tol(1e-7, 1e-6);
  private static final double H = 1e-5;

  static double[] random(Random r, int n, double scale) {
    double[] x = new double[n];
    for (int i = 0; i < n; i++) x[i] = (r.nextDouble() * 2 - 1) * scale;
    return x;
  }

  static double dot(double[] a, double[] b) {
    double s = 0;
    for (int i = 0; i < a.length; i++) s += a[i] * b[i];
    return s;
  }

  /** Numeric gradient of L(x) = sum(w * f(x)) with respect to x, central differences. */
  static double[] numericGrad(UnaryOperator<double[]> f, double[] x, double[] w) {
    double[] g = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      double[] xp = x.clone(), xm = x.clone();
      xp[i] += H;
      xm[i] -= H;
      g[i] = (dot(w, f.apply(xp)) - dot(w, f.apply(xm))) / (2 * H);
    }
    return g;
  }

  @Test
  void attentionBackwardMatchesFiniteDifferences() {
    Random r = new Random(1);
    // {batch, hq, hkv, tq, tk, d, causal}: GQA, Tq != Tk, rows with no visible key (tq > tk, causal).
    int[][] cases = {{1, 2, 1, 3, 5, 4, 1}, {2, 2, 2, 4, 4, 3, 0}, {1, 4, 2, 5, 3, 2, 1}};
    for (int[] c : cases) {
      int b = c[0], hq = c[1], hkv = c[2], tq = c[3], tk = c[4], d = c[5];
      boolean causal = c[6] == 1;
      double scale = 0.7;
      double[] q = random(r, b * hq * tq * d, 1), k = random(r, b * hkv * tk * d, 1), v = random(r, b * hkv * tk * d, 1);
      double[] w = random(r, q.length, 1);
      Reference.AttentionGrads g = Reference.attentionBackward(b, hq, hkv, tq, tk, d, causal, scale, q, k, v, w);
      String what = "attention " + java.util.Arrays.toString(c);
      Check.close(what + " dq", numericGrad(x -> Reference.attention(b, hq, hkv, tq, tk, d, causal, scale, x, k, v).o(), q, w), g.dq(), FD);
      Check.close(what + " dk", numericGrad(x -> Reference.attention(b, hq, hkv, tq, tk, d, causal, scale, q, x, v).o(), k, w), g.dk(), FD);
      Check.close(what + " dv", numericGrad(x -> Reference.attention(b, hq, hkv, tq, tk, d, causal, scale, q, k, x).o(), v, w), g.dv(), FD);
    }
  }

  @Test
  void attentionRowWithoutVisibleKeyIsZeroWithLseMinusInfinity() {
    Random r = new Random(2);
    int tq = 4, tk = 2, d = 3;
    Reference.AttentionOut o = Reference.attention(1, 1, 1, tq, tk, d, true, 1.0,
        random(r, tq * d, 1), random(r, tk * d, 1), random(r, tk * d, 1));
    // query i sees keys j <= i - 2: rows 0 and 1 see none.
    for (int i = 0; i < 2; i++) {
      org.junit.jupiter.api.Assertions.assertEquals(Double.NEGATIVE_INFINITY, o.lse()[i]);
      for (int x = 0; x < d; x++) org.junit.jupiter.api.Assertions.assertEquals(0.0, o.o()[i * d + x]);
    }
  }

  @Test
  void layerNormBackwardMatchesFiniteDifferences() {
    Random r = new Random(3);
    int rows = 3, cols = 7;
    double eps = 1e-5;
    double[] x = random(r, rows * cols, 2), w = random(r, cols, 1), b = random(r, cols, 1), dout = random(r, rows * cols, 1);
    double[] dw = new double[cols], db = new double[cols];
    double[] dx = Reference.layerNormBackward(rows, cols, eps, x, w, dout, dw, db);
    Check.close("layernorm dx", numericGrad(t -> Reference.layerNorm(rows, cols, eps, t, w, b).out(), x, dout), dx, FD);
    Check.close("layernorm dweight", numericGrad(t -> Reference.layerNorm(rows, cols, eps, x, t, b).out(), w, dout), dw, FD);
    Check.close("layernorm dbias", numericGrad(t -> Reference.layerNorm(rows, cols, eps, x, w, t).out(), b, dout), db, FD);
  }

  @Test
  void rmsNormBackwardMatchesFiniteDifferences() {
    Random r = new Random(4);
    int rows = 3, cols = 9;
    double eps = 1e-6;
    double[] x = random(r, rows * cols, 2), w = random(r, cols, 1), dout = random(r, rows * cols, 1);
    double[] dw = new double[cols];
    double[] dx = Reference.rmsNormBackward(rows, cols, eps, x, w, dout, dw);
    Check.close("rmsnorm dx", numericGrad(t -> Reference.rmsNorm(rows, cols, eps, t, w).out(), x, dout), dx, FD);
    Check.close("rmsnorm dweight", numericGrad(t -> Reference.rmsNorm(rows, cols, eps, x, t).out(), w, dout), dw, FD);
  }

  @Test
  void activationBackwardMatchesFiniteDifferences() {
    Random r = new Random(5);
    int n = 50;
    double[] x = random(r, n, 4), y = random(r, n, 2), dout = random(r, n, 1);
    for (int act = 0; act < 3; act++) {
      int a = act;
      double[][] g = Reference.activationBackward(a, x, y, dout);
      Check.close("act " + a + " dx", numericGrad(t -> Reference.activation(a, t, y), x, dout), g[0], FD);
      if (a == 2) Check.close("swiglu dy", numericGrad(t -> Reference.activation(a, x, t), y, dout), g[1], FD);
    }
  }

  @Test
  void crossEntropyBackwardMatchesFiniteDifferences() {
    Random r = new Random(6);
    int rows = 4, vocab = 11;
    double[] logits = random(r, rows * vocab, 3), dl = random(r, rows, 1);
    int[] targets = {3, -1, 0, 10};
    double[] d = Reference.crossEntropyBackward(rows, vocab, logits, targets, dl);
    Check.close("xent dlogits", numericGrad(t -> Reference.crossEntropy(rows, vocab, t, targets).losses(), logits, dl), d, FD);
  }

  @Test
  void embeddingBackwardMatchesFiniteDifferences() {
    Random r = new Random(7);
    int vocab = 5, dim = 3;
    int[] ids = {4, 0, 4, 2};
    double[] table = random(r, vocab * dim, 1), dout = random(r, ids.length * dim, 1);
    double[] dt = new double[vocab * dim];
    Reference.embeddingBackward(dim, ids, dout, dt);
    Check.close("embedding dtable", numericGrad(t -> Reference.embedding(vocab, dim, ids, t), table, dout), dt, FD);
  }

  @Test
  void ropeInverseIsTheBackwardAndUndoesTheForward() {
    Random r = new Random(8);
    int b = 2, t = 3, h = 2, d = 6;
    double[] x = random(r, b * t * h * d, 1), dout = random(r, x.length, 1);
    double[] dx = Reference.rope(b, t, h, d, true, 5, 10000, dout);
    Check.close("rope dx", numericGrad(z -> Reference.rope(b, t, h, d, false, 5, 10000, z), x, dout), dx, FD);
    double[] back = Reference.rope(b, t, h, d, true, 5, 10000, Reference.rope(b, t, h, d, false, 5, 10000, x));
    Check.close("rope inverse(forward(x))", x, back, new Check.Tol(1e-12, 0));
  }

  @Test
  void philoxMatchesKnownAnswer() {
    // Philox-4x32-10 with counter 0 and key 0 (Random123 known-answer test vector).
    int[] got = Reference.philox(0, 0);
    assertArrayEquals(new int[] {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}, got);
  }

  @Test
  void dtypeRoundingIsNearestEven() {
    // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
    org.junit.jupiter.api.Assertions.assertEquals(1.0f, Reference.roundBf16(1.0f + 0x1p-8f));
    org.junit.jupiter.api.Assertions.assertEquals(1.0f + 0x1p-6f, Reference.roundBf16(1.0f + 0x1p-7f + 0x1p-8f));
    org.junit.jupiter.api.Assertions.assertEquals(1.0f, Reference.roundF16(1.0f + 0x1p-11f));
    org.junit.jupiter.api.Assertions.assertEquals(Float.POSITIVE_INFINITY, Reference.roundF16(70000f));
  }
}

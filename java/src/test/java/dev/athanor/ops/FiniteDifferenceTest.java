package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.upload;
import static org.junit.jupiter.api.Assertions.fail;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every native backward op checked against its own native forward in F32, by central finite
 * differences along random directions: for L(x) = sum(w * f(x)) with random weights w, the
 * directional derivative (L(x + h u) - L(x - h u)) / 2h must match the analytic sum(grad * u).
 * With h = 1e-2 on O(1) inputs, the truncation error is ~1e-4 relative and F32 rounding in the
 * forward adds ~1e-5; the tolerance is 1e-3 of sum |grad * u|.
 *
 * <p>This is independent of the scalar reference (which is itself checked by finite differences in
 * {@link ReferenceTest}): it ties each backward kernel to the forward kernel it differentiates.
 */
class FiniteDifferenceTest {
  private static final double H = 1e-2;
  private static final int DIRECTIONS = 3;

  /** A forward producing the outputs that L weights, as host arrays, from a perturbed input. */
  private interface Forward extends Function<float[], double[]> {}

  /**
   * Checks analytic gradient {@code grad} of L at x0 (L = sum(w * forward(x))) along random directions.
   */
  private static void check(String what, float[] x0, double[] grad, double[] w, Forward forward, Random r) {
    for (int dir = 0; dir < DIRECTIONS; dir++) {
      double[] u = new double[x0.length];
      for (int i = 0; i < u.length; i++) u[i] = r.nextGaussian();
      float[] xp = x0.clone(), xm = x0.clone();
      for (int i = 0; i < u.length; i++) {
        xp[i] = (float) (x0[i] + H * u[i]);
        xm[i] = (float) (x0[i] - H * u[i]);
      }
      // The perturbation actually applied, after rounding the inputs to F32.
      double analytic = 0, magnitude = 0;
      for (int i = 0; i < u.length; i++) {
        double step = ((double) xp[i] - (double) xm[i]) / (2 * H);
        analytic += grad[i] * step;
        magnitude += Math.abs(grad[i] * step);
      }
      double numeric = (dot(w, forward.apply(xp)) - dot(w, forward.apply(xm))) / (2 * H);
      double err = Math.abs(numeric - analytic);
      if (err > 1e-3 * magnitude + 1e-6) {
        fail(what + ": direction " + dir + ": finite difference " + numeric + " vs analytic " + analytic
            + " (abs err " + err + ", allowed " + (1e-3 * magnitude + 1e-6) + ", sum |grad*u| " + magnitude + ")");
      }
    }
  }

  private static double dot(double[] a, double[] b) {
    double s = 0;
    for (int i = 0; i < a.length; i++) s += a[i] * b[i];
    return s;
  }

  private static double[] randomW(Random r, int n) {
    double[] w = new double[n];
    for (int i = 0; i < n; i++) w[i] = r.nextGaussian();
    return w;
  }

  private static float[] toFloat(double[] d) {
    return NormTest.toFloat(d);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void attention(Device dev) {
    assumeDevice(dev);
    Random r = new Random(201);
    int b = 1, hq = 4, hkv = 2, tq = 5, tk = 9, d = dev.isCuda() ? 32 : 8;
    float scale = (float) (1 / Math.sqrt(d));
    for (boolean causal : new boolean[] {false, true}) {
      float[] q = Fixtures.normal(r, b * hq * tq * d, 1);
      float[] k = Fixtures.normal(r, b * hkv * tk * d, 1);
      float[] v = Fixtures.normal(r, b * hkv * tk * d, 1);
      double[] w = randomW(r, q.length);
      long[] qs = {b, hq, tq, d}, ks = {b, hkv, tk, d};
      double[][] grads = new double[3][];
      try (Scope _ = Scope.open()) {
        Tensor qt = upload(q, DType.F32, dev, qs), kt = upload(k, DType.F32, dev, ks), vt = upload(v, DType.F32, dev, ks);
        AttentionResult res = Ops.attention(qt, kt, vt, causal, scale);
        AttentionGrads g = Ops.attentionBackward(qt, kt, vt, res.out(), res.lse(), upload(toFloat(w), DType.F32, dev, qs),
            causal, scale);
        grads[0] = read(g.dq());
        grads[1] = read(g.dk());
        grads[2] = read(g.dv());
      }
      String what = "attention " + dev + " causal=" + causal;
      check(what + " dq", q, grads[0], w, x -> attentionOut(dev, x, k, v, qs, ks, causal, scale), r);
      check(what + " dk", k, grads[1], w, x -> attentionOut(dev, q, x, v, qs, ks, causal, scale), r);
      check(what + " dv", v, grads[2], w, x -> attentionOut(dev, q, k, x, qs, ks, causal, scale), r);
    }
  }

  private static double[] attentionOut(Device dev, float[] q, float[] k, float[] v, long[] qs, long[] ks,
      boolean causal, float scale) {
    try (Scope _ = Scope.open()) {
      return read(Ops.attention(upload(q, DType.F32, dev, qs), upload(k, DType.F32, dev, ks),
          upload(v, DType.F32, dev, ks), causal, scale).out());
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void norms(Device dev) {
    assumeDevice(dev);
    Random r = new Random(202);
    int rows = 6, cols = 37;
    float eps = 1e-5f;
    float[] x = Fixtures.normal(r, rows * cols, 1.5);
    float[] wt = Fixtures.uniform(r, cols, 0.5, 1.5);
    float[] bs = Fixtures.uniform(r, cols, -1, 1);
    double[] w = randomW(r, rows * cols);
    double[] dx, dw, db, rdx, rdw;
    try (Scope _ = Scope.open()) {
      Tensor xt = upload(x, DType.F32, dev, rows, cols), wtt = upload(wt, DType.F32, dev, cols);
      Tensor bt = upload(bs, DType.F32, dev, cols), dout = upload(toFloat(w), DType.F32, dev, rows, cols);
      NormResult ln = Ops.layerNorm(xt, wtt, bt, eps);
      Tensor dwt = Tensor.zeros(DType.F32, dev, cols), dbt = Tensor.zeros(DType.F32, dev, cols);
      dx = read(Ops.layerNormBackward(dout, xt, wtt, ln.mean(), ln.rstd(), dwt, dbt));
      dw = read(dwt);
      db = read(dbt);
      NormResult rn = Ops.rmsNorm(xt, wtt, eps);
      Tensor rdwt = Tensor.zeros(DType.F32, dev, cols);
      rdx = read(Ops.rmsNormBackward(dout, xt, wtt, rn.rstd(), rdwt));
      rdw = read(rdwt);
    }
    check("layerNorm dx " + dev, x, dx, w, xx -> layerNormOut(dev, xx, wt, bs, rows, cols, eps), r);
    check("layerNorm dweight " + dev, wt, dw, w, ww -> layerNormOut(dev, x, ww, bs, rows, cols, eps), r);
    check("layerNorm dbias " + dev, bs, db, w, bb -> layerNormOut(dev, x, wt, bb, rows, cols, eps), r);
    check("rmsNorm dx " + dev, x, rdx, w, xx -> rmsNormOut(dev, xx, wt, rows, cols, eps), r);
    check("rmsNorm dweight " + dev, wt, rdw, w, ww -> rmsNormOut(dev, x, ww, rows, cols, eps), r);
  }

  private static double[] layerNormOut(Device dev, float[] x, float[] w, float[] b, int rows, int cols, float eps) {
    try (Scope _ = Scope.open()) {
      return read(Ops.layerNorm(upload(x, DType.F32, dev, rows, cols), upload(w, DType.F32, dev, cols),
          upload(b, DType.F32, dev, cols), eps).out());
    }
  }

  private static double[] rmsNormOut(Device dev, float[] x, float[] w, int rows, int cols, float eps) {
    try (Scope _ = Scope.open()) {
      return read(Ops.rmsNorm(upload(x, DType.F32, dev, rows, cols), upload(w, DType.F32, dev, cols), eps).out());
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void activations(Device dev) {
    assumeDevice(dev);
    Random r = new Random(203);
    int n = 200;
    float[] x = Fixtures.uniform(r, n, -4, 4), y = Fixtures.uniform(r, n, -2, 2);
    double[] w = randomW(r, n);
    for (int act = 0; act < 3; act++) {
      int a = act;
      double[] dx, dy = null;
      try (Scope _ = Scope.open()) {
        Tensor xt = upload(x, DType.F32, dev, n), yt = upload(y, DType.F32, dev, n);
        Tensor dout = upload(toFloat(w), DType.F32, dev, n);
        if (a == 2) {
          GluGrads g = Ops.swigluBackward(xt, yt, dout);
          dx = read(g.dgate());
          dy = read(g.dup());
        } else {
          dx = read(a == 0 ? Ops.geluBackward(xt, dout) : Ops.siluBackward(xt, dout));
        }
      }
      String what = ActivationTest.NAMES[a] + " " + dev;
      check(what + " dx", x, dx, w, xx -> actOut(dev, a, xx, y), r);
      if (a == 2) check(what + " dy", y, dy, w, yy -> actOut(dev, a, x, yy), r);
    }
  }

  private static double[] actOut(Device dev, int act, float[] x, float[] y) {
    try (Scope _ = Scope.open()) {
      Tensor xt = upload(x, DType.F32, dev, x.length);
      return read(switch (act) {
        case 0 -> Ops.gelu(xt);
        case 1 -> Ops.silu(xt);
        default -> Ops.swiglu(xt, upload(y, DType.F32, dev, y.length));
      });
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void crossEntropy(Device dev) {
    assumeDevice(dev);
    Random r = new Random(204);
    int rows = 7, vocab = 33;
    float[] logits = Fixtures.normal(r, rows * vocab, 2);
    int[] t = Fixtures.randomIds(r, rows, vocab);
    t[3] = -1;
    double[] w = randomW(r, rows);
    double[] d;
    try (Scope _ = Scope.open()) {
      Tensor lt = upload(logits, DType.F32, dev, rows, vocab), tt = Fixtures.uploadInts(t, dev, rows);
      CrossEntropyResult res = Ops.crossEntropy(lt, tt);
      d = read(Ops.crossEntropyBackward(lt, tt, res.lse(), upload(toFloat(w), DType.F32, dev, rows)));
    }
    check("crossEntropy dlogits " + dev, logits, d, w, x -> {
      try (Scope _ = Scope.open()) {
        return read(Ops.crossEntropy(upload(x, DType.F32, dev, rows, vocab), Fixtures.uploadInts(t, dev, rows))
            .losses());
      }
    }, r);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void embeddingAndRope(Device dev) {
    assumeDevice(dev);
    Random r = new Random(205);
    int vocab = 6, dim = 5;
    int[] ids = {5, 0, 5, 2, 2, 2};
    float[] table = Fixtures.normal(r, vocab * dim, 1);
    double[] w = randomW(r, ids.length * dim);
    double[] dtable;
    try (Scope _ = Scope.open()) {
      Tensor idt = Fixtures.uploadInts(ids, dev, ids.length);
      Tensor dt = Tensor.zeros(DType.F32, dev, vocab, dim);
      Ops.embeddingBackward(idt, upload(toFloat(w), DType.F32, dev, ids.length, dim), dt);
      dtable = read(dt);
    }
    check("embedding dtable " + dev, table, dtable, w, x -> {
      try (Scope _ = Scope.open()) {
        return read(Ops.embedding(Fixtures.uploadInts(ids, dev, ids.length), upload(x, DType.F32, dev, vocab, dim)));
      }
    }, r);

    long[] shape = {2, 6, 3, 8};
    float[] x = Fixtures.normal(r, 2 * 6 * 3 * 8, 1);
    double[] wr = randomW(r, x.length);
    double[] dx;
    try (Scope _ = Scope.open()) {
      dx = read(Ops.ropeBackward(upload(toFloat(wr), DType.F32, dev, shape), 4, 10000f));
    }
    check("rope dx " + dev, x, dx, wr, xx -> {
      try (Scope _ = Scope.open()) {
        return read(Ops.rope(upload(xx, DType.F32, dev, shape), 4, 10000f));
      }
    }, r);
  }
}

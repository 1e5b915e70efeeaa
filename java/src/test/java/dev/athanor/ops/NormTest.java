package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.upload;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * LayerNorm and RMSNorm forward and backward against the scalar reference on awkward (rows, cols),
 * including the saved statistics and the accumulation of dweight and dbias into existing values.
 */
class NormTest {
  /** {rows, cols}. */
  static final int[][] SHAPES = {{1, 1}, {7, 33}, {33, 127}, {3, 1031}, {127, 7}, {2, 4096}};

  private static double[] plus(double[] a, double[] b) {
    double[] r = a.clone();
    for (int i = 0; i < r.length; i++) r[i] += b[i];
    return r;
  }

  /**
   * Tolerance for dx: the dtype's compound tolerance relative to dx, plus an F32 floor relative to
   * the terms that cancel inside dx (rstd * dout * weight), which leave O(eps) residue where dx is
   * nearly 0 (e.g. a single column).
   */
  private static Check.Tol dxTol(DType dt, double[] dxRef, double[] dout, double[] w, double[] rstd, int cols) {
    double s = 0;
    for (int i = 0; i < dout.length; i++) {
      double t = dout[i] * w[i % cols] * rstd[i / cols];
      s += t * t;
    }
    double terms = Math.sqrt(s / Math.max(1, dout.length));
    return Fixtures.compound(dt, Fixtures.rms(dxRef)).plusAtol(64 * 0x1p-23 * terms);
  }

  /** F32 tolerance for a parameter gradient summed over {@code rows} rows. */
  private static Check.Tol paramGradTol(int rows, double[] expect) {
    return Fixtures.tol(DType.F32, 64 * Math.sqrt(rows), Fixtures.rms(expect));
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void layerNorm(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(31);
      for (int[] s : SHAPES) {
        for (boolean withBias : new boolean[] {true, false}) {
          int rows = s[0], cols = s[1];
          float eps = 1e-5f;
          String what = "layerNorm " + device + "/" + isa + " " + dt + " rows=" + rows + " cols=" + cols
              + (withBias ? "" : " no bias");
          try (Scope _ = Scope.open()) {
            float[] xs = Fixtures.normal(r, rows * cols, 2);
            for (int i = 0; i < xs.length; i++) xs[i] += 0.5f;
            Tensor x = upload(xs, dt, device, rows, cols);
            Tensor w = upload(Fixtures.uniform(r, cols, 0.5, 1.5), dt, device, cols);
            Tensor bias = withBias ? upload(Fixtures.uniform(r, cols, -1, 1), dt, device, cols) : null;
            double[] xv = read(x), wv = read(w);
            Reference.NormOut ref = Reference.layerNorm(rows, cols, eps, xv, wv, withBias ? read(bias) : null);
            NormResult res = Ops.layerNorm(x, w, bias, eps);
            Check.close(what + " out", ref.out(), read(res.out()), Fixtures.compound(dt, Fixtures.rms(ref.out())),
                rows, cols);
            Check.close(what + " mean", ref.mean(), read(res.mean()), Fixtures.tol(DType.F32, 64, Fixtures.rms(xv)));
            Check.close(what + " rstd", ref.rstd(), read(res.rstd()), Fixtures.tol(DType.F32, 64, 0));

            Tensor dout = upload(Fixtures.normal(r, rows * cols, 1), dt, device, rows, cols);
            double[] dw0 = Check.toDouble(Fixtures.uniform(r, cols, -1, 1));
            double[] db0 = Check.toDouble(Fixtures.uniform(r, cols, -1, 1));
            Tensor dw = upload(toFloat(dw0), DType.F32, device, cols);
            Tensor db = withBias ? upload(toFloat(db0), DType.F32, device, cols) : null;
            double[] dwRef = new double[cols], dbRef = new double[cols];
            double[] dv = read(dout);
            double[] dxRef = Reference.layerNormBackward(rows, cols, eps, xv, wv, dv, dwRef, dbRef);
            Tensor dx = Ops.layerNormBackward(dout, x, w, res.mean(), res.rstd(), dw, db);
            Check.close(what + " dx", dxRef, read(dx), dxTol(dt, dxRef, dv, wv, ref.rstd(), cols), rows, cols);
            Check.close(what + " dweight (accumulated)", plus(dw0, dwRef), read(dw), paramGradTol(rows, dwRef));
            if (withBias) {
              Check.close(what + " dbias (accumulated)", plus(db0, dbRef), read(db), paramGradTol(rows, dbRef));
            }
          }
        }
      }
    });
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void rmsNorm(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(32);
      for (int[] s : SHAPES) {
        int rows = s[0], cols = s[1];
        float eps = 1e-6f;
        String what = "rmsNorm " + device + "/" + isa + " " + dt + " rows=" + rows + " cols=" + cols;
        try (Scope _ = Scope.open()) {
          Tensor x = upload(Fixtures.normal(r, rows * cols, 2), dt, device, rows, cols);
          Tensor w = upload(Fixtures.uniform(r, cols, 0.5, 1.5), dt, device, cols);
          double[] xv = read(x), wv = read(w);
          Reference.NormOut ref = Reference.rmsNorm(rows, cols, eps, xv, wv);
          NormResult res = Ops.rmsNorm(x, w, eps);
          Check.close(what + " out", ref.out(), read(res.out()), Fixtures.compound(dt, Fixtures.rms(ref.out())),
              rows, cols);
          Check.close(what + " rstd", ref.rstd(), read(res.rstd()), Fixtures.tol(DType.F32, 64, 0));

          Tensor dout = upload(Fixtures.normal(r, rows * cols, 1), dt, device, rows, cols);
          double[] dw0 = Check.toDouble(Fixtures.uniform(r, cols, -1, 1));
          Tensor dw = upload(toFloat(dw0), DType.F32, device, cols);
          double[] dwRef = new double[cols];
          double[] dv = read(dout);
          double[] dxRef = Reference.rmsNormBackward(rows, cols, eps, xv, wv, dv, dwRef);
          Tensor dx = Ops.rmsNormBackward(dout, x, w, res.rstd(), dw);
          Check.close(what + " dx", dxRef, read(dx), dxTol(dt, dxRef, dv, wv, ref.rstd(), cols), rows, cols);
          Check.close(what + " dweight (accumulated)", plus(dw0, dwRef), read(dw), paramGradTol(rows, dwRef));
        }
      }
    });
  }

  /** A 3-D input (B, T, C) normalizes over C, with statistics shaped (B, T). */
  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void leadingDimensionsAreRows(Device device) {
    assumeDevice(device);
    Random r = new Random(33);
    try (Scope _ = Scope.open()) {
      Tensor x = upload(Fixtures.normal(r, 2 * 5 * 9, 1), DType.F32, device, 2, 5, 9);
      Tensor w = upload(Fixtures.uniform(r, 9, 0.5, 1.5), DType.F32, device, 9);
      NormResult res = Ops.rmsNorm(x, w, 1e-6f);
      org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {2, 5}, res.rstd().shape());
      Reference.NormOut ref = Reference.rmsNorm(10, 9, 1e-6, read(x), read(w));
      Check.close("rmsNorm (2, 5, 9) " + device, ref.out(), read(res.out()),
          Fixtures.compound(DType.F32, Fixtures.rms(ref.out())), 2, 5, 9);
    }
  }

  static float[] toFloat(double[] d) {
    float[] f = new float[d.length];
    for (int i = 0; i < d.length; i++) f[i] = (float) d[i];
    return f;
  }
}

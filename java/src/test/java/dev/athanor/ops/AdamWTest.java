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

/** The fused AdamW step against the reference: params, moments, the low-precision copy, several steps. */
class AdamWTest {
  static final int[] SIZES = {1, 7, 33, 127, 4099};

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void stepsMatchReference(Device device) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(101);
      for (int n : SIZES) {
        for (DType lowp : new DType[] {null, DType.BF16, DType.F16}) {
          String what = "adamw " + device + "/" + isa + " n=" + n + (lowp == null ? "" : " with " + lowp + " copy");
          try (Scope _ = Scope.open()) {
            double[] p = Check.toDouble(Fixtures.normal(r, n, 1));
            double[] m = Check.toDouble(Fixtures.normal(r, n, 0.1));
            double[] v = Check.toDouble(Fixtures.uniform(r, n, 0, 0.01));
            Tensor pt = upload(NormTest.toFloat(p), DType.F32, device, n);
            Tensor mt = upload(NormTest.toFloat(m), DType.F32, device, n);
            Tensor vt = upload(NormTest.toFloat(v), DType.F32, device, n);
            Tensor low = lowp == null ? null : Tensor.zeros(lowp, device, n);
            float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
            for (long step = 1; step <= 3; step++) {
              double[] g = Check.toDouble(Fixtures.normal(r, n, 1));
              Tensor gt = upload(NormTest.toFloat(g), DType.F32, device, n);
              // The reference starts each step from the F32 state the kernel holds.
              p = read(pt);
              m = read(mt);
              v = read(vt);
              Reference.adamw(p, g, m, v, lr, b1, b2, eps, wd, gs, step);
              Ops.adamw(pt, gt, mt, vt, low, lr, b1, b2, eps, wd, gs, step);
              String s = what + " step " + step;
              Check.close(s + " m", m, read(mt), Fixtures.tol(DType.F32, 8, Fixtures.rms(m)));
              Check.close(s + " v", v, read(vt), Fixtures.tol(DType.F32, 8, Fixtures.rms(v)));
              // The update's size is ~lr; its F32 error is relative to that, not to the params.
              Check.close(s + " params", p, read(pt), new Check.Tol(64 * 0x1p-23 * (Fixtures.rms(p) + lr * 10), 0));
              if (low != null) {
                double[] pl = read(pt);
                double[] expect = new double[n];
                for (int i = 0; i < n; i++) expect[i] = Reference.round(pl[i], lowp.code());
                Check.close(s + " " + lowp + " copy", expect, read(low), new Check.Tol(0, 0));
              }
            }
          }
        }
      }
    });
  }
}

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
 * add, mul, scale, axpy, fill and convert against the reference. Sums and products of values exact
 * in F32/BF16/F16 are exact in F32, so add and mul must equal the correctly rounded result bit for
 * bit; scale and axpy may round twice (1 ulp); convert must round to nearest even exactly,
 * including NaN, infinities, signed zero, subnormals and overflow.
 */
class ElementwiseTest {
  static final int[] SIZES = {1, 7, 33, 127, 1000, 4099};
  private static final Check.Tol EXACT = new Check.Tol(0, 0);

  private static double[] rounded(double[] x, DType dt) {
    double[] r = new double[x.length];
    for (int i = 0; i < x.length; i++) r[i] = Reference.round(x[i], dt.code());
    return r;
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void arithmeticMatchesReference(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(81);
      for (int n : SIZES) {
        String what = device + "/" + isa + " " + dt + " n=" + n;
        try (Scope _ = Scope.open()) {
          Tensor a = upload(Fixtures.uniform(r, n, -2, 2), dt, device, n);
          Tensor b = upload(Fixtures.uniform(r, n, -2, 2), dt, device, n);
          double[] av = read(a), bv = read(b);
          Check.close("add " + what, rounded(Reference.add(av, bv), dt), read(Ops.add(a, b)), EXACT, n);
          Check.close("mul " + what, rounded(Reference.mul(av, bv), dt), read(Ops.mul(a, b)), EXACT, n);
          float alpha = -0.7f;
          Check.Tol oneUlp = Fixtures.tol(dt, 1, 0);
          Check.close("scale " + what, Reference.scale(alpha, av), read(Ops.scale(a, alpha)), oneUlp, n);
          Tensor acc = upload(NormTest.toFloat(bv), dt, device, n);
          Ops.axpy(acc, alpha, a);
          // axpy cancels: the tolerance is relative to the operands, not the result.
          Check.close("axpy " + what, Reference.axpy(bv, alpha, av), read(acc), Fixtures.tol(dt, 1, 2), n);
          // out aliasing an input
          Ops.add(a, b, a);
          Check.close("add in place " + what, rounded(Reference.add(av, bv), dt), read(a), EXACT, n);
          Ops.mul(b, b, b);
          Check.close("mul in place " + what, rounded(Reference.mul(bv, bv), dt), read(b), EXACT, n);
        }
      }
    });
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void fillRoundsTheValue(Device device, DType dt) {
    assumeDevice(device);
    for (int n : SIZES) {
      try (Tensor t = Tensor.empty(dt, device, n)) {
        float v = 1.2345678f;
        Ops.fill(t, v);
        double[] expect = new double[n];
        java.util.Arrays.fill(expect, Reference.round(v, dt.code()));
        Check.close("fill " + device + " " + dt + " n=" + n, expect, read(t), EXACT, n);
      }
    }
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void convertRoundsToNearestEven(Device device, DType from) {
    assumeDevice(device);
    Random r = new Random(82);
    float[] special = {0f, -0f, 1f, -1f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 65504f, 70000f,
        1e-6f, 6e-8f, 1e-40f, 3.0e38f, 1f + 0x1p-8f, 1f + 0x1p-11f, 1f + 0x1p-7f + 0x1p-8f, 1f + 0x1p-10f + 0x1p-11f};
    for (int n : new int[] {special.length, 127, 4099}) {
      float[] data = n == special.length ? special : Fixtures.normal(r, n, 100);
      try (Scope _ = Scope.open()) {
        Tensor a = upload(data, from, device, n);
        double[] av = read(a);
        for (DType to : Fixtures.FLOATS) {
          Tensor out = Ops.convert(a, to);
          double[] got = read(out);
          double[] expect = rounded(av, to);
          Check.close("convert " + device + " " + from + "->" + to + " n=" + n, expect, got, EXACT, n);
          for (int i = 0; i < n; i++) {  // signed zeros keep their sign
            if (expect[i] == 0 && Double.doubleToRawLongBits(expect[i]) != Double.doubleToRawLongBits(got[i])) {
              org.junit.jupiter.api.Assertions.fail("convert " + from + "->" + to + " element " + i + ": expected "
                  + expect[i] + ", got " + got[i]);
            }
          }
        }
      }
    }
  }
}

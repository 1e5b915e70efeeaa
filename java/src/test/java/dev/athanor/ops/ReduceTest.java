package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.upload;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * sum, sumSquares, sumRows and globalNorm against the reference. They accumulate in F32 (inputs of
 * every dtype are exact in F32), so the tolerances are F32 summation error bounds: proportional to
 * sqrt(n) for the sums of squares and to n times the element magnitude for signed sums.
 */
class ReduceTest {
  static final int[] SIZES = {1, 7, 33, 127, 4099, 100003};
  static final double EPS = 0x1p-23;

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void sumAndSumSquares(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(91);
      for (int n : SIZES) {
        String what = device + "/" + isa + " " + dt + " n=" + n;
        try (Scope _ = Scope.open()) {
          Tensor x = upload(Fixtures.normal(r, n, 1), dt, device, n);
          double[] xv = read(x);
          double rms = Fixtures.rms(xv);
          Tensor s = Ops.sum(x);
          Check.close("sum " + what, Reference.sum(xv), read(s)[0], new Check.Tol(4 * EPS * n * rms + 1e-30, 0));
          Tensor sq = Ops.sumSquares(x);
          Check.close("sumSquares " + what, Reference.sumSquares(xv), read(sq)[0], new Check.Tol(0, 4 * Math.sqrt(n) * EPS + 4 * EPS));
        }
      }
    });
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void sumRowsAccumulates(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(92);
      int[][] shapes = {{1, 1}, {7, 33}, {127, 7}, {1000, 129}, {3, 4099}};
      for (int[] s : shapes) {
        int rows = s[0], cols = s[1];
        try (Scope _ = Scope.open()) {
          Tensor x = upload(Fixtures.normal(r, rows * cols, 1), dt, device, rows, cols);
          double[] init = Check.toDouble(Fixtures.uniform(r, cols, -1, 1));
          Tensor out = upload(NormTest.toFloat(init), DType.F32, device, cols);
          double[] expect = init.clone();
          Reference.sumRows(rows, cols, read(x), expect);
          Ops.sumRows(x, out);
          Check.close("sumRows " + device + "/" + isa + " " + dt + " rows=" + rows + " cols=" + cols, expect, read(out),
              new Check.Tol(4 * EPS * (rows + 1), 0), cols);
        }
      }
    });
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void globalNormOfMixedTensors(Device device) {
    assumeDevice(device);
    Random r = new Random(93);
    try (Scope _ = Scope.open()) {
      Tensor a = upload(Fixtures.normal(r, 1000, 1), DType.F32, device, 10, 100);
      Tensor b = upload(Fixtures.normal(r, 7, 3), DType.BF16, device, 7);
      Tensor c = upload(Fixtures.normal(r, 4099, 0.1), DType.F16, device, 4099);
      Tensor empty = Tensor.empty(DType.F32, device, 0);
      double expect = Math.sqrt(Reference.sumSquares(read(a)) + Reference.sumSquares(read(b))
          + Reference.sumSquares(read(c)));
      float got = Ops.globalNorm(List.of(a, b, empty, c));
      Check.close("globalNorm " + device, expect, got, new Check.Tol(0, 1e-5));
      Check.close("globalNorm of nothing " + device, 0, Ops.globalNorm(List.of()), new Check.Tol(0, 0));
    }
  }
}

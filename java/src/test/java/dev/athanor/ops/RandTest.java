package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Philox random fills: element i of a fill equals the reference Philox-4x32-10 stream at counter
 * i + offset (so offsets continue a stream and the values do not depend on the backend), the
 * values lie in range, and the normal fill has the requested mean and standard deviation.
 */
class RandTest {
  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void uniformMatchesPhiloxReference(Device device, DType dt) {
    assumeDevice(device);
    for (int n : new int[] {1, 7, 33, 4099}) {
      for (long offset : new long[] {0, 5, 1L << 33}) {
        try (Tensor t = Tensor.empty(dt, device, n)) {
          float lo = -2f, hi = 3f;
          Ops.randUniform(t, 42, offset, lo, hi);
          double[] got = read(t);
          double[] expect = new double[n];
          for (int i = 0; i < n; i++) expect[i] = Reference.round(Reference.randUniform(i, 42, offset, lo, hi), dt.code());
          // The affine map lo + (hi - lo) u is evaluated in F32, then rounded to the dtype.
          Check.close("randUniform " + device + " " + dt + " n=" + n + " offset=" + offset, expect, got,
              Fixtures.tol(dt, 1, 4), n);
          for (int i = 0; i < n; i++) {
            assertTrue(got[i] >= lo && got[i] <= hi, "value " + got[i] + " at " + i + " outside [" + lo + ", " + hi + "]");
          }
        }
      }
    }
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void normalMatchesPhiloxReference(Device device, DType dt) {
    assumeDevice(device);
    int n = 4099;
    try (Tensor t = Tensor.empty(dt, device, n)) {
      Ops.randNormal(t, 7, 3, 0.5f, 2f);
      double[] got = read(t);
      double[] expect = new double[n];
      for (int i = 0; i < n; i++) expect[i] = Reference.round(Reference.randNormal(i, 7, 3, 0.5, 2), dt.code());
      // log/sqrt/cos in F32: a few ulps of F32 relative to the value's scale (2), then the dtype rounding.
      Check.close("randNormal " + device + " " + dt, expect, got,
          dt == DType.F32 ? new Check.Tol(2e-5, 1e-5) : Fixtures.tol(dt, 1, 2), n);
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void normalMomentsAndOffsetsContinueTheStream(Device device) {
    assumeDevice(device);
    int n = 200_000;
    try (Scope _ = Scope.open()) {
      Tensor t = Tensor.empty(DType.F32, device, n);
      Ops.randNormal(t, 1234, 0, -1f, 3f);
      double[] x = read(t);
      double mean = Arrays.stream(x).average().orElseThrow();
      double var = Arrays.stream(x).map(v -> (v - mean) * (v - mean)).sum() / (n - 1);
      // Standard errors: 3/sqrt(n) = 0.0067 for the mean, ~0.0047 for the std; allow 5 of them.
      assertEquals(-1, mean, 0.034, "mean of N(-1, 3) fill");
      assertEquals(3, Math.sqrt(var), 0.024, "std of N(-1, 3) fill");
      // A fill at offset 1000 is the continuation of the stream.
      Tensor tail = Tensor.empty(DType.F32, device, 50);
      Ops.randNormal(tail, 1234, 1000, -1f, 3f);
      Check.close("offset continues the stream " + device, Arrays.copyOfRange(x, 1000, 1050), read(tail),
          new Check.Tol(0, 0));
      // Different seeds differ.
      Tensor other = Tensor.empty(DType.F32, device, 50);
      Ops.randNormal(other, 1235, 0, -1f, 3f);
      assertTrue(!Arrays.equals(Arrays.copyOf(x, 50), read(other)), "seeds 1234 and 1235 gave the same values");
    }
  }

  /** The stream does not depend on the backend: uniform F32 fills are bit-identical on CPU and CUDA. */
  @Test
  void cpuAndCudaGiveTheSameUniformStream() {
    Assumptions.assumeTrue(Cuda.isAvailable(), "CUDA unavailable: " + Cuda.unavailableReason());
    try (Scope _ = Scope.open()) {
      Tensor c = Tensor.empty(DType.F32, Device.CPU, 10007);
      Tensor g = Tensor.empty(DType.F32, Device.cuda(0), 10007);
      Ops.randUniform(c, 99, 17, -1f, 1f);
      Ops.randUniform(g, 99, 17, -1f, 1f);
      Check.identical("uniform fill cpu vs cuda", c.toFloatArray(), g.toFloatArray());
    }
  }
}

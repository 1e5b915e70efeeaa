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
 * GELU (tanh), SiLU and SwiGLU forward and backward against the scalar reference. Elementwise
 * transcendental ops: 16 F32 ulps, 2 BF16/F16 ulps (the output rounding plus a little).
 */
class ActivationTest {
  static Check.Tol tol(DType dt, double[] expect) {
    return Fixtures.tol(dt, dt == DType.F32 ? 16 : 2, Fixtures.rms(expect));
  }

  static final int[] SIZES = {1, 7, 33, 127, 1000, 4099};
  static final String[] NAMES = {"gelu", "silu", "swiglu"};

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void forwardAndBackwardMatchReference(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(41);
      for (int act = 0; act < 3; act++) {
        for (int n : SIZES) {
          String what = NAMES[act] + " " + device + "/" + isa + " " + dt + " n=" + n;
          try (Scope _ = Scope.open()) {
            // Shape (n) for odd sizes, a 2-D shape when n factors, to show shape does not matter.
            long[] shape = n == 1000 ? new long[] {10, 100} : new long[] {n};
            Tensor x = upload(Fixtures.uniform(r, n, -6, 6), dt, device, shape);
            Tensor y = upload(Fixtures.uniform(r, n, -2, 2), dt, device, shape);
            Tensor dout = upload(Fixtures.normal(r, n, 1), dt, device, shape);
            double[] xv = read(x), yv = read(y), dv = read(dout);
            double[] ref = Reference.activation(act, xv, yv);
            double[][] grads = Reference.activationBackward(act, xv, yv, dv);
            Tensor out = switch (act) {
              case 0 -> Ops.gelu(x);
              case 1 -> Ops.silu(x);
              default -> Ops.swiglu(x, y);
            };
            Check.close(what + " out", ref, read(out), tol(dt, ref), shape);
            if (act == 2) {
              GluGrads g = Ops.swigluBackward(x, y, dout);
              Check.close(what + " dgate", grads[0], read(g.dgate()), tol(dt, grads[0]),
                  shape);
              Check.close(what + " dup", grads[1], read(g.dup()), tol(dt, grads[1]), shape);
            } else {
              Tensor dx = act == 0 ? Ops.geluBackward(x, dout) : Ops.siluBackward(x, dout);
              Check.close(what + " dx", grads[0], read(dx), tol(dt, grads[0]), shape);
            }
          }
        }
      }
    });
  }

  /** The into forms write caller-provided outputs. */
  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void intoForms(Device device) {
    assumeDevice(device);
    Random r = new Random(42);
    int n = 65;
    try (Scope _ = Scope.open()) {
      Tensor x = upload(Fixtures.uniform(r, n, -3, 3), DType.F32, device, n);
      Tensor y = upload(Fixtures.uniform(r, n, -3, 3), DType.F32, device, n);
      Tensor out = Tensor.zeros(DType.F32, device, n);
      Tensor dx = Tensor.zeros(DType.F32, device, n);
      Tensor dy = Tensor.zeros(DType.F32, device, n);
      double[] xv = read(x), yv = read(y);
      Ops.silu(x, out);
      Check.close("silu into " + device, Reference.activation(1, xv, null), read(out), Fixtures.compound(DType.F32, 1));
      Ops.gelu(x, out);
      Check.close("gelu into " + device, Reference.activation(0, xv, null), read(out), Fixtures.compound(DType.F32, 1));
      Ops.swiglu(x, y, out);
      Check.close("swiglu into " + device, Reference.activation(2, xv, yv), read(out), Fixtures.compound(DType.F32, 1));
      Ops.swigluBackward(x, y, y, dx, dy);
      double[][] g = Reference.activationBackward(2, xv, yv, yv);
      Check.close("swiglu backward into dgate " + device, g[0], read(dx), Fixtures.compound(DType.F32, 1));
      Check.close("swiglu backward into dup " + device, g[1], read(dy), Fixtures.compound(DType.F32, 1));
    }
  }
}

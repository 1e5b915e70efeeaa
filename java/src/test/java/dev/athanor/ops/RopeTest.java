package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.readLogical;
import static dev.athanor.ops.Fixtures.upload;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Rotary position embedding against the scalar reference: contiguous (B, T, H, D), a position
 * offset, the inverse (backward) rotation, in place, and strided views (q as a slice of a fused
 * QKV projection).
 */
class RopeTest {
  /** {batch, seq, heads, headDim}. */
  static final int[][] SHAPES = {{1, 1, 1, 2}, {2, 7, 3, 8}, {1, 33, 2, 64}, {1, 5, 4, 128}, {2, 3, 1, 34}};

  /** Angles grow with the position; F32 sin/cos of large arguments lose absolute accuracy. */
  private static Check.Tol tol(DType dt, long maxPos, double[] expect) {
    double f32 = 64 + maxPos;
    return Fixtures.tol(dt, dt == DType.F32 ? f32 : 2, Fixtures.rms(expect));
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void forwardAndInverseMatchReference(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(71);
      for (int[] s : SHAPES) {
        for (long pos0 : new long[] {0, 17}) {
          int b = s[0], t = s[1], h = s[2], d = s[3];
          String what = "rope " + device + "/" + isa + " " + dt + " (" + b + ", " + t + ", " + h + ", " + d + ") pos0="
              + pos0;
          try (Scope _ = Scope.open()) {
            Tensor x = upload(Fixtures.normal(r, b * t * h * d, 1), dt, device, b, t, h, d);
            double[] xv = read(x);
            double[] ref = Reference.rope(b, t, h, d, false, pos0, 10000, xv);
            Tensor out = Ops.rope(x, pos0, 10000f);
            Check.close(what, ref, read(out), tol(dt, pos0 + t, ref), b, t, h, d);
            double[] inv = Reference.rope(b, t, h, d, true, pos0, 10000, xv);
            Tensor dx = Ops.ropeBackward(x, pos0, 10000f);
            Check.close(what + " inverse", inv, read(dx), tol(dt, pos0 + t, inv), b, t, h, d);
            Ops.rope(x, x, pos0, 10000f, false);  // in place
            Check.close(what + " in place", ref, read(x), tol(dt, pos0 + t, ref), b, t, h, d);
          }
        }
      }
    });
  }

  /** q as a strided view: the first H heads of a fused (B, T, 3H, D) QKV tensor; the rest is untouched. */
  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void stridedView(Device device, DType dt) {
    assumeDevice(device);
    Random r = new Random(72);
    int b = 2, t = 5, h = 3, d = 16;
    try (Scope _ = Scope.open()) {
      Tensor qkv = upload(Fixtures.normal(r, b * t * 3 * h * d, 1), dt, device, b, t, 3 * h, d);
      double[] before = read(qkv);
      Tensor q = qkv.slice(2, 0, h);
      double[] ref = Reference.rope(b, t, h, d, false, 3, 500, readLogical(q));
      Ops.rope(q, q, 3, 500f, false);
      Check.close("rope strided " + device + " " + dt, ref, readLogical(q), tol(dt, 3 + t, ref), b, t, h, d);
      // k and v heads keep their values.
      double[] after = read(qkv);
      for (int i = 0; i < before.length; i++) {
        long head = (i / d) % (3 * h);
        if (head >= h && before[i] != after[i]) {
          org.junit.jupiter.api.Assertions.fail("rope on q changed element " + i + " outside q: " + before[i] + " -> "
              + after[i]);
        }
      }
    }
  }
}

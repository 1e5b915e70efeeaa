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
 * Fused softmax + cross-entropy forward and backward against the scalar reference, with ignored
 * (negative) targets, awkward vocabulary sizes, and logits whose row stride exceeds the vocabulary.
 */
class CrossEntropyTest {
  static final int[][] SHAPES = {{1, 1}, {7, 7}, {33, 127}, {5, 1000}, {3, 5003}, {127, 33}};

  private static void check(Device device, DType dt, int rows, int vocab, int pad, Random r, String isa) {
    String what = "crossEntropy " + device + "/" + isa + " " + dt + " rows=" + rows + " vocab=" + vocab
        + (pad > 0 ? " row stride " + (vocab + pad) : "");
    try (Scope _ = Scope.open()) {
      int ld = vocab + pad;
      Tensor wide = upload(Fixtures.normal(r, rows * ld, 3), dt, device, rows, ld);
      Tensor logits = pad > 0 ? wide.slice(1, 0, vocab) : wide;
      int[] t = Fixtures.randomIds(r, rows, vocab);
      for (int i = 0; i < rows; i++) if (r.nextInt(5) == 0) t[i] = -1 - r.nextInt(3);  // ignored rows
      Tensor targets = Fixtures.uploadInts(t, device, rows);
      double[] lv = readLogical(logits);
      Reference.XentOut ref = Reference.crossEntropy(rows, vocab, lv, t);
      CrossEntropyResult res = Ops.crossEntropy(logits, targets);
      double lseScale = Math.max(1, Fixtures.maxAbs(ref.lse()));
      Check.Tol f32 = Fixtures.tol(DType.F32, 64, lseScale);
      Check.close(what + " losses", ref.losses(), read(res.losses()), f32, rows);
      Check.close(what + " lse", ref.lse(), read(res.lse()), f32, rows);

      double[] dl = Check.toDouble(Fixtures.normal(r, rows, 1));
      Tensor dlosses = upload(NormTest.toFloat(dl), DType.F32, device, rows);
      double[] dref = Reference.crossEntropyBackward(rows, vocab, lv, t, dl);
      Tensor dlogits;
      if (pad > 0) {
        Tensor dwide = Tensor.zeros(dt, device, rows, ld);
        dlogits = dwide.slice(1, 0, vocab);
        Ops.crossEntropyBackward(logits, targets, res.lse(), dlosses, dlogits);
      } else {
        dlogits = Ops.crossEntropyBackward(logits, targets, res.lse(), dlosses);
      }
      Check.close(what + " dlogits", dref, readLogical(dlogits), Fixtures.compound(dt, Fixtures.rms(dref)), rows,
          vocab);
    }
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void forwardAndBackwardMatchReference(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(51);
      for (int[] s : SHAPES) check(device, dt, s[0], s[1], 0, r, isa);
      check(device, dt, 9, 37, 3, r, isa);
      check(device, dt, 4, 1000, 24, r, isa);
    });
  }
}

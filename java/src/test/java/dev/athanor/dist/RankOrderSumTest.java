package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The deterministic summation order without MPI: rank order, left to right, one rounding for BF16/F16. */
class RankOrderSumTest {
  /** Per rank, values whose float sum depends on the order: big ones cancel, small ones survive only in some orders. */
  static final float[][] PARTS = {
      {1e8f, 1f, 3.5f, -7e-3f},
      {1f, 1e8f, -1e-3f, 2.5e7f},
      {-1e8f, -1e8f, 1e-3f, -2.5e7f},
      {1f, 1f, 1e7f, 1f}};

  private static float[] column(int i) {
    float[] c = new float[PARTS.length];
    for (int r = 0; r < PARTS.length; r++) c[r] = PARTS[r][i];
    return c;
  }

  private static float leftFold(float[] xs) {
    float acc = xs[0];
    for (int i = 1; i < xs.length; i++) acc += xs[i];
    return acc;
  }

  private static List<Tensor> parts(DType dt) {
    List<Tensor> l = new ArrayList<>();
    for (float[] p : PARTS) l.add(Tensor.fromFloats(p, dt, Device.CPU, p.length));
    return l;
  }

  @Test
  void f32IsTheLeftFoldInRankOrder() {
    try (Scope s = Scope.open()) {
      Tensor out = Tensor.zeros(DType.F32, Device.CPU, 4);
      RankOrderSum.sum(parts(DType.F32), out);
      float[] got = out.toFloatArray();
      boolean orderMatters = false;
      for (int i = 0; i < 4; i++) {
        float[] c = column(i);
        assertEquals(Float.floatToRawIntBits(leftFold(c)), Float.floatToRawIntBits(got[i]), "element " + i);
        float[] rev = {c[3], c[2], c[1], c[0]};
        if (Float.floatToRawIntBits(leftFold(rev)) != Float.floatToRawIntBits(leftFold(c))) orderMatters = true;
      }
      assertTrue(orderMatters, "the data must make the order visible, or this test could not fail");
    }
  }

  @Test
  void halfTypesAddInF32AndRoundOnce() {
    for (DType dt : new DType[] {DType.BF16, DType.F16}) {
      try (Scope s = Scope.open()) {
        float[][] small = {{1f, 0.5f}, {1f / 256, 3f}, {1f / 256, 0.25f}};  // bf16: 1 + 2^-8 + 2^-8 rounds differently step by step
        List<Tensor> l = new ArrayList<>();
        for (float[] p : small) l.add(Tensor.fromFloats(p, dt, Device.CPU, 2));
        Tensor out = Tensor.zeros(dt, Device.CPU, 2);
        RankOrderSum.sum(l, out);
        float[] acc = new float[2];
        for (int i = 0; i < 2; i++) {
          float a = l.get(0).toFloatArray()[i];
          for (int r = 1; r < l.size(); r++) a += l.get(r).toFloatArray()[i];
          acc[i] = a;
        }
        Tensor want = Tensor.fromFloats(acc, dt, Device.CPU, 2);
        assertArrayEquals(want.toFloatArray(), out.toFloatArray(), dt.toString());
        if (dt == DType.BF16) {
          assertEquals(1f + 1f / 128, out.toFloatArray()[0], "one rounding at the end keeps 2^-7");
          // rounding after every addition would give 1 + 2^-8 -> 1 (ties to even), twice: 1
          assertNotEquals(1f, out.toFloatArray()[0]);
        }
      }
    }
  }

  @Test
  void i32WrapsExactly() {
    try (Scope s = Scope.open()) {
      List<Tensor> l = List.of(Tensor.fromInts(new int[] {Integer.MAX_VALUE, -5}, Device.CPU, 2),
          Tensor.fromInts(new int[] {1, 7}, Device.CPU, 2), Tensor.fromInts(new int[] {2, -2}, Device.CPU, 2));
      Tensor out = Tensor.zeros(DType.I32, Device.CPU, 2);
      RankOrderSum.sum(l, out);
      assertArrayEquals(new int[] {Integer.MIN_VALUE + 2, 0}, out.toIntArray());
    }
  }

  @Test
  void mismatchedPartsAreRefusedByName() {
    try (Scope s = Scope.open()) {
      Tensor out = Tensor.zeros(DType.F32, Device.CPU, 4);
      List<Tensor> l = List.of(Tensor.zeros(DType.F32, Device.CPU, 4), Tensor.zeros(DType.F32, Device.CPU, 3));
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RankOrderSum.sum(l, out));
      assertTrue(e.getMessage().contains("part 1"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> RankOrderSum.sum(List.of(), out));
    }
  }
}

package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/** Element access and round trips through every dtype, including rounding to BF16/F16. */
@SuppressWarnings("restricted")
class TensorDataTest {
  private static final float[] AWKWARD = {
      0f, -0f, 1f, -1f, 1f / 3f, 65504f, 65520f, 1e-8f, 6.1e-5f, 3.0e38f, Float.MIN_VALUE,
      1f + 0x1p-8f, 1f + 3 * 0x1p-8f, 1f + 0x1p-11f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 123456.789f};

  @Test
  void f32RoundTripIsExact() {
    try (Tensor t = Tensor.of(AWKWARD)) {
      assertArrayEquals(AWKWARD, t.toFloatArray());
      t.setFloat(7.25f, 3);
      assertEquals(7.25f, t.getFloat(3));
      // Raw memory holds plain IEEE floats in native order.
      MemorySegment m = MemorySegment.ofAddress(t.address()).reinterpret(t.byteSize());
      assertEquals(1f / 3f, m.getAtIndex(ValueLayout.JAVA_FLOAT, 4));
    }
  }

  @Test
  void halfPrecisionRoundsToNearestEven() {
    for (DType d : new DType[] {DType.BF16, DType.F16}) {
      try (Tensor t = Tensor.fromFloats(AWKWARD, d, Device.CPU)) {
        float[] got = t.toFloatArray();
        MemorySegment m = MemorySegment.ofAddress(t.address()).reinterpret(t.byteSize());
        for (int i = 0; i < AWKWARD.length; i++) {
          float want = HalfFloats.round(AWKWARD[i], d);
          assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got[i]), d + " element " + i + " = " + AWKWARD[i]);
          short bits = m.getAtIndex(ValueLayout.JAVA_SHORT, i);
          short wantBits = d == DType.BF16 ? HalfFloats.floatToBf16(AWKWARD[i]) : HalfFloats.floatToF16(AWKWARD[i]);
          assertEquals(wantBits, bits, d + " bits of element " + i);
          assertEquals(want, t.getFloat(i));
        }
        t.setFloat(1f + 0x1p-8f, 0);
        assertEquals(d == DType.BF16 ? 1f : 1f + 0x1p-8f, t.getFloat(0));
      }
    }
    try (Tensor f = Tensor.fromFloats(new float[] {65520f, 1f + 0x1p-11f}, DType.F16, Device.CPU)) {
      assertEquals(Float.POSITIVE_INFINITY, f.getFloat(0));
      assertEquals(1f, f.getFloat(1));
    }
  }

  @Test
  void intRoundTrip() {
    int[] data = {0, -1, Integer.MAX_VALUE, Integer.MIN_VALUE, 42, 7};
    try (Tensor t = Tensor.of(data, 2, 3)) {
      assertEquals(DType.I32, t.dtype());
      assertArrayEquals(data, t.toIntArray());
      assertEquals(Integer.MAX_VALUE, t.getInt(0, 2));
      t.setInt(-5, 1, 1);
      assertEquals(-5, t.getInt(1, 1));
      try (Tensor tt = t.transpose(0, 1)) {
        assertArrayEquals(new int[] {0, Integer.MIN_VALUE, -1, -5, Integer.MAX_VALUE, 7}, tt.toIntArray());
      }
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.getFloat(0, 0));
      assertTrue(e.getMessage().contains("I32"), e.getMessage());
      assertThrows(IllegalArgumentException.class, t::toFloatArray);
    }
    try (Tensor t = Tensor.fromFloats(new float[] {1, -2, 3}, DType.I32, Device.CPU)) {
      assertArrayEquals(new int[] {1, -2, 3}, t.toIntArray());
    }
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> Tensor.fromFloats(new float[] {1.5f}, DType.I32, Device.CPU));
    assertTrue(e.getMessage().contains("1.5"), e.getMessage());
    try (Tensor f = Tensor.zeros(DType.F32, Device.CPU, 2)) {
      assertThrows(IllegalArgumentException.class, () -> f.copyFrom(new int[] {1, 2}));
    }
  }

  @Test
  void zerosAreZeroInEveryHostTier() {
    for (var tier : new dev.athanor.memory.Tier[] {dev.athanor.memory.Tier.HOST, dev.athanor.memory.Tier.HOST_PINNED}) {
      try (Tensor z = Tensor.zeros(DType.BF16, Device.CPU, tier, 3, 5)) {
        assertEquals(tier, z.tier());
        for (float v : z.toFloatArray()) assertEquals(0f, v);
      }
    }
  }

  @Test
  void writesThroughNonContiguousViews() {
    try (Scope s = Scope.open()) {
      Tensor t = Tensor.zeros(DType.F16, Device.CPU, 3, 4);
      Tensor col = t.select(1, 2); // stride 4
      col.copyFrom(new float[] {1, 2, 3});
      assertArrayEquals(new float[] {0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0}, t.toFloatArray());
      t.transpose(0, 1).copyFrom(new float[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
      assertArrayEquals(new float[] {1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12}, t.toFloatArray());
      assertTrue(s.size() >= 3, "t, col and the transposed view belong to the scope: " + s);
    }
  }
}

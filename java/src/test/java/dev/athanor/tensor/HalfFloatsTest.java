package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * BF16/F16 conversions against independent references: the JDK's Float.floatToFloat16 (round to nearest
 * even) for F16, and a nearest-neighbour search in double precision for BF16; plus hand-picked ties.
 */
class HalfFloatsTest {
  /** Reference BF16 rounding: the nearer of the two BF16 neighbours, ties to the even mantissa. */
  static short bf16Reference(float f) {
    int u = Float.floatToRawIntBits(f);
    int lo = u & 0xffff0000; // truncation toward zero (same sign)
    int hi = lo + 0x10000;   // next BF16 away from zero (may be infinity)
    double x = f, a = Float.intBitsToFloat(lo), b = Float.intBitsToFloat(hi);
    double da = Math.abs(x - a), db = Math.abs(b - x);
    if (Float.isInfinite(Float.intBitsToFloat(hi)) && !Float.isInfinite(f)) {
      // Distance to "infinity" is measured to the value one BF16 step beyond the largest finite one.
      db = Math.abs(Math.scalb((double) Math.signum(f), 128) - x);
    }
    int pick;
    if (da < db) pick = lo;
    else if (db < da) pick = hi;
    else pick = ((lo >>> 16) & 1) == 0 ? lo : hi;
    return (short) (pick >>> 16);
  }

  @Test
  void f16MatchesTheJdkEverywhereButNaNPayloads() {
    // Every 97th bit pattern (about 44 million values), plus all patterns around the F16 range edges.
    for (long bits = 0; bits <= 0xffffffffL; bits += 97) check16((int) bits);
    for (int e : new int[] {0x33000000, 0x38800000, 0x477ff000, 0x477fe000}) {
      for (int d = -4096; d <= 4096; d++) {
        check16(e + d);
        check16((e + d) | 0x80000000);
      }
    }
  }

  private static void check16(int bits) {
    float f = Float.intBitsToFloat(bits);
    short got = HalfFloats.floatToF16(f);
    if (Float.isNaN(f)) {
      assertTrue(Float.isNaN(Float.float16ToFloat(got)), "NaN stays NaN");
      assertEquals(bits < 0, (got & 0x8000) != 0, "NaN keeps its sign");
      return;
    }
    short want = Float.floatToFloat16(f);
    if (got != want) {
      throw new AssertionError(String.format("floatToF16(%s = 0x%08x) = 0x%04x, JDK says 0x%04x", f, bits, got, want));
    }
  }

  @Test
  void f16WideningIsExact() {
    for (int h = 0; h <= 0xffff; h++) {
      float got = HalfFloats.f16ToFloat((short) h), want = Float.float16ToFloat((short) h);
      if (Float.isNaN(want)) {
        assertTrue(Float.isNaN(got));
      } else {
        assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got), "f16 0x" + Integer.toHexString(h));
        assertEquals((short) h, HalfFloats.floatToF16(got), "round trip of 0x" + Integer.toHexString(h));
      }
    }
  }

  @Test
  void bf16MatchesTheReference() {
    for (long bits = 0; bits <= 0xffffffffL; bits += 89) check16bf((int) bits);
    // Exhaustive low 16 bits around a few exponents (covers every tie and carry pattern).
    for (int hi : new int[] {0x3f80, 0x3f81, 0x7f7f, 0x0000, 0x0080, 0xbf80, 0x4b7f}) {
      for (int lo = 0; lo <= 0xffff; lo++) check16bf((hi << 16) | lo);
    }
  }

  private static void check16bf(int bits) {
    float f = Float.intBitsToFloat(bits);
    short got = HalfFloats.floatToBf16(f);
    if (Float.isNaN(f)) {
      assertTrue(Float.isNaN(HalfFloats.bf16ToFloat(got)), "NaN stays NaN");
      return;
    }
    short want = bf16Reference(f);
    if (got != want) {
      throw new AssertionError(String.format("floatToBf16(%s = 0x%08x) = 0x%04x, reference 0x%04x", f, bits, got, want));
    }
  }

  @Test
  void handPickedTies() {
    // BF16 keeps 7 mantissa bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1.0).
    assertEquals((short) 0x3f80, HalfFloats.floatToBf16(1f + 0x1p-8f));
    // 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> 1 + 2^-6.
    assertEquals((short) 0x3f82, HalfFloats.floatToBf16(1f + 3 * 0x1p-8f));
    assertEquals((short) 0x3f81, HalfFloats.floatToBf16(1f + 0x1p-8f + 0x1p-20f)); // just above the tie
    assertEquals((short) 0x7f80, HalfFloats.floatToBf16(Float.MAX_VALUE));          // rounds to +inf
    assertEquals((short) 0xff80, HalfFloats.floatToBf16(Float.NEGATIVE_INFINITY));
    // F16: 65504 is the largest finite; 65520 is the tie to "65536" -> infinity; 65519 stays finite.
    assertEquals((short) 0x7bff, HalfFloats.floatToF16(65504f));
    assertEquals((short) 0x7bff, HalfFloats.floatToF16(65519f));
    assertEquals((short) 0x7c00, HalfFloats.floatToF16(65520f));
    assertEquals((short) 0x0001, HalfFloats.floatToF16(0x1p-24f));       // smallest subnormal
    assertEquals((short) 0x0000, HalfFloats.floatToF16(0x1p-25f));       // tie with zero -> even (0)
    assertEquals((short) 0x0002, HalfFloats.floatToF16(3 * 0x1p-25f));   // tie between 1 and 2 ulps -> 2
    assertEquals((short) 0x0001, HalfFloats.floatToF16(0x1p-25f + 0x1p-40f));
    assertEquals((short) 0x8000, HalfFloats.floatToF16(-0f));
    assertEquals((short) 0x3c00, HalfFloats.floatToF16(1f + 0x1p-11f));  // tie -> even (1.0)
    assertEquals((short) 0x3c02, HalfFloats.floatToF16(1f + 3 * 0x1p-11f));
    assertEquals(1f + 0x1p-7f, HalfFloats.round(1f + 0x1p-7f + 0x1p-12f, DType.BF16));
    assertEquals(0.333251953125f, HalfFloats.round(1f / 3f, DType.F16));
  }
}

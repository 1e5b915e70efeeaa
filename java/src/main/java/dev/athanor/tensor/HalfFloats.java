package dev.athanor.tensor;

/**
 * Conversions between F32 and the 16-bit float formats, bit-identical to native/common/dtype.h: round to
 * nearest, ties to even; NaN stays NaN (canonical quiet NaN, sign kept); F16 overflow goes to infinity and
 * F16 underflow to subnormals and zero.
 */
public final class HalfFloats {
  private HalfFloats() {}

  /** BF16 bits to F32 (exact). */
  public static float bf16ToFloat(short bits) {
    return Float.intBitsToFloat((bits & 0xffff) << 16);
  }

  /** F32 to BF16 bits, round to nearest even. */
  public static short floatToBf16(float f) {
    int u = Float.floatToRawIntBits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (short) ((u >>> 16) | 0x40); // quiet NaN
    u += 0x7fff + ((u >>> 16) & 1);
    return (short) (u >>> 16);
  }

  /** F16 bits to F32 (exact). */
  public static float f16ToFloat(short bits) {
    int h = bits & 0xffff;
    int sign = (h & 0x8000) << 16;
    int exp = (h >>> 10) & 0x1f;
    int man = h & 0x3ff;
    int u;
    if (exp == 0) {
      if (man == 0) {
        u = sign;
      } else { // subnormal: normalize
        int e = -1;
        do {
          man <<= 1;
          ++e;
        } while ((man & 0x400) == 0);
        u = sign | ((127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
      }
    } else if (exp == 31) {
      u = sign | 0x7f800000 | (man << 13);
    } else {
      u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return Float.intBitsToFloat(u);
  }

  /** F32 to F16 bits, round to nearest even. */
  public static short floatToF16(float f) {
    int u = Float.floatToRawIntBits(f);
    int sign = (u >>> 16) & 0x8000;
    int abs = u & 0x7fffffff;
    if (abs > 0x7f800000) return (short) (sign | 0x7e00); // NaN
    if (abs >= 0x477ff000) return (short) (sign | 0x7c00); // overflow -> inf
    if (abs < 0x38800000) { // result is subnormal or zero
      if (abs < 0x33000000) return (short) sign; // below half the smallest subnormal
      int exp = abs >>> 23;
      int man = (abs & 0x7fffff) | 0x800000;
      int shift = 126 - exp;
      int half = man >>> shift;
      int rem = man & ((1 << shift) - 1);
      int mid = 1 << (shift - 1);
      if (rem > mid || (rem == mid && (half & 1) != 0)) ++half;
      return (short) (sign | half);
    }
    int r = abs + 0xfff + ((abs >>> 13) & 1) - ((127 - 15) << 23);
    return (short) (sign | (r >>> 13));
  }

  /** Rounds {@code f} to the nearest value representable in {@code dtype} (F32 and I32: unchanged). */
  public static float round(float f, DType dtype) {
    return switch (dtype) {
      case BF16 -> bf16ToFloat(floatToBf16(f));
      case F16 -> f16ToFloat(floatToF16(f));
      default -> f;
    };
  }
}

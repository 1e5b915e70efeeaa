package dev.athanor.io.safetensors;

import dev.athanor.tensor.DType;

/** The element types a safetensors header may name, with their sizes and how they can be read into tensors. */
enum StDType {
  F64(8),
  F32(4),
  F16(2),
  BF16(2),
  F8_E4M3(1),
  F8_E5M2(1),
  I64(8),
  I32(4),
  I16(2),
  I8(1),
  U64(8),
  U32(4),
  U16(2),
  U8(1),
  BOOL(1);

  final int byteSize;

  StDType(int byteSize) {
    this.byteSize = byteSize;
  }

  /** The type named {@code name} in a header, or null. */
  static StDType byName(String name) {
    for (StDType t : values()) if (t.name().equals(name)) return t;
    return null;
  }

  /** The header name of a tensor dtype. */
  static StDType of(DType d) {
    return switch (d) {
      case F32 -> F32;
      case F16 -> F16;
      case BF16 -> BF16;
      case I32 -> I32;
    };
  }

  /**
   * The tensor dtype this type is read into before any requested conversion: itself for F32/F16/BF16/I32,
   * I32 for I64 (values must fit), F32 for F64 (rounded to nearest); null when it cannot be read.
   */
  DType natural() {
    return switch (this) {
      case F32, F64 -> DType.F32;
      case F16 -> DType.F16;
      case BF16 -> DType.BF16;
      case I32, I64 -> DType.I32;
      default -> null;
    };
  }

  /** Whether the bytes on disk are exactly those of {@link #natural()} (no widening or narrowing needed). */
  boolean isDirect() {
    return this == F32 || this == F16 || this == BF16 || this == I32;
  }

  static String readable() {
    return "F32, F16, BF16, I32, I64 (read as I32 when every value fits) and F64 (read as F32)";
  }
}

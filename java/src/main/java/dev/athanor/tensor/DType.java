package dev.athanor.tensor;

/** Element types; {@link #code()} equals the {@code ath_dtype} of the C ABI. */
public enum DType {
  F32(0, 4, true),
  BF16(1, 2, true),
  F16(2, 2, true),
  I32(3, 4, false);

  private final int code;
  private final int byteSize;
  private final boolean floating;

  DType(int code, int byteSize, boolean floating) {
    this.code = code;
    this.byteSize = byteSize;
    this.floating = floating;
  }

  /** The {@code ath_dtype} value. */
  public int code() {
    return code;
  }

  /** Bytes per element. */
  public int byteSize() {
    return byteSize;
  }

  public boolean isFloating() {
    return floating;
  }

  /** The dtype with the given {@code ath_dtype} code. */
  public static DType fromCode(int code) {
    for (DType d : values()) if (d.code == code) return d;
    throw new IllegalArgumentException("unknown ath_dtype code " + code + " (expected 0..3)");
  }
}

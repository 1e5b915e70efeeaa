package dev.athanor.io.safetensors;

import dev.athanor.ops.Ops;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;

/** Dtype conversions of host tensors for reading and writing (through {@link Ops#convert}). */
final class Conversions {
  private Conversions() {}

  /** Throws when {@code from} data may not be converted to {@code to}: floating data never becomes I32. */
  static void check(DType from, DType to, String what) {
    if (from.isFloating() && !to.isFloating()) {
      throw new IllegalArgumentException(what + ": floating-point data cannot be converted to " + to);
    }
  }

  /** A new contiguous tensor holding {@code src} (any layout, host or device) converted to {@code to}. */
  static Tensor convert(Tensor src, DType to) {
    if (src.dtype() == to) return src.contiguous();
    if (!src.isContiguous()) {
      try (Tensor c = src.contiguous()) {
        return convert(c, to);
      }
    }
    check(src.dtype(), to, src.toString());
    if (src.dtype() == DType.I32 && to != DType.F32) { // the kernels convert I32 only to and from F32
      try (Tensor f = Ops.convert(src, DType.F32)) {
        return Ops.convert(f, to);
      }
    }
    return Ops.convert(src, to);
  }

  /** Converts {@code src} into {@code dst} (same shape, both contiguous, same device). */
  static void convertInto(Tensor src, Tensor dst) {
    if (src.dtype() == dst.dtype()) {
      dst.copyFrom(src);
      return;
    }
    check(src.dtype(), dst.dtype(), src.toString());
    if (src.dtype() == DType.I32 && dst.dtype() != DType.F32) {
      try (Tensor f = Ops.convert(src, DType.F32)) {
        Ops.convert(f, dst);
      }
      return;
    }
    Ops.convert(src, dst);
  }
}

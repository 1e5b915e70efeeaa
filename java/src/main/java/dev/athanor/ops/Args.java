package dev.athanor.ops;

import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;

/**
 * Argument validation for {@link Ops}: every check throws {@link IllegalArgumentException} (or
 * {@link IllegalStateException} for a closed tensor) whose message starts with the op's name and
 * names the offending tensor with its shape, dtype and device, and says what was expected.
 */
final class Args {
  private Args() {}

  /** "x (2, 7) BF16 on cpu". */
  static String describe(String name, Tensor t) {
    if (t == null) return name + " (null)";
    return name + " " + shapeString(t.shape()) + " " + t.dtype() + " on " + t.device();
  }

  static String shapeString(long[] shape) {
    StringBuilder sb = new StringBuilder("(");
    for (int i = 0; i < shape.length; i++) {
      if (i > 0) sb.append(", ");
      sb.append(shape[i]);
    }
    return sb.append(')').toString();
  }

  static IllegalArgumentException bad(String op, String message) {
    return new IllegalArgumentException(op + ": " + message);
  }

  /**
   * A required tensor: non-null, open, and in a tier with a native address (not DISK). Returns it.
   */
  static Tensor need(String op, String name, Tensor t) {
    if (t == null) throw bad(op, name + " is null");
    return usable(op, name, t);
  }

  /** An optional tensor: null passes; otherwise as {@link #need}. */
  static Tensor optional(String op, String name, Tensor t) {
    return t == null ? null : usable(op, name, t);
  }

  private static Tensor usable(String op, String name, Tensor t) {
    if (t.isClosed()) throw new IllegalStateException(op + ": " + name + " is closed");
    if (t.tier() == Tier.DISK) {
      throw bad(op, describe(name, t) + " lives on the DISK tier, which kernels cannot address; bring it to "
          + "HOST or DEVICE first (tensor.to(Tier.HOST) / tensor.to(device))");
    }
    return t;
  }

  static void floating(String op, String name, Tensor t) {
    if (!t.dtype().isFloating()) throw bad(op, describe(name, t) + " must have a floating dtype (F32, BF16, F16)");
  }

  static void dtype(String op, String name, Tensor t, DType want) {
    if (t.dtype() != want) throw bad(op, describe(name, t) + " must be " + want);
  }

  static void sameDtype(String op, String name, Tensor t, String refName, Tensor ref) {
    if (t.dtype() != ref.dtype()) {
      throw bad(op, describe(name, t) + " must have the dtype of " + describe(refName, ref));
    }
  }

  static void shape(String op, String name, Tensor t, long[] want, String why) {
    if (!Arrays.equals(t.shape(), want)) {
      throw bad(op, describe(name, t) + " must have shape " + shapeString(want) + (why.isEmpty() ? "" : " " + why));
    }
  }

  static void sameShape(String op, String name, Tensor t, String refName, Tensor ref) {
    if (!Arrays.equals(t.shape(), ref.shape())) {
      throw bad(op, describe(name, t) + " must have the shape of " + describe(refName, ref));
    }
  }

  static void rank(String op, String name, Tensor t, int rank, String layout) {
    if (t.rank() != rank) throw bad(op, describe(name, t) + " must have rank " + rank + " " + layout);
  }

  static void contiguous(String op, String name, Tensor t) {
    if (!t.isContiguous()) {
      throw bad(op, describe(name, t) + " must be contiguous (strides " + shapeString(t.strides())
          + "); call contiguous() first");
    }
  }

  /** The innermost dimension must have unit stride (a size-1 innermost dimension always passes). */
  static void innerContiguous(String op, String name, Tensor t) {
    int r = t.rank();
    if (r > 0 && t.size(-1) > 1 && t.strides()[r - 1] != 1) {
      throw bad(op, describe(name, t) + " must have a contiguous last dimension (strides "
          + shapeString(t.strides()) + "); call contiguous() first");
    }
  }

  /** Same strides in every dimension of size > 1 (a size-1 dimension's stride is never used). */
  static void sameStrides(String op, String name, Tensor t, String refName, Tensor ref) {
    long[] a = t.strides(), b = ref.strides(), s = ref.shape();
    boolean same = a.length == b.length;
    for (int i = 0; same && i < a.length; i++) same = s[i] == 1 || a[i] == b[i];
    if (!same) {
      throw bad(op, describe(name, t) + " must have the strides of " + describe(refName, ref) + ": "
          + shapeString(t.strides()) + " vs " + shapeString(ref.strides()));
    }
  }

  /**
   * The current execution context of the tensors' common device. {@code pairs} alternate names and
   * tensors; null tensors are skipped. Throws when the tensors are on different devices.
   */
  static ExecutionContext context(String op, Object... pairs) {
    Device device = null;
    String firstName = null;
    Tensor first = null;
    for (int i = 0; i < pairs.length; i += 2) {
      Tensor t = (Tensor) pairs[i + 1];
      if (t == null) continue;
      if (device == null) {
        device = t.device();
        firstName = (String) pairs[i];
        first = t;
      } else if (!t.device().equals(device)) {
        throw bad(op, "tensors on different devices: " + describe(firstName, first) + " but "
            + describe((String) pairs[i], t) + "; move them to one device first");
      }
    }
    if (device == null) throw bad(op, "no tensor given");
    return ExecutionContext.current(device);
  }

  static void positive(String op, String what, long v) {
    if (v <= 0) throw bad(op, what + " = " + v + " must be > 0");
  }

  static void finite(String op, String what, float v) {
    if (!Float.isFinite(v)) throw bad(op, what + " = " + v + " must be finite");
  }

  /** Product of all dimensions but the last. */
  static long rows(Tensor t) {
    long[] s = t.shape();
    long r = 1;
    for (int i = 0; i < s.length - 1; i++) r *= s[i];
    return r;
  }

  /** The shape without its last dimension. */
  static long[] leading(Tensor t) {
    long[] s = t.shape();
    return Arrays.copyOf(s, s.length - 1);
  }

  static long[] append(long[] shape, long last) {
    long[] r = Arrays.copyOf(shape, shape.length + 1);
    r[shape.length] = last;
    return r;
  }
}

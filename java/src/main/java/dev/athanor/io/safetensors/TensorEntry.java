package dev.athanor.io.safetensors;

import java.util.Arrays;
import java.util.Objects;

/**
 * One tensor described by a safetensors header.
 *
 * @param name the tensor name (a key of the header)
 * @param dtype the safetensors dtype name as written in the header, e.g. {@code F32}, {@code BF16}, {@code I64}
 * @param shape the dimensions (empty for a 0-d tensor); copied on the way in and out
 * @param begin the first byte of the tensor, relative to the start of the data section
 * @param end one past the last byte, relative to the start of the data section
 */
public record TensorEntry(String name, String dtype, long[] shape, long begin, long end) {
  public TensorEntry {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(dtype, "dtype");
    shape = Objects.requireNonNull(shape, "shape").clone();
    if (begin < 0 || end < begin) {
      throw new IllegalArgumentException("tensor \"" + name + "\": data_offsets [" + begin + ", " + end + "] need 0 <= begin <= end");
    }
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  /** The number of elements (1 for a 0-d tensor). */
  public long numel() {
    long n = 1;
    for (long s : shape) n = Math.multiplyExact(n, s);
    return n;
  }

  /** {@code end - begin}. */
  public long byteLength() {
    return end - begin;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TensorEntry e && e.name.equals(name) && e.dtype.equals(dtype) && Arrays.equals(e.shape, shape)
        && e.begin == begin && e.end == end;
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
  }

  @Override
  public String toString() {
    return name + " " + dtype + Arrays.toString(shape) + " @[" + begin + ", " + end + ")";
  }
}

package dev.athanor.params;

import java.util.Arrays;

/**
 * One parameter tensor of a model: its Hugging Face name (as {@code save_pretrained} writes it today), its
 * shape in the Hugging Face layout, and whether AdamW applies weight decay to it (tensors of rank >= 2 only;
 * never biases or norm weights).
 *
 * @param name the Hugging Face tensor name, e.g. {@code transformer.h.0.attn.c_attn.weight}
 * @param shape the shape as stored in a Hugging Face safetensors file
 * @param decay whether decoupled weight decay applies
 */
public record ParamSpec(String name, long[] shape, boolean decay) {
  public ParamSpec {
    shape = shape.clone();
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  /** The number of elements; throws {@link ArithmeticException} when it does not fit in a long. */
  public long numel() {
    long n = 1;
    for (long s : shape) n = Math.multiplyExact(n, s);
    return n;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof ParamSpec p && p.name.equals(name) && Arrays.equals(p.shape, shape) && p.decay == decay;
  }

  @Override
  public int hashCode() {
    return name.hashCode() * 31 + Arrays.hashCode(shape);
  }

  @Override
  public String toString() {
    return name + Arrays.toString(shape);
  }
}

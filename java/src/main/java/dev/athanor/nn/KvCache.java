package dev.athanor.nn;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;

/**
 * Keys and values of every layer for {@code batch} sequences of up to {@code capacity} tokens: per layer
 * two (B, capacity, KV, D) tensors in the model's compute dtype (Llama keys after RoPE). All sequences
 * of a cache have the same length; {@link #length()} grows with each
 * {@link Transformer#forwardCached(KvCache, int[], int, int)}.
 */
public final class KvCache implements AutoCloseable {
  private final Tensor[] keys, values;
  private final int batch, capacity;
  private int length;
  private final java.util.Map<Integer, InferenceStep.Buffers> buffers = new java.util.HashMap<>();

  KvCache(ModelConfig c, Device device, DType dtype, int batch, int capacity) {
    if (batch <= 0 || capacity <= 0) {
      throw new IllegalArgumentException("cache batch " + batch + " and capacity " + capacity + " must be > 0");
    }
    this.batch = batch;
    this.capacity = capacity;
    keys = new Tensor[c.layers()];
    values = new Tensor[c.layers()];
    try {
      for (int l = 0; l < c.layers(); l++) {
        keys[l] = Tensor.empty(dtype, device, batch, capacity, c.kvHeads(), c.headDim()).detach();
        values[l] = Tensor.empty(dtype, device, batch, capacity, c.kvHeads(), c.headDim()).detach();
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  public int batch() {
    return batch;
  }

  public int capacity() {
    return capacity;
  }

  /** Tokens cached per sequence so far. */
  public int length() {
    return length;
  }

  /** Forgets the cached tokens (the buffers are kept). */
  public void reset() {
    length = 0;
  }

  Tensor keys(int layer) {
    return keys[layer];
  }

  Tensor values(int layer) {
    return values[layer];
  }

  /** The step buffers for n new tokens per sequence, made on first use and kept until close. */
  InferenceStep.Buffers buffers(int n, java.util.function.Supplier<InferenceStep.Buffers> make) {
    InferenceStep.Buffers b = buffers.get(n);
    if (b == null) {
      if (buffers.size() >= 4) {  // prompts of many lengths: keep the decode (n = 1) buffers, drop the rest
        buffers.entrySet().removeIf(e -> {
          if (e.getKey() == 1) return false;
          e.getValue().close();
          return true;
        });
      }
      b = make.get();
      buffers.put(n, b);
    }
    return b;
  }

  void advance(int n) {
    length += n;
  }

  @Override
  public void close() {
    for (InferenceStep.Buffers b : buffers.values()) b.close();
    buffers.clear();
    for (Tensor[] ts : new Tensor[][] {keys, values}) {
      for (Tensor t : ts) {
        if (t != null) t.close();
      }
    }
  }
}

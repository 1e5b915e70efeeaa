package dev.athanor.infer;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token of each row of logits per {@link SamplingConfig} with the sample op ({@link Ops#sample}) on
 * the logits' device: on CUDA only the token ids come back to the host (under {@code ATHANOR_CUDA_DEVICE_SAMPLING=1},
 * until a GPU check has run the kernel; without it CUDA logits are sampled on the host). The random numbers stay here (one
 * uniform draw per row and call, from a {@link SplittableRandom} seeded with the config's seed), so the same
 * logits and seed give the same tokens on every backend. Not thread-safe (holds the RNG and two small buffers).
 *
 * <p>The op ranks candidates by logit (ties by lower id), keeps the top k, then the shortest prefix of them whose
 * probability mass reaches top-p, and draws from the tempered softmax over what is kept; probabilities are exact
 * integer multiples of 2^-32 of the top token's, so the draw does not depend on a summation order.
 */
public final class Sampler implements AutoCloseable {
  private final SamplingConfig cfg;
  private final SplittableRandom rng;
  private Tensor uniforms, ids;  // (B) F32 and (B) I32 on the device of the last logits

  /**
   * {@code ATHANOR_CUDA_DEVICE_SAMPLING=1}: CUDA logits are sampled by the CUDA kernel. Off by default until a GPU
   * check has run that kernel's tests: CUDA logits are then copied to the host and sampled by the CPU op, which picks
   * the same ids by construction.
   */
  static final boolean DEVICE_SAMPLING = "1".equals(System.getenv("ATHANOR_CUDA_DEVICE_SAMPLING"));

  public Sampler(SamplingConfig cfg) {
    this.cfg = java.util.Objects.requireNonNull(cfg, "cfg");
    this.rng = new SplittableRandom(cfg.seed());
  }

  /** The next uniform draw in [0, 1): 24 random bits, exact in F32 (the op uses exactly 24). */
  float nextUniform() {
    return (rng.nextInt() >>> 8) * 0x1p-24f;
  }

  /**
   * The token of each row of {@code logits} (B, cols) F32 on any device, among the ids [0, vocab); draws B
   * uniforms, one per row in row order. A negative entry {@code -1 - c} reports that row's first NaN or +inf
   * logit at column c (or, as -1, that every logit in [0, vocab) is -inf); -inf is otherwise probability 0.
   */
  public int[] sampleRows(Tensor logits, int vocab) {
    if (logits.device().isCuda() && !DEVICE_SAMPLING) {  // the CUDA kernel waits for a GPU check: sample on the host
      try (Tensor host = Tensor.empty(DType.F32, Device.CPU, logits.size(0), logits.size(1))) {
        host.copyFrom(logits);
        return sampleRows(host, vocab);
      }
    }
    int b = Math.toIntExact(logits.size(0));
    float[] u = new float[b];
    for (int i = 0; i < b; i++) u[i] = nextUniform();
    Device dev = logits.device();
    if (uniforms == null || uniforms.numel() != b || !uniforms.device().equals(dev)) {
      close();
      uniforms = Tensor.empty(DType.F32, dev, b);
      ids = Tensor.empty(DType.I32, dev, b);
    }
    uniforms.copyFrom(u);
    Ops.sample(logits, vocab, uniforms, cfg.temperature(), cfg.topK(), cfg.topP(), ids);
    return ids.toIntArray();
  }

  /** The token chosen from the host row {@code logits[offset, offset + vocab)}; negative as in {@link #sampleRows}. */
  public int sample(float[] logits, int offset, int vocab) {
    try (Tensor row = Tensor.of(Arrays.copyOfRange(logits, offset, offset + vocab), 1, vocab)) {
      return sampleRows(row, vocab)[0];
    }
  }

  @Override
  public void close() {
    if (uniforms != null) uniforms.close();
    if (ids != null) ids.close();
    uniforms = null;
    ids = null;
  }
}

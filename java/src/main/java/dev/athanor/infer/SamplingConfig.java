package dev.athanor.infer;

/**
 * How the next token is chosen.
 *
 * @param temperature 0 = greedy (argmax); otherwise logits are divided by it before the softmax
 * @param topK keep only the k most likely tokens (0 = all)
 * @param topP keep the smallest set of most likely tokens whose probability reaches p (1 = all)
 * @param seed seeds the sampler (same seed, same model, same prompt: same text)
 * @param maxTokens the most new tokens per sequence
 * @param stopAtEos stop a sequence when it produces the end-of-sequence token
 */
public record SamplingConfig(float temperature, int topK, float topP, long seed, int maxTokens, boolean stopAtEos) {
  public SamplingConfig {
    if (!(temperature >= 0) || !Float.isFinite(temperature)) {
      throw new IllegalArgumentException("temperature must be finite and >= 0, got " + temperature);
    }
    if (topK < 0) throw new IllegalArgumentException("top-k must be >= 0 (0 = off), got " + topK);
    if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
    if (maxTokens < 0) throw new IllegalArgumentException("max-tokens must be >= 0, got " + maxTokens);
  }

  /** Greedy decoding of up to {@code maxTokens} tokens, stopping at EOS. */
  public static SamplingConfig greedy(int maxTokens) {
    return new SamplingConfig(0f, 0, 1f, 0L, maxTokens, true);
  }

  /** Sampling at temperature 0.8 with top-k 40 and top-p 0.95. */
  public static SamplingConfig defaults(int maxTokens, long seed) {
    return new SamplingConfig(0.8f, 40, 0.95f, seed, maxTokens, true);
  }
}

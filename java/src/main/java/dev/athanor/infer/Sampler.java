package dev.athanor.infer;

import java.util.Arrays;
import java.util.SplittableRandom;

/** Picks the next token from a row of logits per {@link SamplingConfig}. Not thread-safe (holds the RNG). */
public final class Sampler {
  private final SamplingConfig cfg;
  private final SplittableRandom rng;

  public Sampler(SamplingConfig cfg) {
    this.cfg = cfg;
    this.rng = new SplittableRandom(cfg.seed());
  }

  /** The token chosen from {@code logits[offset, offset + vocab)}. */
  public int sample(float[] logits, int offset, int vocab) {
    if (cfg.temperature() == 0f) return argmax(logits, offset, vocab);
    // candidate ids sorted by logit, descending (stable on ties: lower id first)
    Integer[] idx = new Integer[vocab];
    for (int i = 0; i < vocab; i++) idx[i] = i;
    Arrays.sort(idx, (a, b) -> {
      int c = Float.compare(logits[offset + b], logits[offset + a]);
      return c != 0 ? c : Integer.compare(a, b);
    });
    int k = cfg.topK() > 0 ? Math.min(cfg.topK(), vocab) : vocab;
    double max = logits[offset + idx[0]];
    if (!Double.isFinite(max)) return idx[0];
    double[] p = new double[k];
    double sum = 0;
    for (int i = 0; i < k; i++) {
      p[i] = Math.exp((logits[offset + idx[i]] - max) / cfg.temperature());
      sum += p[i];
    }
    // top-p: the shortest prefix whose mass reaches topP
    int keep = k;
    if (cfg.topP() < 1f) {
      double acc = 0;
      for (int i = 0; i < k; i++) {
        acc += p[i] / sum;
        if (acc >= cfg.topP()) {
          keep = i + 1;
          break;
        }
      }
    }
    double total = 0;
    for (int i = 0; i < keep; i++) total += p[i];
    double r = rng.nextDouble() * total;
    for (int i = 0; i < keep; i++) {
      r -= p[i];
      if (r < 0) return idx[i];
    }
    return idx[keep - 1];
  }

  static int argmax(float[] x, int offset, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[offset + i] > x[offset + best]) best = i;
    return best;
  }
}

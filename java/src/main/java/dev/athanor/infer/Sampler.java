package dev.athanor.infer;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from a row of logits per {@link SamplingConfig}. Not thread-safe (holds the RNG).
 *
 * <p>Candidates are ranked by logit, ties by lower id. Top-k keeps the k best (selected with a bounded heap,
 * O(V log k)); top-p then keeps the shortest prefix of them whose probability mass reaches p (without top-k
 * this needs the whole order: one primitive sort); plain temperature sampling ranks nothing.
 */
public final class Sampler {
  private final SamplingConfig cfg;
  private final SplittableRandom rng;
  private long[] keys = new long[0];

  public Sampler(SamplingConfig cfg) {
    this.cfg = cfg;
    this.rng = new SplittableRandom(cfg.seed());
  }

  /** The token chosen from {@code logits[offset, offset + vocab)}. */
  public int sample(float[] logits, int offset, int vocab) {
    if (cfg.temperature() == 0f) return argmax(logits, offset, vocab);
    int k = cfg.topK() > 0 ? Math.min(cfg.topK(), vocab) : vocab;
    if (k == vocab && cfg.topP() >= 1f) return sampleAll(logits, offset, vocab);
    int[] ids = k < vocab ? topK(logits, offset, vocab, k) : rankAll(logits, offset, vocab);
    double max = logits[offset + ids[0]];
    if (!Double.isFinite(max)) return ids[0];
    double[] p = new double[ids.length];
    double sum = 0;
    for (int i = 0; i < ids.length; i++) {
      p[i] = Math.exp((logits[offset + ids[i]] - max) / cfg.temperature());
      sum += p[i];
    }
    int keep = ids.length;
    if (cfg.topP() < 1f) {  // the shortest prefix whose mass reaches topP
      double acc = 0;
      for (int i = 0; i < ids.length; i++) {
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
      if (r < 0) return ids[i];
    }
    return ids[keep - 1];
  }

  /** Sampling from the whole tempered softmax (no ranking needed). */
  private int sampleAll(float[] logits, int offset, int vocab) {
    float max = logits[offset];
    for (int i = 1; i < vocab; i++) max = Math.max(max, logits[offset + i]);
    if (!Float.isFinite(max)) return argmax(logits, offset, vocab);
    double inv = 1.0 / cfg.temperature(), sum = 0;
    for (int i = 0; i < vocab; i++) sum += Math.exp((logits[offset + i] - max) * inv);
    double r = rng.nextDouble() * sum;
    for (int i = 0; i < vocab; i++) {
      r -= Math.exp((logits[offset + i] - max) * inv);
      if (r < 0) return i;
    }
    return argmax(logits, offset, vocab);
  }

  /**
   * A sort key: ascending key order = descending logit, ties by ascending id (the float's bits made
   * monotonic as a signed int, inverted, in the high half; the id in the low half).
   */
  static long key(float logit, int id) {
    int s = Float.floatToIntBits(logit);
    s = s >= 0 ? s : s ^ 0x7fffffff;
    return ((long) ~s << 32) | id;
  }

  /** All ids ranked (one primitive sort of the keys). */
  private int[] rankAll(float[] logits, int offset, int vocab) {
    if (keys.length < vocab) keys = new long[vocab];
    for (int i = 0; i < vocab; i++) keys[i] = key(logits[offset + i], i);
    Arrays.sort(keys, 0, vocab);
    int[] ids = new int[vocab];
    for (int i = 0; i < vocab; i++) ids[i] = (int) keys[i];
    return ids;
  }

  /** The k best ids, ranked: a max-heap (by key) of the k smallest keys seen, then sorted. */
  static int[] topK(float[] logits, int offset, int vocab, int k) {
    long[] heap = new long[k];
    for (int i = 0; i < k; i++) {
      heap[i] = key(logits[offset + i], i);
      siftUp(heap, i);
    }
    for (int i = k; i < vocab; i++) {
      long kk = key(logits[offset + i], i);
      if (kk < heap[0]) {
        heap[0] = kk;
        siftDown(heap, k);
      }
    }
    Arrays.sort(heap);
    int[] ids = new int[k];
    for (int i = 0; i < k; i++) ids[i] = (int) heap[i];
    return ids;
  }

  private static void siftUp(long[] h, int i) {
    while (i > 0) {
      int parent = (i - 1) / 2;
      if (h[parent] >= h[i]) return;
      long t = h[parent];
      h[parent] = h[i];
      h[i] = t;
      i = parent;
    }
  }

  private static void siftDown(long[] h, int n) {
    int i = 0;
    while (true) {
      int l = 2 * i + 1, r = l + 1, big = i;
      if (l < n && h[l] > h[big]) big = l;
      if (r < n && h[r] > h[big]) big = r;
      if (big == i) return;
      long t = h[big];
      h[big] = h[i];
      h[i] = t;
      i = big;
    }
  }

  static int argmax(float[] x, int offset, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[offset + i] > x[offset + best]) best = i;
    return best;
  }
}

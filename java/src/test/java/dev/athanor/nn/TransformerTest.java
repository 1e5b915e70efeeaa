package dev.athanor.nn;

import dev.athanor.params.ParameterStore;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The model on the CPU against itself: gradients against central finite differences of the loss, KV-cache
 * decoding against full recomputation, recomputation against kept activations. (Against an independent
 * implementation: {@code ModelFixtureTest}.)
 */
class TransformerTest {
  static Stream<ModelConfig> configs() {
    return Stream.of(
        new ModelConfig(Family.GPT2, 37, 16, 2, 16, 2, 2, 24, 1e-5f, 0f, true, -1, -1),
        new ModelConfig(Family.LLAMA, 41, 16, 2, 24, 3, 1, 20, 1e-5f, 10000f, false, -1, -1));
  }

  static int[] randomIds(Random r, int n, int vocab) {
    int[] x = new int[n];
    for (int i = 0; i < n; i++) x[i] = r.nextInt(vocab);
    return x;
  }

  /**
   * A cached step's pinned host copy of the logits (what {@code forwardCached} stages a CUDA step's logits through) is
   * made on first use only: steps that return the logits where they were computed (the generator samples there), and
   * CPU steps, make none; once made it is kept for the step and closed with the cache.
   */
  @org.junit.jupiter.api.Test
  void aCachedStepMakesItsPinnedLogitsOnFirstUseAndClosesThemWithTheCache() {
    ModelConfig cfg = configs().findFirst().orElseThrow();
    dev.athanor.memory.MemoryManager mm = dev.athanor.memory.MemoryManager.global();
    dev.athanor.memory.Tier pinned = dev.athanor.memory.Tier.HOST_PINNED;
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(3);
      long live0 = mm.liveBytes(pinned);
      KvCache.Step s;
      Tensor h;
      try (KvCache cache = m.newCache(2, 8)) {
        m.forwardCachedLogits(cache, new int[] {1, 2, 3, 4}, 2, 2);
        m.forwardCached(cache, new int[] {5, 6}, 2, 1);
        m.forwardCachedLogits(cache, new int[] {7, 8}, 2, 1);
        s = cache.step(1, () -> {
          throw new AssertionError("made above");
        });
        org.junit.jupiter.api.Assertions.assertFalse(s.hasLogitsHost(), "no step made a pinned copy");
        assertEquals(live0, mm.liveBytes(pinned), "no pinned bytes");
        h = s.logitsHost();
        org.junit.jupiter.api.Assertions.assertSame(h, s.logitsHost(), "made once, then kept");
        assertArrayEquals(new long[] {2, cfg.vocabSize()}, h.shape());
        assertEquals(pinned, h.tier());
        assertTrue(mm.liveBytes(pinned) >= live0 + 2L * cfg.vocabSize() * 4, "the pinned copy is live");
      }
      assertEquals(live0, mm.liveBytes(pinned), "closed with the cache");
      assertTrue(h.isClosed());
      org.junit.jupiter.api.Assertions.assertFalse(s.hasLogitsHost());
    }
  }

  @ParameterizedTest
  @MethodSource("configs")
  void gradientsMatchFiniteDifferences(ModelConfig cfg) {
    Random r = new Random(5);
    int b = 2, t = 7;
    int[] in = randomIds(r, b * t, cfg.vocabSize());
    int[] tg = randomIds(r, b * t, cfg.vocabSize());
    tg[3] = -1;
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(11);
      // larger weights than the 0.02 init so every path carries signal (x10 is too nonlinear for differences)
      for (ParameterStore.Param p : m.parameters().list()) {
        float[] w = p.master().toFloatArray();
        for (int i = 0; i < w.length; i++) w[i] = w[i] * 3 + (p.spec().shape().length == 1 ? (float) r.nextGaussian() * 0.1f : 0f);
        p.master().copyFrom(w);
      }
      m.parameters().zeroGradients();
      m.forward(in, tg, b, t);
      m.backward(1f);
      for (ParameterStore.Param p : m.parameters().list()) {
        float[] g = p.grad().toFloatArray();
        float[] w = p.master().toFloatArray();
        double gmax = 0;
        for (float v : g) gmax = Math.max(gmax, Math.abs(v));
        // probe a few elements, including the largest-gradient one
        int big = 0;
        for (int i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[big])) big = i;
        int[] probes = {big, r.nextInt(w.length), r.nextInt(w.length)};
        for (int i : probes) {
          float h = 1e-2f * Math.max(1f, Math.abs(w[i]));
          float save = w[i];
          w[i] = save + h;
          p.master().copyFrom(w);
          double lp = m.forward(in, tg, b, t);
          w[i] = save - h;
          p.master().copyFrom(w);
          double lm = m.forward(in, tg, b, t);
          w[i] = save;
          p.master().copyFrom(w);
          double fd = (lp - lm) / (2 * h);
          double tol = 2e-3 + 3e-2 * Math.max(Math.abs(fd), gmax * 0.1);
          assertEquals(fd, g[i], tol, cfg.family() + " " + p.name() + "[" + i + "] analytic " + g[i] + " vs finite difference " + fd);
        }
      }
    }
  }

  @ParameterizedTest
  @MethodSource("configs")
  void cachedDecodingMatchesFullForward(ModelConfig cfg) {
    Random r = new Random(6);
    int b = 2, t = 9;
    int[] ids = randomIds(r, b * t, cfg.vocabSize());
    int v = cfg.vocabSize();
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(3);
      scaleUp(m, 8f);
      int[] none = new int[b * t];
      java.util.Arrays.fill(none, -1);
      m.forward(ids, none, b, t);
      float[] full = m.lastLogits();
      try (KvCache cache = m.newCache(b, t)) {
        // prefill 4 tokens, then one at a time
        int pre = 4;
        int[] first = new int[b * pre];
        for (int s = 0; s < b; s++) System.arraycopy(ids, s * t, first, s * pre, pre);
        float[] got = m.forwardCached(cache, first, b, pre);
        compareRow(full, got, b, t, pre - 1, v);
        for (int pos = pre; pos < t; pos++) {
          int[] one = {ids[pos], ids[t + pos]};
          got = m.forwardCached(cache, one, b, 1);
          compareRow(full, got, b, t, pos, v);
        }
        assertEquals(t, cache.length());
        assertThrows(IllegalArgumentException.class, () -> m.forwardCached(cache, new int[] {1, 2}, b, 1));
      }
    }
  }

  /** CUDA configs: head dims the CUDA attention takes (32). */
  static Stream<ModelConfig> cudaConfigs() {
    return Stream.of(
        new ModelConfig(Family.GPT2, 37, 16, 2, 64, 2, 2, 24, 1e-5f, 0f, true, -1, -1),
        new ModelConfig(Family.LLAMA, 41, 16, 2, 96, 3, 1, 20, 1e-5f, 10000f, false, -1, -1));
  }

  /**
   * BF16 (on the CPU always, on CUDA when present): cached decoding (prefill + one token at a time; on CUDA the
   * logits are staged through pinned memory) against the full forward within BF16 tolerance (on the CPU the
   * two differ by about 0.2% of the logit scale), and a rerun gives identical logits.
   */
  @ParameterizedTest
  @MethodSource("cudaConfigs")
  void bf16CachedDecodingMatchesFullForward(ModelConfig cfg) {
    List<Device> devices = new java.util.ArrayList<>(List.of(Device.CPU));
    if (dev.athanor.runtime.Cuda.isAvailable()) devices.add(Device.cuda(0));
    for (Device device : devices) {
      Random r = new Random(8);
      int b = 2, t = 9, v = cfg.vocabSize();
      int[] ids = randomIds(r, b * t, v);
      try (Transformer m = new Transformer(cfg, device, dev.athanor.tensor.DType.BF16)) {
        m.initialize(3);
        scaleUp(m, 8f);
        m.parameters().syncWeights();
        int[] none = new int[b * t];
        java.util.Arrays.fill(none, -1);
        m.forward(ids, none, b, t);
        float[] full = m.lastLogits();
        float scale = 0;
        for (float x : full) scale = Math.max(scale, Math.abs(x));
        float[] first = null;
        for (int run = 0; run < 2; run++) {
          try (KvCache cache = m.newCache(b, t)) {
            int pre = 4;
            int[] p = new int[b * pre];
            for (int s = 0; s < b; s++) System.arraycopy(ids, s * t, p, s * pre, pre);
            float[] got = m.forwardCached(cache, p, b, pre);
            for (int pos = pre; pos < t; pos++) {
              got = m.forwardCached(cache, new int[] {ids[pos], ids[t + pos]}, b, 1);
              for (int s = 0; s < b; s++) {
                for (int j = 0; j < v; j++) {
                  assertEquals(full[(s * t + pos) * v + j], got[s * v + j], 0.02f * scale,
                      cfg.family() + " on " + device + ", sequence " + s + " position " + pos + " logit " + j);
                }
              }
            }
            if (first == null) first = got;
            else assertArrayEquals(first, got, "a second identical decode on " + device + " gives the same logits");
          }
        }
      }
    }
  }

  private static void compareRow(float[] full, float[] got, int b, int t, int pos, int v) {
    for (int s = 0; s < b; s++) {
      for (int j = 0; j < v; j++) {
        float e = full[(s * t + pos) * v + j];
        assertEquals(e, got[s * v + j], 1e-4f * Math.max(1f, Math.abs(e)), "sequence " + s + " position " + pos + " logit " + j);
      }
    }
  }

  private static void scaleUp(Transformer m, float f) {
    for (ParameterStore.Param p : m.parameters().list()) {
      if (p.spec().shape().length < 2) continue;
      float[] w = p.master().toFloatArray();
      for (int i = 0; i < w.length; i++) w[i] *= f;
      p.master().copyFrom(w);
    }
  }

  @ParameterizedTest
  @MethodSource("configs")
  void recomputationGivesIdenticalGradients(ModelConfig cfg) {
    Random r = new Random(7);
    int b = 3, t = 5;
    int[] in = randomIds(r, b * t, cfg.vocabSize());
    int[] tg = randomIds(r, b * t, cfg.vocabSize());
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(9);
      scaleUp(m, 5f);
      float l1 = m.forward(in, tg, b, t);
      m.backward(1f);
      List<float[]> g1 = m.parameters().list().stream().map(ParameterStore.Param::grad).toList().stream().map(Tensor::toFloatArray).toList();
      m.parameters().zeroGradients();
      m.setRecompute(true);
      float l2 = m.forward(in, tg, b, t);
      m.backward(1f);
      assertEquals(l1, l2);
      List<Tensor> g2 = m.parameters().list().stream().map(ParameterStore.Param::grad).toList();
      for (int i = 0; i < g1.size(); i++) {
        assertArrayEquals(g1.get(i), g2.get(i).toFloatArray(), m.parameters().list().get(i).name());
      }
      assertTrue(l1 > 0);
    }
  }

  @ParameterizedTest
  @MethodSource("configs")
  void badInputIsRejectedWithAClearMessage(ModelConfig cfg) {
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      int v = cfg.vocabSize();
      var e = assertThrows(IllegalArgumentException.class, () -> m.forward(new int[] {0, v}, new int[] {0, 0}, 1, 2));
      assertTrue(e.getMessage().contains("inputs[1] = " + v), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> m.forward(new int[17], new int[17], 1, 17));
      assertTrue(e.getMessage().contains("exceeds the model's context 16"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> m.forward(new int[3], new int[4], 1, 3));
      assertTrue(e.getMessage().contains("targets has 4 ids"), e.getMessage());
      assertThrows(IllegalStateException.class, () -> m.backward(1f));
    }
  }
}

package dev.athanor.infer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SamplerTest {
  static final float[] LOGITS = {0.5f, 3f, -1f, 2.9f, 1f, 2.8f};  // order: 1, 3, 5, 4, 0, 2

  @Test
  void greedyIsArgmax() {
    Sampler s = new Sampler(SamplingConfig.greedy(1));
    assertEquals(1, s.sample(LOGITS, 0, LOGITS.length));
    float[] padded = new float[10];
    System.arraycopy(LOGITS, 0, padded, 4, LOGITS.length);
    assertEquals(1, s.sample(padded, 4, LOGITS.length));
  }

  @Test
  void topKAndTopPLimitTheCandidates() {
    Set<Integer> seenK = new HashSet<>(), seenP = new HashSet<>(), seenAll = new HashSet<>();
    Sampler k2 = new Sampler(new SamplingConfig(1f, 2, 1f, 1, 1, true));
    // probabilities of the top 3 are ~0.31, 0.28, 0.26 of the whole: top-p 0.5 keeps the first two
    Sampler p = new Sampler(new SamplingConfig(1f, 0, 0.5f, 2, 1, true));
    Sampler all = new Sampler(new SamplingConfig(1f, 0, 1f, 3, 1, true));
    for (int i = 0; i < 2000; i++) {
      seenK.add(k2.sample(LOGITS, 0, LOGITS.length));
      seenP.add(p.sample(LOGITS, 0, LOGITS.length));
      seenAll.add(all.sample(LOGITS, 0, LOGITS.length));
    }
    assertEquals(Set.of(1, 3), seenK);
    assertEquals(Set.of(1, 3), seenP);
    assertTrue(seenAll.size() >= 5, "unrestricted sampling should reach the tail, saw " + seenAll);
  }

  @Test
  void theSeedFixesTheSequenceAndTemperatureSharpens() {
    int[] a = draw(new Sampler(new SamplingConfig(1f, 0, 1f, 42, 1, true)));
    int[] b = draw(new Sampler(new SamplingConfig(1f, 0, 1f, 42, 1, true)));
    int[] c = draw(new Sampler(new SamplingConfig(1f, 0, 1f, 43, 1, true)));
    assertEquals(java.util.Arrays.toString(a), java.util.Arrays.toString(b));
    assertTrue(!java.util.Arrays.equals(a, c));
    int[] cold = draw(new Sampler(new SamplingConfig(0.05f, 0, 1f, 42, 1, true)));
    int top = 0;
    for (int x : cold) if (x == 1) top++;
    assertTrue(top > cold.length * 0.8, "temperature 0.05 should nearly always pick the argmax: " + top);
  }

  private static int[] draw(Sampler s) {
    int[] out = new int[200];
    for (int i = 0; i < out.length; i++) out[i] = s.sample(LOGITS, 0, LOGITS.length);
    return out;
  }

  @Test
  void eachCallDrawsOneUniformPerRowInRowOrder() {
    java.util.Random r = new java.util.Random(9);
    int rows = 3, vocab = 300;
    float[] x = new float[rows * vocab];
    for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
    SamplingConfig cfg = new SamplingConfig(0.9f, 50, 0.9f, 77, 1, true);
    Sampler draws = new Sampler(cfg);
    try (Sampler s = new Sampler(cfg);
        dev.athanor.tensor.Tensor lg = dev.athanor.tensor.Tensor.of(x, rows, vocab)) {
      for (int call = 0; call < 20; call++) {
        int[] got = s.sampleRows(lg, vocab - 1);
        for (int row = 0; row < rows; row++) {
          int want = SampleOpTest.reference(x, row * vocab, vocab, vocab - 1, 0.9f, 50, 0.9f, draws.nextUniform());
          assertEquals(want, got[row], "call " + call + " row " + row);
        }
      }
    }
  }

  @Test
  void badSettingsAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> new SamplingConfig(-1f, 0, 1f, 0, 1, true));
    assertThrows(IllegalArgumentException.class, () -> new SamplingConfig(1f, -1, 1f, 0, 1, true));
    assertThrows(IllegalArgumentException.class, () -> new SamplingConfig(1f, 0, 0f, 0, 1, true));
    assertThrows(IllegalArgumentException.class, () -> new SamplingConfig(1f, 0, 1.5f, 0, 1, true));
    assertThrows(IllegalArgumentException.class, () -> new SamplingConfig(1f, 0, 1f, 0, -1, true));
  }
}

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
  void topKRankingMatchesAStableSortByLogit() {
    java.util.Random r = new java.util.Random(9);
    for (int trial = 0; trial < 50; trial++) {
      int v = 1 + r.nextInt(300), k = 1 + r.nextInt(v);
      float[] x = new float[v + 3];
      for (int i = 0; i < x.length; i++) {
        // few distinct values so ties are common; negatives, zeros of both signs, large magnitudes
        x[i] = switch (r.nextInt(6)) {
          case 0 -> 0f;
          case 1 -> -0f;
          case 2 -> (float) r.nextInt(5) - 2;
          case 3 -> (float) (r.nextGaussian() * 1e30);
          default -> (float) r.nextGaussian();
        };
      }
      Integer[] naive = new Integer[v];
      for (int i = 0; i < v; i++) naive[i] = i;
      java.util.Arrays.sort(naive, (a, b) -> {
        int c = Float.compare(x[3 + b], x[3 + a]);
        return c != 0 ? c : Integer.compare(a, b);
      });
      int[] got = Sampler.topK(x, 3, v, k);
      for (int i = 0; i < k; i++) assertEquals(naive[i], got[i], "trial " + trial + " rank " + i);
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

package dev.athanor.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.params.ParameterStore;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class GeneratorTest {
  static final ModelConfig CFG = new ModelConfig(Family.LLAMA, 53, 24, 2, 32, 2, 1, 40, 1e-5f, 10000f, false, -1, 7);

  static Transformer model() {
    Transformer m = Transformer.create(CFG, Device.CPU);
    m.initialize(4);
    for (ParameterStore.Param p : m.parameters().list()) {  // larger weights: peaked, varied predictions
      if (p.spec().shape().length < 2) continue;
      float[] w = p.master().toFloatArray();
      for (int i = 0; i < w.length; i++) w[i] *= 30;
      p.master().copyFrom(w);
    }
    return m;
  }

  /** Greedy continuation by full recomputation (no cache), for reference. */
  static int[] greedyByRecomputation(Transformer m, int[] prompt, int n) {
    List<Integer> seq = new ArrayList<>();
    for (int t : prompt) seq.add(t);
    int[] out = new int[n];
    int v = CFG.vocabSize();
    for (int i = 0; i < n; i++) {
      int[] ids = seq.stream().mapToInt(Integer::intValue).toArray();
      int[] none = new int[ids.length];
      Arrays.fill(none, -1);
      m.forward(ids, none, 1, ids.length);
      float[] lg = m.lastLogits();
      int best = 0, off = (ids.length - 1) * v;
      for (int j = 1; j < v; j++) if (lg[off + j] > lg[off + best]) best = j;
      out[i] = best;
      seq.add(best);
    }
    return out;
  }

  @Test
  void batchedPromptsOfDifferentLengthsMatchOneByOneRecomputation() {
    try (Transformer m = model()) {
      List<int[]> prompts = List.of(new int[] {1, 2, 3}, new int[] {4, 5}, new int[] {9, 8, 7}, new int[] {11});
      SamplingConfig greedy = new SamplingConfig(0f, 0, 1f, 0, 6, false);
      List<int[]> streamed = new ArrayList<>();
      for (int i = 0; i < prompts.size(); i++) streamed.add(new int[0]);
      List<int[]> out = new Generator(m).generate(prompts, greedy, (s, t) -> {
        int[] a = Arrays.copyOf(streamed.get(s), streamed.get(s).length + 1);
        a[a.length - 1] = t;
        streamed.set(s, a);
      });
      for (int i = 0; i < prompts.size(); i++) {
        int[] expect = greedyByRecomputation(m, prompts.get(i), 6);
        assertArrayEquals(expect, out.get(i), "prompt " + i);
        assertArrayEquals(expect, streamed.get(i), "streamed tokens of prompt " + i);
      }
    }
  }

  @Test
  void stopsAtEosAndAtTheContext() {
    try (Transformer m = model()) {
      Generator g = new Generator(m);
      // whichever prompt leads to the EOS id 7 first: generation stops right after it when asked to
      boolean found = false;
      for (int first = 0; first < CFG.vocabSize() && !found; first++) {
        int[] free = g.generate(new int[] {first}, new SamplingConfig(0f, 0, 1f, 0, 20, false), null);
        int at = -1;
        for (int i = 0; i < free.length; i++) if (free[i] == 7) { at = i; break; }
        if (at < 0) continue;
        int[] stopped = g.generate(new int[] {first}, SamplingConfig.greedy(20), null);
        assertArrayEquals(Arrays.copyOf(free, at + 1), stopped);
        found = true;
      }
      assertTrue(found, "no one-token prompt led to the EOS token within 20 tokens; pick another EOS id");
      // the context (24) bounds the new tokens: a 20-token prompt gets at most 4
      int[] longPrompt = new int[20];
      assertEquals(4, g.generate(longPrompt, new SamplingConfig(0f, 0, 1f, 0, 100, false), null).length);
      var e = assertThrows(IllegalArgumentException.class, () -> g.generate(new int[24], SamplingConfig.greedy(5), null));
      assertTrue(e.getMessage().contains("context is 24"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> g.generate(new int[] {53}, SamplingConfig.greedy(5), null));
      assertThrows(IllegalArgumentException.class, () -> g.generate(new int[0], SamplingConfig.greedy(5), null));
    }
  }
}

package dev.athanor.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A model built as consecutive stages and run back to back (as a pipeline would, in one process) equals the whole
 * model bit for bit: the loss, every gradient, and the gradient of each stage's input. With tied embeddings the
 * first stage's embedding gradient and the last stage's head-copy gradient add up (head first, then the
 * embedding's sum of token gradients, added once) to the whole model's.
 */
class StageTest {
  static Stream<Arguments> cases() {
    ModelConfig gpt2 = new ModelConfig(Family.GPT2, 37, 16, 4, 16, 2, 2, 24, 1e-5f, 0f, true, -1, -1);
    ModelConfig llama = new ModelConfig(Family.LLAMA, 41, 16, 4, 24, 3, 1, 20, 1e-5f, 10000f, false, -1, -1);
    ModelConfig llamaTied = new ModelConfig(Family.LLAMA, 41, 16, 3, 24, 3, 1, 20, 1e-5f, 10000f, true, -1, -1);
    return Stream.of(Arguments.of(gpt2, new int[] {2}), Arguments.of(llama, new int[] {1, 3}),
        Arguments.of(llamaTied, new int[] {0, 2}), Arguments.of(gpt2, new int[] {4}));
  }

  @ParameterizedTest
  @MethodSource("cases")
  void stagesBackToBackEqualTheWholeModel(ModelConfig cfg, int[] cuts) {
    Random r = new Random(3);
    int b = 2, t = 9;
    int[] in = TransformerTest.randomIds(r, b * t, cfg.vocabSize());
    int[] tg = TransformerTest.randomIds(r, b * t, cfg.vocabSize());
    in[1] = in[0];  // a repeated token: its embedding row gets two contributions
    in[5] = in[0];
    tg[4] = -1;
    List<Stage> stages = new ArrayList<>();
    int from = 0;
    for (int i = 0; i <= cuts.length; i++) {
      int to = i < cuts.length ? cuts[i] : cfg.layers();
      stages.add(new Stage(from, to, i == 0, i == cuts.length));
      from = to;
    }
    try (Transformer whole = new Transformer(cfg, Device.CPU, DType.F32)) {
      whole.initialize(21);
      scaleUp(whole);
      float loss = whole.forward(in, tg, b, t);
      whole.backward(0.5f);
      List<Transformer> parts = new ArrayList<>();
      try {
        for (Stage s : stages) {
          Transformer m = new Transformer(cfg, Device.CPU, DType.F32, s);
          parts.add(m);
          m.loadWeights(whole.weights());  // every stage's tensor, including the head's copy of a tied matrix
        }
        // forward, stage by stage
        float stageLoss = Float.NaN;
        for (int i = 0; i < parts.size(); i++) {
          Transformer m = parts.get(i);
          boolean last = i == parts.size() - 1;
          stageLoss = i == 0 ? m.forward(in, last ? tg : null, b, t) : m.forward(parts.get(i - 1).output(), last ? tg : null, b, t);
        }
        assertEquals(Float.floatToIntBits(loss), Float.floatToIntBits(stageLoss), "loss");
        // backward, in reverse
        for (int i = parts.size() - 1; i >= 0; i--) {
          Transformer m = parts.get(i);
          if (i == parts.size() - 1) {
            m.backward(0.5f);
          } else {
            m.backward(parts.get(i + 1).inputGradient());
          }
        }
        // every gradient of the whole model, from the stage that owns it
        String emb = cfg.embeddingName();
        for (ParameterStore.Param p : whole.parameters().list()) {
          float[] want = p.grad().toFloatArray();
          List<Transformer> owners = parts.stream().filter(m -> m.parameters().contains(p.name())).toList();
          float[] got;
          if (owners.size() == 1) {
            got = owners.get(0).parameters().get(p.name()).grad().toFloatArray();
          } else {
            // tied embedding split over the first and the last stage: head contribution + embedding contribution
            assertEquals(emb, p.name());
            assertTrue(cfg.tiedEmbeddings());
            Tensor head = parts.get(parts.size() - 1).parameters().get(emb).grad();
            Tensor embedding = parts.get(0).parameters().get(emb).grad();
            try (Tensor sum = Ops.add(head, embedding)) {
              got = sum.toFloatArray();
            }
          }
          assertArrayEquals(want, got, p.name());
        }
      } finally {
        for (Transformer m : parts) m.close();
      }
    }
  }

  @ParameterizedTest
  @MethodSource("cases")
  void aMiddleStageHoldsOnlyItsBlocks(ModelConfig cfg, int[] cuts) {
    Stage mid = new Stage(1, 2, false, false);
    try (Transformer m = new Transformer(cfg, Device.CPU, DType.F32, mid)) {
      for (ParameterStore.Param p : m.parameters().list()) assertTrue(p.name().contains(".1."), p.name());
      assertEquals(List.of(ModelConfig.blockUnit(1)), m.parameters().units().stream().map(u -> u.name()).toList());
      assertThrows(IllegalStateException.class, () -> m.forward(new int[] {1}, null, 1, 1));
      assertThrows(IllegalStateException.class, () -> m.backward(1f));
      try (KvCache c = m.newCache(1, 4)) {
        assertThrows(IllegalStateException.class, () -> m.forwardCached(c, new int[] {1}, 1, 1));
      }
    }
    assertThrows(IllegalArgumentException.class, () -> new Stage(2, 1, true, true));
    assertThrows(IllegalArgumentException.class,
        () -> new Transformer(cfg, Device.CPU, DType.F32, new Stage(0, cfg.layers() + 1, true, true)));
  }

  static void scaleUp(Transformer m) {
    ParameterStore s = m.parameters();
    try (Tensor scaled = Ops.scale(s.flat(Role.MASTER), 4f)) {
      s.flat(Role.MASTER).copyFrom(scaled);
    }
    for (ParameterStore.Param p : s.list()) {
      if (p.spec().shape().length == 1) Ops.randUniform(p.master(), 99, p.range().start(), 0.5f, 1.5f);
    }
    s.syncWeights();
  }
}

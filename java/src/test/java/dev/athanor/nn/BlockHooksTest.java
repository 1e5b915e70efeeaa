package dev.athanor.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The hooks are called at every unit boundary, in execution order, and may touch what they are handed. */
class BlockHooksTest {
  static final ModelConfig TIED = new ModelConfig(Family.GPT2, 37, 16, 2, 16, 2, 2, 24, 1e-5f, 0f, true, -1, -1);
  static final ModelConfig UNTIED = new ModelConfig(Family.LLAMA, 41, 16, 2, 24, 3, 1, 20, 1e-5f, 10000f, false, -1, -1);

  static final class Recorder implements BlockHooks {
    final List<String> calls = new ArrayList<>();

    @Override
    public void beforeWeights(Unit unit, Pass pass) {
      calls.add("before " + unit.name() + " " + pass);
    }

    @Override
    public void afterWeights(Unit unit, Pass pass) {
      calls.add("after " + unit.name() + " " + pass);
    }

    @Override
    public void afterGradients(Unit unit) {
      calls.add("grads " + unit.name());
    }

    @Override
    public void saveActivations(int block, BlockActs acts) {
      calls.add("save " + block);
    }

    @Override
    public void restoreActivations(int block, BlockActs acts) {
      calls.add("restore " + block);
    }
  }

  @Test
  void trainingCallsFollowTheExecutionOrder() {
    Random r = new Random(1);
    for (ModelConfig cfg : List.of(TIED, UNTIED)) {
      for (boolean recompute : new boolean[] {false, true}) {
        try (Transformer m = Transformer.create(cfg, Device.CPU)) {
          m.initialize(3);
          m.setRecompute(recompute);
          Recorder rec = new Recorder();
          m.setHooks(rec);
          int[] ids = TransformerTest.randomIds(r, 6, cfg.vocabSize());
          m.forward(ids, ids, 2, 3);
          m.backward(1f);
          List<String> want = new ArrayList<>();
          String tiedBefore = cfg.tiedEmbeddings() ? "before embedding " : null;
          want.addAll(List.of("before embedding FORWARD", "after embedding FORWARD"));
          for (int l = 0; l < 2; l++) {
            want.add("before block." + l + " FORWARD");
            if (!recompute) want.add("save " + l);
            want.add("after block." + l + " FORWARD");
          }
          want.add("before head FORWARD");
          if (tiedBefore != null) want.add(tiedBefore + "FORWARD");
          if (tiedBefore != null) want.add("after embedding FORWARD");
          want.add("after head FORWARD");
          want.add("before head BACKWARD");
          if (tiedBefore != null) want.add(tiedBefore + "BACKWARD");
          if (tiedBefore != null) want.add("after embedding BACKWARD");
          want.addAll(List.of("after head BACKWARD", "grads head"));
          for (int l = 1; l >= 0; l--) {
            want.add("before block." + l + " BACKWARD");
            if (!recompute) want.add("restore " + l);
            want.addAll(List.of("after block." + l + " BACKWARD", "grads block." + l));
          }
          want.addAll(List.of("before embedding BACKWARD", "after embedding BACKWARD", "grads embedding"));
          assertEquals(want, rec.calls, cfg.family() + " recompute=" + recompute);
        }
      }
    }
  }

  @Test
  void decodingCallsEveryUnitOncePerStep() {
    try (Transformer m = Transformer.create(UNTIED, Device.CPU); KvCache c = m.newCache(1, 8)) {
      m.initialize(3);
      Recorder rec = new Recorder();
      m.setHooks(rec);
      m.forwardCached(c, new int[] {1, 2, 3}, 1, 3);
      assertEquals(List.of("before embedding DECODE", "after embedding DECODE", "before block.0 DECODE",
          "after block.0 DECODE", "before block.1 DECODE", "after block.1 DECODE", "before head DECODE",
          "after head DECODE"), rec.calls);
    }
  }

  /**
   * A hook that spills each block's activations to host copies after the forward, poisons the buffers, and puts
   * them back before the backward (what an activation offload does) leaves the gradients bit for bit unchanged.
   */
  @Test
  void activationsSpilledAndRestoredByHooksGiveTheSameGradients() {
    Random r = new Random(4);
    int[] ids = TransformerTest.randomIds(r, 8, UNTIED.vocabSize());
    float[][] plain;
    try (Transformer m = new Transformer(UNTIED, Device.CPU, DType.F32)) {
      m.initialize(5);
      m.forward(ids, ids, 2, 4);
      m.backward(1f);
      plain = m.parameters().list().stream().map(p -> p.grad().toFloatArray()).toArray(float[][]::new);
    }
    try (Transformer m = new Transformer(UNTIED, Device.CPU, DType.F32)) {
      m.initialize(5);
      List<List<float[]>> spilled = new ArrayList<>();
      m.setHooks(new BlockHooks() {
        @Override
        public void saveActivations(int block, BlockActs acts) {
          List<float[]> copies = new ArrayList<>();
          for (Tensor t : acts.buffers()) {
            copies.add(t.dtype() == DType.F32 ? t.toFloatArray() : null);
            if (t.dtype() == DType.F32) dev.athanor.ops.Ops.fill(t, Float.NaN);
          }
          spilled.add(copies);
        }

        @Override
        public void restoreActivations(int block, BlockActs acts) {
          List<float[]> copies = spilled.get(block);
          List<Tensor> bufs = acts.buffers();
          for (int i = 0; i < bufs.size(); i++) if (copies.get(i) != null) bufs.get(i).copyFrom(copies.get(i));
        }
      });
      m.forward(ids, ids, 2, 4);
      m.backward(1f);
      for (int i = 0; i < plain.length; i++) {
        assertArrayEquals(plain[i], m.parameters().list().get(i).grad().toFloatArray(), m.parameters().list().get(i).name());
      }
    }
  }
}

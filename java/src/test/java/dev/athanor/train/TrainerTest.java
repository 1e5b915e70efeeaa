package dev.athanor.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import java.util.List;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

public class TrainerTest {
  static final ModelConfig CFG = ModelConfig.gpt2(97, 32, 2, 32, 2);

  /** A shard of 3000 seeded random tokens of {@link #CFG}'s vocabulary (also used by the offload tests). */
  public static Path shard(Path dir) {
    Path p = dir.resolve("t.bin");
    SplittableRandom r = new SplittableRandom(3);
    try (TokenShardWriter w = TokenShardWriter.create(p, CFG.vocabSize())) {
      for (int i = 0; i < 3000; i++) w.write(r.nextInt(CFG.vocabSize()));
    }
    return p;
  }

  static float[] losses(Path data, int batch, int accum, int steps) {
    TrainConfig tc = new TrainConfig(steps, batch, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f,
        1f, false, 0);
    try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(CFG, Device.CPU);
        Trainer t = new Trainer(m, tc, new DataLoader(d, batch, 16, false, 0))) {
      m.initialize(8);
      float[] l = new float[steps];
      for (int s = 0; s < steps; s++) l[s] = t.step().loss();
      return l;
    }
  }

  @Test
  void gradientAccumulationEqualsTheLargerBatch(@TempDir Path tmp) {
    // sequential loader: 2 micro-batches of B=2 read exactly the rows of one batch of B=4
    Path data = shard(tmp);
    float[] big = losses(data, 4, 1, 6), accumulated = losses(data, 2, 2, 6);
    for (int s = 0; s < big.length; s++) {
      assertEquals(big[s], accumulated[s], 1e-4 * big[s], "step " + s);
    }
  }

  @Test
  void scheduleWarmsUpThenDecaysToTheMinimum() {
    TrainConfig c = new TrainConfig(100, 1, 1, 1, 1f, 0.1f, 10, Schedule.COSINE, 0f, 0.9f, 0.95f, 1e-8f, 0f, false, 0);
    assertEquals(0.1f, c.lrAt(0), 1e-6);
    assertEquals(1f, c.lrAt(9), 1e-6);
    assertEquals(1f, c.lrAt(10), 1e-6);
    assertEquals(0.55f, c.lrAt(55), 1e-6);
    assertEquals(0.1f + 0.45f * (1 + (float) Math.cos(Math.PI * 89 / 90)), c.lrAt(99), 1e-6);
    TrainConfig k = new TrainConfig(100, 1, 1, 1, 1f, 0.1f, 0, Schedule.CONSTANT, 0f, 0.9f, 0.95f, 1e-8f, 0f, false, 0);
    assertEquals(1f, k.lrAt(99));
    assertThrows(IllegalArgumentException.class, () -> new TrainConfig(1, 1, 1, 1, 1f, 2f, 0, Schedule.COSINE, 0f, 0.9f,
        0.95f, 1e-8f, 0f, false, 0));
    assertThrows(IllegalArgumentException.class, () -> Schedule.parse("linear"));
  }

  /**
   * With accumulation, each micro-batch's gradient is formed on its own (from zero) and added to the step's gradient
   * once: the step's gradient is exactly g0 + g1, which is what a data-parallel sum in rank order reproduces.
   */
  @Test
  void accumulatedGradientIsEachMicroBatchFormedAloneThenAddedOnce(@TempDir Path tmp) {
    Path data = shard(tmp);
    TrainConfig tc = new TrainConfig(1, 2, 16, 2, 0f, 0f, 0, Schedule.CONSTANT, 0f, 0.9f, 0.95f, 1e-8f, 0f, false, 0);
    try (TokenDataset d = TokenDataset.open(data); Transformer a = Transformer.create(CFG, Device.CPU);
        Transformer b = Transformer.create(CFG, Device.CPU);
        Trainer t = new Trainer(a, tc, new DataLoader(d, 2, 16, false, 0))) {
      a.initialize(8);
      b.initialize(8);
      assertEquals(Role.GRAD_ACC, t.stepGradient());
      t.step();
      DataLoader loader = new DataLoader(d, 2, 16, false, 0);
      ParameterStore s = b.parameters();
      float[][] g = new float[2][];
      for (int i = 0; i < 2; i++) {
        DataLoader.Batch batch = loader.next();
        s.zeroGradients();
        b.forward(batch.inputs(), batch.targets(), 2, 16);
        b.backward(0.5f);
        g[i] = s.flat(Role.GRAD).toFloatArray();
      }
      float[] acc = a.parameters().flat(Role.GRAD_ACC).toFloatArray();
      for (int i = 0; i < acc.length; i++) {
        if (Float.floatToIntBits(acc[i]) != Float.floatToIntBits(g[0][i] + g[1][i])) {
          throw new AssertionError("element " + i + ": " + acc[i] + " != " + g[0][i] + " + " + g[1][i]);
        }
      }
    }
  }

  /** Whole training steps give the same bits at any CPU thread count: losses, gradient norms and final weights. */
  @Test
  void trainingIsBitIdenticalForAnyThreadCount(@TempDir Path tmp) {
    Path data = shard(tmp);
    List<ModelConfig> configs = List.of(CFG, ModelConfig.llama(97, 32, 2, 48, 4, 2, 40, 10000f, false));
    TrainConfig tc = new TrainConfig(3, 3, 16, 2, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, true, 5);
    int before = NativeRuntime.cpuThreads();
    java.util.Map<ModelConfig, String> reference = new java.util.HashMap<>();
    try {
      for (int threads : new int[] {1, 2, 3}) {
        NativeRuntime.setCpuThreads(threads);
        for (ModelConfig cfg : configs) {
          StringBuilder bits = new StringBuilder();
          try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(cfg, Device.CPU);
              Trainer t = new Trainer(m, tc, new DataLoader(d, 3, 16, true, 5))) {
            m.initialize(8);
            while (!t.done()) {
              StepResult r = t.step();
              bits.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
            }
            bits.append(java.util.Arrays.hashCode(m.parameters().flat(Role.MASTER).toFloatArray()));
          }
          String want = reference.putIfAbsent(cfg, bits.toString());
          if (want != null) assertEquals(want, bits.toString(), cfg.family() + " at " + threads + " threads");
        }
      }
    } finally {
      NativeRuntime.setCpuThreads(before);
    }
  }

  /**
   * ZeRO 2's trainer path in one process (the shard is everything, the default reducer folds the micro-batch gradient
   * into the shard accumulator): the same bits as the plain trainer with a whole GRAD_ACC, at accum 3; no GRAD_ACC is
   * allocated.
   */
  @Test
  void gradientShardEqualsTheWholeAccumulatorBitForBit(@TempDir Path tmp) {
    Path data = shard(tmp);
    TrainConfig tc = new TrainConfig(3, 2, 16, 3, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    String[] bits = new String[2];
    for (int zero2 = 0; zero2 < 2; zero2++) {
      StringBuilder b = new StringBuilder();
      try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(CFG, Device.CPU)) {
        m.initialize(8);
        try (Trainer t = zero2 == 1 ? new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), m.parameters().all(), true)
            : new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5))) {
          assertEquals(zero2 == 1, t.gradientShard() != null);
          assertEquals(zero2 == 0, m.parameters().has(Role.GRAD_ACC), "GRAD_ACC only without a gradient shard");
          while (!t.done()) {
            StepResult r = t.step();
            b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
          }
        }
        b.append(java.util.Arrays.toString(m.parameters().flat(Role.MASTER).toFloatArray()));
      }
      bits[zero2] = b.toString();
    }
    assertEquals(bits[0], bits[1]);
  }
}

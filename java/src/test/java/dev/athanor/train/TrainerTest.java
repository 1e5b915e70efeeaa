package dev.athanor.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainerTest {
  static final ModelConfig CFG = ModelConfig.gpt2(97, 32, 2, 32, 2);

  static Path shard(Path dir) {
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
}

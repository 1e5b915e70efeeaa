package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A checkpoint taken on one device resumes on the other: CPU (FP32) to CUDA (BF16 compute, FP32 masters)
 * and back, continuing with the losses the original device would have produced, within BF16 tolerance.
 * Skipped without a GPU.
 */
class CrossDeviceResumeTest {
  static final int STEPS = 8, SPLIT = 4;

  /** Losses of steps [SPLIT, STEPS) on {@code second}, after SPLIT steps on {@code first} and a checkpoint. */
  static float[] run(TrainFixture f, Path ckpt, Device first, Device second) {
    TrainConfig tc = new TrainConfig(STEPS, 4, 16, 1, 3e-3f, 3e-4f, 2, dev.athanor.train.Schedule.COSINE, 0.1f, 0.9f,
        0.95f, 1e-8f, 1f, true, 5);
    try (TokenDataset data = TokenDataset.open(f.data)) {
      try (Transformer m = Transformer.create(TrainFixture.model(), first);
          Trainer t = new Trainer(m, tc, new DataLoader(data, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()));
          CheckpointManager mgr = new CheckpointManager(ckpt, 2, false)) {
        m.initialize(tc.seed());
        for (int s = 0; s < SPLIT; s++) t.step();
        mgr.save(t);
      }
      float[] losses = new float[STEPS - SPLIT];
      try (Transformer m = Transformer.create(TrainFixture.model(), second);
          Trainer t = new Trainer(m, tc, new DataLoader(data, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()))) {
        CheckpointManager.latestValid(ckpt, w -> {}).orElseThrow().restore(t);
        assertEquals(SPLIT, t.nextStep());
        for (int s = SPLIT; s < STEPS; s++) losses[s - SPLIT] = t.step().loss();
      }
      return losses;
    }
  }

  @Test
  void cpuToCudaAndBack(@TempDir Path tmp) throws Exception {
    assumeTrue(Cuda.isAvailable(), "CUDA is unavailable: " + Cuda.unavailableReason());
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    Device cpu = Device.CPU, gpu = Device.cuda(0);
    float[] cpuOnly = run(f, tmp.resolve("a"), cpu, cpu);
    float[] cpuThenGpu = run(f, tmp.resolve("b"), cpu, gpu);
    float[] gpuThenCpu = run(f, tmp.resolve("c"), gpu, cpu);
    for (int i = 0; i < cpuOnly.length; i++) {
      // BF16 activations on the GPU: a few parts in a thousand of the loss (loose: 3%)
      assertEquals(cpuOnly[i], cpuThenGpu[i], 3e-2 * cpuOnly[i], "CPU checkpoint resumed on CUDA, step " + (SPLIT + i));
      assertEquals(cpuOnly[i], gpuThenCpu[i], 3e-2 * cpuOnly[i], "CUDA checkpoint resumed on the CPU, step " + (SPLIT + i));
    }
  }
}

package dev.athanor.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** After warm-up a training step on CUDA allocates no device or pinned memory natively: the caches serve it. */
class StepAllocationTest {
  /** {@link TrainerTest#CFG}'s vocabulary, context and layers, with head dim 32 (64 / 2), one CUDA attention supports. */
  static final ModelConfig CFG = ModelConfig.gpt2(TrainerTest.CFG.vocabSize(), TrainerTest.CFG.maxSeqLen(),
      TrainerTest.CFG.layers(), 64, 2);

  @Test
  void noNativeAllocationInsideAStepAfterWarmUp(@TempDir Path tmp) {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
    Path data = TrainerTest.shard(tmp);
    TrainConfig tc = new TrainConfig(8, 4, 16, 2, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 0);
    MemoryManager mm = MemoryManager.global();
    try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(CFG, Device.cuda(0));
        Trainer t = new Trainer(m, tc, new DataLoader(d, 4, 16, false, 0))) {
      m.initialize(8);
      for (int s = 0; s < 3; s++) t.step(); // warm-up: the caches fill
      long device = mm.nativeAllocations(Tier.DEVICE), pinned = mm.nativeAllocations(Tier.HOST_PINNED);
      long deviceFrees = mm.nativeFrees(Tier.DEVICE);
      for (int s = 0; s < 3; s++) assertTrue(Float.isFinite(t.step().loss()));
      assertEquals(device, mm.nativeAllocations(Tier.DEVICE), "cudaMalloc inside a step: " + mm.report());
      assertEquals(pinned, mm.nativeAllocations(Tier.HOST_PINNED), "cudaHostAlloc inside a step: " + mm.report());
      assertEquals(deviceFrees, mm.nativeFrees(Tier.DEVICE), "cudaFree inside a step: " + mm.report());
      assertTrue(mm.reservedBytes(Device.cuda(0)) >= mm.liveBytes(Device.cuda(0)), mm.report());
    }
  }
}

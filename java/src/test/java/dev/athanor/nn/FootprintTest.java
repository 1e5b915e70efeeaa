package dev.athanor.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.params.ParamSpec;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.checkpoint.CheckpointManager;
import java.nio.file.Path;
import java.time.Duration;
import java.util.EnumSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The memory estimate against what allocating really reserves: on the CPU every HOST byte of the weights, gradients,
 * AdamW state, activations, workspace, KV cache, loading and checkpoint buffers is accounted, so the estimate must be
 * exact; on CUDA (when present) the DEVICE bytes reserved with the cache emptied, as well.
 */
class FootprintTest {
  private static final MemoryManager MM = MemoryManager.global();
  private static final Set<Tier> HOST = EnumSet.of(Tier.HOST);

  @TempDir Path tmp;

  static ModelConfig gpt2() {
    return new ModelConfig(Family.GPT2, 37, 16, 3, 16, 2, 2, 24, 1e-5f, 0f, true, -1, -1);
  }

  static ModelConfig llama() {
    return new ModelConfig(Family.LLAMA, 41, 16, 2, 24, 3, 1, 20, 1e-5f, 10000f, false, -1, -1);
  }

  static Stream<Arguments> trainingCases() {
    return Stream.of(Arguments.of(gpt2(), DType.F32, false, 1), Arguments.of(gpt2(), DType.F32, true, 2),
        Arguments.of(gpt2(), DType.BF16, false, 2), Arguments.of(llama(), DType.F32, false, 1),
        Arguments.of(llama(), DType.BF16, true, 1));
  }

  private static long live() {
    return MM.liveBytes(Tier.HOST);
  }

  private TokenDataset randomTokens(int vocab, int n) {
    Path shard = tmp.resolve("tokens-" + vocab + "-" + n + ".bin");
    try (TokenShardWriter w = TokenShardWriter.create(shard, vocab)) {
      w.write(new SplittableRandom(3).ints(n, 0, vocab).toArray());
    }
    return TokenDataset.open(shard);
  }

  private static TrainConfig config(int batch, int seq, int accum) {
    return new TrainConfig(3, batch, seq, accum, 1e-3f, 1e-3f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
  }

  @ParameterizedTest
  @MethodSource("trainingCases")
  void trainingFootprintIsWhatTrainingAllocates(ModelConfig c, DType dt, boolean recompute, int accum) {
    int b = 2, t = 8;
    Footprint f = Footprint.training(c, Device.CPU, dt, b, t, accum, recompute);
    try (TokenDataset data = randomTokens(c.vocabSize(), 400)) {
      long live0 = live();
      try (Transformer m = new Transformer(c, Device.CPU, dt)) {
        m.initialize(1);
        m.setRecompute(recompute);
        assertEquals(f.bytes(Component.WEIGHTS, HOST), live() - live0, "weights");
        long live1 = live();
        try (Trainer tr = new Trainer(m, config(b, t, accum), new DataLoader(data, b, t, false, 1))) {
          assertEquals(f.bytes(Component.GRADIENTS, HOST) + f.bytes(Component.OPTIMIZER, HOST), live() - live1,
              "gradients and AdamW state");
          long live2 = live();
          tr.step();
          assertEquals(f.bytes(Component.ACTIVATIONS, HOST) + f.bytes(Component.WORKSPACE, HOST), live() - live2,
              "activations and workspace");
          assertEquals(f.bytes(Tier.HOST), live() - live0, "everything");
          assertEquals(0, f.bytes(Component.SCRATCH, EnumSet.allOf(Tier.class)), "no kernel scratch on the CPU");

          CheckpointManager mgr = new CheckpointManager(tmp.resolve("ckpt"), 1, false);
          try (mgr) {
            long live3 = live();
            mgr.save(tr);  // the snapshot's host buffers stay for the next save
            assertEquals(f.withCheckpoints().bytes(Component.CHECKPOINT, HOST), live() - live3, "checkpoint buffers");
          }
        }
      }
    }
  }

  @Test
  void recomputationKeepsOneBlocksActivations() {
    ModelConfig c = gpt2();
    long all = Footprint.training(c, Device.CPU, DType.F32, 4, 16, 1, false).bytes(Component.ACTIVATIONS, HOST);
    long one = Footprint.training(c, Device.CPU, DType.F32, 4, 16, 1, true).bytes(Component.ACTIVATIONS, HOST);
    long residual = (c.layers() + 1L) * 4 * 16 * c.hidden() * 4;
    assertEquals(c.layers(), (double) (all - residual) / (one - residual), 1e-9, "L blocks' activations against one");
  }

  @ParameterizedTest
  @MethodSource("configs")
  void forwardAndDecodingFootprintsAreWhatTheyAllocate(ModelConfig c) {
    int b = 2, prompt = 5, cap = 9;
    try (Transformer m = Transformer.create(c, Device.CPU)) {
      long live0 = live();
      m.forward(new int[b * cap], new int[b * cap], b, cap);
      Footprint fwd = Footprint.forward(c, Device.CPU, DType.F32, b, cap);
      assertEquals(fwd.bytes(Component.ACTIVATIONS, HOST) + fwd.bytes(Component.WORKSPACE, HOST), live() - live0, "forward");
      m.releaseWorkspace();

      Footprint dec = Footprint.decoding(c, Device.CPU, DType.F32, b, prompt, cap);
      long live1 = live();
      try (KvCache cache = m.newCache(b, cap)) {
        m.forwardCached(cache, new int[b * prompt], b, prompt);
        m.forwardCached(cache, new int[b], b, 1);
        assertEquals(dec.bytes(Component.KV_CACHE, HOST) + dec.bytes(Component.WORKSPACE, HOST), live() - live1, "decoding");
      }
      assertEquals(0, dec.bytes(Tier.HOST_PINNED), "no pinned logits on the CPU");
    }
  }

  /**
   * Sequence parallelism on rank 0 of tp 2 (collectives that copy this rank's part: the allocations are the point, not
   * the values), B*T = 21 rows cut 11 + 10: the activations and buffers it saves against tensor parallelism alone, as
   * {@link Footprint#stageActivationBytes(ModelConfig, Stage, Device, DType, int, int, boolean, int, int, boolean)} and
   * {@link Footprint#stageBufferBytes(ModelConfig, Stage, Device, DType, int, int, int, boolean)} estimate them, are
   * what the workspace allocates less, to the byte.
   */
  @ParameterizedTest
  @MethodSource("tensorParallelConfigs")
  void sequenceParallelSavingsAreWhatTheWorkspaceAllocatesLess(ModelConfig c) {
    int b = 3, t = 7;
    TensorParallel.TokenCollectives copies = new TensorParallel.TokenCollectives() {
      @Override
      public void allGather(Tensor in, Tensor out, long[] counts) {
        try (Tensor flat = out.view(out.numel()); Tensor mine = flat.slice(0, 0, in.numel()); Tensor src = in.view(in.numel())) {
          mine.copyFrom(src);
        }
      }

      @Override
      public void reduceScatter(Tensor in, Tensor out, long[] counts) {
        try (Tensor flat = in.view(in.numel()); Tensor mine = flat.slice(0, 0, out.numel()); Tensor dst = out.view(out.numel())) {
          dst.copyFrom(mine);
        }
      }
    };
    long[] measured = new long[2], estimated = new long[2];
    for (int k = 0; k < 2; k++) {
      boolean sp = k == 1;
      try (Transformer m = new Transformer(c, Device.CPU, DType.F32, new TensorParallel(2, 0), TensorParallel.AllReduce.NONE)) {
        if (sp) m.setSequenceParallel(copies);
        long live0 = live();
        m.forward(new int[b * t], new int[b * t], b, t);
        measured[k] = live() - live0;
      }
      estimated[k] = Footprint.stageActivationBytes(c, Stage.whole(c), Device.CPU, DType.F32, b, t, false, 1, 2, sp)
          + Footprint.stageBufferBytes(c, Stage.whole(c), Device.CPU, DType.F32, b, t, 2, sp);
    }
    assertTrue(measured[1] < measured[0], "sequence parallelism allocates less: " + measured[1] + " vs " + measured[0]);
    assertEquals(estimated[0] - estimated[1], measured[0] - measured[1], "the bytes sequence parallelism saves");
    assertTrue(estimated[1] >= measured[1], "the estimate bounds the allocation");
  }

  static Stream<ModelConfig> tensorParallelConfigs() {
    return Stream.of(gpt2(), ModelConfig.llama(41, 16, 2, 16, 2, 2, 24, 10000f, false));
  }

  static Stream<ModelConfig> configs() {
    return Stream.of(gpt2(), llama());
  }

  @ParameterizedTest
  @MethodSource("configs")
  void loadingFootprintIsTheHostCopiesOfTheWeights(ModelConfig c) {
    try (Transformer m = Transformer.create(c, Device.CPU)) {
      HfModelDir.save(tmp.resolve("model"), c, m.weights(), DType.F32);
    }
    long live0 = live();
    try (HfModelDir.Loaded loaded = HfModelDir.load(tmp.resolve("model"))) {
      assertEquals(Footprint.weights(c, Device.CPU, DType.F32).withLoading().bytes(Component.LOADING, HOST), live() - live0);
    }
  }

  @Test
  void parameterCountIsOneBlockTimesTheLayers() {
    for (ModelConfig c : ModelConfig.presets().values()) {
      long n = 0;
      for (ParamSpec s : c.parameterSpecs()) n += s.numel();
      assertEquals(n, c.parameterCount(), c.toString());
    }
    assertEquals(124_439_808L, ModelConfig.preset("gpt2").parameterCount());
  }

  @Test
  void aMillionLayersAreSizedWithoutBuildingThem() {
    ModelConfig huge = ModelConfig.gpt2(50257, 1024, 1_000_000, 768, 12);
    Footprint f = assertTimeoutPreemptively(Duration.ofSeconds(10),
        () -> Footprint.training(huge, Device.CPU, DType.F32, 8, 256, 1, false));
    long perBlockParams = 12L * 768 * 768 + 13L * 768;
    assertTrue(f.bytes(Component.WEIGHTS, HOST) >= 1_000_000L * perBlockParams * 4, f.toString());
    assertTrue(f.total() > (100L << 40), f.toString());
  }

  @Test
  void sumsThatOverflowSaturate() {
    ModelConfig wide = new ModelConfig(Family.LLAMA, 1 << 30, 1 << 20, 1 << 20, 1 << 20, 1 << 10, 1 << 10, 1 << 20, 1e-5f,
        1e4f, false, -1, -1);
    Footprint f = Footprint.training(wide, Device.CPU, DType.F32, 1 << 20, 1 << 20, 1, false);
    assertEquals(Long.MAX_VALUE, f.total());
    assertEquals("more than 8 EiB", Footprint.size(f.total()));
  }

  @Test
  void onCudaTheDeviceFootprintIsWhatIsReserved() {
    Assumptions.assumeTrue(Cuda.isAvailable(), "no CUDA device");
    Device d = Device.cuda(0);
    ModelConfig c = new ModelConfig(Family.GPT2, 300, 64, 2, 64, 2, 2, 256, 1e-5f, 0f, true, -1, -1);
    int b = 4, t = 32;
    Footprint f = Footprint.training(c, d, DType.BF16, b, t, 1, false);
    try (TokenDataset data = randomTokens(c.vocabSize(), 2000)) {
      MM.emptyCache();
      long scratch0 = ExecutionContext.current(d).scratchBytes();
      long reserved0 = MM.reservedBytes(d) - scratch0;
      try (Transformer m = Transformer.create(c, d);
          Trainer tr = new Trainer(m, config(b, t, 1), new DataLoader(data, b, t, false, 1))) {
        m.initialize(1);
        tr.step();
        Cuda.synchronize(0);
        MM.emptyCache();
        long scratch = ExecutionContext.current(d).scratchBytes();
        long withoutScratch = f.bytes(Tier.DEVICE) - f.bytes(Component.SCRATCH, EnumSet.of(Tier.DEVICE));
        assertEquals(withoutScratch, MM.reservedBytes(d) - scratch - reserved0, f.toString());
        assertTrue(scratch <= Math.max(scratch0, f.bytes(Component.SCRATCH, EnumSet.of(Tier.DEVICE))),
            "scratch arena " + scratch + " within the estimate " + f);
      }
    }
  }
}

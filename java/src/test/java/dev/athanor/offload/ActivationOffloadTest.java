package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.OutOfBudgetException;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 9: the blocks' saved activations on the DISK tier between each micro-batch's forward and backward ({@link
 * ActivationPager}): the in-memory run's bits (losses, norms, weights, moments) for GPT-2 and Llama, 1 and 2 threads,
 * accumulation 1 and 2, alone and with every role on DISK; the DISK bytes per step measured equal to the plan's
 * estimate; the HOST peak lower by the offloaded blocks' activations and within a budget that the in-memory run
 * exceeds; files named by block and micro-batch, removed at the end; clear errors.
 */
class ActivationOffloadTest {
  static final ModelConfig GPT2 = ModelConfig.gpt2(97, 32, 5, 32, 2);
  static final ModelConfig LLAMA = ModelConfig.llama(97, 32, 4, 48, 4, 2, 40, 10000f, false);

  static OffloadConfig activations(Path dir) {
    return new OffloadConfig(Set.of(), dir, OffloadConfig.DEFAULT_CHUNK_BYTES, true, Set.of(), true);
  }

  /** The DISK bytes a step moves for the activations: each offloaded block written and read once per micro-batch. */
  static long activationTraffic(ModelConfig cfg, TrainConfig tc) {
    long block = Footprint.blockActivationBytes(cfg, Device.CPU, DType.F32, tc.batch(), tc.seq());
    return tc.accum() * ActivationPager.bytesPerMicroBatch(block, Footprint.offloadedBlocks(Stage.whole(cfg)));
  }

  /** The DISK bytes (both ways) of each step of a run with {@code off}. */
  static List<Long> stepTraffic(Path data, ModelConfig cfg, TrainConfig tc, OffloadConfig off) {
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), off)) {
      model.initialize(8);  // writes the weights to DISK when they are there: before the steps
      List<Long> out = new java.util.ArrayList<>();
      TransferStats.Snapshot mark = t.transfers();  // continuous: a deferred update's reads start between steps
      while (!t.done()) {
        t.step();
        TransferStats.Snapshot now = t.transfers(), step = now.minus(mark);
        mark = now;
        out.add(step.diskToHost() + step.hostToDisk());
      }
      return out;
    }
  }

  @Test
  void activationsOnDiskTrainBitIdenticallyToMemory(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    int threadsBefore = NativeRuntime.cpuThreads();
    List<int[]> settings = List.of(new int[] {1, 1}, new int[] {1, 2}, new int[] {2, 1}, new int[] {2, 2});  // threads, accum
    try {
      for (int[] setting : settings) {
        NativeRuntime.setCpuThreads(setting[0]);
        for (ModelConfig cfg : List.of(GPT2, LLAMA)) checkBits(data, dir, cfg, setting[1]);
      }
    } finally {
      NativeRuntime.setCpuThreads(threadsBefore);
    }
    try (Stream<Path> left = Files.list(dir)) {
      assertEquals(0, left.count(), "offload files deleted");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The in-memory run's bits with the activations on DISK: alone, without read-ahead, with every role on DISK too. */
  private static void checkBits(Path data, Path dir, ModelConfig cfg, int accum) {
    String what = cfg.family() + ", " + NativeRuntime.cpuThreads() + " threads, accum " + accum;
    TrainConfig tc = PagedTrainingTest.tc(3, accum);
    PagedTrainingTest.Run host = PagedTrainingTest.train(data, cfg, tc, OffloadConfig.NONE);
    PagedTrainingTest.Run disk = PagedTrainingTest.train(data, cfg, tc, activations(dir));
    PagedTrainingTest.assertSameBits(host, disk, what + ", activations on DISK");
    long traffic = activationTraffic(cfg, tc);
    assertTrue(traffic > 0, what + ": something is offloaded");
    assertEquals(3 * traffic / 2, disk.traffic().hostToDisk(), what + ": bytes written in 3 steps");
    assertEquals(3 * traffic / 2, disk.traffic().diskToHost(), what + ": bytes read in 3 steps");
    PagedTrainingTest.assertSameBits(host, PagedTrainingTest.train(data, cfg, tc, activations(dir).withPrefetch(false)),
        what + ", activations on DISK, no read-ahead");
    PagedTrainingTest.assertSameBits(host, PagedTrainingTest.train(data, cfg, tc,
        OffloadConfig.allOnDisk(dir).withActivationsOnDisk(true)), what + ", activations and every role on DISK");
  }

  /**
   * The per-step DISK bytes measured equal the plan's estimate ({@link OffloadPlan#diskTrafficPerStep()}), for the
   * activations alone and with the state on DISK too; the HOST peak drops by the offloaded blocks' activations.
   */
  @Test
  void measuredTrafficIsThePlansEstimate(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
      for (int accum : new int[] {1, 2}) {
        TrainConfig tc = PagedTrainingTest.tc(2, accum);
        OffloadPlanner.Job job = new OffloadPlanner.Job(cfg, Device.CPU, tc, false, false, false, OffloadConfig.DEFAULT_CHUNK_BYTES)
            .withActivationsOnDisk(true);
        for (Set<Role> roles : List.of(Set.<Role>of(), OffloadConfig.OFFLOADABLE)) {
          OffloadPlan plan = OffloadPlanner.place(job, roles);
          assertTrue(plan.activationsOnDisk(), "the plan offloads the activations");
          String what = cfg.family() + ", accum " + accum + ", roles " + roles;
          assertEquals(activationTraffic(cfg, tc), plan.activationTrafficPerStep(), what);
          List<Long> measured = stepTraffic(data, cfg, tc, plan.config(dir));
          if (roles.isEmpty()) {
            assertEquals(List.of(plan.diskTrafficPerStep(), plan.diskTrafficPerStep()), measured,
                what + ": each step's DISK bytes against the plan's estimate");
          } else {  // the activations add their estimate to what the roles move, per step over the run
            // (the update deferred into the next forward starts its reads as a step ends, so how they split between
            // two steps' counts depends on timing; the run's total does not)
            List<Long> state = stepTraffic(data, cfg, tc, plan.config(dir).withActivationsOnDisk(false));
            long extra = measured.stream().mapToLong(Long::longValue).sum() - state.stream().mapToLong(Long::longValue).sum();
            assertEquals(2 * plan.activationTrafficPerStep(), extra, what + ", two steps");
          }
        }
        PagedTrainingTest.Run host = PagedTrainingTest.train(data, cfg, tc, OffloadConfig.NONE);
        PagedTrainingTest.Run disk = PagedTrainingTest.train(data, cfg, tc, activations(dir));
        long saved = Footprint.offloadedBlocks(Stage.whole(cfg))
            * Footprint.blockActivationBytes(cfg, Device.CPU, DType.F32, tc.batch(), tc.seq());
        assertEquals(host.peakHost() - saved, disk.peakHost(), cfg.family() + ", accum " + accum + ": HOST peak "
            + disk.peakHost() + " vs " + host.peakHost() + " in memory");
      }
    }
  }

  /**
   * A model whose activations dominate trains within a HOST budget its in-memory run exceeds (the allocator enforces
   * the budget: going over it throws), with the in-memory bits.
   */
  @Test
  void activationsOnDiskTrainWithinAHostBudgetMemoryExceeds(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    ModelConfig cfg = ModelConfig.gpt2(97, 32, 8, 32, 2);
    TrainConfig tc = new TrainConfig(2, 8, 32, 1, 1e-2f, 1e-3f, 1, dev.athanor.train.Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f,
        1f, true, 5);
    OffloadPlanner.Job job = new OffloadPlanner.Job(cfg, Device.CPU, tc, false, false, false);
    OffloadPlan keep = OffloadPlanner.place(job, Set.of());
    OffloadPlan disk = OffloadPlanner.place(job.withActivationsOnDisk(true), Set.of());
    PagedTrainingTest.Run host = PagedTrainingTest.train(data, cfg, tc, OffloadConfig.NONE);
    MemoryManager mm = MemoryManager.global();
    long saved = keep.bytes(Tier.HOST) - disk.bytes(Tier.HOST);
    assertEquals(6 * Footprint.blockActivationBytes(cfg, Device.CPU, DType.F32, tc.batch(), tc.seq()), saved, "6 of 8 blocks");
    long budget = host.peakHost() - saved / 2;  // half the planned saving below the in-memory run's peak
    long oldBudget = mm.budgetBytes(Tier.HOST);
    PagedTrainingTest.Run run;
    try {
      mm.setBudget(Tier.HOST, mm.liveBytes(Tier.HOST) + budget);
      run = PagedTrainingTest.train(data, cfg, tc, disk.config(tmp.resolve("offload")));
    } finally {
      mm.setBudget(Tier.HOST, oldBudget);
    }
    assertTrue(run.peakHost() <= budget, "HOST peak " + run.peakHost() + " within the budget " + budget);
    assertTrue(host.peakHost() > budget, "the in-memory run's peak " + host.peakHost() + " exceeds it");
    PagedTrainingTest.assertSameBits(host, run, "8 blocks, activations on DISK within the budget");
  }

  /** Files named by block and micro-batch while training; removed when the trainer closes; a file lost is named. */
  @Test
  void filesAreNamedByBlockAndMicroBatchAndRemoved(@TempDir Path tmp) throws IOException {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    TrainConfig tc = PagedTrainingTest.tc(3, 1);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), activations(dir))) {
      model.initialize(8);
      assertTrue(model.offloadedActivations(), "the trainer turned the model's ring on");
      t.step();
      List<String> names;
      Path sub;
      try (Stream<Path> s = Files.list(dir)) {
        sub = s.findFirst().orElseThrow();
      }
      try (Stream<Path> s = Files.list(sub)) {
        names = s.map(p -> p.getFileName().toString()).sorted().toList();
      }
      // 5 blocks, a ring of 2: blocks 0 to 2 go to DISK
      assertEquals(List.of("block.0.micro.0.activations.bin", "block.1.micro.0.activations.bin",
          "block.2.micro.0.activations.bin"), names);
      assertEquals(Footprint.blockActivationFileBytes(GPT2, Device.CPU, DType.F32, tc.batch(), tc.seq()),
          Files.size(sub.resolve(names.get(1))), "the file's size: each buffer page-aligned");
      Files.delete(sub.resolve(names.get(1)));
      OffloadIOException e = assertThrows(OffloadIOException.class, t::step);
      assertTrue(e.getMessage().contains("block.1.micro.0.activations.bin") && e.getMessage().contains("activations")
          && e.getMessage().contains("DISK"), e.getMessage());
    }
    try (Stream<Path> left = Files.list(dir)) {
      assertEquals(0, left.count(), "offload files and their directory deleted");
    }
  }

  @Test
  void refusesWhatItCannotDo(@TempDir Path tmp) {
    try (Transformer model = Transformer.create(GPT2, Device.CPU)) {
      model.setRecompute(true);
      var e = assertThrows(IllegalStateException.class, () -> new ActivationPager(model, tmp, true));
      assertTrue(e.getMessage().contains("recomputed"), e.getMessage());
      model.setRecompute(false);
      model.setActivationSets(2);
      e = assertThrows(IllegalStateException.class, () -> new ActivationPager(model, tmp, true));
      assertTrue(e.getMessage().contains("activation set"), e.getMessage());
      model.setActivationSets(1);
      try (ActivationPager p = new ActivationPager(model, tmp, true)) {
        assertTrue(model.offloadedActivations());
        e = assertThrows(IllegalStateException.class, () -> model.setRecompute(true));
        assertTrue(e.getMessage().contains("offloaded"), e.getMessage());
        assertNotNull(p.directory());
      }
      assertFalse(model.offloadedActivations(), "closing the pager turns the ring off");
    }
    // the DISK budget is too small for the files: the first forward says so, naming the tier
    Path data = OffloadedOptimizerTest.shard(tmp);
    TrainConfig tc = PagedTrainingTest.tc(1, 1);
    MemoryManager mm = MemoryManager.global();
    long old = mm.budgetBytes(Tier.DISK);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()),
            activations(tmp.resolve("offload")))) {
      model.initialize(8);
      mm.setBudget(Tier.DISK, mm.liveBytes(Tier.DISK) + 4096);
      var full = assertThrows(OutOfBudgetException.class, t::step);
      assertTrue(full.getMessage().contains("DISK"), full.getMessage());
    } finally {
      mm.setBudget(Tier.DISK, old);
    }
  }
}

package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Weights and gradients on the DISK tier, paged unit by unit through host windows by a {@link UnitPager} during the
 * forward and backward, with the moments streamed by the optimizer: the same bits as the run with everything in
 * memory (losses, gradient norms, final weights, moments), for GPT-2 (tied head) and Llama (untied), 1 and 2
 * threads, with and without accumulation and read-ahead; the clipping norm formed during the backward without
 * reading the gradient back; and a model whose training state is more than 8 times the HOST budget trains within
 * that budget.
 */
class PagedTrainingTest {
  static final ModelConfig GPT2 = OffloadedOptimizerTest.GPT2;
  static final ModelConfig LLAMA = ModelConfig.llama(97, 32, 3, 48, 4, 2, 40, 10000f, false);

  static TrainConfig tc(int steps, int accum) {
    return OffloadedOptimizerTest.tc(steps, accum);
  }

  /** What a run produced, as raw bits, and its traffic. */
  record Run(int[] losses, int[] norms, byte[] masters, byte[] m, byte[] v, TransferStats.Snapshot traffic, long peakHost) {
    OffloadedOptimizerTest.Run bits() {
      return new OffloadedOptimizerTest.Run(losses, norms, masters, m, v, peakHost, 0);
    }
  }

  static Run train(Path data, ModelConfig cfg, TrainConfig tc, OffloadConfig off) {
    MemoryManager.global().resetPeak();
    long diskBefore = MemoryManager.global().liveBytes(Tier.DISK);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), off)) {
      model.initialize(8);  // after the trainer: the masters are already on DISK when offloaded
      ParameterStore s = model.parameters();
      assertEquals(off.onDisk(Role.MASTER), s.isPaged(Role.MASTER), "MASTER paged");
      assertEquals(off.onDisk(Role.GRAD), s.isPaged(Role.GRAD), "GRAD paged");
      List<Integer> losses = new ArrayList<>(), norms = new ArrayList<>();
      while (!t.done()) {
        StepResult r = t.step();
        losses.add(Float.floatToRawIntBits(r.loss()));
        norms.add(Float.floatToRawIntBits(r.gradNorm()));
      }
      long peak = MemoryManager.global().peakBytes(Tier.HOST);
      byte[] masters = OffloadedOptimizerTest.bytes(new ArrayList<>(model.weights().values()));  // DISK views when paged
      Run run = new Run(losses.stream().mapToInt(Integer::intValue).toArray(), norms.stream().mapToInt(Integer::intValue).toArray(),
          masters, OffloadedOptimizerTest.bytes(t.optimizer().firstMoments()),
          OffloadedOptimizerTest.bytes(t.optimizer().secondMoments()), t.transfers(), peak);
      t.close();
      // closing the trainer reads the weights back into memory: the model is as an in-memory run leaves it
      assertFalse(s.isPaged(Role.MASTER));
      assertArrayEquals(masters, OffloadedOptimizerTest.bytes(new ArrayList<>(model.weights().values())), "weights after close");
      return run;
    } finally {
      assertEquals(diskBefore, MemoryManager.global().liveBytes(Tier.DISK), "DISK bytes given back on close");
    }
  }

  /**
   * {@code off} with a few units of each of its roles on DISK kept in memory, different units per role (the tied
   * embeddings' gradient, formed twice per backward, among them).
   */
  static OffloadConfig someResident(OffloadConfig off) {
    java.util.Map<Role, Set<String>> units = java.util.Map.of(Role.MASTER, Set.of("embedding", "block.1"),
        Role.GRAD, Set.of("embedding", "block.0", "head"), Role.ADAM_M, Set.of("block.1", "head"), Role.ADAM_V, Set.of("block.0"));
    for (Role r : off.diskRoles()) off = off.withResident(r, units.get(r));
    return off;
  }

  static void assertSameBits(Run want, Run got, String what) {
    OffloadedOptimizerTest.assertSameBits(want.bits(), got.bits(), what);
  }

  @Test
  void weightsGradientsAndMomentsOnDiskTrainBitIdenticallyToMemory(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    OffloadConfig all = OffloadConfig.allOnDisk(dir);
    int before = NativeRuntime.cpuThreads();
    try {
      for (int threads : new int[] {1, 2}) {
        NativeRuntime.setCpuThreads(threads);
        for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
          for (int accum : new int[] {1, 3}) {
            String what = cfg.family() + ", " + threads + " threads, accum " + accum;
            Run host = train(data, cfg, tc(3, accum), OffloadConfig.NONE);
            Run disk = train(data, cfg, tc(3, accum), all);
            assertSameBits(host, disk, what + ", everything on DISK");
            assertTrue(disk.traffic().diskToHost() > 0 && disk.traffic().hostToDisk() > 0, what + ": traffic " + disk.traffic());
            assertEquals(TransferStats.Snapshot.ZERO, host.traffic(), what + ": no traffic in memory");
            assertSameBits(host, train(data, cfg, tc(3, accum), all.withPrefetch(false).withChunkBytes(4000)),
                what + ", no read-ahead, small chunks");
            assertSameBits(host, train(data, cfg, tc(3, accum), new OffloadConfig(Set.of(Role.MASTER), dir, 4000)),
                what + ", weights only");
            // some units' weights resident: never paged, updated in place by the optimizer
            assertSameBits(host, train(data, cfg, tc(3, accum), all.withResidentWeights(Set.of("embedding", "block.1"))),
                what + ", embedding and block.1 resident");
            assertSameBits(host, train(data, cfg, tc(3, accum), new OffloadConfig(Set.of(Role.MASTER), dir, 4000, false,
                Set.of("head", "block.0"))), what + ", weights only, head and block.0 resident, no read-ahead");
            assertSameBits(host, train(data, cfg, tc(3, accum), new OffloadConfig(EnumSet.of(Role.GRAD, Role.ADAM_V), dir, 4000)),
                what + ", gradients and ADAM_V");
            // some units' gradients and moments resident too: formed, accumulated and updated in memory, never on DISK
            assertSameBits(host, train(data, cfg, tc(3, accum), someResident(all.withChunkBytes(4000))),
                what + ", some units' weights, gradients and moments resident");
            assertSameBits(host, train(data, cfg, tc(3, accum), someResident(all).withResidentWeights(Set.of())),
                what + ", some units' gradients and moments resident, every unit's weights paged");
            assertSameBits(host, train(data, cfg, tc(3, accum), someResident(OffloadConfig.optimizerStateOnDisk(dir)
                .withChunkBytes(4000))), what + ", moments only, some units' resident");
          }
        }
      }
    } finally {
      NativeRuntime.setCpuThreads(before);
    }
    try (Stream<Path> left = Files.list(dir)) {
      assertEquals(0, left.count(), "offload files deleted");
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /**
   * Units of each role kept in memory move no DISK bytes: over a run of N steps the measured DISK traffic is N times the
   * plan's estimate ({@link OffloadPlan#diskTrafficPerStep()}, which leaves the resident units out), plus, when the
   * update is deferred (weights and gradients on DISK), one read of the paged weights (the first forward reads its
   * own; every later step's first forward uses the weights its deferred update read); less than with every unit paged.
   */
  @Test
  void residentUnitsMoveNoDiskBytesAndTheTrafficIsThePlans(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    int steps = 3;
    for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
      for (int accum : new int[] {1, 2}) {
        TrainConfig tc = DeferredUpdateTest.tc(steps, accum);
        OffloadPlanner.Job job = new OffloadPlanner.Job(cfg, Device.CPU, tc, false, false, false, 4000);
        for (Set<Role> roles : List.of(OffloadConfig.OFFLOADABLE, EnumSet.of(Role.GRAD, Role.ADAM_M, Role.ADAM_V),
            EnumSet.of(Role.ADAM_M, Role.ADAM_V))) {
          OffloadPlan plan = OffloadPlanner.place(job, roles, someResident(new OffloadConfig(roles, dir, 4000)).residentUnits());
          OffloadPlan paged = OffloadPlanner.place(job, roles);
          String what = cfg.family() + ", accum " + accum + ", " + roles + ", resident " + plan.residentUnits();
          for (OffloadPlan.Placement x : plan.placements()) {
            boolean disk = roles.contains(x.role()) && !plan.resident(x.role()).contains(x.unit());
            assertEquals(disk ? Tier.DISK : Tier.HOST, x.tier(), what + ": " + x);
          }
          assertTrue(plan.diskTrafficPerStep() < paged.diskTrafficPerStep(), what + ": less traffic than every unit paged");
          boolean defers = roles.contains(Role.MASTER) && roles.contains(Role.GRAD);
          DeferredUpdateTest.Run run = DeferredUpdateTest.train(data, cfg, tc, plan.config(dir), steps, defers);
          TransferStats.Snapshot total = TransferStats.Snapshot.ZERO;
          for (TransferStats.Snapshot x : run.traffic()) total = total.plus(x);
          long pagedWeights = 0;
          for (OffloadPlan.Placement x : plan.placements()) if (x.role() == Role.MASTER && x.tier() == Tier.DISK) pagedWeights += x.bytes();
          assertEquals(steps * plan.diskTrafficPerStep() + (defers ? pagedWeights : 0), total.hostToDisk() + total.diskToHost(),
              what + ": DISK bytes of " + steps + " steps (" + total + ")");
        }
      }
    }
  }

  /**
   * A model whose weights, gradients and moments are more than 8 times the HOST budget trains within it (the budget
   * is enforced by the allocator: going over it throws), with the in-memory run's bits.
   */
  @Test
  void stateEightTimesTheHostBudgetTrainsWithinIt(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    ModelConfig cfg = ModelConfig.gpt2(97, 16, 24, 256, 4);  // 24 blocks of 0.79M parameters: 19M in all
    TrainConfig tc = new TrainConfig(2, 1, 16, 1, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, true, 5);
    Run host = train(data, cfg, tc, OffloadConfig.NONE);
    OffloadConfig all = OffloadConfig.allOnDisk(tmp.resolve("offload")).withChunkBytes(256 << 10);
    MemoryManager mm = MemoryManager.global();
    long state, budget;
    try (Transformer probe = Transformer.create(cfg, Device.CPU)) {
      state = 4 * probe.parameters().bytes(Role.MASTER);  // weights, gradients, two moments
    }
    budget = state / 8;
    long oldBudget = mm.budgetBytes(Tier.HOST);
    Run disk;
    // the whole run is held to the budget, from building the model on: the weights are never all in memory
    mm.setBudget(Tier.HOST, mm.liveBytes(Tier.HOST) + budget);
    mm.resetPeak();
    long base = mm.liveBytes(Tier.HOST);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.withoutWeights(cfg, Device.CPU);
        OffloadedWeights weights = OffloadedWeights.attach(model, tmp.resolve("offload"), true);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), all, weights)) {
      assertFalse(weights.restoresOnClose(), "the weights were never in memory");
      model.initialize(8);  // tensor by tensor through host memory onto DISK
      List<Integer> losses = new ArrayList<>(), norms = new ArrayList<>();
      while (!t.done()) {
        StepResult r = t.step();
        losses.add(Float.floatToRawIntBits(r.loss()));
        norms.add(Float.floatToRawIntBits(r.gradNorm()));
      }
      long used = mm.peakBytes(Tier.HOST) - base;
      mm.setBudget(Tier.HOST, oldBudget);
      assertTrue(used <= budget, "HOST peak " + used + " within the budget " + budget);
      assertTrue(state >= 8 * budget, "state " + state + " >= 8 x budget " + budget);
      byte[] masters = OffloadedOptimizerTest.bytes(new ArrayList<>(model.weights().values()));
      disk = new Run(losses.stream().mapToInt(Integer::intValue).toArray(), norms.stream().mapToInt(Integer::intValue).toArray(),
          masters, OffloadedOptimizerTest.bytes(t.optimizer().firstMoments()),
          OffloadedOptimizerTest.bytes(t.optimizer().secondMoments()), t.transfers(), used);
    } finally {
      mm.setBudget(Tier.HOST, oldBudget);
    }
    assertSameBits(host, disk, "19M parameters, state 8x the HOST budget");
  }

  /**
   * The clipping norm from the partials the backward formed while each unit's gradient was still in memory: with
   * units larger than a norm chunk (chunks inside a unit and chunks straddling two), {@link UnitPager#globalNorm()}
   * reads nothing back from DISK and has the bits of the norm streamed from the gradient's files (a second call,
   * which reads every chunk back); and training with it has the in-memory bits, with and without accumulation.
   */
  @Test
  void clippingNormFormedDuringTheBackwardReadsNothingBack(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    ModelConfig cfg = ModelConfig.gpt2(97, 16, 3, 320, 4);  // blocks of 1.23M parameters: more than a chunk each
    try (Transformer probe = Transformer.create(cfg, Device.CPU)) {
      long biggest = probe.parameters().units().stream().mapToLong(u -> u.elements().length()).max().orElseThrow();
      assertTrue(biggest > dev.athanor.ops.Ops.NORM_CHUNK, "a unit of " + biggest + " elements spans chunks");
    }
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
        UnitFiles f = new UnitFiles(model.parameters(), Set.of(Role.MASTER, Role.GRAD), tmp.resolve("pager"))) {
      model.initialize(8);
      ParameterStore s = model.parameters();
      UnitPager p = new UnitPager(model, f, true);
      var before = model.hooks();
      model.setHooks(dev.athanor.nn.BlockHooks.both(before, p));
      try {
        DataLoader.Batch b = new DataLoader(d, 2, 16, false, 5).next();
        p.beginMicroBatch(0);
        model.forward(b.inputs(), b.targets(), b.batch(), b.seq());
        model.backward(1f);
        p.flush();
        TransferStats.Snapshot t0 = f.stats().snapshot();
        float fused = p.globalNorm();
        TransferStats.Snapshot t1 = f.stats().snapshot();
        assertEquals(0, t1.minus(t0).diskToHost(), "bytes read back for the norm formed during the backward");
        float streamed = p.globalNorm();
        assertEquals(4 * s.numel(), f.stats().snapshot().minus(t1).diskToHost(), "the second call reads the gradient back");
        assertTrue(fused > 0, "norm " + fused);
        assertEquals(Float.floatToRawIntBits(streamed), Float.floatToRawIntBits(fused), "fused " + fused + " vs streamed " + streamed);
      } finally {
        model.setHooks(before);
        p.close(false);
      }
    }
    for (int accum : new int[] {1, 2}) {
      TrainConfig tc = new TrainConfig(2, 2, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, true, 5);
      Run host = train(data, cfg, tc, OffloadConfig.NONE);
      Run disk = train(data, cfg, tc, OffloadConfig.allOnDisk(tmp.resolve("offload")));
      assertSameBits(host, disk, "units larger than a norm chunk, accum " + accum);
    }
  }

  @Test
  void pagedRolesRefuseWhatTheyCannotDo(@TempDir Path tmp) {
    try (Transformer model = Transformer.create(GPT2, Device.CPU);
        UnitFiles f = new UnitFiles(model.parameters(), Set.of(Role.MASTER, Role.GRAD), tmp)) {
      ParameterStore s = model.parameters();
      UnitPager p = new UnitPager(model, f, true);
      try {
        var e = assertThrows(IllegalStateException.class, () -> s.flat(Role.MASTER));
        assertTrue(e.getMessage().contains("paged"), e.getMessage());
        var unit = s.unit(ModelConfig.blockUnit(0));
        e = assertThrows(IllegalStateException.class, () -> s.slice(Role.MASTER, unit.elements()));
        assertTrue(e.getMessage().contains("block.0") && e.getMessage().contains("not mapped"), e.getMessage());
        assertEquals(Tier.DISK, s.view(Role.MASTER, unit.firstParam()).tier());
        try (Tensor w = Tensor.zeros(dev.athanor.tensor.DType.F32, Device.CPU, 7)) {
          var bad = assertThrows(IllegalArgumentException.class, () -> s.map(Role.MASTER, unit, w));
          assertTrue(bad.getMessage().contains(Long.toString(unit.elements().length())), bad.getMessage());
        }
      } finally {
        p.close(true);
      }
      assertFalse(s.isPaged(Role.MASTER));
      assertFalse(s.isPaged(Role.GRAD));
    }
  }
}

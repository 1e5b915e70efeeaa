package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Training with the optimizer on the host ({@link HostOffload}, {@code dev.athanor.train.HostOptimizer}): on the CPU a
 * BF16 model (its masters and moments moved to HOST_PINNED, or the moments on DISK) against the same model trained
 * in memory, bit for bit (the same CPU AdamW kernel on the same elements), each step's host update deferred into the
 * next forward or made at once; a checkpoint taken with an update pending resumes exactly; a step failing in its
 * forward leaves the state the last step left, and an update failing on the worker leaves none a checkpoint captures;
 * on CUDA (skipped without a GPU) a small GPT-2
 * in BF16 against the in-memory CUDA run, within a tolerance: the host's AdamW kernel and the device's give the
 * same formula but can round differently (the device compiler contracts multiply-adds), so the weights drift apart by
 * ULPs and the losses by little.
 */
class HostOffloadTrainingTest {
  static final ModelConfig GPT2 = OffloadedOptimizerTest.GPT2;
  static final ModelConfig LLAMA = OffloadedOptimizerTest.LLAMA;

  /** What a run produced: per-step losses and norms (raw bits), final masters and moments (raw bits). */
  record Run(int[] losses, int[] norms, byte[] masters, byte[] m, byte[] v, float[] lossValues) {}

  static Run train(Path data, ModelConfig cfg, Device device, TrainConfig tc, HostOffload host) {
    try (TokenDataset d = TokenDataset.open(data); Transformer model = new Transformer(cfg, device, DType.BF16)) {
      model.initialize(8);
      DataLoader loader = new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
      try (Trainer t = host == null ? new Trainer(model, tc, loader) : new Trainer(model, tc, loader, host)) {
        ParameterStore s = model.parameters();
        if (host != null) {
          assertEquals(Tier.HOST_PINNED, s.placement(Role.MASTER).tier(), "masters pinned");
          assertEquals(device.isCuda() ? Tier.DEVICE : Tier.HOST, s.placement(Role.WEIGHT).tier(), "compute weights stay");
          assertEquals(device.isCuda() ? Tier.DEVICE : Tier.HOST, s.placement(Role.GRAD).tier(), "gradients stay");
          for (Role r : List.of(Role.ADAM_M, Role.ADAM_V)) {
            assertEquals(host.moments().onDisk(r), t.optimizer().onDisk(r), r + " on DISK");
            if (!host.moments().onDisk(r)) assertEquals(Tier.HOST_PINNED, s.flat(r).tier(), r + " pinned");
          }
        }
        assertEquals(host != null && host.deferUpdates(), t.defersUpdates());
        List<Integer> losses = new ArrayList<>(), norms = new ArrayList<>();
        float[] values = new float[tc.steps()];
        while (!t.done()) {
          StepResult r = t.step();
          values[(int) r.step()] = r.loss();
          losses.add(Float.floatToRawIntBits(r.loss()));
          norms.add(Float.floatToRawIntBits(r.gradNorm()));
          if (host != null) {  // every step's update but the last is left to the worker and the next forward
            assertEquals(t.defersUpdates() && !t.done(), t.hostOptimizer().updatePending(), "step " + r.step() + " pending");
          }
        }
        if (host != null) {
          boolean summed = tc.accum() > 1 && host.sumOnHost();
          assertEquals(summed, t.hostOptimizer().gradients() == dev.athanor.train.HostOptimizer.Gradients.SUMMED);
          assertEquals(tc.accum() > 1 && !summed, s.has(Role.GRAD_ACC), "the step's sum where the model computes");
          // F32 gradient down (each micro-batch's when summed on the host), BF16 weights up
          long perStep = s.numel() * (4L * (summed ? tc.accum() : 1) + 2) * tc.steps();
          assertEquals(perStep, t.hostOptimizer().bytesMoved(), "bytes between the host and where the model computes");
          // one micro-batch a step, or summed on the host: every unit's gradient went to the host from the backward's hooks
          long streamed = tc.accum() == 1 && host.streamGradients() ? 1 : summed ? tc.accum() : 0;
          assertEquals(streamed * s.units().size() * tc.steps(), t.hostOptimizer().gradientsStreamed());
        }
        try (var m = s.flat(Role.MASTER).to(Tier.HOST)) {
          return new Run(losses.stream().mapToInt(Integer::intValue).toArray(), norms.stream().mapToInt(Integer::intValue).toArray(),
              OffloadedOptimizerTest.raw(m.toFloatArray()), OffloadedOptimizerTest.bytes(t.optimizer().firstMoments()),
              OffloadedOptimizerTest.bytes(t.optimizer().secondMoments()), values);
        }
      }
    }
  }

  static void assertSameBits(Run want, Run got, String what) {
    assertArrayEquals(want.losses(), got.losses(), what + ": losses");
    assertArrayEquals(want.norms(), got.norms(), what + ": gradient norms");
    assertArrayEquals(want.masters(), got.masters(), what + ": final masters");
    assertArrayEquals(want.m(), got.m(), what + ": first moments");
    assertArrayEquals(want.v(), got.v(), what + ": second moments");
  }

  /**
   * Bit for bit against the in-memory run: the host update deferred (moments pinned, and on DISK; with one micro-batch
   * the gradients streamed, and through the two slots, whose copies read the step's gradient in GRAD while the next
   * forward runs) and made at once, with 1 and 2 CPU threads.
   */
  @Test
  void bf16OnTheCpuTrainsBitIdenticallyWithTheOptimizerOnTheHost(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    HostOffload disk = new HostOffload(new OffloadConfig(Set.of(Role.ADAM_M, Role.ADAM_V), tmp.resolve("off"),
        OffloadedOptimizerTest.SMALL_CHUNK));
    int saved = dev.athanor.runtime.NativeRuntime.cpuThreads();
    try {
      for (int threads : new int[] {1, 2}) {
        dev.athanor.runtime.NativeRuntime.setCpuThreads(threads);
        for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
          for (int accum : new int[] {1, 2}) {
            String what = cfg.family() + ", accum " + accum + ", " + threads + " threads";
            TrainConfig tc = OffloadedOptimizerTest.tc(4, accum);
            Run memory = train(data, cfg, Device.CPU, tc, null);
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, HostOffload.PINNED), what + ", pinned, deferred");
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, disk), what + ", moments on DISK, deferred");
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, HostOffload.PINNED.updatedAtOnce()), what + ", pinned, at once");
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, disk.updatedAtOnce()), what + ", moments on DISK, at once");
            if (accum == 1) {
              assertSameBits(memory, train(data, cfg, Device.CPU, tc, new HostOffload(OffloadConfig.NONE, false)),
                  what + ", pinned, gradients through the slots, deferred");
            }
          }
        }
      }
    } finally {
      dev.athanor.runtime.NativeRuntime.setCpuThreads(saved);
    }
  }

  /**
   * The step's gradient sum formed on the host ({@link HostOffload#sumOnHost()}): at accum 2 and 3, 1 and 2 threads,
   * the moments pinned and on DISK, the updates deferred and made at once, bit for bit against the in-memory run with
   * the same accumulation (its sum in GRAD_ACC on the device, the norm from it); the device holds no GRAD_ACC.
   */
  @Test
  void theStepsGradientSumOnTheHostTrainsBitIdentically(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    HostOffload disk = new HostOffload(new OffloadConfig(Set.of(Role.ADAM_M, Role.ADAM_V), tmp.resolve("off"),
        OffloadedOptimizerTest.SMALL_CHUNK)).withSumOnHost();
    HostOffload pinned = HostOffload.PINNED.withSumOnHost();
    int saved = dev.athanor.runtime.NativeRuntime.cpuThreads();
    try {
      for (int threads : new int[] {1, 2}) {
        dev.athanor.runtime.NativeRuntime.setCpuThreads(threads);
        for (int accum : new int[] {2, 3}) {
          for (ModelConfig cfg : accum == 2 ? List.of(GPT2, LLAMA) : List.of(LLAMA)) {
            String what = cfg.family() + ", accum " + accum + ", " + threads + " threads, the sum on the host";
            TrainConfig tc = OffloadedOptimizerTest.tc(4, accum);
            Run memory = train(data, cfg, Device.CPU, tc, null);
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, pinned), what + ", pinned, deferred");
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, disk), what + ", moments on DISK, deferred");
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, pinned.updatedAtOnce()), what + ", pinned, at once");
            assertSameBits(memory, train(data, cfg, Device.CPU, tc, disk.updatedAtOnce()), what + ", moments on DISK, at once");
          }
        }
      }
    } finally {
      dev.athanor.runtime.NativeRuntime.setCpuThreads(saved);
    }
  }

  /**
   * A checkpoint taken between steps while the last step's host update is pending (moments on DISK): the save finishes
   * the update first, so it holds the state that step left (the in-memory run's after as many steps), the run goes on to
   * the uninterrupted run's end, and a fresh trainer resumed from it (the optimizer on the host, and in memory) finishes
   * with the uninterrupted run's bits.
   */
  @Test
  void aCheckpointWithTheOptimizerOnTheHostResumesExactly(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    TrainConfig tc = OffloadedOptimizerTest.tc(6, 2);
    Run whole = train(data, GPT2, Device.CPU, tc, null);
    Run three = trainSteps(data, GPT2, tc, null, 3);
    for (boolean sum : new boolean[] {false, true}) {  // the step's gradient sum on the device, and on the host
      HostOffload disk = new HostOffload(OffloadConfig.optimizerStateOnDisk(tmp.resolve("off-" + sum)));
      checkpointResumes(data, tc, sum ? disk.withSumOnHost() : disk, whole, three, tmp.resolve("ck-" + sum));
    }
  }

  /** Saves {@code host}'s run after 3 steps into {@code ck}, finishes it, and resumes fresh trainers from it. */
  private static void checkpointResumes(Path data, TrainConfig tc, HostOffload disk, Run whole, Run three, Path ck) {
    try (TokenDataset d = TokenDataset.open(data); Transformer model = new Transformer(GPT2, Device.CPU, DType.BF16);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), disk);
        dev.athanor.train.checkpoint.CheckpointManager cm = new dev.athanor.train.checkpoint.CheckpointManager(ck, 2, true)) {
      model.initialize(8);
      for (int s = 0; s < 3; s++) t.step();
      cm.prepare(t);
      assertTrue(t.hostOptimizer().updatePending(), "step 2's update pending at the save");
      cm.save(t);
      cm.awaitWrite();
      assertFalse(t.hostOptimizer().updatePending(), "the save finished it");
      assertSameState(three, t, "saved after 3 steps");
      List<Integer> tail = new ArrayList<>();
      while (!t.done()) tail.add(Float.floatToRawIntBits(t.step().loss()));
      assertArrayEquals(java.util.Arrays.copyOfRange(whole.losses(), 3, 6), tail.stream().mapToInt(Integer::intValue).toArray(),
          "losses after the save");
      assertSameState(whole, t, "the run that saved, at its end");
    }
    for (HostOffload resumeWith : java.util.Arrays.asList(HostOffload.PINNED, HostOffload.PINNED.withSumOnHost(), null)) {
      try (TokenDataset d = TokenDataset.open(data); Transformer model = new Transformer(GPT2, Device.CPU, DType.BF16)) {
        DataLoader loader = new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
        try (Trainer t = resumeWith == null ? new Trainer(model, tc, loader) : new Trainer(model, tc, loader, resumeWith)) {
          dev.athanor.train.checkpoint.CheckpointManager.latestValid(ck, w -> { }).orElseThrow().restore(t);
          List<Integer> losses = new ArrayList<>();
          while (!t.done()) losses.add(Float.floatToRawIntBits(t.step().loss()));
          String what = disk + " resumed " + (resumeWith == null ? "in memory" : "with " + resumeWith);
          assertArrayEquals(java.util.Arrays.copyOfRange(whole.losses(), 3, 6),
              losses.stream().mapToInt(Integer::intValue).toArray(), what + ": losses");
          assertSameState(whole, t, what);
        }
      }
    }
  }

  /** {@code stop} steps of {@code tc.steps()} ({@code host} null: in memory), then the state as a checkpoint sees it. */
  static Run trainSteps(Path data, ModelConfig cfg, TrainConfig tc, HostOffload host, int stop) {
    try (TokenDataset d = TokenDataset.open(data); Transformer model = new Transformer(cfg, Device.CPU, DType.BF16)) {
      model.initialize(8);
      DataLoader loader = new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
      try (Trainer t = host == null ? new Trainer(model, tc, loader) : new Trainer(model, tc, loader, host)) {
        for (int s = 0; s < stop; s++) t.step();
        assertTrue(t.consistentState().isPresent());
        try (var m = model.parameters().flat(Role.MASTER).to(Tier.HOST)) {
          return new Run(new int[0], new int[0], OffloadedOptimizerTest.raw(m.toFloatArray()),
              OffloadedOptimizerTest.bytes(t.optimizer().firstMoments()), OffloadedOptimizerTest.bytes(t.optimizer().secondMoments()),
              new float[0]);
        }
      }
    }
  }

  /** {@code t}'s masters, moments (and, settled, no update pending) against {@code want}'s. */
  static void assertSameState(Run want, Trainer t, String what) {
    assertTrue(t.consistentState().isPresent(), what + ": a consistent state");
    try (var m = t.model().parameters().flat(Role.MASTER).to(Tier.HOST)) {
      assertArrayEquals(want.masters(), OffloadedOptimizerTest.raw(m.toFloatArray()), what + ": masters");
    }
    assertArrayEquals(want.m(), OffloadedOptimizerTest.bytes(t.optimizer().firstMoments()), what + ": first moments");
    assertArrayEquals(want.v(), OffloadedOptimizerTest.bytes(t.optimizer().secondMoments()), what + ": second moments");
  }

  /**
   * A step that fails in its forward (in block 1, after the hooks waited for the units before it and for block 1's
   * new weights) with the last step's host update pending: the trainer finishes that update, so the state is the one
   * the last step left (the in-memory run's after 3 steps); a checkpoint of it is taken, and retrying the step finishes
   * with the uninterrupted run's bits. With accumulation (the step's gradient in GRAD_ACC, read through the slots) and
   * with one micro-batch (the gradients streamed).
   */
  @Test
  void aStepFailingMidForwardLeavesTheLastStepsStateWhole(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    for (int run = 0; run < 3; run++) {  // accum 1, then 2 with the step's sum on the device, then on the host
      int accum = run == 0 ? 1 : 2;
      HostOffload host = run == 2 ? HostOffload.PINNED.withSumOnHost() : HostOffload.PINNED;
      TrainConfig tc = OffloadedOptimizerTest.tc(5, accum);
      Run whole = train(data, LLAMA, Device.CPU, tc, null);
      Run three = trainSteps(data, LLAMA, tc, null, 3);
      try (TokenDataset d = TokenDataset.open(data); Transformer model = new Transformer(LLAMA, Device.CPU, DType.BF16);
          Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), host);
          dev.athanor.train.checkpoint.CheckpointManager mgr =
              new dev.athanor.train.checkpoint.CheckpointManager(tmp.resolve("ck" + run), 2, false, "failing")) {
        model.initialize(8);
        DeferredUpdateTest.Failing f = new DeferredUpdateTest.Failing(model.parameters().unit(ModelConfig.blockUnit(1)));
        model.setHooks(dev.athanor.nn.BlockHooks.both(model.hooks(), f));
        List<Integer> losses = new ArrayList<>();
        for (int s = 0; s < 3; s++) losses.add(Float.floatToRawIntBits(t.step().loss()));
        assertTrue(t.hostOptimizer().updatePending());
        f.armed = true;
        var e = assertThrows(IllegalStateException.class, t::step);
        assertTrue(e.getMessage().contains("injected failure in block.1"), e.getMessage());
        assertFalse(t.hostOptimizer().updatePending(), "accum " + accum + ": the failed step finished the update");
        Trainer.Position p = t.consistentState().orElseThrow();
        assertEquals(3, p.nextStep(), "the failed step is to be run again");
        assertSameState(three, t, "accum " + accum + ": after the failed step");
        mgr.save(t);
        assertTrue(mgr.awaitWrite().isPresent(), "a checkpoint of the consistent state");
        f.armed = false;
        while (!t.done()) losses.add(Float.floatToRawIntBits(t.step().loss()));
        assertArrayEquals(whole.losses(), losses.stream().mapToInt(Integer::intValue).toArray(), "accum " + accum
            + ": losses with the retried step");
        assertSameState(whole, t, "accum " + accum + ": with the retried step");
      }
    }
  }

  /**
   * The deferred host update fails on its worker part-way (the head's second-moment file on DISK truncated under the
   * run, so its read fails after the other units were updated): the next step's forward throws that failure where it
   * reads the head,
   * there is no consistent state, a checkpoint refuses, and so does the next step; the trainer still closes.
   */
  @Test
  void anUpdateFailingOnTheWorkerLeavesNoStateACheckpointCaptures(@TempDir Path tmp) throws java.io.IOException {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("off");
    TrainConfig tc = OffloadedOptimizerTest.tc(4, 1);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = new Transformer(GPT2, Device.CPU, DType.BF16);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()),
            new HostOffload(OffloadConfig.optimizerStateOnDisk(dir)));
        dev.athanor.train.checkpoint.CheckpointManager mgr =
            new dev.athanor.train.checkpoint.CheckpointManager(tmp.resolve("ck"), 2, false, "broken")) {
      model.initialize(8);
      t.step();
      t.settle();  // the first update done; the next one, deferred, reads a truncated file
      String name = UnitFiles.fileName(model.parameters().unit(ModelConfig.HEAD_UNIT), Role.ADAM_V);
      Path victim;
      try (java.util.stream.Stream<Path> s = java.nio.file.Files.walk(dir)) {
        victim = s.filter(p -> p.getFileName().toString().equals(name)).findFirst().orElseThrow();
      }
      try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(victim, java.nio.file.StandardOpenOption.WRITE)) {
        ch.truncate(ch.size() / 3);
      }
      t.step();
      assertTrue(t.hostOptimizer().updatePending());
      OffloadIOException e = assertThrows(OffloadIOException.class, t::step, "the update's own failure");
      assertEquals(victim, e.file());
      assertTrue(t.consistentState().isEmpty(), "no consistent state after a half-applied update");
      var refused = assertThrows(dev.athanor.train.checkpoint.CheckpointException.class, () -> mgr.save(t));
      assertTrue(refused.getMessage().contains("inconsistent"), refused.getMessage());
      assertThrows(IllegalStateException.class, t::step, "the state is inconsistent");
    }
  }

  @Test
  void refusesWhatItCannotPlace(@TempDir Path tmp) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new HostOffload(new OffloadConfig(Set.of(Role.GRAD), tmp, 4096)));
    assertTrue(e.getMessage().contains("only AdamW's moments can be on DISK, not grad"), e.getMessage());
    Path data = OffloadedOptimizerTest.shard(tmp);
    TrainConfig tc = OffloadedOptimizerTest.tc(1, 1);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU)) {
      DataLoader loader = new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
      e = assertThrows(IllegalArgumentException.class, () -> new Trainer(model, tc, loader, HostOffload.PINNED));
      assertTrue(e.getMessage().contains("low-precision"), e.getMessage());
      assertEquals(Tier.HOST, model.parameters().placement(Role.MASTER).tier(), "nothing moved");
    }
  }

  /**
   * GPU check: a small GPT-2 in BF16 on CUDA with the optimizer on the host (moments pinned, then on DISK; one
   * micro-batch a step, the gradients streamed during the backward, and two, the step's sum on the device and on the
   * host) against the in-memory CUDA run. Expected: not bit-identical (the CPU and CUDA AdamW kernels may round
   * differently), the losses within 2% of each other over 8 steps, and the DEVICE peak lower by at least both moments
   * (with the sum on the host, lower again by the sum).
   */
  @Test
  void gpt2OnCudaWithTheOptimizerOnTheHostTracksTheInMemoryRun(@TempDir Path tmp) {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
    Device gpu = Device.cuda(0);
    Path data = OffloadedOptimizerTest.shard(tmp);
    MemoryManager mm = MemoryManager.global();
    for (int accum : new int[] {1, 2}) {  // 1: the gradients streamed during the backward; 2: through two slots
      TrainConfig tc = OffloadedOptimizerTest.tc(8, accum);
      mm.resetPeak();
      Run memory = train(data, GPT2, gpu, tc, null);
      long peakMemory = mm.peakBytes(Tier.DEVICE);
      mm.resetPeak();
      Run pinned = train(data, GPT2, gpu, tc, HostOffload.PINNED);
      long peakPinned = mm.peakBytes(Tier.DEVICE);
      Run disk = train(data, GPT2, gpu, tc, new HostOffload(OffloadConfig.optimizerStateOnDisk(tmp.resolve("off"))));
      List<Run> runs = new ArrayList<>(List.of(pinned, disk));
      if (accum > 1) {  // the step's sum on the host: the device holds one micro-batch's gradient
        mm.resetPeak();
        runs.add(train(data, GPT2, gpu, tc, HostOffload.PINNED.withSumOnHost()));
        long peakSum = mm.peakBytes(Tier.DEVICE);
        long grad = 4 * OffloadPlan.layoutElements(GPT2);
        assertTrue(peakSum <= peakPinned - grad, "DEVICE peak " + peakSum + " with the sum on the host, " + peakPinned
            + " with it on the device; the sum is " + grad + " bytes");
      }
      for (Run r : runs) {
        for (int i = 0; i < tc.steps(); i++) {
          float want = memory.lossValues()[i], got = r.lossValues()[i];
          assertTrue(Float.isFinite(got) && Math.abs(got - want) <= 0.02f * Math.abs(want),
              "accum " + accum + ", step " + i + ": loss " + got + " with the optimizer on the host, " + want + " in memory");
        }
      }
      // the GPU's kernels are deterministic (no atomics), and the host's update is the same kernel on the same bytes
      assertArrayEquals(pinned.losses(), disk.losses(), "accum " + accum + ": the moments on DISK change no loss");
      assertArrayEquals(pinned.masters(), disk.masters(), "accum " + accum + ": the moments on DISK change no master");
      // the moments are never on the device (the masters are, until the trainer moves them to the host)
      long moments = 2L * 4 * OffloadPlan.layoutElements(GPT2);
      assertTrue(peakPinned <= peakMemory - moments, "accum " + accum + ": DEVICE peak " + peakPinned + " with the optimizer "
          + "on the host, " + peakMemory + " in memory; the moments are " + moments + " bytes");
    }
  }
}

package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.checkpoint.Checkpoint;
import dev.athanor.train.checkpoint.CheckpointException;
import dev.athanor.train.checkpoint.CheckpointManager;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The optimizer update of a step deferred into the next step's forward (weights, gradients and moments on DISK):
 * each unit's AdamW update runs when the forward first reads the unit's weights, in the window the forward then uses.
 * The bits are those of the in-memory run (losses, norms, final weights and moments, with clipping active, with and
 * without accumulation, small chunks, no read-ahead, resident units); a steady-state step moves exactly one read of the
 * paged weights less than the update made at once; a checkpoint at a step boundary (which applies what is pending)
 * resumes exactly; a step that fails in the forward with an update pending leaves the state the last step left, and
 * one that fails while applying it leaves a state no checkpoint captures.
 */
class DeferredUpdateTest {
  static final ModelConfig GPT2 = PagedTrainingTest.GPT2;
  static final ModelConfig LLAMA = PagedTrainingTest.LLAMA;
  static final float CLIP = 0.05f;

  /** {@code steps} steps with the global norm clipped to {@link #CLIP} (below every step's norm here). */
  static TrainConfig tc(int steps, int accum) {
    return new TrainConfig(steps, 3, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, CLIP, true, 5);
  }

  /** A run's raw bits and each step's DISK traffic. */
  record Run(int[] losses, int[] norms, byte[] masters, byte[] m, byte[] v, List<TransferStats.Snapshot> traffic) {
    OffloadedOptimizerTest.Run bits() {
      return new OffloadedOptimizerTest.Run(losses, norms, masters, m, v, 0, 0);
    }
  }

  /** Runs {@code stop} steps (of {@code tc.steps()}) and returns the state then. */
  static Run train(Path data, ModelConfig cfg, TrainConfig tc, OffloadConfig off, int stop, boolean defers) {
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), off)) {
      model.initialize(8);
      assertEquals(defers, t.defersUpdates(), "defers with " + off.diskRoles());
      List<Integer> losses = new ArrayList<>(), norms = new ArrayList<>();
      List<TransferStats.Snapshot> traffic = new ArrayList<>();
      TransferStats.Snapshot before = t.transfers();
      for (int s = 0; s < stop; s++) {
        StepResult r = t.step();
        TransferStats.Snapshot now = t.transfers();  // one reading per boundary: transfers between steps are counted too
        traffic.add(now.minus(before));
        before = now;
        losses.add(Float.floatToRawIntBits(r.loss()));
        norms.add(Float.floatToRawIntBits(r.gradNorm()));
      }
      return snapshot(t, losses, norms, traffic);
    }
  }

  /** The trainer's state as a checkpoint sees it ({@link Trainer#consistentState()} first: it settles the update). */
  static Run snapshot(Trainer t, List<Integer> losses, List<Integer> norms, List<TransferStats.Snapshot> traffic) {
    assertTrue(t.consistentState().isPresent(), "a consistent state");
    return new Run(losses.stream().mapToInt(Integer::intValue).toArray(), norms.stream().mapToInt(Integer::intValue).toArray(),
        OffloadedOptimizerTest.bytes(new ArrayList<>(t.model().weights().values())),
        OffloadedOptimizerTest.bytes(t.optimizer().firstMoments()), OffloadedOptimizerTest.bytes(t.optimizer().secondMoments()),
        traffic);
  }

  @Test
  void deferredUpdatesTrainBitIdenticallyToMemoryWithClipping(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    OffloadConfig all = OffloadConfig.allOnDisk(dir);
    int steps = 5;
    for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
      for (int accum : new int[] {1, 2}) {
        String what = cfg.family() + ", accum " + accum;
        TrainConfig tc = tc(steps, accum);
        Run host = train(data, cfg, tc, OffloadConfig.NONE, steps, false);
        for (int n : host.norms()) assertTrue(Float.intBitsToFloat(n) > 2 * CLIP, what + ": clipping active, norm " + Float.intBitsToFloat(n));
        Run deferred = train(data, cfg, tc, all, steps, true);
        OffloadedOptimizerTest.assertSameBits(host.bits(), deferred.bits(), what + ", deferred");
        OffloadedOptimizerTest.assertSameBits(host.bits(), train(data, cfg, tc, all.withChunkBytes(4000).withPrefetch(false), steps,
            true).bits(),
            what + ", deferred, small chunks (several per unit), no read-ahead");
        OffloadedOptimizerTest.assertSameBits(host.bits(), train(data, cfg, tc,
            all.withChunkBytes(4000).withResidentWeights(Set.of("embedding", "block.1")), steps, true).bits(),
            what + ", deferred, embedding and block.1 resident (updated in place)");
        // the weights on DISK without the gradients: the update made at once, as before
        Run atOnce = train(data, cfg, tc, new OffloadConfig(EnumSet.of(Role.MASTER, Role.ADAM_M, Role.ADAM_V), dir, 4000), steps,
            false);
        OffloadedOptimizerTest.assertSameBits(host.bits(), atOnce.bits(), what + ", weights and moments on DISK, update at once");

        // traffic: against the run with the gradients in memory, each step moves the gradients' bytes more (written per
        // micro-batch, read back per later one, read by the update), and each deferred update one read of every unit's
        // weights less (the update's read is the forward's). Over the run: a step's own count depends on whether the
        // first chunks its deferred update reads at once were read before the step returned
        long role, weights;
        try (Transformer probe = Transformer.create(cfg, Device.CPU)) {
          role = probe.parameters().bytes(Role.GRAD);
          weights = probe.parameters().bytes(Role.MASTER);
        }
        Run small = train(data, cfg, tc, all.withChunkBytes(4000), steps, true);
        TransferStats.Snapshot d = TransferStats.Snapshot.ZERO, a = TransferStats.Snapshot.ZERO;
        for (int s = 0; s < steps; s++) {
          d = d.plus(small.traffic().get(s));
          a = a.plus(atOnce.traffic().get(s));
        }
        assertEquals(a.hostToDisk() + (long) steps * accum * role, d.hostToDisk(), what + ": bytes written");
        assertEquals(a.diskToHost() + (long) steps * accum * role - (steps - 1) * weights, d.diskToHost(), what + ": bytes read");
        OffloadPlanner.Job job = new OffloadPlanner.Job(cfg, Device.CPU, tc, false, false, false);
        assertEquals(OffloadPlanner.place(job, all.diskRoles()).diskTrafficPerStep() + weights,
            OffloadPlanner.place(job, EnumSet.of(Role.MASTER, Role.ADAM_M, Role.ADAM_V)).diskTrafficPerStep()
                + 2L * accum * role, what + ": the plan's estimate saves the same read");
      }
    }
    try (Stream<Path> left = Files.list(dir)) {
      assertEquals(0, left.count(), "offload files deleted");
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /**
   * A checkpoint taken between steps, while the last step's update is pending, holds the state that step left (the
   * in-memory run's after as many steps); the run continues exactly, and a fresh trainer restored from it finishes with
   * the bits of the uninterrupted run; also with some units' weights, gradients and moments resident.
   */
  @Test
  void aCheckpointAtAStepBoundaryResumesExactly(@TempDir Path tmp) throws IOException {
    Path data = OffloadedOptimizerTest.shard(tmp);
    OffloadConfig paged = OffloadConfig.allOnDisk(tmp.resolve("offload")).withChunkBytes(4000);
    for (OffloadConfig all : List.of(paged, PagedTrainingTest.someResident(paged))) {
      for (int accum : new int[] {1, 2}) {
        TrainConfig tc = tc(6, accum);
        Run host = train(data, GPT2, tc, OffloadConfig.NONE, 6, false);
        Run host3 = train(data, GPT2, tc, OffloadConfig.NONE, 3, false);
        Path ck = tmp.resolve("ck" + accum + "-" + all.residentUnits().size());
        Path saved;
        List<Integer> tail = new ArrayList<>();
        try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
            Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), all);
            CheckpointManager mgr = new CheckpointManager(ck, 2, false, "deferred")) {
          model.initialize(8);
          for (int s = 0; s < 3; s++) t.step();
          mgr.save(t);  // the update of step 2 is pending: the save applies it first
          saved = mgr.awaitWrite().orElseThrow();
          Run mid = snapshot(t, List.of(), List.of(), List.of());
          assertArrayEquals(host3.masters(), mid.masters(), "accum " + accum + ": weights after 3 steps");
          assertArrayEquals(host3.m(), mid.m(), "accum " + accum + ": first moments after 3 steps");
          assertArrayEquals(host3.v(), mid.v(), "accum " + accum + ": second moments after 3 steps");
          while (!t.done()) tail.add(Float.floatToRawIntBits(t.step().loss()));
          Run end = snapshot(t, tail, List.of(), List.of());
          assertArrayEquals(Arrays.copyOfRange(host.losses(), 3, 6), end.losses(), "accum " + accum + ": losses after the save");
          assertArrayEquals(host.masters(), end.masters(), "accum " + accum + ": weights at the end, saved on the way");
          assertArrayEquals(host.v(), end.v(), "accum " + accum + ": second moments at the end, saved on the way");
        }
        try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
            Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), all)) {
          model.initialize(1);  // other weights: the checkpoint replaces them
          Checkpoint.open(saved).restore(t);
          assertEquals(3, t.nextStep());
          List<Integer> losses = new ArrayList<>();
          while (!t.done()) losses.add(Float.floatToRawIntBits(t.step().loss()));
          Run resumed = snapshot(t, losses, List.of(), List.of());
          assertArrayEquals(Arrays.copyOfRange(host.losses(), 3, 6), resumed.losses(), "accum " + accum + ": resumed losses");
          assertArrayEquals(host.masters(), resumed.masters(), "accum " + accum + ": resumed weights");
          assertArrayEquals(host.m(), resumed.m(), "accum " + accum + ": resumed first moments");
          assertArrayEquals(host.v(), resumed.v(), "accum " + accum + ": resumed second moments");
        }
      }
    }
  }

  /** Throws in the forward of one unit while armed (after the pagers among the hooks before it have run). */
  static final class Failing implements BlockHooks {
    final Unit at;
    boolean armed;

    Failing(Unit at) {
      this.at = at;
    }

    @Override
    public void beforeWeights(Unit unit, Pass pass) {
      if (armed && unit == at && pass == Pass.FORWARD) throw new IllegalStateException("injected failure in " + unit.name());
    }
  }

  /**
   * A step that fails in its forward after some units had the last step's update applied: the trainer applies the
   * rest, so the state is the one the last step left (the in-memory run's); a checkpoint of it is taken, and retrying
   * the step finishes with the bits of the uninterrupted run.
   */
  @Test
  void aStepFailingMidForwardLeavesTheLastStepsStateWhole(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    OffloadConfig all = OffloadConfig.allOnDisk(tmp.resolve("offload")).withChunkBytes(4000);
    TrainConfig tc = tc(5, 2);
    Run host = train(data, LLAMA, tc, OffloadConfig.NONE, 5, false);
    Run host3 = train(data, LLAMA, tc, OffloadConfig.NONE, 3, false);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(LLAMA, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), all);
        CheckpointManager mgr = new CheckpointManager(tmp.resolve("ck"), 2, false, "failing")) {
      model.initialize(8);
      Failing f = new Failing(model.parameters().unit(ModelConfig.blockUnit(1)));
      model.setHooks(BlockHooks.both(model.hooks(), f));
      List<Integer> losses = new ArrayList<>();
      for (int s = 0; s < 3; s++) losses.add(Float.floatToRawIntBits(t.step().loss()));
      f.armed = true;  // step 3 fails in block.1's forward: embedding, block.0 and block.1 have step 2's update
      var e = assertThrows(IllegalStateException.class, t::step);
      assertTrue(e.getMessage().contains("injected failure in block.1"), e.getMessage());
      Trainer.Position p = t.consistentState().orElseThrow();
      assertEquals(3, p.nextStep(), "the failed step is to be run again");
      Run mid = snapshot(t, List.of(), List.of(), List.of());
      assertArrayEquals(host3.masters(), mid.masters(), "weights after the failed step: those 3 steps leave");
      assertArrayEquals(host3.m(), mid.m(), "first moments after the failed step");
      assertArrayEquals(host3.v(), mid.v(), "second moments after the failed step");
      mgr.save(t);
      assertTrue(mgr.awaitWrite().isPresent(), "a checkpoint of the consistent state");
      f.armed = false;
      while (!t.done()) losses.add(Float.floatToRawIntBits(t.step().loss()));
      Run end = snapshot(t, losses, List.of(), List.of());
      assertArrayEquals(host.losses(), end.losses(), "losses with the retried step");
      assertArrayEquals(host.masters(), end.masters(), "weights with the retried step");
      assertArrayEquals(host.m(), end.m(), "first moments with the retried step");
      assertArrayEquals(host.v(), end.v(), "second moments with the retried step");
    }
  }

  /**
   * Applying the update fails part-way (a moment's file truncated under the run: its read fails after some units were
   * updated): the state on DISK is inconsistent, so there is no consistent state, a checkpoint refuses, and so does the
   * next step.
   */
  @Test
  void anUpdateFailingPartWayLeavesNoStateACheckpointCaptures(@TempDir Path tmp) throws IOException {
    Path data = OffloadedOptimizerTest.shard(tmp);
    Path dir = tmp.resolve("offload");
    TrainConfig tc = tc(4, 1);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()),
            OffloadConfig.allOnDisk(dir));
        CheckpointManager mgr = new CheckpointManager(tmp.resolve("ck"), 2, false, "broken")) {
      model.initialize(8);
      t.step();  // its update is pending; the first units' state is read already
      String name = UnitFiles.fileName(model.parameters().unit(ModelConfig.HEAD_UNIT), Role.ADAM_V);
      Path victim;
      try (Stream<Path> s = Files.walk(dir)) {
        victim = s.filter(p -> p.getFileName().toString().equals(name)).findFirst().orElseThrow();
      }
      try (FileChannel ch = FileChannel.open(victim, StandardOpenOption.WRITE)) {
        ch.truncate(ch.size() / 3);
      }
      var e = assertThrows(OffloadIOException.class, t::step);
      assertEquals(victim, e.file());
      assertTrue(t.consistentState().isEmpty(), "no consistent state after a half-applied update");
      var refused = assertThrows(CheckpointException.class, () -> mgr.save(t));
      assertTrue(refused.getMessage().contains("inconsistent"), refused.getMessage());
      assertThrows(IllegalStateException.class, t::step, "the state is inconsistent");
    }
  }

  /** Records the units it is applied to, adds 1 to their weights, and fails at {@code failAt} (null: never). */
  static final class Recording implements UnitUpdate {
    final List<String> applied = new ArrayList<>();
    final Unit failAt;
    int finished;

    Recording(Unit failAt) {
      this.failAt = failAt;
    }

    @Override
    public void apply(Unit unit, dev.athanor.tensor.Tensor masters) {
      if (unit == failAt) throw new IllegalStateException("update of " + unit.name() + " failed");
      applied.add(unit.name());
      float[] w = masters.toFloatArray();
      for (int i = 0; i < w.length; i++) w[i] += 1f;
      try (dev.athanor.tensor.Tensor t = dev.athanor.tensor.Tensor.of(w, w.length)) {
        masters.copyFrom(t);
      }
    }

    @Override
    public void finish() {
      finished++;
    }
  }

  /**
   * The pager applies a deferred update in the forward's order, each unit once, to the window the forward uses, and
   * writes it back (the next read sees it); {@link UnitPager#flush()} finishes it. An update failing part-way leaves
   * the pager refusing to go on.
   */
  @Test
  void thePagerAppliesADeferredUpdateInTheForwardsOrder(@TempDir Path tmp) {
    Path data = OffloadedOptimizerTest.shard(tmp);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
        UnitFiles f = new UnitFiles(model.parameters(), Set.of(Role.MASTER), tmp.resolve("pager"))) {
      model.initialize(8);
      byte[] before = OffloadedOptimizerTest.bytes(new ArrayList<>(model.weights().values()));
      UnitPager p = new UnitPager(model, f, true);
      BlockHooks hooks = model.hooks();
      model.setHooks(BlockHooks.both(hooks, p));
      try {
        List<Unit> order = p.updateOrder();
        assertEquals(model.parameters().units().size(), order.size(), "each unit once");
        assertSame(model.parameters().unit(ModelConfig.EMBEDDING_UNIT), order.get(0));
        assertSame(model.parameters().unit(ModelConfig.blockUnit(0)), order.get(1));
        assertFalse(p.updatePending());
        DataLoader.Batch b = new DataLoader(d, 2, 16, false, 5).next();
        Recording r = new Recording(null);
        p.defer(r);
        assertTrue(p.updatePending());
        Recording second = new Recording(null);
        assertThrows(IllegalStateException.class, () -> p.defer(second), "one update at a time");
        assertEquals(1, second.finished, "a refused update is finished, not applied");
        model.forward(b.inputs(), b.targets(), b.batch(), b.seq());
        assertEquals(order.stream().map(Unit::name).toList(), r.applied, "applied in the forward, in its order");
        assertEquals(0, r.finished, "finished by flush()");
        p.flush();
        assertEquals(1, r.finished);
        assertFalse(p.updatePending());
        byte[] after = OffloadedOptimizerTest.bytes(new ArrayList<>(model.weights().values()));  // DISK views
        int changed = 0;
        for (int i = 0; i < before.length; i += 4) {
          float w0 = Float.intBitsToFloat(java.nio.ByteBuffer.wrap(before, i, 4).getInt());
          float w1 = Float.intBitsToFloat(java.nio.ByteBuffer.wrap(after, i, 4).getInt());
          assertEquals(w0 + 1f, w1, "element " + i / 4 + ": updated once and written back");
          changed++;
        }
        assertTrue(changed > 0);

        Recording broken = new Recording(model.parameters().unit(ModelConfig.blockUnit(1)));
        p.defer(broken);
        var e = assertThrows(IllegalStateException.class, () -> model.forward(b.inputs(), b.targets(), b.batch(), b.seq()));
        assertTrue(e.getMessage().contains("update of block.1 failed"), e.getMessage());
        assertEquals(List.of(ModelConfig.EMBEDDING_UNIT, ModelConfig.blockUnit(0)), broken.applied);
        p.discard();
        assertTrue(p.updatePending(), "a half-applied update stays pending");
        e = assertThrows(IllegalStateException.class, p::applyPending);
        assertTrue(e.getMessage().contains("part-way"), e.getMessage());
      } finally {
        model.setHooks(hooks);
        p.close(false);
      }
    }
  }
}

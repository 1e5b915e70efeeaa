package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.TrainerTest;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * ZeRO 2's per-unit gradient fold in one process (the shard is everything; the fold's collective is a copy or an add):
 * at accum 3 the trainer gives the plain trainer's losses, norms and weights bit for bit, with each unit's fold on the
 * training thread or on the communication thread (overlap); during a step at most two units' gradient windows are
 * mapped at once (the tied embeddings' under the head's backward, then a block's), with overlap plus the one unit's
 * whose fold is in flight (a block or the head, never the embeddings), none between steps, and the store holds no whole
 * gradient; closing it puts the model's hooks back; a model whose gradients are already paged is refused. A fold that
 * fails on the communication thread (ZeRO 2's, and ZeRO 3's behind its gathers) is thrown by the step on the training
 * thread, naming the rank, the unit and the micro-batch.
 */
class UnitGradientFoldTest {
  private static final TrainConfig ACCUM_3 =
      new TrainConfig(3, 2, 16, 3, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);

  /** One run's steps (loss and norm bits) and final weights. */
  private record Run(String steps, float[] weights) {}

  @Test
  void foldedUnitByUnitEqualsThePlainTrainerBitForBit(@TempDir Path tmp) {
    Path data = TrainerTest.shard(tmp);
    Run plain = train(data, false, false), folded = train(data, true, false), overlapped = train(data, true, true);
    assertEquals(plain.steps(), folded.steps(), "each step's loss and gradient norm (bits)");
    assertArrayEquals(plain.weights(), folded.weights(), "the final weights");
    assertEquals(plain.steps(), overlapped.steps(), "folds on the communication thread: each step's loss and norm (bits)");
    assertArrayEquals(plain.weights(), overlapped.weights(), "folds on the communication thread: the final weights");
  }

  @Test
  void aFoldThatFailsOnTheCommunicationThreadIsThrownByTheStepNamingRankAndUnit(@TempDir Path tmp) {
    TrainConfig tc = new TrainConfig(2, 2, 16, 1, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    Path data = TrainerTest.shard(tmp);
    for (int zero : new int[] {2, 3}) {  // ZeRO 3: its gathers (a peer that contributes nothing) pass
      AtomicInteger calls = new AtomicInteger();
      List<String> threads = new ArrayList<>();
      Communicator failing = OverlappedReductionTest.failingSecond("reduceScatterAccumulateV", calls, threads, "allGatherV");
      try (TokenDataset d = TokenDataset.open(data);
          Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU)) {
        m.initialize(8);
        ShardedWeights z3 = zero == 3 ? ShardedWeights.attach(m, failing, dev.athanor.offload.OffloadConfig.NONE, true) : null;
        UnitGradientFold z = zero == 2 ? UnitGradientFold.attach(m, failing, true) : null;
        assertTrue(z3 != null ? z3.readsAhead() : z.overlaps());
        Trainer t = z3 != null ? new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), z3)
            : new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), z);
        DataParallel.attach(t, failing);
        CommunicatorException e = assertThrows(CommunicatorException.class, t::step);
        // the backward hands over the head, then block 1 (whose fold fails), ...
        assertTrue(e.getMessage().startsWith("rank 1 of 2: the gradient fold of " + m.parameters().units().get(2).name()
            + " (micro-batch 0, "), "ZeRO " + zero + ": " + e.getMessage());
        assertTrue(e.getMessage().endsWith("on the communication thread failed: MPI_Alltoallv: the peer is gone"), e.getMessage());
        assertEquals(List.of("athanor-comm-rank-1", "athanor-comm-rank-1"), threads.subList(0, 2),
            "ZeRO " + zero + ": the folds run on the communication thread");
        assertEquals(0, z3 != null ? z3.windowBytes() : z.windowBytes(), "ZeRO " + zero + ": the failed step's windows are freed");
        t.close();
        if (z3 != null) z3.close();
        if (z != null) z.close();
        assertEquals(BlockHooks.NONE, m.hooks(), "closed, the fold's hooks leave the model");
      }
    }
  }

  private static Run train(Path data, boolean fold, boolean overlap) {
    StringBuilder b = new StringBuilder();
    try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU)) {
      m.initialize(8);
      ParameterStore store = m.parameters();
      long[] sizes = store.units().stream().mapToLong(u -> 4 * u.elements().length()).sorted().toArray();
      long largestTwo = sizes[sizes.length - 1] + sizes[sizes.length - 2];
      long inFlight = store.units().stream().filter(u -> u.index() != 0).mapToLong(u -> 4 * u.elements().length()).max()
          .orElseThrow();  // a block or the head (unit 0 is the embeddings)
      long[] peak = {0};
      try (UnitGradientFold z = fold ? UnitGradientFold.attach(m, Communicator.single(), overlap) : null;
          Trainer t = z != null ? new Trainer(m, ACCUM_3, new DataLoader(d, 2, 16, true, 5), z)
              : new Trainer(m, ACCUM_3, new DataLoader(d, 2, 16, true, 5))) {
        if (z != null) {
          assertThrows(IllegalArgumentException.class, () -> UnitGradientFold.attach(m, Communicator.single()),
              "the gradients are paged already");
          m.setHooks(BlockHooks.both(m.hooks(), new BlockHooks() {  // sees each window once it is mapped
            @Override
            public void beforeWeights(Unit unit, Pass pass) {
              peak[0] = Math.max(peak[0], z.windowBytes());
            }
          }));
        }
        while (!t.done()) {
          StepResult r = t.step();
          b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
          if (z == null) continue;
          assertEquals(0, z.windowBytes(), "no gradient window is held between steps");
          assertTrue(store.isPaged(Role.GRAD) && !store.isPaged(Role.MASTER), "whole weights, no whole gradient");
          for (Unit u : store.units()) assertFalse(store.isMapped(Role.GRAD, u), u.name());
        }
        if (z != null) {
          long most = largestTwo + (overlap ? inFlight : 0);
          assertTrue(peak[0] > 0 && peak[0] <= most, "gradient windows at once: " + peak[0] + " of at most " + most);
          assertEquals(overlap, z.overlaps());
          assertEquals(overlap ? ACCUM_3.steps() * ACCUM_3.accum() * store.units().size() : 0, z.stats().buckets(),
              "the unit folds of every micro-batch on the communication thread");
        }
      }
      assertEquals(BlockHooks.NONE, m.hooks(), "closed, the fold's hooks leave the model");
      assertFalse(store.isPaged(Role.GRAD), "closed, the paged gradient is released");
      return new Run(b.toString(), store.flat(Role.MASTER).toFloatArray());
    }
  }
}

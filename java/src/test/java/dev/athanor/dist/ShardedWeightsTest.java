package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * ZeRO 3's hooks in one process (the shard is everything; the collectives are copies): the trainer with the weights and
 * gradients paged unit by unit gives the plain trainer's bits at accum 3 (the first micro-batch overwrites each unit's
 * shard of the step gradient, the others add to it); between steps no window is held and the store has no masters of
 * its own; unshard gives the whole weights back and the model runs as before; a model whose weights are already paged
 * is refused. With the shard's masters, gradient and moments on DISK (offload, chunks of a hundred elements, so the
 * gathers and folds go piece by piece and cut tensors) the bits are the same, and the files are gone at the end.
 */
class ShardedWeightsTest {
  @Test
  void pagedUnitByUnitEqualsThePlainTrainerBitForBit(@TempDir Path tmp) throws java.io.IOException {
    Path data = TrainerTest.shard(tmp);
    TrainConfig tc = new TrainConfig(3, 2, 16, 3, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    String[] steps = new String[3];
    float[][] weights = new float[3][];
    dev.athanor.offload.OffloadConfig onDisk = new dev.athanor.offload.OffloadConfig(java.util.EnumSet.of(Role.MASTER, Role.GRAD,
        Role.ADAM_M, Role.ADAM_V), tmp.resolve("offload"), 400, true, java.util.Set.of());
    for (int zero3 = 0; zero3 < 3; zero3++) {  // plain, ZeRO 3 in memory, ZeRO 3 with its shard on DISK
      StringBuilder b = new StringBuilder();
      try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU)) {
        m.initialize(8);
        ParameterStore store = m.parameters();
        if (zero3 == 1) {  // weights already paged elsewhere (offload) cannot be sharded as well
          try (Transformer other = Transformer.withoutWeights(m.config(), Device.CPU)) {
            other.parameters().pageWithoutBacking(Role.MASTER);
            assertThrows(IllegalStateException.class, () -> ShardedWeights.attach(other, Communicator.single()));
          }
        }
        try (ShardedWeights z = zero3 == 1 ? ShardedWeights.attach(m, Communicator.single())
                : zero3 == 2 ? ShardedWeights.attach(m, Communicator.single(), onDisk) : null;
            Trainer t = zero3 == 2 ? new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), z, onDisk)
                : z != null ? new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), z)
                : new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5))) {
          while (!t.done()) {
            StepResult r = t.step();
            b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
            if (z == null) continue;
            assertEquals(0, z.windowBytes(), "no unit is held between steps");
            assertEquals(zero3 == 2, z.masters() == null && z.gradient() == null, "the shard's masters and gradient on DISK");
            if (zero3 == 2) assertTrue(t.transfers().diskToHost() > 0 && t.transfers().hostToDisk() > 0, "DISK traffic");
            assertTrue(store.isPaged(Role.MASTER) && store.isPaged(Role.GRAD), "the store keeps no whole masters or gradient");
            for (Unit u : store.units()) assertFalse(store.isMapped(Role.MASTER, u), u.name());
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> store.view(Role.MASTER, 0));
            assertTrue(e.getMessage().contains("not mapped"), e.getMessage());
          }
          if (z != null) {
            long before = MemoryManager.global().liveBytes(Tier.HOST);
            z.unshard();
            assertFalse(store.isPaged(Role.MASTER), "unshard gives the whole masters back");
            assertEquals(before + store.bytes(Role.MASTER), MemoryManager.global().liveBytes(Tier.HOST),
                "the whole masters come back, the paged gradient is gone");
            assertEquals(BlockHooks.NONE, m.hooks(), "the model runs without ZeRO 3's hooks again");
          }
        }
        weights[zero3] = store.flat(Role.MASTER).toFloatArray();
      }
      steps[zero3] = b.toString();
    }
    assertEquals(steps[0], steps[1], "each step's loss and gradient norm (bits)");
    assertArrayEquals(weights[0], weights[1], "the final weights");
    assertEquals(steps[0], steps[2], "each step's loss and gradient norm (bits), the shard on DISK");
    assertArrayEquals(weights[0], weights[2], "the final weights, the shard on DISK");
    try (var left = java.nio.file.Files.walk(tmp.resolve("offload"))) {
      assertEquals(java.util.List.of(), left.filter(java.nio.file.Files::isRegularFile).toList(), "the files are deleted");
    }
  }

  /**
   * Overlap in one process: with the next unit gathered and each unit's gradient folded on the communication thread, a
   * Llama (untied head) and a GPT-2 (tied) train to the bits of overlap off, each micro-batch reading 2 (L + 1) gathers
   * ahead and none for a unit that did not run next, and folding every unit there; the windows held never exceed those
   * without overlap by more than the largest unit (read ahead) and the largest block or head (its fold in flight).
   */
  @Test
  void readAheadGivesTheSameBitsAndHoldsOneWindowMore(@TempDir Path tmp) throws java.io.IOException {
    Path data = TrainerTest.shard(tmp);
    TrainConfig tc = new TrainConfig(2, 2, 16, 2, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    for (ModelConfig mc : java.util.List.of(ModelConfig.gpt2(97, 32, 3, 32, 2),
        ModelConfig.llama(97, 32, 3, 32, 4, 2, 48, 10000f, false))) {
      String[] steps = new String[2];
      float[][] weights = new float[2][];
      long[] peak = new long[2];
      long largest = 0, blockOrHead = 0;
      for (int on = 0; on < 2; on++) {
        StringBuilder b = new StringBuilder();
        try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(mc, Device.CPU)) {
          m.initialize(8);
          for (Unit u : m.parameters().units()) largest = Math.max(largest, 4 * u.elements().length());
          for (Unit u : m.parameters().units()) {  // a fold in flight: never the embeddings' (unit 0) in a backward
            if (u.index() != 0) blockOrHead = Math.max(blockOrHead, 4 * u.elements().length());
          }
          try (ShardedWeights z = ShardedWeights.attach(m, Communicator.single(), dev.athanor.offload.OffloadConfig.NONE, on == 1);
              Trainer t = new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), z)) {
            long[] most = {0};
            m.setHooks(BlockHooks.both(m.hooks(), new BlockHooks() {
              @Override
              public void beforeWeights(Unit unit, Pass pass) {
                most[0] = Math.max(most[0], z.windowBytes());
              }
            }));
            while (!t.done()) {
              StepResult r = t.step();
              b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
            }
            assertEquals(on == 1 ? 2L * 2 * 2 * (mc.layers() + 1) : 0, z.readAheads(), mc.family() + ": gathers read ahead");
            assertEquals(0, z.readAheadsMissed(), "read ahead for a unit that did not run next");
            assertEquals(on == 1 ? 2L * 2 * m.parameters().units().size() : 0, z.stats().buckets(),
                mc.family() + ": unit folds on the communication thread (a unit a micro-batch)");
            peak[on] = most[0];
            z.unshard();
          }
          weights[on] = m.parameters().flat(Role.MASTER).toFloatArray();
        }
        steps[on] = b.toString();
      }
      assertEquals(steps[0], steps[1], mc.family() + ": each step's loss and gradient norm (bits), read-ahead on vs off");
      assertArrayEquals(weights[0], weights[1], mc.family() + ": the final weights, read-ahead on vs off");
      assertTrue(peak[1] > peak[0] && peak[1] <= peak[0] + largest + blockOrHead, mc.family() + ": windows held " + peak[1]
          + " with overlap, " + peak[0] + " without, largest unit " + largest + ", block or head " + blockOrHead);
    }
  }
}

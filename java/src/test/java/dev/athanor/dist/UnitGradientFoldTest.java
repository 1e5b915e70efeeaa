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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * ZeRO 2's per-unit gradient fold in one process (the shard is everything; the fold's collective is a copy or an add):
 * at accum 3 the trainer gives the plain trainer's losses, norms and weights bit for bit; during a step at most two
 * units' gradient windows are mapped at once (the tied embeddings' under the head's backward, then a block's), none
 * between steps, and the store holds no whole gradient; closing it puts the model's hooks back; a model whose
 * gradients are already paged is refused.
 */
class UnitGradientFoldTest {
  private static final TrainConfig ACCUM_3 =
      new TrainConfig(3, 2, 16, 3, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);

  /** One run's steps (loss and norm bits) and final weights. */
  private record Run(String steps, float[] weights) {}

  @Test
  void foldedUnitByUnitEqualsThePlainTrainerBitForBit(@TempDir Path tmp) {
    Path data = TrainerTest.shard(tmp);
    Run plain = train(data, false), folded = train(data, true);
    assertEquals(plain.steps(), folded.steps(), "each step's loss and gradient norm (bits)");
    assertArrayEquals(plain.weights(), folded.weights(), "the final weights");
  }

  private static Run train(Path data, boolean fold) {
    StringBuilder b = new StringBuilder();
    try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(ModelConfig.gpt2(97, 32, 2, 32, 2), Device.CPU)) {
      m.initialize(8);
      ParameterStore store = m.parameters();
      long[] sizes = store.units().stream().mapToLong(u -> 4 * u.elements().length()).sorted().toArray();
      long largestTwo = sizes[sizes.length - 1] + sizes[sizes.length - 2];
      long[] peak = {0};
      try (UnitGradientFold z = fold ? UnitGradientFold.attach(m, Communicator.single()) : null;
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
          assertTrue(peak[0] > 0 && peak[0] <= largestTwo, "gradient windows at once: " + peak[0] + " of at most " + largestTwo);
        }
      }
      assertEquals(BlockHooks.NONE, m.hooks(), "closed, the fold's hooks leave the model");
      assertFalse(store.isPaged(Role.GRAD), "closed, the paged gradient is released");
      return new Run(b.toString(), store.flat(Role.MASTER).toFloatArray());
    }
  }
}

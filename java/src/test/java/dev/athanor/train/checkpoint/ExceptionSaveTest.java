package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.NonFiniteException;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Exception save: after a step fails, the last consistent state (the parameters and optimizer of the last
 * completed step, the data position before the failed step) is what gets saved, and it continues exactly.
 */
class ExceptionSaveTest {
  private static final int STEPS = 8;
  private static final int FAIL_AT = 5;
  private static final TrainConfig TC = new TrainConfig(STEPS, TrainFixture.BATCH, TrainFixture.SEQ, 1, 1e-3f, 1e-4f, 2,
      Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 7L);

  private static Trainer trainer(Transformer model, TokenDataset data) {
    return new Trainer(model, TC, new DataLoader(data, TC.batch(), TC.seq(), TC.shuffle(), TC.seed()));
  }

  /** The losses of an uninterrupted run over {@code data}. */
  private static float[] reference(Path data) {
    float[] losses = new float[STEPS];
    try (TokenDataset d = TokenDataset.open(data);
        Transformer model = Transformer.create(TrainFixture.model(), Device.CPU);
        Trainer t = trainer(model, d)) {
      model.initialize(TC.seed());
      for (int i = 0; i < STEPS; i++) losses[i] = t.step().loss();
    }
    return losses;
  }

  /**
   * A token outside the vocabulary in step 5's batch makes that step throw before its update; the state saved
   * then, restored over the clean data, gives the losses of an uninterrupted run for steps 5 to 7, bit for bit.
   */
  @Test
  void theStateSavedAfterAFailedStepContinuesExactly(@TempDir Path tmp) throws IOException {
    Path clean = tmp.resolve("clean.bin");
    Path poisoned = tmp.resolve("poisoned.bin");
    TrainFixture.writeTokens(clean, TrainFixture.TOKENS, -1, -1);
    long badAt = (long) FAIL_AT * TC.batch() * TC.seq() + 10;  // an input of step 5 (sequential reading)
    TrainFixture.writeTokens(poisoned, TrainFixture.TOKENS, (int) badAt, 999);
    float[] ref = reference(clean);

    Path ck = tmp.resolve("ck");
    try (TokenDataset d = TokenDataset.open(poisoned);
        Transformer model = Transformer.create(TrainFixture.model(), Device.CPU);
        Trainer t = trainer(model, d);
        CheckpointManager mgr = new CheckpointManager(ck, 3, true)) {
      model.initialize(TC.seed());
      for (int i = 0; i < FAIL_AT; i++) assertEquals(ref[i], t.step().loss(), "step " + i + " as in the clean run");
      String msg = assertThrows(IllegalArgumentException.class, t::step).getMessage();
      assertTrue(msg.contains("999") && msg.contains("outside the vocabulary"), msg);
      // a retry reads the same batch again (it does not skip ahead)
      assertThrows(IllegalArgumentException.class, t::step);
      Trainer.Position p = t.consistentState().orElseThrow();
      assertEquals(FAIL_AT, p.nextStep());
      assertEquals((long) FAIL_AT * TC.batch() * TC.seq(), p.loader().position(), "the loader as before the failed step");
      mgr.save(t);
      assertEquals(ck.resolve("step-00000005"), mgr.awaitWrite().orElseThrow());
    }

    Checkpoint c = Checkpoint.open(ck.resolve("step-00000005"));
    assertEquals(FAIL_AT, c.step());
    assertEquals(TC, c.trainConfig());
    try (TokenDataset d = TokenDataset.open(clean);
        Transformer model = Transformer.create(c.modelConfig(), Device.CPU);
        Trainer t = trainer(model, d)) {
      c.restore(t);
      assertEquals(FAIL_AT, t.nextStep());
      assertEquals(FAIL_AT, t.optimizer().step());
      float[] rest = new float[STEPS - FAIL_AT];
      for (int i = 0; i < rest.length; i++) rest[i] = t.step().loss();
      assertArrayEquals(Arrays.copyOfRange(ref, FAIL_AT, STEPS), rest, "steps 5..7 after the restore");
      assertTrue(t.done());
    }
  }

  /** A NaN weight makes the loss non-finite: nothing is updated, and the state saved is that of the last completed step. */
  @Test
  void aNonFiniteLossSavesTheLastCompletedStep(@TempDir Path tmp) throws IOException {
    Path data = tmp.resolve("data.bin");
    TrainFixture.writeTokens(data, TrainFixture.TOKENS, -1, -1);
    Path ck = tmp.resolve("ck");
    List<Float> before = new ArrayList<>();
    try (TokenDataset d = TokenDataset.open(data);
        Transformer model = Transformer.create(TrainFixture.model(), Device.CPU);
        Trainer t = trainer(model, d);
        CheckpointManager mgr = new CheckpointManager(ck, 3, false)) {
      model.initialize(TC.seed());
      for (int i = 0; i < 3; i++) t.step();
      Tensor w = model.parameters().get("transformer.h.0.mlp.c_fc.bias").master();
      float[] v = w.toFloatArray();
      for (float x : v) before.add(x);
      v[0] = Float.NaN;
      w.copyFrom(v);
      NonFiniteException e = assertThrows(NonFiniteException.class, t::step);
      assertEquals(3, e.step());
      assertEquals(3, t.optimizer().step(), "no update was applied");
      mgr.save(t);
    }
    Checkpoint c = Checkpoint.open(ck.resolve("step-00000003"));
    assertEquals(3, c.step());
    try (TokenDataset d = TokenDataset.open(data);
        Transformer model = Transformer.create(c.modelConfig(), Device.CPU);
        Trainer t = trainer(model, d)) {
      c.restore(t);
      assertEquals(3L * TC.batch() * TC.seq(), t.data().state().position(), "the loader as before the failed step");
      float[] saved = model.parameters().get("transformer.h.0.mlp.c_fc.bias").master().toFloatArray();
      assertTrue(Float.isNaN(saved[0]), "the checkpoint holds the parameters as they were (the NaN was set by hand)");
      for (int i = 1; i < saved.length; i++) assertEquals(before.get(i), saved[i]);
    }
  }

  /** Through the CLI: a run whose loss becomes non-finite saves its state, says how to resume, and exits with 1. */
  @Test
  void theCommandLineSavesAndSaysHowToResume(@TempDir Path tmp) throws IOException {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Path log = tmp.resolve("log.jsonl");
    TrainFixture.Run r = TrainFixture.runInProcess(fx.trainArgs(ck, log, 20, 5, "--lr", "1e30",
        "--grad-clip", "0"));
    assertEquals(1, r.exitCode(), r.all());
    int lines = TrainFixture.logLines(log).size();
    assertTrue(lines >= 1 && lines < 20, "failed early, after " + lines + " steps");
    String saved = String.format("step-%08d", lines);
    assertTrue(r.err().contains("training failed at step " + lines) && r.err().contains("is NaN")
        && r.err().contains("saved to " + ck.resolve(saved)) && r.err().contains("resume with: athanor train")
        && r.err().contains("--resume auto"), r.err());
    assertEquals(lines, TrainFixture.newestStep(ck), "the checkpoint is the state after the last logged step");
    assertEquals(lines, Checkpoint.open(ck.resolve(saved)).step());
  }
}

package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Rotation keeps the newest K checkpoints, never the one just written among those deleted, and nothing else is touched. */
class RotationTest {
  @Test
  void keepTwoLeavesExactlyTheTwoNewest(@TempDir Path tmp) throws IOException {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Files.createDirectories(ck.resolve("step-notes"));      // not a checkpoint name
    Files.writeString(ck.resolve("README"), "mine");
    Files.createDirectories(ck.resolve("step-00000001x"));  // neither
    TrainFixture.runOk(fx.trainArgs(ck, tmp.resolve("log.jsonl"), 10, 2, "--keep", "2"));
    assertEquals(List.of("step-00000008", "step-00000010"), TrainFixture.stepNames(ck));
    for (String n : TrainFixture.stepNames(ck)) Checkpoint.open(ck.resolve(n));
    assertTrue(Files.isDirectory(ck.resolve("step-notes")) && Files.isDirectory(ck.resolve("step-00000001x")));
    assertEquals("mine", Files.readString(ck.resolve("README")));
  }

  @Test
  void keepMustBePositive(@TempDir Path tmp) {
    assertThrows(IllegalArgumentException.class, () -> new CheckpointManager(tmp, 0, false));
    TrainFixture.Run r;
    try {
      TrainFixture fx = TrainFixture.create(tmp);
      r = TrainFixture.runInProcess(fx.trainArgs(tmp.resolve("ck"), tmp.resolve("l.jsonl"), 4, 2, "--keep", "0"));
    } catch (IOException e) {
      throw new AssertionError(e);
    }
    assertEquals(2, r.exitCode(), r.all());
    assertTrue(r.err().contains("Invalid value for option '--keep': 0 is out of range (expected an integer >= 1)"), r.err());
  }

  /**
   * A run resumed from step 4 because step 6 is corrupt, keeping 1: its checkpoint of step 5 must survive
   * rotation (the corrupt step-6 is newer, but it is not one of this run's, and it must not count).
   */
  @Test
  void aNewerCorruptCheckpointNeverPushesOutTheOneJustWritten(@TempDir Path tmp) throws IOException {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    TrainFixture.runOk(fx.trainArgs(ck, tmp.resolve("log.jsonl"), 6, 2, "--keep", "5"));
    Files.delete(ck.resolve("step-00000006").resolve("model.safetensors"));
    Checkpoint from = CheckpointManager.latestValid(ck, w -> {}).orElseThrow();
    assertEquals(4, from.step());

    TrainConfig tc = from.trainConfig();
    try (TokenDataset data = TokenDataset.open(fx.data);
        Transformer model = Transformer.create(from.modelConfig(), Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(data, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()));
        CheckpointManager m = new CheckpointManager(ck, 1, false, from.runId())) {
      from.restore(t);
      t.step();
      m.save(t);
      assertEquals(List.of("step-00000005", "step-00000006"), TrainFixture.stepNames(ck));
      assertEquals(5, Checkpoint.open(ck.resolve("step-00000005")).step(), "the new checkpoint survives and verifies");
      assertEquals(5, CheckpointManager.latestValid(ck, w -> {}).orElseThrow().step());
      t.step();
      m.save(t);  // step 6 again: the corrupt one is replaced
      assertEquals(List.of("step-00000006"), TrainFixture.stepNames(ck));
      assertEquals(6, Checkpoint.open(ck.resolve("step-00000006")).step());
    }
  }

  /**
   * Saving a step that already has a valid checkpoint of the same state (on exit right after a periodic save, or
   * a finished run started again with --resume auto) keeps that checkpoint instead of deleting and rewriting it.
   */
  @Test
  void theSameStateSavedAgainKeepsTheExistingCheckpoint(@TempDir Path tmp) throws IOException {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Path log = tmp.resolve("log.jsonl");
    TrainFixture.runOk(fx.trainArgs(ck, log, 4, 2));
    Path last = ck.resolve("step-00000004");
    String manifest = Files.readString(last.resolve(Checkpoint.MANIFEST));
    Object key = Files.readAttributes(last, java.nio.file.attribute.BasicFileAttributes.class).fileKey();

    List<String> again = new ArrayList<>(fx.trainArgs(ck, log, 4, 2));
    again.addAll(List.of("--resume", "auto"));
    TrainFixture.Run r = TrainFixture.runInProcess(again);
    assertEquals(1, r.exitCode(), r.all());
    assertTrue(r.err().contains("no step was run (the checkpoint is already at step 4)"), r.err());
    assertEquals(manifest, Files.readString(last.resolve(Checkpoint.MANIFEST)), "the same checkpoint, not a rewrite");
    assertEquals(key, Files.readAttributes(last, java.nio.file.attribute.BasicFileAttributes.class).fileKey());
    assertEquals(4, TrainFixture.stepLosses(log).size(), "the log of the finished run is kept");
  }
}

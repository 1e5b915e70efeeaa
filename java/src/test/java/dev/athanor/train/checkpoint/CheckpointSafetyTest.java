package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
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
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Checkpoints are never lost or mixed up: {@code --resume} refuses (and keeps) a directory whose checkpoints are all
 * invalid, a run never writes into another run's checkpoint directory unless told to, rotation and replacement only
 * touch the run's own checkpoints, an edited manifest fails its checksum, and SIGTERM without checkpoints says that
 * nothing was saved.
 */
class CheckpointSafetyTest {
  @TempDir static Path shared;
  static TrainFixture fx;
  static TrainFixture.Finished base;  // step-2, -4, -6 of a 6-step run
  static String baseRun;

  @BeforeAll
  static void train() throws IOException {
    fx = TrainFixture.create(shared);
    base = fx.finishedRun(6, 2);
    assertEquals(List.of("step-00000002", "step-00000004", "step-00000006"), TrainFixture.stepNames(base.checkpoints()));
    baseRun = Checkpoint.open(TrainFixture.step(base.checkpoints(), 2)).runId();
  }

  private static Path step(Path ck, int s) {
    return TrainFixture.step(ck, s);
  }

  private static List<String> with(List<String> args, String... more) {
    List<String> a = new ArrayList<>(args);
    a.addAll(Arrays.asList(more));
    return a;
  }

  /** Every file under {@code dir} by relative path, with its bytes (as a string of their hash and length). */
  private static Map<String, String> tree(Path dir) throws IOException {
    Map<String, String> m = new TreeMap<>();
    try (var s = Files.walk(dir)) {
      for (Path p : s.toList()) {
        String key = dir.relativize(p).toString();
        m.put(key, Files.isDirectory(p) ? "dir" : Arrays.hashCode(Files.readAllBytes(p)) + "/" + Files.size(p));
      }
    }
    return m;
  }


  @Test
  void resumeAutoWithAllCheckpointsCorruptFailsAndKeepsThem(@TempDir Path tmp) throws IOException {
    Path ck = base.copyTo(tmp);
    TrainFixture.flipByte(step(ck, 6).resolve("model.safetensors"));
    Files.delete(step(ck, 4).resolve("optimizer.safetensors"));
    Path mf2 = step(ck, 2).resolve("manifest.json");
    String manifest2 = Files.readString(mf2);
    Files.writeString(mf2, manifest2.replace("\"adam_step\": 2,", "\"adam_step\": 3,"));
    assertFalse(Files.readString(mf2).equals(manifest2), "the manifest was edited");
    Map<String, String> before = tree(ck);
    Path log = tmp.resolve("log.jsonl");
    Files.writeString(log, "the old log\n");
    for (String mode : List.of("auto", "auto-or-new")) {
      TrainFixture.Run r = TrainFixture.runInProcess(with(fx.trainArgs(ck, log, 10, 2), "--resume", mode));
      assertEquals(1, r.exitCode(), r.all());
      String err = r.err();
      assertTrue(err.contains("--resume " + mode + ": none of the 3 checkpoints in " + ck + " is valid"), err);
      assertTrue(err.contains("left untouched"), err);
      assertTrue(err.contains("step-00000006") && err.contains("model.safetensors fails its checksum"), err);
      assertTrue(err.contains("step-00000004") && err.contains("optimizer.safetensors is missing"), err);
      assertTrue(err.contains("step-00000002") && err.contains("the manifest fails its checksum"), err);
      assertFalse(r.out().contains("resuming") || err.contains("starting"), r.all());
      assertEquals(before, tree(ck), "every checkpoint is left as it was");
      assertEquals("the old log\n", Files.readString(log), "nothing was run");
    }
  }

  @Test
  void resumeAutoWithoutAnyCheckpointIsAnErrorAndAutoOrNewStartsANewRun(@TempDir Path tmp) throws IOException {
    Path ck = tmp.resolve("ck");
    TrainFixture.Run r = TrainFixture.runInProcess(with(fx.trainArgs(ck, tmp.resolve("a.jsonl"), 4, 2), "--resume", "auto"));
    assertEquals(2, r.exitCode(), r.all());
    assertTrue(r.err().contains("--resume auto: " + ck + " does not exist, so there is nothing to resume; to start a new "
        + "run when there is no checkpoint yet, use --resume auto-or-new"), r.err());
    Files.createDirectories(ck);
    r = TrainFixture.runInProcess(with(fx.trainArgs(ck, tmp.resolve("a.jsonl"), 4, 2), "--resume", "auto"));
    assertEquals(2, r.exitCode(), r.all());
    assertTrue(r.err().contains("there is no checkpoint (step-NNNNNNNN/) in " + ck), r.err());

    r = TrainFixture.runOk(with(fx.trainArgs(ck, tmp.resolve("a.jsonl"), 4, 2), "--resume", "auto-or-new"));
    assertTrue(r.err().contains("no checkpoint in " + ck + " yet; starting a new run"), r.err());
    assertEquals(List.of("step-00000002", "step-00000004"), TrainFixture.stepNames(ck));
    // the same command again resumes (here: the run is complete, so there is no step left)
    r = TrainFixture.runInProcess(with(fx.trainArgs(ck, tmp.resolve("a.jsonl"), 4, 2), "--resume", "auto-or-new"));
    assertEquals(1, r.exitCode(), r.all());
    assertTrue(r.out().contains("resuming from " + step(ck, 4) + " (step 4)"), r.out());
  }

  @Test
  void freshRunIntoAnotherRunsCheckpointDirIsRefused(@TempDir Path tmp) throws IOException {
    Path ck = base.copyTo(tmp);
    Map<String, String> before = tree(ck);
    Path log = tmp.resolve("b.jsonl");
    List<String> runB = fx.trainArgs(ck, log, 10, 2, "--seed", "7", "--keep", "3");
    TrainFixture.Run r = TrainFixture.runInProcess(runB);
    assertEquals(2, r.exitCode(), r.all());
    String err = r.err();
    assertTrue(err.contains("--checkpoint-dir " + ck + " holds checkpoints of another run:"), err);
    assertTrue(err.contains("run " + baseRun + ": steps 2 to 6 (3 checkpoints, written "), err);
    assertTrue(err.contains("--overwrite-checkpoints") && err.contains("--resume auto"), err);
    assertFalse(Files.exists(log), "refused before any step");
    assertEquals(before, tree(ck));

    r = TrainFixture.runOk(with(runB, "--overwrite-checkpoints"));
    assertTrue(r.err().contains("--overwrite-checkpoints: deleted the checkpoints of run " + baseRun), r.err());
    assertEquals(List.of("step-00000006", "step-00000008", "step-00000010"), TrainFixture.stepNames(ck),
        "--keep 3 leaves 3, all of the new run");
    String runId = Checkpoint.open(step(ck, 10)).runId();
    assertFalse(runId.equals(baseRun), runId);
    for (String n : TrainFixture.stepNames(ck)) assertEquals(runId, Checkpoint.open(ck.resolve(n)).runId(), n);
  }

  /** A resumed run keeps its run id; another run's checkpoint is neither rotated away nor replaced by this run's. */
  @Test
  void rotationAndReplacementOnlyEverTouchThisRunsCheckpoints(@TempDir Path tmp) throws IOException {
    Path ck = base.copyTo(tmp);
    TrainConfig tc = Checkpoint.open(step(ck, 2)).trainConfig();
    try (TokenDataset data = TokenDataset.open(fx.data);
        Transformer model = Transformer.create(TrainFixture.model(), Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(data, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()));
        CheckpointManager m = new CheckpointManager(ck, 1, false, "other-run")) {
      model.initialize(tc.seed());
      t.step();
      m.save(t);  // step-1
      t.step();
      t.step();
      m.save(t);  // step-3: keep 1 deletes step-1 (this run's), not steps 2 (older, another run's)
      assertEquals(List.of("step-00000002", "step-00000003", "step-00000004", "step-00000006"), TrainFixture.stepNames(ck));
      t.step();
      String msg = assertThrows(CheckpointException.class, () -> m.save(t)).getMessage();
      assertTrue(msg.contains("step-00000004") && msg.contains("another run (" + baseRun + ")"), msg);
      assertEquals(baseRun, Checkpoint.open(step(ck, 4)).runId(), "the other run's checkpoint is intact");
    }
  }

  @Test
  void editedManifestIsDetectedAndPreviousCheckpointUsed(@TempDir Path tmp) throws IOException {
    Path ck = base.copyTo(tmp);
    Path mf = step(ck, 6).resolve("manifest.json");
    String good = Files.readString(mf);
    // layout does not count: the same manifest, compact, still verifies
    Files.writeString(mf, JsonParser.parseString(good).toString());
    assertEquals(6, Checkpoint.open(step(ck, 6)).step());
    Files.writeString(mf, good.replace("\"step\": 6,", "\"step\": 5,"));
    String msg = assertThrows(CheckpointException.class, () -> Checkpoint.open(step(ck, 6))).getMessage();
    assertTrue(msg.contains(mf.toString()) && msg.contains("the manifest fails its checksum") && msg.contains("edited"), msg);

    Path log = tmp.resolve("log.jsonl");
    Files.write(log, TrainFixture.logLines(base.log()));
    TrainFixture.Run r = TrainFixture.runOk(with(fx.trainArgs(ck, log, 6, 2, "--keep", "10"), "--resume", "auto"));
    assertTrue(r.err().contains("skipping invalid checkpoint: " + mf + ": the manifest fails its checksum"), r.err());
    assertFalse(r.out().contains("skipping"), "checkpoint warnings go to standard error: " + r.out());
    assertTrue(r.out().contains("resuming from " + step(ck, 4) + " (step 4)"), r.out());
    assertEquals(base.losses(), TrainFixture.stepLosses(log), "steps 4 and 5 redone exactly");
    assertEquals(6, Checkpoint.open(step(ck, 6)).step(), "the edited checkpoint was replaced by a good one");
  }

  /** Format version 1 (before manifest checksums and run ids) still resumes, with a note on standard error. */
  @Test
  void aLegacyCheckpointWithoutManifestChecksumIsAcceptedWithANote(@TempDir Path tmp) throws IOException {
    Path ck = base.copyTo(tmp);
    for (int s = 2; s <= 6; s += 2) {
      Path mf = step(ck, s).resolve("manifest.json");
      JsonObject m = JsonParser.parseString(Files.readString(mf)).getAsJsonObject();
      m.remove("run_id");
      m.remove("manifest_crc32c");
      m.addProperty("format_version", 1);
      Files.writeString(mf, new GsonBuilder().setPrettyPrinting().create().toJson(m));
    }
    Checkpoint c = Checkpoint.open(step(ck, 6));
    assertTrue(c.legacy());
    assertEquals(Checkpoint.LEGACY_RUN_ID, c.runId());

    Path log = tmp.resolve("log.jsonl");
    TrainFixture.Run r = TrainFixture.runOk(with(fx.trainArgs(ck, log, 8, 2, "--keep", "2"), "--resume", "auto"));
    assertTrue(r.err().contains("note: " + step(ck, 6) + " was written by an older Athanor (checkpoint format 1)"), r.err());
    assertEquals(List.of("step-00000006", "step-00000008"), TrainFixture.stepNames(ck), "the resumed run rotates them");
    assertEquals(Checkpoint.LEGACY_RUN_ID, Checkpoint.open(step(ck, 8)).runId());
    assertFalse(Checkpoint.open(step(ck, 8)).legacy());
  }

  @Test
  void sigtermWithoutCheckpointDirSaysNothingWasSaved(@TempDir Path tmp) throws Exception {
    TrainFixture f = TrainFixture.create(tmp);
    Path log = tmp.resolve("log.jsonl");
    Path out = tmp.resolve("child.out");
    int rc = TrainFixture.terminateAfter(f.startChild(List.of(), f.trainArgs(null, log, 3000, 0), out), log, 3, out);
    String text = TrainFixture.readOrWhy(out);
    assertEquals(143, rc, text);
    int lines = TrainFixture.logLines(log).size();
    assertTrue(text.contains("stopped by a termination signal at step " + lines + " of 3000; nothing was saved"), text);
    assertTrue(text.contains("train with --checkpoint-dir DIR"), text);
    assertFalse(text.contains("Exception"), text);
  }
}

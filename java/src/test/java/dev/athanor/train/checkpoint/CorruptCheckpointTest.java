package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Corruption detection: a flipped byte, a truncated or missing file, a broken manifest are each reported by
 * file name; {@link CheckpointManager#latestValid} and {@code train --resume auto} fall back to the newest
 * checkpoint that verifies.
 */
class CorruptCheckpointTest {
  @TempDir static Path shared;
  static TrainFixture fx;
  static Path base;  // step-2, -4, -6, -8 of an 8-step run
  static List<String> baseLosses;

  @BeforeAll
  static void train() throws IOException {
    fx = TrainFixture.create(shared);
    TrainFixture.Finished run = fx.finishedRun(8, 2);
    base = run.checkpoints();
    baseLosses = run.losses();
    assertEquals(List.of("step-00000002", "step-00000004", "step-00000006", "step-00000008"), TrainFixture.stepNames(base));
  }

  /** A fresh copy of the base checkpoints. */
  private static Path copy(Path tmp) throws IOException {
    return new TrainFixture.Finished(base, null, baseLosses).copyTo(tmp);
  }

  private static Path step(Path ck, int s) {
    return TrainFixture.step(ck, s);
  }

  private static String openFails(Path dir) {
    return assertThrows(CheckpointException.class, () -> Checkpoint.open(dir)).getMessage();
  }

  /** Asserts that latestValid returns step {@code expected} and reports exactly the directories {@code bad} by name. */
  private static void assertFallsBackTo(Path ck, long expected, String... bad) {
    List<String> warnings = new ArrayList<>();
    Checkpoint c = CheckpointManager.latestValid(ck, warnings::add).orElseThrow();
    assertEquals(expected, c.step());
    assertEquals(bad.length, warnings.size(), warnings::toString);
    for (int i = 0; i < bad.length; i++) assertTrue(warnings.get(i).contains(bad[i]), warnings.get(i));
  }

  @Test
  void aFlippedByteFailsTheChecksum(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    TrainFixture.flipByte(step(ck, 8).resolve("model.safetensors"));
    String msg = openFails(step(ck, 8));
    assertTrue(msg.contains("model.safetensors") && msg.contains("checksum") && msg.contains("step-00000008"), msg);
    assertFallsBackTo(ck, 6, "step-00000008");
  }

  @Test
  void aTruncatedFileIsReportedAsTruncated(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    for (int s : new int[] {8, 6}) {
      Path f = step(ck, s).resolve(s == 8 ? "model.safetensors" : "optimizer.safetensors");
      try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
        raf.setLength(s == 8 ? raf.length() - 1 : 0);
      }
      String msg = openFails(step(ck, s));
      assertTrue(msg.contains(f.getFileName().toString()) && msg.contains("truncated"), msg);
    }
    assertFallsBackTo(ck, 4, "step-00000008", "step-00000006");
  }

  @Test
  void aMissingFileIsReportedAsMissing(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    Files.delete(step(ck, 8).resolve("optimizer.safetensors"));
    String msg = openFails(step(ck, 8));
    assertTrue(msg.contains("optimizer.safetensors") && msg.contains("missing"), msg);
    Files.delete(step(ck, 6).resolve("manifest.json"));
    msg = openFails(step(ck, 6));
    assertTrue(msg.contains("manifest.json"), msg);
    assertFallsBackTo(ck, 4, "step-00000008", "step-00000006");
  }

  @Test
  void brokenManifestsAreReportedNotThrownAsSomethingElse(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    Path mf = step(ck, 8).resolve("manifest.json");
    String good = Files.readString(mf);
    List<String> broken = List.of(
        good.substring(0, good.length() / 2),                                      // cut short
        "",                                                                         // empty
        "[1, 2]",                                                                   // not an object
        good.replace("\"step\": 8,", "\"step\": \"eight\","),                       // wrong type
        good.replace("\"data_loader\"", "\"data_loaderX\""),                         // a section missing
        good.replace("\"adam_step\": 8,", ""),                                      // a field missing
        good.replace("\"bytes\":", "\"bytesX\":"),                                  // a file entry incomplete
        good.replace("\"optimizer.safetensors\"", "\"../optimizer.safetensors\""),  // a path outside the checkpoint
        good.replace("\"n_embd\": 64", "\"n_embd\": -64"));                        // an invalid model config
    for (String text : broken) {
      Files.writeString(mf, text);
      String msg = openFails(step(ck, 8));
      assertTrue(msg.contains("manifest.json") || msg.contains("outside the checkpoint") || msg.contains("lists no"), msg);
      assertFallsBackTo(ck, 6, "step-00000008");
    }
    Files.writeString(mf, good);
    assertEquals(8, Checkpoint.open(step(ck, 8)).step(), "the original manifest still verifies");
  }

  @Test
  void noValidCheckpointGivesEmptyAndEveryReason(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    for (int s = 2; s <= 8; s += 2) Files.delete(step(ck, s).resolve("model.safetensors"));
    List<String> warnings = new ArrayList<>();
    Consumer<String> warn = warnings::add;
    assertTrue(CheckpointManager.latestValid(ck, warn).isEmpty());
    assertEquals(4, warnings.size(), warnings::toString);
    assertTrue(CheckpointManager.latestValid(tmp.resolve("does-not-exist"), warn).isEmpty());
  }

  @Test
  void resumeAutoSkipsCorruptCheckpointsAndContinuesExactly(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    Path model8 = step(ck, 8).resolve("model.safetensors");
    byte[] b = Files.readAllBytes(model8);
    b[b.length - 3] ^= 1;
    Files.write(model8, b);
    Files.delete(step(ck, 6).resolve("optimizer.safetensors"));
    Path log = tmp.resolve("log.jsonl");
    Files.write(log, TrainFixture.logLines(shared.resolve("base.jsonl")));  // the log of the run that wrote them

    List<String> args = new ArrayList<>(fx.trainArgs(ck, log, 8, 2, "--keep", "10"));
    args.addAll(List.of("--resume", "auto"));
    TrainFixture.Run r = TrainFixture.runOk(args);
    assertTrue(r.err().contains("skipping invalid checkpoint") && r.err().contains("step-00000008")
        && r.err().contains("checksum"), r.err());
    assertTrue(r.err().contains("step-00000006") && r.err().contains("missing"), r.err());
    assertTrue(!r.out().contains("skipping"), "warnings go to standard error: " + r.out());
    assertTrue(r.out().contains("resuming from " + step(ck, 4) + " (step 4)"), r.out());
    assertEquals(baseLosses, TrainFixture.stepLosses(log), "steps 4..7 redone with the same losses, 0..3 kept");
    for (int s = 2; s <= 8; s += 2) Checkpoint.open(step(ck, s));  // the corrupt ones were replaced by good ones
  }

  @Test
  void resumeFromANamedCorruptCheckpointFailsNamingIt(@TempDir Path tmp) throws IOException {
    Path ck = copy(tmp);
    Files.delete(step(ck, 8).resolve("optimizer.safetensors"));
    List<String> args = new ArrayList<>(fx.trainArgs(ck, tmp.resolve("log.jsonl"), 10, 2));
    args.addAll(List.of("--resume", step(ck, 8).toString()));
    TrainFixture.Run r = TrainFixture.runInProcess(args);
    assertEquals(1, r.exitCode(), r.all());
    assertTrue(r.err().contains("optimizer.safetensors is missing") && r.err().contains("step-00000008"), r.err());
    for (int s = 2; s <= 6; s += 2) Checkpoint.open(step(ck, s));
  }
}

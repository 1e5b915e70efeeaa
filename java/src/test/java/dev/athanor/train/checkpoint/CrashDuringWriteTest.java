package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Atomicity: a JVM that dies after a checkpoint's files are written but before the rename
 * ({@code -Dathanor.checkpoint.crashBeforeRename=true} halts it there) leaves the previous checkpoints as they
 * were and nothing that loads; the next manager on the directory removes the leftover.
 */
class CrashDuringWriteTest {
  @Test
  void aCrashBeforeTheRenameLeavesThePreviousSetAndNoLoadableHalfWrite(@TempDir Path tmp) throws Exception {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Path log = tmp.resolve("log.jsonl");
    TrainFixture.runOk(fx.trainArgs(ck, log, 10, 5));  // in this JVM: checkpoints at steps 5 and 10
    assertEquals(List.of("step-00000005", "step-00000010"), TrainFixture.stepNames(ck));
    String before = Files.readString(ck.resolve("step-00000010").resolve(Checkpoint.MANIFEST));

    // resume to 20 steps in a child that halts during its first save (step 15), after writing, before the rename
    List<String> args = new ArrayList<>(fx.trainArgs(ck, log, 20, 5));
    args.addAll(List.of("--resume", "auto", "--checkpoint-sync"));
    Path out = tmp.resolve("child.out");
    int rc = TrainFixture.await(fx.startChild(List.of("-Dathanor.checkpoint.crashBeforeRename=true"), args, out), out);
    assertEquals(137, rc, () -> "the hook halts the child:\n" + read(out));

    List<Path> leftovers;
    try (var s = Files.list(ck)) {
      leftovers = s.filter(p -> p.getFileName().toString().startsWith(".tmp-step-00000015")).toList();
    }
    assertEquals(1, leftovers.size(), "the interrupted write is still there under its temporary name");
    assertTrue(Files.size(leftovers.get(0).resolve(Checkpoint.MODEL_FILE)) > 0, "it was fully written");
    assertEquals(List.of("step-00000005", "step-00000010"), TrainFixture.stepNames(ck), "no step-15 appeared");

    List<String> warnings = new ArrayList<>();
    Checkpoint latest = CheckpointManager.latestValid(ck, warnings::add).orElseThrow();
    assertEquals(10, latest.step(), "the previous checkpoint is the newest valid one");
    assertEquals(List.of(), warnings, "a temporary directory is not a candidate at all");
    assertEquals(before, Files.readString(latest.directory().resolve(Checkpoint.MANIFEST)), "untouched");
    Checkpoint.open(ck.resolve("step-00000005"));  // still verifies

    try (CheckpointManager m = new CheckpointManager(ck, 3, true)) {
      assertFalse(Files.exists(leftovers.get(0)), "a new manager removes the leftover");
    }
    assertEquals(List.of("step-00000005", "step-00000010"), TrainFixture.stepNames(ck), "and nothing else");
  }

  @Test
  void aCrashBeforeTheFirstCheckpointLeavesNoneThatLoads(@TempDir Path tmp) throws Exception {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Path out = tmp.resolve("child.out");
    int rc = TrainFixture.await(fx.startChild(List.of("-Dathanor.checkpoint.crashBeforeRename=true"),
        fx.trainArgs(ck, tmp.resolve("log.jsonl"), 10, 3), out), out);
    assertEquals(137, rc, () -> read(out));
    assertEquals(List.of(), TrainFixture.stepNames(ck));
    assertTrue(CheckpointManager.latestValid(ck, w -> {}).isEmpty());
    // --resume auto-or-new then starts a new run instead of failing
    List<String> args = new ArrayList<>(fx.trainArgs(ck, tmp.resolve("log.jsonl"), 4, 3));
    args.addAll(List.of("--resume", "auto-or-new"));
    TrainFixture.Run r = TrainFixture.runOk(args);
    assertTrue(r.err().contains("no checkpoint in " + ck + " yet; starting a new run"), r.err());
    assertEquals(List.of("step-00000003", "step-00000004"), TrainFixture.stepNames(ck));
    try (var s = Files.list(ck)) {
      assertEquals(0, s.filter(p -> p.getFileName().toString().startsWith(".tmp-")).count(), "the leftover was removed");
    }
  }

  private static String read(Path p) {
    try {
      return Files.readString(p);
    } catch (Exception e) {
      return "(" + e + ")";
    }
  }
}

package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, case 4, for checkpoints: a FIFO in place of a checkpoint's data file or manifest is reported as what it
 * is (before, it read as "missing"), and nothing blocks on opening it.
 */
class CheckpointFifoTest {
  @Test
  void case4AFifoInACheckpointIsReportedAsWhatItIs(@TempDir Path tmp) throws Exception {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    TrainFixture.runOk(fx.trainArgs(ck, tmp.resolve("log.jsonl"), 2, 1, "--keep", "5"));
    Path newest = TrainFixture.step(ck, 2);
    Path data;
    try (var s = Files.list(newest)) {
      data = s.filter(f -> !f.getFileName().toString().equals(Checkpoint.MANIFEST)).sorted().findFirst().orElseThrow();
    }
    Files.delete(data);
    mkfifo(data);
    CheckpointException e = assertTimeoutPreemptively(Duration.ofSeconds(60),
        () -> assertThrows(CheckpointException.class, () -> Checkpoint.open(newest)));
    assertTrue(e.getMessage().contains(data.getFileName() + " is a FIFO (named pipe), not a regular file"), e.getMessage());

    Path older = TrainFixture.step(ck, 1);
    Files.delete(older.resolve(Checkpoint.MANIFEST));
    mkfifo(older.resolve(Checkpoint.MANIFEST));
    CheckpointException m = assertTimeoutPreemptively(Duration.ofSeconds(60),
        () -> assertThrows(CheckpointException.class, () -> Checkpoint.open(older)));
    assertTrue(m.getMessage().contains(Checkpoint.MANIFEST + " is a FIFO (named pipe), not a regular file"), m.getMessage());
    assertTrue(List.of(newest, older).stream().allMatch(Files::isDirectory), "both are left in place");
  }

  private static void mkfifo(Path p) throws Exception {
    Process pr = new ProcessBuilder("mkfifo", p.toString()).inheritIO().start();
    assumeTrue(pr.waitFor(30, TimeUnit.SECONDS) && pr.exitValue() == 0, "mkfifo is not available");
  }
}

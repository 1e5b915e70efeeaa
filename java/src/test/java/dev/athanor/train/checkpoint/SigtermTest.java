package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * SIGTERM (preemption): the run finishes the step in progress, saves that state, says how to resume, and exits
 * with a non-zero code; the saved step equals the number of logged steps.
 */
class SigtermTest {
  @Test
  void sigtermSavesTheLastCompletedStepAndSaysHowToResume(@TempDir Path tmp) throws Exception {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Path log = tmp.resolve("log.jsonl");
    Path out = tmp.resolve("child.out");
    int steps = 3000;  // far more than it gets to do
    int rc = TrainFixture.terminateAfter(fx.startChild(List.of(), fx.trainArgs(ck, log, steps, 50), out), log, 6, out);
    String text = TrainFixture.readOrWhy(out);
    assertEquals(143, rc, "128 + SIGTERM, as for any process the signal ends:\n" + text);
    int lines = TrainFixture.logLines(log).size();
    assertTrue(lines >= 6 && lines < steps, "stopped after " + lines + " steps:\n" + text);
    assertTrue(text.contains("stopped by a termination signal at step " + lines), text);
    assertTrue(text.contains("resume with: athanor train") && text.contains("--resume auto"), text);
    assertEquals(lines, TrainFixture.newestStep(ck), "the checkpoint holds the last completed step");
    Checkpoint c = Checkpoint.open(ck.resolve(String.format("step-%08d", lines)));
    assertEquals(lines, c.step());
    try (var s = Files.list(ck)) {
      assertEquals(0, s.filter(f -> f.getFileName().toString().startsWith(".tmp-")).count(), "no write left half-done");
    }
  }
}

package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The headline: on the CPU, a run killed with SIGKILL at an arbitrary moment and resumed with
 * {@code --resume auto} logs exactly the losses of an uninterrupted run, step for step, with shuffling on.
 * (The CPU thread pool is sized by the number of online CPUs; both runs use this machine, so the same count.)
 */
class ResumeAfterKillTest {
  private static final int STEPS = 60;
  private static final int EVERY = 5;

  @Test
  void sigkillAtARandomStepThenResumeReproducesTheUninterruptedLosses(@TempDir Path tmp) throws Exception {
    killAndResume(tmp, TrainFixture.create(tmp), List.of(), 0x5EEDL);
  }

  /**
   * The same with run B's weights, gradients and AdamW moments on the DISK tier (a plan file that places every role
   * there): B, killed and resumed, logs the losses of the in-memory run A; the files the killed process left are
   * removed by the resumed one, whose own are removed when it ends.
   */
  @Test
  void anOffloadedRunKilledAndResumedReproducesTheInMemoryLosses(@TempDir Path tmp) throws Exception {
    TrainFixture fx = TrainFixture.create(tmp);
    Path plan = tmp.resolve("plan.json");
    TrainFixture.runOk(List.of("plan", "--config", fx.config.toString(), "--batch", Integer.toString(TrainFixture.BATCH), "--seq",
        Integer.toString(TrainFixture.SEQ), "--json", plan.toString()));
    Files.writeString(plan, Files.readString(plan).replace("\"HOST\"", "\"DISK\"")
        .replace("\"totals\": {\n    \"DISK\"", "\"totals\": {\n    \"HOST\""));
    Path offDir = tmp.resolve("offload");
    killAndResume(tmp, fx, List.of("--offload", plan.toString(), "--offload-dir", offDir.toString()), 0x0FF10ADL);
    try (var left = Files.list(offDir)) {
      assertEquals(List.of(), left.toList(), "no offload files left: the killed run's removed, the resumed run's deleted");
    }
  }

  private static void killAndResume(Path tmp, TrainFixture fx, List<String> extraB, long seed) throws Exception {
    // A: uninterrupted
    Path logA = tmp.resolve("a.jsonl");
    Path outA = tmp.resolve("a.out");
    int rcA = TrainFixture.await(fx.startChild(List.of(), fx.trainArgs(tmp.resolve("ckA"), logA, STEPS, EVERY), outA), outA);
    assertEquals(0, rcA, () -> "run A failed:\n" + read(outA));
    List<String> a = TrainFixture.stepLosses(logA);
    assertEquals(STEPS, a.size(), "run A logs every step");

    // B: killed with SIGKILL once its log has a seeded-random number of lines, then resumed
    int killAt = new Random(seed).nextInt(8, 51);
    Path ckB = tmp.resolve("ckB");
    Path logB = tmp.resolve("b.jsonl");
    List<String> argsB = fx.trainArgs(ckB, logB, STEPS, EVERY, extraB.toArray(String[]::new));
    Path outB1 = tmp.resolve("b1.out");
    Process b = fx.startChild(List.of(), argsB, outB1);
    long deadline = System.nanoTime() + 120_000_000_000L;
    while (b.isAlive() && TrainFixture.logLines(logB).size() < killAt && System.nanoTime() < deadline) Thread.sleep(2);
    assertTrue(b.isAlive(), () -> "run B ended before it could be killed at line " + killAt + ":\n" + read(outB1));
    b.destroyForcibly();  // SIGKILL on Linux
    int rcB1 = TrainFixture.await(b, outB1);
    assertEquals(137, rcB1, "killed by SIGKILL");
    int linesAtKill = TrainFixture.logLines(logB).size();
    assertTrue(linesAtKill >= killAt && linesAtKill < STEPS, "killed mid-run, after " + linesAtKill + " lines");

    List<String> resume = new ArrayList<>(argsB);
    resume.addAll(List.of("--resume", "auto"));
    Path outB2 = tmp.resolve("b2.out");
    int rcB2 = TrainFixture.await(fx.startChild(List.of(), resume, outB2), outB2);
    String out2 = read(outB2);
    assertEquals(0, rcB2, () -> "resumed run B failed:\n" + out2);
    // unless the kill hit before the first checkpoint was complete, it resumed from one
    assertTrue(out2.contains("resuming from") || out2.contains("starting from scratch"), out2);

    List<String> bLosses = TrainFixture.stepLosses(logB);
    for (int i = 0; i < bLosses.size(); i++) {
      assertTrue(bLosses.get(i).startsWith(i + ":"), "B's log has every step once, in order: line " + i + " is " + bLosses.get(i));
    }
    assertEquals(a, bLosses, "killed at log line " + linesAtKill + "; per-step losses of B equal A's bit for bit");
    assertEquals(STEPS, TrainFixture.newestStep(ckB), "the final state is checkpointed");
  }

  private static String read(Path p) {
    try {
      return Files.readString(p);
    } catch (Exception e) {
      return "(" + e + ")";
    }
  }
}

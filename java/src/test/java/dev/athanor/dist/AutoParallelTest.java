package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.cli.Main;
import dev.athanor.train.checkpoint.TrainFixture;
import com.google.gson.JsonParser;
import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.runtime.Device;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train --parallel auto} through real mpirun: rank 0 plans the layout for the two processes, prints it once, every
 * rank follows it, and the run trains; without mpirun, or with a bad mode, a usage error before any work.
 */
class AutoParallelTest {
  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
    MpiRunTest.tmp = tmp;
  }

  private static List<String> args(TrainFixture f, Path dir, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--config", f.config.toString(), "--data", f.data.toString(), "--device",
        "cpu", "--steps", "3", "--batch", "2", "--seq", "32", "--log", dir.resolve("log.jsonl").toString(), "--out",
        dir.resolve("model").toString(), "--mem-host", "1g", "--threads", "1"));
    a.addAll(List.of(extra));
    return a;
  }

  @Test
  void rankZeroPlansAndEveryRankFollows() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    planAndRun(f, tmp.resolve("auto"));
    planAndRun(f, tmp.resolve("auto-tp"), "--tp", "2");  // a dimension given by hand is kept
    planAndRun(f, tmp.resolve("auto-zero2"), "--zero", "2");
    planAndRun(f, tmp.resolve("auto-zero3"), "--zero", "3");  // the planner's ZeRO 3 memory bounds the measured peak
  }

  /**
   * Pipelines: pp 2 (2 processes, 2 micro-batches) and dp 2 × pp 2 × ZeRO 1 and 2 (4 processes, 2 micro-batches per
   * replica), planned with the dimensions given by hand: the planner's busiest stage bounds rank 0's (stage 0's) measured
   * peak and is within 25% of it (its stage keeps 2 micro-batches' activations, the tied embedding's gradient pieces,
   * the received gradient and the norm's assembled chunk; the phases' largest is counted, not their sum).
   */
  @Test
  void pipelineMemoryIsBoundedByThePrediction() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture-pp"));
    long pp = planAndRun(f, tmp.resolve("auto-pp"), 2, 2, 1.25, "--pp", "2");
    long zero1 = planAndRun(f, tmp.resolve("auto-dp-pp-zero1"), 4, 4, 1.25, "--dp", "2", "--pp", "2", "--zero", "1");
    long zero2 = planAndRun(f, tmp.resolve("auto-dp-pp-zero2"), 4, 4, 1.25, "--dp", "2", "--pp", "2", "--zero", "2");
    System.out.println("rank 0 peaks: pp 2 " + pp + ", dp 2 x pp 2 zero 1 " + zero1 + ", zero 2 " + zero2);
  }

  /**
   * With --offload, the planner's choice is limited to what offloads (--dp with ZeRO 0 to 2): never tensor or pipeline
   * parallel, never ZeRO 3, even where those fit the budget; the run trains with the chosen layout.
   */
  @Test
  void withOffloadOnlyLayoutsThatOffloadAreChosen() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture-offload"));
    Path dir = tmp.resolve("auto-offload");
    List<String> a = args(f, dir, "--accum", "2", "--parallel", "auto", "--offload", "auto", "--offload-dir",
        dir.resolve("offload").toString());
    MpiRunTest.Job j = MpiRunTest.mpirun(2, Main.class.getName(), a, 300);
    assertEquals(0, j.exitCode(), j.output());
    Matcher m = Pattern.compile("chosen: dp (\\d+) x tp (\\d+) x pp (\\d+), zero (\\d)").matcher(j.output());
    assertTrue(m.find(), j.output());
    assertEquals("2/1/1", m.group(1) + "/" + m.group(2) + "/" + m.group(3), j.output());
    assertTrue(Integer.parseInt(m.group(4)) <= 2, "ZeRO 3 cannot offload:\n" + j.output());
    assertEquals(3, Files.readAllLines(dir.resolve("log.jsonl")).stream()
        .filter(l -> l.contains("\"step\"") && !l.contains("\"summary\"")).count(), j.output());
  }

  private static void planAndRun(TrainFixture f, Path dir, String... fixed) throws Exception {
    planAndRun(f, dir, 2, 2, 3, fixed);
  }

  /**
   * Plans and trains with {@code np} processes and {@code accum} micro-batches per step (over all replicas), and checks
   * that the planner's memory per rank bounds rank 0's measured peak and is at most {@code margin} times it; returns the
   * peak.
   */
  private static long planAndRun(TrainFixture f, Path dir, int np, int accum, double margin, String... fixed) throws Exception {
    List<String> a = args(f, dir, "--accum", Integer.toString(accum), "--parallel", "auto");
    a.addAll(List.of(fixed));
    MpiRunTest.Job j = MpiRunTest.mpirun(np, Main.class.getName(), a, 300);
    System.out.println(j.output());
    assertEquals(0, j.exitCode(), j.output());
    assertEquals(1, j.output().split("--parallel auto:", -1).length - 1, "rank 0 alone prints the plan:\n" + j.output());
    assertTrue(j.output().contains("chosen: dp "), j.output());
    // the plan may pick any layout that fits (it measures this machine's speeds): its banner says which it runs
    assertTrue(j.output().contains("data parallel: ") || j.output().contains("tensor parallel: ")
        || j.output().contains("pipeline parallel: "), j.output());
    List<String> lines = Files.readAllLines(dir.resolve("log.jsonl"));
    assertEquals(3, lines.stream().filter(l -> l.contains("\"step\"") && !l.contains("\"summary\"")).count(), j.output());

    // the planner's memory per rank for the layout it chose bounds what rank 0's allocator measured (its peak HOST
    // bytes from the step loop on), and is not far above it
    String summary = lines.stream().filter(l -> l.contains("\"summary\"")).findFirst().orElseThrow();
    long peak = JsonParser.parseString(summary).getAsJsonObject().getAsJsonObject("peak_bytes").get("HOST").getAsLong();
    if (fixed.length > 0 && np == 2 && !fixed[0].equals("--pp")) {
      assertTrue(j.output().contains(fixed[0].equals("--tp") ? "chosen: dp 1 x tp 2" : "chosen: dp 2 x tp 1 x pp 1, zero " + fixed[1]),
          j.output());
    }
    Matcher m = Pattern.compile("chosen: dp (\\d+) x tp (\\d+) x pp (\\d+), zero (\\d)(, recompute)?").matcher(j.output());
    assertTrue(m.find(), j.output());
    ParallelPlanner.Layout chosen = new ParallelPlanner.Layout(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
        Integer.parseInt(m.group(3)), Integer.parseInt(m.group(4)), m.group(5) != null);
    for (int k = 0; k + 1 < fixed.length; k += 2) {
      assertTrue(j.output().contains("chosen: ") && m.group(0).contains(fixed[k].substring(2) + " " + fixed[k + 1]),
          "the plan keeps " + fixed[k] + " " + fixed[k + 1] + ":\n" + j.output());
    }
    ParallelPlanner.Job job = new ParallelPlanner.Job(TrainFixture.model(), Device.CPU, np, 2, 32, accum, 1L << 30,
        new ParallelPlanner.Hardware(1e9, 1e9, 0));
    long predicted = ParallelPlanner.estimate(job, chosen).memoryBytes();
    String what = chosen + ": predicted " + predicted + " bytes per rank, rank 0 measured a peak of " + peak;
    System.out.println(what);
    assertTrue(peak <= predicted, what);
    assertTrue(predicted <= margin * peak, what + " (more than " + margin + " times)");
    return peak;
  }

  @Test
  void withoutMpirunOrWithABadModeItIsAUsageError() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture-bad"));
    for (List<String> a : List.of(args(f, tmp.resolve("bad1"), "--parallel", "auto"), args(f, tmp.resolve("bad2"), "--parallel", "fastest"))) {
      ByteArrayOutputStream buf = new ByteArrayOutputStream();
      int rc;
      try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
        rc = Main.run(a.toArray(String[]::new), ps, ps);
      }
      String out = buf.toString(StandardCharsets.UTF_8);
      assertEquals(Main.USAGE, rc, out);
      assertTrue(out.contains("--parallel auto plans for the processes mpirun starts")
          || out.contains("--parallel 'fastest': expected auto or manual"), out);
    }
  }
}

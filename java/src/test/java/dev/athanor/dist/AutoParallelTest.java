package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.cli.Main;
import dev.athanor.train.checkpoint.TrainFixture;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
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
    Path dir = tmp.resolve("auto");
    MpiRunTest.Job j = MpiRunTest.mpirun(2, Main.class.getName(), args(f, dir, "--accum", "2", "--parallel", "auto"), 300);
    System.out.println(j.output());
    assertEquals(0, j.exitCode(), j.output());
    assertEquals(1, j.output().split("--parallel auto:", -1).length - 1, "rank 0 alone prints the plan:\n" + j.output());
    assertTrue(j.output().contains("chosen: dp "), j.output());
    assertTrue(j.output().contains("data parallel: ") || j.output().contains("tensor parallel: "), j.output());
    long steps = Files.readAllLines(dir.resolve("log.jsonl")).stream().filter(l -> l.contains("\"step\"")).count();
    assertEquals(3, steps, j.output());
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

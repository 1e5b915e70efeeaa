package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.cli.Main;
import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.dist.plan.ParallelPlanner.Layout;
import dev.athanor.runtime.Device;
import dev.athanor.train.checkpoint.TrainFixture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The parallel planner's predicted bytes per step against what real mpirun runs deliver ({@code comm_sent_bytes} of
 * rank 0's log, {@link Communicator#sentBytes}), for every layout the MPI tests run: rank 0's prediction ({@link
 * ParallelPlanner#sentBytes} of stage 0, dp rank 0, tp rank 0) equals every step's measurement exactly, and the
 * planner's busiest-rank figure ({@link ParallelPlanner.Estimate#commBytes}) is at least it. Prints the table (and the
 * planner's memory per rank next to rank 0's measured peak); with {@code -Dathanor.plannerTable=FILE} also writes it
 * there.
 */
class PlannerTrafficTest {
  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
    MpiRunTest.tmp = tmp;
  }

  /** A layout as flags, its process count and the planner's job and layout for it. */
  private record Case(String name, int np, Layout layout, int microBatches, List<String> flags) {}

  private static final int BATCH = 2, SEQ = 32;

  @Test
  void predictedBytesEqualRankZerosMeasuredBytes() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    List<Case> cases = List.of(
        new Case("dp 2", 2, new Layout(2, 1, 1, 0, false), 4, List.of("--dp", "2", "--accum", "2")),
        new Case("dp 2, zero 1", 2, new Layout(2, 1, 1, 1, false), 4, List.of("--dp", "2", "--accum", "2", "--zero", "1")),
        new Case("dp 2, zero 2", 2, new Layout(2, 1, 1, 2, false), 4, List.of("--dp", "2", "--accum", "2", "--zero", "2")),
        new Case("tp 2", 2, new Layout(1, 2, 1, 0, false), 2, List.of("--tp", "2", "--accum", "2")),
        new Case("pp 2", 2, new Layout(1, 1, 2, 0, false), 2, List.of("--pp", "2", "--micro-batches", "2")),
        new Case("dp 2 x tp 2", 4, new Layout(2, 2, 1, 0, false), 4, List.of("--dp", "2", "--tp", "2", "--accum", "2")),
        new Case("dp 2 x pp 2, zero 1", 4, new Layout(2, 1, 2, 1, false), 4,
            List.of("--dp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "1")),
        new Case("dp 2 x pp 2, zero 2", 4, new Layout(2, 1, 2, 2, false), 4,
            List.of("--dp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "2")),
        new Case("dp 2 x tp 2, zero 2", 4, new Layout(2, 2, 1, 2, false), 4,
            List.of("--dp", "2", "--tp", "2", "--accum", "2", "--zero", "2")),
        new Case("tp 2 x pp 2", 4, new Layout(1, 2, 2, 0, false), 2, List.of("--tp", "2", "--pp", "2", "--micro-batches", "2")),
        new Case("dp 2 x tp 2 x pp 2, zero 2", 8, new Layout(2, 2, 2, 2, false), 4,
            List.of("--dp", "2", "--tp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "2")));
    StringBuilder table = new StringBuilder("| layout | ranks | predicted rank 0 (B) | measured rank 0 (B) | ratio | "
        + "predicted busiest rank (B) | busiest / measured | predicted memory per rank (B) | rank 0 peak HOST (B) |\n"
        + "|---|---|---|---|---|---|---|---|---|\n");
    List<String> failures = new ArrayList<>();
    for (Case c : cases) {
      Path dir = tmp.resolve(c.name().replaceAll("[^a-z0-9]+", "-"));
      List<String> a = new ArrayList<>(List.of("train", "--config", f.config.toString(), "--data", f.data.toString(), "--device",
          "cpu", "--steps", "3", "--batch", Integer.toString(BATCH), "--seq", Integer.toString(SEQ), "--log",
          dir.resolve("log.jsonl").toString(), "--out", dir.resolve("model").toString(), "--mem-host", "1g", "--threads", "1"));
      a.addAll(c.flags());
      MpiRunTest.Job j = MpiRunTest.mpirun(c.np(), Main.class.getName(), a, 300);
      assertEquals(0, j.exitCode(), c.name() + ":\n" + j.output());
      List<JsonObject> steps = new ArrayList<>();
      JsonObject summary = null;
      for (String line : Files.readAllLines(dir.resolve("log.jsonl"))) {
        JsonObject o = JsonParser.parseString(line).getAsJsonObject();
        if (o.has("summary")) summary = o;
        else if (o.has("step")) steps.add(o);
      }
      assertEquals(3, steps.size(), c.name());
      ParallelPlanner.Job job = new ParallelPlanner.Job(TrainFixture.model(), Device.CPU, c.np(), BATCH, SEQ, c.microBatches(),
          1L << 30, new ParallelPlanner.Hardware(1e9, 1e9, 0));
      long predicted = ParallelPlanner.sentBytes(job, c.layout(), 0, 0, 0);
      ParallelPlanner.Estimate e = ParallelPlanner.estimate(job, c.layout());
      long measured = steps.get(1).get("comm_sent_bytes").getAsLong();  // a steady-state step
      for (JsonObject s : steps) {
        long m = s.get("comm_sent_bytes").getAsLong();
        if (m != predicted) failures.add(c.name() + " step " + s.get("step") + ": predicted " + predicted + ", measured " + m);
      }
      if (e.commBytes() < measured) failures.add(c.name() + ": the busiest rank's " + e.commBytes() + " < rank 0's " + measured);
      long peak = summary.getAsJsonObject("peak_bytes").get("HOST").getAsLong();
      table.append(String.format(Locale.ROOT, "| %s | %d | %d | %d | %.4f | %d | %.4f | %d | %d |%n", c.name(), c.np(), predicted,
          measured, predicted / (double) measured, e.commBytes(), e.commBytes() / (double) measured, e.memoryBytes(), peak));
    }
    System.out.println(table);
    String file = System.getProperty("athanor.plannerTable");
    if (file != null) Files.writeString(Path.of(file), table);
    assertTrue(failures.isEmpty(), String.join("\n", failures) + "\n" + table);
  }
}

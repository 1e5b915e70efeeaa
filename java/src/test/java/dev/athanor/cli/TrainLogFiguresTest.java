package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.report.TrainLog;
import dev.athanor.testing.RuntimeAssumptions;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 9's figures in {@code train}'s {@code --log}: an offloaded run's step lines carry the step's DISK traffic,
 * stall and overlap; every run ends its log with one summary line (peak bytes per tier, totals); a run in memory has
 * no offload fields in its step lines; a resumed run keeps only its own summary line; a run with the optimizer on the
 * host (CUDA --offload; here its step loop on the CPU with a BF16 model) logs each step's host-device copies and the
 * time it waited for them, which add up to the summary's.
 */
class TrainLogFiguresTest {
  static final ModelConfig MODEL = ModelConfig.gpt2(300, 64, 2, 64, 2);

  @TempDir Path tmp;
  Path config, data;

  @BeforeEach
  void fixture() throws IOException {
    config = Files.writeString(tmp.resolve("config.json"), HfConfig.toJson(MODEL));
    data = TestModels.shard(tmp.resolve("data.bin"), MODEL.vocabSize());
  }

  List<String> shape(String steps) {
    return List.of("--config", config.toString(), "--device", "cpu", "--steps", steps, "--batch", "4", "--seq", "32",
        "--warmup", "1");
  }

  CliTest.Out train(String out, String steps, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--data", data.toString(), "--out", tmp.resolve(out).toString()));
    a.addAll(shape(steps));
    a.addAll(Arrays.asList(extra));
    return CliTest.run(a.toArray(String[]::new));
  }

  /** A plan file for this model with every role the plan lists on DISK (today AdamW's moments). */
  Path diskPlan() throws IOException {
    List<String> a = new ArrayList<>(List.of("plan"));
    a.addAll(shape("4"));
    a.addAll(List.of("--json", "-", "--offload-chunk", "4000"));
    CliTest.Out p = CliTest.run(a.toArray(String[]::new));
    assertEquals(0, p.code(), p.err());
    // the placements' tiers to DISK; the totals keep their HOST entry (as OffloadCommandsTest's valid edited plan)
    String onDisk = p.out().replace("\"HOST\"", "\"DISK\"").replace("\"totals\": {\n    \"DISK\"", "\"totals\": {\n    \"HOST\"");
    assertTrue(onDisk.contains("\"DISK\""), onDisk);
    Path f = tmp.resolve("disk-plan.json");
    Files.writeString(f, onDisk);
    return f;
  }

  static List<JsonObject> lines(Path log) throws IOException {
    List<JsonObject> out = new ArrayList<>();
    for (String l : Files.readAllLines(log, StandardCharsets.UTF_8)) out.add(JsonParser.parseString(l).getAsJsonObject());
    return out;
  }

  /** Checks the summary line {@code s} of a run of {@code steps} steps: every tier's peak, HOST's above 0. */
  static void assertSummary(JsonObject s, int steps) {
    assertTrue(s.get("summary").getAsBoolean(), s.toString());
    assertEquals(steps, s.get("steps").getAsInt(), s.toString());
    JsonObject peaks = s.getAsJsonObject("peak_bytes");
    for (Tier t : Tier.values()) assertTrue(peaks.get(t.name()).getAsLong() >= 0, t + " in " + s);
    assertEquals(Tier.values().length, peaks.size(), s.toString());
    assertTrue(peaks.get("HOST").getAsLong() > 0, "the model's state is on HOST: " + s);
    assertFalse(s.has("step") || s.has("loss"), "not a step: " + s);
  }

  @Test
  void anOffloadedRunLogsEachStepsTrafficAndEndsWithASummary() throws IOException {
    Path plan = diskPlan();
    Path log = tmp.resolve("off/log.jsonl");
    CliTest.Out t = train("off", "4", "--offload", plan.toString(), "--log", log.toString());
    assertEquals(0, t.code(), t.err());
    List<JsonObject> ls = lines(log);
    assertEquals(5, ls.size(), "four steps and the summary: " + ls);
    long read = 0, written = 0;
    double stall = 0;
    for (int i = 0; i < 4; i++) {
      JsonObject o = ls.get(i);
      assertEquals(i, o.get("step").getAsInt(), o.toString());
      for (String k : List.of("disk_read_bytes", "disk_write_bytes", "stall_ms", "overlap")) {
        assertTrue(o.has(k) && o.get(k).getAsDouble() >= 0, k + " in " + o);
      }
      assertTrue(o.get("overlap").getAsDouble() <= 1, o.toString());
      // AdamW streams both moments from DISK and back every step
      assertTrue(o.get("disk_read_bytes").getAsLong() > 0 && o.get("disk_write_bytes").getAsLong() > 0, o.toString());
      read += o.get("disk_read_bytes").getAsLong();
      written += o.get("disk_write_bytes").getAsLong();
      stall += o.get("stall_ms").getAsDouble();
    }
    JsonObject s = ls.get(4);
    assertSummary(s, 4);
    // no checkpoints: the loop's traffic is the steps' traffic
    assertEquals(read, s.get("disk_read_bytes").getAsLong(), s.toString());
    assertEquals(written, s.get("disk_write_bytes").getAsLong(), s.toString());
    assertEquals(stall, s.get("stall_ms").getAsDouble(), 0.01, "the steps' stalls, each rounded to the microsecond: " + s);
    double overlap = s.get("overlap").getAsDouble();
    assertTrue(overlap >= 0 && overlap <= 1, s.toString());
    assertTrue(s.getAsJsonObject("peak_bytes").get("DISK").getAsLong() > 0, "the moments' files are on DISK: " + s);

    TrainLog.Contents c = TrainLog.readAll(log);
    assertEquals(4, c.steps().size());
    assertEquals(4, c.traffic().size());
    assertNotNull(c.summary());
    assertEquals(read, c.summary().diskReadBytes());
    String report = Files.readString(tmp.resolve("off/log-report.html"));
    assertTrue(report.contains("<table id=\"peak-bytes\">") && report.contains("offload traffic"), report);
    if (RuntimeAssumptions.hasDesktop()) {
      assertTrue(report.contains("id=\"chart-disk-bytes\"") && report.contains("id=\"chart-stall\""), "offload charts");
      assertTrue(Files.size(tmp.resolve("off/log-disk-bytes.png")) > 1000);
    }
  }

  /**
   * The step loop of {@code train} with the optimizer on the host (what {@code --device cuda --offload} runs; on the CPU
   * with a BF16 model): every step line carries {@code h2d_bytes}, {@code d2h_bytes} and {@code host_wait_ms}, and the
   * DISK figures only when the moments are on DISK; over the run every unit's F32 gradient went down and its BF16
   * weights up once a step, and the lines add up to the summary's totals.
   */
  @Test
  void theOptimizerOnTheHostLogsEachStepsCopiesAndTheSummaryTheirSum() throws IOException {
    int steps = 4;
    for (boolean disk : new boolean[] {false, true}) {
      dev.athanor.offload.HostOffload host = disk
          ? new dev.athanor.offload.HostOffload(dev.athanor.offload.OffloadConfig.optimizerStateOnDisk(tmp.resolve("off")))
          : dev.athanor.offload.HostOffload.PINNED;
      Path log = tmp.resolve("host-" + disk + "/log.jsonl");
      dev.athanor.train.TrainConfig tc = new dev.athanor.train.TrainConfig(steps, 4, 32, 1, 1e-3f, 1e-4f, 1,
          dev.athanor.train.Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, true, 1);
      long numel;
      try (dev.athanor.io.data.TokenDataset d = dev.athanor.io.data.TokenDataset.open(data);
          dev.athanor.nn.Transformer model = new dev.athanor.nn.Transformer(MODEL, dev.athanor.runtime.Device.CPU,
              dev.athanor.tensor.DType.BF16)) {
        model.initialize(1);
        numel = model.parameters().numel();
        var loader = new dev.athanor.io.data.DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
        TrainCommand.trainLoop(model, tc, loader, log, null, dev.athanor.offload.OffloadConfig.NONE, host, null,
            new java.io.PrintStream(java.io.OutputStream.nullOutputStream()), null, 0, null, null, 1 << 20);
      }
      List<JsonObject> ls = lines(log);
      assertEquals(steps + 1, ls.size(), ls.toString());
      long up = 0, down = 0;
      double waited = 0;
      for (int i = 0; i < steps; i++) {
        JsonObject o = ls.get(i);
        for (String k : List.of("h2d_bytes", "d2h_bytes", "host_wait_ms")) {
          assertTrue(o.has(k) && o.get(k).getAsDouble() >= 0, k + " in " + o);
        }
        assertEquals(disk, o.has("disk_read_bytes"), "DISK figures with the moments there: " + o);
        if (disk) assertTrue(o.get("disk_read_bytes").getAsLong() > 0 || i == 0, o.toString());
        // one micro-batch: the gradients go down during the step's own backward
        assertEquals(4 * numel, o.get("d2h_bytes").getAsLong(), o.toString());
        up += o.get("h2d_bytes").getAsLong();
        down += o.get("d2h_bytes").getAsLong();
        waited += o.get("host_wait_ms").getAsDouble();
      }
      assertEquals(steps * 2 * numel, up, "BF16 weights up once a step");
      assertEquals(steps * 4 * numel, down, "F32 gradients down once a step");
      JsonObject s = ls.get(steps);
      assertSummary(s, steps);
      assertEquals(up, s.get("h2d_bytes").getAsLong(), s.toString());
      assertEquals(down, s.get("d2h_bytes").getAsLong(), s.toString());
      assertEquals(waited, s.get("host_wait_ms").getAsDouble(), 0.01, "the steps' waits, each rounded to the microsecond");
      assertEquals(steps, TrainLog.read(log).size(), "the host figures do not hide the steps");
    }
  }

  @Test
  void aRunInMemoryHasNoOffloadFieldsButASummaryAndAResumeKeepsOnlyItsOwn() throws IOException {
    Path log = tmp.resolve("mem/train-log.jsonl"), ckpt = tmp.resolve("ckpt");
    CliTest.Out t = train("mem", "3", "--checkpoint-dir", ckpt.toString(), "--checkpoint-every", "2");
    assertEquals(0, t.code(), t.err());
    List<JsonObject> ls = lines(log);
    assertEquals(4, ls.size(), ls.toString());
    for (JsonObject o : ls.subList(0, 3)) {
      assertFalse(o.has("disk_read_bytes") || o.has("disk_write_bytes") || o.has("stall_ms") || o.has("overlap"), o.toString());
      assertFalse(o.has("h2d_bytes") || o.has("d2h_bytes") || o.has("host_wait_ms"), o.toString());
    }
    assertFalse(ls.get(3).has("h2d_bytes"), "no host figures without the optimizer on the host");
    assertSummary(ls.get(3), 3);
    assertEquals(0, ls.get(3).get("disk_read_bytes").getAsLong());
    assertEquals(0, ls.get(3).get("disk_write_bytes").getAsLong());
    assertEquals(3, TrainLog.read(log).size(), "the summary is not read as a step");
    String report = Files.readString(tmp.resolve("mem/train-report.html"));
    assertTrue(report.contains("<table id=\"peak-bytes\">"), "peaks are shown without offload too");
    assertFalse(report.contains("offload traffic") || report.contains("chart-disk-bytes"), "no offload figures in memory");

    // resumed from the final checkpoint (step 3) to 5 steps: steps 0 to 2 are kept, the old summary line is not, and
    // the new one covers the two steps this run ran
    t = train("mem", "5", "--checkpoint-dir", ckpt.toString(), "--resume", "auto");
    assertEquals(0, t.code(), t.err());
    ls = lines(log);
    assertEquals(6, ls.size(), ls.toString());
    for (int i = 0; i < 5; i++) assertEquals(i, ls.get(i).get("step").getAsInt(), ls.get(i).toString());
    assertSummary(ls.get(5), 2);
    assertEquals(1, Files.readString(log).split("\"summary\"", -1).length - 1, "one summary line");
  }
}

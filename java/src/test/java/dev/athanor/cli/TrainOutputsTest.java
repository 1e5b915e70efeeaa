package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.nn.ModelConfig;
import dev.athanor.testing.RuntimeAssumptions;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What {@code train} leaves next to its log: the charts and the run report, checkpoints and a resumed run included. */
class TrainOutputsTest {
  @TempDir Path dir;

  private record Out(int code, String out) {}

  private static Out train(List<String> args) {
    ByteArrayOutputStream o = new ByteArrayOutputStream();
    List<String> all = new ArrayList<>(List.of("train"));
    all.addAll(args);
    int code;
    try (PrintStream p = new PrintStream(o, true, StandardCharsets.UTF_8)) {
      code = Main.run(all.toArray(String[]::new), p, p);
    }
    return new Out(code, o.toString(StandardCharsets.UTF_8));
  }

  @Test
  void trainWritesChartsAndAReportWithItsCheckpoints() throws Exception {
    Path config = dir.resolve("config.json"), data = dir.resolve("data.bin");
    Files.writeString(config, HfConfig.toJson(ModelConfig.gpt2(300, 64, 2, 64, 2)));
    SplittableRandom r = new SplittableRandom(42);
    try (TokenShardWriter w = TokenShardWriter.create(data, 300)) {
      int prev = 1;
      for (int i = 0; i < 4000; i++) w.write(prev = (prev * 7 + r.nextInt(4)) % 300);
    }
    Path run = dir.resolve("run"), log = run.resolve("train-log.jsonl"), ckpt = dir.resolve("ckpt");
    List<String> args = new ArrayList<>(List.of("--config", config.toString(), "--data", data.toString(), "--device", "cpu",
        "--batch", "4", "--seq", "32", "--warmup", "3", "--log", log.toString(), "--out", run.resolve("model").toString(),
        "--checkpoint-dir", ckpt.toString(), "--checkpoint-every", "5", "--steps"));
    args.add("12");
    Out o = train(args);
    assertEquals(0, o.code(), o.out());
    Path report = run.resolve("train-report.html");
    assertTrue(o.out().contains(", report " + report), o.out());
    String h = Files.readString(report);
    assertTrue(h.contains("<th>steps</th><td>steps 0 to 11 (12 in the log)</td>"), h);
    if (RuntimeAssumptions.hasDesktop()) {
      for (String f : List.of("train-log.png", "train-log.svg", "train-log-lr.png", "train-log-lr.svg", "train-log-grad-norm.png",
          "train-log-grad-norm.svg", "train-log-tokens-per-s.png", "train-log-tokens-per-s.svg")) {
        assertTrue(Files.size(run.resolve(f)) > 1000, f);
      }
      assertEquals(4, h.split("<figure class=\"chart\"", -1).length - 1, "four charts inline");
    } else {  // a runtime without AWT (the GPU check's): the report says why there are no charts
      assertTrue(h.contains("No charts: this Java runtime has no java.desktop module (AWT)"), h);
      assertTrue(o.out().contains("athanor train: no charts written (this Java runtime has no java.desktop module"), o.out());
      assertFalse(Files.exists(run.resolve("train-log.png")));
    }
    assertTrue(h.contains("<th>command</th><td>athanor train --config " + config), h);
    assertTrue(h.contains("<th>device</th><td>cpu</td>"), h);
    assertTrue(h.contains("<th>layers</th><td>2</td>"), h);
    assertTrue(h.contains("<tr><td>HOST</td>"), h);
    // saves after steps 5 and 10 and at the end
    for (String step : List.of("00000005", "00000010", "00000012")) {
      assertTrue(h.contains("<code>" + ckpt.resolve("step-" + step) + "</code>"), step + " in\n" + h);
    }
    assertEquals(3, h.split("<td>written</td>", -1).length - 1, h);
    assertFalse(h.contains("<script"));

    // a resumed run's report and charts cover the whole log, the steps before the checkpoint included
    args.set(args.size() - 1, "16");
    args.addAll(List.of("--resume", "auto"));
    o = train(args);
    assertEquals(0, o.code(), o.out());
    h = Files.readString(report);
    assertTrue(h.contains("<th>steps</th><td>steps 0 to 15 (16 in the log)</td>"), h);
    assertTrue(h.contains("<code>" + ckpt.resolve("step-00000016") + "</code>"), h);
  }
}

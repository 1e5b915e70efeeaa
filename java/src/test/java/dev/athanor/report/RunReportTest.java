package dev.athanor.report;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.train.StepResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The report's content, without charts (those need AWT; {@link ChromiumReportTest} shows a report with them). */
class RunReportTest {
  @TempDir Path dir;

  private static int count(String text, String what) {
    int n = 0;
    for (int i = text.indexOf(what); i >= 0; i = text.indexOf(what, i + 1)) n++;
    return n;
  }

  @Test
  void showsTheSummaryConfigurationsMemoryAndCheckpoints() throws Exception {
    List<StepResult> steps = Logs.run(300);
    Path html = dir.resolve("train-report.html");
    RunReport.write(html, Logs.report(steps, List.of(), "none drawn in this test", Logs.checkpoints(dir.resolve("ckpt"))));
    String h = Files.readString(html, StandardCharsets.UTF_8);
    assertTrue(h.startsWith("<!DOCTYPE html>\n<html lang=\"en\">"), h.substring(0, 40));
    assertTrue(h.endsWith("</html>\n"));
    assertTrue(h.contains("<title>athanor train report</title>"));
    assertTrue(h.contains("gpt2 model, 16.3M parameters; 300 steps in the log; finished 2026-12-04T10:15:30 UTC; Athanor 0.1.0"), h);

    // summary: loss, smoothing, throughput medians without the slow first step
    StepResult last = steps.getLast();
    assertTrue(h.contains(String.format("<th>loss</th><td>first %.4f, final %.4f, lowest ", steps.getFirst().loss(), last.loss())), h);
    assertTrue(h.contains("<th>smoothed final loss</th><td>"), h);
    assertTrue(h.contains("(EMA, span 6 steps)"), h);
    double[] tps = steps.subList(1, steps.size()).stream().mapToDouble(StepResult::tokensPerSecond).toArray();
    assertTrue(h.contains(String.format("%,.0f tokens/s median", RunReport.median(tps))), h);
    assertTrue(h.contains("ms per step median (first step left out)"), h);
    assertTrue(h.contains("<th>tokens</th><td>614,400 in 3m 01s of steps"), h);

    // configurations: every record component, enums in lower case
    for (String row : List.of("<th>family</th><td>gpt2</td>", "<th>vocabSize</th><td>50257</td>", "<th>layers</th><td>4</td>",
        "<th>hidden</th><td>256</td>", "<th>steps</th><td>300</td>", "<th>batch</th><td>8</td>", "<th>lr</th><td>6.0E-4</td>",
        "<th>schedule</th><td>cosine</td>", "<th>gradClip</th><td>1.0</td>", "<th>device</th><td>cpu</td>")) {
      assertTrue(h.contains(row), row);
    }
    assertTrue(h.contains("--data &lt;src.zip&gt;"), "text is escaped");

    // memory: every tier, budget use where there is a budget, and what is still to come
    assertTrue(h.contains("<tr><td>HOST</td><td class=\"n\">1.5 GiB</td><td class=\"n\">300.0 MiB</td><td class=\"n\">300.0 MiB"
        + "</td><td class=\"n\">8.0 GiB</td><td class=\"n\">18.8%</td></tr>"), h);
    assertEquals(4, count(h, "<tr><td>DEVICE</td>") + count(h, "<tr><td>HOST_PINNED</td>") + count(h, "<tr><td>HOST</td>")
        + count(h, "<tr><td>DISK</td>"));
    assertTrue(h.contains("prints its offload plan"));
    assertFalse(h.contains("peak-bytes"), "no summary line, no table of its peaks");

    // checkpoints: both saves and the failure
    assertTrue(h.contains("<td class=\"n\">100</td><td><code>" + dir.resolve("ckpt/step-00000100") + "</code></td>"
        + "<td class=\"n\">21.0 ms</td><td class=\"n\">0.43 s</td><td class=\"n\">193.0 MiB</td><td>written</td>"), h);
    assertTrue(h.contains("<tr class=\"bad\"><td class=\"n\">300</td>"));
    assertTrue(h.contains("failed: writing checkpoint &lt;dir&gt; failed: No space left on device"));

    assertTrue(h.contains("No charts: none drawn in this test"));
    assertSelfContained(h);
  }

  /** No scripts, and nothing the page would load: no src attribute, no stylesheet link, no url() but local ids. */
  static void assertSelfContained(String h) {
    assertFalse(h.toLowerCase().contains("<script"), "no JavaScript");
    assertFalse(h.contains("<link"), "no linked resources");
    assertFalse(h.contains(" src="), "no src attributes");
    assertFalse(h.contains("@import"), "no CSS imports");
    Matcher url = Pattern.compile("url\\(([^)]*)\\)").matcher(h);
    while (url.find()) assertTrue(url.group(1).startsWith("#"), "only fragment urls: " + url.group());
    Matcher href = Pattern.compile("href=['\"]([^'\"]*)['\"]").matcher(h);
    while (href.find()) assertFalse(href.group(1).contains(":"), "only relative links: " + href.group());
  }

  @Test
  void emptyAndOneStepLogsStillMakeAPage() {
    String empty = RunReport.html(Logs.report(List.of(), List.of(), null, List.of()));
    assertTrue(empty.contains("<th>steps</th><td>none: the log holds no step</td>"), empty);
    assertTrue(empty.contains("No charts: the log holds no step"), empty);
    assertTrue(empty.contains("None written (checkpoints need <code>--checkpoint-dir</code>)."), empty);
    assertSelfContained(empty);

    String one = RunReport.html(Logs.report(List.of(new StepResult(41, 3.5f, 1e-4f, 0.7f, 512, 0.25)), List.of(), null, List.of()));
    assertTrue(one.contains("<th>steps</th><td>step 41</td>"), one);
    assertTrue(one.contains("<th>throughput</th><td>2,048 tokens/s median, 250 ms per step median</td>"), one);

    List<StepResult> bad = new ArrayList<>(Logs.run(20));
    bad.add(new StepResult(20, Float.NaN, 1e-4f, Float.NaN, 2048, 0.6));
    String nan = RunReport.html(Logs.report(bad, List.of(), null, List.of()));
    assertTrue(nan.contains(", final NaN, lowest "), nan);
  }

  @Test
  void reportNamesAndHelpers() {
    assertEquals(dir.resolve("train-report.html"), RunReport.fileFor(dir.resolve("train-log.jsonl")));
    assertEquals(dir.resolve("mine-report.html"), RunReport.fileFor(dir.resolve("mine.jsonl")));
    assertEquals(dir.resolve("log-report.html"), RunReport.fileFor(dir.resolve("log")));
    assertEquals(dir.resolve("-log-report.html"), RunReport.fileFor(dir.resolve("-log.jsonl")));
    assertEquals(2.5, RunReport.median(new double[] {4, 1, 2, 3}));
    assertEquals(3, RunReport.median(new double[] {5, 3, 1}));
    assertTrue(Double.isNaN(RunReport.median(new double[0])));
    assertEquals("&lt;a href=&quot;x&quot;&gt;&amp;&#39;", RunReport.esc("<a href=\"x\">&'"));
    assertEquals(Map.of("step", "1", "loss", "2.0", "lr", "3.0", "gradNorm", "4.0", "tokens", "5", "seconds", "6.0"),
        RunReport.recordRows(new StepResult(1, 2, 3, 4, 5, 6)));
  }

  @Test
  void theLogIsReadBackLeniently() throws Exception {
    List<StepResult> steps = Logs.run(5);
    List<String> lines = new ArrayList<>(Logs.lines(steps));
    lines.add(2, "");
    lines.add(3, "{\"event\":\"checkpoint\",\"step\":2}");                 // not a step
    lines.add(4, "not json");
    lines.add(new StepResult(5, Float.NaN, 1e-4f, Float.POSITIVE_INFINITY, 2048, 0.5).toJson());
    lines.add("{\"step\":6,\"loss\":2.5,\"lr\":0.0001,\"grad");             // cut short by a crash
    Path log = dir.resolve("train-log.jsonl");
    Files.write(log, lines);
    List<StepResult> read = TrainLog.read(log);
    assertEquals(6, read.size());
    for (int i = 0; i < 5; i++) {
      StepResult a = steps.get(i), b = read.get(i);
      assertEquals(a.step(), b.step());
      assertEquals(a.loss(), b.loss());
      assertEquals(a.lr(), b.lr());
      assertEquals(a.gradNorm(), b.gradNorm());
      assertEquals(a.tokens(), b.tokens());
      assertEquals(a.seconds(), b.seconds(), 1e-4, "step_ms has 0.1 ms resolution");
    }
    assertTrue(Float.isNaN(read.get(5).loss()));
    assertTrue(Float.isNaN(read.get(5).gradNorm()), "standard JSON has no infinity: written as null, read as NaN");
    // older logs spelled NaN and Infinity out
    StepResult old = TrainLog.parse(List.of("{\"step\":7,\"loss\":NaN,\"lr\":1.0E-4,\"grad_norm\":Infinity}")).getFirst();
    assertTrue(Float.isNaN(old.loss()));
    assertEquals(Float.POSITIVE_INFINITY, old.gradNorm());
  }

  @Test
  void emaSmoothsOverFiniteValues() {
    assertEquals(List.of(1.0, Double.NaN, 2.0, 3.0),
        java.util.Arrays.stream(TrainLog.ema(new double[] {1, Double.NaN, 3, 4}, 0.5)).boxed().toList());
    assertEquals(List.of(Double.NaN, 5.0, 5.0),
        java.util.Arrays.stream(TrainLog.ema(new double[] {Double.POSITIVE_INFINITY, 5, 5}, 0.1)).boxed().toList());
    assertEquals(5, TrainLog.smoothingSpan(10));
    assertEquals(6, TrainLog.smoothingSpan(300));
    assertEquals(20, TrainLog.smoothingSpan(1000));
    assertEquals(1000, TrainLog.smoothingSpan(10_000_000));
  }
}

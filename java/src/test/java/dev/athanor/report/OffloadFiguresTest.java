package dev.athanor.report;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.memory.Tier;
import dev.athanor.offload.TransferStats;
import dev.athanor.report.TrainingCharts.Chart;
import dev.athanor.report.TrainingCharts.Metric;
import dev.athanor.testing.RuntimeAssumptions;
import dev.athanor.train.StepResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The offload figures of a training log (issue 9): the step line's {@code disk_read_bytes}, {@code disk_write_bytes},
 * {@code stall_ms} and {@code overlap}, the summary line, reading both back (and logs without them), the offload charts
 * and the report's traffic rows and peak-bytes table.
 */
class OffloadFiguresTest {
  @TempDir Path dir;

  @Test
  void aStepLineCarriesTheStepsTrafficAndStaysOneJsonObject() {
    StepResult r = new StepResult(7, 3.25f, 1e-4f, 0.5f, 64, 0.0123);
    // 1.234567 ms stalled of 4 ms of transfers: 69.1% overlapped
    TransferStats.Snapshot before = new TransferStats.Snapshot(100, 50, 1_000_000, 10_000);
    TransferStats.Snapshot after = new TransferStats.Snapshot(100 + 3000, 50 + 2000, 5_000_000, 1_244_567);
    StepTraffic t = StepTraffic.of(7, after.minus(before));
    assertEquals(new StepTraffic(7, 3000, 2000, 1.235, 1 - 1_234_567.0 / 4_000_000), t);
    String line = t.appendTo(r);
    assertEquals(r.toJson().replace("}", "") + ",\"disk_read_bytes\":3000,\"disk_write_bytes\":2000,\"stall_ms\":1.235,"
        + "\"overlap\":0.6914}", line);
    JsonObject o = JsonParser.parseString(line).getAsJsonObject();
    assertEquals(7, o.get("step").getAsLong());
    assertEquals(3000, o.get("disk_read_bytes").getAsLong());

    TrainLog.Contents c = TrainLog.parseAll(List.of(line));
    assertEquals(List.of(TrainLog.parseLine(r.toJson())), c.steps(), "the step reads as without the figures");
    assertEquals(List.of(new StepTraffic(7, 3000, 2000, 1.235, 0.6914)), c.traffic());
    assertNull(c.summary());
    // nothing moved: overlap 1 (Snapshot.overlap), not NaN
    assertTrue(StepTraffic.of(0, TransferStats.Snapshot.ZERO).appendTo(r).endsWith(
        "\"disk_read_bytes\":0,\"disk_write_bytes\":0,\"stall_ms\":0.0,\"overlap\":1.0}"));
  }

  @Test
  void theSummaryLineRoundTripsAndIsNotAStep() {
    RunSummary s = new RunSummary(12, Map.of(Tier.HOST, 5000L, Tier.DISK, 70000L), 123456, 65432, 17.5, 0.9);
    String line = s.toJson();
    assertTrue(line.startsWith("{\"summary\":true,\"steps\":12,\"peak_bytes\":{\"DEVICE\":0,\"HOST_PINNED\":0,\"HOST\":5000,"
        + "\"DISK\":70000},\"disk_read_bytes\":123456,\"disk_write_bytes\":65432,\"stall_ms\":17.5,\"overlap\":0.9}"), line);
    assertTrue(RunSummary.isSummaryLine(line));
    assertTrue(s.offloaded());
    List<StepResult> steps = Logs.run(3);
    List<String> lines = new ArrayList<>(Logs.lines(steps));
    lines.add(line);
    TrainLog.Contents c = TrainLog.parseAll(lines);
    assertEquals(steps.size(), c.steps().size(), "the summary is not a step");
    assertEquals(List.of(), c.traffic(), "steps without figures");
    assertEquals(s, c.summary());
    assertEquals(TrainLog.parse(Logs.lines(steps)), TrainLog.parse(lines));
    // an older log: no figures, no summary; a damaged summary line is skipped like any damaged line
    TrainLog.Contents old = TrainLog.parseAll(Logs.lines(steps));
    assertEquals(3, old.steps().size());
    assertNull(old.summary());
    lines.set(lines.size() - 1, "{\"summary\":true,\"steps\":\"many\"}");
    assertNull(TrainLog.parseAll(lines).summary());
    assertEquals(3, TrainLog.parseAll(lines).steps().size());
    RunSummary none = new RunSummary(2, Map.of(), 0, 0, 0, 1);
    assertFalse(none.offloaded());
    assertEquals(Map.of(Tier.DEVICE, 0L, Tier.HOST_PINNED, 0L, Tier.HOST, 0L, Tier.DISK, 0L), none.peakBytes(), "every tier");
  }

  @Test
  void anOffloadedLogGetsTrafficAndStallChartsAndTheReportShowsThemWithThePeaks() throws Exception {
    RuntimeAssumptions.assumeDesktop("the offload charts");
    List<StepResult> steps = Logs.run(60);
    List<StepTraffic> traffic = Logs.traffic(steps);
    RunSummary summary = Logs.summary(traffic);
    Path log = dir.resolve("off/train-log.jsonl");
    Files.createDirectories(log.getParent());
    Files.write(log, Logs.lines(steps, traffic, summary));
    TrainLog.Contents c = TrainLog.readAll(log);
    assertEquals(60, c.steps().size());
    assertEquals(60, c.traffic().size());
    assertEquals(summary, c.summary());

    List<Chart> charts = TrainingCharts.write(log, c.steps(), c.traffic());
    List<Metric> want = new ArrayList<>(Metric.STEPS);
    want.addAll(List.of(Metric.DISK_BYTES, Metric.STALL));
    assertEquals(want, charts.stream().map(Chart::metric).toList());
    assertEquals(dir.resolve("off/train-log-disk-bytes.png"), charts.get(4).png());
    assertEquals(dir.resolve("off/train-log-stall-ms.svg"), charts.get(5).svg());
    for (Chart ch : charts.subList(4, 6)) {
      int[] px = TrainingChartsTest.assertPng(ch.png());
      assertTrue(java.util.Arrays.stream(px).distinct().count() > 10, ch.png() + " has a drawing on it");
      TrainingChartsTest.assertSvg(ch.svg());
    }
    List<String> names = new ArrayList<>();
    for (var s : TrainingCharts.offloadChart(Metric.DISK_BYTES, c.traffic()).getSeriesCollection()) {
      if (s.isEnabled()) names.add(s.getName());
    }
    assertEquals(List.of("DISK to host", "host to DISK"), names);
    // the lines are drawn at the MiB values: 40 and 44 MiB read, 24 and 28 MiB written
    var read = TrainingCharts.offloadChart(Metric.DISK_BYTES, c.traffic()).getSeriesCollection().stream()
        .filter(x -> x.getName().equals("DISK to host")).findFirst().orElseThrow();
    assertEquals(44.0, read.getYMax(), 1e-9);
    assertEquals(40.0, read.getYMin(), 1e-9);

    String h = RunReport.html(new RunReport.Run("athanor train", "0.1.0", java.time.Instant.parse("2026-12-04T10:15:30Z"),
        Logs.MODEL, Logs.MODEL.parameterCount(), dev.athanor.train.TrainConfig.defaults(60, 8, 256), Map.of(), c.steps(),
        charts, null, List.of(), List.of(), c.traffic(), c.summary()));
    RunReportTest.assertSelfContained(h);
    assertTrue(h.contains("<figure class=\"chart\" id=\"chart-disk-bytes\">"), "traffic chart inline");
    assertTrue(h.contains("<figure class=\"chart\" id=\"chart-stall\">"), "stall chart inline");
    assertEquals(6, h.split("<figure class=\"chart\"", -1).length - 1);
    // 60 steps of 40 MiB, 20 of them 4 MiB more: 2480 MiB read; 1520 MiB written
    assertTrue(h.contains("<th>offload traffic</th><td>2.4 GiB read from DISK, 1.5 GiB written to DISK (the 60 steps of the "
        + "last run, from its summary line)</td>"), h);
    assertTrue(h.contains("87.5% of the transfer time hidden behind computation"), h);
    int table = h.indexOf("<table id=\"peak-bytes\">");
    assertTrue(table > 0, "peak bytes table");
    String peaks = h.substring(table, h.indexOf("</table>", table));
    assertTrue(peaks.contains("<tr><td>HOST</td><td class=\"n\">1.5 GiB</td><td class=\"n\">1,610,612,736</td></tr>"), peaks);
    assertTrue(peaks.contains("<tr><td>DISK</td><td class=\"n\">6.0 GiB</td>"), peaks);
    assertTrue(peaks.contains("<tr><td>DEVICE</td><td class=\"n\">0 B</td>"), peaks);

    // without offload: four charts, no traffic rows, no peak table when the log has no summary
    String plain = RunReport.html(Logs.report(c.steps(), charts.subList(0, 4), null, List.of()));
    assertFalse(plain.contains("offload traffic") || plain.contains("peak-bytes") || plain.contains("chart-disk-bytes"), plain);
  }
}

package dev.athanor.report;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.report.TrainingCharts.Chart;
import dev.athanor.testing.RuntimeAssumptions;
import dev.athanor.train.StepResult;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Opens a run report in headless Chromium, as a reader would: the page must load from the file alone (the browser
 * runs with networking off), the DOM must hold the four charts as SVG, and a screenshot must show them.
 *
 * <p>Skips, saying why, when no Chromium is installed (Debian: {@code apt-get install chromium}; CI installs it in
 * {@code .ci/run}); {@code -Dathanor.chromium=PATH} names the browser to use.
 */
class ChromiumReportTest {
  private static Path chromium;
  private static Path profile;

  @TempDir static Path dir;

  @BeforeAll
  static void findChromium() throws IOException {
    RuntimeAssumptions.assumeDesktop("the charts");
    chromium = find();
    Assumptions.assumeTrue(chromium != null, "no Chromium found (chromium, chromium-browser, google-chrome on PATH, or "
        + "-Dathanor.chromium=PATH); on Debian: apt-get install chromium");
    profile = Files.createTempDirectory("athanor-chromium-profile");
  }

  @AfterAll
  static void removeProfile() throws IOException {
    if (profile == null) return;
    try (Stream<Path> s = Files.walk(profile)) {
      for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
        try {
          Files.deleteIfExists(p);
        } catch (IOException e) {
          // a browser helper may still be writing there; the directory is in the system's temp space
        }
      }
    }
  }

  static Path find() {
    String given = System.getProperty("athanor.chromium");
    if (given != null && !given.isBlank()) return Files.isExecutable(Path.of(given)) ? Path.of(given) : null;
    for (String dirName : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
      if (dirName.isEmpty()) continue;
      for (String name : List.of("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")) {
        Path p = Path.of(dirName, name);
        if (Files.isRegularFile(p) && Files.isExecutable(p)) return p;
      }
    }
    return null;
  }

  /** What one browser run printed and how it ended. */
  private record Browser(int exitCode, String stdout, String stderr) {}

  private static Browser browse(List<String> extra, Path page) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(chromium.toString(), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"));
    cmd.addAll(extra);
    cmd.add(page.toUri().toString());
    Path out = Files.createTempFile(dir, "chromium", ".out"), err = Files.createTempFile(dir, "chromium", ".err");
    Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly().waitFor();
      throw new AssertionError("Chromium did not finish in 120 s: " + cmd + "\n" + Files.readString(err));
    }
    return new Browser(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
  }

  /** Lines of the browser's log that would mean the page did not load cleanly. */
  private static List<String> pageErrors(String stderr) {
    return stderr.lines().filter(l -> l.contains(":CONSOLE") || l.contains("Failed to load") || l.contains("net::ERR_")
        || l.contains("Uncaught") || l.contains("Content Security Policy")).toList();
  }

  private static int countNear(int[] argb, int rgb, int tol) {
    int n = 0;
    for (int px : argb) {
      if (Math.abs(((px >> 16) & 0xff) - ((rgb >> 16) & 0xff)) <= tol && Math.abs(((px >> 8) & 0xff) - ((rgb >> 8) & 0xff)) <= tol
          && Math.abs((px & 0xff) - (rgb & 0xff)) <= tol) n++;
    }
    return n;
  }

  @Test
  void theReportRendersWithItsChartsInHeadlessChromium() throws Exception {
    List<StepResult> steps = Logs.run(300);
    Path log = dir.resolve("run/train-log.jsonl");
    Files.createDirectories(log.getParent());
    Files.write(log, Logs.lines(steps));
    List<StepResult> read = TrainLog.read(log);
    List<Chart> charts = TrainingCharts.write(log, read);
    Path html = RunReport.fileFor(log);
    RunReport.write(html, Logs.report(read, charts, null, Logs.checkpoints(dir.resolve("ckpt"))));
    RunReportTest.assertSelfContained(Files.readString(html));

    Browser dom = browse(List.of("--dump-dom"), html);
    assertEquals(0, dom.exitCode(), () -> "chromium --dump-dom failed:\n" + dom.stderr());
    assertEquals(List.of(), pageErrors(dom.stderr()), dom.stderr());
    String d = dom.stdout();
    assertTrue(d.contains("<title>athanor train report</title>"), () -> "not the report: " + d.substring(0, Math.min(500, d.length())));
    assertFalse(d.contains("chrome-error://"), "an error page");
    for (String id : List.of("chart-loss", "chart-learning-rate", "chart-grad-norm", "chart-tokens-per-s")) {
      int at = d.indexOf("<figure class=\"chart\" id=\"" + id + "\">");
      assertTrue(at >= 0, id + " in the DOM");
      int svg = d.indexOf("<svg", at), end = d.indexOf("</svg>", at);
      assertTrue(svg > at && end > svg, id + " holds an svg element");
      String body = d.substring(svg, end);
      assertTrue(body.contains("viewBox=\"0 0 1000 600\""), id + ": " + body.substring(0, Math.min(300, body.length())));
      assertTrue(body.split("<line", -1).length > 100, id + ": the series' segments are in the DOM");
    }
    assertEquals(4, d.split("<svg", -1).length - 1, "four charts");
    assertTrue(d.contains("<h2>Checkpoints</h2>") && d.contains("step-00000200"), "checkpoints section");

    Path shot = dir.resolve("report.png");
    Browser s = browse(List.of("--screenshot=" + shot, "--window-size=1280,2400", "--hide-scrollbars"), html);
    assertEquals(0, s.exitCode(), () -> "chromium --screenshot failed:\n" + s.stderr());
    assertEquals(List.of(), pageErrors(s.stderr()), s.stderr());
    var img = ImageIO.read(shot.toFile());
    assertNotNull(img, "a PNG screenshot");
    assertEquals(1280, img.getWidth());
    assertEquals(2400, img.getHeight());
    if (Boolean.getBoolean("athanor.keepScreenshot")) {
      Files.copy(shot, Path.of("target", "report-screenshot.png"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }
    int[] px = img.getRGB(0, 0, img.getWidth(), img.getHeight(), null, 0, img.getWidth());
    // the charts' line colours are on screen: the loss (blue), the learning rate (green), the norm (orange), tokens/s (purple)
    for (int colour : new int[] {0x1f77b4, 0x2ca02c, 0xff7f0e, 0x9467bd}) {
      assertTrue(countNear(px, colour, 24) > 150, String.format("colour %06x on screen: %d pixels", colour, countNear(px, colour, 24)));
    }
  }

  /** An offloaded run's report: the traffic and stall charts are in the DOM as SVG, and the peak-bytes table. */
  @Test
  void anOffloadedRunsReportRendersItsTrafficChartsAndPeakBytes() throws Exception {
    List<StepResult> steps = Logs.run(120);
    List<StepTraffic> traffic = Logs.traffic(steps);
    Path log = dir.resolve("offloaded/train-log.jsonl");
    Files.createDirectories(log.getParent());
    Files.write(log, Logs.lines(steps, traffic, Logs.summary(traffic)));
    TrainLog.Contents c = TrainLog.readAll(log);
    List<Chart> charts = TrainingCharts.write(log, c.steps(), c.traffic());
    RunReport.Run plain = Logs.report(c.steps(), charts, null, List.of());
    Path html = RunReport.fileFor(log);
    RunReport.write(html, new RunReport.Run(plain.title(), plain.version(), plain.finished(), plain.model(), plain.parameters(),
        plain.train(), plain.details(), plain.steps(), plain.charts(), null, plain.memory(), List.of(), c.traffic(), c.summary()));

    Browser dom = browse(List.of("--dump-dom"), html);
    assertEquals(0, dom.exitCode(), () -> "chromium --dump-dom failed:\n" + dom.stderr());
    assertEquals(List.of(), pageErrors(dom.stderr()), dom.stderr());
    String d = dom.stdout();
    for (String id : List.of("chart-disk-bytes", "chart-stall")) {
      int at = d.indexOf("<figure class=\"chart\" id=\"" + id + "\">");
      assertTrue(at >= 0, id + " in the DOM");
      int svg = d.indexOf("<svg", at), end = d.indexOf("</svg>", at);
      assertTrue(svg > at && end > svg, id + " holds an svg element");
      assertTrue(d.substring(svg, end).split("<line", -1).length > 100, id + ": the series' segments are in the DOM");
    }
    assertEquals(6, d.split("<svg", -1).length - 1, "six charts");
    int table = d.indexOf("<table id=\"peak-bytes\">");
    assertTrue(table >= 0, "the peak-bytes table in the DOM");
    assertTrue(d.substring(table, d.indexOf("</table>", table)).contains("<td>HOST</td>"), "a row per tier");
    assertTrue(d.contains("offload traffic"), "the traffic row of the summary");
  }
}

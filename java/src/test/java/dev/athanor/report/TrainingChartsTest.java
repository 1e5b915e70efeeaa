package dev.athanor.report;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.report.TrainingCharts.Chart;
import dev.athanor.report.TrainingCharts.Metric;
import dev.athanor.testing.ChildClassPath;
import dev.athanor.testing.RuntimeAssumptions;
import dev.athanor.train.StepResult;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Element;

// No java.awt type appears in a field or a method signature here: on a runtime without java.desktop (the GPU check's
// trimmed one) the class still loads and the assumption below skips it.
class TrainingChartsTest {
  @BeforeAll
  static void needsAwt() {
    RuntimeAssumptions.assumeDesktop("the charts");
  }

  @TempDir Path dir;

  private static final byte[] PNG_MAGIC = {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

  /** Checks that {@code png} is a readable PNG of the chart size; returns its pixels (RGB) row by row. */
  static int[] assertPng(Path png) throws IOException {
    byte[] bytes = Files.readAllBytes(png);
    assertArrayEquals(PNG_MAGIC, Arrays.copyOf(bytes, 8), png + " starts with the PNG signature");
    var img = ImageIO.read(new ByteArrayInputStream(bytes));
    assertNotNull(img, "not a readable image: " + png);
    assertEquals(TrainingCharts.WIDTH, img.getWidth());
    assertEquals(TrainingCharts.HEIGHT, img.getHeight());
    return img.getRGB(0, 0, img.getWidth(), img.getHeight(), null, 0, img.getWidth());
  }

  /** Parses {@code svg} as XML and checks the root: an svg element of the chart size with a view box. */
  static Element assertSvg(Path svg) throws Exception {
    var f = DocumentBuilderFactory.newInstance();
    f.setNamespaceAware(true);
    f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
    Element root = f.newDocumentBuilder().parse(svg.toFile()).getDocumentElement();
    assertEquals("svg", root.getLocalName());
    assertEquals("http://www.w3.org/2000/svg", root.getNamespaceURI());
    assertEquals(Integer.toString(TrainingCharts.WIDTH), root.getAttribute("width"));
    assertEquals(Integer.toString(TrainingCharts.HEIGHT), root.getAttribute("height"));
    assertEquals("0 0 " + TrainingCharts.WIDTH + " " + TrainingCharts.HEIGHT, root.getAttribute("viewBox"));
    return root;
  }

  private static List<String> seriesNames(Metric m, List<StepResult> steps) {
    List<String> names = new ArrayList<>();
    for (var s : TrainingCharts.chart(m, steps).getSeriesCollection()) if (s.isEnabled()) names.add(s.getName());
    return names;
  }

  @Test
  void writesEveryChartAsPngAndSvgNextToTheLog() throws Exception {
    Path log = dir.resolve("runs/demo/train-log.jsonl");  // the directory does not exist yet
    List<Chart> charts = TrainingCharts.write(log, Logs.run(300));
    assertEquals(Metric.STEPS, charts.stream().map(Chart::metric).toList(), "no offload charts without offload figures");
    List<String> names = new ArrayList<>();
    for (Chart c : charts) {
      names.add(c.png().getFileName().toString());
      names.add(c.svg().getFileName().toString());
      int[] px = assertPng(c.png());
      assertTrue(Arrays.stream(px).distinct().count() > 10, c.png() + " has a drawing on it");
      Element svg = assertSvg(c.svg());
      assertTrue(svg.getElementsByTagNameNS("http://www.w3.org/2000/svg", "line").getLength() > 100, "the series' segments");
      assertTrue(svg.getElementsByTagNameNS("http://www.w3.org/2000/svg", "path").getLength() > 10, "text and grid");
      // the inline form: no size, a view box, clip ids of its own
      assertTrue(c.svgElement().startsWith("<svg "), c.svgElement().substring(0, 40));
      String root = c.svgElement().substring(0, c.svgElement().indexOf('>') + 1);
      assertFalse(root.contains("width"), "no fixed size inline: " + root);
      assertTrue(root.contains("viewBox='0 0 1000 600'"), root);
      String prefix = "athanor-" + c.metric().name().toLowerCase().replace('_', '-') + "-";
      assertTrue(c.svgElement().contains("id='" + prefix), "clip ids start with " + prefix);
      assertTrue(Files.size(c.svg()) < 400_000, c.svg() + " is " + Files.size(c.svg()) + " bytes");
    }
    assertEquals(List.of("train-log.png", "train-log.svg", "train-log-lr.png", "train-log-lr.svg", "train-log-grad-norm.png",
        "train-log-grad-norm.svg", "train-log-tokens-per-s.png", "train-log-tokens-per-s.svg"), names);
    try (Stream<Path> files = Files.list(log.getParent())) {
      assertEquals(8, files.count(), "the eight charts, no temporary files");
    }
    // the loss chart: the raw loss and its moving average, which says how it smooths
    assertEquals(List.of("loss (raw)", "loss (EMA, span 6 steps, alpha 0.286)"), seriesNames(Metric.LOSS, Logs.run(300)));
    assertEquals(List.of("learning rate"), seriesNames(Metric.LEARNING_RATE, Logs.run(300)));
    assertEquals(List.of("tokens/s"), seriesNames(Metric.TOKENS_PER_S, Logs.run(300)));
  }

  @Test
  void rewritingReplacesTheFiles() throws Exception {
    Path log = dir.resolve("mine.jsonl");
    TrainingCharts.write(log, Logs.run(50));
    byte[] before = Files.readAllBytes(Metric.LOSS.file(log, "svg"));
    TrainingCharts.write(log, Logs.run(80));
    assertFalse(Arrays.equals(before, Files.readAllBytes(Metric.LOSS.file(log, "svg"))));
    assertEquals(dir.resolve("mine-grad-norm.png"), Metric.GRAD_NORM.file(log, "png"));
    assertEquals(dir.resolve("log.svg"), Metric.LOSS.file(dir.resolve("log"), "svg"), "a log name without extension");
  }

  @Test
  void nonFiniteValuesAreLeftOutAndCounted() throws Exception {
    List<StepResult> steps = new ArrayList<>(Logs.run(200));
    for (int i = 80; i < 90; i++) steps.set(i, new StepResult(i, Float.NaN, 1e-3f, Float.NaN, 2048, 0.6));
    steps.set(5, new StepResult(5, Float.POSITIVE_INFINITY, 1e-3f, Float.POSITIVE_INFINITY, 2048, 0.6));
    steps.set(150, new StepResult(150, Float.NEGATIVE_INFINITY, 1e-3f, 1f, 2048, 0));  // 0 s: 0 tokens/s, drawn
    Path log = dir.resolve("nan.jsonl");
    List<Chart> charts = TrainingCharts.write(log, steps);
    assertEquals(4, charts.size());
    for (Chart c : charts) {
      assertPng(c.png());
      assertSvg(c.svg());
    }
    assertEquals(List.of("loss (raw) (12 non-finite skipped)", "loss (EMA, span 5 steps, alpha 0.333)"),
        seriesNames(Metric.LOSS, steps));
    assertEquals(List.of("norm (11 non-finite skipped)"), seriesNames(Metric.GRAD_NORM, steps));
  }

  @Test
  void emptyOnePointAndDegenerateLogsDoNotCrash() throws Exception {
    Path log = dir.resolve("empty.jsonl");
    assertEquals(List.of(), TrainingCharts.write(log, List.of()));
    try (Stream<Path> files = Files.list(dir)) {
      assertEquals(0, files.count(), "nothing written for an empty log");
    }

    List<Chart> one = TrainingCharts.write(dir.resolve("one.jsonl"), List.of(new StepResult(7, 3.25f, 1e-4f, 0.5f, 64, 0.01)));
    assertEquals(4, one.size());
    for (Chart c : one) {
      assertPng(c.png());
      assertSvg(c.svg());
    }
    assertEquals(List.of("loss"), seriesNames(Metric.LOSS, List.of(new StepResult(7, 3.25f, 1e-4f, 0.5f, 64, 0.01))));

    // nothing finite at all, a constant, zeros
    List<StepResult> nan = List.of(new StepResult(0, Float.NaN, Float.NaN, Float.NaN, 0, 0),
        new StepResult(1, Float.NaN, Float.NaN, Float.POSITIVE_INFINITY, 0, 0));
    for (Chart c : TrainingCharts.write(dir.resolve("nan.jsonl"), nan)) assertPng(c.png());
    List<StepResult> flat = new ArrayList<>();
    for (int i = 0; i < 40; i++) flat.add(new StepResult(i, 2.5f, 0f, 0f, 100, 0.1));
    for (Chart c : TrainingCharts.write(dir.resolve("flat.jsonl"), flat)) assertSvg(c.svg());
  }

  @Test
  void longRunsAreDrawnFromABoundedNumberOfPoints() throws Exception {
    List<StepResult> steps = Logs.run(100_000);
    Path log = dir.resolve("long.jsonl");
    List<Chart> charts = TrainingCharts.write(log, steps);
    for (Chart c : charts) {
      assertPng(c.png());
      Element svg = assertSvg(c.svg());
      int segments = svg.getElementsByTagNameNS("http://www.w3.org/2000/svg", "line").getLength();
      assertTrue(segments < 2 * TrainingCharts.MAX_POINTS + 100, c.metric() + ": " + segments + " line elements");
      assertTrue(Files.size(c.svg()) < 600_000, c.svg() + " is " + Files.size(c.svg()) + " bytes");
    }
  }

  @Test
  void decimationKeepsEachBucketsLowAndHighInOrderAndGaps() {
    int n = 20;
    double[] x = new double[n], y = new double[n];
    for (int i = 0; i < n; i++) {
      x[i] = i;
      y[i] = i % 5 == 2 ? 100 + i : i % 5 == 4 ? -i : 1;
    }
    for (int i = 10; i < 15; i++) y[i] = Double.NaN;  // the third bucket of five: no finite value
    List<Double> px = new ArrayList<>(), py = new ArrayList<>();
    TrainingCharts.decimate(x, y, 8, px, py);  // 4 buckets of 5
    assertEquals(List.of(2.0, 4.0, 7.0, 9.0, 10.0, 17.0, 19.0), px);
    assertEquals(Arrays.asList(102.0, -4.0, 107.0, -9.0, null, 117.0, -19.0), py);

    px.clear();
    py.clear();
    TrainingCharts.decimate(new double[] {0, 1, 2}, new double[] {1, Double.POSITIVE_INFINITY, 3}, 8, px, py);
    assertEquals(List.of(0.0, 1.0, 2.0), px);
    assertEquals(Arrays.asList(1.0, null, 3.0), py, "below the limit every point, non-finite ones as gaps");
  }

  @Test
  void numbersInTheSvgHaveTwoDecimals() {
    assertEquals("12.5", TrainingCharts.twoDecimals(12.5));
    assertEquals("-3", TrainingCharts.twoDecimals(-3.0001));
    assertEquals("0.07", TrainingCharts.twoDecimals(0.0712));
    assertEquals("-0.07", TrainingCharts.twoDecimals(-0.0699));
    assertEquals("1000", TrainingCharts.twoDecimals(999.999));
    assertEquals("0", TrainingCharts.twoDecimals(-0.001));
    assertEquals("0", TrainingCharts.twoDecimals(Double.NaN));
  }

  /** Child JVM for {@link #withoutAWTChartsFailCleanlyAndTheReportIsStillWritten}. */
  static final class NoAwtChild {
    public static void main(String[] args) throws Exception {
      Path log = Path.of(args[0]);
      List<StepResult> steps = Logs.run(20);
      try {
        TrainingCharts.write(log, steps);
        System.out.println("WROTE");
      } catch (TrainingCharts.ChartsUnavailableException e) {
        System.out.println("UNAVAILABLE " + e.getMessage());
      } catch (LinkageError e) {  // no java.desktop: the class itself cannot initialize
        System.out.println("LINKAGE " + e);
      }
      RunReport.write(log.resolveSibling("report.html"), Logs.report(steps, List.of(), "charts unavailable", List.of()));
      System.out.println("REPORT");
    }
  }

  private String child(List<String> jvmArgs, String display) throws Exception {
    String cp = ChildClassPath.of(TrainingCharts.class.getName(), NoAwtChild.class.getName(), "org.knowm.xchart.XYChart",
        "org.jfree.svg.SVGGraphics2D", "com.google.gson.Gson");
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    cmd.addAll(jvmArgs);
    cmd.addAll(List.of("-cp", cp, NoAwtChild.class.getName(),
        dir.resolve("x.jsonl").toString()));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    if (display != null) pb.environment().put("DISPLAY", display);
    pb.environment().remove("WAYLAND_DISPLAY");
    Process p = pb.start();
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child finished");
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(0, p.exitValue(), out);
    return out;
  }

  @Test
  void withoutAWTChartsFailCleanlyAndTheReportIsStillWritten() throws Exception {
    Assumptions.assumeTrue(System.getProperty("os.name").toLowerCase().contains("linux"), "needs X11 AWT to provoke a failure");
    // Non-headless AWT with no reachable X server: the toolkit cannot start.
    String out = child(List.of("-Djava.awt.headless=false"), ":9876");
    assertTrue(out.startsWith("UNAVAILABLE cannot draw charts: Java AWT is unavailable"), out);
    assertTrue(out.contains("fonts-dejavu-core"), out);
    assertTrue(out.contains("REPORT"), out);
    assertFalse(Files.exists(dir.resolve("x.png")), "no chart file");
    assertTrue(Files.readString(dir.resolve("report.html")).contains("No charts: charts unavailable"));

    // A runtime without the java.desktop module, like the GPU check's.
    Files.delete(dir.resolve("report.html"));
    out = child(List.of("--limit-modules", "java.base,java.logging,java.sql,jdk.unsupported"), null);
    assertTrue(out.startsWith("LINKAGE java.lang.NoClassDefFoundError") || out.startsWith("UNAVAILABLE"), out);
    assertTrue(out.contains("REPORT"), out);
    assertTrue(Files.readString(dir.resolve("report.html")).contains("<h1>"));
  }
}

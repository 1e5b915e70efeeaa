package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.cli.LossPlot.Layer;
import dev.athanor.cli.LossPlot.Rendered;
import dev.athanor.cli.LossPlot.Series;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LossPlotTest {
  @org.junit.jupiter.api.BeforeAll
  static void needsAwt() {
    org.junit.jupiter.api.Assumptions.assumeTrue(ModuleLayer.boot().findModule("java.desktop").isPresent(),
        "this Java runtime has no java.desktop module (AWT), e.g. the GPU check's trimmed runtime");
  }

  private static final int ORANGE = 0xff7f0e;

  @TempDir Path dir;

  /** Steps 0..n-1 and a loss falling linearly from 10 to 2 with a little deterministic wobble. */
  private static long[] steps(int n) {
    long[] x = new long[n];
    for (int i = 0; i < n; i++) x[i] = i;
    return x;
  }

  private static double[] falling(int n) {
    double[] y = new double[n];
    for (int i = 0; i < n; i++) y[i] = 10 - 8.0 * i / (n - 1) + 0.3 * Math.sin(i * 0.7);
    return y;
  }

  private static boolean near(int rgb, int target, int tol) {
    for (int shift = 0; shift <= 16; shift += 8)
      if (Math.abs(((rgb >> shift) & 0xff) - ((target >> shift) & 0xff)) > tol) return false;
    return true;
  }

  /** Mean y pixel of the pixels near {@code colour} in columns [x0, x1) inside the plot area; NaN if none. */
  private static double meanY(BufferedImage img, Rendered r, int colour, int x0, int x1) {
    long sum = 0, n = 0;
    for (int x = x0; x < x1; x++)
      for (int y = r.plotY() + 2; y < r.plotY() + r.plotH() - 1; y++)
        if (near(img.getRGB(x, y), colour, 12)) {
          sum += y;
          n++;
        }
    return n == 0 ? Double.NaN : (double) sum / n;
  }

  private static int countNear(BufferedImage img, Rendered r, int colour, int tol) {
    int n = 0;
    for (int x = r.plotX() + 2; x < r.plotX() + r.plotW() - 1; x++)
      for (int y = r.plotY() + 2; y < r.plotY() + r.plotH() - 1; y++) if (near(img.getRGB(x, y), colour, tol)) n++;
    return n;
  }

  private static void assertSamePixels(BufferedImage expected, BufferedImage actual) {
    assertEquals(expected.getWidth(), actual.getWidth());
    assertEquals(expected.getHeight(), actual.getHeight());
    int w = expected.getWidth(), h = expected.getHeight();
    assertArrayEquals(expected.getRGB(0, 0, w, h, null, 0, w), actual.getRGB(0, 0, w, h, null, 0, w));
  }

  private static BufferedImage read(Path png) throws IOException {
    BufferedImage img = ImageIO.read(png.toFile());
    assertTrue(img != null, "not a readable image: " + png);
    return img;
  }

  @Test
  void lossPlotIsAPngWhoseCurveFallsWithTheData() throws IOException {
    int n = 1000;
    long[] x = steps(n);
    double[] y = falling(n);
    Path png = dir.resolve("loss.png");
    LossPlot.writeLoss(png, "GPT-2 small", x, y);
    BufferedImage img = read(png);
    assertEquals(LossPlot.DEFAULT_WIDTH, img.getWidth());
    assertEquals(LossPlot.DEFAULT_HEIGHT, img.getHeight());

    Rendered r = LossPlot.render("GPT-2 small", "step", "loss", LossPlot.lossLayers(x, y), 1000, 600);
    assertSamePixels(r.image(), img);
    assertTrue(r.plotX() > 30 && r.plotY() > 40 && r.plotW() > 800 && r.plotH() > 400, r.toString());

    // The smoothed line, in the solid colour, crosses the plot; the raw line is there too, faintly.
    assertTrue(countNear(img, r, LossPlot.BLUE, 12) > r.plotW(), "solid curve pixels");
    int faint = 0xb8d4e8; // BLUE at alpha 80 over white
    assertTrue(countNear(img, r, faint, 16) > r.plotW() / 2, "faint raw pixels");

    double left = meanY(img, r, LossPlot.BLUE, r.plotX() + 3, r.plotX() + 40);
    double right = meanY(img, r, LossPlot.BLUE, r.plotX() + r.plotW() - 40, r.plotX() + r.plotW() - 2);
    assertTrue(left < r.plotY() + 0.2 * r.plotH(), "starts near the top: " + left);
    assertTrue(right > r.plotY() + 0.75 * r.plotH(), "ends near the bottom: " + right);

    // Title and labels: dark text pixels above the plot and left of it.
    boolean titleInk = false;
    for (int xx = 300; xx < 700 && !titleInk; xx++)
      for (int yy = 0; yy < r.plotY() / 2; yy++) if (near(img.getRGB(xx, yy), 0x000000, 60)) titleInk = true;
    assertTrue(titleInk, "title text");
  }

  @Test
  void seriesGetDistinctColoursAndTheirOwnShape() throws IOException {
    long[] x = steps(200);
    double[] up = new double[200], down = new double[200];
    for (int i = 0; i < 200; i++) {
      up[i] = i;
      down[i] = 200 - i;
    }
    List<Series> series = List.of(new Series("train loss", x, down), new Series("eval loss", x, up));
    Path png = dir.resolve("two.png");
    LossPlot.write(png, "two", series);
    BufferedImage img = read(png);
    Rendered r = LossPlot.render("two", "step", "loss", LossPlot.seriesLayers(series), 1000, 600);
    assertSamePixels(r.image(), img);
    int l = r.plotX() + 5, rr = r.plotX() + r.plotW() - 5;
    assertTrue(meanY(img, r, LossPlot.BLUE, l, l + 30) < meanY(img, r, LossPlot.BLUE, rr - 30, rr), "blue falls");
    assertTrue(meanY(img, r, ORANGE, l, l + 30) > meanY(img, r, ORANGE, rr - 30, rr), "orange rises");
  }

  @Test
  void nonFiniteValuesAreSkippedAndCounted() throws IOException {
    int n = 1000;
    long[] x = steps(n);
    double[] y = falling(n);
    for (int i = 400; i < 600; i++) y[i] = Double.NaN; // a gap in the middle
    y[10] = Double.POSITIVE_INFINITY;
    y[900] = Double.NEGATIVE_INFINITY;
    List<Series> series = List.of(new Series("train loss", x, y));
    Path png = dir.resolve("nan.png");
    LossPlot.write(png, "with NaN", series);
    BufferedImage img = read(png);
    List<Layer> layers = LossPlot.seriesLayers(series);
    assertEquals("train loss (202 non-finite skipped)", LossPlot.legendEntry(layers.getFirst()));
    Rendered r = LossPlot.render("with NaN", "step", "loss", layers, 1000, 600);
    assertSamePixels(r.image(), img);
    // The infinities did not stretch the axis: the curve still spans most of the height.
    double top = meanY(img, r, LossPlot.BLUE, r.plotX() + 3, r.plotX() + 30);
    double bottom = meanY(img, r, LossPlot.BLUE, r.plotX() + r.plotW() - 30, r.plotX() + r.plotW() - 2);
    assertTrue(bottom - top > 0.6 * r.plotH(), top + " .. " + bottom);
    // The line breaks over the NaN run instead of joining across it.
    int gapMid = r.plotX() + r.plotW() / 2;
    assertTrue(Double.isNaN(meanY(img, r, LossPlot.BLUE, gapMid - 20, gapMid + 20)), "no line inside the gap");
    assertFalse(Double.isNaN(meanY(img, r, LossPlot.BLUE, r.plotX() + r.plotW() / 4, r.plotX() + r.plotW() / 4 + 20)));

    // writeLoss counts them once, on the raw line only.
    List<Layer> loss = LossPlot.lossLayers(x, y);
    assertTrue(LossPlot.legendEntry(loss.get(0)).endsWith("(202 non-finite skipped)"), LossPlot.legendEntry(loss.get(0)));
    assertFalse(LossPlot.legendEntry(loss.get(1)).contains("skipped"), LossPlot.legendEntry(loss.get(1)));
    LossPlot.writeLoss(dir.resolve("nan-loss.png"), "with NaN", x, y);
    assertEquals(1000, read(dir.resolve("nan-loss.png")).getWidth());
  }

  @Test
  void singlePointAndConstantSeriesAreCentred() throws IOException {
    Path one = dir.resolve("one.png");
    LossPlot.write(one, "one point", List.of(new Series("loss", new long[] {7}, new double[] {3.25})));
    BufferedImage img = read(one);
    Rendered r = LossPlot.render("one point", "step", "loss", LossPlot.seriesLayers(List.of(new Series("loss", new long[] {7}, new double[] {3.25}))), 1000, 600);
    assertSamePixels(r.image(), img);
    int cx = r.plotX() + r.plotW() / 2, cy = r.plotY() + r.plotH() / 2;
    assertEquals(cy, meanY(img, r, LossPlot.BLUE, cx - 6, cx + 7), 2.0, "a dot in the middle");
    assertTrue(countNear(img, r, LossPlot.BLUE, 12) < 100, "only a dot");

    long[] x = steps(100);
    double[] flat = new double[100];
    java.util.Arrays.fill(flat, 2.5);
    Path constant = dir.resolve("flat.png");
    LossPlot.writeLoss(constant, "flat", x, flat);
    img = read(constant);
    r = LossPlot.render("flat", "step", "loss", LossPlot.lossLayers(x, flat), 1000, 600);
    assertEquals(r.plotY() + r.plotH() / 2.0, meanY(img, r, LossPlot.BLUE, r.plotX() + 3, r.plotX() + r.plotW() - 2), 2.0, "a level line in the middle");
    // Zero is padded too.
    LossPlot.write(dir.resolve("zero.png"), "zero", List.of(new Series("loss", new long[] {0, 1}, new double[] {0, 0})));
  }

  @Test
  void manyPointsAndUnsortedStepsDrawTheSameCurve() throws IOException {
    int n = 200_000;
    long[] x = steps(n);
    double[] y = falling(n);
    long t0 = System.nanoTime();
    Rendered sorted = LossPlot.render("many", "step", "loss", LossPlot.seriesLayers(List.of(new Series("loss", x, y))), 1000, 600);
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertTrue(ms < 10_000, "took " + ms + " ms");
    BufferedImage img = sorted.image();
    assertTrue(meanY(img, sorted, LossPlot.BLUE, sorted.plotX() + 3, sorted.plotX() + 30)
        < meanY(img, sorted, LossPlot.BLUE, sorted.plotX() + sorted.plotW() - 30, sorted.plotX() + sorted.plotW() - 2));

    int m = 500;
    long[] rx = new long[m];
    double[] ry = new double[m];
    for (int i = 0; i < m; i++) { // reversed order
      rx[i] = x[m - 1 - i];
      ry[i] = falling(m)[m - 1 - i];
    }
    Rendered a = LossPlot.render("t", "step", "loss", LossPlot.seriesLayers(List.of(new Series("loss", steps(m), falling(m)))), 600, 400);
    Rendered b = LossPlot.render("t", "step", "loss", LossPlot.seriesLayers(List.of(new Series("loss", rx, ry))), 600, 400);
    assertSamePixels(a.image(), b.image());
  }

  @Test
  void writesAtomicallyCreatingDirectoriesAndReplacing() throws IOException {
    Path png = dir.resolve("runs/exp1/loss.png");
    LossPlot.write(png, "first", "step", "loss", List.of(new Series("a", steps(10), falling(10))), 400, 300);
    assertEquals(400, read(png).getWidth());
    LossPlot.write(png, "second", "step", "loss", List.of(new Series("a", steps(10), falling(10))), 640, 480);
    assertEquals(640, read(png).getWidth());
    try (Stream<Path> files = Files.list(png.getParent())) {
      assertEquals(List.of(png), files.toList(), "no temporary files left behind");
    }
  }

  @Test
  void badInputIsRejectedWithoutWritingAFile() throws IOException {
    Path png = dir.resolve("bad.png");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LossPlot.write(png, "t", List.of()));
    assertTrue(e.getMessage().contains("empty"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class,
        () -> LossPlot.write(png, "t", List.of(new Series("train loss", steps(3), falling(3)), new Series("eval loss", new long[0], new double[0]))));
    assertTrue(e.getMessage().contains("'eval loss' is empty"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> LossPlot.writeLoss(png, "t", new long[0], new double[0]));
    e = assertThrows(IllegalArgumentException.class, () -> LossPlot.writeLoss(png, "t", new long[3], new double[2]));
    assertTrue(e.getMessage().contains("3 x values but 2 y values"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class,
        () -> LossPlot.writeLoss(png, "t", steps(3), new double[] {Double.NaN, Double.POSITIVE_INFINITY, Double.NaN}));
    assertTrue(e.getMessage().contains("no finite"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> LossPlot.write(png, "t", "x", "y", List.of(new Series("a", steps(3), falling(3))), 50, 5000));
    assertTrue(e.getMessage().contains("50x5000"), e.getMessage());
    assertThrows(NullPointerException.class, () -> new Series("a", null, new double[0]));
    assertThrows(NullPointerException.class, () -> LossPlot.writeLoss(null, "t", steps(3), falling(3)));
    try (Stream<Path> files = Files.list(dir)) {
      assertEquals(0, files.count(), "nothing written");
    }
  }

  @Test
  void seriesCopiesItsArrays() {
    long[] x = {1, 2};
    double[] y = {3, 4};
    Series s = new Series("a", x, y);
    x[0] = 99;
    y[0] = 99;
    assertArrayEquals(new long[] {1, 2}, s.x());
    s.y()[1] = 7;
    assertArrayEquals(new double[] {3, 4}, s.y());
    assertEquals(new Series("a", new long[] {1, 2}, new double[] {3, 4}), s);
    assertEquals(new Series("a", new long[] {1, 2}, new double[] {3, 4}).hashCode(), s.hashCode());
  }

  @Test
  void niceTicksAndLabels() {
    assertEquals(2, LossPlot.niceStep(10, 5), 1e-12);
    assertEquals(0.1, LossPlot.niceStep(0.7, 6), 1e-12);
    assertEquals(200, LossPlot.niceStep(1234, 8), 1e-9);
    assertEquals(0.5, LossPlot.niceStep(3.3, 5), 1e-12);
    assertEquals(10_000, LossPlot.niceStep(80_000, 9), 1e-6);
    assertArrayEquals(new double[] {1, 1.5, 2, 2.5, 3}, LossPlot.ticks(0.95, 3.05, 0.5), 1e-12);
    assertArrayEquals(new double[] {0, 0.1, 0.2, 0.3}, LossPlot.ticks(0, 0.3, 0.1), 1e-12);
    assertArrayEquals(new double[] {-2, 0, 2}, LossPlot.ticks(-2.5, 3, 2), 1e-12);
    assertEquals("12k", LossPlot.tickLabel(12_000, 2_000));
    assertEquals("5000", LossPlot.tickLabel(5_000, 1_000));
    assertEquals("10.5k", LossPlot.tickLabel(10_500, 500));
    assertEquals("1.2M", LossPlot.tickLabel(1_200_000, 200_000));
    assertEquals("1.5", LossPlot.tickLabel(1.5, 0.5));
    assertEquals("0.05", LossPlot.tickLabel(0.05, 0.05));
    assertEquals("3", LossPlot.tickLabel(3, 1));
    assertEquals("0", LossPlot.tickLabel(-0.0, 1));
    assertArrayEquals(new double[] {2, 4}, LossPlot.padRange(3, 3, true), 1e-12);
    assertArrayEquals(new double[] {-1, 1}, LossPlot.padRange(0, 0, false), 1e-12);
    assertArrayEquals(new double[] {4.5, 5.5}, LossPlot.padRange(5, 5, false), 1e-12);
    assertArrayEquals(new double[] {0.55, 10.45}, LossPlot.padRange(1, 10, false), 1e-12);
  }

  @Test
  void emaSmoothsOverFiniteValues() {
    assertArrayEquals(new double[] {1, Double.NaN, 2, 3}, LossPlot.ema(new double[] {1, Double.NaN, 3, 4}, 0.5), 1e-12);
    assertArrayEquals(new double[] {Double.NaN, 5, 5}, LossPlot.ema(new double[] {Double.POSITIVE_INFINITY, 5, 5}, 0.1), 1e-12);
    assertEquals(1.0, LossPlot.emaAlpha(10));
    assertEquals(1.0, LossPlot.emaAlpha(74));
    assertEquals(2.0 / 21, LossPlot.emaAlpha(1000), 1e-12);
    assertEquals(2.0 / 1001, LossPlot.emaAlpha(10_000_000), 1e-12);
    assertEquals(1, LossPlot.lossLayers(steps(10), falling(10)).size(), "no smoothing for a few points");
  }

  /** Child JVM for {@link #awtFailureBecomesAClearExceptionNotACrash}. */
  static final class AwtChild {
    public static void main(String[] args) {
      try {
        LossPlot.writeLoss(Path.of(args[0]), "t", new long[] {1, 2}, new double[] {1, 2});
        System.out.println("WROTE");
      } catch (LossPlot.RenderingUnavailableException e) {
        System.out.println("UNAVAILABLE " + e.getMessage());
      } catch (IOException e) {
        System.out.println("IOEXCEPTION " + e);
      }
    }
  }

  @Test
  void awtFailureBecomesAClearExceptionNotACrash() throws Exception {
    Assumptions.assumeTrue(System.getProperty("os.name").toLowerCase().contains("linux"), "needs X11 AWT to provoke a failure");
    String cp = Path.of(LossPlot.class.getProtectionDomain().getCodeSource().getLocation().toURI())
        + java.io.File.pathSeparator
        + Path.of(AwtChild.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    // Non-headless AWT with no reachable X server: the toolkit cannot start.
    ProcessBuilder pb = new ProcessBuilder(java.toString(), "-Djava.awt.headless=false", "-cp", cp, AwtChild.class.getName(),
        dir.resolve("x.png").toString()).redirectErrorStream(true);
    pb.environment().put("DISPLAY", ":9876");
    pb.environment().remove("WAYLAND_DISPLAY");
    Process p = pb.start();
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child finished");
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals(0, p.exitValue(), out);
    assertTrue(out.startsWith("UNAVAILABLE cannot draw the plot: Java AWT could not initialize"), out);
    assertTrue(out.contains("fonts-dejavu-core"), out);
    assertFalse(Files.exists(dir.resolve("x.png")), "no file");
  }
}

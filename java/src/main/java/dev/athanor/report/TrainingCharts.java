package dev.athanor.report;

import dev.athanor.io.AtomicFiles;
import dev.athanor.train.StepResult;
import java.awt.AWTError;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.HeadlessException;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.function.ToDoubleFunction;
import javax.imageio.ImageIO;
import org.jfree.svg.MeetOrSlice;
import org.jfree.svg.PreserveAspectRatio;
import org.jfree.svg.SVGGraphics2D;
import org.jfree.svg.ViewBox;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.XYStyler;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * The charts of a training run, drawn with XChart and written next to the log as PNG and SVG: the loss (raw and
 * smoothed), the learning rate, the gradient norm and the throughput, one chart each, against the step.
 *
 * <p>For a log {@code DIR/NAME.jsonl} the files are {@code DIR/NAME.png} and {@code DIR/NAME.svg} (the loss; the
 * name the README documents for {@code runs/demo/train-log.png}) and {@code DIR/NAME-lr}, {@code -grad-norm} and
 * {@code -tokens-per-s} with both extensions. A run that offloads (its log lines carry {@link StepTraffic} figures) also
 * gets {@code -disk-bytes} (MiB moved per step, DISK to host and host to DISK) and {@code -stall-ms} (the time the
 * computation waited for data, per step). Each is {@value #WIDTH}x{@value #HEIGHT} pixels; PNGs come from
 * {@link XYChart#paint} into an image, SVGs from the same call into JFreeSVG's {@link SVGGraphics2D}.
 *
 * <p><b>Smoothing.</b> The loss chart draws the raw loss faintly and an exponential moving average over it
 * ({@link TrainLog#ema}, span {@link TrainLog#smoothingSpan}: a fiftieth of the steps, at least 5); its legend says the
 * span and alpha. Runs shorter than two spans get the raw line only.
 *
 * <p><b>Bad values.</b> NaN and infinite values are left out (the line breaks there) and counted in the legend; a
 * series with no finite value draws empty axes. A run of more than {@value #MAX_POINTS} steps is drawn from at most
 * that many points per series: the lowest and the highest value of each of {@value #MAX_POINTS}/2 equal runs of
 * steps, in step order, which keeps spikes visible and bounds the SVG's size.
 *
 * <p><b>Headless.</b> Drawing uses java.awt without a display: the property {@code java.awt.headless} is set to
 * true before the first chart unless already set. Where AWT cannot draw (no fonts or fontconfig on a minimal Linux,
 * a runtime without the java.desktop module) {@link #write} throws {@link ChartsUnavailableException}.
 */
public final class TrainingCharts {
  /** Chart size in pixels (the SVG's view box). */
  public static final int WIDTH = 1000, HEIGHT = 600;
  /** The most points drawn per series. */
  static final int MAX_POINTS = 1000;

  private static final Color BLUE = new Color(0x1f77b4), RAW_BLUE = new Color(0x1f, 0x77, 0xb4, 80);
  private static final Color GREEN = new Color(0x2ca02c), ORANGE = new Color(0xff7f0e), PURPLE = new Color(0x9467bd);

  private TrainingCharts() {}

  /** What a chart shows: the file name suffix, the title, the y-axis label, and the value per step. */
  public enum Metric {
    LOSS("", "training loss", "loss", StepResult::loss, BLUE),
    LEARNING_RATE("-lr", "learning rate", "learning rate", StepResult::lr, GREEN),
    GRAD_NORM("-grad-norm", "gradient norm (global L2, before clipping)", "norm", StepResult::gradNorm, ORANGE),
    TOKENS_PER_S("-tokens-per-s", "throughput", "tokens/s", StepResult::tokensPerSecond, PURPLE),
    /** Offload only: MiB moved per step in each direction, from the steps' {@link StepTraffic}. */
    DISK_BYTES("-disk-bytes", "offload traffic per step", "MiB", null, BLUE),
    /** Offload only: milliseconds per step the computation waited for transfers. */
    STALL("-stall-ms", "offload stall per step (computation waiting for data)", "ms", null, ORANGE);

    /** The charts every run gets, drawn from the steps. */
    public static final List<Metric> STEPS = List.of(LOSS, LEARNING_RATE, GRAD_NORM, TOKENS_PER_S);

    private final String suffix, title, yLabel;
    private final ToDoubleFunction<StepResult> value;
    private final Color colour;

    Metric(String suffix, String title, String yLabel, ToDoubleFunction<StepResult> value, Color colour) {
      this.suffix = suffix;
      this.title = title;
      this.yLabel = yLabel;
      this.value = value;
      this.colour = colour;
    }

    /** The chart's title. */
    public String title() {
      return title;
    }

    /** Whether the chart is drawn from the offload figures ({@link StepTraffic}) rather than the steps. */
    public boolean offload() {
      return value == null;
    }

    /** The metric of one step (not for {@link #offload()} metrics). */
    public double of(StepResult r) {
      if (value == null) throw new IllegalStateException(this + " is drawn from the offload figures, not the steps");
      return value.applyAsDouble(r);
    }

    /** The file next to {@code log} that holds this chart, with extension {@code ext} ("png" or "svg"). */
    public Path file(Path log, String ext) {
      String name = log.getFileName().toString();
      int dot = name.lastIndexOf('.');
      return log.resolveSibling((dot > 0 ? name.substring(0, dot) : name) + suffix + "." + ext);
    }
  }

  /**
   * A chart written to disk.
   *
   * @param metric what it shows
   * @param png the PNG file
   * @param svg the SVG file
   * @param svgElement the same SVG as one {@code <svg>} element with a view box and no size, for inlining in HTML
   */
  public record Chart(Metric metric, Path png, Path svg, String svgElement) {}

  /** Thrown when this JVM cannot draw (AWT or its fonts failed to initialize, or java.desktop is missing). */
  public static final class ChartsUnavailableException extends IOException {
    private static final long serialVersionUID = 1L;

    ChartsUnavailableException(Throwable cause) {
      super("cannot draw charts: Java AWT is unavailable on this machine (" + cause + "); drawing needs the java.desktop"
          + " module, headless AWT (java.awt.headless=true, set unless given otherwise) and, on a minimal Linux, fontconfig"
          + " and at least one font (e.g. the fonts-dejavu-core package)", cause);
    }
  }

  /**
   * Writes every chart of {@code steps} next to {@code log} (PNG and SVG, replacing earlier files atomically) and
   * returns them in {@link Metric} order; nothing when {@code steps} is empty.
   *
   * @throws ChartsUnavailableException if AWT cannot draw here (no file is written then)
   * @throws IOException if a file cannot be written
   */
  public static List<Chart> write(Path log, List<StepResult> steps) throws IOException {
    return write(log, steps, List.of());
  }

  /**
   * {@link #write(Path, List)}, and when {@code traffic} is not empty (a run that offloads) the offload charts after
   * the others.
   */
  public static List<Chart> write(Path log, List<StepResult> steps, List<StepTraffic> traffic) throws IOException {
    Objects.requireNonNull(log, "log");
    Objects.requireNonNull(steps, "steps");
    Objects.requireNonNull(traffic, "traffic");
    if (steps.isEmpty()) return List.of();
    if (log.toAbsolutePath().getParent() != null) Files.createDirectories(log.toAbsolutePath().getParent());
    List<Chart> charts = new ArrayList<>();
    for (Metric m : Metric.values()) {
      if (m.offload() && traffic.isEmpty()) continue;
      byte[] png;
      String svg;
      try {
        XYChart chart = m.offload() ? offloadChart(m, traffic) : chart(m, steps);
        png = png(chart);
        svg = svg(chart, "athanor-" + m.name().toLowerCase(Locale.ROOT).replace('_', '-') + "-");
      } catch (LinkageError | AWTError | InternalError | HeadlessException e) {
        throw new ChartsUnavailableException(e);
      }
      Path pngFile = m.file(log, "png"), svgFile = m.file(log, "svg");
      AtomicFiles.write(pngFile, ch -> AtomicFiles.writeFully(ch, ByteBuffer.wrap(png)));
      AtomicFiles.writeString(svgFile, svgDocument(svg));
      charts.add(new Chart(m, pngFile, svgFile, svg));
    }
    return charts;
  }

  /** The chart of one metric over the steps (not yet drawn). */
  static XYChart chart(Metric m, List<StepResult> steps) {
    if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    int n = steps.size();
    double[] x = new double[n], y = new double[n];
    for (int i = 0; i < n; i++) {
      x[i] = steps.get(i).step();
      y[i] = m.of(steps.get(i));
    }
    XYChart chart = new XYChartBuilder().width(WIDTH).height(HEIGHT).title(m.title).xAxisTitle("step").yAxisTitle(m.yLabel)
        .build();
    style(chart.getStyler());
    anchorTicks(chart, x, y);
    int skipped = nonFinite(y);
    String note = skipped > 0 ? " (" + skipped + " non-finite skipped)" : "";
    if (m == Metric.LOSS && n >= 2 * TrainLog.smoothingSpan(n)) {
      int span = TrainLog.smoothingSpan(n);
      double alpha = 2.0 / (span + 1);
      line(chart, "loss (raw)" + note, x, y, RAW_BLUE, 1f);
      line(chart, String.format(Locale.ROOT, "loss (EMA, span %d steps, alpha %.3g)", span, alpha), x, TrainLog.ema(y, alpha),
          BLUE, 2f);
    } else {
      line(chart, m.yLabel + note, x, y, m.colour, 2f);
    }
    if (m == Metric.LEARNING_RATE) chart.getStyler().setYAxisDecimalPattern("0.##E0");  // 6E-4, not .0006
    return chart;
  }

  /**
   * An offload chart over the steps of {@code traffic}: {@link Metric#DISK_BYTES} draws two lines (DISK to host, host
   * to DISK, in MiB), {@link Metric#STALL} one.
   */
  static XYChart offloadChart(Metric m, List<StepTraffic> traffic) {
    if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    int n = traffic.size();
    double[] x = new double[n], a = new double[n], b = new double[n];
    for (int i = 0; i < n; i++) {
      StepTraffic t = traffic.get(i);
      x[i] = t.step();
      a[i] = m == Metric.DISK_BYTES ? t.diskReadBytes() / MIB : t.stallMs();
      b[i] = t.diskWriteBytes() / MIB;
    }
    XYChart chart = new XYChartBuilder().width(WIDTH).height(HEIGHT).title(m.title).xAxisTitle("step").yAxisTitle(m.yLabel)
        .build();
    style(chart.getStyler());
    if (m == Metric.DISK_BYTES) {
      double[] both = new double[2 * n];
      System.arraycopy(a, 0, both, 0, n);
      System.arraycopy(b, 0, both, n, n);
      fromZero(chart, x, both);
      line(chart, "DISK to host" + skipped(a), x, a, BLUE, 3f);
      // dashed: an optimizer that reads and writes back the same state moves as much each way, and the lines coincide
      line(chart, "host to DISK" + skipped(b), x, b, ORANGE, 2f)
          .setLineStyle(new BasicStroke(2f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND, 10f, new float[] {8f, 6f}, 0f));
    } else {
      fromZero(chart, x, a);
      line(chart, "stall" + skipped(a), x, a, m.colour, 2f);
    }
    return chart;
  }

  private static final double MIB = 1024.0 * 1024.0;

  /**
   * The axes of amounts over the steps {@code x}: y from 0 to a quarter above the largest of {@code y} (1 when all are
   * 0), with round ticks ({@link #anchorTicks} over that range) and room for the legend above a steady line.
   */
  private static void fromZero(XYChart chart, double[] x, double[] y) {
    double max = 0;
    for (double v : y) if (Double.isFinite(v)) max = Math.max(max, v);
    double top = max > 0 ? 1.25 * max : 1;
    chart.getStyler().setYAxisMin(0.0);
    chart.getStyler().setYAxisMax(top);
    double xlo = x.length > 0 ? x[0] : 0, xhi = x.length > 0 ? x[x.length - 1] : 0;
    anchorTicks(chart, new double[] {xlo, xhi}, new double[] {0, top});
  }

  private static String skipped(double[] y) {
    int k = nonFinite(y);
    return k > 0 ? " (" + k + " non-finite skipped)" : "";
  }

  private static int nonFinite(double[] y) {
    int n = 0;
    for (double v : y) if (!Double.isFinite(v)) n++;
    return n;
  }

  private static void style(XYStyler s) {
    // sized to stay readable at half size, two charts side by side in the report
    Font plain = new Font(Font.SANS_SERIF, Font.PLAIN, 16);
    s.setLocale(Locale.ROOT);
    s.setChartBackgroundColor(Color.WHITE);
    s.setPlotBackgroundColor(Color.WHITE);
    s.setPlotBorderColor(new Color(0xb0b0b0));
    s.setPlotGridLinesColor(new Color(0xe4e4e4));
    s.setPlotGridLinesStroke(new BasicStroke(1f));
    s.setAxisTickMarksColor(new Color(0xb0b0b0));
    s.setChartTitleBoxVisible(false);
    s.setChartTitleFont(plain.deriveFont(Font.BOLD, 20f));
    s.setAxisTitleFont(plain.deriveFont(17f));
    s.setAxisTickLabelsFont(plain);
    s.setLegendFont(plain);
    s.setLegendPosition(Styler.LegendPosition.InsideNE);
    s.setLegendBorderColor(new Color(0xd0d0d0));
    s.setDefaultSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Line);
    s.setMarkerSize(0);
  }

  /**
   * Works around XChart's tick placement: when the x (or y) values of all series are equally spaced, as steps are,
   * XChart puts ticks on every k-th data point (0, 13, 26, ...) instead of round numbers. A first, disabled series
   * (not drawn, not in the legend, not in the axis ranges) whose two points run backwards breaks the even spacing.
   */
  private static void anchorTicks(XYChart chart, double[] x, double[] y) {
    double xlo = Double.POSITIVE_INFINITY, xhi = Double.NEGATIVE_INFINITY;
    double ylo = Double.POSITIVE_INFINITY, yhi = Double.NEGATIVE_INFINITY;
    for (int i = 0; i < x.length; i++) {
      xlo = Math.min(xlo, x[i]);
      xhi = Math.max(xhi, x[i]);
      if (Double.isFinite(y[i])) {
        ylo = Math.min(ylo, y[i]);
        yhi = Math.max(yhi, y[i]);
      }
    }
    if (ylo > yhi) ylo = yhi = 0;
    XYSeries a = chart.addSeries(" ", new double[] {xhi, xlo}, new double[] {yhi, ylo});
    a.setEnabled(false);
    a.setShowInLegend(false);
  }

  private static XYSeries line(XYChart chart, String name, double[] x, double[] y, Color colour, float width) {
    List<Double> px = new ArrayList<>(), py = new ArrayList<>();
    decimate(x, y, MAX_POINTS, px, py);
    XYSeries s = chart.addSeries(name, px, py);
    s.setMarker(SeriesMarkers.NONE);
    s.setLineColor(colour);
    s.setLineWidth(width);
    return s;
  }

  /**
   * The points to draw: all of them when there are at most {@code max}; otherwise, for each of {@code max / 2} equal
   * runs of points, its lowest and highest finite point in x order (a run with none gives one gap). A non-finite y
   * becomes null: XChart breaks the line there.
   */
  static void decimate(double[] x, double[] y, int max, List<Double> px, List<Double> py) {
    int n = x.length;
    if (n <= max) {
      for (int i = 0; i < n; i++) {
        px.add(x[i]);
        py.add(Double.isFinite(y[i]) ? y[i] : null);
      }
      return;
    }
    int buckets = max / 2;
    for (int b = 0; b < buckets; b++) {
      int from = (int) ((long) n * b / buckets), to = (int) ((long) n * (b + 1) / buckets);
      int lo = -1, hi = -1;
      for (int i = from; i < to; i++) {
        if (!Double.isFinite(y[i])) continue;
        if (lo < 0 || y[i] < y[lo]) lo = i;
        if (hi < 0 || y[i] > y[hi]) hi = i;
      }
      if (lo < 0) {
        px.add(x[from]);
        py.add(null);
        continue;
      }
      int first = Math.min(lo, hi), second = Math.max(lo, hi);
      px.add(x[first]);
      py.add(y[first]);
      if (second != first) {
        px.add(x[second]);
        py.add(y[second]);
      }
    }
  }

  /** The chart drawn into a PNG image. */
  static byte[] png(XYChart chart) throws IOException {
    BufferedImage image = new BufferedImage(WIDTH, HEIGHT, BufferedImage.TYPE_INT_RGB);
    var g = image.createGraphics();
    try {
      chart.paint(g, WIDTH, HEIGHT);
    } finally {
      g.dispose();
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    if (!ImageIO.write(image, "png", out)) throw new IOException("this Java runtime has no PNG image writer");
    return out.toByteArray();
  }

  /**
   * The chart drawn as one {@code <svg>} element with a view box and no width or height (it scales to its container);
   * {@code idPrefix} keeps its clip-path ids apart from other charts' in the same HTML page.
   */
  static String svg(XYChart chart, String idPrefix) {
    SVGGraphics2D g = new SVGGraphics2D(WIDTH, HEIGHT);
    g.setDefsKeyPrefix(idPrefix);
    g.setGeomDoubleConverter(TrainingCharts::twoDecimals);
    g.setTransformDoubleConverter(TrainingCharts::twoDecimals);
    try {
      chart.paint(g, WIDTH, HEIGHT);
    } finally {
      g.dispose();
    }
    return g.getSVGElement(null, false, new ViewBox(0, 0, WIDTH, HEIGHT), PreserveAspectRatio.XMID_YMID, MeetOrSlice.MEET);
  }

  /** A standalone SVG file holding {@code svgElement}, with the chart's size in pixels. */
  static String svgDocument(String svgElement) {
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        + svgElement.replaceFirst("<svg ", "<svg width=\"" + WIDTH + "\" height=\"" + HEIGHT + "\" ") + "\n";
  }

  /** Pixel coordinates to two decimals ("12.5", "-3", "0.07"): a third of the digits of Double.toString. */
  static String twoDecimals(double v) {
    if (!Double.isFinite(v)) return "0";
    long hundredths = Math.round(v * 100);
    long whole = Math.abs(hundredths) / 100, frac = Math.abs(hundredths) % 100;
    String sign = hundredths < 0 ? "-" : "";
    if (frac == 0) return sign + whole;
    return sign + whole + (frac % 10 == 0 ? "." + frac / 10 : frac < 10 ? ".0" + frac : "." + frac);
  }
}

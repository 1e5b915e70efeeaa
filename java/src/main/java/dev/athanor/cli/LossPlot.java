package dev.athanor.cli;

import java.awt.AWTError;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.HeadlessException;
import java.awt.RenderingHints;
import java.awt.geom.AffineTransform;
import java.awt.geom.Ellipse2D;
import java.awt.geom.Line2D;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import javax.imageio.ImageIO;

/**
 * Draws training curves (loss against step) into PNG files with the JDK's own imaging (java.awt in
 * headless mode), with no other dependency.
 *
 * <p>The plot has a title, a legend above the plot area, grid lines at "nice" tick values (1, 2 or 5
 * times a power of ten) on both axes, axis labels and anti-aliased lines. Points whose y value is NaN or
 * infinite are left out (the line breaks there) and counted in the legend. A single point or a constant
 * series still gets a readable, padded axis range. Files are written atomically: the PNG is drawn into a
 * temporary file next to the target and then renamed over it.
 *
 * <p>Before first touching AWT, the methods set the system property {@code java.awt.headless=true} for
 * this JVM unless it is already set (no window system is needed or used).
 *
 * <p>On machines where AWT cannot draw text (no fonts or no fontconfig on a minimal system), the
 * methods throw {@link RenderingUnavailableException} rather than failing in some other way; callers
 * are expected to catch {@link IOException} and carry on without the plot.
 */
public final class LossPlot {
  /** Default image width in pixels. */
  public static final int DEFAULT_WIDTH = 1000;
  /** Default image height in pixels. */
  public static final int DEFAULT_HEIGHT = 600;

  static final int MIN_WIDTH = 200, MIN_HEIGHT = 150, MAX_SIDE = 10_000;
  /** Series with at most this many finite points get a marker at every point. */
  static final int MARKER_LIMIT = 60;
  /** Colour of the smoothed line in {@link #writeLoss} (and of the first series in {@link #write}). */
  static final int BLUE = 0x1f77b4;

  private static final int[] PALETTE = {BLUE, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
  private static final int RAW_ALPHA = 80;

  private LossPlot() {}

  /**
   * One curve: {@code y[i]} at {@code x[i]} (e.g. training loss per step). The arrays are copied; x
   * values need not be sorted (they are drawn in x order).
   *
   * @param name legend text
   * @param x x values (steps)
   * @param y y values; NaN and infinities are skipped when drawing
   */
  public record Series(String name, long[] x, double[] y) {
    /** Validates and copies the arrays. */
    public Series {
      Objects.requireNonNull(name, "series name");
      Objects.requireNonNull(x, () -> "series '" + name + "': x is null");
      Objects.requireNonNull(y, () -> "series '" + name + "': y is null");
      if (x.length != y.length)
        throw new IllegalArgumentException("series '" + name + "': " + x.length + " x values but " + y.length + " y values");
      x = x.clone();
      y = y.clone();
    }

    /** A copy of the x values. */
    @Override
    public long[] x() {
      return x.clone();
    }

    /** A copy of the y values. */
    @Override
    public double[] y() {
      return y.clone();
    }

    /** Number of points. */
    public int size() {
      return x.length;
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof Series s && name.equals(s.name) && Arrays.equals(x, s.x) && Arrays.equals(y, s.y);
    }

    @Override
    public int hashCode() {
      return Objects.hash(name, Arrays.hashCode(x), Arrays.hashCode(y));
    }

    @Override
    public String toString() {
      return "Series[" + name + ", " + x.length + " points]";
    }
  }

  /**
   * Thrown when this JVM cannot render images (AWT or its fonts failed to initialize, typically a
   * minimal Linux without fontconfig or any font).
   */
  public static final class RenderingUnavailableException extends IOException {
    private static final long serialVersionUID = 1L;

    RenderingUnavailableException(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /**
   * Writes a {@value #DEFAULT_WIDTH}x{@value #DEFAULT_HEIGHT} plot of the series with axis labels
   * "step" and "loss".
   *
   * @throws IllegalArgumentException if the list or any series is empty, or no series has a finite y value
   * @throws RenderingUnavailableException if AWT cannot draw on this machine
   * @throws IOException if the file cannot be written
   */
  public static void write(Path png, String title, List<Series> series) throws IOException {
    write(png, title, "step", "loss", series, DEFAULT_WIDTH, DEFAULT_HEIGHT);
  }

  /**
   * Writes a plot of the series with the given axis labels and image size (pixels, 200x150 up to
   * 10000x10000). Series get colours in list order.
   *
   * @throws IllegalArgumentException if the list or any series is empty, no series has a finite y
   *     value, or the size is out of range
   * @throws RenderingUnavailableException if AWT cannot draw on this machine
   * @throws IOException if the file cannot be written
   */
  public static void write(Path png, String title, String xLabel, String yLabel, List<Series> series, int width, int height)
      throws IOException {
    writeLayers(png, title, xLabel, yLabel, seriesLayers(series), width, height);
  }

  /**
   * Writes a {@value #DEFAULT_WIDTH}x{@value #DEFAULT_HEIGHT} training-loss plot: the raw loss per step
   * drawn faintly, with an exponential moving average on top whose smoothing factor is chosen from the
   * number of points ({@link #emaAlpha(int)}; with fewer than 75 points there is no smoothing and
   * only the raw line is drawn).
   *
   * @throws IllegalArgumentException if the arrays differ in length, are empty, or hold no finite loss
   * @throws RenderingUnavailableException if AWT cannot draw on this machine
   * @throws IOException if the file cannot be written
   */
  public static void writeLoss(Path png, String title, long[] steps, double[] losses) throws IOException {
    writeLayers(png, title, "step", "loss", lossLayers(steps, losses), DEFAULT_WIDTH, DEFAULT_HEIGHT);
  }

  /** The layers {@link #writeLoss} draws: the raw loss (faint) and its moving average on top. */
  static List<Layer> lossLayers(long[] steps, double[] losses) {
    Series raw = new Series("loss", steps, losses);
    double alpha = emaAlpha(raw.size());
    if (alpha >= 1) return List.of(new Layer(raw, BLUE, 255, 2.0f, "loss"));
    String name = String.format(Locale.ROOT, "loss (EMA, alpha %.3g)", alpha);
    return List.of(
        new Layer(raw, BLUE, RAW_ALPHA, 1.0f, "loss (raw)"),
        new Layer(new Series(name, raw.x, ema(raw.y, alpha)), BLUE, 255, 2.0f, name).smoothed());
  }

  /** The layers {@link #write} draws: one per series, coloured in order. */
  static List<Layer> seriesLayers(List<Series> series) {
    Objects.requireNonNull(series, "series");
    List<Layer> layers = new ArrayList<>();
    for (int i = 0; i < series.size(); i++) {
      Series s = Objects.requireNonNull(series.get(i), "series " + i + " is null");
      layers.add(new Layer(s, PALETTE[i % PALETTE.length], 255, 2.0f, s.name()));
    }
    return layers;
  }

  /** Legend text of a layer: its name, plus how many non-finite points were skipped. */
  static String legendEntry(Layer l) {
    int skipped = 0;
    for (double y : l.series().y) if (!Double.isFinite(y)) skipped++;
    return l.name() + (skipped > 0 && !l.hideNote() ? " (" + skipped + " non-finite skipped)" : "");
  }

  /**
   * Smoothing factor for {@code n} points: {@code 2 / (w + 1)} for a window {@code w} of about n/50
   * points (at least 1, at most 1000), so a curve keeps roughly the same visual smoothness at any length.
   */
  static double emaAlpha(int n) {
    long window = Math.clamp(Math.round(n / 50.0), 1, 1000);
    return 2.0 / (window + 1);
  }

  /** Exponential moving average over the finite values; non-finite inputs give NaN and do not move it. */
  static double[] ema(double[] y, double alpha) {
    double[] out = new double[y.length];
    double s = Double.NaN;
    for (int i = 0; i < y.length; i++) {
      if (Double.isFinite(y[i])) {
        s = Double.isNaN(s) ? y[i] : s + alpha * (y[i] - s);
        out[i] = s;
      } else out[i] = Double.NaN;
    }
    return out;
  }

  // ---- drawing ----

  /** One drawn series: colour (RGB), opacity 0-255, line width and legend text. */
  record Layer(Series series, int rgb, int alpha, float stroke, String name, boolean hideNote) {
    Layer(Series series, int rgb, int alpha, float stroke, String name) {
      this(series, rgb, alpha, stroke, name, false);
    }

    /** A derived (smoothed) curve: its skipped points are already counted on the raw series. */
    Layer smoothed() {
      return new Layer(series, rgb, alpha, stroke, name, true);
    }
  }

  /** A rendered plot and where its plot area lies (pixels; y grows downwards). */
  record Rendered(BufferedImage image, int plotX, int plotY, int plotW, int plotH) {}

  private static void writeLayers(Path png, String title, String xLabel, String yLabel, List<Layer> layers, int width, int height)
      throws IOException {
    Objects.requireNonNull(png, "png");
    BufferedImage image = render(title, xLabel, yLabel, layers, width, height).image();
    Path target = png.toAbsolutePath();
    Path dir = target.getParent();
    Files.createDirectories(dir);
    Path tmp = Files.createTempFile(dir, "." + target.getFileName() + ".", ".tmp");
    try {
      boolean ok;
      try {
        ok = ImageIO.write(image, "png", tmp.toFile());
      } catch (LinkageError | AWTError | InternalError e) {
        throw unavailable(e);
      }
      if (!ok) throw new RenderingUnavailableException("cannot write " + target + ": this JVM has no PNG image writer", null);
      try {
        Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
      }
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  private static RenderingUnavailableException unavailable(Throwable e) {
    return new RenderingUnavailableException(
        "cannot draw the plot: Java AWT could not initialize on this machine ("
            + e
            + "); drawing needs headless AWT (java.awt.headless=true, the default here unless set otherwise) and, on a"
            + " minimal Linux, fontconfig and at least one font installed (e.g. the fonts-dejavu-core package)",
        e);
  }

  /** Validates the input and draws the plot; package-private so tests can check the geometry. */
  static Rendered render(String title, String xLabel, String yLabel, List<Layer> layers, int width, int height)
      throws RenderingUnavailableException {
    if (layers.isEmpty()) throw new IllegalArgumentException("nothing to plot: the list of series is empty");
    if (width < MIN_WIDTH || height < MIN_HEIGHT || width > MAX_SIDE || height > MAX_SIDE)
      throw new IllegalArgumentException(
          "plot size " + width + "x" + height + " is out of range (" + MIN_WIDTH + "x" + MIN_HEIGHT + " to " + MAX_SIDE + "x" + MAX_SIDE + ")");
    double xlo = Double.POSITIVE_INFINITY, xhi = Double.NEGATIVE_INFINITY, ylo = Double.POSITIVE_INFINITY, yhi = Double.NEGATIVE_INFINITY;
    for (Layer l : layers) {
      Series s = l.series();
      if (s.size() == 0) throw new IllegalArgumentException("series '" + s.name() + "' is empty");
      for (int i = 0; i < s.size(); i++) {
        if (!Double.isFinite(s.y[i])) continue;
        xlo = Math.min(xlo, s.x[i]);
        xhi = Math.max(xhi, s.x[i]);
        ylo = Math.min(ylo, s.y[i]);
        yhi = Math.max(yhi, s.y[i]);
      }
    }
    if (xlo > xhi) {
      StringBuilder names = new StringBuilder();
      for (Layer l : layers) names.append(names.isEmpty() ? "" : ", ").append('\'').append(l.series().name()).append('\'');
      throw new IllegalArgumentException("nothing to plot: no finite y value in series " + names);
    }
    double[] xr = padRange(xlo, xhi, true), yr = padRange(ylo, yhi, false);
    if (!Double.isFinite(yr[1] - yr[0])) throw new IllegalArgumentException("y values span too large a range to plot: " + ylo + " to " + yhi);

    if (System.getProperty("java.awt.headless") == null) System.setProperty("java.awt.headless", "true");
    BufferedImage image;
    Graphics2D g;
    try {
      image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
      g = image.createGraphics();
      g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
      g.getFontMetrics().stringWidth("0.123 step loss");
    } catch (RuntimeException | LinkageError | AWTError | InternalError e) {
      throw unavailable(e);
    }
    try {
      Rendered r = draw(g, image, title == null ? "" : title, xLabel == null ? "" : xLabel, yLabel == null ? "" : yLabel, layers, xr, yr);
      return r;
    } catch (LinkageError | AWTError | InternalError | HeadlessException e) {
      throw unavailable(e);
    } finally {
      g.dispose();
    }
  }

  /** The drawn range for data spanning lo..hi: padded 5% for y; widened when the span is zero. */
  static double[] padRange(double lo, double hi, boolean integral) {
    double span = hi - lo;
    if (span <= Math.max(Math.abs(lo), Math.abs(hi)) * 1e-12) {
      double pad = integral ? 1 : lo == 0 ? 1 : Math.abs(lo) * 0.1;
      return new double[] {lo - pad, hi + pad};
    }
    if (integral) return new double[] {lo, hi};
    return new double[] {lo - span * 0.05, hi + span * 0.05};
  }

  /** A tick spacing of 1, 2 or 5 times a power of ten giving about {@code target} intervals over {@code span}. */
  static double niceStep(double span, int target) {
    double raw = span / Math.max(1, target);
    double mag = Math.pow(10, Math.floor(Math.log10(raw)));
    double f = raw / mag;
    double nice = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    return nice * mag;
  }

  /** Tick values: the multiples of {@code step} within lo..hi. */
  static double[] ticks(double lo, double hi, double step) {
    long first = (long) Math.ceil(lo / step - 1e-9), last = (long) Math.floor(hi / step + 1e-9);
    if (last - first > 1000) throw new IllegalStateException("too many ticks: " + lo + ".." + hi + " by " + step);
    double[] t = new double[(int) Math.max(0, last - first + 1)];
    for (int i = 0; i < t.length; i++) t[i] = (first + i) * step;
    return t;
  }

  /** Tick label: as many decimals as the step needs; large whole numbers as 25k or 1.5M. */
  static String tickLabel(double v, double step) {
    if (v == 0) v = 0; // no "-0"
    double a = Math.abs(v);
    if (step >= 100_000 && a >= 1_000_000) return trim(v / 1_000_000) + "M";
    if (step >= 100 && a >= 10_000) return trim(v / 1_000) + "k";
    int decimals = (int) Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
    return String.format(Locale.ROOT, "%." + decimals + "f", v);
  }

  private static String trim(double v) {
    String s = String.format(Locale.ROOT, "%.3f", v);
    s = s.replaceAll("0+$", "");
    return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
  }

  private static Rendered draw(Graphics2D g, BufferedImage image, String title, String xLabel, String yLabel, List<Layer> layers, double[] xr, double[] yr) {
    int w = image.getWidth(), h = image.getHeight();
    g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
    g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
    g.setRenderingHint(RenderingHints.KEY_STROKE_CONTROL, RenderingHints.VALUE_STROKE_PURE);
    g.setRenderingHint(RenderingHints.KEY_RENDERING, RenderingHints.VALUE_RENDER_QUALITY);
    g.setColor(Color.WHITE);
    g.fillRect(0, 0, w, h);

    Font titleFont = new Font(Font.SANS_SERIF, Font.BOLD, 18), labelFont = new Font(Font.SANS_SERIF, Font.PLAIN, 14),
        tickFont = new Font(Font.SANS_SERIF, Font.PLAIN, 12);
    FontMetrics tfm = g.getFontMetrics(titleFont), lfm = g.getFontMetrics(labelFont), kfm = g.getFontMetrics(tickFont);

    // Legend entries, laid out in rows above the plot area.
    List<String> texts = new ArrayList<>();
    for (Layer l : layers) texts.add(legendEntry(l));
    final int sample = 26, gap = 18, rowH = lfm.getHeight() + 4;
    int margin = 12;
    int titleH = title.isEmpty() ? 0 : tfm.getHeight() + 6;

    // y ticks first: their label width sets the left margin. The plot height is estimated for this.
    int left0 = margin + (yLabel.isEmpty() ? 0 : lfm.getHeight() + 8);
    int bottom = margin + (xLabel.isEmpty() ? 0 : lfm.getHeight() + 4) + kfm.getHeight() + 10;
    int right = 28;
    List<int[]> rows = legendRows(texts, lfm, sample, gap, w - left0 - 60 - right);
    int top = margin + titleH + rows.size() * rowH + 10;
    int plotH = h - top - bottom;
    double yStep = niceStep(yr[1] - yr[0], Math.max(2, plotH / 60));
    double[] yTicks = ticks(yr[0], yr[1], yStep);
    int tickW = 0;
    for (double t : yTicks) tickW = Math.max(tickW, kfm.stringWidth(tickLabel(t, yStep)));
    int plotX = left0 + tickW + 10, plotY = top, plotW = w - plotX - right;
    if (plotW < 40 || plotH < 40) throw new IllegalArgumentException("plot size " + w + "x" + h + " leaves no room for the plot area");
    double xStep = Math.max(1, niceStep(xr[1] - xr[0], Math.max(2, plotW / 110)));
    double[] xTicks = ticks(xr[0], xr[1], xStep);
    Mapper m = new Mapper(xr, yr, plotX, plotY, plotW, plotH);

    // Grid, frame, ticks and their labels.
    g.setStroke(new BasicStroke(1f));
    g.setFont(tickFont);
    for (double t : yTicks) {
      double py = m.py(t);
      g.setColor(new Color(0xe4e4e4));
      g.draw(new Line2D.Double(plotX, py, plotX + plotW, py));
      g.setColor(Color.DARK_GRAY);
      g.draw(new Line2D.Double(plotX - 5, py, plotX, py));
      String s = tickLabel(t, yStep);
      g.drawString(s, plotX - 8 - kfm.stringWidth(s), (float) (py + kfm.getAscent() / 2.0 - 1));
    }
    for (double t : xTicks) {
      double px = m.px(t);
      g.setColor(new Color(0xe4e4e4));
      g.draw(new Line2D.Double(px, plotY, px, plotY + plotH));
      g.setColor(Color.DARK_GRAY);
      g.draw(new Line2D.Double(px, plotY + plotH, px, plotY + plotH + 5));
      String s = tickLabel(t, xStep);
      g.drawString(s, (float) (px - kfm.stringWidth(s) / 2.0), plotY + plotH + 8 + kfm.getAscent());
    }
    g.setColor(Color.DARK_GRAY);
    g.drawRect(plotX, plotY, plotW, plotH);

    // Axis labels and title.
    g.setColor(Color.BLACK);
    g.setFont(labelFont);
    if (!xLabel.isEmpty())
      g.drawString(xLabel, plotX + (plotW - lfm.stringWidth(xLabel)) / 2f, h - margin - lfm.getDescent());
    if (!yLabel.isEmpty()) {
      AffineTransform saved = g.getTransform();
      g.translate(margin + lfm.getAscent(), plotY + (plotH + lfm.stringWidth(yLabel)) / 2.0);
      g.rotate(-Math.PI / 2);
      g.drawString(yLabel, 0, 0);
      g.setTransform(saved);
    }
    if (!title.isEmpty()) {
      g.setFont(titleFont);
      g.drawString(title, (w - tfm.stringWidth(title)) / 2f, margin + tfm.getAscent());
    }

    // Legend.
    g.setFont(labelFont);
    int ly = margin + titleH;
    for (int[] row : rows) {
      int lx = plotX;
      for (int i = row[0]; i < row[1]; i++) {
        Layer l = layers.get(i);
        double cy = ly + rowH / 2.0;
        g.setColor(color(l));
        g.setStroke(new BasicStroke(Math.max(2f, l.stroke()), BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND));
        g.draw(new Line2D.Double(lx, cy, lx + sample, cy));
        g.setColor(Color.BLACK);
        g.drawString(texts.get(i), lx + sample + 6, (float) (cy + lfm.getAscent() / 2.0 - 2));
        lx += sample + 6 + lfm.stringWidth(texts.get(i)) + gap;
      }
      ly += rowH;
    }

    // Data, clipped to the plot area.
    g.setClip(plotX, plotY, plotW + 1, plotH + 1);
    for (Layer l : layers) drawLayer(g, l, m);
    g.setClip(null);
    return new Rendered(image, plotX, plotY, plotW, plotH);
  }

  /** Splits legend entries into rows (index ranges [from, to)) that fit in {@code avail} pixels. */
  private static List<int[]> legendRows(List<String> texts, FontMetrics fm, int sample, int gap, int avail) {
    List<int[]> rows = new ArrayList<>();
    int from = 0, used = 0;
    for (int i = 0; i < texts.size(); i++) {
      int ew = sample + 6 + fm.stringWidth(texts.get(i));
      if (i > from && used + gap + ew > avail) {
        rows.add(new int[] {from, i});
        from = i;
        used = 0;
      }
      used += (i > from ? gap : 0) + ew;
    }
    rows.add(new int[] {from, texts.size()});
    return rows;
  }

  private static Color color(Layer l) {
    return new Color((l.rgb() >> 16) & 0xff, (l.rgb() >> 8) & 0xff, l.rgb() & 0xff, l.alpha());
  }

  /** Data coordinates to pixels. */
  private record Mapper(double[] xr, double[] yr, int plotX, int plotY, int plotW, int plotH) {
    double px(double x) {
      return plotX + (x - xr[0]) / (xr[1] - xr[0]) * plotW;
    }

    double py(double y) {
      return plotY + plotH - (y - yr[0]) / (yr[1] - yr[0]) * plotH;
    }
  }

  private static void drawLayer(Graphics2D g, Layer l, Mapper m) {
    Series s = l.series();
    int n = s.size();
    int[] order = xOrder(s.x);
    g.setColor(color(l));
    g.setStroke(new BasicStroke(l.stroke(), BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND));
    int finite = 0;
    for (double y : s.y) if (Double.isFinite(y)) finite++;
    double dot = Math.max(2.5, l.stroke() + 1.5);
    int i = 0;
    while (i < n) {
      while (i < n && !Double.isFinite(s.y[order[i]])) i++;
      int start = i;
      while (i < n && Double.isFinite(s.y[order[i]])) i++;
      if (i - start == 1) {
        int k = order[start];
        g.fill(new Ellipse2D.Double(m.px(s.x[k]) - dot, m.py(s.y[k]) - dot, 2 * dot, 2 * dot));
      } else if (i > start) g.draw(runPath(s, order, start, i, m));
    }
    if (finite > 1 && finite <= MARKER_LIMIT) {
      double r = dot - 0.5;
      for (int k = 0; k < n; k++)
        if (Double.isFinite(s.y[k])) g.fill(new Ellipse2D.Double(m.px(s.x[k]) - r, m.py(s.y[k]) - r, 2 * r, 2 * r));
    }
  }

  /** Indices of x in ascending order (stable); the identity when x is already sorted. */
  private static int[] xOrder(long[] x) {
    int[] order = new int[x.length];
    boolean sorted = true;
    for (int i = 0; i < x.length; i++) {
      order[i] = i;
      if (i > 0 && x[i] < x[i - 1]) sorted = false;
    }
    if (sorted) return order;
    return Arrays.stream(order).boxed().sorted((a, b) -> Long.compare(x[a], x[b])).mapToInt(Integer::intValue).toArray();
  }

  /**
   * The polyline through points order[from..to) (all finite). Long runs are reduced per pixel column to
   * the first, lowest, highest and last point, which draws the same picture with far fewer segments.
   */
  private static Path2D runPath(Series s, int[] order, int from, int to, Mapper m) {
    Path2D.Double path = new Path2D.Double();
    boolean reduce = to - from > 4L * m.plotW();
    int col = Integer.MIN_VALUE, first = -1, lo = -1, hi = -1, last = -1;
    boolean started = false;
    for (int i = from; i <= to; i++) {
      int k = i < to ? order[i] : -1;
      int c = k >= 0 ? (int) Math.floor(m.px(s.x[k])) : Integer.MAX_VALUE;
      if (!reduce && k >= 0) {
        started = lineTo(path, started, m.px(s.x[k]), m.py(s.y[k]));
        continue;
      }
      if (!reduce) break;
      if (c != col) {
        if (first >= 0) {
          int a = Math.min(lo, hi), b = Math.max(lo, hi); // keep index order inside the column
          for (int p : new int[] {first, a, b, last}) started = lineTo(path, started, m.px(s.x[p]), m.py(s.y[p]));
        }
        if (k < 0) break;
        col = c;
        first = lo = hi = last = k;
      } else {
        if (s.y[k] < s.y[lo]) lo = k;
        if (s.y[k] > s.y[hi]) hi = k;
        last = k;
      }
    }
    return path;
  }

  private static boolean lineTo(Path2D.Double path, boolean started, double x, double y) {
    if (started) path.lineTo(x, y);
    else path.moveTo(x, y);
    return true;
  }
}

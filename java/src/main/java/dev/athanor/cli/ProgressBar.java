package dev.athanor.cli;

import java.io.Console;
import java.io.PrintStream;
import java.util.Locale;
import java.util.Objects;
import java.util.function.LongSupplier;

/**
 * A progress display for long command-line work: training steps, tokenized bytes, downloads.
 *
 * <p>In <em>interactive</em> mode (a terminal) one line is redrawn in place with {@code '\r'}, at most
 * about ten times a second, sized to the terminal width ({@code COLUMNS}, default 100):
 *
 * <pre>train  42% [##########>...............]  420/1000  loss 3.214 | 12.3k tok/s  ETA 1m23s</pre>
 *
 * <p>In <em>non-interactive</em> mode (CI logs, files) it prints a plain line at the start, whenever
 * another 10% of the work is done or 30 seconds have passed since the last line (whichever comes
 * first), and at {@link #close()}; it never prints carriage returns.
 *
 * <p>A total of zero or less means the total is unknown: the display then shows a count and a rate
 * instead of a bar. On close the estimated time left is replaced by the elapsed time. All methods are
 * synchronized, so a training loop and a background writer may both report through one bar; use
 * {@link #message(String)} for other output while the bar is shown so the two do not garble each
 * other.
 */
public final class ProgressBar implements AutoCloseable {
  /** Minimum time between two interactive redraws (10 per second). */
  static final long REDRAW_INTERVAL_NANOS = 100_000_000L;
  /** Longest time between two non-interactive lines. */
  static final long LOG_INTERVAL_NANOS = 30_000_000_000L;
  /** Terminal width when {@code COLUMNS} is unset or malformed. */
  static final int DEFAULT_WIDTH = 100;
  /** Narrowest terminal width honoured; narrower values are raised to this. */
  static final int MIN_WIDTH = 20;

  private static final int MAX_BAR = 50;
  private static final int MIN_BAR = 10;
  private static final String SEP = "  ";
  private static final int TIME_RESERVE = "ETA 59m59s".length();

  private final String label;
  private final long total;
  private final PrintStream out;
  private final boolean interactive;
  private final LongSupplier clock;
  private final int width;
  private final long startNanos;

  private long done;
  private String status = "";
  private boolean closed;
  // interactive state
  private long lastDrawNanos;
  private long lastDrawnDone = -1;
  private int lastDrawLength;
  // non-interactive state
  private int nextDecile = 1;
  private long lastLogNanos;

  /**
   * Creates a bar and shows its initial state.
   *
   * @param label short name shown first on the line, e.g. {@code "train"}
   * @param total amount of work (steps, bytes...); zero or less when unknown
   * @param out where to draw (usually {@code System.err})
   * @param interactive {@code true} to redraw one line in place (a terminal), {@code false} for plain
   *     log lines
   */
  public ProgressBar(String label, long total, PrintStream out, boolean interactive) {
    this(label, total, out, interactive, System::nanoTime, terminalWidth(System.getenv("COLUMNS")));
  }

  /** As the public constructor, with an injected clock (nanoseconds) and terminal width, for tests. */
  ProgressBar(String label, long total, PrintStream out, boolean interactive, LongSupplier clock, int width) {
    this.label = sanitize(Objects.requireNonNull(label, "label"));
    this.total = Math.max(0, total);
    this.out = Objects.requireNonNull(out, "out");
    this.interactive = interactive;
    this.clock = Objects.requireNonNull(clock, "clock");
    this.width = Math.max(MIN_WIDTH, width);
    this.startNanos = clock.getAsLong();
    this.lastDrawNanos = startNanos;
    this.lastLogNanos = startNanos;
    if (interactive) draw(startNanos, false);
    else log(startNanos, false);
  }

  /**
   * A bar on {@code System.err}, interactive when the JVM runs in a terminal whose {@code TERM} is not
   * {@code "dumb"}. (Java can only tell whether standard input and output are a terminal; when only
   * standard error is redirected the bar still assumes one.)
   */
  public static ProgressBar create(String label, long total) {
    Console console = System.console();
    boolean interactive = console != null && console.isTerminal() && !"dumb".equals(System.getenv("TERM"));
    return new ProgressBar(label, total, System.err, interactive);
  }

  /**
   * Reports progress: {@code done} units of the total are finished.
   *
   * @param done units done so far, {@code >= 0}; may exceed the total (the bar stays full)
   * @param status free text shown after the counts, e.g. {@code "loss 3.214 | 12.3k tok/s"}; {@code
   *     null} keeps the previous status
   * @throws IllegalArgumentException if {@code done} is negative
   */
  public synchronized void update(long done, String status) {
    if (done < 0) throw new IllegalArgumentException("progress '" + label + "': done must be >= 0, got " + done);
    if (closed) return;
    this.done = done;
    if (status != null) this.status = sanitize(status);
    long now = clock.getAsLong();
    if (interactive) {
      boolean reachedEnd = total > 0 && done >= total && lastDrawnDone < total;
      if (reachedEnd || now - lastDrawNanos >= REDRAW_INTERVAL_NANOS) draw(now, false);
    } else {
      boolean decile = false;
      if (total > 0) {
        int d = decile(done);
        if (d >= nextDecile && d < 10) {
          nextDecile = d + 1;
          decile = true;
        }
      }
      if (decile || now - lastLogNanos >= LOG_INTERVAL_NANOS) log(now, false);
    }
  }

  /** One more unit done; see {@link #update(long, String)}. */
  public synchronized void step(String status) {
    update(done + 1, status);
  }

  /**
   * Prints a line of other output (a checkpoint saved, an eval result) above the bar without garbling
   * it; the bar is redrawn below it. After {@link #close()} the line is simply printed.
   */
  public synchronized void message(String line) {
    String text = String.valueOf(line).replace("\r", "");
    if (interactive && !closed) {
      out.print("\r" + " ".repeat(lastDrawLength) + "\r");
      out.println(text);
      lastDrawLength = 0;
      draw(clock.getAsLong(), false);
    } else {
      out.println(text);
      out.flush();
    }
  }

  /** Units done so far. */
  public synchronized long done() {
    return done;
  }

  /**
   * Shows the final state, with the elapsed time instead of the time left, and ends the line. Further
   * updates are ignored; calling close again does nothing.
   */
  @Override
  public synchronized void close() {
    if (closed) return;
    long now = clock.getAsLong();
    if (interactive) {
      draw(now, true);
      out.println();
      out.flush();
    } else {
      log(now, true);
    }
    closed = true;
  }

  // ---- rendering ----

  private int decile(long n) {
    if (n >= total) return 10;
    return (int) Math.min(9, (long) ((double) n * 10 / total));
  }

  private void draw(long now, boolean fin) {
    String line = render(now, fin, width - 1, true);
    int pad = Math.max(0, lastDrawLength - line.length());
    out.print("\r" + line + " ".repeat(pad));
    out.flush();
    lastDrawLength = line.length();
    lastDrawNanos = now;
    lastDrawnDone = done;
  }

  private void log(long now, boolean fin) {
    out.println(render(now, fin, Integer.MAX_VALUE, false));
    out.flush();
    lastLogNanos = now;
  }

  /** The display line: label, percent, bar, counts, status, time; at most {@code max} characters. */
  private String render(long now, boolean fin, int max, boolean withBar) {
    double elapsed = Math.max(0, now - startNanos) / 1e9;
    double rate = elapsed > 0 ? done / elapsed : Double.NaN;
    boolean known = total > 0;

    String pct = known ? String.format(Locale.ROOT, "%3d%%", percent()) : null;
    String counts = known ? formatCount(done) + "/" + formatCount(total) : formatCount(done) + SEP + formatRate(rate) + "/s";
    if (withBar && known) counts = " ".repeat(Math.max(0, 2 * formatCount(total).length() + 1 - counts.length())) + counts;
    String time;
    if (fin || !known) time = (fin || !withBar ? "elapsed " : "") + formatDuration(elapsed);
    else {
      String eta = done >= total ? "0s" : done == 0 ? "--" : formatDuration((total - done) / rate);
      time = (withBar ? "" : "elapsed " + formatDuration(elapsed) + SEP) + "ETA " + eta;
    }

    // label [pct] counts time are always kept; then the status; then a bar if room is left.
    int base = label.length() + (known ? 1 + pct.length() : 0) + SEP.length() + counts.length() + SEP.length() + time.length();
    int room = max - base;
    String st = status;
    int barInner = 0;
    if (!st.isEmpty()) {
      if (room >= st.length() + SEP.length()) room -= st.length() + SEP.length();
      else {
        int keep = room - SEP.length();
        st = keep >= 4 ? st.substring(0, keep - 3) + "..." : "";
        room = 0;
      }
    }
    if (withBar && known) {
      // Size the bar as if the time took at least TIME_RESERVE characters, so it keeps its width
      // while the estimate changes from "ETA --" to "ETA 1m23s" and back.
      int barRoom = room - Math.max(0, TIME_RESERVE - time.length());
      if (barRoom >= MIN_BAR + 3) barInner = Math.min(MAX_BAR, barRoom - 3);
    }

    StringBuilder sb = new StringBuilder(label);
    if (known) sb.append(' ').append(pct);
    if (barInner > 0) sb.append(' ').append(bar(barInner));
    sb.append(SEP).append(counts);
    if (!st.isEmpty()) sb.append(SEP).append(st);
    sb.append(SEP).append(time);
    return sb.length() > max ? sb.substring(0, max) : sb.toString();
  }

  private int percent() {
    if (done >= total) return 100;
    return (int) Math.min(99, (long) ((double) done * 100 / total));
  }

  private String bar(int inner) {
    double frac = Math.min(1.0, (double) done / total);
    int filled = (int) (frac * inner);
    if (done >= total) filled = inner;
    StringBuilder sb = new StringBuilder(inner + 2).append('[');
    sb.append("#".repeat(filled));
    if (filled < inner) sb.append('>').append(".".repeat(inner - filled - 1));
    return sb.append(']').toString();
  }

  private static String sanitize(String s) {
    StringBuilder sb = new StringBuilder(s.length());
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      sb.append(Character.isISOControl(c) ? ' ' : c);
    }
    return sb.toString();
  }

  static int terminalWidth(String columns) {
    if (columns == null) return DEFAULT_WIDTH;
    try {
      int w = Integer.parseInt(columns.strip());
      return w > 0 ? Math.max(MIN_WIDTH, w) : DEFAULT_WIDTH;
    } catch (NumberFormatException e) {
      return DEFAULT_WIDTH;
    }
  }

  // ---- human-friendly numbers ----

  private static final String[] UNITS = {"k", "M", "G", "T", "P", "E"};

  /** A count for people: exact below 10,000, then {@code 12.3k}, {@code 123k}, {@code 1.2M}... */
  public static String formatCount(long n) {
    if (n > -10_000 && n < 10_000) return Long.toString(n);
    return (n < 0 ? "-" : "") + scaled(Math.abs((double) n));
  }

  /** A rate (units per second) for people: {@code 0.25}, {@code 12.3}, {@code 456}, {@code 12.3k}; {@code --} if unknown. */
  public static String formatRate(double r) {
    if (!Double.isFinite(r) || r < 0) return "--";
    if (r < 9.995) return String.format(Locale.ROOT, "%.2f", r);
    if (r < 99.95) return String.format(Locale.ROOT, "%.1f", r);
    if (r < 9_999.5) return String.format(Locale.ROOT, "%.0f", r);
    return scaled(r);
  }

  private static String scaled(double v) {
    int u = 0;
    v /= 1000;
    while (v >= 999.5 && u < UNITS.length - 1) {
      v /= 1000;
      u++;
    }
    return (v < 99.95 ? String.format(Locale.ROOT, "%.1f", v) : String.format(Locale.ROOT, "%.0f", v)) + UNITS[u];
  }

  /** A duration for people: {@code 45s}, {@code 3m05s}, {@code 1h02m}; {@code --} if unknown or negative. */
  public static String formatDuration(double seconds) {
    if (!Double.isFinite(seconds) || seconds < 0) return "--";
    long s = Math.round(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60);
    long m = (s + 30) / 60; // round to whole minutes
    if (m / 60 > 99_999) return ">99999h";
    return String.format(Locale.ROOT, "%dh%02dm", m / 60, m % 60);
  }
}

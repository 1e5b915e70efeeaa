package dev.athanor.cli;

import java.io.Console;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarConsumer;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Progress of long command-line work (training steps, tokenized bytes) on stderr, drawn by me.tongfei:progressbar:
 * task, percentage, bar, count, elapsed / ETA (from this run's rate: a resumed run starts counting at its first
 * step), and a status such as {@code loss 3.214 (avg 3.300) | 12.3k tok/s}.
 *
 * <p>In a terminal the library redraws the bar in place a few times a second. Elsewhere (CI logs, files) {@link
 * LogLines} prints plain lines instead, never carriage returns: the first state, a line whenever another 10% is
 * done or 30 seconds have passed, and the final state. Lines for the user given through {@link #message} while the
 * bar is shown are printed after it closes, so the two never garble each other.
 */
final class Progress implements AutoCloseable {
  /** Redraws per second in a terminal. */
  private static final int TERMINAL_INTERVAL_MS = 200;
  /** Width of a log line (the bar takes what the text leaves). */
  static final int LOG_WIDTH = 120;

  private final ProgressBar bar;
  private final LogLines lines;
  private final PrintStream out;
  private final AtomicLong done, total;
  private final List<String> messages = new ArrayList<>();
  private final String separator; // between the library's text and the status
  private boolean closed;

  private Progress(ProgressBarBuilder b, boolean speed, long total, long initial, PrintStream out, boolean interactive) {
    this.out = out;
    this.separator = speed ? " " : "";
    this.done = new AtomicLong(initial);
    this.total = new AtomicLong(total);
    b.setInitialMax(total > 0 ? total : -1).startsFrom(initial, Duration.ZERO).continuousUpdate();
    if (interactive) {
      String charset = String.valueOf(System.getProperty("stderr.encoding", System.getProperty("native.encoding")));
      b.setStyle(charset.toUpperCase(Locale.ROOT).contains("UTF") ? ProgressBarStyle.UNICODE_BLOCK : ProgressBarStyle.ASCII)
          .setUpdateIntervalMillis(TERMINAL_INTERVAL_MS);
      lines = null;
    } else {
      lines = new LogLines(out, LOG_WIDTH, System::nanoTime, this.done::get, this.total::get);
      b.setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(1000).setConsumer(lines);
    }
    bar = b.build();
  }

  /** Steps of {@code task}: {@code total} of them (0 or less: unknown), {@code initial} already done before this run. */
  static Progress steps(String task, long total, long initial) {
    return new Progress(new ProgressBarBuilder().setTaskName(task), false, total, initial, System.err, interactive());
  }

  /** Bytes of {@code task}, shown in MB with a speed; the total comes with the updates. */
  static Progress bytes(String task) {
    return new Progress(new ProgressBarBuilder().setTaskName(task).setUnit(" MB", 1_000_000).showSpeed(), true, 0, 0,
        System.err, interactive());
  }

  /** As {@link #steps} on {@code out}, drawn as log lines (for tests). */
  static Progress logLines(String task, long total, long initial, PrintStream out) {
    return new Progress(new ProgressBarBuilder().setTaskName(task), false, total, initial, out, false);
  }

  /**
   * Whether stderr is probably a terminal: the JVM has one ({@link Console#isTerminal}) and {@code TERM} is not
   * {@code dumb}. (Java can only tell for stdin and stdout.)
   */
  static boolean interactive() {
    Console console = System.console();
    return console != null && console.isTerminal() && !"dumb".equals(System.getenv("TERM"));
  }

  /** {@code done} units are finished; {@code status} is shown after the counts and times. */
  void update(long done, String status) {
    this.done.set(done);
    bar.stepTo(done);
    bar.setExtraMessage(separator + status);
  }

  /** As {@link #update(long, String)}, with a new estimate of the total (0 or less: unknown). */
  void update(long done, long total, String status) {
    if (total > 0 && total != this.total.getAndSet(total)) bar.maxHint(total);
    update(done, status);
  }

  /** A line for the user: printed now when the bar is closed, else right after it closes. */
  synchronized void message(String line) {
    if (closed) out.println(line);
    else messages.add(line);
  }

  /** Shows the final state (elapsed time, no ETA) and then the queued messages. */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    bar.close();
    if (lines != null && !lines.closed()) { // the library closes its consumer unless close() came before the first draw
      bar.refresh();
      lines.close();
    }
    for (String m : messages) out.println(m);
    out.flush();
  }

  /**
   * The library's output away from a terminal: plain lines, the first one, one whenever another 10% of a known
   * total is done or {@link #INTERVAL_NANOS} have passed since the last one, and the last state at close.
   */
  static final class LogLines implements ProgressBarConsumer {
    /** Longest time between two lines. */
    static final long INTERVAL_NANOS = 30_000_000_000L;

    private final PrintStream out;
    private final int width;
    private final LongSupplier clock, done, total;
    private long lastNanos;
    private boolean printed, closed;
    private int nextDecile = 1;
    private String pending;

    LogLines(PrintStream out, int width, LongSupplier clock, LongSupplier done, LongSupplier total) {
      this.out = Objects.requireNonNull(out, "out");
      this.width = width;
      this.clock = clock;
      this.done = done;
      this.total = total;
    }

    @Override
    public int getMaxRenderedLength() {
      return width;
    }

    @Override
    public synchronized void accept(String line) {
      if (closed) return;
      long now = clock.getAsLong(), t = total.getAsLong();
      int decile = t > 0 ? (int) Math.min(10, done.getAsLong() * 10 / t) : 0;
      if (!printed || decile >= nextDecile && decile < 10 || now - lastNanos >= INTERVAL_NANOS) {
        out.println(line.stripTrailing());
        out.flush();
        printed = true;
        lastNanos = now;
        nextDecile = Math.max(nextDecile, decile + 1);
        pending = null;
      } else {
        pending = line;
      }
    }

    /** Prints the last state if it has not been printed yet. */
    @Override
    public synchronized void close() {
      if (closed) return;
      closed = true;
      if (pending != null) out.println(pending.stripTrailing());
      pending = null;
      out.flush();
    }

    synchronized boolean closed() {
      return closed;
    }
  }
}

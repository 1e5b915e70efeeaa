package dev.athanor.report;

import dev.athanor.io.AtomicFiles;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.checkpoint.CheckpointEvent;
import java.io.IOException;
import java.lang.reflect.RecordComponent;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;

/**
 * The report of a training run: one self-contained HTML page (no scripts, no external resources; the charts inline
 * as SVG) with a summary of the loss and the throughput, the charts, the model and training configurations, the
 * memory used per tier, the checkpoints written, and how the run was started.
 *
 * <p>The page is plain HTML and CSS and opens in any browser, offline. Build a {@link Run} and call {@link #write}
 * (or {@link #html} for the text); the command line does so after {@code train} and {@code demo}.
 */
public final class RunReport {
  private RunReport() {}

  /**
   * What a report shows.
   *
   * @param title the page title, e.g. "athanor train"
   * @param version the Athanor version
   * @param finished when the run ended
   * @param model the model's configuration
   * @param parameters the model's parameter count
   * @param train the training configuration
   * @param details further facts about the run, shown in order (device, data, command line, output directory, ...)
   * @param steps the steps of the log (all of them, a resumed run's earlier ones included)
   * @param charts the charts to show, in order; empty when none were drawn
   * @param chartsMissing why there are no charts (shown instead), or null
   * @param memory per-tier memory use at the end of the run
   * @param checkpoints the checkpoints written (and failed writes), oldest first
   * @param traffic the offload figures of the steps (empty when the run kept everything in memory)
   * @param summary the log's summary line, or null when it has none
   */
  public record Run(String title, String version, Instant finished, ModelConfig model, long parameters, TrainConfig train,
      Map<String, String> details, List<StepResult> steps, List<TrainingCharts.Chart> charts, String chartsMissing,
      List<TierUse> memory, List<CheckpointEvent> checkpoints, List<StepTraffic> traffic, RunSummary summary) {
    public Run {
      Objects.requireNonNull(title, "title");
      Objects.requireNonNull(version, "version");
      Objects.requireNonNull(finished, "finished");
      Objects.requireNonNull(model, "model");
      Objects.requireNonNull(train, "train");
      details = details == null ? Map.of() : java.util.Collections.unmodifiableMap(new LinkedHashMap<>(details));
      steps = List.copyOf(steps);
      charts = charts == null ? List.of() : List.copyOf(charts);
      memory = memory == null ? List.of() : List.copyOf(memory);
      checkpoints = checkpoints == null ? List.of() : List.copyOf(checkpoints);
      traffic = traffic == null ? List.of() : List.copyOf(traffic);
    }

    /** A run without offload figures or summary line. */
    public Run(String title, String version, Instant finished, ModelConfig model, long parameters, TrainConfig train,
        Map<String, String> details, List<StepResult> steps, List<TrainingCharts.Chart> charts, String chartsMissing,
        List<TierUse> memory, List<CheckpointEvent> checkpoints) {
      this(title, version, finished, model, parameters, train, details, steps, charts, chartsMissing, memory, checkpoints,
          List.of(), null);
    }
  }

  /**
   * The memory of one tier at the end of a run, in bytes.
   *
   * @param budget the tier's budget ({@link MemoryManager#UNLIMITED} when none)
   * @param reserved bytes held by the caching allocator, in use or cached (DEVICE and HOST_PINNED; else equal to live)
   */
  public record TierUse(Tier tier, long live, long peak, long budget, long reserved) {
    /** Every tier of {@code m}, in {@link Tier} order. */
    public static List<TierUse> of(MemoryManager m) {
      List<TierUse> out = new ArrayList<>();
      for (Tier t : Tier.values()) out.add(new TierUse(t, m.liveBytes(t), m.peakBytes(t), m.budgetBytes(t), m.reservedBytes(t)));
      return out;
    }
  }

  /** Writes the report of {@code run} to {@code html} (atomically; the directory must exist). */
  public static void write(Path html, Run run) throws IOException {
    AtomicFiles.writeString(html, html(run));
  }

  /** The report file for a log {@code DIR/NAME.jsonl}: {@code DIR/NAME-report.html}, with a trailing "-log" dropped. */
  public static Path fileFor(Path log) {
    String name = log.getFileName().toString();
    int dot = name.lastIndexOf('.');
    String stem = dot > 0 ? name.substring(0, dot) : name;
    if (stem.endsWith("-log") && stem.length() > 4) stem = stem.substring(0, stem.length() - 4);
    return log.resolveSibling(stem + "-report.html");
  }

  /** The report as one HTML document. */
  public static String html(Run run) {
    StringBuilder h = new StringBuilder(64 * 1024);
    h.append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
        .append("<meta name=\"generator\" content=\"Athanor ").append(esc(run.version())).append("\">\n")
        .append("<title>").append(esc(run.title())).append(" report</title>\n<style>\n").append(CSS).append("</style>\n")
        .append("</head>\n<body>\n<main>\n");
    h.append("<h1>").append(esc(run.title())).append("</h1>\n<p class=\"sub\">")
        .append(esc(run.model().family().hfModelType())).append(" model, ").append(esc(millions(run.parameters())))
        .append(" parameters; ").append(run.steps().size()).append(" steps in the log; finished ")
        .append(esc(DateTimeFormatter.ISO_LOCAL_DATE_TIME.format(run.finished().atOffset(ZoneOffset.UTC).withNano(0))))
        .append(" UTC; Athanor ").append(esc(run.version())).append("</p>\n");

    summary(h, run);
    charts(h, run);
    h.append("<section id=\"config\">\n<h2>Configuration</h2>\n<div class=\"cols\">\n");
    table(h, "Model", recordRows(run.model()));
    table(h, "Training", recordRows(run.train()));
    h.append("</div>\n");
    if (!run.details().isEmpty()) table(h, "Run", run.details());
    h.append("</section>\n");
    memory(h, run);
    checkpoints(h, run);
    h.append("<footer>Written by Athanor ").append(esc(run.version()))
        .append(". One self-contained page: no scripts, nothing loaded from elsewhere.</footer>\n");
    h.append("</main>\n</body>\n</html>\n");
    return h.toString();
  }

  // ------------------------------------------------------------------ sections

  private static void summary(StringBuilder h, Run run) {
    List<StepResult> steps = run.steps();
    Map<String, String> rows = new LinkedHashMap<>();
    if (steps.isEmpty()) {
      rows.put("steps", "none: the log holds no step");
    } else {
      StepResult first = steps.getFirst(), last = steps.getLast();
      StepResult lowest = null;
      long tokens = 0;
      double seconds = 0;
      for (StepResult r : steps) {
        if (Float.isFinite(r.loss()) && (lowest == null || r.loss() < lowest.loss())) lowest = r;
        tokens += r.tokens();
        seconds += r.seconds();
      }
      rows.put("steps", first.step() == last.step() ? "step " + first.step() : "steps " + first.step() + " to " + last.step()
          + " (" + steps.size() + " in the log)");
      rows.put("loss", "first " + loss(first.loss()) + ", final " + loss(last.loss())
          + (lowest != null ? ", lowest " + loss(lowest.loss()) + " at step " + lowest.step() : ""));
      int span = TrainLog.smoothingSpan(steps.size());
      double[] smooth = TrainLog.ema(steps.stream().mapToDouble(StepResult::loss).toArray(), 2.0 / (span + 1));
      if (Double.isFinite(smooth[smooth.length - 1])) {
        rows.put("smoothed final loss", String.format(Locale.ROOT, "%.4f (EMA, span %d steps)", smooth[smooth.length - 1], span));
      }
      // the first step pays for one-time allocation and compilation: leave it out of the medians when there are more
      List<StepResult> timed = steps.size() > 1 ? steps.subList(1, steps.size()) : steps;
      double medianTps = median(timed.stream().mapToDouble(StepResult::tokensPerSecond).toArray());
      double medianMs = median(timed.stream().mapToDouble(r -> r.seconds() * 1e3).toArray());
      rows.put("throughput", String.format(Locale.ROOT, "%s tokens/s median, %s ms per step median%s", grouped(medianTps),
          decimal(medianMs), steps.size() > 1 ? " (first step left out)" : ""));
      rows.put("tokens", String.format(Locale.ROOT, "%s in %s of steps (%s tokens/s overall)", grouped(tokens),
          duration(seconds), grouped(seconds > 0 ? tokens / seconds : 0)));
    }
    offload(rows, run);
    h.append("<section id=\"summary\">\n<h2>Summary</h2>\n");
    table(h, null, rows);
    h.append("</section>\n");
  }

  /** The offload rows of the summary: the DISK traffic and stalls of the steps, or the summary line's when it has them. */
  private static void offload(Map<String, String> rows, Run run) {
    RunSummary s = run.summary();
    if (run.traffic().isEmpty() && (s == null || !s.offloaded())) return;
    long read = 0, written = 0;
    double stall = 0;
    for (StepTraffic t : run.traffic()) {
      read += t.diskReadBytes();
      written += t.diskWriteBytes();
      stall += t.stallMs();
    }
    String where = run.traffic().size() + " offloaded steps in the log";
    if (s != null && s.offloaded()) {  // the whole loop of the last process, checkpoint saves included
      read = s.diskReadBytes();
      written = s.diskWriteBytes();
      stall = s.stallMs();
      where = "the " + s.steps() + " steps of the last run, from its summary line";
    }
    rows.put("offload traffic", bytes(read) + " read from DISK, " + bytes(written) + " written to DISK (" + where + ")");
    String overlap = s != null && s.offloaded() && Double.isFinite(s.overlap())
        ? String.format(Locale.ROOT, "; %.1f%% of the transfer time hidden behind computation", 100 * s.overlap()) : "";
    rows.put("offload stall", decimal(stall) + " ms waiting for data" + overlap);
  }

  private static void charts(StringBuilder h, Run run) {
    h.append("<section id=\"charts\">\n<h2>Charts</h2>\n");
    if (run.charts().isEmpty()) {
      h.append("<p class=\"note\">No charts: ").append(esc(run.chartsMissing() != null ? run.chartsMissing()
          : run.steps().isEmpty() ? "the log holds no step" : "none were drawn")).append("</p>\n");
    }
    h.append("<div class=\"charts\">\n");
    for (TrainingCharts.Chart c : run.charts()) {
      h.append("<figure class=\"chart\" id=\"chart-").append(c.metric().name().toLowerCase(Locale.ROOT).replace('_', '-'))
          .append("\">\n").append(c.svgElement()).append("\n<figcaption>").append(esc(c.metric().title())).append(": ")
          .append(link(c.png())).append(", ").append(link(c.svg())).append("</figcaption>\n</figure>\n");
    }
    h.append("</div>\n</section>\n");
  }

  private static void memory(StringBuilder h, Run run) {
    h.append("<section id=\"memory\">\n<h2>Memory</h2>\n");
    if (run.memory().isEmpty()) {
      h.append("<p class=\"note\">Not recorded.</p>\n");
    } else {
      h.append("<table>\n<thead><tr><th>tier</th><th>peak</th><th>live at the end</th><th>reserved at the end</th>")
          .append("<th>budget</th><th>peak / budget</th></tr></thead>\n<tbody>\n");
      for (TierUse t : run.memory()) {
        boolean limited = t.budget() != MemoryManager.UNLIMITED && t.budget() > 0;
        h.append("<tr><td>").append(esc(t.tier().name())).append("</td><td class=\"n\">").append(esc(bytes(t.peak())))
            .append("</td><td class=\"n\">").append(esc(bytes(t.live()))).append("</td><td class=\"n\">")
            .append(esc(bytes(t.reserved()))).append("</td><td class=\"n\">")
            .append(esc(limited ? bytes(t.budget()) : "unlimited")).append("</td><td class=\"n\">")
            .append(limited ? String.format(Locale.ROOT, "%.1f%%", 100.0 * t.peak() / t.budget()) : "").append("</td></tr>\n");
      }
      h.append("</tbody>\n</table>\n");
    }
    h.append("<p class=\"note\">Peaks are the highest live bytes per tier since the allocator's peaks were last reset ("
        + "<code>train</code> resets them when its step loop begins). Budgets come from ")
        .append("<code>--mem-host</code>, <code>--mem-device</code> and the other budget flags, or ")
        .append("<code>-Dathanor.budget.&lt;tier&gt;</code>. <code>train</code> prints its offload plan (the tier of each ")
        .append("unit and role) before it starts.</p>\n");
    RunSummary s = run.summary();
    if (s != null) {
      h.append("<table id=\"peak-bytes\">\n<caption>Peak bytes per tier over the training steps (the log's summary line)")
          .append("</caption>\n<thead><tr><th>tier</th><th>peak</th><th>bytes</th></tr></thead>\n<tbody>\n");
      for (Map.Entry<Tier, Long> e : s.peakBytes().entrySet()) {
        h.append("<tr><td>").append(esc(e.getKey().name())).append("</td><td class=\"n\">").append(esc(bytes(e.getValue())))
            .append("</td><td class=\"n\">").append(String.format(Locale.ROOT, "%,d", e.getValue())).append("</td></tr>\n");
      }
      h.append("</tbody>\n</table>\n<p class=\"note\">Measured by the allocator from the start of the step loop of the ")
          .append("last run (").append(s.steps()).append(" steps): what was live then (the model's state) and what the ")
          .append("steps added.</p>\n");
    }
    h.append("</section>\n");
  }

  private static void checkpoints(StringBuilder h, Run run) {
    h.append("<section id=\"checkpoints\">\n<h2>Checkpoints</h2>\n");
    if (run.checkpoints().isEmpty()) {
      h.append("<p class=\"note\">None written (checkpoints need <code>--checkpoint-dir</code>).</p>\n</section>\n");
      return;
    }
    h.append("<table>\n<thead><tr><th>step</th><th>directory</th><th>loop stall</th><th>write</th><th>size</th>")
        .append("<th>result</th></tr></thead>\n<tbody>\n");
    for (CheckpointEvent e : run.checkpoints()) {
      h.append("<tr").append(e.succeeded() ? "" : " class=\"bad\"").append("><td class=\"n\">").append(e.step())
          .append("</td><td><code>").append(esc(String.valueOf(e.directory()))).append("</code></td><td class=\"n\">")
          .append(decimal(e.stallSeconds() * 1e3)).append(" ms</td><td class=\"n\">")
          .append(String.format(Locale.ROOT, "%.2f s", e.writeSeconds())).append("</td><td class=\"n\">")
          .append(e.succeeded() ? esc(bytes(e.bytes())) : "").append("</td><td>")
          .append(e.succeeded() ? "written" : "failed: " + esc(e.failure())).append("</td></tr>\n");
    }
    h.append("</tbody>\n</table>\n<p class=\"note\">The loop stall is what training waited for (for an asynchronous ")
        .append("save: the previous write, if still running, and the copy into host memory); the write runs beside ")
        .append("training. Only the newest checkpoints are kept (<code>--keep</code>).</p>\n</section>\n");
  }

  // ------------------------------------------------------------------ helpers

  /** The components of a record as name/value rows (enums in lower case). */
  static Map<String, String> recordRows(Record r) {
    Map<String, String> rows = new LinkedHashMap<>();
    for (RecordComponent c : r.getClass().getRecordComponents()) {
      Object v;
      try {
        v = c.getAccessor().invoke(r);
      } catch (ReflectiveOperationException e) {
        v = "?";
      }
      rows.put(c.getName(), v instanceof Enum<?> e ? e.name().toLowerCase(Locale.ROOT) : String.valueOf(v));
    }
    return rows;
  }

  private static void table(StringBuilder h, String caption, Map<String, String> rows) {
    h.append("<table class=\"kv\">\n");
    if (caption != null) h.append("<caption>").append(esc(caption)).append("</caption>\n");
    h.append("<tbody>\n");
    for (Map.Entry<String, String> e : rows.entrySet()) {
      h.append("<tr><th>").append(esc(e.getKey())).append("</th><td>").append(esc(e.getValue())).append("</td></tr>\n");
    }
    h.append("</tbody>\n</table>\n");
  }

  private static String link(Path file) {
    String name = file.getFileName().toString();
    return "<a href=\"" + esc(name) + "\">" + esc(name) + "</a>";
  }

  static double median(double[] v) {
    if (v.length == 0) return Double.NaN;
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  private static String loss(float v) {
    return Float.isFinite(v) ? String.format(Locale.ROOT, "%.4f", v) : String.valueOf(v);
  }

  private static String grouped(double v) {
    return Double.isFinite(v) ? String.format(Locale.ROOT, "%,.0f", v) : "n/a";
  }

  private static String decimal(double v) {
    return Double.isFinite(v) ? String.format(Locale.ROOT, v >= 100 ? "%,.0f" : "%.1f", v) : "n/a";
  }

  private static String millions(long n) {
    return n >= 1_000_000 ? String.format(Locale.ROOT, "%.1fM", n / 1e6) : String.format(Locale.ROOT, "%,d", n);
  }

  private static String duration(double s) {
    if (s < 120) return String.format(Locale.ROOT, "%.1f s", s);
    long t = Math.round(s);
    return t >= 3600 ? String.format(Locale.ROOT, "%dh %02dm %02ds", t / 3600, t / 60 % 60, t % 60)
        : String.format(Locale.ROOT, "%dm %02ds", t / 60, t % 60);
  }

  private static String bytes(long n) {
    if (n < 1024) return n + " B";
    String[] units = {"KiB", "MiB", "GiB", "TiB"};
    double v = n;
    int u = -1;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
  }

  /** Text for HTML content and double-quoted attributes. */
  static String esc(String s) {
    if (s == null) return "";
    StringBuilder b = new StringBuilder(s.length());
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '&' -> b.append("&amp;");
        case '<' -> b.append("&lt;");
        case '>' -> b.append("&gt;");
        case '"' -> b.append("&quot;");
        case '\'' -> b.append("&#39;");
        default -> b.append(c);
      }
    }
    return b.toString();
  }

  private static final String CSS = """
      :root { color-scheme: light; }
      body { margin: 0; background: #f6f7f9; color: #1d2330; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", \
      "DejaVu Sans", sans-serif; }
      main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 40px; }
      h1 { margin: 0 0 4px; font-size: 26px; }
      h2 { margin: 28px 0 10px; font-size: 19px; border-bottom: 1px solid #d8dce3; padding-bottom: 4px; }
      .sub { margin: 0; color: #5a6275; }
      .note { color: #5a6275; font-size: 13.5px; max-width: 1000px; }
      table { border-collapse: collapse; background: #fff; margin: 6px 0 12px; font-size: 14px; }
      th, td { border: 1px solid #dde1e8; padding: 4px 10px; text-align: left; vertical-align: top; }
      thead th { background: #eef1f5; }
      table.kv th { background: #f3f5f8; font-weight: 600; white-space: nowrap; }
      table.kv td { word-break: break-word; }
      caption { text-align: left; font-weight: 600; padding: 2px 0 6px; }
      td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
      tr.bad td { background: #fdecec; }
      code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; }
      .cols { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
      .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
      figure.chart { margin: 0; background: #fff; border: 1px solid #dde1e8; padding: 6px; }
      figure.chart svg { display: block; width: 100%; height: auto; }
      figcaption { font-size: 13px; color: #5a6275; padding: 4px 4px 0; }
      footer { margin-top: 32px; color: #8a91a1; font-size: 12.5px; }
      """;
}

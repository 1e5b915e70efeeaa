package dev.athanor.report;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import dev.athanor.train.StepResult;
import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads a training log ({@code train-log.jsonl}: one {@link StepResult#toJson()} object per line) back into step
 * results, for charts and reports. A resumed run's log holds the steps before the checkpoint too, so the log, not the
 * last process's memory, is the whole run.
 *
 * <p>A run that offloads adds its offload figures to each step line ({@link StepTraffic}), and every run ends its log
 * with a summary line ({@link RunSummary}); {@link #readAll} reads those too, {@link #read} only the steps.
 *
 * <p>Lenient where a log can be imperfect: lines that are blank, cut short by a crash, not JSON, or not a step
 * (no {@code loss}; the summary line) are skipped; {@code null} (what {@link StepResult#toJson()} writes for a value that is not
 * finite) reads as NaN, and the {@code NaN} or {@code Infinity} of older logs as such. {@code step_ms} has a
 * resolution of 0.1 ms, so {@link StepResult#seconds()} does too.
 */
public final class TrainLog {
  private TrainLog() {}

  /** The steps of the log at {@code log}, in file order. */
  public static List<StepResult> read(Path log) throws IOException {
    return parse(Files.readAllLines(log, StandardCharsets.UTF_8));
  }

  /** The steps among {@code lines}, in order; see the class comment for what is skipped. */
  public static List<StepResult> parse(List<String> lines) {
    return parseAll(lines).steps();
  }

  /**
   * Everything a log holds.
   *
   * @param steps the steps, in file order
   * @param traffic the offload figures of the steps whose lines have them, in file order (empty without offload)
   * @param summary the last summary line, or null when there is none (an older log, or a run that did not end)
   */
  public record Contents(List<StepResult> steps, List<StepTraffic> traffic, RunSummary summary) {
    public Contents {
      steps = List.copyOf(steps);
      traffic = List.copyOf(traffic);
    }
  }

  /** The steps, their offload figures and the summary of the log at {@code log}. */
  public static Contents readAll(Path log) throws IOException {
    return parseAll(Files.readAllLines(log, StandardCharsets.UTF_8));
  }

  /** The steps, their offload figures and the summary among {@code lines}; see the class comment for what is skipped. */
  public static Contents parseAll(List<String> lines) {
    List<StepResult> steps = new ArrayList<>();
    List<StepTraffic> traffic = new ArrayList<>();
    RunSummary summary = null;
    for (String line : lines) {
      JsonObject o = object(line);
      if (o == null) continue;
      StepResult r = step(o);
      if (r != null) {
        steps.add(r);
        StepTraffic t = traffic(r.step(), o);
        if (t != null) traffic.add(t);
        continue;
      }
      try {
        RunSummary s = RunSummary.parse(o);
        if (s != null) summary = s;
      } catch (RuntimeException e) {  // a field of the wrong type
        // not a usable summary: skipped like any other damaged line
      }
    }
    return new Contents(steps, traffic, summary);
  }

  /** One log line as a step result, or null when it is not a complete step line. */
  static StepResult parseLine(String line) {
    JsonObject o = object(line);
    return o == null ? null : step(o);
  }

  /** A line as a JSON object, or null when it is not one (blank, cut short, not JSON). */
  private static JsonObject object(String line) {
    String t = line.strip();
    if (!t.startsWith("{") || !t.endsWith("}")) return null;
    try {
      JsonReader reader = new JsonReader(new StringReader(t));
      reader.setStrictness(Strictness.LENIENT);  // NaN, Infinity
      JsonElement e = com.google.gson.JsonParser.parseReader(reader);
      return e.isJsonObject() ? e.getAsJsonObject() : null;
    } catch (JsonParseException | IllegalStateException e) {
      return null;
    }
  }

  private static StepTraffic traffic(long step, JsonObject o) {
    try {
      return StepTraffic.parse(step, o);
    } catch (RuntimeException e) {  // a field of the wrong type: the step stands, its figures do not
      return null;
    }
  }

  /** A parsed line as a step result, or null when it is not a step line. */
  private static StepResult step(JsonObject o) {
    try {
      if (!o.has("step") || !o.has("loss") || o.has("summary")) return null;
      return new StepResult(o.get("step").getAsLong(), number(o, "loss"), number(o, "lr"), number(o, "grad_norm"),
          o.has("tokens") ? o.get("tokens").getAsLong() : 0, o.has("step_ms") ? number(o, "step_ms") / 1e3 : 0);
    } catch (RuntimeException e) {  // a field of the wrong type
      return null;
    }
  }

  private static float number(JsonObject o, String key) {
    JsonElement e = o.get(key);
    return e == null || e.isJsonNull() ? Float.NaN : e.getAsFloat();
  }

  /**
   * The smoothing span, in steps, of the loss of a run of {@code n} steps (charts and report): a fiftieth of the
   * steps, at least 5 and at most 1000.
   */
  public static int smoothingSpan(int n) {
    return (int) Math.clamp(Math.round(n / 50.0), 5, 1000);
  }

  /**
   * Exponential moving average {@code s = s + alpha (x - s)}, starting at the first finite value; a non-finite input
   * gives NaN at its place and does not move the average. The charts use {@code alpha = 2 / (span + 1)}.
   */
  public static double[] ema(double[] y, double alpha) {
    double[] out = new double[y.length];
    double s = Double.NaN;
    for (int i = 0; i < y.length; i++) {
      if (Double.isFinite(y[i])) {
        s = Double.isNaN(s) ? y[i] : s + alpha * (y[i] - s);
        out[i] = s;
      } else {
        out[i] = Double.NaN;
      }
    }
    return out;
  }
}

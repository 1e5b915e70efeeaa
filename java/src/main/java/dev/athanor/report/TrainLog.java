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
 * <p>Lenient where a log can be imperfect: lines that are blank, cut short by a crash, not JSON, or not a step
 * (no {@code loss}) are skipped; {@code null} (what {@link StepResult#toJson()} writes for a value that is not
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
    List<StepResult> steps = new ArrayList<>();
    for (String line : lines) {
      StepResult r = parseLine(line);
      if (r != null) steps.add(r);
    }
    return steps;
  }

  /** One log line as a step result, or null when it is not a complete step line. */
  static StepResult parseLine(String line) {
    String t = line.strip();
    if (!t.startsWith("{") || !t.endsWith("}")) return null;
    JsonObject o;
    try {
      JsonReader reader = new JsonReader(new StringReader(t));
      reader.setStrictness(Strictness.LENIENT);  // NaN, Infinity
      JsonElement e = com.google.gson.JsonParser.parseReader(reader);
      if (!e.isJsonObject()) return null;
      o = e.getAsJsonObject();
    } catch (JsonParseException | IllegalStateException e) {
      return null;
    }
    try {
      if (!o.has("step") || !o.has("loss")) return null;
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

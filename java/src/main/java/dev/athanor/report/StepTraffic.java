package dev.athanor.report;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.athanor.offload.TransferStats;
import dev.athanor.train.StepResult;

/**
 * The offload figures of one training step, as {@code train} writes them into the step's {@code --log} line when the
 * run keeps anything on DISK: bytes read from DISK into host memory ({@code disk_read_bytes}), bytes written from host
 * memory to DISK ({@code disk_write_bytes}), the time the computation waited for data ({@code stall_ms}), and the
 * share of the transfer time hidden behind computation ({@code overlap}, {@link TransferStats.Snapshot#overlap()}).
 *
 * @param step the 0-based step index
 * @param diskReadBytes bytes moved from DISK to host memory in the step
 * @param diskWriteBytes bytes moved from host memory to DISK in the step
 * @param stallMs milliseconds the computing thread waited for transfers (resolution 1 microsecond)
 * @param overlap within [0, 1]; 1 when nothing was transferred
 */
public record StepTraffic(long step, long diskReadBytes, long diskWriteBytes, double stallMs, double overlap) {
  /** The figures of step {@code step} from {@code moved}, the difference of the transfer totals after and before it. */
  public static StepTraffic of(long step, TransferStats.Snapshot moved) {
    return new StepTraffic(step, moved.diskToHost(), moved.hostToDisk(), millis(moved.stallNanos()), moved.overlap());
  }

  /** {@code r}'s log line ({@link StepResult#toJson()}) with these figures added before its closing brace: one JSON object. */
  public String appendTo(StepResult r) {
    String base = r.toJson();
    return base.substring(0, base.length() - 1) + fields(diskReadBytes, diskWriteBytes, stallMs, overlap) + "}";
  }

  /** The offload members of a log line, each after a comma (the summary line has the same ones). */
  static String fields(long read, long written, double stallMs, double overlap) {
    return ",\"disk_read_bytes\":" + read + ",\"disk_write_bytes\":" + written + ",\"stall_ms\":" + rounded(stallMs, 1e3)
        + ",\"overlap\":" + rounded(overlap, 1e4);
  }

  /** Nanoseconds as milliseconds, rounded to the microsecond. */
  static double millis(long nanos) {
    return Math.round(nanos / 1e3) / 1e3;
  }

  private static String rounded(double v, double scale) {
    return Double.isFinite(v) ? Double.toString(Math.round(v * scale) / scale) : "null";
  }

  /** The figures of a parsed step line, or null when it has none (a run without offload, or an older log). */
  static StepTraffic parse(long step, JsonObject o) {
    if (!o.has("disk_read_bytes") || !o.has("disk_write_bytes")) return null;
    return new StepTraffic(step, o.get("disk_read_bytes").getAsLong(), o.get("disk_write_bytes").getAsLong(),
        number(o, "stall_ms"), number(o, "overlap"));
  }

  /** A number member, NaN when absent or null. */
  static double number(JsonObject o, String key) {
    JsonElement e = o.get(key);
    return e == null || e.isJsonNull() ? Double.NaN : e.getAsDouble();
  }
}

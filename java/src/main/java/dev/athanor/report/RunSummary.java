package dev.athanor.report;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.offload.TransferStats;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Map;

/**
 * The last line of a {@code train} log: {@code {"summary":true,"steps":N,"peak_bytes":{"DEVICE":..,"HOST_PINNED":..,
 * "HOST":..,"DISK":..},"disk_read_bytes":..,"disk_write_bytes":..,"stall_ms":..,"overlap":..}}. It covers the steps
 * the process that wrote it ran (after a resume, those since the checkpoint; a resumed run drops the old summary line).
 * Without offload the DISK traffic and stall are 0 and the overlap 1.
 *
 * @param steps steps the run ran
 * @param peakBytes the allocator's highest live bytes per tier over those steps ({@link MemoryManager#peakBytes}); every
 *     tier, in {@link Tier} order
 * @param diskReadBytes bytes read from DISK into host memory over those steps
 * @param diskWriteBytes bytes written from host memory to DISK over those steps
 * @param stallMs milliseconds the computation waited for transfers
 * @param overlap the share of the transfer time hidden behind computation ({@link TransferStats.Snapshot#overlap()})
 */
public record RunSummary(long steps, Map<Tier, Long> peakBytes, long diskReadBytes, long diskWriteBytes, double stallMs,
    double overlap) {
  public RunSummary {
    EnumMap<Tier, Long> p = new EnumMap<>(Tier.class);
    for (Tier t : Tier.values()) p.put(t, peakBytes.getOrDefault(t, 0L));
    peakBytes = Collections.unmodifiableMap(p);
  }

  /** The summary of {@code steps} steps: the peaks of {@code memory}, and {@code moved}, the traffic over them. */
  public static RunSummary of(long steps, MemoryManager memory, TransferStats.Snapshot moved) {
    EnumMap<Tier, Long> peaks = new EnumMap<>(Tier.class);
    for (Tier t : Tier.values()) peaks.put(t, memory.peakBytes(t));
    return new RunSummary(steps, peaks, moved.diskToHost(), moved.hostToDisk(), StepTraffic.millis(moved.stallNanos()),
        moved.overlap());
  }

  /** Whether anything moved to or from DISK. */
  public boolean offloaded() {
    return diskReadBytes > 0 || diskWriteBytes > 0;
  }

  /** The log line: one JSON object, no newline. */
  public String toJson() {
    StringBuilder b = new StringBuilder("{\"summary\":true,\"steps\":").append(steps).append(",\"peak_bytes\":{");
    String sep = "";
    for (Map.Entry<Tier, Long> e : peakBytes.entrySet()) {
      b.append(sep).append('"').append(e.getKey().name()).append("\":").append(e.getValue());
      sep = ",";
    }
    return b.append('}').append(StepTraffic.fields(diskReadBytes, diskWriteBytes, stallMs, overlap)).append('}').toString();
  }

  /** Whether {@code line} is a summary line (as written by {@link #toJson()}; cheap, without parsing). */
  public static boolean isSummaryLine(String line) {
    return line.startsWith("{\"summary\":");
  }

  /** The summary of a parsed log line, or null when it is not one. */
  static RunSummary parse(JsonObject o) {
    JsonElement flag = o.get("summary");
    if (flag == null || !flag.isJsonPrimitive() || !flag.getAsJsonPrimitive().isBoolean() || !flag.getAsBoolean()) return null;
    EnumMap<Tier, Long> peaks = new EnumMap<>(Tier.class);
    if (o.has("peak_bytes") && o.get("peak_bytes").isJsonObject()) {
      for (Map.Entry<String, JsonElement> e : o.getAsJsonObject("peak_bytes").entrySet()) {
        for (Tier t : Tier.values()) if (t.name().equals(e.getKey())) peaks.put(t, e.getValue().getAsLong());
      }
    }
    return new RunSummary(o.has("steps") ? o.get("steps").getAsLong() : 0, peaks,
        o.has("disk_read_bytes") ? o.get("disk_read_bytes").getAsLong() : 0,
        o.has("disk_write_bytes") ? o.get("disk_write_bytes").getAsLong() : 0, StepTraffic.number(o, "stall_ms"),
        StepTraffic.number(o, "overlap"));
  }
}

package dev.athanor.runtime;

import java.util.Locale;
import java.util.Objects;

/**
 * Where a tensor's data is computed on: the CPU ({@code index == 0}) or one CUDA device.
 * String form: "cpu", "cuda:0", "cuda:1", ...
 */
public record Device(DeviceKind kind, int index) {
  public static final Device CPU = new Device(DeviceKind.CPU, 0);

  public Device {
    Objects.requireNonNull(kind, "kind");
    if (kind == DeviceKind.CPU && index != 0) {
      throw new IllegalArgumentException("cpu device index must be 0, got " + index);
    }
    if (index < 0) {
      throw new IllegalArgumentException("device index must be >= 0, got " + index + " for " + kind);
    }
  }

  /** CUDA device {@code index} (not checked against the devices present; see {@link Cuda#deviceCount()}). */
  public static Device cuda(int index) {
    return new Device(DeviceKind.CUDA, index);
  }

  /** Parses "cpu", "cuda" (= cuda:0) or "cuda:N", case-insensitive. */
  public static Device parse(String text) {
    Objects.requireNonNull(text, "text");
    String s = text.trim().toLowerCase(Locale.ROOT);
    if (s.equals("cpu")) return CPU;
    if (s.equals("cuda")) return cuda(0);
    if (s.startsWith("cuda:")) {
      String n = s.substring(5);
      try {
        int index = Integer.parseInt(n);
        if (index >= 0) return cuda(index);
      } catch (NumberFormatException e) {
        // fall through to the error below
      }
    }
    throw new IllegalArgumentException("cannot parse device '" + text + "': expected cpu, cuda or cuda:N with N >= 0");
  }

  public boolean isCuda() {
    return kind == DeviceKind.CUDA;
  }

  public boolean isCpu() {
    return kind == DeviceKind.CPU;
  }

  @Override
  public String toString() {
    return kind == DeviceKind.CPU ? "cpu" : "cuda:" + index;
  }
}

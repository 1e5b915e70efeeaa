package dev.athanor.memory;

import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * What the machine has, as opposed to what a budget allows: host memory from Linux's {@code /proc/meminfo}, and the
 * free memory of a CUDA device as its driver reports it.
 */
public final class SystemMemory {
  private static final Path MEMINFO = Path.of("/proc/meminfo");

  private SystemMemory() {}

  /**
   * {@code MemAvailable} of {@code /proc/meminfo} in bytes: what new allocations can get without swapping (free
   * memory plus reclaimable caches); -1 when unknown (not Linux, or unreadable).
   */
  public static long hostAvailableBytes() {
    return meminfo("MemAvailable");
  }

  /** {@code MemTotal} of {@code /proc/meminfo} in bytes; -1 when unknown. */
  public static long hostTotalBytes() {
    return meminfo("MemTotal");
  }

  /** Free bytes of a CUDA device as the driver reports them (cudaMemGetInfo); -1 for the CPU or when CUDA fails. */
  public static long deviceFreeBytes(Device device) {
    if (!device.isCuda()) return -1;
    try {
      return Cuda.memoryInfo(device.index())[0];
    } catch (RuntimeException e) {
      return -1;
    }
  }

  private static long meminfo(String key) {
    try {
      return parseMeminfo(Files.readAllLines(MEMINFO, StandardCharsets.US_ASCII), key);
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }

  /** The value of {@code key} in {@code /proc/meminfo} lines ("MemAvailable:   23965356 kB") in bytes, or -1. */
  static long parseMeminfo(List<String> lines, String key) {
    for (String line : lines) {
      if (!line.startsWith(key + ":")) continue;
      String[] f = line.substring(key.length() + 1).trim().split("\\s+");
      try {
        long v = Long.parseLong(f[0]);
        return f.length > 1 && f[1].equalsIgnoreCase("kB") ? Math.multiplyExact(v, 1024L) : v;
      } catch (NumberFormatException | ArithmeticException e) {
        return -1;
      }
    }
    return -1;
  }
}

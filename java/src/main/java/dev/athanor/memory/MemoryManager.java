package dev.athanor.memory;

import dev.athanor.runtime.Device;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Budgets and live/peak byte accounting per memory tier, and per CUDA device for {@link Tier#DEVICE}.
 *
 * <p>Budgets come from the system properties {@code athanor.budget.device}, {@code athanor.budget.host_pinned},
 * {@code athanor.budget.host} and {@code athanor.budget.disk} ("8g", "512m", "64k", a byte count, or
 * "unlimited", the default) and can be changed at run time with {@link #setBudget}. The DEVICE budget applies
 * to each device separately. Storage reserves its bytes here before allocating natively and returns them
 * when freed; a reservation beyond the budget first asks the registered {@link Reclaimer}s to free memory,
 * then fails with {@link OutOfBudgetException}.
 *
 * <p>DISK-tier files live in {@link #diskDirectory()}: the system property {@code athanor.disk.dir}, or
 * {@code <java.io.tmpdir>/athanor-disk-<pid>} (created on first use, removed at exit when empty).
 */
public final class MemoryManager {
  /** Budget value meaning "no limit". */
  public static final long UNLIMITED = Long.MAX_VALUE;
  public static final String DISK_DIR_PROPERTY = "athanor.disk.dir";

  private static final MemoryManager GLOBAL = new MemoryManager();

  /** Frees memory on request, e.g. a cache or an offload planner evicting tensors. */
  @FunctionalInterface
  public interface Reclaimer {
    /**
     * Tries to free at least {@code bytesNeeded} bytes in {@code tier} (on {@code device} for DEVICE);
     * returns the bytes actually freed (0 when nothing could be freed). Must not allocate in that tier.
     */
    long reclaim(Tier tier, Device device, long bytesNeeded);
  }

  private static final class Account {
    final AtomicLong live = new AtomicLong();
    final AtomicLong peak = new AtomicLong();
  }

  private final EnumMap<Tier, AtomicLong> budgets = new EnumMap<>(Tier.class);
  private final EnumMap<Tier, Account> tiers = new EnumMap<>(Tier.class);
  private final ConcurrentHashMap<Integer, Account> devices = new ConcurrentHashMap<>();
  private final List<Reclaimer> reclaimers = new CopyOnWriteArrayList<>();
  private final AtomicLong leaks = new AtomicLong();
  private final AtomicLong allocations = new AtomicLong();
  private volatile Path diskDir;
  private String configError;

  private MemoryManager() {
    for (Tier t : Tier.values()) {
      tiers.put(t, new Account());
      String prop = "athanor.budget." + t.propertyName();
      String v = System.getProperty(prop);
      long budget = UNLIMITED;
      if (v != null && !v.isBlank()) {
        try {
          budget = parseBytes(v);
        } catch (IllegalArgumentException e) {
          // Reported by every global() call rather than as an ExceptionInInitializerError once.
          configError = "-D" + prop + "=" + v + ": " + e.getMessage();
        }
      }
      budgets.put(t, new AtomicLong(budget));
    }
  }

  /** The process-wide manager. */
  public static MemoryManager global() {
    if (GLOBAL.configError != null) throw new IllegalArgumentException("bad memory budget: " + GLOBAL.configError);
    return GLOBAL;
  }

  // ------------------------------------------------------------------ budgets
  /** Budget of a tier in bytes ({@link #UNLIMITED} when none). For DEVICE it is per device. */
  public long budgetBytes(Tier tier) {
    return budgets.get(tier).get();
  }

  /** Sets a tier's budget (bytes >= 0, or {@link #UNLIMITED}). Live allocations are not affected. */
  public void setBudget(Tier tier, long bytes) {
    if (bytes < 0) throw new IllegalArgumentException("budget for " + tier + " must be >= 0, got " + bytes);
    budgets.get(tier).set(bytes);
  }

  /** Sets a tier's budget from text such as "8g", "512m" or "unlimited". */
  public void setBudget(Tier tier, String size) {
    setBudget(tier, parseBytes(size));
  }

  // ------------------------------------------------------------------ accounting
  /** Bytes currently allocated in a tier (DEVICE: summed over devices). */
  public long liveBytes(Tier tier) {
    return tiers.get(tier).live.get();
  }

  /** Highest {@link #liveBytes(Tier)} since start or the last {@link #resetPeak()}. */
  public long peakBytes(Tier tier) {
    return tiers.get(tier).peak.get();
  }

  /** Bytes currently allocated on one CUDA device (0 for the CPU device). */
  public long liveBytes(Device device) {
    Account a = device.isCuda() ? devices.get(device.index()) : null;
    return a == null ? 0 : a.live.get();
  }

  public long peakBytes(Device device) {
    Account a = device.isCuda() ? devices.get(device.index()) : null;
    return a == null ? 0 : a.peak.get();
  }

  /** Resets every peak to the current live value. */
  public void resetPeak() {
    for (Account a : tiers.values()) a.peak.set(a.live.get());
    for (Account a : devices.values()) a.peak.set(a.live.get());
  }

  /** Storages freed by the Cleaner because nobody closed them (each is also logged as a warning). */
  public long leakCount() {
    return leaks.get();
  }

  /** Number of successful allocations since start (all tiers). */
  public long allocationCount() {
    return allocations.get();
  }

  /** Registers a reclaimer asked to free memory before an allocation fails. */
  public void addReclaimer(Reclaimer r) {
    reclaimers.add(java.util.Objects.requireNonNull(r, "reclaimer"));
  }

  public void removeReclaimer(Reclaimer r) {
    reclaimers.remove(r);
  }

  /** Asks the reclaimers to free {@code bytes}; returns the bytes they report freed. */
  long reclaim(Tier tier, Device device, long bytes) {
    long freed = 0;
    for (Reclaimer r : reclaimers) {
      if (freed >= bytes) break;
      freed += Math.max(0, r.reclaim(tier, device, bytes - freed));
    }
    return freed;
  }

  /**
   * Accounts {@code bytes} in {@code tier} (and on {@code device} for DEVICE), or throws
   * {@link OutOfBudgetException} when that would exceed the budget even after asking the reclaimers once.
   */
  void reserve(Tier tier, Device device, long bytes) {
    if (tryReserve(tier, device, bytes)) return;
    reclaim(tier, device, bytes);
    if (tryReserve(tier, device, bytes)) return;
    long live = tier == Tier.DEVICE ? liveBytes(device) : liveBytes(tier);
    throw new OutOfBudgetException(tier, device, bytes, budgetBytes(tier), live);
  }

  private boolean tryReserve(Tier tier, Device device, long bytes) {
    long budget = budgetBytes(tier);
    Account a = tier == Tier.DEVICE ? deviceAccount(device) : tiers.get(tier);
    long cur;
    do {
      cur = a.live.get();
      if (bytes > budget || cur > budget - bytes) return false;
    } while (!a.live.compareAndSet(cur, cur + bytes));
    a.peak.accumulateAndGet(cur + bytes, Math::max);
    if (tier == Tier.DEVICE) {
      Account t = tiers.get(tier);
      long now = t.live.addAndGet(bytes);
      t.peak.accumulateAndGet(now, Math::max);
    }
    allocations.incrementAndGet();
    return true;
  }

  /** Returns bytes reserved with {@link #reserve}. */
  void release(Tier tier, Device device, long bytes) {
    if (tier == Tier.DEVICE) deviceAccount(device).live.addAndGet(-bytes);
    tiers.get(tier).live.addAndGet(-bytes);
  }

  void countLeak() {
    leaks.incrementAndGet();
  }

  private Account deviceAccount(Device device) {
    return devices.computeIfAbsent(device.index(), i -> new Account());
  }

  // ------------------------------------------------------------------ disk
  /** Directory of the DISK tier's files (created on first call). */
  public Path diskDirectory() {
    Path d = diskDir;
    if (d != null) return d;
    synchronized (this) {
      if (diskDir == null) {
        String prop = System.getProperty(DISK_DIR_PROPERTY);
        boolean ours = prop == null || prop.isBlank();
        Path dir = ours
            ? Path.of(System.getProperty("java.io.tmpdir"), "athanor-disk-" + ProcessHandle.current().pid())
            : Path.of(prop);
        try {
          Files.createDirectories(dir);
        } catch (IOException e) {
          throw new UncheckedIOException("cannot create the DISK tier directory " + dir.toAbsolutePath()
              + " (set -D" + DISK_DIR_PROPERTY + "=<dir>): " + e, e);
        }
        if (ours) dir.toFile().deleteOnExit(); // removed at exit if every file in it was closed
        diskDir = dir.toAbsolutePath();
      }
      return diskDir;
    }
  }

  // ------------------------------------------------------------------ sizes
  /** Parses "123", "64k", "512m", "8g", "1t" (binary units, optional trailing 'b'/"ib") or "unlimited". */
  public static long parseBytes(String text) {
    if (text == null) throw new IllegalArgumentException("size is null");
    String s = text.trim().toLowerCase(Locale.ROOT);
    if (s.equals("unlimited") || s.equals("inf") || s.equals("none")) return UNLIMITED;
    if (s.endsWith("ib")) s = s.substring(0, s.length() - 2);
    else if (s.endsWith("b")) s = s.substring(0, s.length() - 1);
    long mul = 1;
    if (!s.isEmpty()) {
      switch (s.charAt(s.length() - 1)) {
        case 'k' -> mul = 1L << 10;
        case 'm' -> mul = 1L << 20;
        case 'g' -> mul = 1L << 30;
        case 't' -> mul = 1L << 40;
        default -> mul = 1;
      }
      if (mul != 1) s = s.substring(0, s.length() - 1).trim();
    }
    try {
      double v = Double.parseDouble(s);
      if (v < 0 || Double.isNaN(v) || v * mul >= 0x1p63) throw new NumberFormatException();
      return (long) Math.floor(v * mul);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("cannot parse size '" + text + "': expected e.g. 123, 64k, 512m, 8g or unlimited");
    }
  }

  /** "1.5 MiB (1572864 bytes)", or "unlimited". */
  public static String formatBytes(long bytes) {
    if (bytes == UNLIMITED) return "unlimited";
    String[] units = {"KiB", "MiB", "GiB", "TiB"};
    double v = bytes;
    int u = -1;
    while (Math.abs(v) >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    String human = u < 0 ? bytes + " B" : String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    return u < 0 ? human : human + " (" + bytes + " bytes)";
  }

  /** A multi-line summary: per tier budget, live and peak; per device live and peak. */
  public String report() {
    StringBuilder sb = new StringBuilder("memory tiers:\n");
    for (Tier t : Tier.values()) {
      sb.append(String.format(Locale.ROOT, "  %-11s live %s, peak %s, budget %s%n", t, formatBytes(liveBytes(t)),
          formatBytes(peakBytes(t)), formatBytes(budgetBytes(t))));
    }
    Map<Integer, Account> sorted = new TreeMap<>(devices);
    for (Map.Entry<Integer, Account> e : sorted.entrySet()) {
      sb.append(String.format(Locale.ROOT, "  cuda:%d     live %s, peak %s%n", e.getKey(),
          formatBytes(e.getValue().live.get()), formatBytes(e.getValue().peak.get())));
    }
    if (leaks.get() > 0) sb.append("  leaked storages freed by the Cleaner: ").append(leaks.get()).append('\n');
    return sb.toString();
  }

  @Override
  public String toString() {
    return report();
  }
}

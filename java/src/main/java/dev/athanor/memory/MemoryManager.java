package dev.athanor.memory;

import dev.athanor.runtime.Device;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collection;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.ToLongFunction;

/**
 * Budgets and live/peak byte accounting per memory tier, and per CUDA device for {@link Tier#DEVICE}; the caching
 * allocators of DEVICE and HOST_PINNED memory.
 *
 * <p>Budgets come from the system properties {@code athanor.budget.device}, {@code athanor.budget.host_pinned},
 * {@code athanor.budget.host} and {@code athanor.budget.disk} ("8g", "512m", "64k", a byte count, or
 * "unlimited") and can be changed at run time with {@link #setBudget}. The DEVICE budget applies to each device
 * separately. <b>Defaults:</b> HOST follows the machine: {@value #DEFAULT_HOST_PERCENT}% of the host memory available
 * when the manager starts ({@code MemAvailable} in {@code /proc/meminfo}, less the room the Java heap may still grow
 * into; unlimited where that cannot be read); the
 * other tiers are unlimited (DEVICE memory is limited by the device itself, whose allocations fail cleanly). A value
 * that is not a size, or an {@code athanor.budget.*} property that names no tier (a misspelling), is a configuration
 * error: {@link #global()} throws it, naming the property, and {@link #configurationError()} gives it without
 * throwing.
 *
 * <p><b>Live and reserved bytes.</b> {@link #liveBytes} counts the bytes of storages in use (what they asked
 * for). HOST and DISK allocate natively per storage, so their budget applies to the live bytes: a reservation
 * beyond it first asks the registered {@link Reclaimer}s to free memory, then fails with
 * {@link OutOfBudgetException}. DEVICE and HOST_PINNED memory comes from a {@link CachingAllocator} per device
 * (freed blocks are cached and reused without a native call, see there for the rules); their budget applies to
 * the {@link #reservedBytes} (blocks in use, rounded up to 512 bytes, plus {@link #cachedBytes}), and scratch
 * arenas and staging buffers are such blocks too. {@link #nativeAllocations} counts the native allocations per
 * tier, so "no allocation inside a step after warm-up" is a test. {@link #emptyCache()} frees the caches.
 *
 * <p>DISK-tier files live in {@link #diskDirectory()}: the system property {@code athanor.disk.dir}, or
 * {@code <java.io.tmpdir>/athanor-disk-<pid>} (created on first use, removed at exit when empty).
 */
public final class MemoryManager {
  /** Budget value meaning "no limit". */
  public static final long UNLIMITED = Long.MAX_VALUE;
  public static final String DISK_DIR_PROPERTY = "athanor.disk.dir";
  /** The prefix of the budget properties: {@code athanor.budget.<tier>} with {@link Tier#propertyName()}. */
  public static final String BUDGET_PROPERTY_PREFIX = "athanor.budget.";
  /** The default HOST budget, in percent of the host memory available at start. */
  public static final int DEFAULT_HOST_PERCENT = 90;

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
    final AtomicLong nativeAllocations = new AtomicLong(); // uncached tiers
    final AtomicLong nativeFrees = new AtomicLong();
  }

  private final EnumMap<Tier, AtomicLong> budgets = new EnumMap<>(Tier.class);
  private final EnumMap<Tier, Account> tiers = new EnumMap<>(Tier.class);
  private final ConcurrentHashMap<Integer, Account> devices = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<Integer, CachingAllocator> deviceAllocators = new ConcurrentHashMap<>();
  private volatile CachingAllocator pinnedAllocator;
  private final List<Reclaimer> reclaimers = new CopyOnWriteArrayList<>();
  private final AtomicLong leaks = new AtomicLong();
  private final AtomicLong allocations = new AtomicLong();
  private volatile Path diskDir;
  private String configError;

  private MemoryManager() {
    this(true);
  }

  /** A manager with the budgets of the system properties and the defaults, or (for tests) all unlimited. */
  MemoryManager(boolean fromProperties) {
    for (Tier t : Tier.values()) {
      tiers.put(t, new Account());
      String prop = BUDGET_PROPERTY_PREFIX + t.propertyName();
      String v = fromProperties ? System.getProperty(prop) : null;
      long budget = fromProperties ? defaultBudget(t) : UNLIMITED;
      if (v != null && !v.isBlank()) {
        try {
          budget = parseBytes(v);
        } catch (IllegalArgumentException e) {
          // Reported by every global() call rather than as an ExceptionInInitializerError once.
          if (configError == null) {
            configError = "-D" + prop + "=" + v + " is not a size: expected a byte count with an optional binary unit "
                + "(123, 64k, 512m, 8g, 1t) or unlimited";
          }
        }
      }
      budgets.put(t, new AtomicLong(budget));
    }
    if (fromProperties && configError == null) configError = unknownBudgetProperty(System.getProperties().stringPropertyNames());
  }

  /**
   * The default budget of a tier: for HOST {@value #DEFAULT_HOST_PERCENT}% of the host memory available now
   * ({@link SystemMemory#hostAvailableBytes()}) less the room the Java heap may still grow into (up to its
   * {@code -Xmx}), unlimited when that is unknown; unlimited for the other tiers.
   */
  public static long defaultBudget(Tier tier) {
    if (tier != Tier.HOST) return UNLIMITED;
    long available = SystemMemory.hostAvailableBytes();
    if (available < 0) return UNLIMITED;
    Runtime rt = Runtime.getRuntime();
    long heapGrowth = rt.maxMemory() == Long.MAX_VALUE ? 0 : Math.max(0, rt.maxMemory() - rt.totalMemory());
    return Math.max(0, available - heapGrowth) / 100 * DEFAULT_HOST_PERCENT;
  }

  /**
   * The error for the first {@code athanor.budget.*} name among {@code propertyNames} that names no tier (with the
   * closest valid name when one is close), or null when there is none.
   */
  static String unknownBudgetProperty(Collection<String> propertyNames) {
    List<String> valid = Arrays.stream(Tier.values()).map(t -> BUDGET_PROPERTY_PREFIX + t.propertyName()).toList();
    for (String name : new TreeSet<>(propertyNames)) {
      if (!name.startsWith(BUDGET_PROPERTY_PREFIX) || valid.contains(name)) continue;
      String closest = null;
      int best = 3;  // at most two edits away
      for (String v : valid) {
        int d = editDistance(name, v);
        if (d < best) {
          best = d;
          closest = v;
        }
      }
      return "unknown memory budget property -D" + name + (closest == null ? "" : " (did you mean -D" + closest + "?)")
          + "; the budget properties are " + String.join(", ", valid);
    }
    return null;
  }

  /** Levenshtein distance of two short strings. */
  private static int editDistance(String a, String b) {
    int[] prev = new int[b.length() + 1], cur = new int[b.length() + 1];
    for (int j = 0; j <= b.length(); j++) prev[j] = j;
    for (int i = 1; i <= a.length(); i++) {
      cur[0] = i;
      for (int j = 1; j <= b.length(); j++) {
        int sub = prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
        cur[j] = Math.min(sub, Math.min(prev[j], cur[j - 1]) + 1);
      }
      int[] t = prev;
      prev = cur;
      cur = t;
    }
    return prev[b.length()];
  }

  /** The process-wide manager; throws {@link IllegalArgumentException} with {@link #configurationError()}. */
  public static MemoryManager global() {
    if (GLOBAL.configError != null) throw new IllegalArgumentException(GLOBAL.configError);
    return GLOBAL;
  }

  /**
   * What is wrong with the budget properties (a value that is not a size, or a property that names no tier), in one
   * line naming the property; null when nothing is.
   */
  public static String configurationError() {
    return GLOBAL.configError;
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
  /** Bytes of the storages in use in a tier (DEVICE: summed over devices). */
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

  /** Live bytes of {@code tier}, on {@code device} for DEVICE. */
  long liveBytes(Tier tier, Device device) {
    return tier == Tier.DEVICE ? liveBytes(device) : liveBytes(tier);
  }

  /**
   * Bytes held natively in a tier: for DEVICE (summed over devices) and HOST_PINNED the blocks in use and cached
   * by the caching allocators, which is what their budgets limit; for HOST and DISK the live bytes.
   */
  public long reservedBytes(Tier tier) {
    return ofAllocators(tier, CachingAllocator::reservedBytes, liveBytes(tier));
  }

  /** {@link #reservedBytes(Tier)} of one CUDA device (0 for the CPU device). */
  public long reservedBytes(Device device) {
    return ofDevice(device, CachingAllocator::reservedBytes);
  }

  /** Bytes of freed blocks kept for reuse in a tier (0 for HOST and DISK, which are not cached). */
  public long cachedBytes(Tier tier) {
    return ofAllocators(tier, CachingAllocator::cachedBytes, 0);
  }

  /** {@link #cachedBytes(Tier)} of one CUDA device. */
  public long cachedBytes(Device device) {
    return ofDevice(device, CachingAllocator::cachedBytes);
  }

  /** Native allocations made for a tier since start (cudaMalloc, cudaHostAlloc, host malloc, files). */
  public long nativeAllocations(Tier tier) {
    return ofAllocators(tier, CachingAllocator::nativeAllocations, tiers.get(tier).nativeAllocations.get());
  }

  /** Native frees made for a tier since start. */
  public long nativeFrees(Tier tier) {
    return ofAllocators(tier, CachingAllocator::nativeFrees, tiers.get(tier).nativeFrees.get());
  }

  /** A count of the caching allocators of a cached tier (summed over devices), else {@code uncached}. */
  private long ofAllocators(Tier tier, ToLongFunction<CachingAllocator> count, long uncached) {
    return switch (tier) {
      case DEVICE -> deviceAllocators.values().stream().mapToLong(count).sum();
      case HOST_PINNED -> pinnedAllocator == null ? 0 : count.applyAsLong(pinnedAllocator);
      default -> uncached;
    };
  }

  private long ofDevice(Device device, ToLongFunction<CachingAllocator> count) {
    CachingAllocator a = device.isCuda() ? deviceAllocators.get(device.index()) : null;
    return a == null ? 0 : count.applyAsLong(a);
  }

  /** Frees every cached block of every caching allocator (waits for the devices first); returns the bytes freed. */
  public long emptyCache() {
    long freed = 0;
    for (CachingAllocator a : deviceAllocators.values()) freed += a.emptyCache();
    CachingAllocator p = pinnedAllocator;
    if (p != null) freed += p.emptyCache();
    return freed;
  }

  /** The caching allocator of DEVICE memory of a CUDA device, or of HOST_PINNED memory. */
  CachingAllocator allocator(Tier tier, Device device) {
    if (tier == Tier.DEVICE) {
      return deviceAllocators.computeIfAbsent(device.index(),
          i -> new CachingAllocator(Tier.DEVICE, device, new NativeMemory.CudaDevice(device), this));
    }
    if (tier != Tier.HOST_PINNED) throw new IllegalArgumentException(tier + " memory is not cached");
    CachingAllocator p = pinnedAllocator;
    if (p == null) {
      synchronized (this) {
        if (pinnedAllocator == null) {
          pinnedAllocator = new CachingAllocator(Tier.HOST_PINNED, Device.CPU, new NativeMemory.PinnedHost(), this);
        }
        p = pinnedAllocator;
      }
    }
    return p;
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
   * Accounts {@code bytes} in {@code tier} (and on {@code device} for DEVICE) as live, or throws
   * {@link OutOfBudgetException} when that would exceed the budget even after asking the reclaimers once. The caller
   * then allocates natively and calls {@link #commit} when that worked, {@link #cancel} when it failed.
   */
  void reserve(Tier tier, Device device, long bytes) {
    if (tryReserve(tier, device, bytes, true)) return;
    reclaim(tier, device, bytes);
    if (tryReserve(tier, device, bytes, true)) return;
    throw new OutOfBudgetException(tier, device, bytes, budgetBytes(tier), liveBytes(tier, device));
  }

  /** A {@link #reserve}d native allocation succeeded: counts it and updates the peaks. */
  void commit(Tier tier, Device device, long bytes) {
    Account a = tier == Tier.DEVICE ? deviceAccount(device) : tiers.get(tier);
    a.peak.accumulateAndGet(a.live.get(), Math::max);
    if (tier == Tier.DEVICE) {
      Account t = tiers.get(tier);
      t.peak.accumulateAndGet(t.live.get(), Math::max);
    }
    allocations.incrementAndGet();
    if (tier == Tier.HOST || tier == Tier.DISK) tiers.get(tier).nativeAllocations.incrementAndGet();
  }

  /** A {@link #reserve}d native allocation failed: the bytes were never live (nor counted in a peak). */
  void cancel(Tier tier, Device device, long bytes) {
    if (tier == Tier.DEVICE) deviceAccount(device).live.addAndGet(-bytes);
    tiers.get(tier).live.addAndGet(-bytes);
  }

  /** Accounts {@code bytes} of a cached tier as live; its budget is checked by the caching allocator. */
  void addLive(Tier tier, Device device, long bytes) {
    tryReserve(tier, device, bytes, false);
    commit(tier, device, bytes);
  }

  private boolean tryReserve(Tier tier, Device device, long bytes, boolean checkBudget) {
    long budget = checkBudget ? budgetBytes(tier) : UNLIMITED;
    Account a = tier == Tier.DEVICE ? deviceAccount(device) : tiers.get(tier);
    long cur;
    do {
      cur = a.live.get();
      if (bytes > budget || cur > budget - bytes) return false;
    } while (!a.live.compareAndSet(cur, cur + bytes));
    if (tier == Tier.DEVICE) tiers.get(tier).live.addAndGet(bytes);
    return true;
  }

  /** Returns bytes accounted with {@link #reserve} (and committed) or {@link #addLive}. */
  void release(Tier tier, Device device, long bytes) {
    if (tier == Tier.DEVICE) deviceAccount(device).live.addAndGet(-bytes);
    tiers.get(tier).live.addAndGet(-bytes);
    if (tier == Tier.HOST || tier == Tier.DISK) tiers.get(tier).nativeFrees.incrementAndGet();
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

  /**
   * The bytes an allocation of {@code bytes} takes from {@code tier}'s budget when nothing cached fits it: rounded up
   * to the caching allocator's 512-byte granule for DEVICE and HOST_PINNED, as requested for HOST and DISK.
   */
  public static long reservedSize(Tier tier, long bytes) {
    return tier == Tier.DEVICE || tier == Tier.HOST_PINNED ? CachingAllocator.roundUp(bytes) : bytes;
  }

  /** "1.5 MiB (1572864 bytes)", or "unlimited". */
  public static String formatBytes(long bytes) {
    if (bytes == UNLIMITED) return "unlimited";
    return Math.abs(bytes) < 1024 ? bytes + " B" : formatSize(bytes) + " (" + bytes + " bytes)";
  }

  /** "512 B", "1.5 MiB", "37.3 GiB": one decimal, binary units up to EiB. */
  public static String formatSize(long bytes) {
    String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = bytes;
    int u = -1;
    while (Math.abs(v) >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return u < 0 ? bytes + " B" : String.format(Locale.ROOT, "%.1f %s", v, units[u]);
  }

  /**
   * A multi-line summary: per tier live, peak, budget and native allocations (DEVICE and HOST_PINNED also
   * reserved and cached bytes); per device the same.
   */
  public String report() {
    StringBuilder sb = new StringBuilder("memory tiers:\n");
    for (Tier t : Tier.values()) {
      boolean cachedTier = t == Tier.DEVICE || t == Tier.HOST_PINNED;
      String reserved = cachedTier
          ? "reserved " + formatBytes(reservedBytes(t)) + " (cached " + formatBytes(cachedBytes(t)) + "), " : "";
      sb.append(String.format(Locale.ROOT, "  %-11s live %s, peak %s, %sbudget %s, native allocations %d, frees %d%n",
          t, formatBytes(liveBytes(t)), formatBytes(peakBytes(t)), reserved, formatBytes(budgetBytes(t)),
          nativeAllocations(t), nativeFrees(t)));
    }
    Map<Integer, Account> sorted = new TreeMap<>(devices);
    for (Map.Entry<Integer, Account> e : sorted.entrySet()) {
      Device d = Device.cuda(e.getKey());
      sb.append(String.format(Locale.ROOT, "  %-11s live %s, peak %s, reserved %s (cached %s)%n", d,
          formatBytes(e.getValue().live.get()), formatBytes(e.getValue().peak.get()), formatBytes(reservedBytes(d)),
          formatBytes(cachedBytes(d))));
    }
    if (leaks.get() > 0) sb.append("  leaked storages freed by the Cleaner: ").append(leaks.get()).append('\n');
    return sb.toString();
  }

  @Override
  public String toString() {
    return report();
  }
}

package dev.athanor.memory;

import dev.athanor.runtime.Device;

/**
 * An allocation would exceed its tier's budget. The message names the tier, the request, the budget and the bytes
 * live (and, for the cached tiers DEVICE and HOST_PINNED, the bytes cached and reserved: the cache was emptied
 * before this was thrown).
 */
public class OutOfBudgetException extends AllocationFailedException {
  private final long budgetBytes;
  private final long liveBytes;

  public OutOfBudgetException(Tier tier, Device device, long requestedBytes, long budgetBytes, long liveBytes) {
    this(tier, device, requestedBytes, budgetBytes, liveBytes, -1, -1);
  }

  /** For a cached tier: {@code cachedBytes} and {@code reservedBytes} (in use, rounded, plus cached) are named. */
  public OutOfBudgetException(Tier tier, Device device, long requestedBytes, long budgetBytes, long liveBytes,
      long cachedBytes, long reservedBytes) {
    super(tier, device, requestedBytes, message(tier, device, requestedBytes, budgetBytes, liveBytes, cachedBytes,
        reservedBytes), null);
    this.budgetBytes = budgetBytes;
    this.liveBytes = liveBytes;
  }

  private static String message(Tier tier, Device device, long requested, long budget, long live, long cached,
      long reserved) {
    String where = tier == Tier.DEVICE ? "DEVICE tier (" + device + ")" : tier + " tier";
    String cache = cached < 0 ? "" : " and " + MemoryManager.formatBytes(cached) + " cached ("
        + MemoryManager.formatBytes(reserved) + " reserved, after emptying the cache)";
    return where + " budget exceeded: requested " + MemoryManager.formatBytes(requested) + " with "
        + MemoryManager.formatBytes(live) + " live" + cache + " of a " + MemoryManager.formatBytes(budget) + " budget"
        + " (raise it with -Dathanor.budget." + tier.propertyName() + "=<size> or MemoryManager.setBudget)";
  }

  public long budgetBytes() {
    return budgetBytes;
  }

  public long liveBytes() {
    return liveBytes;
  }
}

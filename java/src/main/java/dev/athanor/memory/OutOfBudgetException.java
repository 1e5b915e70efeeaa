package dev.athanor.memory;

import dev.athanor.runtime.Device;

/** An allocation would exceed its tier's budget. The message names the tier, the request, the budget and
 * the bytes live. */
public class OutOfBudgetException extends AllocationFailedException {
  private final long budgetBytes;
  private final long liveBytes;

  public OutOfBudgetException(Tier tier, Device device, long requestedBytes, long budgetBytes, long liveBytes) {
    super(tier, device, requestedBytes, message(tier, device, requestedBytes, budgetBytes, liveBytes), null);
    this.budgetBytes = budgetBytes;
    this.liveBytes = liveBytes;
  }

  private static String message(Tier tier, Device device, long requested, long budget, long live) {
    String where = tier == Tier.DEVICE ? "DEVICE tier (" + device + ")" : tier + " tier";
    return where + " budget exceeded: requested " + MemoryManager.formatBytes(requested) + " with "
        + MemoryManager.formatBytes(live) + " live of a " + MemoryManager.formatBytes(budget) + " budget"
        + " (raise it with -Dathanor.budget." + tier.propertyName() + "=<size> or MemoryManager.setBudget)";
  }

  public long budgetBytes() {
    return budgetBytes;
  }

  public long liveBytes() {
    return liveBytes;
  }
}

package dev.athanor.memory;

import dev.athanor.runtime.AthanorException;
import dev.athanor.runtime.Device;

/** An allocation in a tier failed: the budget was exceeded (see {@link OutOfBudgetException}) or the
 * native allocator ran out of memory. */
public class AllocationFailedException extends AthanorException {
  private final Tier tier;
  private final Device device;
  private final long requestedBytes;

  public AllocationFailedException(Tier tier, Device device, long requestedBytes, String message, Throwable cause) {
    super(message, cause);
    this.tier = tier;
    this.device = device;
    this.requestedBytes = requestedBytes;
  }

  public Tier tier() {
    return tier;
  }

  public Device device() {
    return device;
  }

  public long requestedBytes() {
    return requestedBytes;
  }
}

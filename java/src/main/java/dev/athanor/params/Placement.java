package dev.athanor.params;

import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import java.util.Objects;

/**
 * Where a role's flat buffer lives: a device and a memory tier of it (DEVICE for a CUDA device; HOST,
 * HOST_PINNED or DISK for the CPU). Kernels can address every tier but DISK.
 */
public record Placement(Device device, Tier tier) {
  public Placement {
    Objects.requireNonNull(device, "device");
    Objects.requireNonNull(tier, "tier");
    if (device.isCuda() != (tier == Tier.DEVICE)) {
      throw new IllegalArgumentException("tier " + tier + " does not live on " + device
          + " (DEVICE is CUDA memory; HOST, HOST_PINNED and DISK live on the cpu device)");
    }
  }

  /** The default placement of a device: its own memory (DEVICE for CUDA, HOST for the CPU). */
  public static Placement of(Device device) {
    return new Placement(device, device.isCuda() ? Tier.DEVICE : Tier.HOST);
  }

  /** Whether kernels can read and write the buffer in place (every tier but DISK). */
  public boolean addressable() {
    return tier != Tier.DISK;
  }

  @Override
  public String toString() {
    return tier == Tier.DEVICE ? device.toString() : device + "/" + tier;
  }
}

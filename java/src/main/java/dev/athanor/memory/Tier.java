package dev.athanor.memory;

import java.util.Locale;

/**
 * Where bytes live. Every allocation belongs to exactly one tier, and each tier has a budget and live/peak
 * accounting in {@link MemoryManager}.
 */
public enum Tier {
  /** Memory of one CUDA device (accounted per device). */
  DEVICE,
  /** Page-locked host memory (cudaHostAlloc): fast and truly asynchronous host<->device copies. */
  HOST_PINNED,
  /** Ordinary (pageable) host memory. */
  HOST,
  /** Files under {@link MemoryManager#diskDirectory()}; not addressable, read and written in bulk. */
  DISK;

  /** Whether the CPU can read and write this tier's memory through a pointer. */
  public boolean isHostAddressable() {
    return this == HOST || this == HOST_PINNED;
  }

  /** Whether the tier's memory has a native address at all (DEVICE: a device pointer). */
  public boolean isAddressable() {
    return this != DISK;
  }

  /** The name used in system properties: "device", "host_pinned", "host", "disk". */
  public String propertyName() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** Parses a tier name, case-insensitive ("host-pinned" is accepted for HOST_PINNED). */
  public static Tier parse(String s) {
    String n = s.trim().toUpperCase(Locale.ROOT).replace('-', '_');
    try {
      return Tier.valueOf(n);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("unknown tier '" + s + "': expected device, host_pinned, host or disk");
    }
  }
}

package dev.athanor.cli;

import dev.athanor.memory.MemoryManager;

/** Human-readable byte counts (binary units). */
final class Bytes {
  private Bytes() {}

  static String format(long bytes) {
    return MemoryManager.formatSize(bytes);
  }
}

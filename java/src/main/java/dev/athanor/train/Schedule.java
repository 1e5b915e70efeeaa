package dev.athanor.train;

import java.util.Locale;

/** Learning-rate schedule shapes. */
public enum Schedule {
  /** The base learning rate at every step (warmup still applies when set). */
  CONSTANT,
  /** Linear warmup from lr/warmup to lr, then a half cosine from lr down to the minimum at the last step. */
  COSINE;

  /** Parses {@code constant} or {@code cosine} (any case). */
  public static Schedule parse(String s) {
    try {
      return valueOf(s.trim().toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("unknown schedule \"" + s + "\"; expected constant or cosine");
    }
  }
}

package dev.athanor.cli;

import java.util.Locale;

/** Counts and rates for people: {@code 420}, {@code 12.3k}, {@code 3.4M}. */
final class Counts {
  private Counts() {}

  private static final String[] UNITS = {"k", "M", "G", "T", "P", "E"};

  /** Exact below 10,000, then {@code 12.3k}, {@code 123k}, {@code 1.2M}... */
  static String format(long n) {
    if (n > -10_000 && n < 10_000) return Long.toString(n);
    return (n < 0 ? "-" : "") + scaled(Math.abs((double) n));
  }

  /** A rate (units per second): {@code 0.25}, {@code 12.3}, {@code 456}, {@code 12.3k}; {@code --} if unknown. */
  static String rate(double r) {
    if (!Double.isFinite(r) || r < 0) return "--";
    if (r < 9.995) return String.format(Locale.ROOT, "%.2f", r);
    if (r < 99.95) return String.format(Locale.ROOT, "%.1f", r);
    if (r < 9_999.5) return String.format(Locale.ROOT, "%.0f", r);
    return scaled(r);
  }

  private static String scaled(double v) {
    int u = 0;
    v /= 1000;
    while (v >= 999.5 && u < UNITS.length - 1) {
      v /= 1000;
      u++;
    }
    return (v < 99.95 ? String.format(Locale.ROOT, "%.1f", v) : String.format(Locale.ROOT, "%.0f", v)) + UNITS[u];
  }
}

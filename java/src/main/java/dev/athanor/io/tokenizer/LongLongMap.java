package dev.athanor.io.tokenizer;

import java.util.Arrays;

/** An open-addressing hash map from non-negative longs to longs, immutable once built (safe to share then). */
final class LongLongMap {
  static final long MISSING = Long.MIN_VALUE;
  private static final long EMPTY = -1;
  private long[] keys;
  private long[] values;
  private int size;
  private int mask;

  LongLongMap(int expected) {
    int cap = Integer.highestOneBit(Math.max(4, expected) * 2 - 1) << 1;
    keys = new long[cap];
    values = new long[cap];
    Arrays.fill(keys, EMPTY);
    mask = cap - 1;
  }

  private static int slot(long key, int mask) {
    long h = key * 0x9E3779B97F4A7C15L;
    return (int) (h ^ (h >>> 29)) & mask;
  }

  /** The value of {@code key}, or {@link #MISSING}. */
  long get(long key) {
    for (int i = slot(key, mask); ; i = (i + 1) & mask) {
      long k = keys[i];
      if (k == key) return values[i];
      if (k == EMPTY) return MISSING;
    }
  }

  /** Sets {@code key} (must be >= 0) to {@code value}; returns whether it was absent. */
  boolean put(long key, long value) {
    if (key < 0) throw new IllegalArgumentException("negative key " + key);
    if (2 * (size + 1) > keys.length) grow();
    for (int i = slot(key, mask); ; i = (i + 1) & mask) {
      long k = keys[i];
      if (k == key) {
        values[i] = value;
        return false;
      }
      if (k == EMPTY) {
        keys[i] = key;
        values[i] = value;
        size++;
        return true;
      }
    }
  }

  int size() {
    return size;
  }

  private void grow() {
    long[] ok = keys, ov = values;
    keys = new long[ok.length * 2];
    values = new long[ok.length * 2];
    Arrays.fill(keys, EMPTY);
    mask = keys.length - 1;
    size = 0;
    for (int i = 0; i < ok.length; i++) {
      if (ok[i] != EMPTY) put(ok[i], ov[i]);
    }
  }
}

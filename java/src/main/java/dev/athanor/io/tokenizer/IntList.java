package dev.athanor.io.tokenizer;

import java.util.Arrays;

/** A growable array of ints. */
final class IntList {
  private int[] a;
  private int n;

  IntList(int capacity) {
    a = new int[Math.max(4, capacity)];
  }

  void add(int v) {
    if (n == a.length) a = Arrays.copyOf(a, 2 * n);
    a[n++] = v;
  }

  void addAll(int[] v) {
    addAll(v, v.length);
  }

  void addAll(int[] v, int count) {
    if (n + count > a.length) a = Arrays.copyOf(a, Math.max(2 * a.length, n + count));
    System.arraycopy(v, 0, a, n, count);
    n += count;
  }

  int size() {
    return n;
  }

  int get(int i) {
    return a[i];
  }

  int last() {
    return a[n - 1];
  }

  /** The backing array (valid up to {@link #size()}). */
  int[] array() {
    return a;
  }

  int[] toArray() {
    return Arrays.copyOf(a, n);
  }
}

package dev.athanor.params;

/**
 * A half-open range {@code [start, end)} of elements of a {@link ParameterStore}'s flat layout: one
 * parameter, a unit (an embedding, a block, the head), a shard, or everything. The same range addresses the
 * same parameters in every {@link Role}.
 */
public record Range(long start, long end) {
  public Range {
    if (start < 0 || end < start) throw new IllegalArgumentException("range [" + start + ", " + end + ") is invalid");
  }

  public long length() {
    return end - start;
  }

  public boolean isEmpty() {
    return start == end;
  }

  /** The overlap of this range and {@code other} (empty, at this range's start, when they do not overlap). */
  public Range intersect(Range other) {
    long s = Math.max(start, other.start), e = Math.min(end, other.end);
    return e <= s ? new Range(start, start) : new Range(s, e);
  }

  public boolean contains(Range other) {
    return other.start >= start && other.end <= end;
  }

  @Override
  public String toString() {
    return "[" + start + ", " + end + ")";
  }
}

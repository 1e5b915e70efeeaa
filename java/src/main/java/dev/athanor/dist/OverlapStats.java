package dev.athanor.dist;

/**
 * What a data-parallel communication thread ({@link CommThread}) hid and cost so far: the training thread's time blocked
 * waiting for it ({@code waitNanos}: the communication the backward did not hide), the communication thread's time in
 * collectives ({@code busyNanos}), and the pieces of work it completed ({@code buckets}: the gradient buckets all-reduced
 * by {@link OverlappedReduction}, or the unit gradients of each micro-batch folded by {@link UnitGradientFold}, ZeRO 2 and 3).
 */
public record OverlapStats(long waitNanos, long busyNanos, long buckets) {
  /** This minus {@code earlier}. */
  public OverlapStats minus(OverlapStats earlier) {
    return new OverlapStats(waitNanos - earlier.waitNanos, busyNanos - earlier.busyNanos, buckets - earlier.buckets);
  }
}

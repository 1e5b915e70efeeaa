package dev.athanor.dist;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.tensor.Tensor;
import java.util.List;

/**
 * The bookkeeping of a {@link BucketedReduction} during an armed backward: for each bucket of a {@link GradientBuckets}
 * plan, how many of its units have not yet reported their gradient complete. A bucket is ready when the last of them
 * does. Not thread-safe (the training thread's).
 */
final class BucketTally {
  private final GradientBuckets plan;
  private final List<Unit> units;
  private final int[] pending;

  /** For {@code plan} over {@code units} (the store's, by index); every bucket complete until {@link #reset}. */
  BucketTally(GradientBuckets plan, List<Unit> units) {
    this.plan = plan;
    this.units = List.copyOf(units);
    this.pending = new int[plan.buckets().size()];
  }

  /** A new backward: every unit pending. */
  void reset() {
    for (GradientBuckets.Bucket b : plan.buckets()) pending[b.index()] = b.units();
  }

  /** {@code unit}'s gradient is complete: its bucket when it was that bucket's last pending unit, else null. */
  GradientBuckets.Bucket complete(Unit unit) {
    int k = plan.bucketOf()[unit.index()];
    if (pending[k] == 0) throw new IllegalStateException(unit.name() + " completed twice in one backward (" + describe(plan.buckets().get(k)) + ")");
    return --pending[k] == 0 ? plan.buckets().get(k) : null;
  }

  /** Throws {@link IllegalStateException} naming the first bucket with units still pending. */
  void requireComplete() {
    for (GradientBuckets.Bucket b : plan.buckets()) {
      if (pending[b.index()] != 0) {
        throw new IllegalStateException("the backward did not complete every unit of " + describe(b) + " ("
            + pending[b.index()] + " left); its gradient was not reduced");
      }
    }
  }

  /**
   * Gradient accumulation's last micro-batch, one unit: {@code step += micro} over {@code unit}'s elements (the kernel
   * and, element by element, the bits of the whole-gradient add); nothing when the roles are the same.
   */
  static void accumulate(ParameterStore store, Role micro, Role step, Unit unit) {
    if (micro == step) return;
    try (Tensor acc = store.slice(step, unit.elements()); Tensor g = store.slice(micro, unit.elements())) {
      Ops.add(acc, g, acc);
    }
  }

  /** "gradient bucket k of n (first .. last unit, m elements)". */
  String describe(GradientBuckets.Bucket b) {
    String names = b.units() == 1 ? units.get(b.firstUnit()).name()
        : units.get(b.firstUnit()).name() + " .. " + units.get(b.endUnit() - 1).name();
    return "gradient bucket " + b.index() + " of " + plan.buckets().size() + " (" + names + ", " + b.elements().length()
        + " elements)";
  }
}

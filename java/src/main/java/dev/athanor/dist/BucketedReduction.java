package dev.athanor.dist;

import dev.athanor.nn.BlockHooks;
import dev.athanor.params.Role;

/**
 * Data parallel's gradient all-reduce started during the backward of a step's last micro-batch, bucket by bucket
 * ({@link GradientBuckets}) as the model's hooks report units complete, and waited for before clipping: {@link
 * OverlappedReduction} on the CPU (a communication thread), {@link StreamOverlappedReduction} on CUDA (a communication
 * stream). It is joined to a model's hooks; closing it puts them back. The training thread calls everything.
 */
public interface BucketedReduction extends BlockHooks, AutoCloseable {
  /** The buckets. */
  GradientBuckets buckets();

  /**
   * The next backward (a step's last micro-batch) reduces the step's gradient {@code stepGrad} bucket by bucket; with
   * {@code stepGrad} other than {@code microGrad} (gradient accumulation) each unit's {@code microGrad} is first added
   * to it ({@code step = step + micro}).
   */
  void arm(Role microGrad, Role stepGrad);

  /** Whether a backward was armed and its reduction not yet awaited. */
  boolean armed();

  /**
   * Makes what follows (clipping, the update) see every bucket reduced, and disarms; throws {@link
   * IllegalStateException} when the backward did not complete every unit.
   */
  void await();

  /** Forgets the armed backward (a step that failed part-way). */
  void discard();

  /** Totals since creation. */
  OverlapStats stats();

  /** Releases the thread or stream and puts the model's hooks back. */
  @Override
  void close();
}

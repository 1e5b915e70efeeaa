package dev.athanor.offload;

import dev.athanor.params.Role;
import java.util.Objects;

/**
 * The optimizer on the host for a model that computes on a device (ZeRO-Offload's split; {@code
 * dev.athanor.train.HostOptimizer}): the compute weights and the gradients stay in the device's memory, the F32 masters
 * and AdamW's moments go to page-locked host memory (HOST_PINNED), and the moments {@code moments} puts on DISK go
 * further, streamed through host staging slots as on the CPU. Each step copies every unit's gradient to the host and
 * its new compute weights back.
 *
 * @param moments the moments on DISK (a subset of ADAM_M and ADAM_V; empty: both pinned), their directory and chunk
 * @param streamGradients with one micro-batch a step, whether each unit's gradient goes to the host as the backward
 *     completes it, into a pinned copy of the whole F32 gradient (the copies overlap the backward), rather than after
 *     the backward through two pinned slots of the largest unit (less pinned memory)
 * @param deferUpdates whether each step's host update (all but the last step's) runs on a worker thread behind the
 *     step, unit by unit in the forward's order, each unit's new weights awaited only by the next forward's first read
 *     of them (the update overlaps the next forward), rather than every unit updated before the step returns
 * @param sumOnHost with gradient accumulation, whether the step's gradient sum (GRAD_ACC) is formed on the host: each
 *     micro-batch's unit gradient copied to pinned host memory as the backward completes the unit and added there into
 *     a pinned F32 accumulator, so the device holds one micro-batch's gradient only (rather than the sum on the device,
 *     copied after the backward through two slots); nothing with one micro-batch a step
 */
public record HostOffload(OffloadConfig moments, boolean streamGradients, boolean deferUpdates, boolean sumOnHost) {
  /** Masters and both moments in pinned host memory, nothing on DISK, the gradients streamed, the updates deferred. */
  public static final HostOffload PINNED = new HostOffload(OffloadConfig.NONE);

  /** {@code moments} on DISK, the gradients streamed during the backward (with one micro-batch a step), the updates deferred. */
  public HostOffload(OffloadConfig moments) {
    this(moments, true);
  }

  /** {@code moments} on DISK, the gradients streamed or not, the updates deferred. */
  public HostOffload(OffloadConfig moments, boolean streamGradients) {
    this(moments, streamGradients, true);
  }

  /** {@code moments} on DISK, the gradients streamed or not, the updates deferred or not, the step's sum on the device. */
  public HostOffload(OffloadConfig moments, boolean streamGradients, boolean deferUpdates) {
    this(moments, streamGradients, deferUpdates, false);
  }

  /** The same placement with every step's host update made before the step returns (not deferred). */
  public HostOffload updatedAtOnce() {
    return new HostOffload(moments, streamGradients, false, sumOnHost);
  }

  /** The same placement with the step's gradient sum formed on the host under accumulation ({@link #sumOnHost()}). */
  public HostOffload withSumOnHost() {
    return new HostOffload(moments, streamGradients, deferUpdates, true);
  }

  public HostOffload {
    Objects.requireNonNull(moments, "moments");
    for (Role r : moments.diskRoles()) {
      if (r != Role.ADAM_M && r != Role.ADAM_V) {
        throw new IllegalArgumentException("with the optimizer on the host only AdamW's moments can be on DISK, not "
            + r.name().toLowerCase(java.util.Locale.ROOT) + ": the masters are in pinned host memory, the compute weights "
            + "and the gradients on the device");
      }
    }
    if (moments.activationsOnDisk()) {
      throw new IllegalArgumentException("with the optimizer on the host the activations stay on the device (kept, or "
          + "recomputed with --recompute); they cannot be on DISK");
    }
  }
}

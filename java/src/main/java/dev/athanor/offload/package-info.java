/**
 * Tiered offload of model state. This first part keeps AdamW's moments on the DISK tier: {@link
 * dev.athanor.offload.OffloadConfig} says which roles go there and where, {@link dev.athanor.offload.UnitFiles}
 * holds them as one file per unit and role (named by unit and role, removed on close), and {@link
 * dev.athanor.offload.ChunkStreamer} streams them through a bounded set of host staging slots, reading ahead and
 * writing behind the computation. On CUDA, {@link dev.athanor.offload.HostOffload} puts the optimizer on the host
 * (the masters and moments in pinned host memory or the moments on DISK; {@code dev.athanor.train.HostOptimizer}), its
 * copies going through {@link dev.athanor.offload.UnitCopies} ({@link dev.athanor.offload.StreamCopies}: a copy stream
 * and events), planned by {@link dev.athanor.offload.HostOffloadPlanner}.
 * The planner ({@link dev.athanor.offload.OffloadPlanner}), the weights and gradients paged unit by unit ({@link
 * dev.athanor.offload.UnitPager}) and the activations on DISK ({@link dev.athanor.offload.ActivationPager}) are
 * described in their classes.
 */
package dev.athanor.offload;

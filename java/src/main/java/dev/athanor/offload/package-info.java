/**
 * Tiered offload of model state. This first part keeps AdamW's moments on the DISK tier: {@link
 * dev.athanor.offload.OffloadConfig} says which roles go there and where, {@link dev.athanor.offload.UnitFiles}
 * holds them as one file per unit and role (named by unit and role, removed on close), and {@link
 * dev.athanor.offload.ChunkStreamer} streams them through a bounded set of host staging slots, reading ahead and
 * writing behind the computation. The planner (a tier per role and unit, chosen from budgets), weights and
 * gradients on DISK, block streaming in the forward and backward passes and the CLI's {@code --offload} are not
 * built yet.
 */
package dev.athanor.offload;

package dev.athanor.dist;

/** How a {@link Communicator} forms sums. */
public enum ReduceMode {
  /**
   * Sums formed by Athanor's kernels in rank order (0, 1, 2, ...) from the ranks' raw bytes: identical bits on every
   * rank and from run to run, and equal to the same additions done in one process. The default on the CPU.
   */
  DETERMINISTIC,
  /** The library's own reductions (MPI_Allreduce, MPI_Reduce_scatter_block) where it has the type; no order promised. */
  FAST
}

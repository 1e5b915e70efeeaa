package dev.athanor.dist;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The data-parallel communication thread: one daemon thread per owner that runs its collectives in the order they were
 * submitted, so that every rank, submitting the same calls in the same program order, makes them in the same order.
 * Shared by the overlapped gradient reduction (ZeRO 0 and 1, {@link OverlappedReduction}), ZeRO 2's unit folds ({@link
 * UnitGradientFold} with overlap) and ZeRO 3's read-ahead of gathers and unit folds ({@link ShardedWeights}, one thread
 * for both); a run has at most one of them. Its MPI calls take turns with the training thread's
 * through {@link MpiCommunicator}'s process-wide lock (MPI_THREAD_SERIALIZED). A daemon: a thread blocked in MPI by a
 * dead peer must not keep the JVM alive.
 */
final class CommThread {
  private CommThread() {}

  /** A single-thread executor named after {@code rank}. */
  static ExecutorService start(int rank) {
    String name = "athanor-comm-rank-" + rank;
    return Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    });
  }
}

package dev.athanor.dist;

import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.train.GradientReducer;
import java.util.Objects;

/**
 * Data parallel over tensor-parallel replicas (a {@link ParallelGrid} with dp and tp above 1): each replica is a
 * tensor-parallel group holding the whole model in parts, and the replicas' gradients are summed over the data-parallel
 * group ({@link DataParallel}), part by part: rank {@code (d, t)} adds its part with the ranks {@code (d', t)}. The
 * clipping norm is then the tensor-parallel one ({@link TensorParallelism#gradientNorm}) over the tensor-parallel group.
 *
 * <p>Exactness: the data-parallel sum adds the replicas in rank order, as one replica with {@code --accum dp} adds its
 * micro-batches, so dp 2 × tp 2 equals tp 2 with accum 2 bit for bit (CPU, deterministic mode); tensor parallelism
 * itself differs from one process within rounding. Checkpoints: every rank writes its own part (format 3).
 */
public final class DataTensorParallel implements GradientReducer {
  private final DataParallel dp;
  private final TensorParallelism tp;

  /** Sums over {@code dp}'s replicas and takes the norm over {@code tp}'s ranks. */
  public DataTensorParallel(DataParallel dp, TensorParallelism tp) {
    this.dp = Objects.requireNonNull(dp, "dp");
    this.tp = Objects.requireNonNull(tp, "tp");
  }

  @Override
  public void reduce(ParameterStore store, Role gradRole) {
    dp.reduce(store, gradRole);
  }

  @Override
  public int replicas() {
    return dp.replicas();
  }

  @Override
  public float[] gatherLosses(float[] local) {
    return dp.gatherLosses(local);
  }

  @Override
  public void afterUpdate(ParameterStore store) {
    dp.afterUpdate(store);
  }

  @Override
  public float gradientNorm(ParameterStore store, Role gradRole) {
    return tp.gradientNorm(store, gradRole);
  }
}

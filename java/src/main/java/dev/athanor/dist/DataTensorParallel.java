package dev.athanor.dist;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.AdamW;
import dev.athanor.train.GradientReducer;
import java.util.List;
import java.util.Objects;
import java.util.function.Predicate;

/**
 * Data parallel over tensor-parallel replicas (a {@link ParallelGrid} with dp and tp above 1): each replica is a
 * tensor-parallel group holding the whole model in parts, and the replicas' gradients are summed over the data-parallel
 * group ({@link DataParallel}), part by part: rank {@code (d, t)} adds its part with the ranks {@code (d', t)}. The
 * clipping norm is then the tensor-parallel one ({@link TensorParallelism#gradientNorm}) over the tensor-parallel group.
 *
 * <p>Exactness: the data-parallel sum adds the replicas in rank order, as one replica with {@code --accum dp} adds its
 * micro-batches, so dp 2 × tp 2 equals tp 2 with accum 2 bit for bit (CPU, deterministic mode); tensor parallelism
 * itself differs from one process within rounding. Checkpoints: every rank writes its own part (format 3).
 *
 * <p>ZeRO over the dp group: each rank's flat store is its tensor-parallel part of the model, and ZeRO shards that
 * store between the {@code dp} replicas holding the same part ({@link DataParallel#optimizerShard} over the dp group).
 * ZeRO 1: the gradient is summed over dp as above, each rank updates its shard and the updated masters are
 * all-gathered over dp ({@link DataParallel#afterUpdate}); the norm is the one above, so the bits are dp × tp's. ZeRO 2:
 * each micro-batch's gradient is reduce-scattered over dp into the shards ({@link DataParallel#accumulateShard}); the
 * norm ({@link #shardedNorm}) needs each parameter's sum of squares as {@link Ops#sumSquares} forms it over the whole
 * local gradient of the parameter (one reduction, not chunked), so the dp rank holding a parameter's first element
 * receives the other shards' pieces of it, forms that sum over the assembled parameter, and the terms (each non-zero
 * on one dp rank: exact) are summed over dp, then over tp as {@link TensorParallelism#sumSplit} does: the same terms
 * as without ZeRO, hence the same norm bit for bit. At {@code accum 1} ZeRO 1 and 2 equal dp × tp bit for bit; at
 * {@code accum > 1} ZeRO 2 folds the micro-batches in the global order (see {@link DataParallel}) and differs from it
 * in the last bits.
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

  @Override
  public void accumulateShard(ParameterStore store, Role gradRole, Range shard, Tensor acc, boolean first) {
    dp.accumulateShard(store, gradRole, shard, acc, first);
  }

  @Override
  public void gatherMoments(ParameterStore store, AdamW optimizer, Range range, Tensor m, Tensor v) {
    dp.gatherMoments(store, optimizer, range, m, v);
  }

  /**
   * ZeRO 2: the tensor-parallel norm ({@link TensorParallelism#gradientNorm}'s bits) of the step's gradient of which this
   * rank holds {@code shard} (its dp group's cut of its tensor-parallel part) in {@code grad}. A collective over dp and tp.
   */
  @Override
  public float shardedNorm(ParameterStore store, Range shard, Tensor grad) {
    List<String> names = store.list().stream().map(ParameterStore.Param::name).toList();
    float[] terms = shardTerms(dp.communicator(), store, shard, grad, name -> true);
    return tp.norm(names, tp.sumSplit(store, names, name -> true, terms));
  }

  /**
   * ZeRO 2's terms of a tensor-parallel norm: per parameter of {@code store} (in its order) that {@code counted} accepts,
   * the sum of squares of its local gradient as {@link Ops#sumSquares} forms it over the whole parameter (one reduction),
   * though {@code dp}'s ranks each hold only their shard of it ({@code shard} of the flat gradient, in {@code grad}): a
   * parameter cut by a shard boundary is put together on the dp rank holding its first element ({@link
   * DataParallel#assemble}), and the terms (each non-zero on one dp rank only: exact in either mode) are summed over
   * {@code dp}. 0 for the parameters not counted. Every rank of {@code dp} gets the same terms; a collective over it.
   */
  public static float[] shardTerms(Communicator dp, ParameterStore store, Range shard, Tensor grad,
      Predicate<String> counted) {
    if (!shard.equals(DataParallel.optimizerShard(store, dp))) {
      throw new IllegalArgumentException("gradient shard " + shard + " is not dp rank " + dp.rank() + "'s part "
          + DataParallel.optimizerShard(store, dp));
    }
    List<ParameterStore.Param> params = store.list();
    float[] terms = new float[params.size()];
    long n = store.numel();
    try (Tensor g = grad.view(grad.numel())) {
      for (int i = 0; i < terms.length; i++) {
        Range whole = store.range(i);
        if (whole.isEmpty() || !counted.test(params.get(i).name())) continue;
        if (whole.intersect(shard).equals(whole)) {
          terms[i] = sumSquares(g, whole.start() - shard.start(), whole.end() - shard.start());
          continue;
        }
        // held in pieces: the dp rank holding its first element forms the one reduction over the whole parameter
        try (Tensor buf = DataParallel.assemble(dp, n, shard, g, whole)) {
          if (buf != null) terms[i] = sumSquares(buf, 0, whole.length());
        }
      }
    }
    if (dp.size() > 1) {
      try (Tensor t = Tensor.of(terms, terms.length)) {
        dp.allReduceSum(t);  // each term is non-zero on one dp rank only: the sums are exact in either mode
        terms = t.toFloatArray();
      }
    }
    return terms;
  }

  /** {@link Ops#sumSquares} of elements {@code [a, b)} of the flat {@code x}, as one reduction over them. */
  private static float sumSquares(Tensor x, long a, long b) {
    try (Tensor piece = x.slice(0, a, b); Tensor s = Ops.sumSquares(piece)) {
      return s.item();
    }
  }
}

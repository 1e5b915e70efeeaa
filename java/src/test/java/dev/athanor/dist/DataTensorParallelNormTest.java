package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * ZeRO 2 under dp × tp: {@link DataTensorParallel#shardedNorm} over dp replicas (threads as ranks), each holding its
 * shard of the gradient, gives the bits of {@link TensorParallelism#gradientNorm} over the whole gradient, for dp 2 and 3
 * (shards cutting parameters mid-way), on gradients of widely spread magnitudes. Runs without MPI.
 */
class DataTensorParallelNormTest {
  @Test
  void shardedNormHasTheBitsOfTheWholeGradientsNorm() throws Exception {
    ModelConfig cfg = TensorParallelSplitTest.GPT2;
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      ParameterStore store = m.parameters();
      store.zeroGradients();
      SplittableRandom rnd = new SplittableRandom(7);
      float[] g = new float[Math.toIntExact(store.numel())];
      for (int i = 0; i < g.length; i++) g[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(-3, 3)));
      store.flat(Role.GRAD).copyFrom(g);
      float want = new TensorParallelism(new SingleProcessCommunicator(ReduceMode.DETERMINISTIC), cfg).gradientNorm(store, Role.GRAD);
      for (int dp : new int[] {2, 3}) {
        float[] got = sharded(store, cfg, dp);
        int straddling = 0;
        for (int i = 0; i < store.list().size(); i++) {
          Range r = store.range(i);
          for (int k = 1; k < dp; k++) {
            long cut = Communicator.partStart(store.numel(), k, dp);
            if (r.start() < cut && cut < r.end()) straddling++;
          }
        }
        assertTrue(straddling >= dp - 1, "every shard boundary cuts a parameter (dp " + dp + ")");
        for (int r = 0; r < dp; r++) {
          assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got[r]),
              "dp " + dp + " rank " + r + ": " + got[r] + " vs the whole gradient's " + want);
        }
      }
    }
  }

  /** Every dp rank's {@link DataTensorParallel#shardedNorm} of its shard of {@code store}'s gradient (tp 1). */
  private static float[] sharded(ParameterStore store, ModelConfig cfg, int dp) throws Exception {
    ThreadRanks ranks = new ThreadRanks(dp);
    ExecutorService pool = Executors.newFixedThreadPool(dp);
    try {
      List<Future<Float>> norms = new ArrayList<>();
      for (int r = 0; r < dp; r++) {
        Communicator c = ranks.member(r);
        norms.add(pool.submit(() -> {
          Range shard = DataParallel.optimizerShard(store, c);
          DataTensorParallel reducer = new DataTensorParallel(new DataParallel(c, true),
              new TensorParallelism(new SingleProcessCommunicator(ReduceMode.DETERMINISTIC), cfg));
          try (Tensor part = store.slice(Role.GRAD, shard); Tensor copy = Tensor.of(part.toFloatArray(), shard.length())) {
            return reducer.shardedNorm(store, shard, copy);
          }
        }));
      }
      float[] out = new float[dp];
      for (int r = 0; r < dp; r++) out[r] = norms.get(r).get(120, TimeUnit.SECONDS);
      return out;
    } finally {
      pool.shutdownNow();
    }
  }
}

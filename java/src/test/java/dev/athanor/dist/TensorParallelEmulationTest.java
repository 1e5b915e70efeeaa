package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.AdamW;
import dev.athanor.train.GradientReducer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Tensor parallelism without MPI: the ranks of tp 2 as two threads of this JVM whose communicator sums in rank order
 * (as the deterministic MPI communicator does) through shared arrays, against one process from the same seed on the same
 * batches (with ignored targets and targets at the edges of the ranks' vocabulary parts), for both families: step-1
 * logits within 1e-5 relative, the losses of 10 steps within 1e-4, the replicated
 * parameters' gradients identical on both ranks, the final weights gathered within 1e-4. Runs where MPI is missing.
 */
class TensorParallelEmulationTest {
  static final int STEPS = 10;

  /** What rank r measured: its losses, step-1 logits, whether the replicated gradients agreed, the gathered model (rank 0). */
  record RankRun(float[] losses, float[] logits, boolean replicatedSame, Map<String, float[]> gathered) {}

  /**
   * Random batches whose targets include ignored ones (-1, every 5th) and both ends of each rank's vocabulary part (the
   * vocabulary-parallel cross-entropy's owner lookup at its edges).
   */
  private static int[][][] batches(ModelConfig cfg) {
    SplittableRandom rnd = new SplittableRandom(11);
    int n = TensorParallelMain.BATCH * TensorParallelMain.SEQ, v = cfg.vocabSize();
    int[] edges = {0, v / 2 - 1, v / 2, v - 1};
    int[][][] b = new int[STEPS][2][n];
    for (int[][] s : b) for (int[] row : s) for (int i = 0; i < n; i++) row[i] = rnd.nextInt(v);
    for (int[][] s : b) {
      for (int i = 0; i < n; i += 5) s[1][i] = -1;
      for (int k = 0; k < edges.length; k++) s[1][1 + 5 * k] = edges[k];
    }
    return b;
  }

  private static RankRun train(ModelConfig cfg, Communicator c) {
    return train(cfg, c, batches(cfg), false);
  }

  /** Rank {@code c.rank()}'s run of {@code data.length} steps on {@code data}, with or without recomputation. */
  static RankRun train(ModelConfig cfg, Communicator c, int[][][] data, boolean recompute) {
    return train(cfg, c, data, recompute, false);
  }

  /** The same with or without sequence parallelism over {@code c}. */
  static RankRun train(ModelConfig cfg, Communicator c, int[][][] data, boolean recompute, boolean sequenceParallel) {
    int steps = data.length;
    float[] losses = new float[steps];
    float[][] logits = new float[1][];
    float[] first = null;
    boolean same = true;
    try (Transformer m = TensorParallelism.create(cfg, Device.CPU, c); AdamW opt = new AdamW(m.parameters())) {
      m.initialize(42);
      m.setRecompute(recompute);
      if (sequenceParallel) m.setSequenceParallel(TensorParallelism.tokens(c));
      TensorParallelism reducer = new TensorParallelism(c, cfg);
      for (int s = 0; s < steps; s++) {
        losses[s] = TensorParallelMain.step(m, opt, reducer, data[s][0], data[s][1], 1e-3f, logits, 0);
        if (s == 0) first = logits[0];
        same &= TensorParallelMain.replicatedGradientsIdentical(c, m);
      }
      Map<String, Tensor> whole = TensorParallelism.gatherWeights(m, c);
      Map<String, float[]> g = null;
      if (whole != null) {
        g = new java.util.LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : whole.entrySet()) {
          g.put(e.getKey(), e.getValue().toFloatArray());
          e.getValue().close();
        }
      }
      return new RankRun(losses, first, same, g);
    }
  }

  /** Every rank's run of tp {@code size} as threads, {@code train(cfg, c, data, recompute)} each. */
  static RankRun[] emulate(ModelConfig cfg, int size, int[][][] data, boolean recompute) throws Exception {
    return emulate(cfg, size, data, recompute, false);
  }

  /** The same with or without sequence parallelism. */
  static RankRun[] emulate(ModelConfig cfg, int size, int[][][] data, boolean recompute, boolean sequenceParallel)
      throws Exception {
    ThreadRanks ranks = new ThreadRanks(size);
    ExecutorService pool = Executors.newFixedThreadPool(size);
    List<Future<RankRun>> runs = new ArrayList<>();
    try {
      for (int r = 0; r < size; r++) {
        Communicator c = ranks.member(r);
        runs.add(pool.submit(() -> train(cfg, c, data, recompute, sequenceParallel)));
      }
      RankRun[] out = new RankRun[size];
      for (int r = 0; r < size; r++) out[r] = runs.get(r).get(120, TimeUnit.SECONDS);
      return out;
    } finally {
      pool.shutdownNow();
    }
  }

  private static void compare(ModelConfig cfg, int size) throws Exception {
    RankRun[] all = emulate(cfg, size, batches(cfg), false);
    RankRun r0 = all[0];
    boolean replicatedSame = true;
    for (RankRun r : all) {
      assertEquals(Arrays.toString(r0.losses()), Arrays.toString(r.losses()), "every rank computes the same loss");
      replicatedSame &= r.replicatedSame();
    }

    int[][][] data = batches(cfg);
    float[][] logits = new float[1][];
    double loss = 0, logit = 0, weights = 0;
    try (Transformer ref = Transformer.create(cfg, Device.CPU); AdamW opt = new AdamW(ref.parameters())) {
      ref.initialize(42);
      for (int s = 0; s < STEPS; s++) {
        float l = TensorParallelMain.step(ref, opt, GradientReducer.NONE, data[s][0], data[s][1], 1e-3f, logits, 0);
        loss = Math.max(loss, Math.abs(l - r0.losses()[s]));
        if (s == 0) logit = TensorParallelMain.relativeDiff(r0.logits(), logits[0]);
      }
      for (Map.Entry<String, Tensor> e : ref.weights().entrySet()) {
        float[] x = e.getValue().toFloatArray(), y = r0.gathered().get(e.getKey());
        for (int i = 0; i < x.length; i++) weights = Math.max(weights, Math.abs(x[i] - y[i]));
      }
    }
    String measured = cfg.family().hfModelType() + " emulated tp " + size + " vs one process: step-1 logits max rel diff " + logit
        + ", loss max abs diff over " + STEPS + " steps " + loss + ", final weights max abs diff " + weights;
    assertTrue(replicatedSame, "replicated gradients differ between the ranks; " + measured);
    assertTrue(logit <= 1e-5, measured);
    assertTrue(loss <= 1e-4, measured);
    assertTrue(weights <= 1e-4, measured);
    assertTrue(logit > 0, "the split changes the summation order, so the logits differ in the last bits: " + measured);
    System.out.println(measured);
  }

  @Test
  void gpt2() throws Exception {
    compare(TensorParallelSplitTest.GPT2, 2);
  }

  @Test
  void gpt2OverFourRanksCutsItsVocabularyOf97Unevenly() throws Exception {
    compare(TensorParallelSplitTest.GPT2, 4);  // rows 24, 24, 24 and 25
  }

  @Test
  void llamaWithGqaAndAnUntiedHead() throws Exception {
    compare(TensorParallelSplitTest.LLAMA, 2);
  }
}

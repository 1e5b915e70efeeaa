package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Sequence parallelism without MPI: tp ranks as threads ({@link ThreadRanks}, sums in rank order) with and without
 * {@link Transformer#setSequenceParallel}, on the same batches (2 x 16 = 32 token rows, so 16 or 8 per rank: not a
 * multiple of the norms' 32-row gradient chunk, the case that is deterministic but not bit for bit): the first loss bit
 * for bit (the forward is the same), the losses of 10 steps and the gathered final weights within 1e-5, every rank the
 * same loss and the same replicated gradients (the norms' gradients put together identically on every rank). The MPI
 * runs where the cut is a multiple of 32 and the whole run is bit for bit are in {@link SequenceParallelTrainTest}.
 */
class SequenceParallelEmulationTest {
  private static void compare(ModelConfig cfg, int size, boolean recompute) throws Exception {
    int[][][] data = TensorParallelMain.batches(cfg, 10);
    TensorParallelEmulationTest.RankRun[] plain = TensorParallelEmulationTest.emulate(cfg, size, data, recompute, false);
    TensorParallelEmulationTest.RankRun[] split = TensorParallelEmulationTest.emulate(cfg, size, data, recompute, true);
    for (TensorParallelEmulationTest.RankRun r : split) {
      assertEquals(Arrays.toString(split[0].losses()), Arrays.toString(r.losses()), "every rank computes the same loss");
      assertTrue(r.replicatedSame(), "replicated gradients (the norms') differ between the ranks");
    }
    float[] a = plain[0].losses(), b = split[0].losses();
    assertEquals(a[0], b[0], 0f, "the first loss: the same forward");
    double loss = 0, weights = 0;
    for (int s = 0; s < a.length; s++) loss = Math.max(loss, Math.abs(a[s] - b[s]));
    for (Map.Entry<String, float[]> e : plain[0].gathered().entrySet()) {
      float[] x = e.getValue(), y = split[0].gathered().get(e.getKey());
      for (int i = 0; i < x.length; i++) weights = Math.max(weights, Math.abs(x[i] - y[i]));
    }
    String measured = cfg.family().hfModelType() + " tp " + size + (recompute ? " (recompute)" : "") + " with vs without "
        + "sequence parallelism: loss max abs diff over " + a.length + " steps " + loss + ", final weights max abs diff " + weights;
    System.out.println(measured);
    assertTrue(loss <= 1e-5 && weights <= 1e-5, measured);
    assertTrue(a[0] != a[a.length - 1], "the model trained");
  }

  @Test
  void gpt2() throws Exception {
    compare(TensorParallelSplitTest.GPT2, 2, false);
  }

  @Test
  void gpt2OverFourRanksWithRecomputation() throws Exception {
    compare(TensorParallelSplitTest.GPT2, 4, true);
  }

  @Test
  void llamaWithGqaAndAnUntiedHead() throws Exception {
    compare(TensorParallelSplitTest.LLAMA, 2, false);
  }

  @Test
  void tokenCutGivesTheFirstRanksOneMoreRow() {
    TensorParallel tp = new TensorParallel(3, 0);
    long[] starts = new long[4];
    for (int r = 0; r <= 3; r++) starts[r] = tp.tokenStart(33 + 2, r);
    assertEquals("[0, 12, 24, 35]", Arrays.toString(starts));  // 12, 12, 11
    assertEquals(11, tp.tokenRows(35, 2));
  }

  @Test
  void refusedWithoutTensorParallelRanks() {
    try (Transformer m = Transformer.create(TensorParallelSplitTest.GPT2, Device.CPU)) {
      IllegalStateException e = assertThrows(IllegalStateException.class,
          () -> m.setSequenceParallel(TensorParallelism.tokens(Communicator.single())));
      assertTrue(e.getMessage().contains("needs tensor-parallel ranks (--tp 2 or more)"), e.getMessage());
    }
  }
}

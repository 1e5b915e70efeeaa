package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tensor parallelism through real {@code mpirun -np 2} processes (skipped, with the reason, without MPI): both families
 * against one process from the same seed on the same batches ({@link TensorParallelMain}). Splitting the products changes
 * the summation order, so the comparison is within tolerances: the step-1 FP32 logits within 1e-5 relative, the losses
 * of 20 steps within 1e-4, the final weights gathered to rank 0 within 1e-4; the replicated parameters' gradients are
 * identical on both ranks, bit for bit. The run's losses and final model equal, bit for bit, those of the same steps
 * with the ranks as two threads ({@link TensorParallelEmulationTest}), whose sums follow the same rank order.
 */
class TensorParallelMpiTest {
  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
    MpiRunTest.tmp = tmp;  // its launcher keeps the native library cache there
  }

  @Test
  void tpTwoMatchesOneProcessForBothFamilies() throws Exception {
    MpiRunTest.Job j = MpiRunTest.mpirun(2, TensorParallelMain.class.getName(), List.of("20"), 300);
    assertEquals(0, j.exitCode(), j.output());
    Pattern p = Pattern.compile("TP (\\w+) logits=(\\S+) loss=(\\S+) weights=(\\S+) replicated=(\\w+) bits=(\\S+)");
    Matcher m = p.matcher(j.output());
    int families = 0;
    while (m.find()) {
      families++;
      String f = m.group(1);
      double logits = Double.parseDouble(m.group(2)), loss = Double.parseDouble(m.group(3)),
          weights = Double.parseDouble(m.group(4));
      String measured = f + ": measured step-1 logits max rel diff " + logits + ", loss max abs diff over 20 steps " + loss
          + ", final weights max abs diff " + weights;
      assertTrue(logits <= 1e-5, measured);
      assertTrue(loss <= 1e-4, measured);
      assertTrue(weights <= 1e-4, measured);
      assertEquals("identical", m.group(5), f + ": the replicated parameters' gradients differ between the ranks");
      assertEquals(emulatedBits(f.equals("gpt2") ? TensorParallelSplitTest.GPT2 : TensorParallelSplitTest.LLAMA),
          m.group(6), f + ": the mpirun run's losses and final model equal the two-thread emulation's bit for bit");
      System.out.println(measured);
    }
    assertEquals(2, families, j.output());
  }

  /**
   * {@link TensorParallelEmulationTest}'s threads on {@link TensorParallelMain}'s batches (Llama with recomputation, as
   * there), in {@link TensorParallelMain}'s {@code bits=} form: each step's loss, then a hash of the final model.
   */
  private static String emulatedBits(ModelConfig cfg) throws Exception {
    TensorParallelEmulationTest.RankRun r0 = TensorParallelEmulationTest.emulate(cfg, 2, TensorParallelMain.batches(cfg, 20),
        cfg.family() == Family.LLAMA)[0];
    StringBuilder b = new StringBuilder();
    for (float l : r0.losses()) b.append(Integer.toHexString(Float.floatToRawIntBits(l))).append(',');
    long h = 0;
    for (float[] w : r0.gathered().values()) h = TensorParallelMain.hash(h, w);
    return b.append(Long.toHexString(h)).toString();
  }
}

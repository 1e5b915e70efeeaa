package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
 * identical on both ranks, bit for bit.
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
    Pattern p = Pattern.compile("TP (\\w+) logits=(\\S+) loss=(\\S+) weights=(\\S+) replicated=(\\w+)");
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
      System.out.println(measured);
    }
    assertEquals(2, families, j.output());
  }
}

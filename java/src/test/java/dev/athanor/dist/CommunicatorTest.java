package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import org.junit.jupiter.api.Test;

/** Partitions and the single-process communicator (no MPI needed). */
class CommunicatorTest {
  @Test
  void partsCoverEveryElementOnceAndDifferByAtMostOne() {
    for (long n : new long[] {0, 1, 2, 3, 7, 1000, 100_003, Long.MAX_VALUE / 3}) {
      for (int size = 1; size <= 5; size++) {
        long covered = 0, min = Long.MAX_VALUE, max = 0;
        for (int r = 0; r < size; r++) {
          assertEquals(covered, Communicator.partStart(n, r, size), "n " + n + " size " + size + " rank " + r);
          long len = Communicator.partLength(n, r, size);
          covered += len;
          min = Math.min(min, len);
          max = Math.max(max, len);
        }
        assertEquals(n, covered);
        assertTrue(max - min <= 1, "n " + n + " size " + size);
      }
    }
    assertThrows(IllegalArgumentException.class, () -> Communicator.partStart(10, 3, 2));
  }

  @Test
  void singleProcessCollectivesAreIdentitiesAndCopies() {
    try (Scope s = Scope.open(); Communicator c = Communicator.single()) {
      assertEquals(0, c.rank());
      assertEquals(1, c.size());
      Tensor t = Tensor.of(new float[] {1, 2, 3}, 3);
      c.allReduceSum(t);
      c.broadcast(t, 0);
      c.barrier();
      assertArrayEquals(new float[] {1, 2, 3}, t.toFloatArray());
      Tensor out = Tensor.zeros(DType.F32, Device.CPU, 3);
      c.allGather(t, out);
      assertArrayEquals(new float[] {1, 2, 3}, out.toFloatArray());
      Tensor rs = Tensor.zeros(DType.F32, Device.CPU, 3);
      c.reduceScatter(Tensor.of(new float[] {4, 5, 6}, 3), rs);
      assertArrayEquals(new float[] {4, 5, 6}, rs.toFloatArray());
      Tensor gv = Tensor.zeros(DType.F32, Device.CPU, 3);
      c.allGatherV(t, gv, new long[] {3});
      assertArrayEquals(new float[] {1, 2, 3}, gv.toFloatArray());
      // accumulating: the first call overwrites (even NaN), later ones add
      Tensor acc = Tensor.of(new float[] {Float.NaN, -0f, 0f}, 3);
      c.reduceScatterAccumulate(Tensor.of(new float[] {1, -0f, -0f}, 3), acc, true);
      assertEquals(Float.floatToRawIntBits(-0f), Float.floatToRawIntBits(acc.toFloatArray()[1]), "a copy keeps -0");
      c.reduceScatterAccumulate(Tensor.of(new float[] {2, 3, 4}, 3), acc, false);
      assertArrayEquals(new float[] {3, 3, 4}, acc.toFloatArray());
    }
  }

  @Test
  void badArgumentsNameTheValue() {
    try (Scope s = Scope.open(); Communicator c = Communicator.single()) {
      Tensor t = Tensor.of(new float[] {1, 2, 3}, 3);
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> c.send(t, 1));
      assertTrue(e.getMessage().contains("rank 1 is outside [0, 1)"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> c.broadcast(t, 2));
      assertTrue(e.getMessage().contains("root rank 2"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> c.allGather(t, Tensor.zeros(DType.F32, Device.CPU, 4)));
      assertTrue(e.getMessage().contains("has 3 elements but rank 0's part of 4 elements"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> c.allGather(t, Tensor.zeros(DType.BF16, Device.CPU, 3)));
      assertTrue(e.getMessage().contains("F32") && e.getMessage().contains("BF16"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> c.allGatherV(t, Tensor.zeros(DType.F32, Device.CPU, 4), new long[] {3}));
      assertTrue(e.getMessage().contains("counts add up to 3 but out has 4 elements"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> c.allGatherV(t, Tensor.zeros(DType.F32, Device.CPU, 3), new long[] {3, 0}));
      assertTrue(e.getMessage().contains("counts has 2 entries, need one per rank (1)"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> c.reduceScatterAccumulate(t, Tensor.zeros(DType.F32, Device.CPU, 2), false));
      assertTrue(e.getMessage().contains("acc has 2 elements"), e.getMessage());
      Tensor strided = Tensor.zeros(DType.F32, Device.CPU, 2, 3).transpose(0, 1);
      e = assertThrows(IllegalArgumentException.class, () -> c.allReduceSum(strided));
      assertTrue(e.getMessage().contains("contiguous"), e.getMessage());
    }
  }
}

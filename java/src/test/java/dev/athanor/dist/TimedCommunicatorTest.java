package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import org.junit.jupiter.api.Test;

/** {@link TimedCommunicator} passes every call on unchanged and counts calls and bytes (time only as non-negative). */
class TimedCommunicatorTest {
  @Test
  void countsCallsAndBytesAndChangesNothing() {
    try (TimedCommunicator c = new TimedCommunicator(Communicator.single());
        Tensor a = Tensor.of(new float[] {1, 2, 3}, 3); Tensor b = Tensor.empty(DType.F32, Device.CPU, 3)) {
      TimedCommunicator.Counts before = c.counts();
      c.allReduceSum(a);
      c.allGather(a, b);
      c.broadcast(a, 0);
      c.barrier();
      TimedCommunicator.Counts d = c.counts().minus(before);
      assertArrayEquals(new float[] {1, 2, 3}, b.toFloatArray());
      assertArrayEquals(new float[] {1, 2, 3}, a.toFloatArray());
      assertEquals(4, d.calls());
      assertEquals(3 * 12, d.bytes(), "allReduce, allGather and broadcast from the root each hand over 12 bytes");
      assertEquals(0, d.sent(), "one process delivers nothing to other ranks");
      assertTrue(d.nanos() >= 0 && d.millis() >= 0);
      assertEquals("single process", c.describe());
      assertEquals(0, c.rank());
      assertEquals(1, c.size());
    }
  }
}

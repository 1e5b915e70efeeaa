package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import org.junit.jupiter.api.Test;

class CudaTest {
  @Test
  void availabilityAndReasonAgree() {
    String reason = Cuda.unavailableReason();
    assertEquals(reason.isEmpty(), Cuda.isAvailable());
    if (!NativeRuntime.builtWithCuda()) {
      assertFalse(Cuda.isAvailable());
      assertTrue(reason.toLowerCase().contains("cpu-only"), reason);
    }
    if (!Cuda.isAvailable()) assertEquals(0, Cuda.deviceCount());
  }

  @Test
  void unavailableCudaIsExplainedWhenUsed() {
    assumeFalse(Cuda.isAvailable(), "CUDA is available here");
    AthanorException e = assertThrows(AthanorException.class, () -> Cuda.checkDevice(0));
    assertTrue(e.getMessage().contains(Cuda.unavailableReason()), e.getMessage());
    assertThrows(AthanorException.class, () -> Stream.create(Device.cuda(0)));
    assertThrows(AthanorException.class, () -> Event.create(Device.cuda(0)));
  }

  @Test
  void cpuStreamsAndEventsAreNoOps() {
    Stream s = Stream.current(Device.CPU);
    assertEquals(0L, s.handle());
    s.synchronize();
    s.close(); // a context's stream: closing it does nothing
    assertFalse(s.isClosed());
    try (Stream t = Stream.create(Device.CPU); Event e = Event.create(Device.CPU)) {
      e.record(t);
      e.wait(t);
      e.synchronize();
      assertTrue(e.isComplete());
    }
  }

  @Test
  void cudaDevicesAnswer() {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
    int n = Cuda.deviceCount();
    assertTrue(n > 0);
    assertFalse(Cuda.deviceInfo(0).isEmpty());
    long[] mem = Cuda.memoryInfo(0);
    assertTrue(mem[0] > 0 && mem[1] >= mem[0], mem[0] + " / " + mem[1]);
    assertThrows(IllegalArgumentException.class, () -> Cuda.checkDevice(n));
    try (Stream s = Stream.create(Device.cuda(0)); Event e = Event.create(Device.cuda(0))) {
      assertTrue(s.handle() != 0);
      e.record(s);
      e.wait(Stream.current(Device.cuda(0)));
      e.synchronize();
      s.synchronize();
    }
    Stream.current(Device.cuda(0)).synchronize();
    Cuda.synchronize(0);
  }
}

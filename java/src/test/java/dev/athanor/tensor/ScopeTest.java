package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import org.junit.jupiter.api.Test;

class ScopeTest {
  @Test
  void closesEverythingCreatedInside() {
    long live0 = MemoryManager.global().liveBytes(Tier.HOST);
    Tensor a, b, c;
    try (Scope s = Scope.open()) {
      assertSame(s, Scope.current());
      a = Tensor.zeros(DType.F32, Device.CPU, 10);
      b = a.view(2, 5);
      c = b.transpose(0, 1).contiguous();
      assertEquals(4, s.size(), "a, b, the transposed view and its contiguous copy");
    }
    assertTrue(a.isClosed() && b.isClosed() && c.isClosed());
    assertNull(Scope.current());
    assertEquals(live0, MemoryManager.global().liveBytes(Tier.HOST));
  }

  @Test
  void keepMovesToTheEnclosingScopeAndDetachToNone() {
    Tensor kept, detached, inner;
    try (Scope outer = Scope.open()) {
      try (Scope s = Scope.open()) {
        inner = Tensor.zeros(DType.F32, Device.CPU, 4);
        kept = s.keep(Tensor.zeros(DType.F32, Device.CPU, 4));
        detached = Tensor.zeros(DType.F32, Device.CPU, 4).detach();
        assertEquals(1, s.size());
        assertEquals(1, outer.size());
      }
      assertTrue(inner.isClosed());
      assertFalse(kept.isClosed(), "kept survives the inner scope");
      assertFalse(detached.isClosed());
    }
    assertTrue(kept.isClosed(), "and closes with the outer one");
    assertFalse(detached.isClosed());
    detached.close();
  }

  @Test
  void keepWithoutEnclosingScopeHandsOwnershipToTheCaller() {
    Tensor t;
    try (Scope s = Scope.open()) {
      t = s.keep(Tensor.of(new float[] {1}));
    }
    assertFalse(t.isClosed());
    t.close();
  }

  @Test
  void earlyCloseLeavesTheScope() {
    try (Scope s = Scope.open()) {
      for (int i = 0; i < 1000; i++) Tensor.zeros(DType.F32, Device.CPU, 8).close();
      assertEquals(0, s.size(), "closed tensors do not pile up in a scope");
    }
  }

  @Test
  void otherThreadsAreNotCaptured() throws Exception {
    Tensor[] fromThread = new Tensor[1];
    try (Scope s = Scope.open()) {
      Thread th = new Thread(() -> fromThread[0] = Tensor.zeros(DType.F32, Device.CPU, 2));
      th.start();
      th.join();
      assertEquals(0, s.size());
    }
    assertFalse(fromThread[0].isClosed());
    fromThread[0].close();
  }
}

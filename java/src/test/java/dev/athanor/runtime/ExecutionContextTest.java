package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.OutOfBudgetException;
import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.lang.ref.WeakReference;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** Execution contexts: current per thread and device, makeCurrent scopes, closing, and the scratch arena (CUDA). */
class ExecutionContextTest {
  @Test
  void eachThreadHasItsOwnImplicitContext() throws Exception {
    ExecutionContext mine = ExecutionContext.current(Device.CPU);
    assertSame(mine, ExecutionContext.current(Device.CPU));
    assertTrue(mine.isImplicit());
    assertEquals(Device.CPU, mine.device());
    assertEquals(ExecutionContext.DEFAULT_COPY_STREAMS, mine.copyStreamCount());
    assertEquals(0, mine.scratchBytes());
    AtomicReference<ExecutionContext> other = new AtomicReference<>();
    Thread t = new Thread(() -> other.set(ExecutionContext.current(Device.CPU)), "ctx-test");
    t.start();
    t.join();
    assertNotSame(mine, other.get());
    assertTrue(other.get().toString().contains("implicit of thread ctx-test"), other.get().toString());
  }

  @Test
  void makeCurrentScopesNestAndRestore() {
    ExecutionContext implicit = ExecutionContext.current(Device.CPU);
    try (ExecutionContext a = ExecutionContext.create(Device.CPU); ExecutionContext b = ExecutionContext.create(Device.CPU, 3)) {
      assertFalse(a.isImplicit());
      assertEquals(3, b.copyStreamCount());
      assertNotSame(b.copyStream(0), b.copyStream(2));
      IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> b.copyStream(3));
      assertTrue(e.getMessage().contains("copy stream 3 out of range [0, 3)"), e.getMessage());
      try (ExecutionContext.Current ca = a.makeCurrent()) {
        assertSame(a, ExecutionContext.current(Device.CPU));
        assertSame(a.computeStream(), Stream.current(Device.CPU));
        try (ExecutionContext.Current cb = b.makeCurrent()) {
          assertSame(b, ExecutionContext.current(Device.CPU));
          IllegalStateException bad = assertThrows(IllegalStateException.class, ca::close);
          assertTrue(bad.getMessage().contains("innermost first"), bad.getMessage());
          assertSame(b, cb.context());
        }
        assertSame(a, ExecutionContext.current(Device.CPU));
        ca.close();
        ca.close(); // idempotent
        assertSame(implicit, ExecutionContext.current(Device.CPU));
      }
    }
  }

  @Test
  void aScopeClosesOnlyOnItsThread() throws Exception {
    try (ExecutionContext a = ExecutionContext.create(Device.CPU); ExecutionContext.Current c = a.makeCurrent()) {
      AtomicReference<Throwable> failure = new AtomicReference<>();
      AtomicReference<ExecutionContext> seen = new AtomicReference<>();
      Thread t = new Thread(() -> {
        seen.set(ExecutionContext.current(Device.CPU)); // another thread does not see this thread's scope
        try {
          c.close();
        } catch (Throwable e) {
          failure.set(e);
        }
      });
      t.start();
      t.join();
      assertNotSame(a, seen.get());
      assertTrue(failure.get() instanceof IllegalStateException, String.valueOf(failure.get()));
      assertSame(a, ExecutionContext.current(Device.CPU));
    }
  }

  @Test
  void opsRunInTheCurrentContext() {
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor x = Tensor.of(new float[] {1, 2, 3});
      ExecutionContext a = ExecutionContext.create(Device.CPU);
      try (ExecutionContext.Current c = a.makeCurrent()) {
        assertArrayEquals(new float[] {2, 4, 6}, Ops.scale(x, 2f).toFloatArray());
        a.close(); // ops now find a closed context: they must be using it
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Ops.scale(x, 2f));
        assertTrue(e.getMessage().contains("is closed"), e.getMessage());
      }
      assertArrayEquals(new float[] {3, 6, 9}, Ops.scale(x, 3f).toFloatArray());
    }
  }

  @Test
  void closingIsIdempotentAndAClosedImplicitContextIsReplaced() {
    ExecutionContext c = ExecutionContext.create(Device.CPU);
    Stream s = c.computeStream();
    c.close();
    c.close();
    assertTrue(c.isClosed());
    assertTrue(s.isClosed(), "its streams are destroyed");
    assertThrows(IllegalStateException.class, c::computeStream);
    assertThrows(IllegalStateException.class, c::makeCurrent);
    assertThrows(IllegalStateException.class, c::synchronize);
    ExecutionContext implicit = ExecutionContext.current(Device.CPU);
    implicit.close();
    ExecutionContext again = ExecutionContext.current(Device.CPU);
    assertNotSame(implicit, again);
    assertFalse(again.isClosed());
    assertThrows(IllegalArgumentException.class, () -> ExecutionContext.create(Device.CPU, 0));
  }

  @Test
  void aDeadThreadsContextIsReleased() throws Exception {
    AtomicReference<WeakReference<ExecutionContext>> ref = new AtomicReference<>();
    AtomicReference<Stream> stream = new AtomicReference<>();
    Device device = Cuda.isAvailable() ? Device.cuda(0) : Device.CPU;
    Thread t = new Thread(() -> {
      ExecutionContext c = ExecutionContext.current(device);
      ref.set(new WeakReference<>(c));
      stream.set(c.computeStream());
    });
    t.start();
    t.join();
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (!stream.get().isClosed() && System.nanoTime() < deadline) {
      System.gc();
      Thread.sleep(20);
    }
    assertTrue(ref.get().get() == null, "the context of a dead thread is unreachable");
    assertTrue(stream.get().isClosed(), "the Cleaner destroyed its stream");
  }

  @Test
  void cudaScratchGrowsOnDemandAndCountsInTheDeviceBudget() {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
    Device gpu = Device.cuda(0);
    MemoryManager mm = MemoryManager.global();
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor[] t = scratchOpTensors(gpu);
      float want = 0;
      for (float f : t[0].toFloatArray()) want += f;
      try (ExecutionContext ctx = ExecutionContext.create(gpu); ExecutionContext.Current c = ctx.makeCurrent()) {
        assertEquals(0, ctx.scratchBytes());
        long live0 = mm.liveBytes(gpu);
        runScratchOps(t);
        long scratch = ctx.scratchBytes();
        assumeTrue(scratch > 0, "no CUDA kernel of this build asked for scratch (ATH_ERR_SCRATCH)");
        assertEquals(0, scratch % ExecutionContext.SCRATCH_GRANULE, "rounded up to the granule");
        assertEquals(live0 + scratch, mm.liveBytes(gpu), "the arena is DEVICE storage: " + mm.report());
        assertEquals(want, t[1].item(), Math.abs(want) * 1e-5, "the retried op computed the sum");
        runScratchOps(t); // grown once: no further growth for the same shapes
        assertEquals(scratch, ctx.scratchBytes());
      }
      // Over budget: a fresh context cannot grow its arena, and says so naming the DEVICE tier.
      long saved = mm.budgetBytes(Tier.DEVICE);
      mm.emptyCache();
      mm.setBudget(Tier.DEVICE, mm.reservedBytes(gpu) + 4096);
      try (ExecutionContext ctx = ExecutionContext.create(gpu); ExecutionContext.Current c = ctx.makeCurrent()) {
        OutOfBudgetException e = assertThrows(OutOfBudgetException.class, () -> runScratchOps(t));
        assertTrue(e.getMessage().contains("DEVICE tier (cuda:0)"), e.getMessage());
      } finally {
        mm.setBudget(Tier.DEVICE, saved);
      }
    }
  }

  /** x, sum(x), then q, out, lse, dq, dk, dv of a causal attention (B 2, H 4, T 256, D 64): all preallocated. */
  private static Tensor[] scratchOpTensors(Device gpu) {
    Tensor x = Tensor.fromFloats(ramp(1 << 22), DType.F32, Device.CPU).to(gpu);
    Tensor q = Tensor.fromFloats(ramp(2 * 4 * 256 * 64), DType.F32, Device.CPU, 2, 4, 256, 64).to(gpu);
    return new Tensor[] {x, Tensor.empty(DType.F32, gpu, 1), q, Tensor.empty(DType.F32, gpu, 2, 4, 256, 64),
        Tensor.empty(DType.F32, gpu, 2, 4, 256), Tensor.empty(DType.F32, gpu, 2, 4, 256, 64),
        Tensor.empty(DType.F32, gpu, 2, 4, 256, 64), Tensor.empty(DType.F32, gpu, 2, 4, 256, 64)};
  }

  /** Ops whose CUDA kernels may take scratch (a reduction, attention backward), into preallocated tensors. */
  private static void runScratchOps(Tensor[] t) {
    Ops.sum(t[0], t[1]);
    Ops.attention(t[2], t[2], t[2], t[3], t[4], true, 0.125f);
    Ops.attentionBackward(t[2], t[2], t[2], t[3], t[4], t[3], t[5], t[6], t[7], true, 0.125f);
  }

  private static float[] ramp(int n) {
    float[] f = new float[n];
    for (int i = 0; i < n; i++) f[i] = ((i * 7919) % 1000) * 1e-3f - 0.5f;
    return f;
  }
}

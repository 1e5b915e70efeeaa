package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Events order streams: a copy on a copy stream, then a kernel on the compute stream that waits for it. */
class EventTest {
  static Stream<Device> devices() {
    return Stream.of(Device.CPU, Device.cuda(0));
  }

  private static void need(Device d) {
    if (d.isCuda()) assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
  }

  private static float[] ramp(int n) {
    float[] f = new float[n];
    for (int i = 0; i < n; i++) f[i] = (i % 1000) * 0.5f - 7;
    return f;
  }

  @ParameterizedTest
  @MethodSource("devices")
  void aCopyOnACopyStreamIsOrderedBeforeAKernelByAnEvent(Device device) {
    need(device);
    int n = 1 << 22; // 16 MiB: long enough that a kernel not waiting for the copy would read stale data
    float[] data = ramp(n);
    try (Scope scope = Scope.open(); ExecutionContext ctx = ExecutionContext.create(device, 2);
        ExecutionContext.Current current = ctx.makeCurrent(); Event copied = Event.create(device)) {
      assertEquals(scope, Scope.current());
      Tensor pinned = Tensor.of(data).to(Tier.HOST_PINNED);     // host side, allocated ahead of time
      Tensor dst = Tensor.empty(DType.F32, device, n);           // the buffer the kernel reads
      long allocations = MemoryManager.global().nativeAllocations(Tier.DEVICE);
      try (Event free = Event.create(device)) { // dst's memory may have been in use by the compute stream
        free.record(ctx.computeStream()).wait(ctx.copyStream(1));
      }
      dst.copyFromAsync(pinned, ctx.copyStream(1));
      copied.record(ctx.copyStream(1));
      copied.wait(ctx.computeStream());
      Tensor out = Ops.scale(dst, 2f);                           // on the compute stream, after the copy
      float[] got = out.toFloatArray();
      for (int i = 0; i < n; i += 4099) assertEquals(2 * data[i], got[i], "element " + i);
      assertEquals(2 * data[n - 1], got[n - 1]);
      assertTrue(copied.isComplete());
      if (device.isCuda()) {
        assertTrue(MemoryManager.global().nativeAllocations(Tier.DEVICE) <= allocations + 1, "only out may be new");
      }
      // And back: device -> pinned host on the copy stream after the compute stream's work.
      Tensor back = Tensor.empty(DType.F32, Device.CPU, Tier.HOST_PINNED, n);
      Event done = Event.create(device).record(ctx.computeStream());
      done.wait(ctx.copyStream(0));
      back.copyFromAsync(out, ctx.copyStream(0));
      ctx.copyStream(0).synchronize();
      assertArrayEquals(got, back.toFloatArray());
      done.close();
    }
  }

  @ParameterizedTest
  @MethodSource("devices")
  void timingEventsMeasureAndQuery(Device device) {
    need(device);
    try (Scope scope = Scope.open(); Event start = Event.create(device, true); Event end = Event.create(device, true);
        Event plain = Event.create(device)) {
      assertEquals(scope, Scope.current());
      dev.athanor.runtime.Stream s = dev.athanor.runtime.Stream.current(device);
      start.record(s);
      Tensor x = Tensor.zeros(DType.F32, device, 1 << 20);
      Ops.fill(x, 1f);
      end.record(s);
      float ms = Event.elapsedMillis(start, end);
      assertTrue(ms >= 0, "elapsed " + ms);
      assertTrue(end.isComplete());
      assertTrue(plain.isComplete(), "never recorded: complete");
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Event.elapsedMillis(start, plain));
      assertTrue(e.getMessage().contains("without timing"), e.getMessage());
    }
    Event closed = Event.create(device);
    closed.close();
    closed.close();
    assertThrows(IllegalStateException.class, closed::isComplete);
  }

  @ParameterizedTest
  @MethodSource("devices")
  void eventsCheckTheirStreams(Device device) {
    need(device);
    try (Event e = Event.create(device); dev.athanor.runtime.Stream other = dev.athanor.runtime.Stream.create(device)) {
      if (device.isCuda()) {
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
            () -> e.record(dev.athanor.runtime.Stream.current(Device.CPU)));
        assertTrue(bad.getMessage().contains("cannot be recorded on"), bad.getMessage());
      }
      other.close();
      IllegalStateException closed = assertThrows(IllegalStateException.class, () -> e.record(other));
      assertTrue(closed.getMessage().contains("closed"), closed.getMessage());
    }
  }
}

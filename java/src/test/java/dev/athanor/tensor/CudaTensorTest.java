package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.memory.AllocationFailedException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Host<->device movement; runs only where CUDA is available (the GPU check). */
class CudaTensorTest {
  private static final Device GPU = Device.cuda(0);

  @BeforeEach
  void needCuda() {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
  }

  private static float[] ramp(int n) {
    float[] f = new float[n];
    for (int i = 0; i < n; i++) f[i] = i * 0.25f - 3;
    return f;
  }

  @Test
  void roundTripAndAccounting() {
    MemoryManager mm = MemoryManager.global();
    long live0 = mm.liveBytes(GPU);
    float[] data = ramp(1000);
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor d = Tensor.of(data, 10, 100).to(GPU);
      assertEquals(Tier.DEVICE, d.tier());
      assertEquals(GPU, d.device());
      assertEquals(live0 + 4000, mm.liveBytes(GPU));
      assertArrayEquals(data, d.toFloatArray());
      assertArrayEquals(data, d.to(Device.CPU).toFloatArray());
      assertEquals(data[517], d.getFloat(5, 17));
      d.setFloat(42f, 9, 99);
      assertEquals(42f, d.getFloat(9, 99));
      assertTrue(d.to(GPU).sharesStorageWith(d));
      Tensor z = Tensor.zeros(DType.BF16, GPU, 3, 1000_000);
      assertEquals(0f, z.getFloat(2, 999_999));
    }
    assertEquals(live0, mm.liveBytes(GPU));
  }

  @Test
  void nonContiguousDeviceCopies() {
    float[] data = ramp(6 * 8);
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor host = Tensor.of(data, 6, 8);
      Tensor d = host.to(GPU);
      Tensor dt = d.transpose(0, 1).slice(0, 1, 7); // (6, 6) strided on the device
      Tensor want = host.transpose(0, 1).slice(0, 1, 7).contiguous();
      assertArrayEquals(want.toFloatArray(), dt.toFloatArray());
      Tensor dc = dt.contiguous();
      assertEquals(Tier.DEVICE, dc.tier());
      assertArrayEquals(want.toFloatArray(), dc.toFloatArray());
      // Strided device destination from a strided host source.
      Tensor dst = Tensor.zeros(DType.F32, GPU, 8, 6);
      dst.transpose(0, 1).copyFrom(host.slice(1, 0, 8));
      assertArrayEquals(host.transpose(0, 1).contiguous().toFloatArray(), dst.toFloatArray());
      // Device to device, contiguous.
      Tensor d2 = Tensor.empty(DType.F32, GPU, 6, 8);
      d2.copyFrom(d);
      assertArrayEquals(data, d2.toFloatArray());
    }
  }

  @Test
  void asyncCopiesOnAStream() {
    float[] data = ramp(1 << 16);
    try (Scope scope = Scope.open(); Stream stream = Stream.create(GPU)) {
      assertEquals(scope, Scope.current());
      Tensor pinned = Tensor.of(data).to(Tier.HOST_PINNED);
      Tensor d = pinned.toAsync(GPU, stream);
      Tensor back = d.toAsync(Device.CPU, stream);
      assertEquals(Tier.HOST_PINNED, back.tier());
      stream.synchronize();
      assertArrayEquals(data, back.toFloatArray());
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> pinned.toAsync(GPU, Stream.current(Device.CPU)));
      assertTrue(e.getMessage().contains("needs a stream on cuda:0"), e.getMessage());
    }
  }

  @Test
  void deviceTierRoundTripThroughDiskKeepsTheHomeDevice() {
    float[] data = ramp(5000);
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor d = Tensor.of(data).to(GPU);
      Tensor disk = d.to(Tier.DISK);
      assertEquals(GPU, disk.homeDevice());
      Tensor again = disk.to(Tier.DEVICE);
      assertEquals(GPU, again.device());
      assertArrayEquals(data, again.toFloatArray());
    }
  }

  @Test
  void overAllocationFailsWithTheBytesInUse() {
    long[] info = Cuda.memoryInfo(0);
    AllocationFailedException e = assertThrows(AllocationFailedException.class,
        () -> Tensor.empty(DType.F32, GPU, info[1] / 4 + (1L << 28)).close());
    assertTrue(e.getMessage().contains("DEVICE tier (cuda:0)"), e.getMessage());
    assertTrue(e.getMessage().contains("in use by Athanor"), e.getMessage());
  }
}

package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.OutOfBudgetException;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** Moving tensors between HOST, HOST_PINNED and DISK, with accounting and budgets. */
class TensorTierTest {
  private final MemoryManager mm = MemoryManager.global();

  private static float[] ramp(int n) {
    float[] f = new float[n];
    for (int i = 0; i < n; i++) f[i] = i * 0.5f - 7;
    return f;
  }

  @Test
  void hostToDiskToPinnedAndBack() throws Exception {
    long disk0 = mm.liveBytes(Tier.DISK), pinned0 = mm.liveBytes(Tier.HOST_PINNED);
    int n = 3 * 4096 + 5; // bytes not a multiple of 4096: direct prefix + buffered tail
    float[] data = ramp(n);
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor host = Tensor.of(data, n);
      Tensor disk = host.to(Tier.DISK);
      assertEquals(Tier.DISK, disk.tier());
      assertEquals(Device.CPU, disk.device());
      assertEquals(disk0 + 4L * n, mm.liveBytes(Tier.DISK));
      Path file = disk.storage().path();
      assertTrue(Files.exists(file));
      assertEquals(4L * n, Files.size(file));

      Tensor pinned = disk.to(Tier.HOST_PINNED);
      assertEquals(Tier.HOST_PINNED, pinned.tier());
      assertEquals(pinned0 + 4L * n, mm.liveBytes(Tier.HOST_PINNED));
      assertArrayEquals(data, pinned.toFloatArray());

      Tensor back = pinned.to(Tier.DISK).to(Tier.HOST);
      assertArrayEquals(data, back.toFloatArray());

      Tensor same = disk.to(Tier.DISK);
      assertNotSame(disk, same);
      assertTrue(same.sharesStorageWith(disk), "already there: shares");
      disk.close();
      assertTrue(Files.exists(file), "still referenced by 'same'");
      same.close();
      assertFalse(Files.exists(file), "file deleted with the last reference");
    }
    assertEquals(disk0, mm.liveBytes(Tier.DISK));
    assertEquals(pinned0, mm.liveBytes(Tier.HOST_PINNED));
  }

  @Test
  void diskTensorsAreNotAddressable() {
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor disk = Tensor.zeros(DType.F32, Device.CPU, Tier.DISK, 4, 4);
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> disk.getFloat(0, 0));
      assertTrue(e.getMessage().contains("DISK"), e.getMessage());
      e = assertThrows(IllegalStateException.class, disk::address);
      assertTrue(e.getMessage().contains("DISK"), e.getMessage());
      assertThrows(IllegalStateException.class, disk::toFloatArray);
      // New DISK files read as zeros.
      assertArrayEquals(new float[16], disk.to(Tier.HOST).toFloatArray());
      // to(Device.CPU) brings it to host memory.
      Tensor h = disk.to(Device.CPU);
      assertEquals(Tier.HOST, h.tier());
    }
  }

  @Test
  void stridedViewsOfDiskTensors() {
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      float[] data = ramp(6 * 7);
      Tensor disk = Tensor.of(data, 6, 7).to(Tier.DISK);
      // Read a transposed slice: staged through the span of the view.
      Tensor view = disk.transpose(0, 1).slice(0, 2, 5); // (3, 6): [i, j] = data[j * 7 + i + 2]
      Tensor host = view.to(Tier.HOST);
      for (int i = 0; i < 3; i++) for (int j = 0; j < 6; j++) {
        assertEquals(data[j * 7 + i + 2], host.getFloat(i, j));
      }
      // Write into a strided DISK view: read-patch-write of its span, neighbours untouched.
      Tensor col = disk.select(1, 3); // (6), stride 7
      col.copyFrom(Tensor.of(new float[] {100, 101, 102, 103, 104, 105}));
      float[] all = disk.to(Tier.HOST).toFloatArray();
      for (int r = 0; r < 6; r++) for (int c = 0; c < 7; c++) {
        assertEquals(c == 3 ? 100 + r : data[r * 7 + c], all[r * 7 + c], "element " + r + "," + c);
      }
      // contiguous() of a DISK view stays on DISK.
      Tensor cont = view.contiguous();
      assertEquals(Tier.DISK, cont.tier());
      assertTrue(cont.isContiguous());
      assertArrayEquals(view.to(Tier.HOST).toFloatArray(), cont.to(Tier.HOST).toFloatArray());
      assertEquals(100f, cont.to(Tier.HOST).getFloat(1, 0), "the view saw the column write");
    }
  }

  @Test
  void largeDiskRoundTripInBf16() {
    int n = 1 << 20; // 2 MiB of BF16
    float[] data = new float[n];
    for (int i = 0; i < n; i++) data[i] = (float) Math.sin(i * 0.001) * 3;
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor t = Tensor.fromFloats(data, DType.BF16, Device.CPU, 1024, 1024);
      float[] want = t.toFloatArray();
      float[] got = t.to(Tier.DISK).to(Tier.HOST).toFloatArray();
      assertArrayEquals(want, got);
    }
  }

  @Test
  void budgetsApplyToTensorAllocations() {
    long saved = mm.budgetBytes(Tier.DISK);
    long live0 = mm.liveBytes(Tier.DISK);
    mm.setBudget(Tier.DISK, live0 + 700);
    try (Tensor small = Tensor.of(new float[200])) {
      OutOfBudgetException e = assertThrows(OutOfBudgetException.class, () -> small.to(Tier.DISK).close());
      assertTrue(e.getMessage().contains("DISK tier budget exceeded"), e.getMessage());
      assertTrue(e.getMessage().contains("800 B"), e.getMessage());
      assertEquals(800, e.requestedBytes());
      assertEquals(live0 + 700, e.budgetBytes());
      try (Tensor fits = small.slice(0, 0, 100).to(Tier.DISK)) {
        assertEquals(Tier.DISK, fits.tier());
        assertEquals(live0 + 400, mm.liveBytes(Tier.DISK));
        assertThrows(OutOfBudgetException.class, () -> Tensor.empty(DType.F32, Device.CPU, Tier.DISK, 200).close());
      }
    } finally {
      mm.setBudget(Tier.DISK, saved);
    }
    assertEquals(live0, mm.liveBytes(Tier.DISK));
  }

  @Test
  void deviceTierNeedsACudaDevice() {
    try (Tensor t = Tensor.of(new float[] {1, 2})) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.to(Tier.DEVICE));
      assertTrue(e.getMessage().contains("to(Device.cuda(n))"), e.getMessage());
      assertEquals(null, t.homeDevice());
      IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class,
          () -> Tensor.empty(DType.F32, Device.CPU, Tier.DEVICE, 2));
      assertTrue(e2.getMessage().contains("cpu"), e2.getMessage());
      if (!dev.athanor.runtime.Cuda.isAvailable()) {
        dev.athanor.runtime.AthanorException e3 = assertThrows(dev.athanor.runtime.AthanorException.class,
            () -> Tensor.empty(DType.F32, Device.cuda(0), 4));
        assertTrue(e3.getMessage().contains(dev.athanor.runtime.Cuda.unavailableReason()), e3.getMessage());
        assertThrows(dev.athanor.runtime.AthanorException.class, () -> t.to(Device.cuda(0)));
      }
      Tensor h = t.to(Device.CPU);
      assertTrue(h.sharesStorageWith(t));
      h.close();
    }
  }
}

package dev.athanor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class MemoryManagerTest {
  private final MemoryManager mm = MemoryManager.global();

  @Test
  void parsesAndFormatsSizes() {
    assertEquals(123, MemoryManager.parseBytes("123"));
    assertEquals(64L << 10, MemoryManager.parseBytes("64k"));
    assertEquals(512L << 20, MemoryManager.parseBytes("512M"));
    assertEquals(8L << 30, MemoryManager.parseBytes("8g"));
    assertEquals(8L << 30, MemoryManager.parseBytes("8GiB"));
    assertEquals(3L << 29, MemoryManager.parseBytes("1.5g"));
    assertEquals(MemoryManager.UNLIMITED, MemoryManager.parseBytes("unlimited"));
    for (String bad : new String[] {"", "-1", "12q", "g", "lots"}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MemoryManager.parseBytes(bad));
      assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
    }
    assertEquals("1.5 MiB (1572864 bytes)", MemoryManager.formatBytes(1572864));
    assertEquals("100 B", MemoryManager.formatBytes(100));
    assertEquals("unlimited", MemoryManager.formatBytes(MemoryManager.UNLIMITED));
  }

  @Test
  void liveAndPeakFollowAllocations() {
    long live0 = mm.liveBytes(Tier.HOST);
    mm.resetPeak();
    Storage a = Storage.allocate(Tier.HOST, 10_000);
    Storage b = Storage.allocate(Tier.HOST, 5_000);
    assertEquals(live0 + 15_000, mm.liveBytes(Tier.HOST));
    assertEquals(live0 + 15_000, mm.peakBytes(Tier.HOST));
    a.close();
    assertEquals(live0 + 5_000, mm.liveBytes(Tier.HOST));
    assertEquals(live0 + 15_000, mm.peakBytes(Tier.HOST), "peak stays");
    b.close();
    assertEquals(live0, mm.liveBytes(Tier.HOST));
    mm.resetPeak();
    assertEquals(live0, mm.peakBytes(Tier.HOST));
    assertTrue(mm.report().contains("HOST"), mm.report());
  }

  @Test
  void overBudgetNamesTierRequestBudgetAndLive() {
    mm.emptyCache(); // HOST_PINNED is cached: the budget counts cached blocks too, so start without any
    long saved = mm.budgetBytes(Tier.HOST_PINNED);
    long live0 = mm.liveBytes(Tier.HOST_PINNED);
    mm.setBudget(Tier.HOST_PINNED, live0 + 6000);
    try (Storage held = Storage.allocate(Tier.HOST_PINNED, 4000)) {
      OutOfBudgetException e = assertThrows(OutOfBudgetException.class, () -> Storage.allocate(Tier.HOST_PINNED, 3000));
      String m = e.getMessage();
      assertTrue(m.contains("HOST_PINNED tier"), m);
      assertTrue(m.contains("requested " + MemoryManager.formatBytes(3000) + " with"), m);
      assertTrue(m.contains(MemoryManager.formatBytes(live0 + 6000) + " budget"), m);
      assertTrue(m.contains(MemoryManager.formatBytes(live0 + 4000) + " live"), m);
      assertTrue(m.contains("athanor.budget.host_pinned"), m);
      assertEquals(Tier.HOST_PINNED, e.tier());
      assertEquals(3000, e.requestedBytes());
      assertEquals(live0 + 4000, mm.liveBytes(Tier.HOST_PINNED), "a failed allocation leaves no trace");
      assertTrue(held.isAlive());
    } finally {
      mm.setBudget(Tier.HOST_PINNED, saved);
    }
    assertEquals(live0, mm.liveBytes(Tier.HOST_PINNED));
  }

  @Test
  void pinnedMemoryIsCachedAndCounted() {
    mm.emptyCache();
    long allocs0 = mm.nativeAllocations(Tier.HOST_PINNED), frees0 = mm.nativeFrees(Tier.HOST_PINNED);
    long live0 = mm.liveBytes(Tier.HOST_PINNED);
    for (int i = 0; i < 5; i++) {
      try (Storage s = Storage.allocate(Tier.HOST_PINNED, 1000)) {
        assertEquals(live0 + 1000, mm.liveBytes(Tier.HOST_PINNED), "live counts what was asked for");
        assertTrue(s.address() % 512 == 0, "blocks start native allocations");
      }
    }
    assertEquals(allocs0 + 1, mm.nativeAllocations(Tier.HOST_PINNED), "one native allocation, then the cache");
    assertEquals(1024, mm.cachedBytes(Tier.HOST_PINNED));
    assertEquals(mm.liveBytes(Tier.HOST_PINNED) == 0 ? 1024 : mm.reservedBytes(Tier.HOST_PINNED),
        mm.reservedBytes(Tier.HOST_PINNED));
    String r = mm.report();
    assertTrue(r.contains("HOST_PINNED") && r.contains("(cached 1.0 KiB (1024 bytes))"), r);
    assertTrue(r.contains("native allocations"), r);
    assertEquals(1024, mm.emptyCache());
    assertEquals(0, mm.cachedBytes(Tier.HOST_PINNED));
    assertEquals(frees0 + 1, mm.nativeFrees(Tier.HOST_PINNED));
    long host0 = mm.nativeAllocations(Tier.HOST);
    Storage.allocate(Tier.HOST, 10).close();
    assertEquals(host0 + 1, mm.nativeAllocations(Tier.HOST), "HOST is not cached: one native allocation each");
    assertEquals(0, mm.cachedBytes(Tier.HOST));
  }

  @Test
  void reclaimersAreAskedBeforeFailing() {
    long saved = mm.budgetBytes(Tier.HOST);
    long live0 = mm.liveBytes(Tier.HOST);
    Storage victim = Storage.allocate(Tier.HOST, 8000);
    AtomicLong asked = new AtomicLong();
    MemoryManager.Reclaimer r = (tier, device, bytes) -> {
      if (tier != Tier.HOST || !victim.isAlive()) return 0;
      asked.set(bytes);
      victim.close();
      return 8000;
    };
    mm.addReclaimer(r);
    mm.setBudget(Tier.HOST, live0 + 10_000);
    try (Storage s = Storage.allocate(Tier.HOST, 5000)) {
      assertEquals(5000, asked.get());
      assertTrue(!victim.isAlive());
      assertEquals(live0 + 5000, mm.liveBytes(Tier.HOST));
      assertTrue(s.isAlive());
    } finally {
      mm.removeReclaimer(r);
      mm.setBudget(Tier.HOST, saved);
      victim.close();
    }
  }

  @Test
  void badBudgetsAndTiersAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> mm.setBudget(Tier.HOST, -1));
    assertEquals(Tier.HOST_PINNED, Tier.parse("host-pinned"));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tier.parse("ssd"));
    assertTrue(e.getMessage().contains("'ssd'"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> Storage.allocate(Tier.DEVICE, 10));
    assertTrue(e.getMessage().contains("CUDA device"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> Storage.allocate(Tier.HOST, Device.cuda(0), 10));
    assertTrue(e.getMessage().contains("cuda:0"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> Storage.allocate(Tier.HOST, -5));
    assertTrue(e.getMessage().contains("-5"), e.getMessage());
  }

  @Test
  void failedAllocationIsNotCountedAsLive() {
    long saved = mm.budgetBytes(Tier.HOST);
    try (Storage held = Storage.allocate(Tier.HOST, 4000)) {
      long live0 = mm.liveBytes(Tier.HOST), allocations0 = mm.allocationCount();
      mm.resetPeak();
      // within an unlimited budget, but more than any machine's address space: the native allocation fails
      mm.setBudget(Tier.HOST, MemoryManager.UNLIMITED);
      AllocationFailedException e = assertThrows(AllocationFailedException.class, () -> Storage.allocate(Tier.HOST, 1L << 60));
      String m = e.getMessage();
      assertTrue(m.contains("could not allocate " + MemoryManager.formatBytes(1L << 60)), m);
      assertTrue(m.contains("(" + MemoryManager.formatBytes(live0) + " live in the tier"), m);
      assertFalse(m.contains("ATH_ERR") || m.contains("Exception"), m);
      assertEquals(live0, mm.liveBytes(Tier.HOST), "the failed request is not live");
      assertEquals(live0, mm.peakBytes(Tier.HOST), "nor part of the peak");
      assertEquals(allocations0, mm.allocationCount(), "nor counted as an allocation");

      // over the budget: the message's live bytes are those before the request
      mm.setBudget(Tier.HOST, live0 + 1000);
      OutOfBudgetException o = assertThrows(OutOfBudgetException.class, () -> Storage.allocate(Tier.HOST, 3000));
      assertTrue(o.getMessage().contains("with " + MemoryManager.formatBytes(live0) + " live"), o.getMessage());
      assertEquals(live0, o.liveBytes());
      assertEquals(live0, mm.liveBytes(Tier.HOST));
      assertTrue(held.isAlive());
    } finally {
      mm.setBudget(Tier.HOST, saved);
    }
  }

  @Test
  void budgetPropertiesAreCheckedByName() {
    assertNull(MemoryManager.unknownBudgetProperty(List.of("athanor.budget.host", "athanor.budget.host_pinned",
        "athanor.budget.device", "athanor.budget.disk", "java.home", "athanor.disk.dir")));
    assertEquals("unknown memory budget property -Dathanor.budget.hots (did you mean -Dathanor.budget.host?); the budget "
        + "properties are athanor.budget.device, athanor.budget.host_pinned, athanor.budget.host, athanor.budget.disk",
        MemoryManager.unknownBudgetProperty(List.of("athanor.budget.hots", "athanor.budget.host")));
    String far = MemoryManager.unknownBudgetProperty(List.of("athanor.budget.gpu"));
    assertTrue(far.startsWith("unknown memory budget property -Dathanor.budget.gpu; the budget properties are "), far);
  }

  @Test
  void machineMemoryIsReadFromMeminfo() {
    List<String> meminfo = List.of("MemTotal:       24683756 kB", "MemFree:        22929292 kB",
        "MemAvailable:   23965356 kB");
    assertEquals(23965356L * 1024, SystemMemory.parseMeminfo(meminfo, "MemAvailable"));
    assertEquals(24683756L * 1024, SystemMemory.parseMeminfo(meminfo, "MemTotal"));
    assertEquals(-1, SystemMemory.parseMeminfo(meminfo, "SwapTotal"));
    assertEquals(-1, SystemMemory.parseMeminfo(List.of("MemAvailable: lots"), "MemAvailable"));
  }
}

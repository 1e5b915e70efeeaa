package dev.athanor.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.Stream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The caching allocator's policy with a fake {@link RawMemory}: reuse, best fit with bounded waste, stream
 * ownership and markers, the budget on reserved bytes, emptying the cache under pressure, and no native
 * allocation in a repeated pattern. Streams are CPU placeholders (distinct objects); the fake's markers complete
 * only when the test says so.
 */
class CachingAllocatorTest {
  /** Native memory that is only bookkeeping: addresses count up; markers are numbers completed on demand. */
  static class FakeMemory implements RawMemory {
    long capacity = Long.MAX_VALUE; // native bytes before "out of memory"
    long used, next = 1 << 20;
    int allocations, frees, synchronizations;
    final Map<Long, Long> live = new HashMap<>();
    final List<int[]> markers = new ArrayList<>(); // {id, done}
    final Map<Object, Stream> markerStream = new HashMap<>();

    @Override
    public long allocate(long bytes) {
      if (used + bytes > capacity) throw new NativeException(NativeException.OOM, "fake: out of memory");
      long a = next;
      next += bytes + 4096;
      used += bytes;
      live.put(a, bytes);
      allocations++;
      return a;
    }

    @Override
    public void free(long address) {
      Long b = live.remove(address);
      if (b == null) throw new AssertionError("double or bad free of " + address);
      used -= b;
      frees++;
    }

    @Override
    public Object record(Stream stream) {
      int[] m = {markers.size(), 0};
      markers.add(m);
      markerStream.put(m, stream);
      return m;
    }

    @Override
    public boolean isComplete(Object marker) {
      return ((int[]) marker)[1] == 1;
    }

    @Override
    public void release(Object marker) {}

    @Override
    public void synchronize() {
      synchronizations++;
      completeAll();
    }

    @Override
    public boolean pinned() {
      return false;
    }

    void completeAll() {
      for (int[] m : markers) m[1] = 1;
    }

    void complete(Stream s) {
      for (int[] m : markers) if (markerStream.get(m) == s) m[1] = 1;
    }
  }

  private final MemoryManager mm = new MemoryManager(false);
  private final FakeMemory raw = new FakeMemory();
  private final CachingAllocator alloc = new CachingAllocator(Tier.DEVICE, Device.cuda(0), raw, mm);
  private final Stream s1 = Stream.create(Device.CPU), s2 = Stream.create(Device.CPU);

  @AfterEach
  void closeStreams() {
    s1.close();
    s2.close();
  }

  @Test
  void freedBlocksAreReusedWithoutNativeCalls() {
    CachingAllocator.Block a = alloc.allocate(1000, s1);
    assertEquals(1024, a.size, "rounded up to 512 bytes");
    alloc.free(a);
    assertEquals(1024, alloc.cachedBytes());
    CachingAllocator.Block b = alloc.allocate(700, s1); // same stream: at once, though its marker is pending
    assertEquals(a.address, b.address);
    assertEquals(1, raw.allocations);
    assertEquals(0, alloc.cachedBytes());
    assertEquals(1024, alloc.reservedBytes());
  }

  @Test
  void bestFitWithBoundedWaste() {
    List<CachingAllocator.Block> blocks = new ArrayList<>();
    for (long size : new long[] {8192, 2048, 4096, 65536}) blocks.add(alloc.allocate(size, s1));
    blocks.forEach(alloc::free);
    assertEquals(4096, alloc.allocate(3000, s1).size, "smallest block that fits");
    assertEquals(2048, alloc.allocate(2000, s1).size);
    CachingAllocator.Block small = alloc.allocate(100, s1); // the 8 KiB block would waste 7.5 KiB > 4 KiB
    assertEquals(512, small.size);
    assertEquals(5, raw.allocations);
    CachingAllocator.Block big = alloc.allocate(60_000, s1); // 64 KiB for 60,416: within a quarter
    assertEquals(65536, big.size);
    assertEquals(5, raw.allocations);
    assertEquals(8192, alloc.cachedBytes());
  }

  @Test
  void otherStreamsWaitForTheMarkerRecordedAtFree() {
    CachingAllocator.Block a = alloc.allocate(4096, s1);
    alloc.free(a);
    CachingAllocator.Block b = alloc.allocate(4096, s2); // s1's work at free time may still run: not reused
    assertNotEquals(a.address, b.address);
    assertEquals(2, raw.allocations);
    raw.complete(s1);
    CachingAllocator.Block c = alloc.allocate(4096, s2);
    assertEquals(a.address, c.address, "reused once s1's marker completed");
    alloc.free(c); // now owned by s2
    CachingAllocator.Block d = alloc.allocate(4096, s2);
    assertEquals(a.address, d.address);
    assertEquals(2, raw.allocations);
  }

  @Test
  void recordStreamDelaysReuseEvenOnTheOwningStream() {
    CachingAllocator.Block a = alloc.allocate(4096, s1);
    alloc.recordStream(a, s2); // e.g. an asynchronous copy on a copy stream read it
    alloc.free(a);
    assertEquals(2, raw.markers.size(), "one marker on the owner, one on the user");
    CachingAllocator.Block b = alloc.allocate(4096, s1);
    assertNotEquals(a.address, b.address, "s2 may still use it");
    raw.complete(s2);
    CachingAllocator.Block c = alloc.allocate(4096, s1);
    assertEquals(a.address, c.address, "s2 done; s1 is ordered by itself");
  }

  @Test
  void hostBlocksWaitForTheStreamsThatUsedThem() {
    CachingAllocator pinned = new CachingAllocator(Tier.HOST_PINNED, Device.CPU, raw, mm);
    CachingAllocator.Block a = pinned.allocate(4096, null);
    pinned.free(a);
    assertEquals(a.address, pinned.allocate(4096, null).address, "used by the host only: at once");
    CachingAllocator.Block b = pinned.allocate(4096, null);
    pinned.recordStream(b, s1); // a staging buffer read by an asynchronous copy
    pinned.free(b);
    assertNotEquals(b.address, pinned.allocate(4096, null).address);
    raw.complete(s1);
    assertEquals(b.address, pinned.allocate(4096, null).address);
  }

  @Test
  void budgetCountsReservedBytesAndEmptiesTheCacheFirst() {
    mm.setBudget(Tier.DEVICE, 16384);
    CachingAllocator.Block scratch = alloc.allocate(8192, s1); // e.g. a context's scratch arena
    mm.addLive(Tier.DEVICE, Device.cuda(0), 8192);
    CachingAllocator.Block t = alloc.allocate(4096, s1);
    alloc.free(t); // cached: still reserved
    assertEquals(12288, alloc.reservedBytes());
    CachingAllocator.Block big = alloc.allocate(8192, s1); // 8192 + 4096 cached + 8192 > budget: cache emptied
    assertEquals(1, raw.synchronizations);
    assertEquals(1, raw.frees);
    assertEquals(16384, alloc.reservedBytes());
    assertEquals(0, alloc.cachedBytes());
    OutOfBudgetException e = assertThrows(OutOfBudgetException.class, () -> alloc.allocate(100, s1));
    String m = e.getMessage();
    assertTrue(m.contains("DEVICE tier (cuda:0) budget exceeded"), m);
    assertTrue(m.contains("requested 100 B with " + MemoryManager.formatBytes(8192) + " live and 0 B cached"), m);
    assertTrue(m.contains(MemoryManager.formatBytes(16384) + " reserved"), m);
    assertTrue(m.contains(MemoryManager.formatBytes(16384) + " budget"), m);
    alloc.free(big);
    alloc.free(scratch);
  }

  @Test
  void reclaimersAreAskedAndTheirMemoryReused() {
    mm.setBudget(Tier.DEVICE, 8192);
    CachingAllocator.Block victim = alloc.allocate(8192, s1);
    boolean[] asked = {false};
    mm.addReclaimer((tier, device, bytes) -> {
      if (tier != Tier.DEVICE || asked[0]) return 0;
      asked[0] = true;
      alloc.free(victim);
      return 8192;
    });
    CachingAllocator.Block b = alloc.allocate(8000, s1);
    assertTrue(asked[0]);
    assertEquals(victim.address, b.address, "the reclaimed block, from the cache");
    assertEquals(1, raw.allocations);
  }

  @Test
  void nativeOutOfMemoryEmptiesTheCacheAndRetriesOnce() {
    raw.capacity = 12288;
    CachingAllocator.Block a = alloc.allocate(8192, s1);
    alloc.free(a);
    CachingAllocator.Block b = alloc.allocate(10000, s1); // 8192 + 10240 > capacity: empty, retry
    assertEquals(10240, b.size);
    assertEquals(1, raw.frees);
    assertEquals(2, raw.allocations);
    mm.addLive(Tier.DEVICE, Device.cuda(0), 10000);
    AllocationFailedException e = assertThrows(AllocationFailedException.class, () -> alloc.allocate(4096, s1));
    String m = e.getMessage();
    assertTrue(m.contains("failed after emptying the cache and one retry"), m);
    assertTrue(m.contains(MemoryManager.formatBytes(10000) + " in use by Athanor and 0 B cached"), m);
    assertTrue(m.contains("fake: out of memory"), m);
    assertEquals(10240, alloc.reservedBytes(), "a failed allocation leaves no trace");
  }

  @Test
  void otherNativeFailuresPropagate() {
    RawMemory broken = new FakeMemory() {
      @Override
      public long allocate(long bytes) {
        throw new NativeException(NativeException.CUDA, "fake: illegal address");
      }
    };
    CachingAllocator a = new CachingAllocator(Tier.DEVICE, Device.cuda(0), broken, mm);
    NativeException e = assertThrows(NativeException.class, () -> a.allocate(10, s1));
    assertEquals(NativeException.CUDA, e.status());
    assertEquals(0, a.reservedBytes());
  }

  @Test
  void aRepeatedPatternAllocatesNothingNativeAfterTheFirstRound() {
    long[] sizes = {4 * 3000, 50_000, 512, 1 << 20, 4 * 3000, 77, 300_000, 50_000};
    long afterFirst = -1;
    for (int round = 0; round < 10; round++) {
      List<CachingAllocator.Block> live = new ArrayList<>();
      for (int i = 0; i < sizes.length; i++) {
        live.add(alloc.allocate(sizes[i], s1));
        if (i % 3 == 2) alloc.free(live.remove(0)); // interleaved frees, like temporaries in a step
      }
      CachingAllocator.Block scratch = alloc.allocate(2 << 20, s2); // another stream's buffer each step
      live.forEach(alloc::free);
      alloc.free(scratch);
      raw.complete(s2); // s2's work of the step finished before the next one
      if (round == 0) afterFirst = raw.allocations;
    }
    assertEquals(afterFirst, raw.allocations, "no native allocation after the first round");
    assertEquals(0, raw.frees);
    assertEquals(alloc.reservedBytes(), alloc.cachedBytes(), "everything freed is cached");
    assertEquals(alloc.reservedBytes(), alloc.emptyCache());
    assertEquals(0, alloc.reservedBytes());
    assertTrue(raw.live.isEmpty(), "every native block freed");
  }
}

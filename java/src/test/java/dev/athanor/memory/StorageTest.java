package dev.athanor.memory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.NativeRuntime;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

@SuppressWarnings("restricted")
class StorageTest {
  private final MemoryManager mm = MemoryManager.global();

  @Test
  void closeIsIdempotentAndUseAfterCloseNamesTheStorage() {
    Storage s = Storage.allocate(Tier.HOST, 256);
    assertEquals(1, s.refCount());
    long a = s.address();
    assertTrue(a != 0 && a % 64 == 0);
    s.close();
    s.close();
    assertFalse(s.isAlive());
    IllegalStateException e = assertThrows(IllegalStateException.class, s::address);
    assertTrue(e.getMessage().contains("storage#" + s.id()), e.getMessage());
    assertTrue(e.getMessage().contains("after it was closed"), e.getMessage());
    assertThrows(IllegalStateException.class, s::retain);
    assertThrows(IllegalStateException.class, () -> s.read(0, 64, 8));
    assertThrows(IllegalStateException.class, s::release);
  }

  @Test
  void referencesKeepItAlive() {
    long live0 = mm.liveBytes(Tier.HOST);
    Storage s = Storage.allocate(Tier.HOST, 5000);
    s.retain();
    s.close();
    assertTrue(s.isAlive());
    assertEquals(live0 + 5000, mm.liveBytes(Tier.HOST));
    s.close(); // the owner's reference was already given back: no effect
    assertTrue(s.isAlive());
    s.release();
    assertFalse(s.isAlive());
    assertEquals(live0, mm.liveBytes(Tier.HOST));
  }

  @Test
  void concurrentReleaseFreesExactlyOnce() throws Exception {
    long live0 = mm.liveBytes(Tier.HOST);
    for (int round = 0; round < 20; round++) {
      Storage s = Storage.allocate(Tier.HOST, 4096);
      int threads = 8;
      for (int i = 0; i < threads; i++) s.retain();
      CountDownLatch go = new CountDownLatch(1);
      List<Thread> ts = new ArrayList<>();
      for (int i = 0; i < threads; i++) {
        Thread t = new Thread(() -> {
          try {
            go.await();
          } catch (InterruptedException e) {
            return;
          }
          s.release();
          s.close(); // racing idempotent closes of the owner reference
        });
        t.start();
        ts.add(t);
      }
      go.countDown();
      for (Thread t : ts) t.join();
      assertFalse(s.isAlive());
      assertEquals(0, s.refCount());
    }
    assertEquals(live0, mm.liveBytes(Tier.HOST));
  }

  @Test
  void hostTransfersAreBoundsChecked() {
    try (Storage s = Storage.allocate(Tier.HOST, 100)) {
      long buf = NativeRuntime.hostAllocAligned(100, 64);
      try {
        IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> s.read(50, buf, 60));
        assertTrue(e.getMessage().contains("60 bytes at offset 50"), e.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> s.write(-1, buf, 1));
        assertThrows(IllegalArgumentException.class, () -> s.write(0, 0, 1));
      } finally {
        NativeRuntime.hostFreeAligned(buf);
      }
    }
  }

  @Test
  void diskStorageIsARealFileDeletedOnClose() throws Exception {
    long live0 = mm.liveBytes(Tier.DISK);
    int n = 3 * 4096 + 77;
    Storage s = Storage.allocate(Tier.DISK, n);
    Path p = s.path();
    assertTrue(p.startsWith(mm.diskDirectory()), p + " in " + mm.diskDirectory());
    assertTrue(Files.exists(p));
    assertEquals(n, Files.size(p));
    assertEquals(live0 + n, mm.liveBytes(Tier.DISK));
    IllegalStateException noAddr = assertThrows(IllegalStateException.class, s::address);
    assertTrue(noAddr.getMessage().contains("DISK"), noAddr.getMessage());
    long buf = NativeRuntime.hostAllocAligned(n, 4096), back = NativeRuntime.hostAllocAligned(n, 4096);
    try {
      MemorySegment b = MemorySegment.ofAddress(buf).reinterpret(n);
      for (int i = 0; i < n; i++) b.set(ValueLayout.JAVA_BYTE, i, (byte) (i % 251));
      s.write(0, buf, n);
      s.read(0, back, n);
      assertArrayEquals(b.toArray(ValueLayout.JAVA_BYTE), MemorySegment.ofAddress(back).reinterpret(n).toArray(ValueLayout.JAVA_BYTE));
      s.read(4097, back, 10); // unaligned partial read
      for (int i = 0; i < 10; i++) assertEquals((byte) ((4097 + i) % 251), MemorySegment.ofAddress(back).reinterpret(10).get(ValueLayout.JAVA_BYTE, i));
    } finally {
      NativeRuntime.hostFreeAligned(buf);
      NativeRuntime.hostFreeAligned(back);
    }
    s.close();
    assertFalse(Files.exists(p), "file deleted on close");
    assertEquals(live0, mm.liveBytes(Tier.DISK));
  }

  @Test
  void pinnedWithoutCudaFallsBackToHostMemory() {
    try (Storage s = Storage.allocate(Tier.HOST_PINNED, 100)) {
      assertEquals(Tier.HOST_PINNED, s.tier());
      assertTrue(s.address() != 0);
      if (!dev.athanor.runtime.Cuda.isAvailable()) assertFalse(s.isPinned());
    }
  }

  /** Allocates and forgets a storage; returns its id. Kept out of line so nothing on the stack holds it. */
  private static long leakOne(int bytes) {
    Storage s = Storage.allocate(Tier.HOST, bytes);
    return s.id();
  }

  @Test
  void cleanerReportsAndFreesLeaks() throws Exception {
    Logger log = Logger.getLogger("dev.athanor.memory.Storage");
    List<String> messages = java.util.Collections.synchronizedList(new ArrayList<>());
    List<Throwable> thrown = java.util.Collections.synchronizedList(new ArrayList<>());
    Handler h = new Handler() {
      @Override
      public void publish(LogRecord r) {
        messages.add(r.getMessage());
        if (r.getThrown() != null) thrown.add(r.getThrown());
      }

      @Override
      public void flush() {}

      @Override
      public void close() {}
    };
    log.addHandler(h);
    try {
      long leaks0 = mm.leakCount();
      long live0 = mm.liveBytes(Tier.HOST);
      long id = leakOne(12_345);
      assertEquals(live0 + 12_345, mm.liveBytes(Tier.HOST));
      String tag = "storage#" + id + " ";
      long deadline = System.nanoTime() + 10_000_000_000L;
      while (System.nanoTime() < deadline && messages.stream().noneMatch(m -> m.contains(tag))) {
        System.gc();
        Thread.sleep(20);
      }
      Assumptions.assumeTrue(messages.stream().anyMatch(m -> m.contains(tag)),
          "the GC did not collect the leaked storage within 10 s; cannot observe the Cleaner here");
      String m = messages.stream().filter(x -> x.contains(tag)).findFirst().orElseThrow();
      assertTrue(m.startsWith("LEAK"), m);
      if (Boolean.getBoolean(Storage.DEBUG_LEAKS_PROPERTY)) { // the allocation site comes with the report
        Throwable site = thrown.stream().filter(t -> t.getMessage().contains("storage#" + id)).findFirst().orElseThrow();
        assertTrue(java.util.Arrays.stream(site.getStackTrace()).anyMatch(f -> f.getMethodName().equals("leakOne")),
            "the stack names the leaking method");
      } else {
        assertTrue(m.contains(Storage.DEBUG_LEAKS_PROPERTY), "says how to get allocation sites: " + m);
      }
      assertTrue(m.contains("12.1 KiB (12345 bytes)"), m);
      assertTrue(mm.leakCount() > leaks0);
      // The Cleaner freed it: the bytes left the tier (other tests' leaks could only lower it further).
      assertTrue(mm.liveBytes(Tier.HOST) <= live0, mm.liveBytes(Tier.HOST) + " > " + live0);
    } finally {
      log.removeHandler(h);
    }
  }
}

package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

@SuppressWarnings("restricted")
class NativeRuntimeTest {
  @TempDir Path tmp;

  private static MemorySegment seg(long address, long bytes) {
    return MemorySegment.ofAddress(address).reinterpret(bytes);
  }

  @Test
  void libraryInfo() {
    assertFalse(NativeRuntime.version().isEmpty());
    assertTrue(NativeRuntime.cpuThreads() >= 1);
    assertTrue(NativeRuntime.cpuIsa().matches("avx512|avx2|scalar"), NativeRuntime.cpuIsa());
    assertTrue(NativeRuntime.kernels("cpu").contains("gemm"));
    NativeException e = assertThrows(NativeException.class, () -> NativeRuntime.setCpuIsa("sse9"));
    assertEquals(NativeException.INVALID, e.status());
    assertTrue(e.getMessage().contains("sse9"), e.getMessage());
    // checked in Java, with the limit in words rather than a native status
    assertEquals("CPU threads must be in [1, 4096], got 0",
        assertThrows(IllegalArgumentException.class, () -> NativeRuntime.setCpuThreads(0)).getMessage());
  }

  @Test
  void alignedHostMemory() {
    long p = NativeRuntime.hostAllocAligned(10_000, 4096);
    try {
      assertEquals(0, p % 4096);
      seg(p, 10_000).fill((byte) 7);
    } finally {
      NativeRuntime.hostFreeAligned(p);
    }
    long q = NativeRuntime.hostAlloc(100);
    assertEquals(0, q % 64);
    NativeRuntime.hostFree(q);
    assertThrows(IllegalArgumentException.class, () -> NativeRuntime.hostAllocAligned(10, 3000));
    assertThrows(IllegalArgumentException.class, () -> NativeRuntime.hostAllocAligned(-1, 64));
  }

  @Test
  void stridedCopyTransposesAndCoalesces() {
    // src (3, 4) row-major; dst = its transpose (4, 3) written contiguously (ath_cpu_copy).
    long src = NativeRuntime.hostAllocAligned(48, 64), dst = NativeRuntime.hostAllocAligned(48, 64);
    ExecutionContext cpu = ExecutionContext.current(Device.CPU);
    try {
      for (int i = 0; i < 12; i++) seg(src, 48).setAtIndex(ValueLayout.JAVA_INT, i, i);
      cpu.run(Kernel.COPY, new KernelArgs.Copy(2, 4, new long[] {3, 4}, dst, new long[] {1, 3}, src, new long[] {4, 1}));
      int[] out = seg(dst, 48).toArray(ValueLayout.JAVA_INT);
      // dst[j * 3 + i] = src[i * 4 + j]
      assertArrayEquals(new int[] {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}, out);
      // 2-byte elements, contiguous in both (coalesces to one memcpy), with a size-1 dim in the middle.
      seg(dst, 48).fill((byte) 0);
      cpu.run(Kernel.COPY, new KernelArgs.Copy(3, 2, new long[] {2, 1, 12}, dst, new long[] {12, 99, 1}, src,
          new long[] {12, 7, 1}));
      assertArrayEquals(seg(src, 48).toArray(ValueLayout.JAVA_SHORT), seg(dst, 48).toArray(ValueLayout.JAVA_SHORT));
    } finally {
      NativeRuntime.hostFreeAligned(src);
      NativeRuntime.hostFreeAligned(dst);
    }
    NativeException e = assertThrows(NativeException.class, () -> cpu.run(Kernel.COPY,
        new KernelArgs.Copy(1, 4, new long[] {2}, 0, new long[] {1}, 8, new long[] {1})));
    assertEquals(NativeException.INVALID, e.status());
  }

  @Test
  void fileRoundTripAlignedAndUnaligned() throws Exception {
    Path f = tmp.resolve("data.bin");
    long fd = NativeRuntime.fileOpen(f.toString(), true);
    int big = 3 * 4096 * 16 + 123; // aligned prefix goes direct (when supported), the tail buffered
    long buf = NativeRuntime.hostAllocAligned(big, 4096), back = NativeRuntime.hostAllocAligned(big, 4096);
    try {
      MemorySegment b = seg(buf, big);
      for (int i = 0; i < big; i++) b.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7 + 1));
      boolean direct = NativeRuntime.fileIsDirect(fd);
      NativeRuntime.fileTruncate(fd, big + 5000);
      NativeRuntime.fileWrite(fd, buf, big, 4096);           // aligned address and offset
      NativeRuntime.fileWrite(fd, buf + 3, 1000, big + 4096 - 1000 + 900); // unaligned everything
      NativeRuntime.fileSync(fd);
      NativeRuntime.fileRead(fd, back, big, 4096);
      byte[] expect = b.toArray(ValueLayout.JAVA_BYTE);
      byte[] got = seg(back, big).toArray(ValueLayout.JAVA_BYTE);
      // The second write overlapped the last 100 bytes of the first; compare up to there.
      for (int i = 0; i < big - 100; i++) assertEquals(expect[i], got[i], "byte " + i);
      NativeRuntime.fileRead(fd, back + 1, 1000, big + 4096 - 100);
      for (int i = 0; i < 1000; i++) assertEquals(expect[3 + i], seg(back + 1, 1000).get(ValueLayout.JAVA_BYTE, i), "byte " + i);
      assertEquals(big + 5000, Files.size(f));
      // Whether O_DIRECT is available depends on the file system; where it is, the aligned transfers above
      // went through it without an EINVAL fallback (which would have switched the handle to buffered).
      assertEquals(direct, NativeRuntime.fileIsDirect(fd));
    } finally {
      NativeRuntime.fileClose(fd);
      NativeRuntime.hostFreeAligned(buf);
      NativeRuntime.hostFreeAligned(back);
    }
  }

  @Test
  void fileErrorsNameThePathAndTheCause() throws Exception {
    Path missing = tmp.resolve("missing/none.bin");
    NativeException e = assertThrows(NativeException.class, () -> NativeRuntime.fileOpen(missing.toString(), false));
    assertEquals(NativeException.IO, e.status());
    assertTrue(e.getMessage().contains(missing.toString()), e.getMessage());
    assertTrue(e.getMessage().contains("No such file"), e.getMessage());

    Path f = tmp.resolve("short.bin");
    Files.write(f, new byte[100]);
    long fd = NativeRuntime.fileOpen(f.toString(), false);
    long buf = NativeRuntime.hostAllocAligned(8192, 4096);
    try {
      NativeException eof = assertThrows(NativeException.class, () -> NativeRuntime.fileRead(fd, buf, 200, 0));
      assertTrue(eof.getMessage().contains("end of file"), eof.getMessage());
      assertTrue(eof.getMessage().contains(f.toString()), eof.getMessage());
      assertTrue(eof.getMessage().contains("got 100"), eof.getMessage());
      // Aligned read past the end: the direct part comes back short and the buffered rest reports it too.
      NativeException eof2 = assertThrows(NativeException.class, () -> NativeRuntime.fileRead(fd, buf, 8192, 0));
      assertTrue(eof2.getMessage().contains("end of file"), eof2.getMessage());
    } finally {
      NativeRuntime.fileClose(fd);
      NativeRuntime.hostFreeAligned(buf);
    }
    NativeException closed = assertThrows(NativeException.class, () -> NativeRuntime.fileClose(fd));
    assertEquals(NativeException.INVALID, closed.status());
    assertTrue(closed.getMessage().contains("handle " + fd), closed.getMessage());
    assertThrows(NativeException.class, () -> NativeRuntime.fileWrite(fd, 64, 8, 0));
    assertThrows(IllegalArgumentException.class, () -> NativeRuntime.fileRead(fd, 0, 8, 0));
    assertThrows(IllegalArgumentException.class, () -> NativeRuntime.fileRead(fd, 64, 8, -1));
    assertThrows(IllegalArgumentException.class, () -> NativeRuntime.fileOpen(tmp + "/a\0b", true));
  }

  @Test
  void cudaCallsFailCleanlyWithoutCuda() {
    org.junit.jupiter.api.Assumptions.assumeFalse(Cuda.isAvailable(), "CUDA is available here");
    NativeException e = assertThrows(NativeException.class, () -> NativeRuntime.cudaMalloc(0, 16));
    assertTrue(e.getMessage().contains("cudaMalloc") || e.getMessage().contains("cuda"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> NativeRuntime.cudaMemcpyAsync(0, 8, 8, NativeRuntime.H2D, 1));
  }
}

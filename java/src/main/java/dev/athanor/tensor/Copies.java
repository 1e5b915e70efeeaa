package dev.athanor.tensor;

import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.NativeRuntime;
import java.lang.foreign.MemorySegment;

/**
 * The one copy routine behind every tensor data movement: between any two layouts of the same shape and
 * dtype, on any tiers. A layout is a storage (or a raw contiguous host buffer) plus offset and strides.
 *
 * <p>Strategy, most direct first:
 * <ol>
 *   <li>both sides host-addressable (HOST, HOST_PINNED, raw buffers): one host strided copy (native), or a
 *       memcpy when both are contiguous; overlapping ranges are staged through a temporary;
 *   <li>both contiguous: one bulk transfer (memcpy, cudaMemcpy H2D/D2H/D2D, or file read/write);
 *   <li>otherwise stage through host memory: the source's byte span (from its first to its last element)
 *       is read into a temporary, rearranged on the host, and written to the destination; a non-contiguous
 *       destination that is not host-addressable is read, patched and written back over its span (so do not
 *       write concurrently into the gaps of such a destination).
 * </ol>
 * Temporaries are 4096-byte aligned host buffers (O_DIRECT-friendly), freed before returning, and not
 * accounted in any tier. Both storages are retained for the duration, so a concurrent close fails cleanly
 * instead of freeing memory under the copy.
 */
@SuppressWarnings("restricted") // host memcpy through MemorySegment over retained storage
final class Copies {
  private Copies() {}

  /** A strided block: storage (null for a raw host buffer at {@code raw}), element offset and strides. */
  record Layout(Storage storage, long raw, long offset, long[] strides) {
    static Layout of(Tensor t) {
      return new Layout(t.storage(), 0, t.offset(), t.strides());
    }

    static Layout raw(long address, long[] shape) {
      return new Layout(null, address, 0, Tensor.contiguousStrides(shape));
    }

    boolean hostAddressable() {
      return storage == null || storage.tier().isHostAddressable();
    }

    boolean isDevice() {
      return storage != null && storage.tier() == Tier.DEVICE;
    }

    /** Address of element [0,...,0] (host or device pointer). */
    long address(int es) {
      return (storage == null ? raw : storage.address()) + offset * es;
    }
  }

  static void copy(Tensor dst, Tensor src) {
    copy(Layout.of(dst), Layout.of(src), src.shape(), src.dtype().byteSize());
  }

  /** Packs {@code src} into a contiguous host buffer at {@code hostDst} (numel * elementSize bytes). */
  static void toHost(long hostDst, Tensor src) {
    copy(Layout.raw(hostDst, src.shape()), Layout.of(src), src.shape(), src.dtype().byteSize());
  }

  /** Fills {@code dst} from a contiguous host buffer at {@code hostSrc}. */
  static void fromHost(Tensor dst, long hostSrc) {
    copy(Layout.of(dst), Layout.raw(hostSrc, dst.shape()), dst.shape(), dst.dtype().byteSize());
  }

  static void copy(Layout dst, Layout src, long[] shape, int es) {
    long n = Tensor.product(shape);
    if (n == 0) return;
    if (dst.storage() != null) dst.storage().retain();
    try {
      if (src.storage() != null) src.storage().retain();
      try {
        copyRetained(dst, src, shape, es, n);
      } finally {
        if (src.storage() != null) src.storage().release();
      }
    } finally {
      if (dst.storage() != null) dst.storage().release();
    }
  }

  private static void copyRetained(Layout dst, Layout src, long[] shape, int es, long n) {
    long bytes = n * es;
    long[] cstr = Tensor.contiguousStrides(shape);
    boolean dstC = Tensor.isContiguous(shape, dst.strides());
    boolean srcC = Tensor.isContiguous(shape, src.strides());
    boolean overlap = overlaps(dst, src, shape, es);

    if (dst.hostAddressable() && src.hostAddressable() && !overlap) {
      hostCopy(dst.address(es), dst.strides(), src.address(es), src.strides(), shape, es, dstC && srcC, bytes);
      return;
    }
    if (dstC && srcC && !overlap) {
      if (src.hostAddressable()) {
        dst.storage().write(dst.offset() * es, src.address(es), bytes);
        return;
      }
      if (dst.hostAddressable()) {
        src.storage().read(src.offset() * es, dst.address(es), bytes);
        return;
      }
      if (dst.isDevice() && src.isDevice()) {
        NativeRuntime.cudaMemcpy(dst.address(es), src.address(es), bytes, NativeRuntime.D2D);
        return;
      }
    }
    // Stage through host memory.
    long tmpSrc = 0, tmpDst = 0;
    try {
      long srcAddr;
      if (src.hostAddressable() && !overlap) {
        srcAddr = src.address(es);
      } else if (src.hostAddressable()) { // overlapping host copy: pack the source first
        tmpSrc = alloc(bytes);
        hostCopy(tmpSrc, cstr, src.address(es), src.strides(), shape, es, srcC, bytes);
        srcAddr = tmpSrc;
        src = Layout.raw(tmpSrc, shape);
        srcC = true;
      } else {
        long[] span = span(src, shape, es);
        tmpSrc = alloc(span[1]);
        src.storage().read(span[0], tmpSrc, span[1]);
        srcAddr = tmpSrc + (src.offset() * es - span[0]);
      }
      if (dst.hostAddressable()) {
        hostCopy(dst.address(es), dst.strides(), srcAddr, src.strides(), shape, es, dstC && srcC, bytes);
      } else if (dstC) {
        long from = srcAddr;
        if (!srcC) {
          tmpDst = alloc(bytes);
          hostCopy(tmpDst, cstr, srcAddr, src.strides(), shape, es, false, bytes);
          from = tmpDst;
        }
        dst.storage().write(dst.offset() * es, from, bytes);
      } else {
        long[] span = span(dst, shape, es);
        tmpDst = alloc(span[1]);
        dst.storage().read(span[0], tmpDst, span[1]);
        hostCopy(tmpDst + (dst.offset() * es - span[0]), dst.strides(), srcAddr, src.strides(), shape, es, false, bytes);
        dst.storage().write(span[0], tmpDst, span[1]);
      }
    } finally {
      if (tmpSrc != 0) NativeRuntime.hostFreeAligned(tmpSrc);
      if (tmpDst != 0) NativeRuntime.hostFreeAligned(tmpDst);
    }
  }

  private static void hostCopy(long dst, long[] dstStrides, long src, long[] srcStrides, long[] shape, int es,
      boolean bothContiguous, long bytes) {
    if (bothContiguous) {
      MemorySegment.ofAddress(dst).reinterpret(bytes).copyFrom(MemorySegment.ofAddress(src).reinterpret(bytes));
    } else {
      NativeRuntime.stridedCopy(dst, dstStrides, src, srcStrides, shape, es);
    }
  }

  private static long alloc(long bytes) {
    return NativeRuntime.hostAllocAligned(Math.max(bytes, 1), Storage.PAGE);
  }

  /** {start byte, byte length} of the block from the first to the last element of a layout. */
  static long[] span(Layout l, long[] shape, int es) {
    long last = 0;
    for (int i = 0; i < shape.length; i++) last += (shape[i] - 1) * l.strides()[i];
    return new long[] {l.offset() * es, (last + 1) * es};
  }

  private static boolean overlaps(Layout a, Layout b, long[] shape, int es) {
    long aBase, bBase;
    if (a.storage() != null && b.storage() != null) {
      if (a.storage() != b.storage()) return false;
      aBase = 0;
      bBase = 0;
    } else if (a.storage() == null && b.storage() == null) {
      aBase = a.raw();
      bBase = b.raw();
    } else {
      return false; // a raw buffer is never part of a storage handed to the same copy
    }
    long[] sa = span(a, shape, es), sb = span(b, shape, es);
    long a0 = aBase + sa[0], a1 = a0 + sa[1], b0 = bBase + sb[0], b1 = b0 + sb[1];
    return a0 < b1 && b0 < a1;
  }
}

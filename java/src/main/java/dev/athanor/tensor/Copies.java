package dev.athanor.tensor;

import dev.athanor.memory.AllocationFailedException;
import dev.athanor.memory.InFlight;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Kernel;
import dev.athanor.runtime.KernelArgs;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.runtime.Stream;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * The one copy routine behind every tensor data movement: between any two layouts of the same shape and
 * dtype, on any tiers. A layout is a storage (or a raw contiguous host buffer) plus offset and strides.
 *
 * <p>By the places of the two sides:
 * <ul>
 *   <li>host and host (HOST, HOST_PINNED, raw buffers): a memcpy when both are contiguous, else one strided copy
 *       ({@code ath_cpu_copy}); overlapping ranges go through a packed temporary;
 *   <li>device and device, same device: one {@code ath_cuda_copy} (any views, no host staging; a memcpy when both
 *       are contiguous), on the compute stream of the calling thread's current context; overlapping ranges go
 *       through a device temporary;
 *   <li>host and device: one contiguous {@code cudaMemcpyAsync} on that compute stream. A non-contiguous side is
 *       packed first: on the host into a HOST_PINNED staging buffer (accounted, cached; ordinary host memory
 *       when the budget refuses it), on the device into a temporary with {@code ath_cuda_copy}. Device to host
 *       waits for the stream (the host reads the result); host to device waits only when the source is the
 *       caller's pinned memory (which it may change once this returns) and otherwise returns at once (pageable
 *       sources are staged by CUDA before cudaMemcpyAsync returns; our staging buffer is released to the cache
 *       with the stream recorded, so it is not reused before the copy has run);
 *   <li>DISK, or two different CUDA devices: through a contiguous host temporary (a DISK side is read or
 *       written over its byte span; a non-contiguous DISK destination is read, patched and written back, so do
 *       not write concurrently into the gaps of such a destination).
 * </ul>
 * Both storages are retained for the duration, so a concurrent close fails cleanly instead of freeing memory
 * under the copy. {@link #copyAsync} is the asynchronous form for buffers allocated ahead of time.
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

    Tier tier() {
      return storage == null ? Tier.HOST : storage.tier();
    }

    boolean host() {
      return tier().isHostAddressable();
    }

    boolean device() {
      return tier() == Tier.DEVICE;
    }

    boolean contiguous(long[] shape) {
      return Tensor.isContiguous(shape, strides);
    }

    /** Memory the caller owns and may change once a synchronous copy returns: pinned host memory. */
    boolean callersPinned() {
      return storage != null && storage.isPinned();
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
    if (Tensor.product(shape) == 0) return;
    if (dst.storage() != null) dst.storage().retain();
    try {
      if (src.storage() != null) src.storage().retain();
      try {
        copyRetained(dst, src, shape, es);
      } finally {
        if (src.storage() != null) src.storage().release();
      }
    } finally {
      if (dst.storage() != null) dst.storage().release();
    }
  }

  private static void copyRetained(Layout dst, Layout src, long[] shape, int es) {
    if (dst.host() && src.host()) {
      hostToHost(dst, src, shape, es);
    } else if (dst.device() && src.device() && dst.storage().device().equals(src.storage().device())) {
      deviceToDevice(dst, src, shape, es);
    } else if (dst.device() && src.host()) {
      hostToDevice(dst, src, shape, es);
    } else if (dst.host() && src.device()) {
      deviceToHost(dst, src, shape, es);
    } else if (src.tier() == Tier.DISK && dst.host() && dst.contiguous(shape) && src.contiguous(shape)) {
      src.storage().read(src.offset() * es, dst.address(es), Tensor.product(shape) * es);
    } else if (dst.tier() == Tier.DISK && src.host() && src.contiguous(shape)) {
      writeDisk(dst, src.address(es), shape, es);
    } else {
      viaHost(dst, src, shape, es);
    }
  }

  // ------------------------------------------------------------------ the four basic cases

  private static void hostToHost(Layout dst, Layout src, long[] shape, int es) {
    long bytes = Tensor.product(shape) * es;
    if (overlaps(dst, src, shape, es)) { // pack the source first
      long tmp = alloc(bytes);
      try {
        Layout packed = Layout.raw(tmp, shape);
        hostToHost(packed, src, shape, es);
        hostToHost(dst, packed, shape, es);
      } finally {
        NativeRuntime.hostFreeAligned(tmp);
      }
    } else if (dst.contiguous(shape) && src.contiguous(shape)) {
      MemorySegment.ofAddress(dst.address(es)).reinterpret(bytes)
          .copyFrom(MemorySegment.ofAddress(src.address(es)).reinterpret(bytes));
    } else {
      stridedCopy(ExecutionContext.current(Device.CPU), dst.address(es), dst.strides(), src.address(es), src.strides(),
          shape, es);
    }
  }

  private static void deviceToDevice(Layout dst, Layout src, long[] shape, int es) {
    ExecutionContext ctx = ExecutionContext.current(dst.storage().device());
    if (overlaps(dst, src, shape, es)) { // through a device temporary
      try (Storage tmp = Storage.allocate(ctx.computeStream(), Tensor.product(shape) * es)) {
        Layout packed = new Layout(tmp, 0, 0, Tensor.contiguousStrides(shape));
        deviceToDevice(packed, src, shape, es);
        deviceToDevice(dst, packed, shape, es);
      }
    } else { // ath_cuda_copy turns a contiguous copy into one memcpy itself
      stridedCopy(ctx, dst.address(es), dst.strides(), src.address(es), src.strides(), shape, es);
    }
  }

  private static void hostToDevice(Layout dst, Layout src, long[] shape, int es) {
    try (Transfer t = new Transfer(dst.storage().device(), shape, es)) {
      long from = src.address(es);
      boolean wait = src.callersPinned(); // the caller may change its pinned memory once this returns
      if (!src.contiguous(shape)) {
        from = t.staging();
        hostToHost(Layout.raw(from, shape), src, shape, es);
        wait = false;
      }
      long to = dst.contiguous(shape) ? dst.address(es) : t.deviceTemporary();
      NativeRuntime.cudaMemcpyAsync(to, from, t.bytes, NativeRuntime.H2D, t.stream.handle());
      if (t.deviceTmp != null) {
        stridedCopy(t.ctx, dst.address(es), dst.strides(), to, Tensor.contiguousStrides(shape), shape, es);
      }
      if (t.pinned != null) t.pinned.recordStream(t.stream); // not reused before the copy has read it
      if (wait) t.stream.synchronize();
    }
  }

  private static void deviceToHost(Layout dst, Layout src, long[] shape, int es) {
    try (Transfer t = new Transfer(src.storage().device(), shape, es)) {
      long from = src.address(es);
      if (!src.contiguous(shape)) {
        long packed = t.deviceTemporary();
        stridedCopy(t.ctx, packed, Tensor.contiguousStrides(shape), from, src.strides(), shape, es);
        from = packed;
      }
      boolean direct = dst.contiguous(shape);
      long to = direct ? dst.address(es) : t.staging();
      NativeRuntime.cudaMemcpyAsync(to, from, t.bytes, NativeRuntime.D2H, t.stream.handle());
      t.stream.synchronize(); // the host reads the result
      if (!direct) hostToHost(dst, Layout.raw(to, shape), shape, es);
    }
  }

  /**
   * The compute stream of one host <-> device transfer and its temporaries, freed at close: a contiguous host
   * staging buffer (HOST_PINNED storage, accounted and cached; ordinary host memory when the pinned budget
   * refuses it) and a contiguous device buffer (reused in stream order once freed).
   */
  private static final class Transfer implements AutoCloseable {
    final ExecutionContext ctx;
    final Stream stream;
    final long bytes;
    Storage pinned, deviceTmp;
    long pageable;

    Transfer(Device device, long[] shape, int es) {
      ctx = ExecutionContext.current(device);
      stream = ctx.computeStream();
      bytes = Tensor.product(shape) * es;
    }

    long staging() {
      try {
        pinned = Storage.allocate(Tier.HOST_PINNED, bytes);
        return pinned.address();
      } catch (AllocationFailedException e) { // over the pinned budget: pageable staging still works
        pageable = alloc(bytes);
        return pageable;
      }
    }

    long deviceTemporary() {
      deviceTmp = Storage.allocate(stream, bytes);
      return deviceTmp.address();
    }

    @Override
    public void close() {
      if (pinned != null) pinned.close();
      if (pageable != 0) NativeRuntime.hostFreeAligned(pageable);
      if (deviceTmp != null) deviceTmp.close();
    }
  }

  // ------------------------------------------------------------------ DISK and cross-device

  /** Through a contiguous host temporary: src -> tmp, tmp -> dst (each one of the cases above, or DISK). */
  private static void viaHost(Layout dst, Layout src, long[] shape, int es) {
    long bytes = Tensor.product(shape) * es;
    long tmp = alloc(bytes);
    try {
      Layout t = Layout.raw(tmp, shape);
      if (src.tier() == Tier.DISK) readDisk(tmp, src, shape, es);
      else copyRetained(t, src, shape, es);
      copyRetained(dst, t, shape, es);
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  /** Packs a DISK layout into the contiguous host buffer {@code hostDst}: its byte span is read whole. */
  private static void readDisk(long hostDst, Layout src, long[] shape, int es) {
    long bytes = Tensor.product(shape) * es;
    if (src.contiguous(shape)) {
      src.storage().read(src.offset() * es, hostDst, bytes);
      return;
    }
    long[] span = span(src, shape, es);
    long tmp = alloc(span[1]);
    try {
      src.storage().read(span[0], tmp, span[1]);
      hostToHost(Layout.raw(hostDst, shape), new Layout(null, tmp, 0, src.strides()), shape, es); // the span starts at [0,...,0]
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  /** Writes the contiguous host buffer {@code hostSrc} into a DISK layout (read-patch-write over its span). */
  private static void writeDisk(Layout dst, long hostSrc, long[] shape, int es) {
    if (dst.contiguous(shape)) {
      dst.storage().write(dst.offset() * es, hostSrc, Tensor.product(shape) * es);
      return;
    }
    long[] span = span(dst, shape, es);
    long tmp = alloc(span[1]);
    try {
      dst.storage().read(span[0], tmp, span[1]);
      hostToHost(new Layout(null, tmp, 0, dst.strides()), Layout.raw(hostSrc, shape), shape, es);
      dst.storage().write(span[0], tmp, span[1]);
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  // ------------------------------------------------------------------ asynchronous copies

  /**
   * Enqueues a contiguous copy of {@code src} into {@code dst} on {@code stream} (host <-> device or device <->
   * device; the caller has checked shapes, dtypes and contiguity) and returns at once. Both storages stay alive
   * until the copy has run ({@link InFlight}), even if the caller closes the tensors.
   */
  static void copyAsync(Tensor dst, Tensor src, Stream stream) {
    int kind = src.tier() == Tier.DEVICE
        ? (dst.tier() == Tier.DEVICE ? NativeRuntime.D2D : NativeRuntime.D2H)
        : NativeRuntime.H2D;
    Storage d = dst.storage(), s = src.storage();
    d.retain();
    try {
      s.retain();
      try {
        NativeRuntime.cudaMemcpyAsync(dst.address(), src.address(), src.byteSize(), kind, stream.handle());
        InFlight.releaseAfter(stream, d, s);
      } finally {
        s.release();
      }
    } finally {
      d.release();
    }
  }

  // ------------------------------------------------------------------ helpers

  /**
   * One strided copy ({@code ath_cpu_copy} / {@code ath_cuda_copy}) in {@code ctx}. Size-1 dimensions are
   * dropped first; a rank still above {@link KernelArgs#MAX_RANK} is split over its leading dimensions.
   */
  private static void stridedCopy(ExecutionContext ctx, long dst, long[] dstStrides, long src, long[] srcStrides,
      long[] shape, int es) {
    int rank = 0;
    for (long s : shape) if (s != 1) rank++;
    long[] sh = new long[rank], ds = new long[rank], ss = new long[rank];
    for (int i = 0, j = 0; i < shape.length; i++) {
      if (shape[i] == 1) continue;
      sh[j] = shape[i];
      ds[j] = dstStrides[i];
      ss[j++] = srcStrides[i];
    }
    if (rank <= KernelArgs.MAX_RANK) {
      ctx.run(Kernel.COPY, new KernelArgs.Copy(rank, es, sh, dst, ds, src, ss));
      return;
    }
    long[] inner = Arrays.copyOfRange(sh, 1, rank);
    long[] innerDs = Arrays.copyOfRange(ds, 1, rank), innerSs = Arrays.copyOfRange(ss, 1, rank);
    for (long i = 0; i < sh[0]; i++) {
      stridedCopy(ctx, dst + i * ds[0] * es, innerDs, src + i * ss[0] * es, innerSs, inner, es);
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

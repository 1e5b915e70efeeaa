package dev.athanor.tensor;

import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Kernel;
import dev.athanor.runtime.KernelArgs;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.runtime.Stream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An n-dimensional array: a {@link Storage} plus dtype, shape, element strides and an element offset.
 *
 * <p><b>Layout.</b> Row-major; element {@code [i0, ..., ik]} lives at storage element
 * {@code offset + sum(ij * strides[j])}. Views ({@link #view}, {@link #transpose}, {@link #permute},
 * {@link #slice}, {@link #select}, {@link #unsqueeze}, {@link #squeeze}) share the storage and copy nothing.
 *
 * <p><b>Ownership.</b> Every tensor returned by any method here is a new reference that must be closed
 * (directly, or by the {@link Scope} that was innermost on the creating thread). A tensor keeps its storage
 * alive through a reference count, so a view stays valid after its parent is closed, and the memory is freed
 * when the last tensor on it closes. Methods documented as "may share" ({@link #contiguous()},
 * {@link #to(Tier)}, {@link #to(Device)}) return a new reference over the same storage when no copy is needed;
 * close it like any other. {@link #close()} is idempotent and thread-safe; any other use after close throws
 * {@link IllegalStateException}.
 *
 * <p><b>Placement.</b> {@link #device()} is where the data can be computed on (CPU for the host tiers and
 * DISK, CUDA for DEVICE); {@link #tier()} is the memory tier. DISK tensors cannot be addressed or read
 * element-wise; move them first ({@link #to(Tier)}).
 *
 * <p><b>Copies and streams.</b> All data movement goes through one routine (package-private {@code Copies}).
 * Copies involving a CUDA device run on the compute stream of the calling thread's current
 * {@link ExecutionContext} for that device, so they are ordered after the ops queued there: device to device
 * copies of any two views without host staging, host and device through one contiguous transfer; they return
 * once the data is where the caller can use it (a device-to-host copy waits for the stream). Work on other
 * streams or threads is ordered with {@link dev.athanor.runtime.Event}s. {@link #copyFromAsync} and
 * {@link #toAsync} enqueue on a given stream (e.g. a context's copy stream) and return at once.
 *
 * <p><b>Thread-safety.</b> Tensors are not synchronized for concurrent writes; closing is safe from any
 * thread, and Java-side accessors fail with IllegalStateException rather than touch freed memory. Raw
 * addresses ({@link #address()}) are only valid while the caller keeps the tensor open.
 */
@SuppressWarnings("restricted") // MemorySegment.reinterpret over storage that is retained while in use
public final class Tensor implements AutoCloseable {
  private final Storage storage;
  private final DType dtype;
  private final long[] shape;
  private final long[] strides;
  private final long offset;
  private final long numel;
  private final Device home; // CUDA device a host-tier copy came from (for to(Tier.DEVICE)), or null
  private final AtomicBoolean closed = new AtomicBoolean();
  volatile Scope scope; // maintained by Scope

  private Tensor(Storage storage, DType dtype, long[] shape, long[] strides, long offset, Device home) {
    this.dtype = Objects.requireNonNull(dtype, "dtype");
    this.shape = shape;
    this.strides = strides;
    this.offset = offset;
    this.numel = product(shape);
    if (offset < 0) throw new IllegalArgumentException("offset " + offset + " must be >= 0");
    for (int i = 0; i < shape.length; i++) {
      if (strides[i] < 0) throw new IllegalArgumentException("stride " + strides[i] + " of dim " + i + " must be >= 0");
    }
    if (numel > 0) {
      long last = offset;
      for (int i = 0; i < shape.length; i++) last = Math.addExact(last, Math.multiplyExact(shape[i] - 1, strides[i]));
      long need = Math.multiplyExact(last + 1, (long) dtype.byteSize());
      if (need > storage.byteSize()) {
        throw new IndexOutOfBoundsException("layout shape=" + Arrays.toString(shape) + " strides=" + Arrays.toString(strides)
            + " offset=" + offset + " of " + dtype + " needs " + need + " bytes but " + storage + " has " + storage.byteSize());
      }
    }
    this.storage = storage.retain();
    this.home = storage.tier() == Tier.DEVICE ? storage.device() : home;
    Scope.register(this);
  }

  // ------------------------------------------------------------------ factories

  /** Uninitialized tensor on {@code device} (tier DEVICE for CUDA, HOST for the CPU). */
  public static Tensor empty(DType dtype, Device device, long... shape) {
    return empty(dtype, device, device.isCuda() ? Tier.DEVICE : Tier.HOST, shape);
  }

  /**
   * Uninitialized tensor in {@code tier}; {@code device} must be a CUDA device for DEVICE and
   * {@link Device#CPU} for HOST, HOST_PINNED and DISK (whose new files read as zeros).
   */
  public static Tensor empty(DType dtype, Device device, Tier tier, long... shape) {
    Objects.requireNonNull(dtype, "dtype");
    Objects.requireNonNull(device, "device");
    Objects.requireNonNull(tier, "tier");
    long[] s = checkShape(shape);
    long bytes;
    try {
      bytes = Math.multiplyExact(product(s), (long) dtype.byteSize());
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException("shape " + Arrays.toString(s) + " of " + dtype + " overflows 2^63 bytes");
    }
    try (Storage st = Storage.allocate(tier, device, bytes)) {
      return new Tensor(st, dtype, s, contiguousStrides(s), 0, null);
    }
  }

  /** Zero-filled tensor on {@code device}. */
  public static Tensor zeros(DType dtype, Device device, long... shape) {
    return zeros(dtype, device, device.isCuda() ? Tier.DEVICE : Tier.HOST, shape);
  }

  /** Zero-filled tensor in {@code tier} (see {@link #empty(DType, Device, Tier, long...)}). */
  public static Tensor zeros(DType dtype, Device device, Tier tier, long... shape) {
    Tensor t = empty(dtype, device, tier, shape);
    try {
      t.zeroFill();
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  /** F32 tensor on the CPU holding {@code data}; with no shape given, 1-D of length data.length. */
  public static Tensor of(float[] data, long... shape) {
    return fromFloats(data, DType.F32, Device.CPU, shape);
  }

  /** I32 tensor on the CPU holding {@code data}; with no shape given, 1-D of length data.length. */
  public static Tensor of(int[] data, long... shape) {
    return fromInts(data, Device.CPU, shape);
  }

  /** A rank-0 F32 tensor on the CPU. */
  public static Tensor scalar(float value) {
    Tensor t = empty(DType.F32, Device.CPU);
    try {
      t.copyFrom(new float[] {value});
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  /**
   * A tensor of {@code dtype} on {@code device} from F32 values, rounded to nearest even for BF16/F16; for
   * I32 every value must be an integer in int range. With no shape given, 1-D of length data.length.
   */
  public static Tensor fromFloats(float[] data, DType dtype, Device device, long... shape) {
    Objects.requireNonNull(data, "data");
    long[] s = shape.length == 0 ? new long[] {data.length} : shape;
    Tensor t = empty(dtype, device, s);
    try {
      t.copyFrom(data);
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  /** An I32 tensor on {@code device}. With no shape given, 1-D of length data.length. */
  public static Tensor fromInts(int[] data, Device device, long... shape) {
    Objects.requireNonNull(data, "data");
    long[] s = shape.length == 0 ? new long[] {data.length} : shape;
    Tensor t = empty(DType.I32, device, s);
    try {
      t.copyFrom(data);
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  /**
   * A tensor over an existing storage (retained; the caller keeps its own reference). The layout is checked
   * against the storage's size.
   */
  public static Tensor wrap(Storage storage, DType dtype, long[] shape, long[] strides, long offset) {
    Objects.requireNonNull(storage, "storage");
    long[] s = checkShape(shape);
    if (strides.length != s.length) {
      throw new IllegalArgumentException("strides " + Arrays.toString(strides) + " do not match shape " + Arrays.toString(s));
    }
    return new Tensor(storage, dtype, s, strides.clone(), offset, null);
  }

  // ------------------------------------------------------------------ metadata

  public DType dtype() {
    return dtype;
  }

  /** CUDA device for DEVICE tensors, {@link Device#CPU} otherwise. */
  public Device device() {
    return storage.device();
  }

  public Tier tier() {
    return storage.tier();
  }

  /** The CUDA device this tensor lives on or was moved from (what {@link #to(Tier)} with DEVICE uses), or null. */
  public Device homeDevice() {
    return home;
  }

  public long[] shape() {
    return shape.clone();
  }

  /** Size of a dimension; negative dims count from the end. */
  public long size(int dim) {
    return shape[normDim(dim, shape.length)];
  }

  /** Element strides (copy). */
  public long[] strides() {
    return strides.clone();
  }

  public long stride(int dim) {
    return strides[normDim(dim, shape.length)];
  }

  public int rank() {
    return shape.length;
  }

  public long numel() {
    return numel;
  }

  /** numel * element size (the bytes this view covers when contiguous). */
  public long byteSize() {
    return numel * dtype.byteSize();
  }

  /** Offset of element [0,...,0] into the storage, in elements. */
  public long offset() {
    return offset;
  }

  public boolean isContiguous() {
    return isContiguous(shape, strides);
  }

  /** The storage (shared; do not close it: close the tensor). */
  public Storage storage() {
    return storage;
  }

  public boolean sharesStorageWith(Tensor other) {
    return storage == other.storage;
  }

  public boolean isClosed() {
    return closed.get();
  }

  /**
   * Native address of element [0,...,0] (a device pointer for DEVICE). Valid while this tensor is open.
   * Throws IllegalStateException for DISK tensors and after close.
   */
  public long address() {
    checkOpen();
    if (tier() == Tier.DISK) {
      throw new IllegalStateException(describe() + " is on DISK and has no address; use to(Tier.HOST) or to(Device) first");
    }
    return storage.address() + offset * dtype.byteSize();
  }

  // ------------------------------------------------------------------ views

  /** Same data with a new shape (contiguous tensors only; one dimension may be -1). */
  public Tensor view(long... newShape) {
    checkOpen();
    if (!isContiguous()) {
      throw new IllegalStateException("view" + Arrays.toString(newShape) + " needs a contiguous tensor, got strides "
          + Arrays.toString(strides) + " for shape " + Arrays.toString(shape) + "; use contiguous() or reshape()");
    }
    long[] s = inferShape(newShape);
    return derive(s, contiguousStrides(s), offset);
  }

  /** {@link #view} when contiguous, else a contiguous copy with the new shape. */
  public Tensor reshape(long... newShape) {
    checkOpen();
    if (isContiguous()) return view(newShape);
    long[] s = inferShape(newShape);
    try (Tensor c = contiguous()) {
      return c.view(s);
    }
  }

  /** Swaps two dimensions (negative dims count from the end). */
  public Tensor transpose(int dim0, int dim1) {
    checkOpen();
    int a = normDim(dim0, shape.length), b = normDim(dim1, shape.length);
    long[] s = shape.clone(), st = strides.clone();
    s[a] = shape[b];
    s[b] = shape[a];
    st[a] = strides[b];
    st[b] = strides[a];
    return derive(s, st, offset);
  }

  /** Reorders dimensions: result dim i is this tensor's dim {@code dims[i]}. */
  public Tensor permute(int... dims) {
    checkOpen();
    if (dims.length != shape.length) {
      throw new IllegalArgumentException("permute" + Arrays.toString(dims) + " needs " + shape.length
          + " dims for shape " + Arrays.toString(shape));
    }
    boolean[] seen = new boolean[shape.length];
    long[] s = new long[shape.length], st = new long[shape.length];
    for (int i = 0; i < dims.length; i++) {
      int d = normDim(dims[i], shape.length);
      if (seen[d]) throw new IllegalArgumentException("permute" + Arrays.toString(dims) + " repeats dim " + dims[i]);
      seen[d] = true;
      s[i] = shape[d];
      st[i] = strides[d];
    }
    return derive(s, st, offset);
  }

  /** Elements {@code [start, end)} of a dimension; 0 <= start <= end <= size(dim). */
  public Tensor slice(int dim, long start, long end) {
    checkOpen();
    int d = normDim(dim, shape.length);
    if (start < 0 || end < start || end > shape[d]) {
      throw new IndexOutOfBoundsException("slice(" + dim + ", " + start + ", " + end + ") out of range for size "
          + shape[d] + " of shape " + Arrays.toString(shape) + ": need 0 <= start <= end <= " + shape[d]);
    }
    long[] s = shape.clone();
    s[d] = end - start;
    return derive(s, strides.clone(), offset + (end > start ? start * strides[d] : 0));
  }

  /** The sub-tensor at {@code index} of a dimension, which is removed. */
  public Tensor select(int dim, long index) {
    checkOpen();
    int d = normDim(dim, shape.length);
    if (index < 0 || index >= shape[d]) {
      throw new IndexOutOfBoundsException("select(" + dim + ", " + index + ") out of range [0, " + shape[d]
          + ") of shape " + Arrays.toString(shape));
    }
    long[] s = new long[shape.length - 1], st = new long[shape.length - 1];
    for (int i = 0, j = 0; i < shape.length; i++) {
      if (i == d) continue;
      s[j] = shape[i];
      st[j++] = strides[i];
    }
    return derive(s, st, offset + index * strides[d]);
  }

  /** Inserts a dimension of size 1 at {@code dim} (in [-(rank+1), rank]). */
  public Tensor unsqueeze(int dim) {
    checkOpen();
    int d = normDim(dim, shape.length + 1);
    long[] s = new long[shape.length + 1], st = new long[shape.length + 1];
    for (int i = 0, j = 0; i <= shape.length; i++) {
      if (i == d) {
        s[i] = 1;
        st[i] = d < shape.length ? strides[d] * shape[d] : 1;
        if (st[i] == 0) st[i] = 1;
      } else {
        s[i] = shape[j];
        st[i] = strides[j++];
      }
    }
    return derive(s, st, offset);
  }

  /** Removes every dimension of size 1. */
  public Tensor squeeze() {
    checkOpen();
    int keep = 0;
    for (long v : shape) if (v != 1) keep++;
    long[] s = new long[keep], st = new long[keep];
    for (int i = 0, j = 0; i < shape.length; i++) {
      if (shape[i] == 1) continue;
      s[j] = shape[i];
      st[j++] = strides[i];
    }
    return derive(s, st, offset);
  }

  /** Removes dimension {@code dim}, which must have size 1. */
  public Tensor squeeze(int dim) {
    checkOpen();
    int d = normDim(dim, shape.length);
    if (shape[d] != 1) {
      throw new IllegalArgumentException("squeeze(" + dim + "): dim has size " + shape[d] + ", not 1, in shape "
          + Arrays.toString(shape));
    }
    return select(d, 0);
  }

  private Tensor derive(long[] s, long[] st, long off) {
    return new Tensor(storage, dtype, s, st, off, home);
  }

  /** A new reference over the same storage and layout (what "may share" methods return). */
  private Tensor share() {
    return derive(shape.clone(), strides.clone(), offset);
  }

  // ------------------------------------------------------------------ copies

  /** This data in a contiguous layout, same tier and device. May share: returns a new reference either way. */
  public Tensor contiguous() {
    checkOpen();
    return isContiguous() ? share() : copy();
  }

  /** A contiguous copy in new storage, same tier and device. */
  public Tensor copy() {
    checkOpen();
    Tensor out = emptyLike(tier(), storage.device());
    return fill(out);
  }

  /**
   * This data on {@code target}: CUDA targets get DEVICE memory, the CPU gets HOST memory (HOST and HOST_PINNED
   * tensors are already there; DISK tensors are read into HOST). Synchronous. May share: returns a new
   * reference either way.
   */
  public Tensor to(Device target) {
    checkOpen();
    Objects.requireNonNull(target, "target");
    if (target.isCuda()) {
      if (tier() == Tier.DEVICE && device().equals(target)) return share();
      return fill(emptyLike(Tier.DEVICE, target));
    }
    if (tier().isHostAddressable()) return share();
    return fill(emptyLike(Tier.HOST, Device.CPU));
  }

  /**
   * Starts copying this tensor to {@code target} on {@code stream} and returns the destination, new memory
   * whose contents are valid once the stream's work up to here has completed (synchronize the stream, or record
   * an {@link dev.athanor.runtime.Event} after this and wait on it). CUDA targets get DEVICE memory; a CPU target
   * gets HOST_PINNED memory so the copy is truly asynchronous; the stream must be on the CUDA device involved.
   * New DEVICE memory belongs to {@code stream} and is recorded as used by the current compute stream too.
   * The source must not be modified until the copy has run; both memories stay allocated until then even if
   * closed ({@link #copyFromAsync}). Sources that are not contiguous or on DISK, and host-to-host moves, are
   * copied synchronously. May share when already on {@code target}.
   */
  public Tensor toAsync(Device target, Stream stream) {
    checkOpen();
    Objects.requireNonNull(target, "target");
    Objects.requireNonNull(stream, "stream");
    Device src = device();
    boolean already = target.isCuda() ? tier() == Tier.DEVICE && src.equals(target) : tier().isHostAddressable();
    if (already) return share();
    Device streamDevice = target.isCuda() ? target : src;
    if (streamDevice.isCuda() && !stream.device().equals(streamDevice)
        && !(target.isCuda() && tier() == Tier.DEVICE && stream.device().equals(src))) {
      throw new IllegalArgumentException("toAsync(" + target + ") of " + describe() + " needs a stream on "
          + streamDevice + ", got " + stream);
    }
    if (!isContiguous() || tier() == Tier.DISK || !(target.isCuda() || tier() == Tier.DEVICE)) return to(target);
    Tensor out;
    if (target.isCuda() && stream.device().equals(target)) {
      // Owned by the copy's stream, so the allocator does not hand it memory the compute stream may still be
      // using; used next by the compute stream, which is recorded so its work is waited for before reuse.
      try (Storage st = Storage.allocate(stream, byteSize())) {
        out = new Tensor(st, dtype, shape.clone(), contiguousStrides(shape), 0, home);
      }
      Stream compute = ExecutionContext.current(target).computeStream();
      if (compute != stream) out.storage.recordStream(compute);
    } else {
      out = target.isCuda() ? emptyLike(Tier.DEVICE, target) : emptyLike(Tier.HOST_PINNED, Device.CPU);
    }
    try {
      Copies.copyAsync(out, this, stream);
      return out;
    } catch (RuntimeException e) {
      out.close();
      throw e;
    }
  }

  /**
   * Enqueues a copy of {@code src} into this tensor on {@code stream} and returns at once: into buffers
   * allocated ahead of time, e.g. a prefetch on a copy stream that the compute stream then waits for with an
   * {@link dev.athanor.runtime.Event}. Both tensors must be contiguous with the same shape and dtype; on a CUDA
   * stream one of them is DEVICE memory of the stream's device and the other DEVICE memory of that device or
   * HOST_PINNED memory; on a CPU stream both are host memory and the copy is done when this returns. The
   * source must not be modified, nor the destination read, until the copy has run; both storages stay
   * allocated until then even if the tensors are closed. Ordering with the work of other streams is the
   * caller's (events); for example, a destination still read by queued compute work must not be overwritten.
   *
   * @throws IllegalArgumentException naming the offending tensor or stream
   */
  public void copyFromAsync(Tensor src, Stream stream) {
    checkOpen();
    Objects.requireNonNull(src, "src");
    Objects.requireNonNull(stream, "stream");
    src.checkOpen();
    checkSameShape("copyFromAsync", src);
    for (Tensor t : new Tensor[] {this, src}) {
      if (!t.isContiguous()) {
        throw new IllegalArgumentException("copyFromAsync: " + t.describe() + " is not contiguous; use contiguous() first");
      }
    }
    if (!stream.device().isCuda()) {
      if (!tier().isHostAddressable() || !src.tier().isHostAddressable()) {
        throw new IllegalArgumentException("copyFromAsync on " + stream + " needs host memory on both sides, got "
            + src.describe() + " -> " + describe() + "; use a stream of the CUDA device");
      }
      Copies.copy(this, src);
      return;
    }
    for (Tensor t : new Tensor[] {this, src}) {
      boolean ok = t.tier() == Tier.DEVICE ? t.device().equals(stream.device()) : t.tier() == Tier.HOST_PINNED;
      if (!ok) {
        throw new IllegalArgumentException("copyFromAsync on " + stream + ": " + t.describe() + " must be DEVICE memory"
            + " of " + stream.device() + " or HOST_PINNED memory (page-locked, for a truly asynchronous copy)");
      }
    }
    if (tier() != Tier.DEVICE && src.tier() != Tier.DEVICE) {
      throw new IllegalArgumentException("copyFromAsync on " + stream + ": one side must be DEVICE memory, got "
          + src.describe() + " -> " + describe());
    }
    if (numel == 0) return;
    Copies.copyAsync(this, src, stream);
  }

  /**
   * This data in {@code target} tier: DEVICE means {@link #homeDevice()} (the CUDA device this tensor is on or
   * came from). The copy is contiguous; the source stays open. May share when already in {@code target}.
   */
  public Tensor to(Tier target) {
    checkOpen();
    Objects.requireNonNull(target, "target");
    if (target == tier()) return share();
    if (target == Tier.DEVICE) {
      if (home == null) {
        throw new IllegalArgumentException(describe() + " has no CUDA device to return to; use to(Device.cuda(n))");
      }
      return fill(emptyLike(Tier.DEVICE, home));
    }
    return fill(emptyLike(target, Device.CPU));
  }

  /**
   * Copies {@code src} (same shape and dtype; any tier, device or layout) into this tensor. Returns once the
   * data is in place as far as the calling thread can tell: device copies are enqueued on the current context's
   * compute stream, so later ops there see them; a copy into host memory has completed.
   */
  public void copyFrom(Tensor src) {
    checkOpen();
    Objects.requireNonNull(src, "src");
    src.checkOpen();
    checkSameShape("copyFrom", src);
    Copies.copy(this, src);
  }

  private void checkSameShape(String op, Tensor src) {
    if (src.dtype != dtype) {
      throw new IllegalArgumentException(op + ": dtype " + src.dtype + " of the source does not match " + dtype
          + " of the destination (convert with Ops.convert)");
    }
    if (!Arrays.equals(src.shape, shape)) {
      throw new IllegalArgumentException(op + ": source shape " + Arrays.toString(src.shape)
          + " does not match destination shape " + Arrays.toString(shape));
    }
  }

  /** Writes {@code data} (row-major, length numel) into this tensor, rounding to nearest even for BF16/F16. */
  public void copyFrom(float[] data) {
    checkOpen();
    Objects.requireNonNull(data, "data");
    if (data.length != numel) {
      throw new IllegalArgumentException("copyFrom: " + data.length + " values for " + numel + " elements of shape "
          + Arrays.toString(shape));
    }
    writeAll(seg -> {
      switch (dtype) {
        case F32 -> MemorySegment.copy(data, 0, seg, ValueLayout.JAVA_FLOAT, 0, data.length);
        case BF16 -> {
          for (int i = 0; i < data.length; i++) seg.setAtIndex(ValueLayout.JAVA_SHORT, i, HalfFloats.floatToBf16(data[i]));
        }
        case F16 -> {
          for (int i = 0; i < data.length; i++) seg.setAtIndex(ValueLayout.JAVA_SHORT, i, HalfFloats.floatToF16(data[i]));
        }
        case I32 -> {
          for (int i = 0; i < data.length; i++) seg.setAtIndex(ValueLayout.JAVA_INT, i, toInt(data[i], i));
        }
      }
    });
  }

  /** Writes {@code data} (row-major, length numel) into this I32 tensor. */
  public void copyFrom(int[] data) {
    checkOpen();
    Objects.requireNonNull(data, "data");
    requireDType(DType.I32, "copyFrom(int[])");
    if (data.length != numel) {
      throw new IllegalArgumentException("copyFrom: " + data.length + " values for " + numel + " elements of shape "
          + Arrays.toString(shape));
    }
    writeAll(seg -> MemorySegment.copy(data, 0, seg, ValueLayout.JAVA_INT, 0, data.length));
  }

  // ------------------------------------------------------------------ element access

  /** One element as float (floating dtypes). CUDA tensors go through a host copy; DISK is not allowed. */
  public float getFloat(long... idx) {
    checkOpen();
    requireFloating("getFloat");
    long e = elementIndex(idx);
    return switch (dtype) {
      case F32 -> Float.intBitsToFloat((int) readBits(e));
      case BF16 -> HalfFloats.bf16ToFloat((short) readBits(e));
      case F16 -> HalfFloats.f16ToFloat((short) readBits(e));
      default -> throw new AssertionError(dtype);
    };
  }

  /** Sets one element (floating dtypes; rounded to nearest even for BF16/F16). */
  public void setFloat(float v, long... idx) {
    checkOpen();
    requireFloating("setFloat");
    long e = elementIndex(idx);
    switch (dtype) {
      case F32 -> writeBits(e, Float.floatToRawIntBits(v));
      case BF16 -> writeBits(e, HalfFloats.floatToBf16(v));
      case F16 -> writeBits(e, HalfFloats.floatToF16(v));
      default -> throw new AssertionError(dtype);
    }
  }

  /** One element of an I32 tensor. */
  public int getInt(long... idx) {
    checkOpen();
    requireDType(DType.I32, "getInt");
    return (int) readBits(elementIndex(idx));
  }

  /** Sets one element of an I32 tensor. */
  public void setInt(int v, long... idx) {
    checkOpen();
    requireDType(DType.I32, "setInt");
    writeBits(elementIndex(idx), v);
  }

  /** The single element of a one-element floating tensor. */
  public float item() {
    checkOpen();
    if (numel != 1) throw new IllegalStateException("item() needs exactly one element, " + describe() + " has " + numel);
    return getFloat(new long[shape.length]);
  }

  /** All elements in row-major order as floats (BF16/F16 widened exactly). Floating dtypes only. */
  public float[] toFloatArray() {
    checkOpen();
    requireFloating("toFloatArray");
    float[] out = new float[checkedArrayLength()];
    readAll(seg -> {
      switch (dtype) {
        case F32 -> MemorySegment.copy(seg, ValueLayout.JAVA_FLOAT, 0, out, 0, out.length);
        case BF16 -> {
          for (int i = 0; i < out.length; i++) out[i] = HalfFloats.bf16ToFloat(seg.getAtIndex(ValueLayout.JAVA_SHORT, i));
        }
        case F16 -> {
          for (int i = 0; i < out.length; i++) out[i] = HalfFloats.f16ToFloat(seg.getAtIndex(ValueLayout.JAVA_SHORT, i));
        }
        default -> throw new AssertionError(dtype);
      }
    });
    return out;
  }

  /** All elements of an I32 tensor in row-major order. */
  public int[] toIntArray() {
    checkOpen();
    requireDType(DType.I32, "toIntArray");
    int[] out = new int[checkedArrayLength()];
    readAll(seg -> MemorySegment.copy(seg, ValueLayout.JAVA_INT, 0, out, 0, out.length));
    return out;
  }

  // ------------------------------------------------------------------ lifetime

  /** Removes this tensor from its scope (it must then be closed by the caller). Returns this. */
  public Tensor detach() {
    checkOpen();
    Scope s = scope;
    if (s != null) s.remove(this);
    return this;
  }

  /** Gives back this reference to the storage (freed with the last one). Idempotent, thread-safe. */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) return;
    Scope s = scope;
    if (s != null) s.remove(this);
    storage.release();
  }

  /** Throws IllegalStateException naming the tensor when it was closed (or its storage freed). */
  public void checkOpen() {
    if (closed.get()) throw new IllegalStateException(describe() + " was used after close()");
  }

  @Override
  public String toString() {
    return describe() + (closed.get() ? " (closed)" : "");
  }

  private String describe() {
    StringBuilder sb = new StringBuilder("Tensor(").append(dtype).append(", ");
    sb.append(storage.tier() == Tier.DEVICE ? storage.device().toString() : storage.tier().toString());
    sb.append(", shape=").append(Arrays.toString(shape));
    if (!isContiguous()) sb.append(", strides=").append(Arrays.toString(strides));
    if (offset != 0) sb.append(", offset=").append(offset);
    return sb.append(", ").append(storage).append(')').toString();
  }

  // ------------------------------------------------------------------ internals

  private Tensor emptyLike(Tier tier, Device device) {
    long[] s = shape.clone();
    try (Storage st = Storage.allocate(tier, device, byteSize())) {
      return new Tensor(st, dtype, s, contiguousStrides(s), 0, home);
    }
  }

  private Tensor fill(Tensor out) {
    try {
      Copies.copy(out, this);
      return out;
    } catch (RuntimeException e) {
      out.close();
      throw e;
    }
  }

  private void zeroFill() {
    long bytes = byteSize();
    if (bytes == 0) return;
    switch (tier()) {
      case HOST, HOST_PINNED -> {
        storage.retain();
        try {
          MemorySegment.ofAddress(address()).reinterpret(bytes).fill((byte) 0);
        } finally {
          storage.release();
        }
      }
      case DISK -> {
        // New files are created sparse and read as zeros; nothing to write.
      }
      case DEVICE -> // a memset on the current context's compute stream (a new tensor is contiguous)
          ExecutionContext.current(device()).run(Kernel.MEMSET, new KernelArgs.Memset(address(), bytes, 0));
    }
  }

  @FunctionalInterface
  private interface SegmentAction {
    void apply(MemorySegment contiguousData);
  }

  /** Runs {@code action} on this tensor's elements as one contiguous host segment (staged if needed). */
  /** The calling thread's reads of tensor values into Java ({@link #hostReads()}) and its {@link #uncounted} depth. */
  private static final ThreadLocal<long[]> HOST_READS = ThreadLocal.withInitial(() -> new long[2]);

  /**
   * How many times the calling thread has read tensor values into Java (a whole tensor, e.g. {@link #toFloatArray()},
   * or one element, e.g. {@link #getFloat}), on any device, but for those made {@link #uncounted}: on CUDA each is a
   * device-to-host copy the host waits for. A diagnostic: a training step's reads are the difference around it.
   */
  public static long hostReads() {
    return HOST_READS.get()[0];
  }

  /**
   * Runs {@code read} without counting its reads in {@link #hostReads()}: for checks of a host tensor's values that
   * are skipped on a device (e.g. token ids in range), which would otherwise count on the CPU only.
   */
  public static <T> T uncounted(java.util.function.Supplier<T> read) {
    long[] c = HOST_READS.get();
    c[1]++;
    try {
      return read.get();
    } finally {
      c[1]--;
    }
  }

  private static void countRead() {
    long[] c = HOST_READS.get();
    if (c[1] == 0) c[0]++;
  }

  private void readAll(SegmentAction action) {
    requireNotDisk("read");
    countRead();
    long bytes = byteSize();
    if (bytes == 0) {
      action.apply(MemorySegment.NULL);
      return;
    }
    if (tier().isHostAddressable() && isContiguous()) {
      storage.retain();
      try {
        action.apply(MemorySegment.ofAddress(address()).reinterpret(bytes));
      } finally {
        storage.release();
      }
      return;
    }
    long tmp = NativeRuntime.hostAllocAligned(bytes, Storage.PAGE);
    try {
      Copies.toHost(tmp, this);
      action.apply(MemorySegment.ofAddress(tmp).reinterpret(bytes));
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  /** Lets {@code action} fill a contiguous host segment, then stores it into this tensor. */
  private void writeAll(SegmentAction action) {
    long bytes = byteSize();
    if (bytes == 0) {
      action.apply(MemorySegment.NULL);
      return;
    }
    if (tier().isHostAddressable() && isContiguous()) {
      storage.retain();
      try {
        action.apply(MemorySegment.ofAddress(address()).reinterpret(bytes));
      } finally {
        storage.release();
      }
      return;
    }
    long tmp = NativeRuntime.hostAllocAligned(bytes, Storage.PAGE);
    try {
      MemorySegment seg = MemorySegment.ofAddress(tmp).reinterpret(bytes);
      action.apply(seg);
      Copies.fromHost(this, tmp);
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  private long readBits(long element) {
    requireNotDisk("read an element of");
    countRead();
    int es = dtype.byteSize();
    long byteOff = element * es;
    if (tier().isHostAddressable()) {
      storage.retain();
      try {
        MemorySegment seg = MemorySegment.ofAddress(storage.address() + byteOff).reinterpret(es);
        return es == 2 ? seg.get(ValueLayout.JAVA_SHORT, 0) : seg.get(ValueLayout.JAVA_INT, 0);
      } finally {
        storage.release();
      }
    }
    long tmp = NativeRuntime.hostAllocAligned(8, 8);
    try {
      storage.read(byteOff, tmp, es);
      MemorySegment seg = MemorySegment.ofAddress(tmp).reinterpret(8);
      return es == 2 ? seg.get(ValueLayout.JAVA_SHORT, 0) : seg.get(ValueLayout.JAVA_INT, 0);
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  private void writeBits(long element, int bits) {
    requireNotDisk("write an element of");
    int es = dtype.byteSize();
    long byteOff = element * es;
    if (tier().isHostAddressable()) {
      storage.retain();
      try {
        MemorySegment seg = MemorySegment.ofAddress(storage.address() + byteOff).reinterpret(es);
        if (es == 2) seg.set(ValueLayout.JAVA_SHORT, 0, (short) bits); else seg.set(ValueLayout.JAVA_INT, 0, bits);
      } finally {
        storage.release();
      }
      return;
    }
    long tmp = NativeRuntime.hostAllocAligned(8, 8);
    try {
      MemorySegment seg = MemorySegment.ofAddress(tmp).reinterpret(8);
      if (es == 2) seg.set(ValueLayout.JAVA_SHORT, 0, (short) bits); else seg.set(ValueLayout.JAVA_INT, 0, bits);
      storage.write(byteOff, tmp, es);
    } finally {
      NativeRuntime.hostFreeAligned(tmp);
    }
  }

  /** Storage element index of {@code idx}, validated. */
  private long elementIndex(long[] idx) {
    if (idx.length != shape.length) {
      throw new IllegalArgumentException("index " + Arrays.toString(idx) + " has " + idx.length + " dims; shape "
          + Arrays.toString(shape) + " has " + shape.length);
    }
    long e = offset;
    for (int i = 0; i < idx.length; i++) {
      if (idx[i] < 0 || idx[i] >= shape[i]) {
        throw new IndexOutOfBoundsException("index " + idx[i] + " out of range [0, " + shape[i] + ") in dim " + i
            + " of shape " + Arrays.toString(shape));
      }
      e += idx[i] * strides[i];
    }
    return e;
  }

  private void requireNotDisk(String what) {
    if (tier() == Tier.DISK) {
      throw new IllegalStateException("cannot " + what + " " + describe() + " on DISK element-wise; move it with to(Tier.HOST) first");
    }
  }

  private void requireFloating(String op) {
    if (!dtype.isFloating()) {
      throw new IllegalArgumentException(op + " needs a floating dtype (F32, BF16, F16), got " + dtype + "; use the int accessors");
    }
  }

  private void requireDType(DType want, String op) {
    if (dtype != want) throw new IllegalArgumentException(op + " needs dtype " + want + ", got " + dtype);
  }

  private int checkedArrayLength() {
    if (numel > Integer.MAX_VALUE - 8) {
      throw new IllegalStateException(describe() + " has " + numel + " elements, too many for a Java array");
    }
    return (int) numel;
  }

  private static int toInt(float v, int i) {
    if (v != Math.rint(v) || v < Integer.MIN_VALUE || v >= 0x1p31f) {
      throw new IllegalArgumentException("value " + v + " at index " + i + " is not an integer in int range (dtype I32)");
    }
    return (int) v;
  }

  private long[] inferShape(long[] newShape) {
    long[] s = newShape.clone();
    int infer = -1;
    long known = 1;
    for (int i = 0; i < s.length; i++) {
      if (s[i] == -1) {
        if (infer >= 0) throw new IllegalArgumentException("shape " + Arrays.toString(newShape) + " has more than one -1");
        infer = i;
      } else if (s[i] < 0) {
        throw new IllegalArgumentException("shape " + Arrays.toString(newShape) + " has negative size " + s[i]);
      } else {
        known = Math.multiplyExact(known, s[i]);
      }
    }
    if (infer >= 0) {
      if (known == 0 || numel % known != 0) {
        throw new IllegalArgumentException("cannot infer -1 in " + Arrays.toString(newShape) + " for " + numel + " elements");
      }
      s[infer] = numel / known;
    } else if (known != numel) {
      throw new IllegalArgumentException("shape " + Arrays.toString(newShape) + " has " + known + " elements, tensor of shape "
          + Arrays.toString(shape) + " has " + numel);
    }
    return s;
  }

  // ------------------------------------------------------------------ layout helpers (package-visible)

  static long[] checkShape(long[] shape) {
    Objects.requireNonNull(shape, "shape");
    for (int i = 0; i < shape.length; i++) {
      if (shape[i] < 0) throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has negative size in dim " + i);
    }
    product(shape);
    return shape.clone();
  }

  static long product(long[] shape) {
    long n = 1;
    for (long s : shape) {
      try {
        n = Math.multiplyExact(n, s);
      } catch (ArithmeticException e) {
        throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has more than 2^63 elements");
      }
    }
    return n;
  }

  /** Row-major strides of a contiguous tensor. */
  public static long[] contiguousStrides(long[] shape) {
    long[] st = new long[shape.length];
    long acc = 1;
    for (int i = shape.length - 1; i >= 0; i--) {
      st[i] = acc;
      acc *= Math.max(shape[i], 1);
    }
    return st;
  }

  /** Whether a layout is row-major contiguous (dims of size 1 may have any stride). */
  public static boolean isContiguous(long[] shape, long[] strides) {
    long expected = 1;
    for (int i = shape.length - 1; i >= 0; i--) {
      if (shape[i] == 0) return true;
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }

  private static int normDim(int dim, int rank) {
    int d = dim < 0 ? dim + rank : dim;
    if (d < 0 || d >= rank) {
      throw new IndexOutOfBoundsException("dim " + dim + " out of range [" + (-rank) + ", " + rank + ") for rank " + rank);
    }
    return d;
  }
}

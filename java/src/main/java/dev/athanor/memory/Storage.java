package dev.athanor.memory;

import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.runtime.Stream;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Cleaner;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A block of bytes in one {@link Tier}: host memory (HOST), page-locked host memory (HOST_PINNED), memory of
 * one CUDA device (DEVICE) or a file (DISK). Every byte is accounted in {@link MemoryManager#global()}.
 *
 * <p><b>Ownership.</b> A storage is reference counted. {@link #allocate} returns it with one reference,
 * owned by the caller and given back by {@link #close()} (idempotent). Anything else that must keep it alive
 * (a tensor, a view, an in-flight copy) takes its own reference with {@link #retain()} and gives it back with
 * {@link #release()}. The memory is freed when the count reaches zero, exactly once, whichever thread gets
 * there. Any use after that throws {@link IllegalStateException} naming the storage, so a freed pointer never
 * reaches native code through this class.
 *
 * <p><b>Leaks.</b> A storage that becomes unreachable while still holding references is freed by a
 * {@link Cleaner} and reported as a warning on the System.Logger "dev.athanor.memory.Storage", with the stack
 * of its allocation when {@code -Dathanor.debug.leaks=true}. That is a safety net, not a way to manage memory.
 *
 * <p><b>Caching.</b> DEVICE and HOST_PINNED storage comes from the {@link CachingAllocator} of its device: freeing
 * returns the block to a cache, from which later allocations are served without cudaMalloc / cudaHostAlloc. A
 * DEVICE block belongs to the stream it was allocated on, by default the compute stream of the calling thread's
 * {@link ExecutionContext}; memory also used on another stream (a copy stream, another context) must be
 * announced with {@link #recordStream}, so that it is not reused before that stream's work at free time is done.
 *
 * <p><b>HOST_PINNED without CUDA.</b> When CUDA is unavailable, HOST_PINNED allocations fall back to ordinary
 * page-aligned host memory (still accounted as HOST_PINNED; {@link #isPinned()} tells), so code paths that
 * stage through pinned buffers run unchanged on CPU-only machines.
 *
 * <p>Host allocations of 4096 bytes or more are 4096-byte aligned, so DISK-tier transfers into them can use
 * O_DIRECT.
 */
@SuppressWarnings("restricted") // MemorySegment.reinterpret over live native memory this class owns
public final class Storage implements AutoCloseable {
  /** System property enabling allocation-site capture for leak reports. */
  public static final String DEBUG_LEAKS_PROPERTY = "athanor.debug.leaks";
  private static final boolean DEBUG_LEAKS = Boolean.getBoolean(DEBUG_LEAKS_PROPERTY);
  private static final System.Logger LOG = System.getLogger("dev.athanor.memory.Storage");
  private static final Cleaner CLEANER = Cleaner.create();
  private static final AtomicLong IDS = new AtomicLong();
  private static final AtomicBoolean PINNED_FALLBACK_LOGGED = new AtomicBoolean();
  /** Alignment of large host allocations (O_DIRECT needs 4096-byte aligned buffers). */
  public static final long PAGE = 4096;

  private final long id;
  private final Tier tier;
  private final Device device;
  private final long bytes;
  private final Resource resource;
  private final Cleaner.Cleanable cleanable;
  private final AtomicInteger refs = new AtomicInteger(1);
  private final AtomicBoolean ownerReleased = new AtomicBoolean();

  private Storage(long id, Tier tier, Device device, long bytes, Resource resource) {
    this.id = id;
    this.tier = tier;
    this.device = device;
    this.bytes = bytes;
    this.resource = resource;
    this.cleanable = CLEANER.register(this, resource);
  }

  // ------------------------------------------------------------------ allocation

  /** Allocates {@code bytes} in a host tier (HOST, HOST_PINNED or DISK). */
  public static Storage allocate(Tier tier, long bytes) {
    if (tier == Tier.DEVICE) {
      throw new IllegalArgumentException("DEVICE storage needs a CUDA device: use allocate(Tier.DEVICE, Device.cuda(n), bytes)");
    }
    return allocate(tier, Device.CPU, bytes);
  }

  /**
   * Allocates {@code bytes} (>= 0) in {@code tier}. {@code device} must be a CUDA device for DEVICE (the block
   * belongs to the compute stream of the calling thread's current context) and the CPU for the other tiers.
   * Throws {@link OutOfBudgetException} over the tier's budget and {@link AllocationFailedException} when the
   * native allocation fails (DEVICE and HOST_PINNED: after asking the reclaimers, emptying the cache and
   * retrying once).
   */
  public static Storage allocate(Tier tier, Device device, long bytes) {
    if (tier == Tier.DEVICE && device != null && device.isCuda()) {
      return allocate(tier, device, bytes, ExecutionContext.current(device).computeStream());
    }
    return allocate(tier, device, bytes, null);
  }

  /** DEVICE storage on {@code stream}'s CUDA device, belonging to {@code stream} (e.g. a copy stream's buffers). */
  public static Storage allocate(Stream stream, long bytes) {
    Objects.requireNonNull(stream, "stream");
    return allocate(Tier.DEVICE, stream.device(), bytes, stream);
  }

  private static Storage allocate(Tier tier, Device device, long bytes, Stream stream) {
    Objects.requireNonNull(tier, "tier");
    Objects.requireNonNull(device, "device");
    if (bytes < 0) throw new IllegalArgumentException("cannot allocate " + bytes + " bytes in " + tier + ": must be >= 0");
    if (tier == Tier.DEVICE) {
      if (!device.isCuda()) {
        throw new IllegalArgumentException("DEVICE tier needs a CUDA device, got " + device);
      }
      Cuda.checkDevice(device);
    } else if (!device.isCpu()) {
      throw new IllegalArgumentException(tier + " tier lives on the cpu device, got " + device);
    }
    long id = IDS.incrementAndGet();
    Throwable site = DEBUG_LEAKS ? new Throwable("allocation site of storage#" + id) : null;
    MemoryManager mm = MemoryManager.global();
    Resource r;
    if (tier == Tier.DEVICE || tier == Tier.HOST_PINNED) {
      if (tier == Tier.HOST_PINNED) logPinnedFallback();
      CachingAllocator a = mm.allocator(tier, device);
      CachingAllocator.Block b = a.allocate(bytes, stream);
      mm.addLive(tier, device, bytes);
      r = new Resource(id, tier, device, bytes, b.address, a.pinned(), null, a, b);
    } else {
      mm.reserve(tier, device, bytes);
      try {
        r = tier == Tier.HOST
            ? new Resource(id, tier, device, bytes, NativeRuntime.hostAllocAligned(Math.max(bytes, 1), hostAlign(bytes)),
                false, null, null, null)
            : new Resource(id, tier, device, bytes, 0, false, createFile(id, bytes), null, null);
      } catch (Throwable t) {
        mm.cancel(tier, device, bytes);  // never live: the message below and the peak do not count it
        if (t instanceof NativeException e && tier == Tier.HOST) {
          long available = SystemMemory.hostAvailableBytes();
          throw new AllocationFailedException(tier, device, bytes, tier + " tier: the system could not allocate "
              + MemoryManager.formatBytes(bytes) + " of host memory (" + MemoryManager.formatBytes(mm.liveBytes(tier))
              + " live in the tier" + (available < 0 ? "" : ", " + MemoryManager.formatBytes(available)
              + " available on the machine") + ")", e);
        }
        throw t;
      }
      mm.commit(tier, device, bytes);
    }
    r.site = site;
    return new Storage(id, tier, device, bytes, r);
  }

  /**
   * DISK storage of {@code bytes} in a file at exactly {@code path} (named by the caller, e.g. after the parameters
   * and the role it holds), accounted in the DISK tier like {@link #allocate(Tier, long)}. The file must not exist
   * yet (it is created, sized sparse, and deleted when the storage is freed), so two owners never share one file.
   * Throws {@link OutOfBudgetException} over the DISK budget and {@link AllocationFailedException} naming the tier,
   * the file and the bytes when the file cannot be created or sized.
   */
  public static Storage allocateFile(Path path, long bytes) {
    Objects.requireNonNull(path, "path");
    if (bytes < 0) throw new IllegalArgumentException("cannot allocate " + bytes + " bytes in DISK: must be >= 0");
    Path file = path.toAbsolutePath();
    MemoryManager mm = MemoryManager.global();
    long id = IDS.incrementAndGet();
    Throwable site = DEBUG_LEAKS ? new Throwable("allocation site of storage#" + id) : null;
    mm.reserve(Tier.DISK, Device.CPU, bytes);
    Resource r;
    try {
      try {
        Files.createFile(file);  // fails when it exists: never two owners of one file
      } catch (IOException e) {
        throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, "DISK tier: cannot create " + file + " for "
            + MemoryManager.formatBytes(bytes) + ": " + e, e);
      }
      try {
        sizeFile(file, bytes);
      } catch (RuntimeException e) {
        try {
          Files.deleteIfExists(file);
        } catch (IOException ignored) {
          // the sizing failure is the one to report
        }
        throw e;
      }
      r = new Resource(id, Tier.DISK, Device.CPU, bytes, 0, false, file, null, null);
    } catch (Throwable t) {
      mm.cancel(Tier.DISK, Device.CPU, bytes);
      throw t;
    }
    mm.commit(Tier.DISK, Device.CPU, bytes);
    r.site = site;
    return new Storage(id, Tier.DISK, Device.CPU, bytes, r);
  }

  /** The alignment of a host allocation: a page from one page on, else 64 bytes. */
  private static long hostAlign(long bytes) {
    return Math.max(bytes, 1) >= PAGE ? PAGE : 64;
  }

  private static void logPinnedFallback() {
    if (!Cuda.isAvailable() && PINNED_FALLBACK_LOGGED.compareAndSet(false, true)) {
      LOG.log(Level.DEBUG, "HOST_PINNED allocations use ordinary host memory: CUDA unavailable ({0})",
          Cuda.unavailableReason());
    }
  }

  private static Path createFile(long id, long bytes) {
    Path dir = MemoryManager.global().diskDirectory();
    return sizeFile(dir.resolve("storage-" + id + "-" + Long.toHexString(System.nanoTime()) + ".bin"), bytes);
  }

  /** Creates (when missing) the file at {@code path} and sizes it to {@code bytes}; deletes it when that fails. */
  private static Path sizeFile(Path path, long bytes) {
    long fd;
    try {
      fd = NativeRuntime.fileOpen(path.toString(), true);
    } catch (NativeException e) {
      throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, "DISK tier: cannot create " + path + ": " + e.getMessage(), e);
    }
    try {
      NativeRuntime.fileTruncate(fd, bytes);
    } catch (NativeException e) {
      try {
        NativeRuntime.fileClose(fd);
        Files.deleteIfExists(path);
      } catch (IOException | RuntimeException ignored) {
        // reporting the first failure matters more
      }
      throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, "DISK tier: cannot size " + path + " to "
          + MemoryManager.formatBytes(bytes) + ": " + e.getMessage(), e);
    }
    NativeRuntime.fileClose(fd);
    return path;
  }

  // ------------------------------------------------------------------ accessors

  public long id() {
    return id;
  }

  public Tier tier() {
    return tier;
  }

  /** The CUDA device for DEVICE storage, else {@link Device#CPU}. */
  public Device device() {
    return device;
  }

  public long byteSize() {
    return bytes;
  }

  /** True for page-locked host memory (HOST_PINNED with CUDA available). */
  public boolean isPinned() {
    return resource.pinned;
  }

  /**
   * Announces that {@code stream} uses this memory (besides the stream it was allocated on): when the storage is
   * freed, its block is reused only after the work queued on {@code stream} by then has completed. Needed for
   * DEVICE and HOST_PINNED memory used by kernels or copies on another stream; does nothing for HOST and DISK,
   * whose copies complete before they return.
   */
  public void recordStream(Stream stream) {
    Objects.requireNonNull(stream, "stream");
    checkAlive();
    if (resource.allocator != null) resource.allocator.recordStream(resource.block, stream);
  }

  /** Native address (a device pointer for DEVICE). Throws for DISK storage and after the storage was freed. */
  public long address() {
    if (tier == Tier.DISK) {
      throw new IllegalStateException(this + " is on DISK and has no address; move it to another tier first");
    }
    checkAlive();
    return resource.address;
  }

  /** The file of DISK storage. */
  public Path path() {
    if (tier != Tier.DISK) throw new IllegalStateException(this + " is not DISK storage");
    checkAlive();
    return resource.path;
  }

  public boolean isAlive() {
    return refs.get() > 0;
  }

  public int refCount() {
    return refs.get();
  }

  /** Throws IllegalStateException naming this storage when it has been freed. */
  public void checkAlive() {
    if (refs.get() <= 0) throw new IllegalStateException(this + " was used after it was closed (freed)");
  }

  // ------------------------------------------------------------------ references

  /** Takes one more reference; throws IllegalStateException if the storage is already freed. */
  public Storage retain() {
    int n;
    do {
      n = refs.get();
      if (n <= 0) throw new IllegalStateException(this + " was used after it was closed (freed)");
    } while (!refs.compareAndSet(n, n + 1));
    return this;
  }

  /** Gives back one reference; frees the memory when it was the last. */
  public void release() {
    int n;
    do {
      n = refs.get();
      if (n <= 0) throw new IllegalStateException(this + " released more often than retained");
    } while (!refs.compareAndSet(n, n - 1));
    if (n == 1) {
      resource.explicit = true;
      cleanable.clean();
    }
  }

  /** Gives back the reference returned by {@link #allocate}; idempotent. */
  @Override
  public void close() {
    if (ownerReleased.compareAndSet(false, true)) release();
  }

  // ------------------------------------------------------------------ bulk transfers

  /**
   * Copies {@code count} bytes at {@code byteOffset} of this storage into host memory at {@code hostDst}
   * (DEVICE: on the compute stream of the calling thread's current context, which is then synchronized).
   */
  public void read(long byteOffset, long hostDst, long count) {
    transfer(byteOffset, hostDst, count, false);
  }

  /** Copies {@code count} bytes of host memory at {@code hostSrc} into this storage at {@code byteOffset}. */
  public void write(long byteOffset, long hostSrc, long count) {
    transfer(byteOffset, hostSrc, count, true);
  }

  private void transfer(long off, long host, long count, boolean toStorage) {
    if (off < 0 || count < 0 || off > bytes - count) {
      throw new IndexOutOfBoundsException((toStorage ? "write" : "read") + " of " + count + " bytes at offset " + off
          + " is outside " + this);
    }
    if (count == 0) return;
    if (host == 0) throw new IllegalArgumentException("host address is null");
    retain(); // keeps the memory alive for the duration, and fails cleanly after close
    try {
      long a = resource.address;
      switch (tier) {
        case HOST, HOST_PINNED -> {
          MemorySegment mine = MemorySegment.ofAddress(a + off).reinterpret(count);
          MemorySegment other = MemorySegment.ofAddress(host).reinterpret(count);
          if (toStorage) mine.copyFrom(other); else other.copyFrom(mine);
        }
        case DEVICE -> { // on the current context's compute stream, so it is ordered after the ops queued there
          Stream s = ExecutionContext.current(device).computeStream();
          if (toStorage) NativeRuntime.cudaMemcpyAsync(a + off, host, count, NativeRuntime.H2D, s.handle());
          else NativeRuntime.cudaMemcpyAsync(host, a + off, count, NativeRuntime.D2H, s.handle());
          s.synchronize(); // the host memory may be reused (or read) as soon as this returns
        }
        case DISK -> {
          long fd = NativeRuntime.fileOpen(resource.path.toString(), false);
          try {
            if (toStorage) NativeRuntime.fileWrite(fd, host, count, off);
            else NativeRuntime.fileRead(fd, host, count, off);
          } finally {
            NativeRuntime.fileClose(fd);
          }
        }
      }
    } finally {
      release();
    }
  }

  @Override
  public String toString() {
    return "storage#" + id + "(" + (tier == Tier.DEVICE ? "DEVICE " + device : tier.toString()) + ", "
        + MemoryManager.formatBytes(bytes) + ")";
  }

  // ------------------------------------------------------------------ the native resource (no reference to Storage)

  private static final class Resource implements Runnable {
    final long id;
    final Tier tier;
    final Device device;
    final long bytes;
    final long address;
    final boolean pinned;
    final Path path;
    final CachingAllocator allocator; // DEVICE and HOST_PINNED: where the block goes back
    final CachingAllocator.Block block;
    volatile Throwable site;
    volatile boolean explicit;

    Resource(long id, Tier tier, Device device, long bytes, long address, boolean pinned, Path path,
        CachingAllocator allocator, CachingAllocator.Block block) {
      this.id = id;
      this.tier = tier;
      this.device = device;
      this.bytes = bytes;
      this.address = address;
      this.pinned = pinned;
      this.path = path;
      this.allocator = allocator;
      this.block = block;
    }

    @Override
    public void run() {
      try {
        if (path != null) {
          Files.deleteIfExists(path);
        } else if (allocator != null) {
          allocator.free(block);
        } else {
          NativeRuntime.hostFreeAligned(address);
        }
      } catch (IOException | RuntimeException e) {
        LOG.log(Level.ERROR, "freeing storage#" + id + " failed", e);
      } finally {
        MemoryManager.global().release(tier, device, bytes);
      }
      if (!explicit) { // reported after the memory is back, so the accounting agrees with the report
        MemoryManager.global().countLeak();
        String what = "storage#" + id + " (" + describeTier() + ", " + MemoryManager.formatBytes(bytes) + ")";
        Throwable s = site;
        if (s != null) {
          LOG.log(Level.WARNING, "LEAK: " + what + " was never closed; the Cleaner freed it", s);
        } else {
          LOG.log(Level.WARNING, "LEAK: " + what + " was never closed; the Cleaner freed it (run with -D"
              + DEBUG_LEAKS_PROPERTY + "=true to record allocation sites)");
        }
      }
    }

    private String describeTier() {
      return tier == Tier.DEVICE ? "DEVICE " + device : String.valueOf(tier);
    }
  }
}

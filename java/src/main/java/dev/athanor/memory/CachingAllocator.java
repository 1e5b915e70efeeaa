package dev.athanor.memory;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.Stream;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A caching allocator for one tier of one device (DEVICE memory of a CUDA device, or HOST_PINNED memory):
 * freed blocks stay in a cache and are handed out again without a native call. The rules (PyTorch's, with
 * cross-stream reuse gated by events):
 * <ul>
 *   <li>Sizes are rounded up to {@link #GRANULE} bytes; a request takes the smallest cached block that fits
 *       and wastes at most {@link #maxWaste(long)} bytes. Blocks are never split, so every address is the
 *       start of a native allocation (and keeps its alignment).
 *   <li>A block belongs to the stream it was allocated on (for HOST_PINNED: none, the host). When it is freed,
 *       a marker (a CUDA event) is recorded on that stream and on every stream added with
 *       {@link #recordStream}. An allocation on the block's own stream may reuse it at once (stream order makes
 *       that safe) once the markers of the other streams have completed; an allocation on any other stream
 *       only once every marker has completed. The host never waits for a marker here.
 *   <li>Reserved bytes (blocks in use plus cached) count against the tier's budget. When a native allocation
 *       would exceed the budget, or the native allocation fails, the registered reclaimers are asked, the cache is
 *       emptied (synchronize, free every cached block), and the allocation is retried once; then it
 *       fails with {@link OutOfBudgetException} or {@link AllocationFailedException}, naming the bytes live and
 *       cached.
 * </ul>
 * Thread-safe. The native calls are behind {@link RawMemory}, so the policy is tested on the CPU with a fake.
 */
final class CachingAllocator {
  /** Allocation sizes are multiples of this. */
  static final long GRANULE = 512;

  /** One native allocation. Fields other than address and size are guarded by the allocator. */
  static final class Block {
    final long address;
    final long size;
    final long seq;
    Stream stream;                                  // the owning stream; null for host (HOST_PINNED) blocks
    final List<Stream> uses = new ArrayList<>(1);   // other streams that used it (recordStream)
    final List<Object> markers = new ArrayList<>(2); // recorded at free: [own stream's, if any] + uses'
    boolean ownMarker;                              // markers.get(0) is the own stream's

    Block(long address, long size, long seq, Stream stream) {
      this.address = address;
      this.size = size;
      this.seq = seq;
      this.stream = stream;
    }

    @Override
    public String toString() {
      return "block(0x" + Long.toHexString(address) + ", " + size + " bytes)";
    }
  }

  private final Tier tier;
  private final Device device;
  private final RawMemory raw;
  private final MemoryManager mm;
  private final TreeSet<Block> cache =
      new TreeSet<>(Comparator.<Block>comparingLong(b -> b.size).thenComparingLong(b -> b.seq));
  private final AtomicLong seqs = new AtomicLong();
  private long reserved, cached, nativeAllocations, nativeFrees;

  CachingAllocator(Tier tier, Device device, RawMemory raw, MemoryManager mm) {
    this.tier = tier;
    this.device = device;
    this.raw = raw;
    this.mm = mm;
  }

  /** The most bytes a cached block may exceed a (rounded) request by and still serve it: a quarter, or 4 KiB. */
  static long maxWaste(long size) {
    return Math.max(size / 4, 4096);
  }

  static long roundUp(long bytes) {
    return Math.multiplyExact(Math.ceilDiv(Math.max(bytes, 1), GRANULE), GRANULE);
  }

  boolean pinned() {
    return raw.pinned();
  }

  /**
   * A block of at least {@code bytes} for use on {@code stream} (null: the host), from the cache when one fits,
   * else natively (emptying the cache and retrying once under pressure).
   */
  Block allocate(long bytes, Stream stream) {
    long size = roundUp(bytes);
    synchronized (this) {
      Block b = takeCached(size, stream);
      if (b != null) return b;
    }
    InFlight.poll(); // storages of finished asynchronous copies come back into the cache
    synchronized (this) {
      Block b = takeCached(size, stream);
      if (b != null) return b;
    }
    Block b = allocateNative(bytes, size, stream, false);
    if (b != null) return b;
    mm.reclaim(tier, device, size); // what the reclaimers free comes back into the cache
    synchronized (this) {
      b = takeCached(size, stream);
      if (b != null) return b;
    }
    emptyCache();
    return allocateNative(bytes, size, stream, true);
  }

  private Block takeCached(long size, Stream stream) {
    long limit = size + maxWaste(size);
    for (Block b : cache.tailSet(new Block(0, size, -1, null), true)) {
      if (b.size > limit) break;
      if (!usable(b, stream)) continue;
      cache.remove(b);
      cached -= b.size;
      for (Object m : b.markers) raw.release(m);
      b.markers.clear();
      b.ownMarker = false;
      b.stream = stream;
      return b;
    }
    return null;
  }

  /** Whether {@code stream} may use cached block {@code b} now; completed markers are dropped on the way. */
  private boolean usable(Block b, Stream stream) {
    for (int i = b.markers.size() - 1; i >= 0; i--) {
      Object m = b.markers.get(i);
      if (raw.isComplete(m)) {
        raw.release(m);
        b.markers.remove(i);
        if (i == 0) b.ownMarker = false;
      }
    }
    if (b.markers.isEmpty()) return true;
    // Same stream: stream order covers its own work; other streams' markers must have completed.
    return b.stream == stream && b.ownMarker && b.markers.size() == 1;
  }

  /** Null when over budget or out of memory and not {@code last}; throws when {@code last}. */
  private Block allocateNative(long bytes, long size, Stream stream, boolean last) {
    synchronized (this) {
      long budget = mm.budgetBytes(tier);
      if (size > budget || reserved > budget - size) {
        if (!last) return null;
        throw new OutOfBudgetException(tier, device, bytes, budget, mm.liveBytes(tier, device), cached, reserved);
      }
      reserved += size; // held while the native call runs
    }
    long address;
    try {
      address = raw.allocate(size);
    } catch (NativeException e) {
      synchronized (this) {
        reserved -= size;
      }
      if (e.status() != NativeException.OOM) throw e;
      if (!last) return null;
      throw new AllocationFailedException(tier, device, bytes, where() + ": allocating "
          + MemoryManager.formatBytes(bytes) + " failed after emptying the cache and one retry, with "
          + MemoryManager.formatBytes(mm.liveBytes(tier, device)) + " in use by Athanor and "
          + MemoryManager.formatBytes(cachedBytes()) + " cached" + raw.pressure() + ": " + e.getMessage(), e);
    }
    synchronized (this) {
      nativeAllocations++;
    }
    return new Block(address, size, seqs.incrementAndGet(), stream);
  }

  /** Marks {@code b} as used by {@code stream} too, so its reuse waits for the work queued there at free time. */
  synchronized void recordStream(Block b, Stream stream) {
    if (stream != b.stream && !b.uses.contains(stream)) b.uses.add(stream);
  }

  /** Returns {@code b} to the cache, recording markers on the streams that used it. */
  void free(Block b) {
    List<Object> markers = new ArrayList<>(1 + b.uses.size());
    boolean own = false;
    if (b.stream != null) {
      Object m = raw.record(b.stream);
      if (m != null) {
        markers.add(m);
        own = true;
      }
    }
    synchronized (this) {
      for (Stream s : b.uses) {
        Object m = raw.record(s);
        if (m != null) markers.add(m);
      }
      b.uses.clear();
      b.markers.addAll(markers);
      b.ownMarker = own;
      cache.add(b);
      cached += b.size;
    }
  }

  /**
   * Waits for all work, then frees every cached block natively; returns the bytes freed. Blocks in use are not
   * affected.
   */
  long emptyCache() {
    List<Block> victims;
    synchronized (this) {
      if (cache.isEmpty()) return 0;
    }
    raw.synchronize();
    synchronized (this) {
      victims = new ArrayList<>(cache);
      cache.clear();
      for (Block b : victims) {
        for (Object m : b.markers) raw.release(m);
        b.markers.clear();
        cached -= b.size;
        reserved -= b.size;
        nativeFrees++;
      }
    }
    long freed = 0;
    for (Block b : victims) {
      raw.free(b.address);
      freed += b.size;
    }
    return freed;
  }

  synchronized long reservedBytes() {
    return reserved;
  }

  synchronized long cachedBytes() {
    return cached;
  }

  synchronized long nativeAllocations() {
    return nativeAllocations;
  }

  synchronized long nativeFrees() {
    return nativeFrees;
  }

  private String where() {
    return tier == Tier.DEVICE ? "DEVICE tier (" + device + ")" : tier + " tier";
  }

  @Override
  public String toString() {
    return "CachingAllocator(" + where() + ", reserved " + reservedBytes() + ", cached " + cachedBytes() + ")";
  }
}

package dev.athanor.offload;

import dev.athanor.memory.AllocationFailedException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.nn.KvCache;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * A model's KV caches kept on the DISK tier ({@link Transformer#setKvCachePaging}): every cache the model makes while
 * this is attached keeps each layer's keys and values in two files, {@code layer.<i>.keys.bin} and {@code
 * layer.<i>.values.bin} (named by layer and role, never by an object's identity), in a subdirectory of the offload
 * directory that belongs to the cache and is removed with its files when the cache is closed.
 *
 * <p><b>Layout.</b> A file holds the layer's (B, capacity, KV, D) keys (or values), each sequence's part starting at a
 * multiple of {@link Storage#PAGE} ({@link #sequenceBytes}), so that the transfers of page-aligned host windows go
 * through O_DIRECT where the file system allows it. <b>Windows.</b> {@value #SLOTS} slots in host memory, each a key
 * and a value window of one layer's whole cache (B x {@link #sequenceBytes} each; {@link #hostBytes}), used in turn:
 * before a layer attends, its cached tokens (each sequence's first {@code length} rows, rounded up to whole pages) are
 * in a slot; with read-ahead the next layer's are read into the other slot while this one computes; the layer's new
 * rows (the pages they touch) are written back behind the computation. The slot of the layer before is reused only
 * after its write (one I/O thread runs the transfers in the order they were asked for). A step reads its first layer
 * while the computation waits (nothing is read ahead across steps). Traffic per step: {@link #stepRead}, {@link
 * #stepWritten}.
 *
 * <p>The bits moved are the cache's bits, so decoding gives the tokens and logits of an in-memory cache. A transfer
 * that fails (a file deleted or truncated under the run, a full disk) throws {@link OffloadIOException} naming the
 * DISK tier, the file, the layer, the role and the bytes, at the layer that needs it (a failed write at the next use
 * of its slot, or when the cache is closed). Every wait of the computing thread is a stall in {@link #stats()};
 * transfers and stalls are JDK Flight Recorder events. CPU backend only; not thread-safe (one computing thread).
 */
public final class KvCacheOnDisk implements AutoCloseable {
  /** Host windows of one layer's keys and values. */
  public static final int SLOTS = 2;
  /** The role names of the two files of a layer (statistics, events, file names, messages). */
  static final String[] ROLES = {"keys", "values"};
  private static final AtomicInteger THREADS = new AtomicInteger();

  private final Transformer model;
  private final Function<KvCache.Layout, KvCache.Paging> before;
  private final Path directory;
  private final boolean prefetch;
  private final TransferStats stats = new TransferStats();
  private final List<Pager> open = new ArrayList<>();
  private boolean closed;

  private KvCacheOnDisk(Transformer model, Path directory, boolean prefetch) {
    this.model = model;
    this.before = model.kvCachePaging();
    this.directory = directory;
    this.prefetch = prefetch;
  }

  /**
   * Keeps the KV caches {@code model} makes from now on in files under {@code directory} (null: the DISK tier's
   * directory); with {@code prefetch} the next layer is read while the current one computes. CPU backend. Close it
   * after the caches.
   */
  public static KvCacheOnDisk attach(Transformer model, Path directory, boolean prefetch) {
    Objects.requireNonNull(model, "model");
    if (model.device().isCuda()) {
      throw new IllegalArgumentException("a KV cache on DISK needs the CPU backend, not " + model.device());
    }
    Path dir = directory != null ? directory : MemoryManager.global().diskDirectory();
    KvCacheOnDisk k = new KvCacheOnDisk(model, dir, prefetch);
    model.setKvCachePaging(k::open);
    return k;
  }

  /** Bytes of one sequence's keys (or values) of one layer in a file: its capacity's rows, rounded up to a page. */
  public static long sequenceBytes(KvCache.Layout l) {
    return roundUp(Math.multiplyExact(l.sequenceElements(), (long) l.dtype().byteSize()));
  }

  /** Bytes of the DISK files of a cache of layout {@code l}: two per layer, B x {@link #sequenceBytes} each. */
  public static long diskBytes(KvCache.Layout l) {
    return Math.multiplyExact(2L * l.layers(), Math.multiplyExact(l.batch(), sequenceBytes(l)));
  }

  /** Bytes of host memory the windows of a cache of layout {@code l} take: {@value #SLOTS} slots of a key and a value window. */
  public static long hostBytes(KvCache.Layout l) {
    long window = MemoryManager.reservedSize(Tier.HOST, Math.multiplyExact(l.batch(), sequenceBytes(l)));
    return Math.multiplyExact(2L * SLOTS, window);
  }

  /** Bytes read from DISK by a step of {@code n} tokens after {@code length} cached ones: each layer's cached pages. */
  public static long stepRead(KvCache.Layout l, int length, int n) {
    long one = length == 0 ? 0 : Math.min(sequenceBytes(l), roundUp(length * l.rowBytes()));
    return 2L * l.layers() * l.batch() * one;
  }

  /** Bytes written to DISK by the same step: each layer's pages that its new rows touch. */
  public static long stepWritten(KvCache.Layout l, int length, int n) {
    long one = Math.min(sequenceBytes(l), roundUp((length + (long) n) * l.rowBytes())) - roundDown(length * l.rowBytes());
    return 2L * l.layers() * l.batch() * one;
  }

  private static long roundUp(long bytes) {
    return Math.ceilDiv(bytes, Storage.PAGE) * Storage.PAGE;
  }

  private static long roundDown(long bytes) {
    return bytes / Storage.PAGE * Storage.PAGE;
  }

  /** The DISK traffic of every cache made while attached, and the time the computation waited for it. */
  public TransferStats.Snapshot transfers() {
    return stats.snapshot();
  }

  /** The directory the caches' subdirectories are made in. */
  public Path directory() {
    return directory;
  }

  /** The files of the caches open now, keys and values per layer in layer order (for checks and messages). */
  public List<Path> files() {
    List<Path> out = new ArrayList<>();
    for (Pager p : open) for (Storage[] kv : p.files) for (Storage s : kv) out.add(s.path());
    return out;
  }

  /** The model's caches are in memory again (as before this was attached); caches made before keep their files. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    model.setKvCachePaging(before);
  }

  private KvCache.Paging open(KvCache.Layout layout) {
    if (closed) throw new IllegalStateException("the KV cache on DISK in " + directory + " is closed");
    Pager p = new Pager(layout);
    open.add(p);
    return p;
  }

  /** One cache's files, windows and I/O thread. */
  private final class Pager implements KvCache.Paging {
    private final KvCache.Layout layout;
    private final long seqBytes;
    private final Path dir;
    private final Storage[][] files;   // [layer][keys, values]
    private final Tensor[][] slots = new Tensor[SLOTS][];  // [slot][keys, values], allocated at first use
    private final int[] slotLayer = new int[SLOTS], slotLength = new int[SLOTS];
    private final Future<?>[] reading = new Future<?>[SLOTS], writing = new Future<?>[SLOTS];
    private final ExecutorService io;
    private int current = -1;   // the slot of the layer acquired last
    private boolean closed;

    Pager(KvCache.Layout layout) {
      this.layout = layout;
      this.seqBytes = sequenceBytes(layout);
      long bytes = diskBytes(layout);
      String what = "DISK tier: cannot keep the KV cache (" + MemoryManager.formatBytes(bytes) + ", " + layout.layers()
          + " layers x " + layout.batch() + " sequences x " + layout.capacity() + " tokens) in the offload directory "
          + directory.toAbsolutePath();
      this.dir = UnitFiles.createDirectory(directory, bytes, what);
      this.files = new Storage[layout.layers()][2];
      java.util.Arrays.fill(slotLayer, -1);
      try {
        UnitFiles.checkRoom(dir, bytes);
        for (int l = 0; l < files.length; l++) {
          for (int r = 0; r < 2; r++) {
            files[l][r] = Storage.allocateFile(dir.resolve(unit(l) + "." + ROLES[r] + ".bin"),
                Math.multiplyExact(layout.batch(), seqBytes));
          }
        }
      } catch (IOException e) {
        free();
        throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, what + ": " + e.getMessage(), e);
      } catch (RuntimeException e) {
        free();
        throw e;
      }
      this.io = ChunkStreamer.ioThreads(1, "athanor-kv-io-", THREADS);
    }

    private String unit(int layer) {
      return "layer." + (layout.firstLayer() + layer);
    }

    @Override
    public long batchStride() {
      return seqBytes / layout.dtype().byteSize();
    }

    @Override
    public Tensor[] acquire(int layer, int length) {
      checkOpen();
      allocateSlots();
      int s = -1;
      for (int i = 0; i < SLOTS; i++) if (slotLayer[i] == layer && slotLength[i] == length && reading[i] != null) s = i;
      if (s < 0) {
        s = (current + 1) % SLOTS;
        read(s, layer, length);
      }
      Future<?> r = reading[s];
      reading[s] = null;
      OffloadEvents.awaitStalling(r, stats, unit(layer), "KV cache", "KV cache read");
      current = s;
      if (prefetch && layer + 1 < layout.layers()) read((s + 1) % SLOTS, layer + 1, length);
      return slots[s];
    }

    @Override
    public void appended(int layer, int from, int n) {
      checkOpen();
      int s = current;
      if (s < 0 || slotLayer[s] != layer) throw new IllegalStateException("layer " + layer + " was not acquired last");
      long rb = layout.rowBytes();
      long lo = roundDown(from * rb), hi = Math.min(seqBytes, roundUp((from + (long) n) * rb));
      Tensor[] w = slots[s];
      Future<?> previous = writing[s];
      writing[s] = io.submit(() -> {
        ChunkStreamer.await(previous);
        for (int r = 0; r < 2; r++) {
          for (int b = 0; b < layout.batch(); b++) {
            long off = b * seqBytes + lo;
            UnitFiles.transfer(files[layer][r], stats, unit(layer), ROLES[r], true, off, w[r].address() + off, hi - lo);
          }
        }
      });
    }

    /** Asks for layer {@code layer}'s first {@code length} rows per sequence in slot {@code s}, after the slot's write. */
    private void read(int s, int layer, int length) {
      Future<?> pending = reading[s];
      reading[s] = null;
      ChunkStreamer.await(pending);  // an abandoned read ahead (another length): it must end before the slot is refilled
      Future<?> write = writing[s];
      writing[s] = null;
      slotLayer[s] = layer;
      slotLength[s] = length;
      long bytes = length == 0 ? 0 : Math.min(seqBytes, roundUp(length * layout.rowBytes()));
      Tensor[] w = slots[s];
      reading[s] = io.submit(() -> {
        ChunkStreamer.await(write);  // a failed write surfaces here, at the next use of its slot
        for (int r = 0; r < 2 && bytes > 0; r++) {
          for (int b = 0; b < layout.batch(); b++) {
            long off = b * seqBytes;
            UnitFiles.transfer(files[layer][r], stats, unit(layer), ROLES[r], false, off, w[r].address() + off, bytes);
          }
        }
      });
    }

    private void allocateSlots() {
      if (slots[0] != null) return;
      long elements = layout.batch() * batchStride();
      try {
        for (int s = 0; s < SLOTS; s++) {
          slots[s] = new Tensor[2];
          for (int r = 0; r < 2; r++) {
            slots[s][r] = Tensor.zeros(layout.dtype(), Device.CPU, Tier.HOST, elements).detach();
          }
        }
      } catch (RuntimeException e) {
        freeSlots();
        throw e;
      }
    }

    private void checkOpen() {
      if (closed) throw new IllegalStateException("the KV cache in " + dir + " is closed");
    }

    @Override
    public void close() {
      if (closed) return;
      closed = true;
      Throwable failure = null;
      for (Future<?>[] fs : List.of(reading, writing)) {
        for (Future<?> f : fs) {
          try {
            ChunkStreamer.await(f);
          } catch (RuntimeException | Error e) {
            if (failure == null) failure = e; else failure.addSuppressed(e);
          }
        }
      }
      io.shutdown();
      free();
      open.remove(this);
      if (failure instanceof RuntimeException r) throw r;
      if (failure instanceof Error e) throw e;
    }

    private void freeSlots() {
      for (Tensor[] kv : slots) if (kv != null) for (Tensor t : kv) if (t != null) t.close();
      java.util.Arrays.fill(slots, null);
    }

    private void free() {
      freeSlots();
      for (Storage[] kv : files) for (Storage s : kv) if (s != null) s.close();
      UnitFiles.removeDirectory(dir);
    }
  }
}

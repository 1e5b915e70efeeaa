package dev.athanor.offload;

import dev.athanor.memory.Tier;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Streams DISK-resident roles ({@link UnitFiles}) through a bounded set of host staging buffers: a range is cut into
 * chunks (within one unit each, at most {@code chunkBytes} per role, ends anywhere, also inside a tensor); each
 * chunk's bytes are read from the unit files into a staging slot, handed to a computation, and written back. With
 * {@value OffloadConfig#STAGING_SLOTS} slots the next chunk is being read while the current one computes and the
 * previous one is being written, on a small pool of I/O threads (the native file I/O uses O_DIRECT where address,
 * offset and length allow). Chunks compute in order on the calling thread, so the results do not depend on the I/O
 * timing or on the thread counts.
 *
 * <p>A role of a unit whose window the {@link ParameterStore} has mapped while the streamer runs (a resident unit's
 * weights, gradient or moments, {@link OffloadConfig#residentUnits()}) is not streamed, neither by {@link #run} nor by a
 * {@link Pipeline}: the computation finds it in the store and works on it in place. Nor is a unit the files keep
 * resident ({@link UnitFiles#isResident}, a ZeRO shard's resident units): the computation gets that unit's HOST window
 * in place of a staging slot.
 *
 * <p>The staging slots are HOST tensors, allocated on first use (and so counted in the HOST budget and peak) and kept
 * until {@link #close()}. An I/O failure (a file deleted or truncated under the run, a full disk) stops the pass after
 * the transfers in flight have ended and throws {@link OffloadIOException} naming the file.
 */
public final class ChunkStreamer implements AutoCloseable {
  /** Runs on one chunk: its range of the flat layout and one staging tensor per streamed role (1-D, its length). */
  @FunctionalInterface
  public interface ChunkAction {
    void apply(Range chunk, Map<Role, Tensor> staged);
  }

  private static final AtomicInteger THREADS = new AtomicInteger();
  private static final int IO_THREADS = 2;

  private final java.util.Map<Role, UnitFiles> files;  // the files of each streamed role
  private final ParameterStore store;
  private final List<Role> roles;
  private final java.util.Set<Role> readOnly;
  private final long chunkElements;
  private final ExecutorService io;
  private final List<EnumMap<Role, Tensor>> slots = new ArrayList<>();
  private Pipeline open;  // the pipeline using the slots, or null
  private boolean closed;

  /** A streamer over every role of {@code files} with chunks of at most {@code chunkBytes} per role, all written back. */
  public ChunkStreamer(UnitFiles files, long chunkBytes) {
    this(byRole(List.of(files)), chunkBytes, java.util.Set.of());
  }

  /** Every role of each of {@code files} (a role in one of them only), mapped to its files. */
  public static java.util.Map<Role, UnitFiles> byRole(List<UnitFiles> files) {
    java.util.Map<Role, UnitFiles> m = new EnumMap<>(Role.class);
    for (UnitFiles f : files) {
      for (Role r : f.roles()) {
        if (m.put(r, f) != null) throw new IllegalArgumentException(r + " is in two sets of offload files");
        if (f.store() != files.get(0).store()) throw new IllegalArgumentException("offload files of different parameter stores");
      }
    }
    return m;
  }

  /**
   * A streamer over every role of {@code files} (role to its offload files, all of one store) with chunks of at most
   * {@code chunkBytes} per role; the roles in {@code readOnly} (e.g. gradients the optimizer reads) are read and not
   * written back.
   */
  public ChunkStreamer(java.util.Map<Role, UnitFiles> files, long chunkBytes, java.util.Set<Role> readOnly) {
    if (files.isEmpty()) throw new IllegalArgumentException("no offload files to stream");
    this.files = new EnumMap<>(files);
    this.store = files.values().iterator().next().store();
    this.roles = List.copyOf(new java.util.TreeSet<>(files.keySet()));
    this.readOnly = java.util.Set.copyOf(readOnly);
    for (Role r : roles) {
      if (r.dtype(store.computeDtype()) != DType.F32) throw new IllegalArgumentException("only F32 roles stream, not " + r);
    }
    long maxUnit = 1;
    for (Unit u : store.units()) maxUnit = Math.max(maxUnit, u.elements().length());
    this.chunkElements = OffloadConfig.chunkElements(chunkBytes, maxUnit);
    this.io = ioThreads(IO_THREADS, "athanor-offload-io-", THREADS);
  }

  /**
   * A pool of {@code n} daemon I/O threads named {@code prefix} and a number from {@code counter}, which end when idle
   * (between steps that are far apart no threads are held).
   */
  public static ExecutorService ioThreads(int n, String prefix, AtomicInteger counter) {
    ThreadPoolExecutor pool = new ThreadPoolExecutor(n, n, 30, TimeUnit.SECONDS, new LinkedBlockingQueue<>(), r -> {
      Thread t = new Thread(r, prefix + counter.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    pool.allowCoreThreadTimeOut(true);
    return pool;
  }

  /** Elements of one role per chunk (at most the largest unit). */
  public long chunkElements() {
    return chunkElements;
  }

  /** Host bytes the staging slots take once allocated. */
  public long stagingBytes() {
    return OffloadConfig.STAGING_SLOTS * roles.size() * chunkElements * 4;
  }

  /** The chunks of {@code range}: unit by unit, each unit's part cut every {@link #chunkElements()} elements. */
  public List<Range> chunks(Range range) {
    List<Range> out = new ArrayList<>();
    for (Unit u : store.units()) {
      Range r = u.elements().intersect(range);
      for (long s = r.start(); s < r.end(); s += chunkElements) out.add(new Range(s, Math.min(r.end(), s + chunkElements)));
    }
    return out;
  }

  /**
   * Reads, updates with {@code action} and writes back every chunk of {@code range}, in order. The staged tensors
   * passed to {@code action} are valid only during the call. The files must hold {@code range} (for files of a part of
   * the store, {@link UnitFiles#range()}, a range inside it).
   */
  public void run(Range range, ChunkAction action) {
    if (closed) throw new IllegalStateException("the chunk streamer is closed");
    if (open != null) throw new IllegalStateException("a pipeline of this streamer is still open");
    for (UnitFiles f : files.values()) {
      if (!range.isEmpty() && !f.range().contains(range)) {
        throw new IllegalArgumentException("range " + range + " is outside the " + f.range() + " the files hold");
      }
    }
    List<Range> chunks = chunks(range);
    if (chunks.isEmpty()) return;
    allocateSlots();
    int n = chunks.size(), nslots = slots.size();
    @SuppressWarnings("unchecked")
    Future<?>[] reads = new Future<?>[nslots], writes = new Future<?>[nslots];
    Throwable failure = null;
    try {
      for (int i = 0; i < Math.min(nslots - 1, n); i++) reads[i] = submit(chunks.get(i), i % nslots, false);
      for (int i = 0; i < n; i++) {
        int slot = i % nslots;
        awaitCounted(reads[slot], chunks.get(i), "read");
        reads[slot] = null;
        Range c = chunks.get(i);
        EnumMap<Role, Tensor> staged = new EnumMap<>(Role.class);
        Unit cu = unitOf(c);
        try {
          for (Role r : roles) stage(staged, r, cu, c, slot, java.util.Set.of());
          action.apply(c, staged);
        } finally {
          for (Tensor t : staged.values()) t.close();
        }
        writes[slot] = submit(c, slot, true);
        int next = i + nslots - 1;
        if (next < n) {
          int ns = next % nslots;
          awaitCounted(writes[ns], chunks.get(next), "write");  // the slot's last chunk is on disk before it is refilled
          writes[ns] = null;
          reads[ns] = submit(chunks.get(next), ns, false);
        }
      }
    } catch (Throwable t) {
      failure = t;
    }
    // nothing may be in flight on the slots when this returns
    failure = awaitAll(failure, reads);
    failure = awaitAll(failure, writes);
    if (failure instanceof RuntimeException e) throw e;
    if (failure instanceof Error e) throw e;
    if (failure != null) throw new IllegalStateException(failure);
  }

  /** Waits for every one of {@code fs} (nulls skipped); returns {@code failure}, or the first failure, the others suppressed. */
  private static Throwable awaitAll(Throwable failure, Future<?>[] fs) {
    for (Future<?> f : fs) {
      try {
        await(f);
      } catch (Throwable t) {
        if (failure == null) failure = t;
        else if (failure != t) failure.addSuppressed(t);
      }
    }
    return failure;
  }

  private Future<?> submit(Range chunk, int slot, boolean write) {
    Unit u = unitOf(chunk);
    java.util.Set<Role> skip = skipped(u, java.util.Set.of());
    return io.submit(() -> {
      transfer(chunk, u, slot, write, skip);
      return null;
    });
  }

  /** Moves {@code chunk} (of unit {@code u}) between the files and slot {@code slot}, every role but {@code skip}. */
  private void transfer(Range chunk, Unit u, int slot, boolean write, java.util.Set<Role> skip) {
    EnumMap<Role, Tensor> s = slots.get(slot);
    for (Role r : roles) {
      if (write && readOnly.contains(r) || skip.contains(r)) continue;
      long off = (chunk.start() - files.get(r).extent(u).start()) * 4, bytes = chunk.length() * 4;  // from the file's start
      files.get(r).transfer(r, u, write, off, s.get(r).address(), bytes);
    }
  }

  /**
   * Opens a {@link Pipeline} over the chunks of {@code ranges} (in that order, each inside the files' range) that
   * streams every role but {@code skip}: the first chunks are read at once. One pipeline at a time, and no {@link #run}
   * while it is open.
   */
  public Pipeline pipeline(List<Range> ranges, java.util.Set<Role> skip) {
    if (closed) throw new IllegalStateException("the chunk streamer is closed");
    if (open != null) throw new IllegalStateException("a pipeline of this streamer is still open");
    List<Range> all = new ArrayList<>();
    for (Range r : ranges) {
      for (UnitFiles f : files.values()) {
        if (!r.isEmpty() && !f.range().contains(r)) {
          throw new IllegalArgumentException("range " + r + " is outside the " + f.range() + " the files hold");
        }
      }
      all.addAll(chunks(r));
    }
    allocateSlots();
    open = new Pipeline(all, java.util.Set.copyOf(skip));
    return open;
  }

  /**
   * Chunks streamed in a fixed order whose computations the caller runs when it is ready, range by range ({@link
   * #process}), while the I/O threads keep going on their own: each slot's task writes its chunk back and then reads
   * the chunk {@value OffloadConfig#STAGING_SLOTS} places further, so the next chunks are read while the caller does
   * other work (an optimizer update deferred into the next forward: the next units' state is read while the current
   * unit computes). The computations run in order on the calling thread, on the same chunks as {@link #run}.
   */
  public final class Pipeline implements AutoCloseable {
    private final List<Range> chunks;
    private final java.util.Set<Role> skip;
    private final Future<?>[] tasks;  // per slot: the last task submitted on it
    private int next;                 // the next chunk to compute
    private boolean done;

    private Pipeline(List<Range> chunks, java.util.Set<Role> skip) {
      this.chunks = chunks;
      this.skip = skip;
      this.tasks = new Future<?>[slots.size()];
      for (int i = 0; i < Math.min(tasks.length, chunks.size()); i++) tasks[i] = task(-1, i);
    }

    /** The task of slot {@code write % slots} (or of {@code read % slots}): write chunk {@code write} (when >= 0) then read {@code read}. */
    private Future<?> task(int write, int read) {
      Range w = write < 0 ? null : chunks.get(write), r = read < chunks.size() ? chunks.get(read) : null;
      Unit wu = w == null ? null : unitOf(w), ru = r == null ? null : unitOf(r);
      java.util.Set<Role> wskip = wu == null ? null : skipped(wu, skip), rskip = ru == null ? null : skipped(ru, skip);
      int slot = (write < 0 ? read : write) % tasks.length;
      return io.submit(() -> {
        if (w != null) transfer(w, wu, slot, true, wskip);
        if (r != null) transfer(r, ru, slot, false, rskip);
        return null;
      });
    }

    /**
     * Runs {@code action} on each chunk of {@code range}, which must be the next ranges' chunks in order (each streamed
     * role staged; the roles skipped are not in the map), then hands each chunk's slot to the I/O threads, which write
     * it back and read the chunk {@value OffloadConfig#STAGING_SLOTS} further.
     */
    public void process(Range range, ChunkAction action) {
      if (done) throw new IllegalStateException("the pipeline is closed");
      List<Range> want = chunks(range);
      if (next + want.size() > chunks.size() || !chunks.subList(next, next + want.size()).equals(want)) {
        throw new IllegalStateException("range " + range + " is not next in the pipeline's order (next chunk: "
            + (next < chunks.size() ? chunks.get(next) : "none") + ")");
      }
      for (Range c : want) {
        int slot = next % tasks.length;
        awaitCounted(tasks[slot], c, "read");
        tasks[slot] = null;
        EnumMap<Role, Tensor> staged = new EnumMap<>(Role.class);
        Unit cu = unitOf(c);
        try {
          for (Role r : roles) stage(staged, r, cu, c, slot, skip);
          action.apply(c, staged);
        } finally {
          for (Tensor t : staged.values()) t.close();
        }
        tasks[slot] = task(next, next + tasks.length);
        next++;
      }
    }

    /** Whether every chunk was computed. */
    public boolean finished() {
      return next == chunks.size();
    }

    /**
     * Waits for every transfer in flight (the last chunks written back) and releases the slots to the streamer; throws
     * the first transfer's failure. Idempotent.
     */
    @Override
    public void close() {
      if (done) return;
      done = true;
      open = null;
      Throwable failure = awaitAll(null, tasks);
      if (failure instanceof RuntimeException e) throw e;
      if (failure instanceof Error e) throw e;
    }
  }

  /**
   * Whether {@code role} of {@code unit} goes through the staging slots: not when the store has that unit's window of
   * the (paged) role mapped, as it has a resident unit's weights, nor when the files keep it resident: the computation
   * then works on the window in place.
   */
  private boolean streams(Role role, Unit unit) {
    return !(store.isPaged(role) && store.isMapped(role, unit)) && !files.get(role).isResident(role, unit);
  }

  /**
   * Puts what the computation gets of {@code role} for chunk {@code c} (of unit {@code u}) into {@code staged}: slot
   * {@code slot}'s buffer when it streams, the files' resident window when they keep it, nothing when it is in {@code
   * skip} or mapped in the store.
   */
  private void stage(Map<Role, Tensor> staged, Role role, Unit u, Range c, int slot, java.util.Set<Role> skip) {
    if (skip.contains(role)) return;
    if (streams(role, u)) {
      staged.put(role, slots.get(slot).get(role).slice(0, 0, c.length()));
    } else if (files.get(role).isResident(role, u)) {
      staged.put(role, files.get(role).slice(role, c));
    }
  }

  /** {@code base} and the roles of {@code unit} that are not streamed ({@link #streams}: resident in the store). */
  private java.util.Set<Role> skipped(Unit unit, java.util.Set<Role> base) {
    java.util.Set<Role> s = java.util.EnumSet.noneOf(Role.class);
    s.addAll(base);
    for (Role r : roles) if (!streams(r, unit)) s.add(r);
    return s;
  }

  private Unit unitOf(Range chunk) {
    for (Unit u : store.units()) if (u.elements().contains(chunk)) return u;
    throw new IllegalArgumentException("chunk " + chunk + " is not inside one unit");
  }

  /** {@link #await}, counting the time the computing thread waits as a stall. */
  private void awaitCounted(Future<?> f, Range chunk, String reason) {
    if (f == null) return;
    OffloadEvents.awaitStalling(f, files.get(roles.get(0)).stats(), unitOf(chunk).name(), "optimizer state", reason);
  }

  static void await(Future<?> f) {
    if (f == null) return;
    boolean interrupted = false;
    try {
      while (true) {
        try {
          f.get();
          return;
        } catch (InterruptedException e) {
          interrupted = true;  // the transfer must end before its buffer can be reused: keep waiting
        } catch (ExecutionException e) {
          Throwable c = e.getCause();
          if (c instanceof RuntimeException r) throw r;
          if (c instanceof Error err) throw err;
          throw new IllegalStateException(c);
        }
      }
    } finally {
      if (interrupted) Thread.currentThread().interrupt();
    }
  }

  private void allocateSlots() {
    if (!slots.isEmpty()) return;
    try {
      for (int s = 0; s < OffloadConfig.STAGING_SLOTS; s++) {
        EnumMap<Role, Tensor> m = new EnumMap<>(Role.class);
        slots.add(m);
        for (Role r : roles) m.put(r, Tensor.empty(DType.F32, Device.CPU, Tier.HOST, chunkElements).detach());
      }
    } catch (RuntimeException e) {
      freeSlots();
      throw e;
    }
  }

  private void freeSlots() {
    for (EnumMap<Role, Tensor> m : slots) for (Tensor t : m.values()) t.close();
    slots.clear();
  }

  /** Frees the staging slots and stops the I/O threads (the unit files belong to the caller). */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      if (open != null) open.close();  // nothing may be in flight on the slots when they are freed
    } catch (RuntimeException ignored) {
      // closing: the pipeline's owner saw or abandons its failure
    } finally {
      io.shutdownNow();
      freeSlots();
    }
  }
}

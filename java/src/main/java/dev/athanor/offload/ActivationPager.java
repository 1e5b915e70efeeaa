package dev.athanor.offload;

import dev.athanor.memory.AllocationFailedException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockActs;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Keeps the blocks' saved activations of a model's training micro-batch on the DISK tier between its forward and its
 * backward, through the model's {@link BlockHooks}: the third way, beside keeping them in memory and recomputing them,
 * to hold activation memory to a few blocks. The model keeps them in a ring of {@link Transformer#activationRing()}
 * buffers ({@link Transformer#setOffloadedActivations}, turned on here), block i's in slot {@code i % ring}.
 *
 * <p><b>Forward</b>: after block i's forward ({@code saveActivations}) its buffers are written to the block's file on
 * an I/O thread while the next block computes; block {@code i + ring}, which refills the slot, waits for that write
 * before it starts. The last {@code ring} blocks are never written: their slots are not refilled before the backward
 * reads them. <b>Backward</b> (blocks in reverse): block i's activations, read ahead, are waited for before its
 * backward ({@code restoreActivations}), and block {@code i - 1}'s are read into its (free) slot while block i's
 * backward runs. Per micro-batch each offloaded block is written once and read once: {@link #bytesPerMicroBatch}.
 *
 * <p>Files: one per offloaded block, named after the block and the micro-batch in flight ({@code
 * block.3.micro.0.activations.bin}; the trainer runs its micro-batches one at a time, so they reuse micro-batch slot
 * 0's files), never after an object's identity, in a subdirectory of the offload directory that belongs to this object
 * and is removed with them on {@link #close()}. Each buffer starts at a multiple of {@link Storage#PAGE} in the file,
 * so the transfers of the (page-aligned) ring buffers go through O_DIRECT where the file system allows it. The files
 * are sized when the first micro-batch of a shape is saved: the directory's file system must have room for all of them
 * then (else {@link AllocationFailedException} naming the directory and the bytes), and a transfer that fails later (a
 * full disk, a file deleted under the run) throws {@link OffloadIOException} naming the file.
 *
 * <p>The data is moved bit for bit, so training gives the in-memory run's results. The only host memory is the ring
 * (the model's, counted in the HOST budget): the transfers read and write its buffers in place. Every wait of the
 * computing thread is a stall in {@link #stats()}. Not thread-safe: one model, one computing thread. CPU backend only.
 */
public final class ActivationPager implements BlockHooks, AutoCloseable {
  /** The role the transfers are recorded under (statistics, Flight Recorder events, messages). */
  public static final String ROLE = "activations";
  private static final AtomicInteger THREADS = new AtomicInteger();

  private final Transformer model;
  private final boolean wasOffloaded;   // the model's setting before this pager turned it on
  private final boolean prefetch;
  private final int first, count, ring, offloaded;  // the stage's first block, its blocks, the ring, blocks written
  private final Unit[] units;            // per block of the stage
  private final Map<Unit, Integer> blockOf = new IdentityHashMap<>();
  private final Path dir;
  private final TransferStats stats = new TransferStats();
  private final ExecutorService io;
  private final Storage[] files;         // per offloaded block, for the current shape (null: none yet)
  private final BlockActs[] slot;        // per block: the ring slot its last forward filled
  private final Future<?>[] writes, reads;
  private long[] sizes;                  // the bytes of each buffer of a block's activations (current shape)
  private long[] offsets;                // where each starts in a block's file
  private boolean closed;

  /**
   * Offloads the activations of {@code model} (CPU, no recomputation, one activation set) to files in a subdirectory of
   * {@code directory}; with {@code prefetch} the next block's activations are read while the current backward runs
   * (off: each is read when its backward starts). Turns the model's {@link Transformer#setOffloadedActivations} on
   * (back off on {@link #close()}); the owner installs the pager among the model's hooks ({@link BlockHooks#both}).
   */
  public ActivationPager(Transformer model, Path directory, boolean prefetch) {
    this.model = Objects.requireNonNull(model, "model");
    Objects.requireNonNull(directory, "directory");
    if (!model.device().isCpu()) {
      throw new IllegalArgumentException("activations on DISK need the CPU backend; this model is on " + model.device()
          + " (offload on CUDA is not supported yet)");
    }
    this.wasOffloaded = model.offloadedActivations();
    model.setOffloadedActivations(true);  // refuses recomputation and several activation sets
    this.prefetch = prefetch;
    this.first = model.stage().firstBlock();
    this.count = model.stage().blocks();
    this.ring = model.activationRing();
    this.offloaded = count - ring;
    this.units = new Unit[count];
    for (int i = 0; i < count; i++) {
      units[i] = model.parameters().unit(ModelConfig.blockUnit(first + i));
      blockOf.put(units[i], i);
    }
    this.files = new Storage[offloaded];
    this.slot = new BlockActs[count];
    this.writes = new Future<?>[count];
    this.reads = new Future<?>[count];
    this.dir = UnitFiles.createDirectory(directory, 0, "DISK tier: cannot keep the blocks' activations in the offload "
        + "directory " + directory.toAbsolutePath());
    this.io = ChunkStreamer.ioThreads(1, "athanor-activation-io-", THREADS);
  }

  /**
   * The DISK bytes one micro-batch moves: each offloaded block's activations ({@code blockBytes}, {@link
   * dev.athanor.nn.Footprint#blockActivationBytes}) written once and read once, for {@code offloadedBlocks} blocks
   * ({@link dev.athanor.nn.Footprint#offloadedBlocks}).
   */
  public static long bytesPerMicroBatch(long blockBytes, int offloadedBlocks) {
    return Math.multiplyExact(2L * offloadedBlocks, blockBytes);
  }

  /** The traffic to and from the activation files so far, and the time the computation waited for it. */
  public TransferStats stats() {
    return stats;
  }

  /** The subdirectory holding the files. */
  public Path directory() {
    return dir;
  }

  /** The file of block {@code block}'s activations (the model's index), or null when it has none (yet). */
  public Path file(int block) {
    int i = block - first;
    return i >= 0 && i < offloaded && files[i] != null ? files[i].path() : null;
  }

  /** The file name of a block's activations for micro-batch slot {@code micro}. */
  static String fileName(int block, int micro) {
    return "block." + block + ".micro." + micro + ".activations.bin";
  }

  // ------------------------------------------------------------------ hooks

  @Override
  public void beforeWeights(Unit unit, Pass pass) {
    checkOpen();
    if (pass != Pass.FORWARD) return;
    Integer j = blockOf.get(unit);
    if (j == null) return;
    if (j == 0) awaitReads();  // a backward left unfinished: nothing may still fill a slot the forward refills
    int refilled = j - ring;   // block j's forward refills that block's slot: its write must be done
    if (refilled >= 0) await(writes, refilled, "activations written");
  }

  @Override
  public void saveActivations(int block, BlockActs acts) {
    checkOpen();
    int i = index(block);
    slot[i] = acts;
    if (i >= offloaded) return;  // its slot keeps it until its backward
    prepare(acts);
    List<Tensor> buffers = acts.buffers();
    writes[i] = transfer(i, buffers, true);
  }

  @Override
  public void restoreActivations(int block, BlockActs acts) {
    checkOpen();
    int i = index(block);
    if (slot[i] != acts) {
      throw new IllegalStateException("block " + block + "'s backward reads other activation buffers than its forward filled: "
          + "the model ran another forward in between, or its workspace changed");
    }
    if (i < offloaded) {
      if (reads[i] == null) reads[i] = read(i);
      await(reads, i, "activations read");
    }
    int next = i - 1;  // the next block of the backward: its slot is free now
    if (prefetch && next >= 0 && next < offloaded && slot[next] != acts && reads[next] == null) reads[next] = read(next);
  }

  // ------------------------------------------------------------------ internals

  private int index(int block) {
    int i = block - first;
    if (i < 0 || i >= count) {
      throw new IllegalArgumentException("block " + block + " is not one of this stage's blocks [" + first + ", " + (first + count) + ")");
    }
    return i;
  }

  /** Reads block {@code i}'s file into the slot its forward filled, on the I/O thread. */
  private Future<?> read(int i) {
    awaitQuietly(writes[i]);  // written in the forward, whose later blocks waited for it: done
    writes[i] = null;
    return transfer(i, slot[i].buffers(), false);
  }

  /** Moves {@code buffers} (block {@code i}'s activations) to ({@code write}) or from its file, on the I/O thread. */
  private Future<?> transfer(int i, List<Tensor> buffers, boolean write) {
    Storage file = files[i];
    String name = units[i].name();
    long[] s = sizes, o = offsets;
    return io.submit(() -> {
      for (int k = 0; k < s.length; k++) UnitFiles.transfer(file, stats, name, ROLE, write, o[k], buffers.get(k).address(), s[k]);
      return null;
    });
  }

  /**
   * Sizes the files for the buffers of {@code acts} (on the first save, and again when the micro-batch's shape
   * changed), after checking that the directory's file system has room for every offloaded block's.
   */
  private void prepare(BlockActs acts) {
    List<Tensor> buffers = acts.buffers();
    long[] s = new long[buffers.size()];
    for (int k = 0; k < s.length; k++) s[k] = buffers.get(k).byteSize();
    if (sizes != null && java.util.Arrays.equals(s, sizes)) return;
    discard();
    closeFiles();
    long[] o = new long[s.length];
    long end = 0;
    for (int k = 0; k < s.length; k++) {
      o[k] = end;
      end = Math.addExact(end, Math.multiplyExact(Math.ceilDiv(s[k], Storage.PAGE), Storage.PAGE));
    }
    long total = Math.multiplyExact(end, (long) offloaded);
    try {
      UnitFiles.checkRoom(dir, total);
    } catch (IOException e) {
      throw new AllocationFailedException(Tier.DISK, Device.CPU, total, "DISK tier: cannot keep "
          + MemoryManager.formatBytes(total) + " of the activations of " + offloaded + " blocks in the offload directory "
          + dir.getParent() + ": " + e.getMessage(), e);
    }
    try {
      for (int i = 0; i < offloaded; i++) files[i] = Storage.allocateFile(dir.resolve(fileName(first + i, 0)), end);
    } catch (RuntimeException e) {
      closeFiles();
      throw e;
    }
    sizes = s;
    offsets = o;
  }

  private void await(Future<?>[] pending, int i, String reason) {
    Future<?> f = pending[i];
    pending[i] = null;
    OffloadEvents.awaitStalling(f, stats, units[i].name(), ROLE, reason);
  }

  private void awaitReads() {
    for (int i = 0; i < reads.length; i++) {
      awaitQuietly(reads[i]);
      reads[i] = null;
    }
  }

  /** Waits for {@code f} (null: nothing), ignoring its failure (a step being abandoned, or one already reported). */
  private static void awaitQuietly(Future<?> f) {
    try {
      ChunkStreamer.await(f);
    } catch (RuntimeException ignored) {
      // reported where the transfer was awaited for its data, or the step is being abandoned
    }
  }

  /**
   * Forgets a micro-batch that failed part-way: waits for the transfers in flight (their failures no longer matter).
   * The next forward writes every offloaded block again.
   */
  public void discard() {
    for (Future<?>[] pending : List.of(writes, reads)) {
      for (int i = 0; i < pending.length; i++) {
        awaitQuietly(pending[i]);
        pending[i] = null;
      }
    }
  }

  private void closeFiles() {
    for (int i = 0; i < files.length; i++) {
      if (files[i] != null) files[i].close();
      files[i] = null;
    }
    sizes = null;
    offsets = null;
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("the activation pager is closed");
  }

  /**
   * Waits for the transfers in flight, deletes the files and their subdirectory, and turns the model's offloaded
   * activations back off (unless they were on before); idempotent. The hooks belong to the caller.
   */
  @Override
  public void close() {
    boolean open = !closed;
    closed = true;
    if (open) {
      discard();  // never throws: the transfers' failures no longer matter
      io.shutdownNow();
      closeFiles();
      try {
        Files.deleteIfExists(dir);
      } catch (IOException ignored) {
        // a file someone else put there keeps the directory; nothing of ours is left in it
      }
      if (!wasOffloaded) model.setOffloadedActivations(false);
    }
  }
}

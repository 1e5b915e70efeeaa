package dev.athanor.dist;

import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.UnitFiles;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.ShardedParameters;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * ZeRO stage 3 on the CPU: each data-parallel replica keeps only its shard of the flat masters (the ZeRO 1/2 cut,
 * {@link DataParallel#optimizerShard}) and of the step's gradient, and the model's weights and micro-batch gradients
 * exist unit by unit (embeddings, each block, the head), in host windows mapped into the paged {@link ParameterStore}
 * through the model's {@link BlockHooks}, as the offload pager maps DISK-backed windows.
 *
 * <p><b>Weights.</b> Before a unit runs ({@code beforeWeights}) its window is filled by {@link Communicator#allGatherV}
 * in rank order, each rank contributing the overlap of its shard with the unit's flat range (0 elements allowed), so
 * the window holds exactly the bits of the replicas' masters; it is freed when the pass no longer needs it ({@code
 * afterWeights}). The head's window stays from the head's forward to its backward, which comes next; tied embeddings'
 * window stays from the embeddings' forward to the head's backward, so they are gathered twice per micro-batch, not
 * three times (the head's backward, which holds their weights and gradient at once, stays the peak). Every rank runs the
 * same units in the same order, so the collectives match.
 *
 * <p><b>Read-ahead and the fold overlapped</b> (on unless {@code overlap} is false; the CLI's {@code --overlap off}
 * turns both off): the order of the gathers is known: forward the embeddings, blocks 0 .. L-1, the head; backward (the
 * head and the tied embeddings still held) blocks L-1 .. 0, the embeddings. When a unit's weights are gathered for its
 * pass (and at the head's backward, which gathers nothing), the next unit's gather starts on the data-parallel {@link
 * CommThread} into a second window while this unit computes; its {@code beforeWeights} then only waits for what is
 * left. With the shard on DISK, that task also reads this rank's part of each piece, so the read is ahead too (on the
 * communication thread, before each piece's all-gather). The gradient folds run on the same thread ({@link
 * UnitGradientFold} with overlap: handed over at {@code afterGradients}, at most {@link UnitGradientFold#IN_FLIGHT}
 * unfinished), and a gather not read ahead (each micro-batch's first, or one for a unit not predicted) is submitted to
 * it too and waited for: the thread runs every collective of the step in the order the training thread submitted them,
 * which is the same program order on every rank, so the collectives match (gathers and folds alternate as without
 * overlap); {@link MpiCommunicator}'s lock serializes its MPI calls with the training thread's own (after {@link
 * #flush}). A fold that failed is thrown on the training thread (naming the rank, the unit and the micro-batch) before
 * its next gather. Without overlap gathers and folds run on the training thread. Nothing is read ahead across
 * micro-batches or steps (the forward's first gather waits, also for the last micro-batch's embeddings' fold). Memory:
 * one unit's weights more than without overlap at most (the window read ahead; three units' weights under the tied
 * head's backward, whose next unit is the last block), and the gradient window of the fold in flight (a block's or the
 * head's). The bits are the same either way. The training thread's time in gathers (synchronous ones and waits for
 * those read ahead) is {@link #gatherWaitNanos()}; its waits for folds are in {@link #stats()}.
 *
 * <p><b>Gradients.</b> As ZeRO 2's, by the same {@link UnitGradientFold}: a unit's micro-batch gradient is formed in a
 * zeroed window mapped at its first backward use and, once complete ({@code afterGradients}), folded into the owners'
 * step-gradient shards by {@link Communicator#reduceScatterAccumulateV} (accumulator first, then the ranks in order;
 * the step's first micro-batch overwrites), so ZeRO 3 equals ZeRO 2 and one process with {@code accum × replicas}
 * micro-batches bit for bit. The optimizer then updates the shard's masters in place ({@link
 * dev.athanor.train.AdamW#AdamW(ParameterStore, Range, Tensor)}); the next forward gathers the new weights.
 *
 * <p>Memory per replica: masters and step gradient {@code 4 psi / N} each, plus at most two units' weight and gradient
 * windows at once (the tied embeddings under the head), and with read-ahead one unit's weights more. {@link #unshard}
 * gathers the whole masters again (e.g. to save the trained model). Close this after the trainer and before the model; not thread-safe.
 *
 * <p><b>The shard on DISK</b> ({@link #attach(Transformer, Communicator, OffloadConfig)}, ZeRO 3 with offload, after
 * ZeRO-Infinity): the shard's masters ({@link Role#MASTER}) and/or step gradient ({@link Role#GRAD}) live in {@link
 * UnitFiles} of the shard's range in the offload directory instead of memory. A unit's gather goes piece by piece (the
 * offload's chunk of elements each, one {@link Communicator#allGatherV} per piece): this rank reads its part of the
 * piece from DISK into a host buffer and contributes that; the gradient fold reads, folds and writes behind one piece's
 * part at a time ({@link UnitGradientFold}); the optimizer streams both chunk by chunk with the shard's moments ({@link
 * dev.athanor.train.AdamW}). HOST then holds the windows, a chunk's part of each role and the optimizer's staging
 * instead of {@code 8 psi / N}; a gather copies bits and the fold's additions are per element, so the bits are those of
 * the shard in memory.
 */
public final class ShardedWeights implements BlockHooks, ShardedParameters, AutoCloseable {
  private final Transformer model;
  private final ParameterStore store;
  private final Communicator comm;
  private final Range shard;
  private final Tensor masters;           // the shard's masters in memory, or null (on DISK in files)
  private final UnitFiles files;          // the shard's roles on DISK (MASTER, GRAD), or null
  private final long piece;               // with the masters on DISK: the most elements of a unit gathered at once
  private final UnitGradientFold fold;    // the step's gradient shard and the gradient windows
  private final BlockHooks before;        // the model's hooks before this was attached
  private final Tensor[] weights;         // per unit index: the mapped weight window, or null
  private final int[] refs;
  private final Unit head, embedding;     // null when the model has none
  private final boolean tied;
  private final int[] position;           // per unit index: its place in the forward order
  private final List<Unit> order;         // forward order: embeddings, blocks, head
  private final ExecutorService thread;   // the communication thread of the read-ahead and the folds, or null (off)
  private Unit aheadUnit;                 // the unit read ahead, or null
  private Tensor aheadWindow;
  private Future<?> ahead;
  private long gatherWaitNanos, readAheads, missed;
  private boolean closed;

  private ShardedWeights(Transformer model, Communicator comm, Range shard, Tensor masters, UnitGradientFold fold,
      UnitFiles files, long piece, ExecutorService thread) {
    this.model = model;
    this.files = files;
    this.piece = piece;
    this.store = model.parameters();
    this.comm = comm;
    this.shard = shard;
    this.masters = masters;
    this.fold = fold;
    this.before = model.hooks();
    int n = store.units().size();
    this.weights = new Tensor[n];
    this.refs = new int[n];
    this.head = model.stage().head() ? store.unit(ModelConfig.HEAD_UNIT) : null;
    this.embedding = model.stage().embedding() ? store.unit(ModelConfig.EMBEDDING_UNIT) : null;
    this.tied = model.config().tiedEmbeddings() && head != null && embedding != null;
    List<Unit> o = new ArrayList<>();
    if (embedding != null) o.add(embedding);
    for (Unit u : store.units()) if (u != embedding && u != head) o.add(u);
    if (head != null) o.add(head);
    this.order = List.copyOf(o);
    this.position = new int[n];
    for (int i = 0; i < order.size(); i++) position[order.get(i).index()] = i;
    this.thread = thread;
  }

  /**
   * Shards {@code model}'s masters over {@code comm}'s ranks (a data-parallel group; every rank calls this with the
   * same model, whose masters are identical on every rank, e.g. initialized from the same seed): this rank copies its
   * shard, the store's masters and gradients become paged without a backing copy, and these hooks join the model's.
   * Needs the CPU backend with F32 compute (the masters are the compute weights) and the whole model in one stage.
   */
  public static ShardedWeights attach(Transformer model, Communicator comm) {
    return attach(model, comm, OffloadConfig.NONE);
  }

  /**
   * As {@link #attach(Transformer, Communicator)}, with the shard's masters and step gradient on DISK where {@code
   * offload} puts {@link Role#MASTER} and {@link Role#GRAD} (its other roles are the optimizer's): files of the shard's
   * range in a subdirectory of {@code offload}'s directory, the masters written there at once. The units {@link
   * OffloadConfig#residentUnits()} names for MASTER or GRAD keep their part of that role of the shard in HOST memory
   * instead ({@link UnitFiles#isResident}): gathered, folded and updated there, never read from or written to DISK.
   */
  public static ShardedWeights attach(Transformer model, Communicator comm, OffloadConfig offload) {
    return attach(model, comm, offload, true);
  }

  /**
   * As {@link #attach(Transformer, Communicator, OffloadConfig)}; with {@code overlap} each next unit's weights are
   * gathered ahead and each unit's gradient folded on a communication thread (the same bits either way).
   */
  public static ShardedWeights attach(Transformer model, Communicator comm, OffloadConfig offload, boolean overlap) {
    Objects.requireNonNull(model, "model");
    Objects.requireNonNull(comm, "comm");
    Objects.requireNonNull(offload, "offload");
    if (offload.activationsOnDisk()) {
      throw new IllegalArgumentException("ZeRO 3 keeps the activations in memory; the offload also asks for them on DISK");
    }
    ParameterStore store = model.parameters();
    if (!model.device().isCpu() || !store.weightsAreMasters()) {
      throw new IllegalArgumentException("ZeRO 3 needs the CPU backend with F32 compute (the masters are the compute "
          + "weights); this model computes in " + store.computeDtype() + " on " + model.device());
    }
    if (store.isPaged(Role.MASTER) || store.isPaged(Role.GRAD)) {
      throw new IllegalStateException("the model's weights or gradients are already paged (offload?); ZeRO 3 pages them itself");
    }
    if (model.tensorParallel().split()) throw new IllegalArgumentException("ZeRO 3 with tensor parallelism is not supported");
    Range shard = DataParallel.optimizerShard(store, comm);
    java.util.Set<Role> onDisk = java.util.EnumSet.noneOf(Role.class);
    for (Role r : offload.diskRoles()) if (r == Role.MASTER || r == Role.GRAD) onDisk.add(r);
    Tensor m = null;
    UnitFiles f = null;
    UnitGradientFold g = null;
    ExecutorService thread = overlap ? CommThread.start(comm.rank()) : null;
    try {
      // the resident units of MASTER and GRAD: their parts of the shard in HOST windows of the files
      if (!onDisk.isEmpty()) f = new UnitFiles(store, onDisk, offload.resolvedDirectory(), shard, offload.residentUnits());
      long maxUnit = 1;
      for (Unit u : store.units()) maxUnit = Math.max(maxUnit, u.elements().length());
      long piece = OffloadConfig.chunkElements(offload.chunkBytes(), maxUnit);  // what the optimizer streams at once, too
      g = UnitGradientFold.forShard(store, comm, shard, onDisk.contains(Role.GRAD) ? f : null, piece, thread);
      try (Tensor mine = store.slice(Role.MASTER, shard)) {
        if (onDisk.contains(Role.MASTER)) {
          f.transfer(Role.MASTER, shard, mine, true);
        } else {
          m = Tensor.empty(DType.F32, Device.CPU, Tier.HOST, shard.length()).detach();
          m.copyFrom(mine);
        }
      }
      ShardedWeights s = new ShardedWeights(model, comm, shard, m, g, f, piece, thread);
      if (store.has(Role.GRAD)) store.release(Role.GRAD);
      store.pageWithoutBacking(Role.MASTER);  // frees the whole masters
      store.pageWithoutBacking(Role.GRAD);
      model.setHooks(BlockHooks.both(s.before, s));
      return s;
    } catch (RuntimeException e) {
      if (m != null) m.close();
      if (g != null) g.close();
      if (f != null) f.close();
      if (thread != null) thread.shutdownNow();
      throw e;
    }
  }

  @Override
  public Range shard() {
    return shard;
  }

  @Override
  public Tensor masters() {
    return masters;
  }

  @Override
  public UnitFiles shardFiles() {
    return files;
  }

  @Override
  public void flush() {
    settleAhead();  // nothing is read ahead across steps; a step that ended early may leave one
    fold.flush();
  }

  @Override
  public Tensor gradient() {
    return fold.gradient();
  }

  /** The communicator the shards are cut over. */
  public Communicator communicator() {
    return comm;
  }

  @Override
  public void beginMicroBatch(int index) {
    checkOpen();
    settleAhead();
    fold.beginMicroBatch(index);
  }

  // ------------------------------------------------------------------ hooks

  @Override
  public void beforeWeights(Unit unit, Pass pass) {
    checkOpen();
    int u = unit.index();
    boolean gathered = weights[u] == null;
    if (gathered) {
      long t0 = System.nanoTime();
      Tensor w = null;
      try {
        fold.retireDone();  // a fold that failed is thrown before this rank's next collective
        if (aheadUnit == unit) {
          w = takeAhead();
        } else {
          if (ahead != null) missed++;  // read ahead for another unit: the order was not the predicted one
          awaitAhead(true);
          w = Tensor.empty(DType.F32, Device.CPU, Tier.HOST, unit.elements().length()).detach();
          if (thread != null) {
            gatherOnThread(unit, w);  // behind the folds handed over: one order of collectives on every rank
          } else {
            gather(unit, w);
          }
        }
        store.map(Role.MASTER, unit, w);
      } catch (RuntimeException e) {
        if (w != null) w.close();
        throw e;
      } finally {
        gatherWaitNanos += System.nanoTime() - t0;
      }
      weights[u] = w;
    }
    refs[u]++;
    fold.beforeWeights(unit, pass);  // a backward's gradient window
    if (gathered || unit == head && pass == Pass.BACKWARD) readAhead(next(unit, pass));
  }

  /** The unit whose weights are gathered after {@code unit}'s in {@code pass}, or null (none within the pass). */
  private Unit next(Unit unit, Pass pass) {
    int i = position[unit.index()];
    return switch (pass) {
      case FORWARD -> i + 1 < order.size() ? order.get(i + 1) : null;
      case BACKWARD -> i > 0 ? order.get(i - 1) : null;
      default -> null;  // decoding: no read-ahead
    };
  }

  /** Starts gathering {@code unit}'s weights into a window of its own on the communication thread. */
  private void readAhead(Unit unit) {
    if (thread == null || unit == null || ahead != null || weights[unit.index()] != null) return;
    Tensor w = Tensor.empty(DType.F32, Device.CPU, Tier.HOST, unit.elements().length()).detach();
    try {
      ahead = thread.submit(() -> gather(unit, w));
    } catch (RuntimeException e) {
      w.close();
      throw e;
    }
    aheadUnit = unit;
    aheadWindow = w;
    readAheads++;
  }

  /**
   * Gathers {@code unit}'s weights into {@code w} on the communication thread and waits: the folds handed over before
   * run first, so every rank makes its collectives in the order the training thread submitted them.
   */
  private void gatherOnThread(Unit unit, Tensor w) {
    Future<?> f = thread.submit(() -> gather(unit, w));
    try {
      f.get();
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof Error err) throw err;
      throw new CommunicatorException("rank " + comm.rank() + " of " + comm.size() + ": the gather of " + unit.name()
          + " on the communication thread failed: " + c.getMessage(), c);
    } catch (InterruptedException e) {
      if (!f.cancel(false)) {  // running: the caller frees its window, so it ends first (a minute at most, as settleAhead)
        try {
          f.get(60, TimeUnit.SECONDS);
        } catch (ExecutionException | InterruptedException | TimeoutException | java.util.concurrent.CancellationException x) {
          // abandoned with the step
        }
      }
      Thread.currentThread().interrupt();
      throw new IllegalStateException("rank " + comm.rank() + ": interrupted while waiting for the gather of " + unit.name(), e);
    }
  }

  /** Waits for the gather read ahead and hands over its window (the caller owns it). */
  private Tensor takeAhead() {
    awaitAhead(false);
    Tensor w = aheadWindow;
    aheadWindow = null;
    aheadUnit = null;
    return w;
  }

  /**
   * Waits for the gather in flight, if any (so that this thread's next collective follows it on every rank); frees its
   * window when {@code drop}. A failed gather frees the window and throws {@link CommunicatorException} naming this rank
   * and the unit.
   */
  private void awaitAhead(boolean drop) {
    if (ahead == null) return;
    Future<?> f = ahead;
    ahead = null;
    try {
      f.get();
    } catch (ExecutionException e) {
      String name = aheadUnit.name();
      dropAhead();
      Throwable c = e.getCause();
      if (c instanceof Error err) throw err;
      throw new CommunicatorException("rank " + comm.rank() + " of " + comm.size() + ": the gather of " + name
          + " read ahead on the communication thread failed: " + c.getMessage(), c);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      ahead = f;  // still running: discard() decides about its window
      throw new IllegalStateException("rank " + comm.rank() + ": interrupted while waiting for a gather read ahead", e);
    }
    if (drop) dropAhead();
  }

  private void dropAhead() {
    if (aheadWindow != null) aheadWindow.close();
    aheadWindow = null;
    aheadUnit = null;
  }

  /**
   * The training thread's time in gathers since creation: the synchronous ones and the waits for those read ahead (the
   * communication the read-ahead did not hide), including waits for a gather in flight before this thread's own
   * collectives.
   */
  public long gatherWaitNanos() {
    return gatherWaitNanos;
  }

  /** The gathers started ahead on the communication thread since creation. */
  public long readAheads() {
    return readAheads;
  }

  /** The gathers read ahead for a unit that did not run next (their windows dropped unused) since creation. */
  public long readAheadsMissed() {
    return missed;
  }

  /**
   * With overlap, what the communication thread's folds hid and cost since creation ({@link UnitGradientFold#stats}):
   * the training thread's waits for folds, and the unit folds done; zeros without overlap.
   */
  public OverlapStats stats() {
    return fold.stats();
  }

  /** Whether the next unit's weights are gathered ahead on a communication thread (and the folds run there too). */
  public boolean readsAhead() {
    return thread != null;
  }

  @Override
  public void afterWeights(Unit unit, Pass pass) {
    int u = unit.index();
    if (weights[u] == null || refs[u] == 0) throw new IllegalStateException("afterWeights(" + unit.name() + ") without beforeWeights");
    if (--refs[u] > 0) return;
    // the head's backward comes right after its forward: keep its weights; tied embeddings are read again by the head's
    // forward and backward, and the head's backward already holds their gradient, so keeping them costs no peak
    if (pass == Pass.FORWARD && (unit == head || tied && unit == embedding)) return;
    free(unit);
  }

  @Override
  public void afterGradients(Unit unit) {
    if (fold.overlaps()) {  // handed to the communication thread, behind the gather in flight, on every rank
      fold.afterGradients(unit);
      return;
    }
    long t0 = System.nanoTime();
    try {
      awaitAhead(false);  // the fold's collective comes after the gather in flight, on every rank
    } finally {
      gatherWaitNanos += System.nanoTime() - t0;
    }
    fold.afterGradients(unit);
  }

  /**
   * Fills {@code w} (the unit's elements) by the all-gather of every rank's part of {@code unit}: this rank's from its
   * shard in memory at once, or from DISK piece by piece (its part of each piece read into a host buffer first).
   */
  private void gather(Unit unit, Tensor w) {
    Range e = unit.elements();
    if (masters != null) {
      Range mine = e.intersect(shard);
      long a = mine.isEmpty() ? 0 : mine.start() - shard.start(), b = mine.isEmpty() ? 0 : mine.end() - shard.start();
      try (Tensor in = masters.slice(0, a, b)) {
        comm.allGatherV(in, w, counts(unit));
      }
      return;
    }
    for (long s = e.start(); s < e.end(); s += piece) {
      Range p = new Range(s, Math.min(e.end(), s + piece)), mine = p.intersect(shard);
      try (Tensor in = Tensor.empty(DType.F32, Device.CPU, Tier.HOST, mine.length());
          Tensor out = w.slice(0, p.start() - e.start(), p.end() - e.start())) {
        if (!mine.isEmpty()) files.transfer(Role.MASTER, mine, in, false);
        comm.allGatherV(in, out, fold.counts(p));
      }
    }
  }

  private long[] counts(Unit unit) {
    return fold.counts(unit);
  }

  private void free(Unit unit) {
    Tensor w = weights[unit.index()];
    weights[unit.index()] = null;
    refs[unit.index()] = 0;
    try {
      if (!store.isClosed() && store.isMapped(Role.MASTER, unit)) store.unmap(Role.MASTER, unit);
    } finally {
      w.close();
    }
  }

  /** The bytes of the windows mapped now (weights and gradients). */
  public long windowBytes() {
    long b = fold.windowBytes();
    for (Tensor w : weights) if (w != null) b += w.byteSize();
    if (aheadWindow != null) b += aheadWindow.byteSize();
    return b;
  }

  @Override
  public void discard() {
    settleAhead();
    for (Unit u : store.units()) if (weights[u.index()] != null) free(u);
    fold.discard();
  }

  /**
   * Forgets the gather read ahead: cancelled if not started, else waited for (up to a minute; its window is written by
   * the communication thread until it ends, so one still running then is left allocated rather than freed under it).
   */
  private void settleAhead() {
    if (ahead == null) {
      dropAhead();
      return;
    }
    Future<?> f = ahead;
    ahead = null;
    if (f.cancel(false)) {
      dropAhead();
      return;
    }
    try {
      f.get(60, TimeUnit.SECONDS);
    } catch (ExecutionException | java.util.concurrent.CancellationException e) {
      // the gather failed: the step is being abandoned anyway
    } catch (TimeoutException e) {
      aheadWindow = null;  // still being written (a peer gone?): leaked, not freed under the writer
      aheadUnit = null;
      return;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      aheadWindow = null;
      aheadUnit = null;
      return;
    }
    dropAhead();
  }

  // ------------------------------------------------------------------ the end

  /**
   * Gathers the whole masters into the store again (a collective of the ranks, e.g. after the last step, to save the
   * model): the paged gradients are released, every rank gets every master in a flat buffer, and these hooks leave the
   * model, which then runs as without ZeRO 3. The shards stay (closed with this object).
   */
  public void unshard() {
    checkOpen();
    if (!store.isPaged(Role.MASTER)) return;
    discard();
    store.release(Role.GRAD);
    store.unpage(Role.MASTER);
    if (masters != null) {
      comm.allGather(masters, store.flat(Role.MASTER));
    } else {  // unit by unit from DISK: one unit's part in HOST at a time
      for (Unit u : store.units()) {
        try (Tensor w = store.slice(Role.MASTER, u.elements())) {
          gather(u, w);
        }
      }
    }
    model.setHooks(before);
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("the ZeRO 3 shards are closed");
  }

  /**
   * Frees the windows and the shards and puts the model's hooks back. Unless {@link #unshard} ran, the model is left
   * without weights (it cannot run again).
   */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      settleAhead();
      fold.discard();  // the folds handed over end (or are cancelled) before the thread stops
      if (thread != null) thread.shutdownNow();
      for (Unit u : store.units()) if (weights[u.index()] != null) free(u);
      if (!store.isClosed() && store.isPaged(Role.MASTER)) store.unpage(Role.MASTER, false);
      model.setHooks(before);
    } finally {
      try {
        if (masters != null) masters.close();
        fold.close();  // its windows and shard, and the paged gradients
      } finally {
        if (files != null) files.close();
      }
    }
  }
}

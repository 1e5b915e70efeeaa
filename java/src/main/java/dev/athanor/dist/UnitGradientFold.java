package dev.athanor.dist;

import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.ChunkStreamer;
import dev.athanor.offload.UnitFiles;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.ShardedGradients;
import java.util.ArrayDeque;
import java.util.Objects;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The step's gradient of ZeRO 2 and 3 on the CPU, formed unit by unit (embeddings, each block, the head): this replica
 * keeps only its shard of the step's gradient (the ZeRO 1/2 cut, {@link DataParallel#optimizerShard}), and the model's
 * micro-batch gradient exists one unit at a time, in host windows mapped into the paged {@link Role#GRAD} of the
 * {@link ParameterStore} through the model's {@link BlockHooks}.
 *
 * <p>A unit's window is mapped zeroed at its first backward use ({@code beforeWeights} with {@link BlockHooks.Pass#BACKWARD})
 * and, once its gradient is complete ({@code afterGradients}), folded into the owners' step-gradient shards by {@link
 * Communicator#reduceScatterAccumulateV} (accumulator first, then the ranks in order; the step's first micro-batch
 * overwrites) and freed. Element by element that is the fold of the whole-gradient ZeRO 2 ({@link
 * Communicator#reduceScatterAccumulate}), so the bits are the same: one process with {@code accum × replicas}
 * micro-batches. Every rank runs the same units in the same order, so the collectives match.
 *
 * <p>ZeRO 2 ({@link #attach}): the weights stay whole on every rank and these hooks join the model's; gradient memory
 * per replica is the shard ({@code 4 psi / N}) plus the windows mapped at once (at most two units: the tied embeddings'
 * gradient under the head's backward). ZeRO 3 ({@link ShardedWeights}) holds one of these for its gradients and
 * drives it from its own hooks. Close this after the trainer; not thread-safe.
 *
 * <p><b>Overlapped with the backward</b> (ZeRO 2, {@link #attach(Transformer, Communicator, boolean)} with {@code
 * overlap}; ZeRO 3, {@link #forShard(ParameterStore, Communicator, Range, UnitFiles, long, ExecutorService)} with
 * ShardedWeights' thread, which also runs its gathers; the CLI's {@code --overlap on}): at {@code afterGradients} the training thread unmaps the unit's complete
 * window and hands its fold to the data-parallel {@link CommThread}, which runs the folds one after the other in the
 * order they were handed over (the backward's unit order, micro-batch after micro-batch, on every rank, so the
 * collectives match and every element of the shard gets {@code ((acc + g_{k,0}) + g_{k,1}) + ...} in the same order as
 * without overlap: the same bits); the backward goes on with the next units meanwhile. At most {@link #IN_FLIGHT} folds
 * are handed over and not yet finished: the next {@code afterGradients} first waits for the oldest; and a backward's
 * first window is mapped only once the last micro-batch's folds are done (its embeddings', handed over last, overlap
 * the next forward). So the windows held at once are the backward's (at most two) plus one unit whose backward ended
 * earlier in the same backward: the head or a block, never the embeddings. {@link #flush} (the trainer calls it after the
 * micro-batches, before any collective of its own) waits for every fold. A fold that fails is thrown on the training
 * thread (by the next {@code afterGradients} or {@link #flush}) as a {@link CommunicatorException} naming this rank, the
 * unit and the micro-batch. A peer that dies leaves the communication thread blocked in MPI as it would leave the
 * training thread without overlap: mpirun ends the job and names the lost rank. The training thread's time waiting for
 * folds and the folds done are {@link #stats}. Windows are allocated, mapped, unmapped and freed on the training thread
 * only.
 *
 * <p><b>The shard on DISK</b> (ZeRO 3 with offload, {@link #forShard(ParameterStore, Communicator, Range, UnitFiles)}):
 * the step's gradient shard lives in {@link UnitFiles} of the shard's range ({@link Role#GRAD}) instead of memory. A
 * unit's fold goes piece by piece (at most {@code piece} elements of the unit each, the offload's chunk): its part of
 * the shard is read (not on the step's first micro-batch, which overwrites it) into a host buffer, folded into as above
 * ({@link Communicator#reduceScatterAccumulateV} over the piece, element by element the same additions) and written back
 * behind on an I/O thread, the unit's last piece behind the next unit's backward; each piece waits for the last one's
 * write first, so one piece's part is in HOST at a time. {@link #flush} waits for the last. With overlap the same
 * pieces are folded, read and written behind by the fold's task on the communication thread.
 * The additions are the same, so the bits are those of the shard in memory.
 */
public final class UnitGradientFold implements BlockHooks, ShardedGradients, AutoCloseable {
  private final ParameterStore store;
  private final Communicator comm;
  private final Range shard;
  private final Tensor gradient;
  private final Tensor[] grads;      // per unit index: the mapped gradient window, or null
  private final Transformer model;   // ZeRO 2: the model whose hooks this joined, or null (ZeRO 3 drives it)
  private final BlockHooks before;   // ZeRO 2: the model's hooks before
  private final UnitFiles files;     // the shard on DISK (GRAD), or null: in gradient
  private final long piece;          // with the shard on DISK: the most elements of a unit folded at once
  private final ExecutorService io;  // writes a unit's part behind, or null
  // the write in flight and its host buffer (freed once written), or null: set by the thread that folds (with overlap
  // the communication thread), read by the training thread once every fold handed over is done
  private volatile Future<?> pending;
  private volatile Tensor pendingBuffer;
  private static final AtomicInteger THREADS = new AtomicInteger();
  /** With overlap: the most folds handed to the communication thread and not yet finished. */
  public static final int IN_FLIGHT = 1;
  private final ExecutorService thread;  // with overlap: the communication thread the folds run on, or null
  private final boolean ownsThread;      // ZeRO 2: this started the thread (ZeRO 3 shares ShardedWeights')
  private final ArrayDeque<Fold> inFlight = new ArrayDeque<>();  // handed over, not yet retired, oldest first
  private final AtomicLong busyNanos = new AtomicLong();
  private long waitNanos, folded;
  private boolean leaked;  // a fold was still running when dropped: the shard is left allocated at close
  private int micro;
  private boolean closed;

  /**
   * A unit's fold handed to the communication thread: its window and its part of the shard in memory (null on DISK),
   * both freed when retired.
   */
  private record Fold(Unit unit, int micro, Tensor window, Tensor acc, Future<?> done) {
    void free() {
      try {
        if (acc != null) acc.close();
      } finally {
        window.close();
      }
    }
  }

  private UnitGradientFold(ParameterStore store, Communicator comm, Range shard, Transformer model, UnitFiles files,
      long piece, ExecutorService thread, boolean ownsThread) {
    if (piece < 1) throw new IllegalArgumentException("piece = " + piece + " must be >= 1");
    this.piece = piece;
    if (files != null && (!files.holds(Role.GRAD) || !files.range().equals(shard))) {
      throw new IllegalArgumentException("the gradient shard's files must hold GRAD of " + shard + ", they hold "
          + files.roles() + " of " + files.range());
    }
    this.files = files;
    this.io = files == null ? null : ChunkStreamer.ioThreads(1, "athanor-zero3-grad-io-", THREADS);
    this.gradient = files != null ? null : Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, shard.length()).detach();
    this.grads = new Tensor[store.units().size()];
    this.store = store;
    this.comm = comm;
    this.shard = shard;
    this.model = model;
    this.before = model == null ? null : model.hooks();
    this.thread = thread;
    this.ownsThread = ownsThread;
  }

  /**
   * The fold of {@code store}'s gradients over {@code comm}'s ranks into a zeroed shard-sized gradient, for a caller that
   * pages {@link Role#GRAD} itself and calls these hooks from its own (ZeRO 3).
   */
  static UnitGradientFold forShard(ParameterStore store, Communicator comm, Range shard) {
    return forShard(store, comm, shard, null, Long.MAX_VALUE, null);
  }

  /**
   * As {@link #forShard(ParameterStore, Communicator, Range)} with the shard in {@code files} (GRAD; null: in memory),
   * folded in pieces of at most {@code piece} elements; with {@code thread} (not null) each unit's fold runs there, in
   * the order handed over, behind whatever the caller submitted to it before (ZeRO 3's gathers read ahead). The caller
   * owns the thread; it makes every collective of its own on that thread too, or after {@link #flush}.
   */
  static UnitGradientFold forShard(ParameterStore store, Communicator comm, Range shard, UnitFiles files, long piece,
      ExecutorService thread) {
    return new UnitGradientFold(store, comm, shard, null, files, piece, thread, false);
  }

  /**
   * Whether {@link #attach} can take {@code model}: the CPU backend with F32 compute (gradients in F32), the whole
   * model in one process (no tensor-parallel split, no pipeline stage) and gradients not yet paged (offload).
   */
  public static boolean supports(Transformer model) {
    ParameterStore s = model.parameters();
    return model.device().isCpu() && s.weightsAreMasters() && !model.tensorParallel().split()
        && model.stage().embedding() && model.stage().head() && !s.isPaged(Role.GRAD);
  }

  /**
   * ZeRO 2: shards the step's gradient of {@code model} over {@code comm}'s ranks (a data-parallel group; every rank
   * calls this with the same model); the store's gradients become paged without a backing copy and these hooks join the
   * model's. The weights stay as they are. Needs {@link #supports}. Each unit's fold runs on the training thread.
   */
  public static UnitGradientFold attach(Transformer model, Communicator comm) {
    return attach(model, comm, false);
  }

  /**
   * As {@link #attach(Transformer, Communicator)}; with {@code overlap} each unit's fold runs on a communication thread
   * while the backward goes on (the same bits; closing this stops the thread).
   */
  public static UnitGradientFold attach(Transformer model, Communicator comm, boolean overlap) {
    Objects.requireNonNull(model, "model");
    Objects.requireNonNull(comm, "comm");
    if (!supports(model)) {
      throw new IllegalArgumentException("ZeRO 2's per-unit gradient fold needs the CPU backend with F32 compute, the "
          + "whole model in one process and gradients in memory; this model computes in " + model.parameters().computeDtype()
          + " on " + model.device() + (model.tensorParallel().split() ? ", split by tensor parallelism" : "")
          + (model.parameters().isPaged(Role.GRAD) ? ", gradients already paged" : ""));
    }
    ParameterStore store = model.parameters();
    Range shard = DataParallel.optimizerShard(store, comm);
    UnitGradientFold f = new UnitGradientFold(store, comm, shard, model, null, Long.MAX_VALUE,
        overlap ? CommThread.start(comm.rank()) : null, true);
    try {
      if (store.has(Role.GRAD)) store.release(Role.GRAD);
      store.pageWithoutBacking(Role.GRAD);
      model.setHooks(BlockHooks.both(f.before, f));
      return f;
    } catch (RuntimeException e) {
      f.gradient.close();
      if (f.thread != null) f.thread.shutdownNow();  // this one's own (ZeRO 2)
      throw e;
    }
  }

  @Override
  public Range shard() {
    return shard;
  }

  /** The step's gradient of the shard in memory, or null when it is on DISK ({@link #shardFiles()}). */
  @Override
  public Tensor gradient() {
    return gradient;
  }

  @Override
  public UnitFiles shardFiles() {
    return files;
  }

  @Override
  public void beginMicroBatch(int index) {
    if (closed) throw new IllegalStateException("the gradient shard is closed");
    if (index < 0) throw new IllegalArgumentException("micro-batch index must be >= 0, got " + index);
    micro = index;
  }

  @Override
  public void beforeWeights(Unit unit, Pass pass) {
    if (closed) throw new IllegalStateException("the gradient shard is closed");
    int u = unit.index();
    if (pass != Pass.BACKWARD || grads[u] != null) return;
    // overlap: the last micro-batch's folds (its embeddings', handed over last, may still run behind this forward) are
    // done before this backward maps its first window, so a backward holds none of them
    while (!inFlight.isEmpty() && inFlight.peekFirst().micro() != micro) awaitOldest();
    Tensor g = Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, unit.elements().length()).detach();
    try {
      store.map(Role.GRAD, unit, g);
    } catch (RuntimeException e) {
      g.close();
      throw e;
    }
    grads[u] = g;
  }

  @Override
  public void afterGradients(Unit unit) {
    Tensor g = grads[unit.index()];
    if (g == null) throw new IllegalStateException("afterGradients(" + unit.name() + ") without a backward");
    Range mine = unit.elements().intersect(shard);
    if (thread != null) {
      handOver(unit, g, mine);
      return;
    }
    if (files != null) {
      try {
        Range e = unit.elements();
        for (long s = e.start(); s < e.end(); s += piece) {
          Range p = new Range(s, Math.min(e.end(), s + piece));
          try (Tensor gp = g.slice(0, p.start() - e.start(), p.end() - e.start())) {
            foldOnDisk(p, gp, micro == 0);
          }
        }
      } finally {
        free(unit);
      }
      return;
    }
    try (Tensor acc = gradient.slice(0, mine.isEmpty() ? 0 : mine.start() - shard.start(),
        mine.isEmpty() ? 0 : mine.end() - shard.start())) {
      comm.reduceScatterAccumulateV(g, acc, counts(unit), micro == 0);
    } finally {
      free(unit);
    }
  }

  /**
   * Overlap: unmaps {@code unit}'s complete window {@code g} and hands its fold into this rank's part {@code mine} of the
   * shard to the communication thread, after retiring the folds that are done and waiting for the oldest while {@link
   * #IN_FLIGHT} are.
   */
  private void handOver(Unit unit, Tensor g, Range mine) {
    grads[unit.index()] = null;
    Tensor acc = null;
    try {
      if (!store.isClosed() && store.isMapped(Role.GRAD, unit)) store.unmap(Role.GRAD, unit);
      retireDone();
      while (inFlight.size() >= IN_FLIGHT) awaitOldest();
      boolean first = micro == 0;
      Runnable work;
      if (files != null) {  // piece by piece through the shard on DISK, as on the training thread
        Range e = unit.elements();
        work = () -> foldPieces(e, g, first);
      } else {
        acc = gradient.slice(0, mine.isEmpty() ? 0 : mine.start() - shard.start(), mine.isEmpty() ? 0 : mine.end() - shard.start());
        Tensor part = acc;
        long[] counts = counts(unit);
        work = () -> comm.reduceScatterAccumulateV(g, part, counts, first);
      }
      Future<?> done = thread.submit(() -> {
        long t0 = System.nanoTime();
        try {
          work.run();
        } finally {
          busyNanos.addAndGet(System.nanoTime() - t0);
        }
      });
      inFlight.addLast(new Fold(unit, micro, g, acc, done));
    } catch (RuntimeException | Error e) {
      if (acc != null) acc.close();
      g.close();
      throw e;
    }
  }

  /**
   * Retires the folds handed over that are done, throwing the first failure ({@link #retireOldest}): a caller about to
   * submit work of its own behind them (ZeRO 3's gathers) learns of a failed fold first.
   */
  void retireDone() {
    while (!inFlight.isEmpty() && inFlight.peekFirst().done().isDone()) retireOldest();
  }

  /** Waits for the oldest fold handed over (the time counted in {@link #stats}) and retires it. */
  private void awaitOldest() {
    long t0 = System.nanoTime();
    try {
      retireOldest();
    } finally {
      waitNanos += System.nanoTime() - t0;
    }
  }

  /**
   * Waits for the oldest fold handed over and frees its window; throws {@link CommunicatorException} naming this rank,
   * the unit and the micro-batch when it failed.
   */
  private void retireOldest() {
    Fold f = inFlight.peekFirst();
    try {
      f.done().get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();  // still running: discard() decides about its window
      throw new IllegalStateException("rank " + comm.rank() + " of " + comm.size() + ": interrupted while waiting for the "
          + "gradient fold of " + f.unit().name(), e);
    } catch (ExecutionException e) {
      inFlight.removeFirst();
      f.free();
      Throwable c = e.getCause();
      if (c instanceof Error err) throw err;
      throw new CommunicatorException("rank " + comm.rank() + " of " + comm.size() + ": the gradient fold of "
          + f.unit().name() + " (micro-batch " + f.micro() + ", " + f.unit().elements().length() + " elements) on the "
          + "communication thread failed: " + c.getMessage(), c);
    }
    inFlight.removeFirst();
    f.free();
    folded++;
  }

  /**
   * Forgets the folds handed over (a step that failed part-way): those not started are cancelled, one running is waited
   * for up to a minute (its failure ignored: the step is abandoned anyway); one still running then (a peer gone?) keeps
   * its window, rather than having it freed under the communication thread.
   */
  private void dropInFlight() {
    while (!inFlight.isEmpty()) {
      Fold f = inFlight.removeFirst();
      if (!f.done().cancel(false)) {
        try {
          f.done().get(60, TimeUnit.SECONDS);
        } catch (ExecutionException | CancellationException e) {
          // the fold failed: the step is being abandoned anyway
        } catch (TimeoutException e) {
          leaked = true;  // still running: not freed under it
          continue;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          leaked = true;
          continue;
        }
      }
      f.free();
    }
  }

  /**
   * With overlap, what the communication thread hid and cost since creation: the training thread's time waiting for
   * folds, the communication thread's time in them, and the unit folds done (one per unit per micro-batch); zeros
   * without overlap.
   */
  public OverlapStats stats() {
    return new OverlapStats(waitNanos, busyNanos.get(), folded);
  }

  /** Whether each unit's fold runs on a communication thread ({@link #attach(Transformer, Communicator, boolean)}). */
  public boolean overlaps() {
    return thread != null;
  }

  /** Overlap, on the communication thread: the fold of a unit's window {@code g} (its elements {@code e}) on DISK. */
  private void foldPieces(Range e, Tensor g, boolean first) {
    for (long s = e.start(); s < e.end(); s += piece) {
      Range p = new Range(s, Math.min(e.end(), s + piece));
      try (Tensor gp = g.slice(0, p.start() - e.start(), p.end() - e.start())) {
        foldOnDisk(p, gp, first);
      }
    }
  }

  /**
   * The fold of a unit's window's elements {@code p} ({@code g}) into this rank's part of them in the shard on DISK:
   * read (unless the step's first micro-batch overwrites it, {@code first}), folded, written behind. Runs on the thread
   * that folds (the training thread, or with overlap the communication thread).
   */
  private void foldOnDisk(Range p, Tensor g, boolean first) {
    // the last piece's write is over first: one piece's part in HOST at a time
    awaitWrite();
    Range mine = p.intersect(shard);
    Tensor acc = Tensor.empty(DType.F32, Device.CPU, Tier.HOST, mine.length()).detach();
    try {
      if (!first && !mine.isEmpty()) files.transfer(Role.GRAD, mine, acc, false);
      comm.reduceScatterAccumulateV(g, acc, counts(p), first);
    } catch (RuntimeException | Error e) {
      acc.close();
      throw e;
    }
    if (mine.isEmpty()) {
      acc.close();
      return;
    }
    pendingBuffer = acc;
    pending = io.submit(() -> {
      files.transfer(Role.GRAD, mine, acc, true);
      return null;
    });
  }

  /**
   * Waits until the last unit's part of the shard on DISK is written, and with overlap until every fold handed to the
   * communication thread is done (nothing else with the shard in memory).
   */
  @Override
  public void flush() {
    while (!inFlight.isEmpty()) awaitOldest();
    if (!leaked) awaitWrite();  // else a fold may still run (and write) on the communication thread
  }

  /** Waits until the last piece's part of the shard on DISK is written, and frees its buffer. */
  private void awaitWrite() {
    if (pending == null) return;
    Future<?> f = pending;
    Tensor b = pendingBuffer;
    pending = null;
    pendingBuffer = null;
    try {
      f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while writing the gradient shard to DISK", e);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException r) throw r;
      if (e.getCause() instanceof Error r) throw r;
      throw new IllegalStateException(e.getCause());
    } finally {
      b.close();
    }
  }

  /** Each rank's number of elements of {@code unit}'s flat range: the overlap with its shard, in rank order. */
  long[] counts(Unit unit) {
    return counts(unit.elements());
  }

  /** Each rank's number of elements of the flat {@code elements}: the overlap with its shard, in rank order. */
  long[] counts(Range elements) {
    long n = store.numel();
    long[] c = new long[comm.size()];
    for (int r = 0; r < c.length; r++) {
      Range part = new Range(Communicator.partStart(n, r, c.length), Communicator.partStart(n, r + 1, c.length));
      c[r] = elements.intersect(part).length();
    }
    return c;
  }

  private void free(Unit unit) {
    Tensor w = grads[unit.index()];
    grads[unit.index()] = null;
    try {
      if (!store.isClosed() && store.isMapped(Role.GRAD, unit)) store.unmap(Role.GRAD, unit);
    } finally {
      w.close();
    }
  }

  /**
   * The bytes of the gradient windows held now: mapped, and with overlap handed to the communication thread (and of a
   * part of the shard on DISK being written).
   */
  public long windowBytes() {
    Tensor pb = pendingBuffer;
    long b = pb == null ? 0 : pb.byteSize();
    for (Tensor w : grads) if (w != null) b += w.byteSize();
    for (Fold f : inFlight) b += f.window().byteSize();
    return b;
  }

  @Override
  public void discard() {
    try {
      dropInFlight();
      flush();
    } finally {
      for (Unit u : store.units()) if (grads[u.index()] != null) free(u);
    }
  }

  /**
   * Frees the windows and the shard and releases the paged gradients; under ZeRO 2 ({@link #attach}) also puts the
   * model's hooks back, so the model runs as without ZeRO (its next backward allocates a whole gradient).
   */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      discard();
      if (!store.isClosed() && store.isPaged(Role.GRAD)) store.release(Role.GRAD);
      if (model != null) model.setHooks(before);
    } finally {
      if (thread != null && ownsThread) thread.shutdownNow();
      if (gradient != null && !leaked) gradient.close();  // else a fold may still write it: left allocated
      if (io != null) io.shutdownNow();
    }
  }
}

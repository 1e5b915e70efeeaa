package dev.athanor.offload;

import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Pages a model's weights and gradients between their offload files on DISK ({@link UnitFiles}) and host windows,
 * one unit (embeddings, a block, the head) at a time, through the model's {@link BlockHooks}.
 *
 * <p><b>Weights</b> ({@link Role#MASTER}, which on the CPU are also the compute weights): before a unit runs its
 * weights are read into a window of exactly the unit's size and mapped into the {@link ParameterStore}
 * ({@link ParameterStore#map}); after it ran the window is freed, unless the unit is one of the next two the model
 * will run. The order is known without tracing: forward (embeddings, blocks, head, the embeddings again when the
 * head is tied to them), then backward (head, tied embeddings, blocks in reverse, embeddings), then the next
 * micro-batch; decoding runs the forward order per token. With read-ahead on, the next unit in that order is read
 * on an I/O thread while the current one computes. The optimizer writes the weights after {@link #flush()} has
 * dropped every window, or hands its update to the pager ({@link #defer}): then each unit's window, when the next pass
 * first reads it, is updated in place before the pass uses it and written back behind the computation (the last step's
 * update deferred into the next forward, which so reads no weights of its own). While the forward applies such an
 * update, at most {@link #MAX_WRITES} updated windows wait for their writes besides the windows above; the backward
 * starts with none (and no gradient window exists in the forward of a step's first micro-batch), so the bound below
 * holds.
 *
 * <p><b>Gradients</b> ({@link Role#GRAD}): a unit's micro-batch gradient is formed in a zeroed window mapped at its
 * first backward use and unmapped when it is complete ({@link #afterGradients}). The first micro-batch of a step
 * writes it to the unit's file behind the computation; a later one adds it to the step's gradient read back from
 * the file (read ahead when the unit's backward starts) with the same kernel and order as the in-memory trainer
 * ({@code acc + g}), and writes the sum. The clipping norm ({@link #globalNorm()}) is formed from the fixed chunks of
 * {@link Ops#sumSquaresPartials}, so it has the in-memory bits: when a unit's gradient is complete its window is still
 * in memory, so the partials of the chunks inside it are formed there, and the pieces of a chunk that straddles units
 * are copied into a staging buffer of one chunk until the chunk is whole (at most two at once); {@link #globalNorm()}
 * reads back from DISK only the chunks no window completed (none in a plain backward), instead of the whole gradient.
 * A resident unit's gradient ({@link #UnitPager(Transformer, UnitFiles, boolean, java.util.Set, java.util.Set)}) never
 * goes to its file: the step's gradient stays in a window of its own, mapped between backward passes.
 *
 * <p>Windows are HOST tensors allocated and freed per use, so the HOST peak holds at most a few units of each paged
 * role (see {@link #windowBound}). Every wait of the computing thread for a transfer is a stall in
 * {@link UnitFiles#stats()}. Not thread-safe: one model, one computing thread.
 */
public final class UnitPager implements BlockHooks, AutoCloseable {
  private static final AtomicInteger THREADS = new AtomicInteger();
  /** Units that stay mapped after use when the model runs them again within this many units. */
  private static final int KEEP_AHEAD = 2;
  /** Gradient windows being written behind at most (a new one waits for the oldest). */
  private static final int MAX_WRITES = 2;
  /** Chunks straddling units staged at once for the clipping norm's partials (each {@link Ops#NORM_CHUNK} F32). */
  private static final int MAX_STAGED = 2;

  private final ParameterStore store;
  private final UnitFiles files;
  private final boolean pageWeights, pageGrads, prefetch;
  private final List<Unit> training, decoding;  // execution order per cycle
  private final Window[] weights, grads, sums;  // per unit index
  private final Window[] residentGrads;        // per unit index: a resident unit's step gradient (pinned, mapped), or null
  private final List<Window> writes = new ArrayList<>();  // gradient windows being written behind
  private final ExecutorService io;
  private List<Unit> cycle;
  private int cursor;
  private int micro;
  private boolean closed;
  private final float[] normParts;     // per norm chunk: its partial, formed from a completed gradient window
  private final boolean[] normKnown;   // per norm chunk: normParts holds the partial of the current gradient
  private final boolean[] normSkipped; // per norm chunk: no staging buffer was free, globalNorm() reads it back
  private final java.util.Map<Integer, Staged> staged = new java.util.HashMap<>();  // straddling chunks being filled
  private final List<Unit> updateOrder;  // the units in the order the forward first runs them (each once)
  private final boolean[] stale;         // per unit: its weights wait for the pending update
  private UnitUpdate update;             // the last step's optimizer update, applied unit by unit, or null
  private int staleCount;                // units still waiting for it
  private volatile boolean updateBroken; // applying it (or writing an updated unit back) failed: the state on DISK is inconsistent
  private final List<Window> weightWrites = new ArrayList<>();  // updated weight windows being written behind

  /** A norm chunk straddling units, filled piece by piece as the units' gradients complete. */
  private static final class Staged {
    final Tensor buf;
    long filled;

    Staged(Tensor buf) {
      this.buf = buf;
    }
  }

  /** A host window of one unit and the transfer filling or emptying it. */
  private static final class Window {
    final Role role;
    final Unit unit;
    final Tensor buf;
    Future<?> transfer;
    boolean writing;  // transfer writes the (updated) window to its file
    boolean mapped;
    boolean pinned;  // a resident unit: mapped for the pager's whole life
    int refs;

    Window(Role role, Unit unit, Tensor buf) {
      this.role = role;
      this.unit = unit;
      this.buf = buf;
    }
  }

  /**
   * Pages the roles of {@code files} among MASTER and GRAD of {@code model}'s store: their current contents (when
   * allocated) are written to the files, unit by unit, and their flat buffers freed. With {@code prefetch}, the next
   * unit's weights are read while the current one computes. The owner installs the pager among the model's hooks
   * ({@link BlockHooks#both}).
   */
  public UnitPager(Transformer model, UnitFiles files, boolean prefetch) {
    this(model, files, prefetch, java.util.Set.of());
  }

  /**
   * As {@link #UnitPager(Transformer, UnitFiles, boolean)}, with the weights of the units named in {@code resident}
   * kept in host windows for the pager's whole life (never read again, updated in place by the optimizer, which finds
   * them mapped).
   */
  public UnitPager(Transformer model, UnitFiles files, boolean prefetch, java.util.Set<String> resident) {
    this(model, files, prefetch, resident, java.util.Set.of());
  }

  /**
   * As {@link #UnitPager(Transformer, UnitFiles, boolean, java.util.Set)}, with the gradients of the units named in
   * {@code gradUnits} (GRAD must be in {@code files}) kept in memory too: each such unit's step gradient lives in a
   * host window of its own, mapped in the store between backward passes (the optimizer and the clipping norm find it
   * there); the first micro-batch of a step forms the unit's gradient in it directly, a later one in a zeroed window of
   * its own that is then added to it ({@code acc + g}, as the in-memory trainer adds). Its file is never used.
   */
  public UnitPager(Transformer model, UnitFiles files, boolean prefetch, java.util.Set<String> resident,
      java.util.Set<String> gradUnits) {
    Objects.requireNonNull(model, "model");
    Objects.requireNonNull(resident, "resident");
    Objects.requireNonNull(gradUnits, "gradUnits");
    this.files = Objects.requireNonNull(files, "files");
    this.store = model.parameters();
    if (files.store() != store) throw new IllegalArgumentException("the offload files belong to another parameter store");
    if (!model.device().isCpu()) {
      throw new IllegalArgumentException("weights and gradients on DISK need the CPU backend; this model is on " + model.device());
    }
    this.pageWeights = files.holds(Role.MASTER);
    this.pageGrads = files.holds(Role.GRAD);
    if (!pageWeights && !pageGrads) throw new IllegalArgumentException("neither MASTER nor GRAD is on DISK: nothing to page");
    if (pageWeights && !store.weightsAreMasters()) {
      throw new IllegalArgumentException("weights on DISK need F32 compute (the masters are the compute weights); this model "
          + "computes in " + store.computeDtype());
    }
    this.prefetch = prefetch;
    int n = store.units().size();
    this.weights = new Window[n];
    this.grads = new Window[n];
    this.sums = new Window[n];
    this.residentGrads = new Window[n];
    int normChunks = (int) ((store.numel() + Ops.NORM_CHUNK - 1) / Ops.NORM_CHUNK);
    this.normParts = new float[normChunks];
    this.normKnown = new boolean[normChunks];
    this.normSkipped = new boolean[normChunks];
    this.training = order(model, false);
    this.decoding = order(model, true);
    this.cycle = training;
    java.util.LinkedHashSet<Unit> first = new java.util.LinkedHashSet<>(decoding);
    first.addAll(store.units());  // a unit the forward does not run (none in a whole model) last
    this.updateOrder = List.copyOf(first);
    this.stale = new boolean[n];
    this.io = ChunkStreamer.ioThreads(2, "athanor-pager-io-", THREADS);
    if (!resident.isEmpty() && !pageWeights) throw new IllegalArgumentException("resident units need the weights on DISK");
    if (!gradUnits.isEmpty() && !pageGrads) {
      throw new IllegalArgumentException("resident gradient units " + new java.util.TreeSet<>(gradUnits) + " need the "
          + "gradients on DISK");
    }
    List<Window> pins = new ArrayList<>();
    try {
      if (pageWeights) {
        boolean had = store.has(Role.MASTER);
        for (String name : new java.util.TreeSet<>(resident)) {
          Unit u = store.unit(name);  // names the unit, or says which units there are
          Window w = new Window(Role.MASTER, u, Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, u.elements().length()).detach());
          w.pinned = true;
          pins.add(w);
          if (had) {
            try (Tensor s = store.slice(Role.MASTER, u.elements())) {
              w.buf.copyFrom(s);
            }
          }
        }
        if (had) saveAll(Role.MASTER);  // a model built without weights: the files start as zeros
        store.page(Role.MASTER, files.views(Role.MASTER));
        for (Window w : pins) {
          store.map(Role.MASTER, w.unit, w.buf);
          w.mapped = true;
          weights[w.unit.index()] = w;
        }
      }
      if (pageGrads) {
        List<Unit> us = new ArrayList<>();
        for (String name : new java.util.TreeSet<>(gradUnits)) us.add(store.unit(name));  // names the unit, or the units
        if (store.has(Role.GRAD)) store.release(Role.GRAD);
        store.page(Role.GRAD, files.views(Role.GRAD));
        for (Unit u : us) {
          Window w = new Window(Role.GRAD, u, Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, u.elements().length()).detach());
          w.pinned = true;
          pins.add(w);
          store.map(Role.GRAD, u, w.buf);
          w.mapped = true;
          residentGrads[u.index()] = w;
        }
      }
    } catch (RuntimeException e) {
      for (Window w : pins) {
        if (w.mapped) store.unmap(w.role, w.unit);
        w.buf.close();
      }
      if (pageGrads && store.isPaged(Role.GRAD)) store.release(Role.GRAD);
      io.shutdownNow();
      throw e;
    }
  }

  /** Whether {@code unit}'s weights stay in memory (a resident unit). */
  public boolean resident(Unit unit) {
    Window w = weights[unit.index()];
    return w != null && w.pinned;
  }

  /** The units of {@code model}'s stage in the order one cycle runs them (training: forward then backward). */
  static List<Unit> order(Transformer model, boolean decode) {
    ParameterStore s = model.parameters();
    Stage st = model.stage();
    ModelConfig c = model.config();
    boolean tied = c.tiedEmbeddings() && st.embedding() && st.head();
    List<Unit> fwd = new ArrayList<>();
    Unit emb = st.embedding() ? s.unit(ModelConfig.EMBEDDING_UNIT) : null;
    Unit head = st.head() ? s.unit(ModelConfig.HEAD_UNIT) : null;
    if (emb != null) fwd.add(emb);
    for (int b = st.firstBlock(); b < st.firstBlock() + st.blocks(); b++) fwd.add(s.unit(ModelConfig.blockUnit(b)));
    if (head != null) fwd.add(head);
    if (tied) fwd.add(emb);
    if (decode) return List.copyOf(fwd);
    List<Unit> all = new ArrayList<>(fwd);
    if (head != null) all.add(head);
    if (tied) all.add(emb);
    for (int b = st.firstBlock() + st.blocks() - 1; b >= st.firstBlock(); b--) all.add(s.unit(ModelConfig.blockUnit(b)));
    if (emb != null) all.add(emb);
    return List.copyOf(all);
  }

  /**
   * The reads of each unit's weights from DISK in the forward and backward passes of one step of {@code accum}
   * micro-batches of a whole model with {@code layers} blocks (tied: the head reuses the embeddings), with every unit
   * paged: {embedding, any block, head}. Counted by running this pager's policy over its training order: a unit is read
   * when it has no window, and its window is kept after use while the unit is among the next {@value #KEEP_AHEAD} in
   * that order (so the head, run last in the forward and first in the backward, is read once per micro-batch; a block
   * twice; the embeddings once more with a tied head, and once less per micro-batch after the first when the backward's
   * last use is kept for the next micro-batch's forward); each step starts with no window ({@link #flush()}). Read-ahead
   * changes when a unit is read, not how often; a resident unit is never read and does not change the others' counts.
   */
  public static long[] weightReadsPerStep(int layers, boolean tied, int accum) {
    if (layers < 1 || accum < 1) throw new IllegalArgumentException("layers " + layers + " and accum " + accum + " must be >= 1");
    int blocks = Math.min(layers, KEEP_AHEAD + 1);  // no block is ever kept: a few stand for any number
    int emb = 0, head = blocks + 1;
    List<Integer> cycle = new ArrayList<>();  // as order(): forward, then backward
    cycle.add(emb);
    for (int b = 1; b <= blocks; b++) cycle.add(b);
    cycle.add(head);
    if (tied) cycle.add(emb);
    cycle.add(head);
    if (tied) cycle.add(emb);
    for (int b = blocks; b >= 1; b--) cycle.add(b);
    cycle.add(emb);
    int n = cycle.size();
    long[] reads = new long[blocks + 2];
    boolean[] held = new boolean[blocks + 2];
    for (int m = 0; m < accum; m++) {
      for (int p = 0; p < n; p++) {
        int u = cycle.get(p);
        if (!held[u]) reads[u]++;
        held[u] = false;
        for (int k = 1; k <= KEEP_AHEAD; k++) if (cycle.get((p + k) % n) == u) held[u] = true;
      }
    }
    return new long[] {reads[emb], reads[1], reads[head]};
  }

  /**
   * An upper bound of the host bytes the windows take at once, for a model whose units have {@code unitElements}
   * elements (any order): weights, the current unit, the one read ahead and the tied embeddings, at most the three
   * largest units; gradients, the unit being formed, the one being written behind, the tied embeddings and, with
   * accumulation, the step's gradient read back for each of them: the three largest units, twice with accumulation.
   */
  public static long windowBound(List<Long> unitElements, boolean weightsOnDisk, boolean gradsOnDisk, boolean accumulate) {
    List<Long> sorted = new ArrayList<>(unitElements);
    sorted.sort(java.util.Comparator.reverseOrder());
    long three = 0;
    for (int i = 0; i < Math.min(3, sorted.size()); i++) three = Math.addExact(three, sorted.get(i));
    long elements = 0;
    if (weightsOnDisk) elements += three;
    if (gradsOnDisk) elements += accumulate ? 2 * three : three;
    return Math.multiplyExact(elements, 4L);
  }

  /**
   * Host bytes of {@link #globalNorm()}'s buffers for a flat layout of {@code numel} elements: one chunk of
   * {@link Ops#NORM_CHUNK} F32 elements (or the whole layout when smaller), two when there are several chunks (the
   * next is read while the current one is summed). The same bound covers the staging buffers of the chunks that
   * straddle units during the backward (at most two chunks), which are freed before {@link #flush()} returns.
   */
  public static long normBufferBytes(long numel) {
    long len = Math.min(Ops.NORM_CHUNK, Math.max(1, numel));
    return Math.multiplyExact(numel > Ops.NORM_CHUNK ? 8L : 4L, len);
  }

  // ------------------------------------------------------------------ hooks

  @Override
  public void beforeWeights(Unit unit, Pass pass) {
    checkOpen();
    if (pageWeights) {
      if (update != null && (pass == Pass.BACKWARD ? staleCount > 0 : stale[unit.index()] && !nextStale(unit))) {
        applyPending();  // a backward (its gradients overwrite the files the update reads), or a unit out of order
      }
      if (pass == Pass.BACKWARD && !weightWrites.isEmpty()) awaitWeightWrites();  // the backward's windows need the room
      advance(unit, pass == Pass.DECODE ? decoding : training);
      Window w = weights[unit.index()];
      if (w == null) w = weights[unit.index()] = read(Role.MASTER, unit);
      if (!w.mapped) {
        awaitStall(w, "weights");
        store.map(Role.MASTER, unit, w.buf);
        w.mapped = true;
      }
      if (stale[unit.index()]) applyUpdate(w);  // the last step's update of this unit, in the window the pass uses
      if (!w.pinned) w.refs++;
      if (prefetch) {
        Unit next = cycle.get(cursor % cycle.size());
        if (weights[next.index()] == null) weights[next.index()] = read(Role.MASTER, next);
      }
    }
    if (pageGrads && pass == Pass.BACKWARD && grads[unit.index()] == null) {
      Window p = residentGrads[unit.index()];
      if (p != null && micro == 0) {  // a resident unit's first micro-batch: formed in its step gradient directly
        Ops.fill(p.buf, 0f);
        grads[unit.index()] = p;
        return;
      }
      if (p != null) {  // a later one: formed apart, added to the step gradient when complete
        store.unmap(Role.GRAD, unit);
        p.mapped = false;
      }
      Window g = new Window(Role.GRAD, unit, Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, unit.elements().length()).detach());
      grads[unit.index()] = g;
      store.map(Role.GRAD, unit, g.buf);
      g.mapped = true;
      if (micro > 0 && p == null) {
        awaitWriteOf(unit);  // the last micro-batch's sum of this unit is on disk before it is read back
        sums[unit.index()] = read(Role.GRAD, unit);
      }
    }
  }

  @Override
  public void afterWeights(Unit unit, Pass pass) {
    if (!pageWeights) return;
    Window w = weights[unit.index()];
    if (w != null && w.pinned) return;
    if (w == null || w.refs == 0) throw new IllegalStateException("afterWeights(" + unit.name() + ") without beforeWeights");
    if (--w.refs > 0) return;
    for (int k = 0; k < KEEP_AHEAD; k++) if (cycle.get((cursor + k) % cycle.size()) == unit) return;  // needed again soon
    drop(w);
  }

  @Override
  public void afterGradients(Unit unit) {
    if (!pageGrads) return;
    Window g = grads[unit.index()];
    if (g == null) throw new IllegalStateException("afterGradients(" + unit.name() + ") without a backward");
    grads[unit.index()] = null;
    Window p = residentGrads[unit.index()];
    if (p != null) {
      if (g != p) {  // acc + g_i in the step gradient, which is mapped again
        store.unmap(Role.GRAD, unit);
        g.mapped = false;
        try {
          Ops.add(p.buf, g.buf, p.buf);
        } finally {
          g.buf.close();
          store.map(Role.GRAD, unit, p.buf);
          p.mapped = true;
        }
      }
      notePartials(unit, p.buf);
      return;
    }
    store.unmap(Role.GRAD, unit);
    g.mapped = false;
    Window out = g;
    if (micro > 0) {
      Window acc = sums[unit.index()];
      sums[unit.index()] = null;
      try {
        awaitStall(acc, "the step's gradient");
        Ops.add(acc.buf, g.buf, acc.buf);  // acc + g_i, as the in-memory trainer forms it
      } catch (RuntimeException e) {
        acc.buf.close();
        g.buf.close();
        throw e;
      }
      g.buf.close();
      out = acc;
    }
    reapWrites();
    Window w = out;
    try {
      w.transfer = io.submit(() -> {
        files.transfer(Role.GRAD, unit, true, 0, w.buf.address(), w.buf.byteSize());
        return null;
      });
    } catch (RuntimeException e) {
      w.buf.close();
      throw e;
    }
    writes.add(w);
    notePartials(unit, w.buf);  // reads the window while the I/O thread writes it
  }

  /**
   * Forms the norm partials of the chunks that {@code unit}'s complete gradient {@code g} (its window) covers: a chunk
   * inside the unit directly, a chunk straddling units once its staging buffer holds every piece. A later micro-batch
   * of the step forms them again from the sum, so the partials are those of the step's gradient.
   */
  private void notePartials(Unit unit, Tensor g) {
    Range e = unit.elements();
    if (e.isEmpty()) return;
    long n = store.numel(), chunk = Ops.NORM_CHUNK;
    for (int j = (int) (e.start() / chunk); j <= (int) ((e.end() - 1) / chunk); j++) {
      long cs = j * chunk, ce = Math.min(n, cs + chunk);
      long s = Math.max(cs, e.start()), t = Math.min(ce, e.end());
      if (s == cs && t == ce) {
        try (Tensor part = g.slice(0, s - e.start(), t - e.start())) {
          normParts[j] = Ops.sumSquaresPartials(part)[0];
        }
        normKnown[j] = true;
        continue;
      }
      if (normSkipped[j]) continue;
      Staged st = staged.get(j);
      if (st == null) {
        if (staged.size() >= MAX_STAGED) {
          normSkipped[j] = true;  // globalNorm() reads this chunk back
          continue;
        }
        st = new Staged(Tensor.empty(DType.F32, Device.CPU, Tier.HOST, ce - cs).detach());
        staged.put(j, st);
      }
      try (Tensor dst = st.buf.slice(0, s - cs, t - cs); Tensor src = g.slice(0, s - e.start(), t - e.start())) {
        dst.copyFrom(src);
      }
      st.filled += t - s;
      if (st.filled == ce - cs) {
        staged.remove(j);
        try {
          normParts[j] = Ops.sumSquaresPartials(st.buf)[0];
          normKnown[j] = true;
        } finally {
          st.buf.close();
        }
      }
    }
  }

  /** Forgets the staged chunks (freeing their buffers) and, with {@code partials}, the partials formed so far. */
  private void resetNorm(boolean partials) {
    for (Staged st : staged.values()) st.buf.close();
    staged.clear();
    java.util.Arrays.fill(normSkipped, false);
    if (partials) java.util.Arrays.fill(normKnown, false);
  }

  /**
   * Frees the windows whose gradient is written, and waits for the oldest while more than {@link #MAX_WRITES} are in
   * flight, so that written-behind windows do not pile up in host memory when the disk is slower than the backward.
   */
  private void reapWrites() {
    reap(writes, MAX_WRITES - 1, "gradient written");
  }

  /**
   * Waits for the oldest of the windows {@code ws} being written (and frees it) while more than {@code max} are, then
   * frees those whose write is done.
   */
  private void reap(List<Window> ws, int max, String reason) {
    while (ws.size() > max) {
      Window oldest = ws.remove(0);
      try {
        awaitStall(oldest, reason);
      } finally {
        oldest.buf.close();
      }
    }
    for (java.util.Iterator<Window> it = ws.iterator(); it.hasNext(); ) {
      Window w = it.next();
      if (w.transfer != null && !w.transfer.isDone()) continue;
      it.remove();
      try {
        ChunkStreamer.await(w.transfer);
      } finally {
        w.buf.close();
      }
    }
  }

  // ------------------------------------------------------------------ steps

  /** The trainer starts micro-batch {@code index} (0-based) of a step: the first one writes, later ones accumulate. */
  public void beginMicroBatch(int index) {
    checkOpen();
    if (index < 0) throw new IllegalArgumentException("micro-batch index must be >= 0, got " + index);
    micro = index;
    resetNorm(true);  // this micro-batch's backward forms every unit's partials again
  }

  /**
   * Ends the passes of a step: waits until every gradient is written and drops every weight window (the optimizer is
   * about to change the weights on DISK). The next forward reads them again.
   */
  public void flush() {
    checkOpen();
    if (update != null) applyPending();
    RuntimeException failure = dropAll(true);
    if (failure != null) throw failure;
  }

  // ------------------------------------------------------------------ the deferred optimizer update

  /**
   * Hands this pager the last step's optimizer update of the weights on DISK, to be applied unit by unit when each
   * unit's weights are next read ({@link #updateOrder()}, the order of the forward): the window read from the file is
   * updated in place by {@code u} ({@link UnitUpdate#apply}), written back behind the computation and used by the pass
   * that asked for it, so the forward does not read the weights again after the optimizer wrote them. A unit asked for
   * out of that order, a backward, {@link #flush()} and {@link #applyPending()} first apply all that remains. Call
   * after {@link #flush()}, with the weights paged here; a refused update is finished unapplied.
   */
  public void defer(UnitUpdate u) {
    Objects.requireNonNull(u, "update");
    String refused = closed ? "the unit pager is closed" : !pageWeights ? "the weights are not paged here: no update to defer"
        : update != null || updateBroken ? "an update is already pending" : null;
    for (Window w : weights) {
      if (refused == null && w != null && !w.pinned) {
        refused = "defer() after flush(): the window of " + w.unit.name() + " holds weights from before the update";
      }
    }
    if (refused != null) {
      u.finish();  // refused: nothing of it is applied, and nothing of it stays in flight
      throw new IllegalStateException(refused);
    }
    update = u;
    for (Unit x : updateOrder) stale[x.index()] = true;
    staleCount = updateOrder.size();
  }

  /** The order in which a deferred update's units are applied: the forward's (each unit once). */
  public List<Unit> updateOrder() {
    return updateOrder;
  }

  /** Whether a deferred update is not yet completely applied and finished (see {@link #applyPending()}). */
  public boolean updatePending() {
    return update != null || updateBroken;
  }

  /**
   * Applies what remains of the deferred update, in order: each remaining unit's weights are read (the next one read
   * ahead), updated and written back behind; then waits until the update's own writes are done. Nothing when none is
   * pending. Throws when applying it failed part-way before (the weights and the optimizer's state on DISK then
   * disagree); a failure here leaves the same state.
   */
  public void applyPending() {
    checkOpen();
    if (updateBroken) {
      throw new IllegalStateException("the deferred optimizer update failed part-way: the weights and the optimizer state on "
          + "DISK are inconsistent");
    }
    if (update == null) return;
    for (int k = 0; k < updateOrder.size(); k++) {
      Unit u = updateOrder.get(k);
      if (!stale[u.index()]) continue;
      Window w = weights[u.index()];
      if (w == null) w = weights[u.index()] = read(Role.MASTER, u);
      if (prefetch) {
        for (int j = k + 1; j < updateOrder.size(); j++) {
          Unit next = updateOrder.get(j);
          if (!stale[next.index()]) continue;
          if (weights[next.index()] == null) weights[next.index()] = read(Role.MASTER, next);
          break;
        }
      }
      if (w.transfer != null && !w.writing) awaitStall(w, "weights");
      applyUpdate(w);
      if (!w.pinned && !w.mapped && w.refs == 0) drop(w);  // no pass uses it now: freed once written
    }
    UnitUpdate u = update;
    update = null;
    try {
      u.finish();
    } catch (RuntimeException | Error e) {
      updateBroken = true;
      throw e;
    }
  }

  /** Waits for the updated weights being written back and frees their windows. */
  private void awaitWeightWrites() {
    RuntimeException failure = drain(weightWrites, true, "weights written", null);
    if (failure != null) throw failure;
  }

  /**
   * Waits for the windows {@code ws} being written (a stall of the step when {@code countStalls}), frees them and
   * empties the list; returns {@code failure}, or the first failure.
   */
  private RuntimeException drain(List<Window> ws, boolean countStalls, String reason, RuntimeException failure) {
    for (Window w : ws) {
      try {
        if (countStalls) awaitStall(w, reason);
        else ChunkStreamer.await(w.transfer);
      } catch (RuntimeException e) {
        if (failure == null) failure = e;
      } finally {
        w.buf.close();
      }
    }
    ws.clear();
    return failure;
  }

  /** Whether {@code unit} is the first unit in {@link #updateOrder()} that still waits for the update. */
  private boolean nextStale(Unit unit) {
    for (Unit u : updateOrder) if (stale[u.index()]) return u == unit;
    return false;
  }

  /**
   * Applies the deferred update to the weights in window {@code w} (read and waited for) and, unless the unit is
   * resident, writes them back behind (the window is freed once written, see {@link #drop}).
   */
  private void applyUpdate(Window w) {
    stale[w.unit.index()] = false;
    staleCount--;
    try {
      update.apply(w.unit, w.buf);
    } catch (RuntimeException | Error e) {
      updateBroken = true;
      throw e;
    }
    if (w.pinned) return;  // a resident unit: updated in place, written to its file when the pager closes
    Unit unit = w.unit;
    try {
      w.transfer = io.submit(() -> {
        try {
          files.transfer(Role.MASTER, unit, true, 0, w.buf.address(), w.buf.byteSize());
        } catch (RuntimeException | Error e) {
          updateBroken = true;  // the moments are updated, the weights on DISK are not
          throw e;
        }
        return null;
      });
    } catch (RuntimeException e) {
      updateBroken = true;
      throw e;
    }
    w.writing = true;
  }

  /**
   * Drops the deferred update without applying the rest (the pager is closing): waits for its transfers in flight.
   * The weights on DISK then mix updated and not yet updated units.
   */
  private void abandonUpdate() {
    if (update == null) return;
    UnitUpdate u = update;
    update = null;
    java.util.Arrays.fill(stale, false);
    staleCount = 0;
    try {
      u.finish();
    } catch (RuntimeException ignored) {
      // abandoned: the caller knows the state is not consistent
    }
  }

  /**
   * Waits for the gradients being written and frees their windows, then unmaps and frees every window but the
   * resident units'; resets the cursor. Returns the first failure (null: none). {@code countStalls}: the waits for
   * the writes are stalls of the step (not when a failed step is being abandoned).
   */
  private RuntimeException dropAll(boolean countStalls) {
    RuntimeException failure = drain(writes, countStalls, "gradient written", null);
    failure = drain(weightWrites, countStalls, "weights written", failure);
    resetNorm(false);  // a chunk still staged now is read back by globalNorm()
    for (Window[] ws : new Window[][] {weights, grads, sums}) {
      for (int i = 0; i < ws.length; i++) {
        Window w = ws[i];
        if (w == null) continue;
        if (w.pinned) {
          if (ws == grads) ws[i] = null;  // a resident unit's step gradient, whose backward was abandoned: it stays
          continue;
        }
        ws[i] = null;
        try {
          quiet(w);
        } catch (RuntimeException e) {
          if (failure == null) failure = e;
        }
      }
    }
    for (Window p : residentGrads) {  // mapped again where an abandoned backward had a micro-batch's window instead
      if (p != null && !p.mapped && !store.isClosed()) {
        store.map(Role.GRAD, p.unit, p.buf);
        p.mapped = true;
      }
    }
    cursor = 0;
    cycle = training;
    return failure;
  }

  /**
   * The L2 norm of the step's gradient on DISK, as {@link Ops#globalNorm} forms it over the flat layout: each chunk of
   * {@link Ops#NORM_CHUNK} elements has its partial formed by the same kernel and the partials are added in order. The
   * partials the backward formed from its gradient windows are used as they are; the file pieces of every other chunk
   * are read into one host buffer (the next such chunk while the current one is summed). Call after {@link #flush()};
   * the backward's partials are used once (a second call reads every chunk back).
   */
  public float globalNorm() {
    checkOpen();
    if (!pageGrads) throw new IllegalStateException("the gradients are not on DISK");
    if (!writes.isEmpty()) throw new IllegalStateException("gradients are still being written: flush() first");
    long n = store.numel(), chunk = Ops.NORM_CHUNK;
    int chunks = (int) ((n + chunk - 1) / chunk);
    if (chunks == 0) return 0f;
    float[] parts = new float[chunks];
    List<Integer> missing = new ArrayList<>();  // the chunks no gradient window completed, read back in order
    for (int j = 0; j < chunks; j++) {
      if (normKnown[j]) parts[j] = normParts[j];
      else missing.add(j);
    }
    java.util.Arrays.fill(normKnown, false);  // used once: the gradient on DISK may change after this step
    if (!missing.isEmpty()) {
      long len = Math.min(chunk, n);
      try (Tensor a = Tensor.empty(DType.F32, Device.CPU, Tier.HOST, len);
          Tensor b = missing.size() > 1 ? Tensor.empty(DType.F32, Device.CPU, Tier.HOST, len) : null) {
        Tensor[] buf = {a, b};
        Future<?>[] pending = new Future<?>[2];
        pending[0] = readFlat(chunkRange(missing.get(0)), a);
        try {
          for (int k = 0; k < missing.size(); k++) {
            int j = missing.get(k);
            Range r = chunkRange(j);
            if (k + 1 < missing.size()) pending[(k + 1) % 2] = readFlat(chunkRange(missing.get(k + 1)), buf[(k + 1) % 2]);
            stall(pending[k % 2], null, "gradient norm");
            pending[k % 2] = null;
            try (Tensor part = buf[k % 2].slice(0, 0, r.length())) {
              parts[j] = Ops.sumSquaresPartials(part)[0];
            }
          }
        } finally {
          for (Future<?> f : pending) {
            try {
              ChunkStreamer.await(f);
            } catch (RuntimeException ignored) {
              // the first failure is already on its way out
            }
          }
        }
      }
    }
    double total = 0;
    for (float p : parts) total += p;  // in chunk order, as Ops.globalNorm adds them
    return (float) Math.sqrt(total);
  }

  /** The flat elements of norm chunk {@code j}. */
  private Range chunkRange(int j) {
    long n = store.numel(), chunk = Ops.NORM_CHUNK;
    return new Range(j * chunk, Math.min(n, (j + 1) * chunk));
  }

  /** Reads the flat range {@code r} of the step's gradient (pieces of one or more unit files) into {@code dst}. */
  private Future<?> readFlat(Range r, Tensor dst) {
    for (Unit u : store.units()) {  // a resident unit's part is in memory: copied here
      Window w = residentGrads[u.index()];
      Range p = u.elements().intersect(r);
      if (w == null || p.isEmpty()) continue;
      try (Tensor to = dst.slice(0, p.start() - r.start(), p.end() - r.start());
          Tensor from = w.buf.slice(0, p.start() - u.elements().start(), p.end() - u.elements().start())) {
        to.copyFrom(from);
      }
    }
    return io.submit(() -> {
      for (Unit u : store.units()) {
        Range p = u.elements().intersect(r);
        if (p.isEmpty() || residentGrads[u.index()] != null) continue;
        files.transfer(Role.GRAD, u, false, (p.start() - u.elements().start()) * 4, dst.address() + (p.start() - r.start()) * 4,
            p.length() * 4);
      }
      return null;
    });
  }

  /**
   * Forgets a step that failed part-way (an exception in the forward or backward): waits for transfers in flight,
   * unmaps and frees every window. The step's gradient on DISK is then incomplete; a retried step rewrites it.
   */
  public void discard() {
    if (closed) return;
    dropAll(false);  // the step is being abandoned: its transfers' failures do not matter
    resetNorm(true);
  }

  // ------------------------------------------------------------------ internals

  /** Moves the cursor past {@code unit} in {@code order}; a unit out of the predicted order drops unused windows. */
  private void advance(Unit unit, List<Unit> order) {
    if (order != cycle) {
      cycle = order;
      cursor = 0;
    }
    int n = cycle.size();
    for (int k = 0; k < n; k++) {
      int i = (cursor + k) % n;
      if (cycle.get(i) == unit) {
        if (k > 0) dropUnused(unit);  // not where we expected to be (a new pass, another stage): stop guessing
        cursor = i + 1;
        return;
      }
    }
    throw new IllegalStateException("unit " + unit.name() + " is not part of this model's stage");
  }

  private void dropUnused(Unit keep) {
    for (int i = 0; i < weights.length; i++) {
      Window w = weights[i];
      if (w != null && !w.pinned && w.refs == 0 && w.unit != keep) drop(w);
    }
  }

  private Window read(Role role, Unit unit) {
    if (role == Role.MASTER) {
      for (Window x : weightWrites) if (x.unit == unit && x.transfer != null) awaitStall(x, "weights written");
    }
    Window w = new Window(role, unit, Tensor.empty(DType.F32, Device.CPU, Tier.HOST, unit.elements().length()).detach());
    try {
      w.transfer = io.submit(() -> {
        files.transfer(role, unit, false, 0, w.buf.address(), w.buf.byteSize());
        return null;
      });
    } catch (RuntimeException e) {
      w.buf.close();
      throw e;
    }
    return w;
  }

  /**
   * Unmaps (when mapped) and frees a weight window that nothing uses; one being written back is unmapped and freed
   * once written (at most {@link #MAX_WRITES} such, the oldest waited for).
   */
  private void drop(Window w) {
    weights[w.unit.index()] = null;
    if (!w.writing || w.transfer == null || w.transfer.isDone()) {
      quiet(w);
      return;
    }
    if (w.mapped) {
      store.unmap(w.role, w.unit);
      w.mapped = false;
    }
    weightWrites.add(w);
    reap(weightWrites, MAX_WRITES, "weights written");
  }

  /** Waits for the window's transfer (errors propagate), unmaps it and frees it. */
  private void quiet(Window w) {
    try {
      ChunkStreamer.await(w.transfer);
    } finally {
      if (w.mapped) {
        store.unmap(w.role, w.unit);
        w.mapped = false;
      }
      w.buf.close();
    }
  }

  private void awaitWriteOf(Unit unit) {
    for (Window w : writes) if (w.unit == unit) awaitStall(w, "gradient written");
  }

  private void awaitStall(Window w, String reason) {
    stall(w.transfer, w.unit, reason);
    w.transfer = null;
  }

  private void stall(Future<?> f, Unit unit, String reason) {
    OffloadEvents.awaitStalling(f, files.stats(), unit == null ? "" : unit.name(),
        reason.startsWith("weights") ? "MASTER" : "GRAD", reason);
  }

  /** Writes the store's current flat buffer of {@code role} to the files, unit by unit. */
  private void saveAll(Role role) {
    for (Unit u : store.units()) {
      try (Tensor s = store.slice(role, u.elements())) {
        files.transfer(role, u, true, 0, s.address(), s.byteSize());
      }
    }
  }

  /** Reads every unit's file of {@code role} into the store's (new) flat buffer. */
  private void loadAll(Role role) {
    for (Unit u : store.units()) {
      try (Tensor s = store.slice(role, u.elements())) {
        files.transfer(role, u, false, 0, s.address(), s.byteSize());
      }
    }
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("the unit pager is closed");
  }

  /**
   * Stops paging: the paged gradients are released; the weights are read back into a flat buffer in host memory
   * when {@code restoreWeights} (so the model works as before offload; this needs host memory for all of them), else
   * left unallocated. The files and the hooks belong to the caller.
   */
  public void close(boolean restoreWeights) {
    if (closed) return;
    try {
      discard();
      abandonUpdate();  // the owner applies it before closing when it wants the weights consistent
      for (Window w : weights) {  // the resident units: their weights go to their files, which then hold all
        if (w == null || !w.pinned) continue;
        if (restoreWeights && !store.isClosed()) files.transfer(Role.MASTER, w.unit, true, 0, w.buf.address(), w.buf.byteSize());
        if (w.mapped && !store.isClosed()) store.unmap(Role.MASTER, w.unit);
        w.mapped = false;
        weights[w.unit.index()] = null;
        w.buf.close();
      }
      for (int i = 0; i < residentGrads.length; i++) {  // the resident units' gradients: dropped with the others'
        Window p = residentGrads[i];
        if (p == null) continue;
        residentGrads[i] = null;
        if (p.mapped && !store.isClosed()) store.unmap(Role.GRAD, p.unit);
        p.mapped = false;
        p.buf.close();
      }
      if (!store.isClosed()) {
        if (pageGrads && store.isPaged(Role.GRAD)) store.release(Role.GRAD);
        if (pageWeights && store.isPaged(Role.MASTER)) {
          store.unpage(Role.MASTER, restoreWeights);
          if (restoreWeights) loadAll(Role.MASTER);
        }
      }
    } finally {
      closed = true;
      io.shutdownNow();
    }
  }

  /** {@link #close(boolean)} with the weights read back into memory. */
  @Override
  public void close() {
    close(true);
  }
}

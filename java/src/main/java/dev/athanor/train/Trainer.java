package dev.athanor.train;

import dev.athanor.io.data.DataLoader;
import dev.athanor.nn.Transformer;
import dev.athanor.nn.BlockHooks;
import dev.athanor.offload.ActivationPager;
import dev.athanor.offload.HostOffload;
import dev.athanor.offload.HostTransfers;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.OffloadedWeights;
import dev.athanor.offload.TransferStats;
import dev.athanor.offload.UnitFiles;
import dev.athanor.offload.UnitPager;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;
import java.util.List;
import java.util.Objects;

/**
 * The training loop's step, in explicit phases that later code extends:
 * <ol>
 *   <li><b>micro-batches</b>: {@code accum} forward + backward passes; each micro-batch's gradient is formed on its
 *       own (in {@link Role#GRAD}, from zero) and then added to the step's gradient once, micro-batch by micro-batch
 *       ({@code acc + g_i}, in {@link Role#GRAD_ACC}; with one micro-batch the step's gradient is {@link Role#GRAD}).
 *       Each micro-batch's loss is scaled by {@code 1 / accum}, so the step's gradient is the mean;
 *   <li><b>gradient reduction</b> across replicas ({@link GradientReducer}; nothing in one process); data parallel may
 *       start it during the last micro-batch's backward, unit by unit ({@link GradientReducer#startDuringBackward}),
 *       and then only waits for it here;
 *   <li><b>clipping</b>: the global norm from per-chunk partial sums combined in a fixed order;
 *   <li><b>update</b>: AdamW over the parameters' range with the scheduled learning rate.
 * </ol>
 * With the weights, gradients and moments on DISK (CPU offload), the update of every step but the last is deferred
 * into the next step's forward ({@link #defersUpdates()}): each unit is updated when the forward first reads its
 * weights, in the window the forward then uses, while the I/O of the next units' gradients and moments runs behind
 * the computation. With the optimizer on the host ({@link HostOptimizer}) the update of every step but the last is
 * likewise deferred by default: a worker thread updates the units in the forward's order while the next forward runs,
 * each unit's first read waiting for its new weights. The bits are those of the update made at once; {@link #settle()}
 * applies what remains, and everything that needs the state as a step leaves it (checkpoints, {@link
 * #consistentState()}, {@link #close()}, a failed step) calls it first.
 * A NaN/inf loss or norm stops the step before the update. The caller drives the loop (progress, logging,
 * checkpoints) and owns the model and the data loader.
 */
public final class Trainer implements AutoCloseable {
  private final Transformer model;
  private final TrainConfig cfg;
  private final DataLoader data;
  private final AdamW optimizer;
  private final ParameterStore store;
  private final OffloadedWeights weights;    // the model's weights on DISK, or null
  private final boolean ownsWeights;         // moved there by this trainer (and read back when it closes)
  private final UnitFiles files;             // the other roles on DISK when weights or gradients are, or null
  private final UnitPager pager;             // pages the gradients unit by unit, or null
  private final BlockHooks hooksBefore;      // the model's hooks before this trainer added its pager
  private final ActivationPager activations; // moves the blocks' saved activations to DISK and back, or null
  private final BlockHooks hooksBeforeActivations;  // the model's hooks before this trainer added the activation pager
  private final Role stepGrad;               // where the step's gradient is: GRAD, or GRAD_ACC with accumulation
  private final Tensor gradShard;            // ZeRO 2 and 3: the step's gradient of the optimizer's shard only, or null
  private final ShardedGradients sharded;    // ZeRO 2 per unit and 3: the gradient's shard folded during the backward, or null
  private GradientReducer reducer = GradientReducer.NONE;
  private MicroBatchRunner runner;           // replaces phase 1 (e.g. a pipeline schedule), or null
  private long step;
  private DataLoader.State stateBeforeStep;  // the loader's state when the current/last step began
  private boolean stepFailed;                // the last step threw before its update began
  private boolean updateFailed;              // the last step threw during its update (state inconsistent)
  private final boolean defers;              // the update of a step is deferred into the next step's forward (DISK or host)
  private final HostOptimizer host;          // AdamW on the host for a model on a device, or null
  private final Tensor hostMasters;          // ZeRO 1 with the optimizer on the host: the shard's masters (pinned), or null
  private boolean scalarsOnDevice = dev.athanor.runtime.HopperSwitch.on();  // the step's scalars stay on the device
  private DeviceStepScalars scalars;         // their buffers (made at the first step that keeps them there), or null

  public Trainer(Transformer model, TrainConfig cfg, DataLoader data) {
    this(model, cfg, data, OffloadConfig.NONE);
  }

  /**
   * A trainer that keeps the roles {@code offload} names on DISK; the offload directory is checked and the files
   * are created here, before any step. With only AdamW's moments there, the optimizer streams them ({@link AdamW})
   * and the forward, backward and clipping are those of an in-memory run. With the weights ({@link Role#MASTER})
   * there, the trainer moves them to DISK ({@link OffloadedWeights}) and reads them back into memory when it is
   * closed; with the gradients ({@link Role#GRAD}) there, a {@link UnitPager} joins the model's hooks and forms each
   * unit's gradient in a host window that is written behind, the clipping norm streams the step's gradient, and the
   * optimizer streams every role on DISK. With {@link OffloadConfig#activationsOnDisk()} an {@link ActivationPager}
   * joins the model's hooks too (CPU only, not with recomputation): each micro-batch's saved activations go to DISK
   * behind the forward and come back ahead of the backward. The results are those of the in-memory run, bit for bit.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, OffloadConfig offload) {
    this(model, cfg, data, offload, null);
  }

  /**
   * A trainer as {@link #Trainer(Transformer, TrainConfig, DataLoader, OffloadConfig)} for a model whose weights are
   * already on DISK in {@code weights} (owned by the caller, who closes it after the trainer; null: none are). This is
   * how a model larger than memory trains: built without weights ({@link Transformer#withoutWeights}), attached to
   * its files, filled, then trained.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, OffloadConfig offload, OffloadedWeights weights) {
    this(model, cfg, data, offload, weights, null);
  }

  /**
   * ZeRO stage 1: a trainer whose optimizer keeps moments for and updates only {@code optimizerShard} of the flat
   * parameters ({@link AdamW#AdamW(ParameterStore, Range)}); the gradient reducer's {@link
   * GradientReducer#afterUpdate} then gathers the other replicas' updated parameters.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, Range optimizerShard) {
    this(model, cfg, data, OffloadConfig.NONE, null, Objects.requireNonNull(optimizerShard, "optimizerShard"), false);
  }

  /**
   * ZeRO stage 1 ({@code shardGradients} false, as {@link #Trainer(Transformer, TrainConfig, DataLoader, Range)}) or 2
   * (true): the step's gradient is kept for {@code optimizerShard} only ({@link #gradientShard()}, F32, in place of a
   * whole-model {@link Role#GRAD_ACC}); after each micro-batch's backward the gradient reducer adds its shard of every
   * replica's micro-batch gradient into it ({@link GradientReducer#accumulateShard}), the clipping norm is formed from
   * the shards ({@link GradientReducer#shardedNorm}) and the optimizer updates its shard from it ({@link
   * AdamW#updateShard}). {@link Role#GRAD} stays whole: the backward pass forms one micro-batch's gradient there.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, Range optimizerShard, boolean shardGradients) {
    this(model, cfg, data, optimizerShard, shardGradients, OffloadConfig.NONE);
  }

  /**
   * ZeRO stage 1 or 2 as {@link #Trainer(Transformer, TrainConfig, DataLoader, Range, boolean)} with the shard's AdamW
   * moments that {@code offload} puts on DISK kept there ({@link AdamW#AdamW(ParameterStore, Range, OffloadConfig)}:
   * files of the shard's elements only, streamed chunk by chunk by the update). {@code offload} may name only {@link
   * Role#ADAM_M} and {@link Role#ADAM_V}: the weights and gradients stay in memory. The results are bit-identical.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, Range optimizerShard, boolean shardGradients,
      OffloadConfig offload) {
    this(model, cfg, data, offload, null, Objects.requireNonNull(optimizerShard, "optimizerShard"), shardGradients);
  }

  /**
   * ZeRO stage 2 formed unit by unit ({@code sharded} a {@link ShardedGradients}) or 3 ({@code sharded} a {@link
   * ShardedParameters}): the model's micro-batch gradients (and under ZeRO 3 its masters) are paged by {@code sharded}
   * (among the model's hooks, owned by the caller, who closes it after the trainer), which folds each unit's
   * micro-batch gradient into this replica's shard of the step gradient during the backward (and under ZeRO 3 keeps
   * the shard of the masters); the optimizer keeps moments for the shard and updates it (ZeRO 3: its masters in place;
   * ZeRO 2: the store's masters, which the gradient reducer then all-gathers), with the same kernel on the same elements
   * as ZeRO 1 and the whole-gradient ZeRO 2. The clipping norm is formed from the shards ({@link
   * GradientReducer#shardedNorm}).
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, ShardedGradients sharded) {
    this(model, cfg, data, sharded, OffloadConfig.NONE);
  }

  /**
   * ZeRO stage 2 formed unit by unit as {@link #Trainer(Transformer, TrainConfig, DataLoader, ShardedGradients)}, with
   * the shard's AdamW moments that {@code offload} puts on DISK kept there (as {@link #Trainer(Transformer, TrainConfig,
   * DataLoader, Range, boolean, OffloadConfig)}); the gradient's shard stays in memory. With ZeRO 3 ({@link
   * ShardedParameters}) likewise, and the shard's masters and gradient are on DISK where {@code sharded} keeps them
   * ({@link ShardedGradients#shardFiles()}, placed by {@code offload}'s MASTER and GRAD when it was attached): the clipping
   * norm then reads the gradient from there a norm chunk at a time and the optimizer streams them with the moments.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, ShardedGradients sharded, OffloadConfig offload) {
    this(model, cfg, data, offload, null, Objects.requireNonNull(sharded, "sharded").shard(), true, sharded);
  }

  /**
   * A trainer whose optimizer runs on the host ({@link HostOptimizer}) for a model that computes in a low-precision
   * dtype (BF16 on CUDA): the masters and AdamW's moments move to pinned host memory (the moments {@code host} puts on
   * DISK there, streamed), the compute weights and the gradients stay where the model computes. Each step's clipping
   * norm is formed there; then every unit's gradient goes to the host, the CPU AdamW kernel updates it, and its new
   * compute weights go back: with {@link HostOffload#deferUpdates()} (all steps but the last) on a worker thread while
   * the next step's forward runs, each unit's first read waiting for its weights ({@link #defersUpdates()}), else
   * before the step returns. The masters stay in host memory when the trainer is closed. Same kernel on the same
   * elements as the in-memory run's update on the host: on the CPU (a BF16 model) the results are bit-identical; on
   * CUDA they differ from the device's own AdamW kernel in the last bits.
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, HostOffload host) {
    this(model, cfg, data, Objects.requireNonNull(host, "host").moments(), null, null, false, null, host);
  }

  /**
   * ZeRO 1 with the optimizer on the host (ZeRO-Offload's layout): as {@link #Trainer(Transformer, TrainConfig,
   * DataLoader, HostOffload)}, but this replica keeps only {@code optimizerShard}'s F32 masters and AdamW moments in
   * pinned host memory (the moments {@code host} puts on DISK there, for the shard only); the store's masters are paged
   * away. Each step the whole gradient is reduced (as without the shard) and its norm taken; the host update covers
   * each unit's part in the shard, and the {@link GradientReducer#gatherWeights} of the reducer set (data parallel)
   * makes each unit's compute weights whole before the next forward reads it (deferred) or before the update finishes.
   * Closing puts the shard's masters back into the store's (the rest of them zeros).
   */
  public Trainer(Transformer model, TrainConfig cfg, DataLoader data, HostOffload host, Range optimizerShard) {
    this(model, cfg, data, Objects.requireNonNull(host, "host").moments(), null,
        Objects.requireNonNull(optimizerShard, "optimizerShard"), false, null, host);
  }

  private Trainer(Transformer model, TrainConfig cfg, DataLoader data, OffloadConfig offload, OffloadedWeights weights,
      Range shard) {
    this(model, cfg, data, offload, weights, shard, false);
  }

  private Trainer(Transformer model, TrainConfig cfg, DataLoader data, OffloadConfig offload, OffloadedWeights weights,
      Range shard, boolean shardGradients) {
    this(model, cfg, data, offload, weights, shard, shardGradients, null);
  }

  private Trainer(Transformer model, TrainConfig cfg, DataLoader data, OffloadConfig offload, OffloadedWeights weights,
      Range shard, boolean shardGradients, ShardedGradients sharded) {
    this(model, cfg, data, offload, weights, shard, shardGradients, sharded, null);
  }

  private Trainer(Transformer model, TrainConfig cfg, DataLoader data, OffloadConfig offload, OffloadedWeights weights,
      Range shard, boolean shardGradients, ShardedGradients sharded, HostOffload hostOffload) {
    Objects.requireNonNull(offload, "offload");
    this.sharded = sharded;
    this.model = Objects.requireNonNull(model, "model");
    if (sharded instanceof ShardedParameters && !model.parameters().isPaged(Role.MASTER)) {
      throw new IllegalArgumentException("ZeRO 3 needs the model's masters paged by its shards' hooks");
    }
    if (sharded != null && !model.parameters().isPaged(Role.GRAD)) {
      throw new IllegalArgumentException("a gradient folded unit by unit (ZeRO 2 and 3) needs the model's gradients paged "
          + "by its hooks");
    }
    this.cfg = Objects.requireNonNull(cfg, "cfg");
    this.data = Objects.requireNonNull(data, "data");
    if (cfg.seq() > model.config().maxSeqLen()) {
      throw new IllegalArgumentException("seq " + cfg.seq() + " exceeds the model's context " + model.config().maxSeqLen());
    }
    this.store = model.parameters();
    UnitFiles shardFiles = sharded == null ? null : sharded.shardFiles();
    for (Role r : offload.diskRoles()) {
      if ((r == Role.MASTER || r == Role.GRAD) && sharded != null && (shardFiles == null || !shardFiles.holds(r))) {
        throw new IllegalArgumentException("the offload puts the shard's " + r + " on DISK, but the ZeRO shards keep it in "
            + "memory (attach them with the same offload)");
      }
    }
    if (shard != null && (offload.pagesUnits() && shardFiles == null || weights != null)) {
      throw new IllegalArgumentException("a sharded optimizer (ZeRO 1 and 2) keeps only AdamW's moments on DISK; the weights "
          + "and gradients stay in memory, but the offload puts " + new java.util.TreeSet<>(offload.diskRoles()) + " there");
    }
    if (hostOffload != null) {
      this.defers = hostOffload.deferUpdates();
      this.weights = null;
      this.ownsWeights = false;
      this.files = null;
      this.pager = null;
      this.hooksBefore = model.hooks();
      HostOptimizer.placeState(store, offload, shard == null);
      Tensor mastersShard = null;
      AdamW o;
      if (shard == null) {
        o = new AdamW(store, offload);
      } else {  // ZeRO 1: the shard's masters on the host, the store's paged away
        mastersShard = Tensor.empty(dev.athanor.tensor.DType.F32, dev.athanor.runtime.Device.CPU, HostOptimizer.HOST_TIER,
            shard.length()).detach();
        try {
          try (Tensor mine = store.slice(Role.MASTER, shard)) {
            mastersShard.copyFrom(mine);
          }
          o = new AdamW(store, shard, mastersShard, offload);
        } catch (RuntimeException e) {
          mastersShard.close();
          throw e;
        }
        store.pageWithoutBacking(Role.MASTER);
      }
      this.hostMasters = mastersShard;
      // each unit's micro-batch gradient goes to the host as its backward completes it: with one micro-batch a step into
      // a copy of the whole gradient, with accumulation (when asked) summed there; else the step's gradient through slots
      HostOptimizer.Gradients path = cfg.accum() == 1
          ? hostOffload.streamGradients() ? HostOptimizer.Gradients.STREAMED : HostOptimizer.Gradients.SLOTS
          : hostOffload.sumOnHost() ? HostOptimizer.Gradients.SUMMED : HostOptimizer.Gradients.SLOTS;
      try {
        this.host = new HostOptimizer(store, o, new dev.athanor.offload.StreamCopies(model.device()), path,
            shard == null ? null : u -> reducer.gatherWeights(store, u.elements()));
      } catch (RuntimeException e) {
        o.close();
        restoreMasters(shard);
        throw e;
      }
      model.setHooks(BlockHooks.both(hooksBefore, host.hooks()));
      this.optimizer = o;
    } else if (!offload.pagesUnits() && weights == null || sharded != null) {
      this.host = null;
      this.hostMasters = null;
      this.defers = false;
      this.weights = null;
      this.ownsWeights = false;
      this.files = null;
      this.pager = null;
      this.hooksBefore = null;
      this.optimizer = shard == null ? new AdamW(store, offload)
          : sharded instanceof ShardedParameters p ? new AdamW(store, shard, p.masters(), shardFiles, offload)
          : new AdamW(store, shard, offload);
    } else {
      this.host = null;
      this.hostMasters = null;
      if (!model.device().isCpu()) {
        throw new IllegalArgumentException("weights and gradients on DISK need the CPU backend; this model is on " + model.device());
      }
      for (Role r : offload.diskRoles()) {
        if ((r == Role.ADAM_M || r == Role.ADAM_V) && store.has(r)) {
          throw new IllegalArgumentException(r + " is already allocated in the store; cannot also keep it on DISK");
        }
      }
      boolean own = weights == null && offload.onDisk(Role.MASTER);
      OffloadedWeights w = own
          ? OffloadedWeights.attach(model, offload.resolvedDirectory(), offload.prefetch(), offload.residentWeights()) : weights;
      java.util.EnumSet<Role> mine = java.util.EnumSet.noneOf(Role.class);
      for (Role r : offload.diskRoles()) if (r != Role.MASTER) mine.add(r);
      UnitFiles f = null;
      UnitPager p = null;
      BlockHooks before = model.hooks();
      AdamW o;
      try {
        if (!mine.isEmpty()) f = new UnitFiles(store, mine, offload.resolvedDirectory());
        if (mine.contains(Role.GRAD)) {
          p = new UnitPager(model, f, offload.prefetch(), java.util.Set.of(), offload.resident(Role.GRAD));
          model.setHooks(BlockHooks.both(before, p));
        }
        List<UnitFiles> streamed = new java.util.ArrayList<>();
        if (w != null) streamed.add(w.files());
        if (f != null) streamed.add(f);
        o = new AdamW(store, streamed, offload.chunkBytes(), offload.residentUnits());
      } catch (RuntimeException e) {
        model.setHooks(before);
        if (p != null) p.close(false);
        if (f != null) f.close();
        if (own) w.close();
        throw e;
      }
      this.weights = w;
      this.defers = w != null && p != null && store.weightsAreMasters();  // weights and gradients paged, CPU F32
      this.ownsWeights = own;
      this.files = f;
      this.pager = p;
      this.hooksBefore = before;
      this.optimizer = o;
    }
    BlockHooks beforeActivations = model.hooks();
    ActivationPager ap = null;
    try {
      if (offload.activationsOnDisk()) {
        ap = new ActivationPager(model, offload.resolvedDirectory(), offload.prefetch());
        model.setHooks(BlockHooks.both(beforeActivations, ap));
      }
    } catch (RuntimeException e) {
      if (ap != null) ap.close();
      model.setHooks(beforeActivations);
      closeOptimizer();
      closePager();
      throw e;
    }
    this.activations = ap;
    this.hooksBeforeActivations = beforeActivations;
    Tensor gs = null;
    try {
      boolean pagedGrads = store.isPaged(Role.GRAD);
      if (!pagedGrads) store.allocate(Role.GRAD);
      this.stepGrad = cfg.accum() > 1 && !pagedGrads && !shardGradients ? Role.GRAD_ACC : Role.GRAD;
      // with the step's sum on the host, the device holds one micro-batch's gradient only
      if (!pagedGrads && !sumsOnHost()) store.allocate(stepGrad);
      if (sharded != null) {
        gs = sharded.gradient();
      } else if (shardGradients) {
        gs = Tensor.zeros(dev.athanor.tensor.DType.F32, store.placement(Role.MASTER).device(), shard.length()).detach();
      }
      this.gradShard = gs;
    } catch (RuntimeException e) {
      closeOptimizer();
      closeOffload();
      throw e;
    }
  }

  /** Whether the step's gradient sum is in the host optimizer's pinned memory (not GRAD_ACC on the device). */
  private boolean sumsOnHost() {
    return host != null && host.gradients() == HostOptimizer.Gradients.SUMMED;
  }

  /** Closes the host optimizer (its copies and staging slots), then the optimizer (and ZeRO 1's masters on the host). */
  private void closeOptimizer() {
    try {
      if (host != null) {
        model.setHooks(hooksBefore);
        host.close();
      }
    } finally {
      try {
        optimizer.close();
      } finally {
        restoreMasters(optimizer.shard());
      }
    }
  }

  /**
   * ZeRO 1 with the optimizer on the host: the store's masters unpaged, the shard's copied back into them (the rest
   * zeros), and the shard's tensor freed; nothing otherwise.
   */
  private void restoreMasters(Range shard) {
    Tensor m = hostMasters;
    if (m == null || m.isClosed()) return;
    try {
      if (!store.isClosed() && store.isPaged(Role.MASTER)) {
        store.unpage(Role.MASTER);
        try (Tensor dst = store.slice(Role.MASTER, shard)) {
          dst.copyFrom(m);
        }
      }
    } finally {
      m.close();
    }
  }

  /** The DISK traffic and stalls of this trainer's offload so far ({@link TransferStats.Snapshot#ZERO} without offload). */
  public TransferStats.Snapshot transfers() {
    TransferStats.Snapshot s = TransferStats.Snapshot.ZERO;
    if (sharded != null && sharded.shardFiles() != null) s = s.plus(sharded.shardFiles().stats().snapshot());
    if (weights != null) s = s.plus(weights.transfers());
    if (files != null) s = s.plus(files.stats().snapshot());
    if (optimizer.offloadFiles() != null) s = s.plus(optimizer.offloadFiles().stats().snapshot());
    if (activations != null) s = s.plus(activations.stats().snapshot());
    return s;
  }

  /**
   * The AdamW moments of parameter {@code i} (as in an unsharded optimizer's {@link AdamW#firstMoments()}), for a
   * checkpoint. With a sharded optimizer (ZeRO 1) a collective of the replicas (see {@link
   * GradientReducer#gatherMoments}): every replica calls it for the same parameters in the same order; replica 0 gets
   * the moments in {@code m} and {@code v} (host F32 tensors of the parameter's shape), the others pass null.
   */
  public void gatherMoments(int i, Tensor m, Tensor v) {
    if (optimizer.shard() == null) {
      if (m == null) return;
      m.copyFrom(optimizer.firstMoments().get(i));
      v.copyFrom(optimizer.secondMoments().get(i));
      return;
    }
    reducer.gatherMoments(store, optimizer, store.range(i), m, v);
  }

  /**
   * The host-device traffic of the optimizer on the host so far and the time the training thread waited for it ({@link
   * HostTransfers#ZERO} without it).
   */
  public HostTransfers hostTransfers() {
    return host == null ? HostTransfers.ZERO : host.transfers();
  }

  /**
   * Refreshes the compute weights from the masters after they were replaced from outside (a checkpoint's restore): the
   * store's {@link ParameterStore#syncWeights()}; with ZeRO 1 on the host, the shard's masters rounded into its part of
   * the weights and every unit's weights then gathered from the replicas (a collective of every replica, after the
   * gradient reducer is set).
   */
  public void syncWeights() {
    if (hostMasters == null) {
      store.syncWeights();
      return;
    }
    try (Tensor low = Ops.convert(hostMasters, store.computeDtype()); Tensor w = store.slice(Role.WEIGHT, optimizer.shard())) {
      w.copyFrom(low);
    }
    for (dev.athanor.params.Unit u : store.units()) reducer.gatherWeights(store, u.elements());
  }

  /** The optimizer on the host ({@link #Trainer(Transformer, TrainConfig, DataLoader, HostOffload)}), or null. */
  public HostOptimizer hostOptimizer() {
    return host;
  }

  /**
   * Sets the gradient-reduction phase (e.g. data parallelism); {@link GradientReducer#NONE} by default. The trainer
   * closes the reducer set last when it is closed.
   */
  public void setGradientReducer(GradientReducer reducer) {
    Objects.requireNonNull(reducer, "reducer");
    if (reducer != GradientReducer.NONE && store.isPaged(Role.GRAD) && sharded == null) {
      throw new IllegalArgumentException("gradient reduction across replicas needs the gradients in memory; they are on DISK here");
    }
    this.reducer = reducer;
  }

  /** ZeRO 2: the step's gradient of the optimizer's shard (F32, 1-D; do not close), or null when the gradient is whole. */
  public Tensor gradientShard() {
    return gradShard;
  }

  /**
   * Phase 1 of a step's replacement: runs the step's {@code accum} micro-batches (reading them from {@link #data()}),
   * each micro-batch's gradient formed from zero in {@link Role#GRAD} and passed to {@link #accumulate} in micro-batch
   * order, and returns their losses in order (a process without the loss returns zeros, and its {@link
   * GradientReducer#gatherLosses} gets the real ones).
   */
  @FunctionalInterface
  public interface MicroBatchRunner {
    float[] run(Trainer trainer, float lossScale);
  }

  /** Replaces phase 1 by {@code runner} (e.g. a pipeline schedule); null: the trainer's own loop. */
  public void setMicroBatchRunner(MicroBatchRunner runner) {
    if (runner != null && store.isPaged(Role.GRAD)) {
      throw new IllegalArgumentException("a micro-batch runner needs the gradients in memory; they are on DISK here");
    }
    if (runner != null && activations != null) {
      throw new IllegalArgumentException("a micro-batch runner (a pipeline schedule) needs the activations in memory; they "
          + "are on DISK here");
    }
    this.runner = runner;
  }

  /**
   * Adds micro-batch {@code i}'s gradient ({@link Role#GRAD}) to the step's gradient as the trainer's own loop does:
   * copied for the first micro-batch, then {@code acc + g_i}.
   */
  public void accumulate(int i) {
    if (sharded != null) return;  // ZeRO 2 and 3: each unit's gradient was folded into the shard's sum during the backward
    if (gradShard != null) {  // ZeRO 2: this replica's shard of every replica's gradient, folded into the shard's sum
      reducer.accumulateShard(store, Role.GRAD, optimizer.shard(), gradShard, i == 0);
      return;
    }
    if (stepGrad != Role.GRAD_ACC || sumsOnHost()) return;  // the host optimizer sums on the host
    if (i == 0) {
      store.flat(Role.GRAD_ACC).copyFrom(store.flat(Role.GRAD));
    } else {
      Ops.add(store.flat(Role.GRAD_ACC), store.flat(Role.GRAD), store.flat(Role.GRAD_ACC));
    }
  }

  /** The role holding a step's gradient after the micro-batches: GRAD, or GRAD_ACC with gradient accumulation. */
  public Role stepGradient() {
    return stepGrad;
  }

  public Transformer model() {
    return model;
  }

  public TrainConfig config() {
    return cfg;
  }

  public AdamW optimizer() {
    return optimizer;
  }

  public DataLoader data() {
    return data;
  }

  /** The 0-based index of the next step (= steps done). */
  public long nextStep() {
    return step;
  }

  /** Whether all {@code cfg.steps()} steps are done. */
  public boolean done() {
    return step >= cfg.steps();
  }

  /**
   * Whether a step keeps its scalars where the model computes ({@link #stepScalarsOnDevice()}); by default under
   * {@code ATHANOR_CUDA_HOPPER=1} ({@link dev.athanor.runtime.HopperSwitch}). The results are the same bits either way.
   */
  public void setStepScalarsOnDevice(boolean on) {
    this.scalarsOnDevice = on;
  }

  /**
   * Whether the next step keeps its scalars on the model's device and reads them once when it ends: each micro-batch's
   * loss ({@link Transformer#forward(int[], int[], int, int, Tensor)}), the gradient norm and the clipping factor
   * ({@link Ops#clipScale}), which the AdamW kernel reads from there; a NaN/inf loss or norm makes the factor NaN, the
   * kernel then updates nothing, and the step throws {@link NonFiniteException} after that one read. So a CUDA step
   * does not wait for the device until it ends. For the plain in-memory step only: one process ({@link
   * GradientReducer#NONE}), the trainer's own micro-batch loop, no offload, no ZeRO, the optimizer where the model is.
   */
  public boolean stepScalarsOnDevice() {
    return scalarsOnDevice && runner == null && reducer == GradientReducer.NONE && host == null && weights == null
        && pager == null && activations == null && sharded == null && gradShard == null && optimizer.shard() == null
        && !store.isPaged(Role.GRAD) && !store.isPaged(Role.MASTER);
  }

  /**
   * Runs one optimizer step. Throws {@link NonFiniteException} (without updating) on a NaN/inf loss or
   * gradient; after any failure before the update, {@link #consistentState()} still describes a state
   * from which training continues exactly.
   */
  public StepResult step() {
    if (updateFailed) throw new IllegalStateException("a previous step failed during its parameter update; the state is inconsistent");
    long t0 = System.nanoTime();
    if (!stepFailed) stateBeforeStep = data.state();
    else data.restore(stateBeforeStep);  // retrying a failed step reads the same batches
    stepFailed = true;
    MicroBatches mb;
    DeviceStepScalars onDevice = stepScalarsOnDevice() ? deviceScalars() : null;
    try {
      mb = runner != null
          ? new MicroBatches(runner.run(this, 1f / (cfg.accum() * reducer.replicas())), (long) cfg.accum() * cfg.batch() * cfg.seq())
          : microBatches(onDevice);
      if (pager != null) pager.flush();
      if (sharded != null) sharded.flush();  // ZeRO 3 with the gradient shard on DISK: the last unit's part written
      // the optimizer is about to rewrite the weights on DISK (what the forward did not apply of the last step's
      // deferred update is applied first)
      if (weights != null) weights.flush();
    } catch (RuntimeException | Error e) {
      reducer.abandonStep();
      if (sharded != null) sharded.discard();
      if (activations != null) activations.discard();
      if (pager != null) pager.discard();
      if (weights != null) weights.pager().discard();
      if (weights != null || host != null) {
        try {
          settle();  // the last step's update, which the forward had begun to apply, completed: a consistent state
        } catch (RuntimeException | Error s) {
          if (s != e) e.addSuppressed(s);  // settle() marked the state inconsistent (s is e: the update's own failure)
        }
      }
      throw e;
    }
    if (onDevice != null) return finishOnDevice(onDevice, mb.tokens(), t0);
    // the optimizer on the host with the step's gradient whole in host memory (summed there, or streamed there with
    // replicas): reduced there and its norm taken there; else on the device
    Tensor onHost = host == null ? null : host.collectGradient(reducer.replicas() > 1);
    if (onHost != null) {
      reducer.reduce(onHost);
    } else if (gradShard == null && sharded == null) {
      reducer.reduce(store, stepGrad);  // ZeRO 2 reduced each micro-batch's already
    }
    float[] losses = reducer.gatherLosses(mb.losses());
    double lossSum = 0;
    for (float l : losses) lossSum += l;  // in the global micro-batch order, as one process adds them
    float norm = onHost != null ? Ops.globalNorm(List.of(onHost))
        : gradShard != null ? reducer.shardedNorm(store, optimizer.shard(), gradShard)
        : sharded != null ? reducer.shardedNorm(store, sharded.shard(), gradientReader(sharded.shardFiles()))
        : store.isPaged(stepGrad) ? pager.globalNorm() : reducer.gradientNorm(store, stepGrad);
    if (!Float.isFinite(norm)) throw new NonFiniteException(step, "the gradient norm", norm);
    float clip = cfg.gradClip() > 0 ? (float) Math.min(1.0, cfg.gradClip() / (norm + 1e-6)) : 1f;
    float lr = cfg.lrAt(step);
    updateFailed = true;
    optimizer.beginStep();
    if (sharded != null || gradShard != null) {  // ZeRO 2 and 3 (the gradient shard in memory, or null: on DISK)
      optimizer.updateShard(gradShard, lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), clip);
    } else if (host != null && defers && step + 1 < cfg.steps()) {  // on a worker, behind the next forward
      host.defer(stepGrad, lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), clip);
    } else if (host != null) {
      host.update(stepGrad, lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), clip);
    } else if (defers && step + 1 < cfg.steps()) {  // the last step of the run updates at once
      UnitPager wp = weights.pager();
      wp.defer(optimizer.defer(wp.updateOrder(), stepGrad, lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), clip));
    } else {
      optimizer.update(store.all(), stepGrad, lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), clip);
    }
    reducer.afterUpdate(store);
    updateFailed = false;
    stepFailed = false;
    StepResult r = new StepResult(step, (float) (lossSum / losses.length), lr, norm, mb.tokens() * reducer.replicas(),
        (System.nanoTime() - t0) / 1e9);
    step++;
    return r;
  }

  private record MicroBatches(float[] losses, long tokens) {}

  /** The buffers of the step's scalars on the model's device, made once. */
  private DeviceStepScalars deviceScalars() {
    if (scalars == null) scalars = new DeviceStepScalars(model.device(), cfg.accum(), store.flat(stepGrad));
    return scalars;
  }

  /**
   * The clipping and the update of a step whose scalars stay on the device ({@link #stepScalarsOnDevice()}), then the
   * step's one read: the losses, the norm and the factor. A NaN/inf loss (the first in micro-batch order) or norm made
   * the factor NaN, so the kernel updated nothing: the step is refused as the host-side checks refuse it, after its
   * work rather than before the backward of the micro-batch whose loss it was (the weights, the moments and the
   * optimizer's step count are as they were; the gradients hold this step's).
   */
  private StepResult finishOnDevice(DeviceStepScalars sc, long tokens, long t0) {
    float lr = cfg.lrAt(step);
    updateFailed = true;
    optimizer.beginStep();
    try (Tensor factor = sc.clip(store.flat(stepGrad), cfg.gradClip())) {
      optimizer.update(store.all(), stepGrad, lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), factor);
    }
    DeviceStepScalars.Values v = sc.read();  // the step's one read: it waits for the step's work
    updateFailed = false;
    NonFiniteException refused = null;  // the kernel saw a NaN factor and updated nothing
    for (float l : v.losses()) {
      if (refused == null && !Float.isFinite(l)) refused = new NonFiniteException(step, "the loss", l);
    }
    if (refused == null && !Float.isFinite(v.norm())) refused = new NonFiniteException(step, "the gradient norm", v.norm());
    if (refused != null) {
      optimizer.setStep(optimizer.step() - 1);
      throw refused;
    }
    double lossSum = 0;
    for (float l : v.losses()) lossSum += l;  // in micro-batch order, as the host-side step adds them
    stepFailed = false;
    StepResult r = new StepResult(step, (float) (lossSum / v.losses().length), lr, v.norm(), tokens,
        (System.nanoTime() - t0) / 1e9);
    step++;
    return r;
  }

  /** Reads a range of the step's gradient shard from {@code files} (GRAD, the shard's range) into a new host tensor. */
  private static GradientReducer.ShardReader gradientReader(UnitFiles files) {
    return range -> {
      Tensor t = Tensor.empty(dev.athanor.tensor.DType.F32, dev.athanor.runtime.Device.CPU, dev.athanor.memory.Tier.HOST,
          range.length());
      try {
        files.transfer(Role.GRAD, range, t, false);
        return t;
      } catch (RuntimeException e) {
        t.close();
        throw e;
      }
    };
  }

  /**
   * Phase 1: forward and backward of each micro-batch, its gradient added to the step's gradient once. With several
   * replicas each micro-batch's loss is scaled by {@code 1 / (accum × replicas)}, as one process with {@code accum ×
   * replicas} micro-batches scales it.
   */
  private MicroBatches microBatches(DeviceStepScalars onDevice) {
    float[] losses = new float[cfg.accum()];
    float scale = 1f / (cfg.accum() * reducer.replicas());
    long tokens = 0;
    for (int i = 0; i < cfg.accum(); i++) {
      DataLoader.Batch b = data.next();
      boolean paged = store.isPaged(Role.GRAD);
      if (sharded != null) {
        sharded.beginMicroBatch(i);  // each unit's gradient window starts at zero and is folded into the shard's sum
      } else if (paged) {
        pager.beginMicroBatch(i);  // each unit's gradient window starts at zero; the pager accumulates on DISK
      } else if (host == null) {
        store.zero(Role.GRAD);
      }
      float loss = 0f;
      if (onDevice != null) {
        try (Tensor slot = onDevice.loss(i)) {
          model.forward(b.inputs(), b.targets(), b.batch(), b.seq(), slot);  // checked when the step ends
        }
      } else {
        loss = model.forward(b.inputs(), b.targets(), b.batch(), b.seq());
      }
      if (host != null) {  // the last step's deferred update may read the step gradient until the forward has run
        host.beginMicroBatch(i);  // that update finished, and the last micro-batch's gradient copies have read GRAD
        store.zero(Role.GRAD);
      }
      if (!Float.isFinite(loss)) throw new NonFiniteException(step, "the loss", loss);
      // the last micro-batch's backward may start reducing the step's gradient as its units complete (data parallel),
      // adding each unit's micro-batch gradient into the step's first
      boolean overlapped = i == cfg.accum() - 1 && sharded == null && gradShard == null && !paged && host == null
          && reducer.startDuringBackward(store, Role.GRAD, stepGrad);
      model.backward(scale);
      if (!overlapped) accumulate(i);
      losses[i] = loss;
      tokens += (long) b.batch() * b.seq();
    }
    return new MicroBatches(losses, tokens);
  }

  /**
   * The step index and data-loader state that match the current parameters and optimizer state: after a
   * completed step, the next step and the loader as it is; after a step that failed before its update, that
   * step again and the loader as it was when the step began. Empty when a step failed mid-update.
   */
  public java.util.Optional<Position> consistentState() {
    if (!updateFailed) {
      try {
        settle();
      } catch (RuntimeException e) {
        return java.util.Optional.empty();  // settle() marked the state inconsistent
      }
    }
    if (updateFailed) return java.util.Optional.empty();
    return java.util.Optional.of(stepFailed ? new Position(step, stateBeforeStep) : new Position(step, data.state()));
  }

  /** Where training stands: the next step to run and the data loader's state before it. */
  public record Position(long nextStep, DataLoader.State loader) {}

  /**
   * Whether this trainer defers each step's optimizer update (all but the last step's) into the next step's forward:
   * with the weights and gradients on DISK, paged unit by unit (CPU, F32), or with the optimizer on the host ({@link
   * HostOffload#deferUpdates()}).
   */
  public boolean defersUpdates() {
    return defers;
  }

  /**
   * Applies what remains of the last step's deferred update (nothing when none is pending), so that the weights and
   * the optimizer's state on DISK are those the step left, and every window is dropped. Call before reading or
   * replacing the parameters or the optimizer state from outside (a checkpoint does; {@link #consistentState()} and
   * {@link #close()} call it). A failure marks the state inconsistent ({@link #consistentState()} is then empty).
   */
  public void settle() {
    if (!updatePending()) return;
    try {
      if (host != null) {
        host.finishPending();  // every unit updated, the compute stream waiting for its new weights
      } else {
        weights.pager().applyPending();
        weights.flush();  // the updated weights written back
      }
    } catch (RuntimeException | Error e) {
      updateFailed = true;
      throw e;
    }
  }

  /** Whether a deferred update is not yet completely applied. */
  private boolean updatePending() {
    return host != null ? host.updatePending() : defers && weights.pager().updatePending();
  }

  /** Continues from {@code p} (after the parameters and the optimizer were restored). */
  public void restore(Position p) {
    if (updatePending()) {
      throw new IllegalStateException("a deferred optimizer update is pending: settle() before restoring the parameters");
    }
    data.restore(p.loader());
    step = p.nextStep();
    stepFailed = false;
    updateFailed = false;
  }

  /**
   * Releases the optimizer state and gradients the trainer allocated in the model's store, reads weights kept on DISK
   * back into memory, and deletes offload files.
   */
  @Override
  public void close() {
    RuntimeException unsettled = null;
    try {
      if (!updateFailed && !store.isClosed()) settle();  // the weights read back are those the last step left
    } catch (RuntimeException e) {
      unsettled = e;  // thrown once everything is released
    }
    try {
      reducer.close();  // e.g. data parallel's communication thread, and its hooks
    } catch (RuntimeException e) {
      if (unsettled == null) unsettled = e;
      else unsettled.addSuppressed(e);
    }
    closeResources();
    if (unsettled != null) throw unsettled;
  }

  private void closeResources() {
    try {
      if (scalars != null) scalars.close();
      closeOptimizer();  // first: it unmaps the moments' resident units it mapped in the store
      if (gradShard != null && sharded == null) gradShard.close();
    } finally {
      try {
        if (!store.isClosed()) {
          for (Role r : new Role[] {Role.ADAM_M, Role.ADAM_V, Role.GRAD_ACC}) store.release(r);
        }
      } finally {
        closeOffload();
      }
    }
  }

  private void closeOffload() {
    try {
      if (activations != null) {
        activations.close();
        model.setHooks(hooksBeforeActivations);
      }
    } finally {
      closePager();
    }
  }

  private void closePager() {
    try {
      if (pager != null) {
        pager.close(false);
        model.setHooks(hooksBefore);
      }
    } finally {
      try {
        if (files != null) files.close();
      } finally {
        if (ownsWeights) weights.close();  // reads them back into memory (when the model is still open)
      }
    }
  }
}

package dev.athanor.dist;

import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.ShardedGradients;
import java.util.Objects;

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
 */
public final class UnitGradientFold implements BlockHooks, ShardedGradients, AutoCloseable {
  private final ParameterStore store;
  private final Communicator comm;
  private final Range shard;
  private final Tensor gradient;
  private final Tensor[] grads;      // per unit index: the mapped gradient window, or null
  private final Transformer model;   // ZeRO 2: the model whose hooks this joined, or null (ZeRO 3 drives it)
  private final BlockHooks before;   // ZeRO 2: the model's hooks before
  private int micro;
  private boolean closed;

  private UnitGradientFold(ParameterStore store, Communicator comm, Range shard, Transformer model) {
    this.gradient = Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, shard.length()).detach();
    this.grads = new Tensor[store.units().size()];
    this.store = store;
    this.comm = comm;
    this.shard = shard;
    this.model = model;
    this.before = model == null ? null : model.hooks();
  }

  /**
   * The fold of {@code store}'s gradients over {@code comm}'s ranks into a zeroed shard-sized gradient, for a caller that
   * pages {@link Role#GRAD} itself and calls these hooks from its own (ZeRO 3).
   */
  static UnitGradientFold forShard(ParameterStore store, Communicator comm, Range shard) {
    return new UnitGradientFold(store, comm, shard, null);
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
   * model's. The weights stay as they are. Needs {@link #supports}.
   */
  public static UnitGradientFold attach(Transformer model, Communicator comm) {
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
    UnitGradientFold f = new UnitGradientFold(store, comm, shard, model);
    try {
      if (store.has(Role.GRAD)) store.release(Role.GRAD);
      store.pageWithoutBacking(Role.GRAD);
      model.setHooks(BlockHooks.both(f.before, f));
      return f;
    } catch (RuntimeException e) {
      f.gradient.close();
      throw e;
    }
  }

  @Override
  public Range shard() {
    return shard;
  }

  @Override
  public Tensor gradient() {
    return gradient;
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
    try (Tensor acc = gradient.slice(0, mine.isEmpty() ? 0 : mine.start() - shard.start(),
        mine.isEmpty() ? 0 : mine.end() - shard.start())) {
      comm.reduceScatterAccumulateV(g, acc, counts(unit), micro == 0);
    } finally {
      free(unit);
    }
  }

  /** Each rank's number of elements of {@code unit}'s flat range: the overlap with its shard, in rank order. */
  long[] counts(Unit unit) {
    long n = store.numel();
    long[] c = new long[comm.size()];
    for (int r = 0; r < c.length; r++) {
      Range part = new Range(Communicator.partStart(n, r, c.length), Communicator.partStart(n, r + 1, c.length));
      c[r] = unit.elements().intersect(part).length();
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

  /** The bytes of the gradient windows mapped now. */
  public long windowBytes() {
    long b = 0;
    for (Tensor w : grads) if (w != null) b += w.byteSize();
    return b;
  }

  @Override
  public void discard() {
    for (Unit u : store.units()) if (grads[u.index()] != null) free(u);
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
      gradient.close();
    }
  }
}

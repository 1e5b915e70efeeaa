package dev.athanor.train;

import dev.athanor.memory.Tier;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.UnitCopies;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Placement;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.nn.BlockHooks;
import dev.athanor.offload.HostTransfers;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * AdamW on the host for a model that computes on a device (ZeRO-Offload's split): the compute weights ({@link
 * Role#WEIGHT}, e.g. BF16) and the gradients stay in the device's memory; the F32 masters and AdamW's moments live in
 * page-locked host memory ({@link Tier#HOST_PINNED}), the moments there or on DISK ({@link AdamW}'s streaming). An
 * update runs unit by unit, in the forward's order (the layout's: the embedding first, which the next forward needs
 * first):
 * <ol>
 *   <li>the unit's step gradient goes to a host staging slot (F32), the next unit's copy enqueued before this unit is
 *       updated, so it runs while the host computes;
 *   <li>the CPU AdamW kernel updates the unit's masters and moments ({@link AdamW#updateInto}) and writes the new
 *       weights, rounded to the compute dtype, into a host staging slot;
 *   <li>that slot goes to the unit's compute weights on the device ({@link UnitCopies#queueToDevice}).
 * </ol>
 * {@link #update} makes every unit's update before it returns (the device's compute stream then waits for all the new
 * weights). {@link #defer} hands the same loop to a worker thread and returns at once: the next forward's first read of
 * each unit ({@link #hooks()}: before its weights) waits until the worker has enqueued the unit's new weights, and the
 * compute stream waits for that copy ({@link UnitCopies#computeWaits}); so the host's update of later units overlaps the
 * device's forward of earlier ones. The copies of a deferred update are all ordered behind the backward that formed
 * its gradients ({@link UnitCopies#afterCompute} when it is deferred). Anything else that needs the state as the step
 * left it (the next backward, a checkpoint, {@link #close}) calls {@link #finishPending()} first; the next micro-batch's
 * {@link #beginMicroBatch()} does, so the gradients the update reads are not overwritten before it has read them.
 *
 * <p>Two gradient slots and two weight slots of the largest unit's elements, pinned, are what this adds to host memory
 * ({@link #stagingBytes}). With one micro-batch per step the gradients can instead stream to a pinned copy of the whole
 * model's gradient during the backward ({@link #hooks()}: each unit's copy enqueued as its backward completes it, so
 * it overlaps the backward of the units before it), and the update then waits only for the copies still running
 * ({@link Gradients#STREAMED}). With accumulation the step's sum can be formed on the host ({@link Gradients#SUMMED}):
 * the first micro-batch's units stream into that pinned buffer, a later one's each into one of the two gradient slots,
 * added into the buffer ({@code acc + g_i}) before the slot takes another unit; the device keeps one micro-batch's
 * gradient. {@link #collectGradient} completes the step's gradient on the host for the clipping norm (and a reduction
 * across replicas). A
 * slot is written by the host only after the copy that last read it has been awaited, and read only after the copy
 * that filled it: with copies that run late (as on a device) the bits are those of copies that run at once.
 *
 * <p>The clipping factor comes from the caller (the norm of the step's gradient, formed on the device before the
 * update). Same kernel on the same elements as {@link AdamW#update} over host buffers, so the masters, moments and
 * weights are bit-identical to the host's in-memory update of the same values, deferred or not; against the device's
 * own AdamW kernel they can differ in the last bits (the device compiler may contract multiply-adds).
 *
 * <p>One training thread calls the public methods; the worker touches only the optimizer, the slots and the copies
 * while a deferred update runs.
 */
public final class HostOptimizer implements AutoCloseable {
  /** The host tier the masters and the moments in memory live in. */
  public static final Tier HOST_TIER = Tier.HOST_PINNED;

  private final ParameterStore store;
  private final AdamW optimizer;
  private final UnitCopies copies;
  private final Gradients path;
  private final Range shard;                           // the elements this optimizer updates (ZeRO 1: the rank's part)
  private final UnitGather gather;                     // ZeRO 1: completes a unit's new weights from the other ranks
  private final Tensor[] gradSlots = new Tensor[2];    // (largest unit) F32, pinned; SLOTS and SUMMED only
  private Tensor hostGrad;                             // (numel) F32, pinned: the streamed gradients or their sum, or null
  private final long[] gradTickets;                    // per unit: the copy of its streamed gradient into hostGrad, or -1
  private final boolean[] formed;                      // per unit: its gradient went to the host in this micro-batch
  private final int[] slotUnit = {-1, -1};             // SUMMED: the unit whose gradient each slot receives, or -1
  private final long[] slotTicket = {-1, -1};          // SUMMED: the copy into each slot
  private int nextSlot;                                // SUMMED: the slot the next unit's copy goes to
  private int micro;                                   // the micro-batch of the step whose gradients the hooks stream
  private boolean streamInBackward = true;             // the hooks copy each unit's gradient as the backward completes it
  private final Tensor[] weightSlots = new Tensor[2];  // (largest unit) compute dtype, pinned
  private long streamedByHooks;                        // gradient copies the backward's hooks enqueued
  private final AtomicLong waitNanos = new AtomicLong();  // the training thread's waits
  private ExecutorService worker;                      // runs deferred updates; made by the first defer()
  private Pending pending;                             // the update deferred (running or done), or null
  private boolean closed;

  /**
   * ZeRO 1: after this rank's part of a unit's new compute weights is in the device's weights (the compute stream
   * waiting for their copy), makes the unit's weights whole from every rank's part, a collective: every rank calls it
   * for the same units in the same order (the forward's reads, then the rest in the layout's order).
   */
  @FunctionalInterface
  public interface UnitGather {
    void gather(Unit unit);
  }

  /** How the gradients reach the host. */
  public enum Gradients {
    /**
     * After the backward, the step's gradient (on the device: {@link Role#GRAD}, or {@link Role#GRAD_ACC} with
     * accumulation) through two pinned slots of the largest unit's elements, the next unit's copy enqueued before this
     * unit is updated.
     */
    SLOTS,
    /**
     * One micro-batch a step: each unit's {@link Role#GRAD} copied as the backward completes it into a pinned F32 copy of
     * the whole gradient, which the update reads.
     */
    STREAMED,
    /**
     * With accumulation: each micro-batch's unit gradient ({@link Role#GRAD}) copied as the backward completes it, the
     * first micro-batch's into a pinned F32 accumulator of the whole gradient (the step's sum, GRAD_ACC on the host), a
     * later one's into one of two pinned slots of the largest unit and added there ({@code acc + g_i}, the device's own
     * order), the slot's add made before the slot takes the next unit's copy; the device holds one micro-batch's gradient
     * only, the update reads the accumulator.
     */
    SUMMED
  }

  /**
   * Moves {@code store}'s masters, and the moments {@code offload} does not put on DISK, into {@link #HOST_TIER} of the
   * CPU (the masters copied, the moments placed before they are allocated), leaving the compute weights and the
   * gradients where they are. Call before making the {@link AdamW} (which allocates the moments where they are placed).
   */
  public static void placeState(ParameterStore store, OffloadConfig offload) {
    placeState(store, offload, true);
  }

  /**
   * As {@link #placeState(ParameterStore, OffloadConfig)}; without {@code masters} the store's masters stay where they
   * are (ZeRO 1: the caller copies its shard's to the host and pages the rest away).
   */
  public static void placeState(ParameterStore store, OffloadConfig offload, boolean masters) {
    Objects.requireNonNull(store, "store");
    Objects.requireNonNull(offload, "offload");
    if (store.computeDtype() == DType.F32) {
      throw new IllegalArgumentException("the optimizer on the host needs a model computing in a low-precision dtype (BF16 "
          + "on CUDA), whose compute weights are apart from the masters; this one computes in F32");
    }
    for (Role r : offload.diskRoles()) {
      if (r != Role.ADAM_M && r != Role.ADAM_V) {
        throw new IllegalArgumentException("with the optimizer on the host only AdamW's moments can be on DISK, not " + r
            + ": the masters are in host memory, the compute weights and the gradients on the device");
      }
    }
    Placement host = new Placement(Device.CPU, HOST_TIER);
    if (masters) store.place(Role.MASTER, host);
    for (Role r : new Role[] {Role.ADAM_M, Role.ADAM_V}) if (!offload.onDisk(r)) store.place(r, host);
  }

  /**
   * The host optimizer of {@code store} (masters in host memory, {@link #placeState}; compute weights of a low-precision
   * dtype apart from them) with {@code optimizer} (over the same store; owned by the caller, who closes it after this)
   * and {@code copies} (owned by this, closed with it).
   */
  public HostOptimizer(ParameterStore store, AdamW optimizer, UnitCopies copies) {
    this(store, optimizer, copies, false);
  }

  /**
   * As {@link #HostOptimizer(ParameterStore, AdamW, UnitCopies)}; with {@code streamGradients}, {@link #hooks()} copies
   * each unit's micro-batch gradient ({@link Role#GRAD}) to the host as soon as the backward has completed it, while the
   * backward of the units before it runs, into a pinned buffer of the whole model's F32 gradient (instead of the two
   * gradient slots): what a step of one micro-batch uses ({@link #update} with {@link Role#GRAD}).
   */
  public HostOptimizer(ParameterStore store, AdamW optimizer, UnitCopies copies, boolean streamGradients) {
    this(store, optimizer, copies, streamGradients ? Gradients.STREAMED : Gradients.SLOTS);
  }

  /**
   * As {@link #HostOptimizer(ParameterStore, AdamW, UnitCopies)}, the gradients reaching the host by {@code path}: with
   * {@link Gradients#SUMMED} each micro-batch's ({@link #beginMicroBatch(int)} numbers them) is summed in a pinned
   * accumulator ({@link #collectGradient}); {@link #update} then reads that sum.
   */
  public HostOptimizer(ParameterStore store, AdamW optimizer, UnitCopies copies, Gradients path) {
    this(store, optimizer, copies, path, null);
  }

  /**
   * ZeRO 1 with the optimizer on the host: as {@link #HostOptimizer(ParameterStore, AdamW, UnitCopies, Gradients)} over
   * {@code optimizer}, a sharded AdamW holding its shard's masters and moments only: each unit's update covers its part
   * in the shard (the gradient of that part read, the new weights of that part copied back), and {@code gather} then
   * makes the unit's device weights whole from the other ranks' parts before the unit is read ({@link #hooks()}) or
   * the update is finished ({@link #finishPending()}). {@code gather} is null exactly when the optimizer is unsharded.
   */
  public HostOptimizer(ParameterStore store, AdamW optimizer, UnitCopies copies, Gradients path, UnitGather gather) {
    this.path = Objects.requireNonNull(path, "path");
    this.store = Objects.requireNonNull(store, "store");
    this.optimizer = Objects.requireNonNull(optimizer, "optimizer");
    Objects.requireNonNull(copies, "copies");
    try {
      if (!optimizer.holdsMasters() && !store.placement(Role.MASTER).device().isCpu()) {
        throw new IllegalArgumentException("the host optimizer needs the masters in host memory; they are on "
            + store.placement(Role.MASTER));
      }
      if (store.weightsAreMasters() || store.computeDtype() == DType.F32) {
        throw new IllegalArgumentException("the optimizer on the host needs compute weights of a low-precision dtype apart "
            + "from the masters; this store computes in " + store.computeDtype());
      }
      if ((optimizer.shard() != null) != (gather != null) || optimizer.shard() != null && !optimizer.holdsMasters()) {
        throw new IllegalArgumentException("the host optimizer needs an unsharded AdamW, or (ZeRO 1) one holding its shard's "
            + "masters with a gather of the units' weights; got shard " + optimizer.shard() + (gather == null ? " without" : " with")
            + " a gather");
      }
      long largest = 0;
      for (Unit u : store.units()) largest = Math.max(largest, u.elements().length());
      for (int i = 0; i < 2; i++) {
        if (path != Gradients.STREAMED) gradSlots[i] = Tensor.empty(DType.F32, Device.CPU, HOST_TIER, largest).detach();
        weightSlots[i] = Tensor.empty(store.computeDtype(), Device.CPU, HOST_TIER, largest).detach();
      }
      hostGrad = path != Gradients.SLOTS ? Tensor.empty(DType.F32, Device.CPU, HOST_TIER, store.numel()).detach() : null;
    } catch (RuntimeException e) {
      freeSlots();
      copies.close();
      throw e;
    }
    this.copies = copies;
    this.shard = optimizer.shard() == null ? store.all() : optimizer.shard();
    this.gather = gather;
    this.gradTickets = new long[store.units().size()];
    this.formed = new boolean[store.units().size()];
    java.util.Arrays.fill(gradTickets, -1);
  }

  /** How the gradients reach the host. */
  public Gradients gradients() {
    return path;
  }

  /**
   * Whether {@link #hooks()} copy each unit's gradient to the host as the backward completes it (default: yes, with
   * {@link Gradients#STREAMED} and {@link Gradients#SUMMED}). Off, those units go when {@link #beginMicroBatch(int)}
   * begins the next micro-batch or the gradient is collected; the bits are the same.
   */
  public void streamDuringBackward(boolean on) {
    streamInBackward = on;
  }

  /**
   * The hooks the model runs with: before a unit's weights are read, a deferred update's new weights of the unit are
   * waited for (before the backward's first read, the whole update); with {@code streamGradients}, after each unit's
   * backward, its gradient's copy to the host is enqueued behind it.
   */
  public BlockHooks hooks() {
    return new BlockHooks() {
      @Override
      public void beforeWeights(Unit unit, Pass pass) {
        if (pending == null) return;
        if (pass == Pass.BACKWARD) finishPending();  // the backward overwrites the gradients the update reads
        else awaitUnit(unit);
      }

      @Override
      public void afterGradients(Unit unit) {
        if (hostGrad == null || !streamInBackward) return;
        formGradient(unit);
        streamedByHooks++;
      }
    };
  }

  /**
   * A step's first micro-batch's backward is about to form new gradients: {@link #beginMicroBatch(int)} of 0.
   */
  public void beginMicroBatch() {
    beginMicroBatch(0);
  }

  /**
   * Micro-batch {@code i} of a step (0 the first) is about to form new gradients in {@link Role#GRAD}: finishes a
   * pending update (which reads the last step's), then makes sure nothing still reads the gradients the caller is about
   * to zero. With {@link Gradients#SUMMED} and {@code i > 0}, micro-batch {@code i - 1}'s gradient is completed into the
   * sum first (the units the hooks did not copy copied now, every copy awaited and added); otherwise the copies of the
   * last micro-batch are awaited and forgotten, so that {@link #update} uses only what this one streams.
   */
  public void beginMicroBatch(int i) {
    finishPending();
    if (hostGrad == null) return;
    if (path == Gradients.SUMMED && i > 0) {
      if (i != micro + 1) throw new IllegalStateException("micro-batch " + i + " begins after micro-batch " + micro);
      completeSum();
    } else {
      if (i != 0) throw new IllegalStateException("micro-batch " + i + ": with " + path + " gradients each step has one");
      drain(false);
    }
    micro = i;
    Arrays.fill(formed, false);
  }

  /**
   * After a step's last backward, with {@link Gradients#SUMMED} (or {@link Gradients#STREAMED} when {@code streamed}):
   * completes the step's gradient on the host (the units the hooks did not copy copied now, every copy awaited and
   * added) and returns it (F32, the whole layout; owned by this optimizer, do not close), which the caller may reduce
   * across replicas in place and take the norm of before {@link #update}; null when the gradient is not whole on the host
   * ({@link Gradients#SLOTS}, or STREAMED without {@code streamed}).
   */
  public Tensor collectGradient(boolean streamed) {
    checkOpen();
    if (path == Gradients.SLOTS || path == Gradients.STREAMED && !streamed) return null;
    completeSum();
    return hostGrad;
  }

  /** Every unit's gradient of the current micro-batch on the host, in the sum: copied, awaited and added. */
  private void completeSum() {
    for (Unit u : store.units()) if (!formed[u.index()]) formGradient(u);  // no hooks ran for it
    drain(true);
  }

  /**
   * Awaits every copy into the pinned buffer and into the slots, adding each slot into the sum ({@code add}) or
   * dropping it, and forgets them.
   */
  private void drain(boolean add) {
    for (int s = 0; s < 2; s++) {
      if (slotUnit[s] < 0) continue;
      if (add) addSlot(s);
      awaitCopy(slotTicket[s], true);  // after a failed step: still read the gradients
      slotUnit[s] = -1;
      slotTicket[s] = -1;
    }
    for (int i = 0; i < gradTickets.length; i++) {
      if (gradTickets[i] >= 0) awaitCopy(gradTickets[i], true);
      gradTickets[i] = -1;
    }
  }

  /** {@code u}'s micro-batch gradient to the host: into the pinned buffer (streamed, or the sum's first), else added. */
  private void formGradient(Unit u) {
    if (path == Gradients.SUMMED && micro > 0) {
      addGradient(u);
    } else {
      streamGradient(u);
    }
    formed[u.index()] = true;
  }

  /**
   * A later micro-batch's gradient of {@code u} into the next slot, whose last unit is added into the sum first (after
   * its copy has run: no slot is read before its copy filled it, nor overwritten before it was added).
   */
  private void addGradient(Unit u) {
    checkOpen();
    if (formed[u.index()]) throw new IllegalStateException(u.name() + "'s gradient is already in the sum of micro-batch " + micro);
    int s = nextSlot;
    nextSlot ^= 1;
    if (slotUnit[s] >= 0) addSlot(s);
    try (Tensor dst = gradSlots[s].slice(0, 0, u.elements().length()); Tensor src = store.slice(Role.GRAD, u.elements())) {
      slotTicket[s] = copies.toHost(dst, src);
      slotUnit[s] = u.index();
    }
  }

  /** Waits for slot {@code s}'s copy and adds it into its unit's part of the sum ({@code acc + g}); frees the slot. */
  private void addSlot(int s) {
    Unit u = store.units().get(slotUnit[s]);
    awaitCopy(slotTicket[s], true);
    awaitCopy(gradTickets[u.index()], true);  // the first micro-batch's copy into the sum (awaited already, normally)
    gradTickets[u.index()] = -1;
    try (Tensor acc = hostGrad.slice(0, u.elements().start(), u.elements().end());
        Tensor g = gradSlots[s].slice(0, 0, u.elements().length())) {
      dev.athanor.ops.Ops.add(acc, g, acc);
    }
    slotUnit[s] = -1;
    slotTicket[s] = -1;
  }

  /** Enqueues the copy of {@code u}'s gradient into the pinned buffer (after the last one of it has run). */
  private void streamGradient(Unit u) {
    checkOpen();
    finishPending();  // the pending update reads the pinned buffer
    if (gradTickets[u.index()] >= 0) awaitCopy(gradTickets[u.index()], true);  // an earlier micro-batch's, not used
    gradTickets[u.index()] = -1;
    try (Tensor dst = hostGrad.slice(0, u.elements().start(), u.elements().end());
        Tensor src = store.slice(Role.GRAD, u.elements())) {
      gradTickets[u.index()] = copies.toHost(dst, src);
    }
  }

  /**
   * Host bytes of the staging slots: two of the largest unit's F32 gradient (with streamed gradients, the whole
   * model's instead; summed, both) and two of its compute-dtype weights.
   */
  public long stagingBytes() {
    long b = hostGrad == null ? 0 : hostGrad.byteSize();
    for (Tensor[] slots : List.of(gradSlots, weightSlots)) for (Tensor t : slots) if (t != null) b += t.byteSize();
    return b;
  }

  /** Units' gradient copies enqueued by {@link #hooks()} during backward passes so far (not by {@link #update}). */
  public long gradientsStreamed() {
    return streamedByHooks;
  }

  /** Bytes copied to the host and back so far (gradients and weights). */
  public long bytesMoved() {
    return copies.bytesToHost() + copies.bytesToDevice();
  }

  /**
   * The bytes copied each way so far and the time the training thread waited for this optimizer's work (a deferred
   * update's units and copies, copies to complete); safe to call while a deferred update runs.
   */
  public HostTransfers transfers() {
    return new HostTransfers(copies.bytesToDevice(), copies.bytesToHost(), waitNanos.get());
  }

  /**
   * One optimizer update of every unit from the step's gradient in {@code gradRole} (on the device) times {@code
   * gradScale}, with the step count of the optimizer's last {@link AdamW#beginStep()}, made before it returns (a pending
   * update finished first). When it returns, every copy has run as far as the host is concerned (the slots are free)
   * and the device's compute stream waits for the new weights. A failure leaves the units updated so far updated (the
   * state is then inconsistent).
   */
  public void update(Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    finishPending();
    Pending p = begin(gradRole, lr, beta1, beta2, eps, weightDecay, gradScale, true);
    pending = p;
    p.run();  // on this thread
    finishPending();
  }

  /**
   * The same update as {@link #update}, deferred: a worker thread makes it unit by unit in the forward's order and this
   * returns at once. Each unit's new weights are awaited by the first read of them ({@link #hooks()}; the compute
   * stream waits for their copy), the whole update by {@link #finishPending()}. Until then the gradients in {@code
   * gradRole} must not change (the next micro-batch's {@link #beginMicroBatch()} finishes the update first), and
   * nothing else may use the optimizer. A failure of the update surfaces where a unit or the whole update is awaited.
   */
  public void defer(Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    checkOpen();
    if (pending != null) throw new IllegalStateException("an optimizer update on the host is already pending");
    Pending p = begin(gradRole, lr, beta1, beta2, eps, weightDecay, gradScale, false);
    if (worker == null) {
      worker = Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "athanor-host-adamw");
        t.setDaemon(true);
        return t;
      });
    }
    pending = p;
    try {
      worker.execute(p);
    } catch (RejectedExecutionException e) {
      pending = null;
      p.run();  // cannot happen while open; never leave the gradients' copies unawaited
      throw new IllegalStateException("the host optimizer's worker refused the update", e);
    }
  }

  /** Whether a deferred update is pending: not yet finished by {@link #finishPending()} (or failed). */
  public boolean updatePending() {
    return pending != null;
  }

  /**
   * Waits for the pending update (nothing when none is): every unit updated, its copies run as far as the host is
   * concerned, and the compute stream waiting for every unit's new weights. Throws the update's failure (then, and on
   * every later call, the state is inconsistent: the units before the failing one are updated).
   */
  public void finishPending() {
    Pending p = pending;
    if (p == null) return;
    if (p.reported) {
      throw new IllegalStateException("the optimizer update on the host failed part-way: the masters, moments and weights "
          + "are inconsistent", p.failure);
    }
    long t0 = System.nanoTime();
    p.awaitEnd();
    waitNanos.addAndGet(System.nanoTime() - t0);
    if (p.failure != null) {
      p.reported = true;
      if (p.failure instanceof Error e) throw e;
      throw (RuntimeException) p.failure;  // the loop catches only these two
    }
    pending = null;
    for (int i = 0; i < p.weights.length; i++) {
      if (p.computeWaited[i]) continue;
      copies.computeWaits(p.weights[i]);
      p.computeWaited[i] = true;
      if (gather != null) gather.gather(store.units().get(i));  // in the layout's order on every rank
    }
  }

  /**
   * Before a pass reads {@code u}'s weights: waits until the pending update has enqueued the unit's new weights (the
   * worker goes in the forward's order), then makes the compute stream wait for their copy. Throws the update's
   * failure when it failed at or before the unit.
   */
  private void awaitUnit(Unit u) {
    Pending p = pending;
    int i = u.index();
    if (p.computeWaited[i]) return;
    long t0 = System.nanoTime();
    long ticket = p.awaitUnit(i);
    copies.computeWaits(ticket);
    p.computeWaited[i] = true;
    waitNanos.addAndGet(System.nanoTime() - t0);
    if (gather != null) gather.gather(u);  // the forward reads the units in the same order on every rank
  }

  /**
   * A new update: its copies ordered behind the compute stream's work so far (the backward that formed the gradients),
   * with the streamed gradients' copies taken over from the hooks (those no backward streamed enqueued now).
   */
  private Pending begin(Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale,
      boolean inline) {
    checkOpen();
    boolean streamed = hostGrad != null;
    if (path == Gradients.STREAMED && gradRole != Role.GRAD) {
      throw new IllegalArgumentException("streamed gradients are one micro-batch's (GRAD); the step's gradient is in "
          + gradRole);
    }
    long[] grads = null;
    if (path == Gradients.SUMMED) {
      completeSum();  // (nothing left when the caller collected it)
      grads = gradTickets.clone();  // all awaited: -1
    } else if (streamed) {
      for (Unit u : store.units()) if (!formed[u.index()]) formGradient(u);  // no hooks ran for it
      grads = gradTickets.clone();
      Arrays.fill(gradTickets, -1);
      Arrays.fill(formed, false);  // the next update streams its own
    }
    copies.afterCompute();
    return new Pending(gradRole, grads, inline, new float[] {lr, beta1, beta2, eps, weightDecay, gradScale});
  }

  /**
   * One update of every unit, in the forward's order: run by the worker for a deferred update, or by the training
   * thread for one made at once ({@code inline}: its waits for copies count as the training thread's).
   */
  private final class Pending implements Runnable {
    final Role gradRole;
    final long[] grads;                  // per unit: the streamed gradient's copy, or null without streaming
    final boolean inline;
    final float[] args;                  // lr, beta1, beta2, eps, weight decay, gradient scale
    final long[] weights;                // per unit: the copy of its new weights, -1 until enqueued
    final boolean[] computeWaited;       // per unit: the compute stream waits for that copy (training thread only)
    int ready;                           // units (in order) whose new weights are enqueued; guarded by this
    boolean ended;                       // the loop has returned, its copies awaited; guarded by this
    Throwable failure;                   // written before ended is set
    boolean reported;                    // the failure was thrown by finishPending (training thread only)
    volatile boolean cancelled;          // close(): stop before the next unit

    Pending(Role gradRole, long[] grads, boolean inline, float[] args) {
      this.gradRole = gradRole;
      this.grads = grads;
      this.inline = inline;
      this.args = args;
      int n = store.units().size();
      this.weights = new long[n];
      this.computeWaited = new boolean[n];
      Arrays.fill(weights, -1);
    }

    @Override
    public void run() {
      List<Unit> order = store.units();  // the layout's order: the forward's
      int n = order.size();
      long[] gradCopies = new long[n];  // without streaming: the copies into the two gradient slots
      Arrays.fill(gradCopies, -1);
      Throwable failed = null;
      try {
        if (grads == null && n > 0) gradCopies[0] = gradToHost(order.get(0), 0, gradRole);
        for (int i = 0; i < n && !cancelled; i++) {
          Unit u = order.get(i);
          Range mine = u.elements().intersect(shard);  // the unit's part this optimizer updates
          int len = Math.toIntExact(mine.length());
          // slot (i + 1) % 2 was last filled for unit i - 1, whose update has finished on the host
          if (grads == null && i + 1 < n) gradCopies[i + 1] = gradToHost(order.get(i + 1), (i + 1) % 2, gradRole);
          awaitCopy(grads != null ? grads[i] : gradCopies[i], inline);
          if (i >= 2) awaitCopy(weights[i - 2], inline);  // weight slot i % 2 was read by the copy of unit i - 2
          if (mine.isEmpty()) {  // ZeRO 1: another rank's unit
            synchronized (this) {
              ready = i + 1;
              notifyAll();
            }
            continue;
          }
          try (Tensor g = grads != null ? hostGrad.slice(0, mine.start(), mine.end())
                  : gradSlots[i % 2].slice(0, 0, len);
              Tensor w = weightSlots[i % 2].slice(0, 0, len); Tensor dst = store.slice(Role.WEIGHT, mine)) {
            zeroPadding(u, mine, w);
            optimizer.updateInto(mine, g, w, args[0], args[1], args[2], args[3], args[4], args[5]);
            long t = copies.queueToDevice(dst, w);
            synchronized (this) {
              weights[i] = t;
              ready = i + 1;
              notifyAll();
            }
          }
        }
      } catch (RuntimeException | Error e) {
        failed = e;
      } finally {
        for (int i = 0; i < n; i++) {  // no copy may still read or fill a slot (also after a failure)
          for (long t : new long[] {grads != null ? grads[i] : gradCopies[i], weights[i]}) {
            try {
              if (t >= 0) awaitCopy(t, inline);
            } catch (RuntimeException | Error e) {
              if (failed == null) failed = e;
              else if (failed != e) failed.addSuppressed(e);
            }
          }
        }
        synchronized (this) {
          failure = failed;
          ended = true;
          notifyAll();
        }
      }
    }

    /** Waits until unit {@code i}'s new weights are enqueued; returns their copy's ticket, or throws the failure. */
    synchronized long awaitUnit(int i) {
      boolean interrupted = false;
      try {
        while (ready <= i && !ended) {
          try {
            wait();
          } catch (InterruptedException e) {
            interrupted = true;
          }
        }
      } finally {
        if (interrupted) Thread.currentThread().interrupt();
      }
      if (ready > i) return weights[i];
      if (failure instanceof Error e) throw e;
      if (failure != null) throw (RuntimeException) failure;  // the loop catches only these two
      throw new IllegalStateException("the optimizer update on the host stopped before " + store.units().get(i).name()
          + ": the host optimizer was closed");
    }

    /** Waits until the loop has returned (uninterruptibly: its copies must not outlive it). */
    synchronized void awaitEnd() {
      boolean interrupted = false;
      while (!ended) {
        try {
          wait();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
      if (interrupted) Thread.currentThread().interrupt();
    }
  }

  /** Awaits a copy; with {@code timed} (on the training thread) the wait counts in {@link #transfers()}. */
  private void awaitCopy(long ticket, boolean timed) {
    if (ticket < 0) return;
    long t0 = timed ? System.nanoTime() : 0;
    copies.await(ticket);
    if (timed) waitNanos.addAndGet(System.nanoTime() - t0);
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("the host optimizer is closed");
  }

  /**
   * Zeros the elements of {@code w} ({@code mine} of unit {@code u}'s weights, element 0 at {@code mine}'s start) between
   * and after its parameters: the kernel writes the parameters only, and the slot held another unit's weights before.
   */
  private void zeroPadding(Unit u, Range mine, Tensor w) {
    long at = u.elements().start();
    for (int i = u.firstParam(); i <= u.endParam(); i++) {
      long end = i < u.endParam() ? store.range(i).start() : u.elements().end();
      Range gap = new Range(at, Math.max(at, end)).intersect(mine);
      if (!gap.isEmpty()) {
        try (Tensor z = w.slice(0, gap.start() - mine.start(), gap.end() - mine.start())) {
          dev.athanor.ops.Ops.fill(z, 0f);
        }
      }
      if (i < u.endParam()) at = store.range(i).end();
    }
  }

  /** Enqueues the copy of the step gradient of {@code u}'s part in the shard into gradient slot {@code slot} (-1: none). */
  private long gradToHost(Unit u, int slot, Role gradRole) {
    Range mine = u.elements().intersect(shard);
    if (mine.isEmpty()) return -1;
    try (Tensor dst = gradSlots[slot].slice(0, 0, mine.length()); Tensor src = store.slice(gradRole, mine)) {
      return copies.queueToHost(dst, src);
    }
  }

  private void freeSlots() {
    if (hostGrad != null) hostGrad.close();
    hostGrad = null;
    for (Tensor[] slots : List.of(gradSlots, weightSlots)) {
      for (int i = 0; i < slots.length; i++) {
        if (slots[i] != null) slots[i].close();
        slots[i] = null;
      }
    }
  }

  /**
   * Stops a pending update before its next unit (what it updated stays updated: {@link #finishPending()} first to keep
   * the state consistent), waits for the copies, closes them and frees the staging slots; idempotent.
   */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      if (pending != null) {
        pending.cancelled = true;
        pending.awaitEnd();
        pending = null;
      }
      if (worker != null) worker.shutdown();
    } finally {
      try {
        copies.close();
      } finally {
        freeSlots();
      }
    }
  }
}

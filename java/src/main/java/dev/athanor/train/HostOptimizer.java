package dev.athanor.train;

import dev.athanor.memory.Tier;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.UnitCopies;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Placement;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * AdamW on the host for a model that computes on a device (ZeRO-Offload's split): the compute weights ({@link
 * Role#WEIGHT}, e.g. BF16) and the gradients stay in the device's memory; the F32 masters and AdamW's moments live in
 * page-locked host memory ({@link Tier#HOST_PINNED}), the moments there or on DISK ({@link AdamW}'s streaming). One
 * {@link #update} runs unit by unit, in reverse layout order (the order the backward pass finishes them):
 * <ol>
 *   <li>the unit's step gradient goes to a host staging slot (F32, {@link UnitCopies#toHost}), the next unit's
 *       copy enqueued before this unit is updated, so it runs while the host computes;
 *   <li>the CPU AdamW kernel updates the unit's masters and moments ({@link AdamW#updateInto}) and writes the new
 *       weights, rounded to the compute dtype, into a host staging slot;
 *   <li>that slot goes to the unit's compute weights on the device ({@link UnitCopies#toDevice}), behind which the
 *       next computation on the device waits.
 * </ol>
 * Two gradient slots and two weight slots of the largest unit's elements, pinned, are what this adds to host memory
 * ({@link #stagingBytes}). With one micro-batch per step the gradients can instead stream to a pinned copy of the whole
 * model's gradient during the backward ({@link #hooks()}: each unit's copy enqueued as its backward completes it, so
 * it overlaps the backward of the units before it), and the update then waits only for the copies still running. A slot is written by the host only after the copy that last read it has been awaited, and
 * read only after the copy that filled it: with copies that run late (as on a device) the bits are those of copies
 * that run at once.
 *
 * <p>The clipping factor comes from the caller (the norm of the step's gradient, formed on the device before the
 * update). Same kernel on the same elements as {@link AdamW#update} over host buffers, so the masters, moments and
 * weights are bit-identical to the host's in-memory update of the same values; against the device's own AdamW kernel
 * they can differ in the last bits (the device compiler may contract multiply-adds).
 */
public final class HostOptimizer implements AutoCloseable {
  /** The host tier the masters and the moments in memory live in. */
  public static final Tier HOST_TIER = Tier.HOST_PINNED;

  private final ParameterStore store;
  private final AdamW optimizer;
  private final UnitCopies copies;
  private final Tensor[] gradSlots = new Tensor[2];    // (largest unit) F32, pinned; not with streamed gradients
  private Tensor hostGrad;                             // (numel) F32, pinned: the streamed gradients, or null
  private final long[] gradTickets;                    // per unit: the copy of its streamed gradient, or -1
  private final Tensor[] weightSlots = new Tensor[2];  // (largest unit) compute dtype, pinned
  private long streamedByHooks;                        // gradient copies the backward's hooks enqueued
  private boolean closed;

  /**
   * Moves {@code store}'s masters, and the moments {@code offload} does not put on DISK, into {@link #HOST_TIER} of the
   * CPU (the masters copied, the moments placed before they are allocated), leaving the compute weights and the
   * gradients where they are. Call before making the {@link AdamW} (which allocates the moments where they are placed).
   */
  public static void placeState(ParameterStore store, OffloadConfig offload) {
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
    store.place(Role.MASTER, host);
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
    this.store = Objects.requireNonNull(store, "store");
    this.optimizer = Objects.requireNonNull(optimizer, "optimizer");
    Objects.requireNonNull(copies, "copies");
    try {
      if (!store.placement(Role.MASTER).device().isCpu()) {
        throw new IllegalArgumentException("the host optimizer needs the masters in host memory; they are on "
            + store.placement(Role.MASTER));
      }
      if (store.weightsAreMasters() || store.computeDtype() == DType.F32) {
        throw new IllegalArgumentException("the optimizer on the host needs compute weights of a low-precision dtype apart "
            + "from the masters; this store computes in " + store.computeDtype());
      }
      if (optimizer.shard() != null) throw new IllegalArgumentException("the host optimizer needs an unsharded AdamW");
      long largest = 0;
      for (Unit u : store.units()) largest = Math.max(largest, u.elements().length());
      for (int i = 0; i < 2; i++) {
        if (!streamGradients) gradSlots[i] = Tensor.empty(DType.F32, Device.CPU, HOST_TIER, largest).detach();
        weightSlots[i] = Tensor.empty(store.computeDtype(), Device.CPU, HOST_TIER, largest).detach();
      }
      hostGrad = streamGradients ? Tensor.empty(DType.F32, Device.CPU, HOST_TIER, store.numel()).detach() : null;
    } catch (RuntimeException e) {
      freeSlots();
      copies.close();
      throw e;
    }
    this.copies = copies;
    this.gradTickets = new long[store.units().size()];
    java.util.Arrays.fill(gradTickets, -1);
  }

  /**
   * The hooks that stream the gradients ({@code streamGradients}): after each unit's backward, its gradient's copy to
   * the host is enqueued behind it. {@link dev.athanor.nn.BlockHooks#NONE} without streaming.
   */
  public dev.athanor.nn.BlockHooks hooks() {
    if (hostGrad == null) return dev.athanor.nn.BlockHooks.NONE;
    return new dev.athanor.nn.BlockHooks() {
      @Override
      public void afterGradients(Unit unit) {
        streamGradient(unit);
        streamedByHooks++;
      }
    };
  }

  /**
   * A micro-batch's backward is about to form new gradients: waits for the streamed copies of the last one (they read
   * the gradients the caller is about to zero) and forgets them, so that {@link #update} uses only what this
   * micro-batch streams (copying the rest itself). Nothing without streamed gradients.
   */
  public void beginMicroBatch() {
    if (hostGrad == null) return;
    for (int i = 0; i < gradTickets.length; i++) {
      if (gradTickets[i] >= 0) copies.await(gradTickets[i]);
      gradTickets[i] = -1;
    }
  }

  /** Enqueues the copy of {@code u}'s gradient into the pinned buffer (after the last one of it has run). */
  private void streamGradient(Unit u) {
    if (closed) throw new IllegalStateException("the host optimizer is closed");
    if (gradTickets[u.index()] >= 0) copies.await(gradTickets[u.index()]);  // an earlier micro-batch's, not used
    gradTickets[u.index()] = -1;
    try (Tensor dst = hostGrad.slice(0, u.elements().start(), u.elements().end());
        Tensor src = store.slice(Role.GRAD, u.elements())) {
      gradTickets[u.index()] = copies.toHost(dst, src);
    }
  }

  /**
   * Host bytes of the staging slots: two of the largest unit's F32 gradient (with streamed gradients, the whole
   * model's instead) and two of its compute-dtype weights.
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
   * One optimizer update of every unit from the step's gradient in {@code gradRole} (on the device) times {@code
   * gradScale}, with the step count of the optimizer's last {@link AdamW#beginStep()}. When it returns, every copy
   * has run as far as the host is concerned (the slots are free) and the device's compute stream waits for the new
   * weights. A failure leaves the units updated so far updated (the state is then inconsistent).
   */
  public void update(Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    if (closed) throw new IllegalStateException("the host optimizer is closed");
    List<Unit> order = new ArrayList<>(store.units());
    java.util.Collections.reverse(order);
    int n = order.size();
    boolean streamed = hostGrad != null;
    if (streamed && gradRole != Role.GRAD) {
      throw new IllegalArgumentException("streamed gradients are one micro-batch's (GRAD); the step's gradient is in "
          + gradRole);
    }
    long[] grads = new long[n], weights = new long[n];
    java.util.Arrays.fill(grads, -1);
    java.util.Arrays.fill(weights, -1);
    try {
      if (streamed) {
        for (int i = 0; i < n; i++) {  // units whose backward streamed nothing (no hooks ran): copied now
          if (gradTickets[order.get(i).index()] < 0) streamGradient(order.get(i));
          grads[i] = gradTickets[order.get(i).index()];
        }
      } else if (n > 0) {
        grads[0] = gradToHost(order.get(0), 0, gradRole);
      }
      for (int i = 0; i < n; i++) {
        Unit u = order.get(i);
        int len = Math.toIntExact(u.elements().length());
        // slot (i + 1) % 2 was last filled for unit i - 1, whose update has finished on the host
        if (!streamed && i + 1 < n) grads[i + 1] = gradToHost(order.get(i + 1), (i + 1) % 2, gradRole);
        copies.await(grads[i]);
        if (i >= 2) copies.await(weights[i - 2]);  // weight slot i % 2 was read by the copy of unit i - 2
        try (Tensor g = streamed ? hostGrad.slice(0, u.elements().start(), u.elements().end())
                : gradSlots[i % 2].slice(0, 0, len);
            Tensor w = weightSlots[i % 2].slice(0, 0, len); Tensor dst = store.slice(Role.WEIGHT, u.elements())) {
          zeroPadding(u, w);
          optimizer.updateInto(u.elements(), g, w, lr, beta1, beta2, eps, weightDecay, gradScale);
          weights[i] = copies.toDevice(dst, w);
        }
      }
    } finally {
      for (int i = 0; i < n; i++) {  // no copy may still read or fill a slot (also after a failure)
        if (grads[i] >= 0) copies.await(grads[i]);
        if (weights[i] >= 0) copies.await(weights[i]);
      }
      java.util.Arrays.fill(gradTickets, -1);
    }
  }

  /**
   * Zeros the elements of {@code w} (unit {@code u}'s weights, element 0 at the unit's start) between and after its
   * parameters: the kernel writes the parameters only, and the slot held another unit's weights before.
   */
  private void zeroPadding(Unit u, Tensor w) {
    long at = u.elements().start();
    for (int i = u.firstParam(); i <= u.endParam(); i++) {
      long end = i < u.endParam() ? store.range(i).start() : u.elements().end();
      if (end > at) {
        try (Tensor gap = w.slice(0, at - u.elements().start(), end - u.elements().start())) {
          dev.athanor.ops.Ops.fill(gap, 0f);
        }
      }
      if (i < u.endParam()) at = store.range(i).end();
    }
  }

  private long gradToHost(Unit u, int slot, Role gradRole) {
    try (Tensor dst = gradSlots[slot].slice(0, 0, u.elements().length()); Tensor src = store.slice(gradRole, u.elements())) {
      return copies.toHost(dst, src);
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

  /** Waits for the copies, closes them and frees the staging slots; idempotent. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      copies.close();
    } finally {
      freeSlots();
    }
  }
}

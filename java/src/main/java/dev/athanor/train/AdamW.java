package dev.athanor.train;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * AdamW over a {@link ParameterStore}: FP32 moments in the store's {@link Role#ADAM_M} and {@link Role#ADAM_V}
 * buffers, decoupled weight decay only on tensors of rank >= 2 (never biases or norm weights), and the
 * compute-dtype weights refreshed by the same fused kernel. Updates work on a {@link Range} of the flat layout (a
 * shard, an offload unit, or everything): the update is elementwise, so updating a range in pieces gives the
 * same bits as updating it at once.
 */
public final class AdamW {
  private final ParameterStore store;
  private long step;

  /** AdamW over {@code store}, allocating its moments (zeros) when the store has none. */
  public AdamW(ParameterStore store) {
    this.store = store;
    store.allocate(Role.ADAM_M);
    store.allocate(Role.ADAM_V);
  }

  /** Steps taken so far (the next update uses step() + 1 for bias correction). */
  public long step() {
    return step;
  }

  /** The first moments, in parameter order (views owned by the store: do not close). */
  public List<Tensor> firstMoments() {
    return views(Role.ADAM_M);
  }

  /** The second moments, in parameter order (views owned by the store: do not close). */
  public List<Tensor> secondMoments() {
    return views(Role.ADAM_V);
  }

  private List<Tensor> views(Role role) {
    List<Tensor> l = new ArrayList<>(store.size());
    for (int i = 0; i < store.size(); i++) l.add(store.view(role, i));
    return l;
  }

  /** Sets the step count (when restoring a saved optimizer state). */
  public void setStep(long s) {
    if (s < 0) throw new IllegalArgumentException("step must be >= 0, got " + s);
    step = s;
  }

  /** Counts one optimizer step; {@link #update} calls of that step then use it for bias correction. */
  public void beginStep() {
    step++;
  }

  /**
   * Updates the parameters in {@code range} from the gradients in {@code gradRole} times {@code gradScale} (e.g.
   * the clipping factor), with the step count of the last {@link #beginStep()}.
   */
  public void update(Range range, Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay,
      float gradScale) {
    if (step == 0) throw new IllegalStateException("update() before beginStep()");
    boolean lowp = !store.weightsAreMasters() && store.computeDtype() != DType.F32;
    for (ParameterStore.Param p : store.list()) {
      Range r = p.range().intersect(range);
      if (r.isEmpty()) continue;
      float wd = p.spec().decay() ? weightDecay : 0f;
      try (Tensor master = store.slice(Role.MASTER, r); Tensor grad = store.slice(gradRole, r);
          Tensor m = store.slice(Role.ADAM_M, r); Tensor v = store.slice(Role.ADAM_V, r);
          Tensor weight = lowp ? store.slice(Role.WEIGHT, r) : null) {
        Ops.adamw(master, grad, m, v, weight, lr, beta1, beta2, eps, wd, gradScale, step);
      }
    }
    if (!lowp) store.syncWeights(range);  // F32 weights kept apart from the masters (nothing when they are one buffer)
  }

  /** One whole update ({@link #beginStep()} then {@link #update} over everything) from {@link Role#GRAD}. */
  public void update(float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    beginStep();
    update(store.all(), Role.GRAD, lr, beta1, beta2, eps, weightDecay, gradScale);
  }
}

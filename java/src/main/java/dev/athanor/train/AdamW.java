package dev.athanor.train;

import dev.athanor.nn.Parameters;
import dev.athanor.ops.Ops;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * AdamW over a model's {@link Parameters}: FP32 moments per parameter on the parameters' device, one
 * fused kernel call per tensor, decoupled weight decay only on tensors of rank >= 2 (never biases or norm
 * weights), and the compute-dtype copies refreshed by the same call.
 */
public final class AdamW implements AutoCloseable {
  private final Parameters params;
  private final List<Tensor> m = new ArrayList<>(), v = new ArrayList<>();
  private long step;

  public AdamW(Parameters params) {
    this.params = params;
    try {
      for (Parameters.Param p : params.list()) {
        m.add(Tensor.zeros(DType.F32, params.device(), p.spec().shape()).detach());
        v.add(Tensor.zeros(DType.F32, params.device(), p.spec().shape()).detach());
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  /** Steps taken so far (the next update uses step() + 1 for bias correction). */
  public long step() {
    return step;
  }

  /** The first moments, in parameter order (owned: do not close). */
  public List<Tensor> firstMoments() {
    return List.copyOf(m);
  }

  /** The second moments, in parameter order (owned: do not close). */
  public List<Tensor> secondMoments() {
    return List.copyOf(v);
  }

  /** Sets the step count (when restoring a saved optimizer state). */
  public void setStep(long s) {
    if (s < 0) throw new IllegalArgumentException("step must be >= 0, got " + s);
    step = s;
  }

  /**
   * One update of every parameter from its gradient times {@code gradScale} (e.g. the clipping factor).
   */
  public void update(float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    step++;
    List<Parameters.Param> list = params.list();
    for (int i = 0; i < list.size(); i++) {
      Parameters.Param p = list.get(i);
      Tensor lowp = p.compute() == p.master() ? null : p.compute();
      float wd = p.spec().decay() ? weightDecay : 0f;
      Ops.adamw(p.master(), p.grad(), m.get(i), v.get(i), lowp, lr, beta1, beta2, eps, wd, gradScale, step);
    }
  }

  @Override
  public void close() {
    for (Tensor t : m) t.close();
    for (Tensor t : v) t.close();
    m.clear();
    v.clear();
  }
}

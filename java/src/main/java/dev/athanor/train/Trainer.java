package dev.athanor.train;

import dev.athanor.io.data.DataLoader;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import java.util.Objects;

/**
 * The training loop's step: {@code accum} micro-batches of forward + backward (gradients averaged),
 * global-norm clipping, the scheduled learning rate and one AdamW update. The caller drives the loop
 * (progress, logging, checkpoints) and owns the model and the data loader.
 */
public final class Trainer implements AutoCloseable {
  private final Transformer model;
  private final TrainConfig cfg;
  private final DataLoader data;
  private final AdamW optimizer;
  private long step;
  private DataLoader.State stateBeforeStep;  // the loader's state when the current/last step began
  private boolean stepFailed;                // the last step threw before its update began
  private boolean updateFailed;              // the last step threw during its update (state inconsistent)

  public Trainer(Transformer model, TrainConfig cfg, DataLoader data) {
    this.model = Objects.requireNonNull(model, "model");
    this.cfg = Objects.requireNonNull(cfg, "cfg");
    this.data = Objects.requireNonNull(data, "data");
    if (cfg.seq() > model.config().maxSeqLen()) {
      throw new IllegalArgumentException("seq " + cfg.seq() + " exceeds the model's context " + model.config().maxSeqLen());
    }
    this.optimizer = new AdamW(model.parameters());
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
    model.parameters().zeroGrad();
    double lossSum = 0;
    long tokens = 0;
    for (int i = 0; i < cfg.accum(); i++) {
      DataLoader.Batch b = data.next();
      float loss = model.forward(b.inputs(), b.targets(), b.batch(), b.seq());
      if (!Float.isFinite(loss)) throw new NonFiniteException(step, "the loss", loss);
      model.backward(1f / cfg.accum());
      lossSum += loss;
      tokens += (long) b.batch() * b.seq();
    }
    float norm = Ops.globalNorm(model.parameters().grads());
    if (!Float.isFinite(norm)) throw new NonFiniteException(step, "the gradient norm", norm);
    float clip = cfg.gradClip() > 0 ? (float) Math.min(1.0, cfg.gradClip() / (norm + 1e-6)) : 1f;
    float lr = cfg.lrAt(step);
    updateFailed = true;
    optimizer.update(lr, cfg.beta1(), cfg.beta2(), cfg.eps(), cfg.weightDecay(), clip);
    updateFailed = false;
    stepFailed = false;
    StepResult r = new StepResult(step, (float) (lossSum / cfg.accum()), lr, norm, tokens, (System.nanoTime() - t0) / 1e9);
    step++;
    return r;
  }

  /**
   * The step index and data-loader state that match the current parameters and optimizer state: after a
   * completed step, the next step and the loader as it is; after a step that failed before its update, that
   * step again and the loader as it was when the step began. Empty when a step failed mid-update.
   */
  public java.util.Optional<Position> consistentState() {
    if (updateFailed) return java.util.Optional.empty();
    return java.util.Optional.of(stepFailed ? new Position(step, stateBeforeStep) : new Position(step, data.state()));
  }

  /** Where training stands: the next step to run and the data loader's state before it. */
  public record Position(long nextStep, DataLoader.State loader) {}

  /** Continues from {@code p} (after the parameters and the optimizer were restored). */
  public void restore(Position p) {
    data.restore(p.loader());
    step = p.nextStep();
    stepFailed = false;
    updateFailed = false;
  }

  @Override
  public void close() {
    optimizer.close();
  }
}

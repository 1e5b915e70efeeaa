package dev.athanor.train;

/**
 * Hyperparameters of a training run.
 *
 * @param steps optimizer steps
 * @param batch sequences per micro-batch (B)
 * @param seq tokens per sequence (T)
 * @param accum micro-batches per optimizer step (gradient accumulation)
 * @param lr peak learning rate
 * @param minLr final learning rate of the cosine schedule
 * @param warmup linear warmup steps
 * @param schedule constant or cosine
 * @param weightDecay decoupled weight decay, applied to tensors of rank >= 2 only
 * @param beta1 AdamW first-moment decay
 * @param beta2 AdamW second-moment decay
 * @param eps AdamW epsilon
 * @param gradClip clip the global gradient norm to this value (0: no clipping)
 * @param shuffle draw windows in a seeded random order instead of reading the stream sequentially
 * @param seed seeds initialization and shuffling
 */
public record TrainConfig(int steps, int batch, int seq, int accum, float lr, float minLr, int warmup, Schedule schedule,
    float weightDecay, float beta1, float beta2, float eps, float gradClip, boolean shuffle, long seed) {

  public TrainConfig {
    if (steps <= 0) throw new IllegalArgumentException("steps must be > 0, got " + steps);
    if (batch <= 0) throw new IllegalArgumentException("batch must be > 0, got " + batch);
    if (seq <= 0) throw new IllegalArgumentException("seq must be > 0, got " + seq);
    if (accum <= 0) throw new IllegalArgumentException("accum must be > 0, got " + accum);
    if ((long) batch * seq > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("batch " + batch + " x seq " + seq + " = " + (long) batch * seq
          + " tokens per micro-batch exceeds " + Integer.MAX_VALUE + "; use a smaller batch or seq");
    }
    if (!(lr >= 0) || !Float.isFinite(lr)) throw new IllegalArgumentException("lr must be finite and >= 0, got " + lr);
    if (!(minLr >= 0) || minLr > lr) throw new IllegalArgumentException("min-lr must be in [0, lr=" + lr + "], got " + minLr);
    if (warmup < 0) throw new IllegalArgumentException("warmup must be >= 0, got " + warmup);
    if (schedule == null) throw new IllegalArgumentException("schedule is null");
    if (!(weightDecay >= 0) || !Float.isFinite(weightDecay)) {
      throw new IllegalArgumentException("weight-decay must be finite and >= 0, got " + weightDecay);
    }
    if (!(beta1 >= 0 && beta1 < 1)) throw new IllegalArgumentException("beta1 must be in [0, 1), got " + beta1);
    if (!(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("beta2 must be in [0, 1), got " + beta2);
    if (!(eps > 0) || !Float.isFinite(eps)) throw new IllegalArgumentException("eps must be finite and > 0, got " + eps);
    if (!(gradClip >= 0) || !Float.isFinite(gradClip)) {
      throw new IllegalArgumentException("grad-clip must be finite and >= 0 (0 = off), got " + gradClip);
    }
  }

  /** Defaults in the style of GPT-2 pretraining: lr 6e-4 cosine to 6e-5, warmup 10% of the steps (at most 700), wd 0.1, betas (0.9, 0.95), clip 1. */
  public static TrainConfig defaults(int steps, int batch, int seq) {
    return new TrainConfig(steps, batch, seq, 1, 6e-4f, 6e-5f, Math.min(700, steps / 10), Schedule.COSINE, 0.1f, 0.9f,
        0.95f, 1e-8f, 1f, false, 1337L);
  }

  /** Tokens consumed by one optimizer step. */
  public long tokensPerStep() {
    return (long) batch * seq * accum;
  }

  /** The learning rate of 0-based step {@code step}. */
  public float lrAt(long step) {
    if (warmup > 0 && step < warmup) return lr * (step + 1) / warmup;
    if (schedule == Schedule.CONSTANT) return lr;
    double progress = (double) (step - warmup) / Math.max(1, steps - warmup);
    progress = Math.min(1.0, Math.max(0.0, progress));
    return (float) (minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress)));
  }

  public TrainConfig withSteps(int s) {
    return new TrainConfig(s, batch, seq, accum, lr, minLr, warmup, schedule, weightDecay, beta1, beta2, eps, gradClip,
        shuffle, seed);
  }
}

package dev.athanor.train;

/**
 * What one optimizer step did.
 *
 * @param step the 0-based step index
 * @param loss mean training loss over the step's micro-batches
 * @param lr the learning rate used
 * @param gradNorm the global gradient norm before clipping
 * @param tokens tokens processed
 * @param seconds wall time of the step
 */
public record StepResult(long step, float loss, float lr, float gradNorm, long tokens, double seconds) {
  /** Tokens per second of this step. */
  public double tokensPerSecond() {
    return seconds > 0 ? tokens / seconds : 0;
  }

  /**
   * One JSON object (no newline): step, loss, lr, grad_norm, tokens, tokens_per_s, step_ms. Standard JSON: a NaN or
   * infinite value is written as {@code null}.
   */
  public String toJson() {
    return "{\"step\":" + step + ",\"loss\":" + number(loss) + ",\"lr\":" + number(lr) + ",\"grad_norm\":"
        + number(gradNorm) + ",\"tokens\":" + tokens + ",\"tokens_per_s\":" + Math.round(tokensPerSecond())
        + ",\"step_ms\":" + (Double.isFinite(seconds) ? Double.toString(Math.round(seconds * 1e4) / 10.0) : "null") + "}";
  }

  private static String number(float v) {
    return Float.isFinite(v) ? Float.toString(v) : "null";
  }
}

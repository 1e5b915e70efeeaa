package dev.athanor.train;

/** A training step produced a non-finite loss or gradient norm; the update was not applied. */
public final class NonFiniteException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final long step;

  public NonFiniteException(long step, String what, float value) {
    super("step " + step + ": " + what + " is " + value + " (the update was not applied)");
    this.step = step;
  }

  /** The 0-based step that failed. */
  public long step() {
    return step;
  }
}

package dev.athanor.infer;

/** Receives generated tokens as they are produced (streaming). */
@FunctionalInterface
public interface TokenListener {
  /** Token {@code token} was produced for sequence {@code sequence} (the index of its prompt). */
  void onToken(int sequence, int token);
}

package dev.athanor.infer;

import dev.athanor.runtime.AthanorException;

/**
 * A model computed a logit (or a loss) that is NaN or infinite: its weights hold NaN or infinity, or the computation
 * overflowed. Nothing sampled or scored from such logits means anything, so inference stops at the first one.
 */
public final class NonFiniteLogitsException extends AthanorException {
  private static final long serialVersionUID = 1L;
  private final int sequence;
  private final int position;

  /**
   * @param what what is not finite, e.g. "the logit of token 17" or "the loss"
   * @param sequence the sequence of the batch (0-based)
   * @param position the token position in that sequence (0-based) whose output it is
   * @param value the non-finite value
   */
  public NonFiniteLogitsException(String what, int sequence, int position, float value) {
    super(what + " is " + value + " for sequence " + sequence + " at token position " + position + ": the model's "
        + "weights hold NaN or infinity, or its computation overflowed (check the weights; a lower-precision compute "
        + "type overflows sooner)");
    this.sequence = sequence;
    this.position = position;
  }

  /** The sequence of the batch (0-based). */
  public int sequence() {
    return sequence;
  }

  /** The token position (0-based) in that sequence. */
  public int position() {
    return position;
  }
}

package dev.athanor.dist.pipeline;

import java.util.ArrayList;
import java.util.List;

/**
 * The 1F1B schedule of one stage (as Megatron-LM's non-interleaved schedule): {@code min(stages - 1 - stage, M)}
 * warm-up forwards, then one forward and one backward in turn, then the remaining backwards; backwards run in
 * micro-batch order on every stage. Each step says what it exchanges with the neighbouring stages, so that every send
 * meets its receive: a stage's forward output and the next stage's input gradient cross in one {@link Op#exchange}.
 */
public final class OneFOneB {
  private OneFOneB() {}

  /** What a schedule step does. */
  public enum Kind {
    /** receive micro-batch {@code micro}'s input from the previous stage. */
    RECV_INPUT,
    /** run the forward of {@code micro}. */
    FORWARD,
    /** send the output of {@code micro} to the next stage. */
    SEND_OUTPUT,
    /** send the output of {@code micro} to the next stage and receive the gradient of {@code other} from it. */
    SEND_OUTPUT_RECV_GRAD,
    /** receive the gradient of micro-batch {@code micro}'s output from the next stage. */
    RECV_GRAD,
    /** run the backward of {@code micro}. */
    BACKWARD,
    /** send the gradient of {@code micro}'s input to the previous stage. */
    SEND_GRAD,
    /** send the gradient of {@code micro}'s input to the previous stage and receive the input of {@code other} from it. */
    SEND_GRAD_RECV_INPUT
  }

  /** One step; {@code other} is the micro-batch received in an exchange, else -1. */
  public record Op(Kind kind, int micro, int other) {
    Op(Kind kind, int micro) {
      this(kind, micro, -1);
    }

    /** Whether this step both sends and receives. */
    public boolean exchange() {
      return kind == Kind.SEND_OUTPUT_RECV_GRAD || kind == Kind.SEND_GRAD_RECV_INPUT;
    }
  }

  /** The steps of stage {@code stage} of {@code stages} over {@code micro} micro-batches. */
  public static List<Op> schedule(int stage, int stages, int micro) {
    if (stages < 1 || stage < 0 || stage >= stages) throw new IllegalArgumentException("stage " + stage + " of " + stages);
    if (micro < 1) throw new IllegalArgumentException("micro-batches " + micro + " must be >= 1");
    boolean first = stage == 0, last = stage == stages - 1;
    int warm = Math.min(stages - 1 - stage, micro), steady = micro - warm;
    List<Op> ops = new ArrayList<>();
    for (int i = 0; i < warm; i++) {
      if (!first) ops.add(new Op(Kind.RECV_INPUT, i));
      ops.add(new Op(Kind.FORWARD, i));
      if (!last) ops.add(new Op(Kind.SEND_OUTPUT, i));
    }
    if (steady > 0 && !first) ops.add(new Op(Kind.RECV_INPUT, warm));
    for (int k = 0; k < steady; k++) {
      int f = warm + k;
      ops.add(new Op(Kind.FORWARD, f));
      if (!last) ops.add(new Op(Kind.SEND_OUTPUT_RECV_GRAD, f, k));
      ops.add(new Op(Kind.BACKWARD, k));
      if (!first) ops.add(k == steady - 1 ? new Op(Kind.SEND_GRAD, k) : new Op(Kind.SEND_GRAD_RECV_INPUT, k, f + 1));
    }
    for (int k = steady; k < micro; k++) {
      if (!last) ops.add(new Op(Kind.RECV_GRAD, k));
      ops.add(new Op(Kind.BACKWARD, k));
      if (!first) ops.add(new Op(Kind.SEND_GRAD, k));
    }
    return ops;
  }
}

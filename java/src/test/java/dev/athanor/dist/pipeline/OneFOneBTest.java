package dev.athanor.dist.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.dist.pipeline.OneFOneB.Kind;
import dev.athanor.dist.pipeline.OneFOneB.Op;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The 1F1B schedule: every stage runs each micro-batch's forward once and its backward once, backwards in order,
 * with {@code stages - 1 - stage} warm-up forwards; and when the stages' communication is replayed in lock step,
 * every send meets its receive (the schedule cannot deadlock with blocking calls).
 */
class OneFOneBTest {
  @Test
  void twoStagesThreeMicroBatches() {
    assertEquals(List.of(new Op(Kind.FORWARD, 0), new Op(Kind.SEND_OUTPUT, 0), new Op(Kind.FORWARD, 1),
        new Op(Kind.SEND_OUTPUT_RECV_GRAD, 1, 0), new Op(Kind.BACKWARD, 0), new Op(Kind.FORWARD, 2),
        new Op(Kind.SEND_OUTPUT_RECV_GRAD, 2, 1), new Op(Kind.BACKWARD, 1), new Op(Kind.RECV_GRAD, 2),
        new Op(Kind.BACKWARD, 2)), OneFOneB.schedule(0, 2, 3));
    assertEquals(List.of(new Op(Kind.RECV_INPUT, 0), new Op(Kind.FORWARD, 0), new Op(Kind.BACKWARD, 0),
        new Op(Kind.SEND_GRAD_RECV_INPUT, 0, 1), new Op(Kind.FORWARD, 1), new Op(Kind.BACKWARD, 1),
        new Op(Kind.SEND_GRAD_RECV_INPUT, 1, 2), new Op(Kind.FORWARD, 2), new Op(Kind.BACKWARD, 2),
        new Op(Kind.SEND_GRAD, 2)), OneFOneB.schedule(1, 2, 3));
  }

  @Test
  void everyMicroBatchOnceBackwardsInOrder() {
    for (int stages = 1; stages <= 5; stages++) {
      for (int m = stages; m <= stages + 4; m++) {
        for (int s = 0; s < stages; s++) {
          List<Integer> f = new ArrayList<>(), b = new ArrayList<>();
          int warm = -1;
          for (Op op : OneFOneB.schedule(s, stages, m)) {
            if (op.kind() == Kind.FORWARD) f.add(op.micro());
            if (op.kind() == Kind.BACKWARD) {
              if (warm < 0) warm = f.size() - 1;
              b.add(op.micro());
            }
          }
          List<Integer> all = java.util.stream.IntStream.range(0, m).boxed().toList();
          assertEquals(all, f, "forwards of stage " + s + " of " + stages + ", M " + m);
          assertEquals(all, b, "backwards of stage " + s + " of " + stages + ", M " + m);
          assertEquals(Math.min(stages - 1 - s, m), warm, "warm-up forwards of stage " + s + " of " + stages);
        }
      }
    }
  }

  /** Replays all stages with blocking semantics: each communication waits for its partner's matching one. */
  @Test
  void blockingCommunicationNeverDeadlocks() {
    for (int stages = 2; stages <= 5; stages++) {
      for (int m = stages; m <= stages + 3; m++) {
        List<List<Op>> comm = new ArrayList<>();
        for (int s = 0; s < stages; s++) {
          comm.add(OneFOneB.schedule(s, stages, m).stream().filter(o -> o.kind() != Kind.FORWARD && o.kind() != Kind.BACKWARD)
              .toList());
        }
        int[] at = new int[stages];
        boolean progress = true;
        while (progress) {
          progress = false;
          for (int s = 0; s + 1 < stages; s++) {
            if (at[s] >= comm.get(s).size() || at[s + 1] >= comm.get(s + 1).size()) continue;
            Op down = comm.get(s).get(at[s]), up = comm.get(s + 1).get(at[s + 1]);
            if (matches(down, up)) {
              at[s]++;
              at[s + 1]++;
              progress = true;
            }
          }
        }
        for (int s = 0; s < stages; s++) {
          assertEquals(comm.get(s).size(), at[s], "stage " + s + " of " + stages + ", M " + m + " stuck at " + at[s]);
        }
      }
    }
  }

  /** Whether stage s's next step {@code down} (towards s+1) and stage s+1's next step {@code up} are one transfer. */
  private static boolean matches(Op down, Op up) {
    return switch (down.kind()) {
      case SEND_OUTPUT -> up.kind() == Kind.RECV_INPUT && up.micro() == down.micro();
      case SEND_OUTPUT_RECV_GRAD -> up.kind() == Kind.SEND_GRAD_RECV_INPUT && up.other() == down.micro() && up.micro() == down.other();
      case RECV_GRAD -> up.kind() == Kind.SEND_GRAD && up.micro() == down.micro();
      default -> false;  // a step towards s-1: not this pair's
    };
  }

  @Test
  void layoutCutsBlocksEvenly() {
    var cfg = dev.athanor.nn.ModelConfig.gpt2(50, 16, 5, 16, 2);
    PipelineLayout l = new PipelineLayout(cfg, 3);
    assertEquals(new dev.athanor.nn.Stage(0, 2, true, false), l.stage(0));
    assertEquals(new dev.athanor.nn.Stage(2, 4, false, false), l.stage(1));
    assertEquals(new dev.athanor.nn.Stage(4, 5, false, true), l.stage(2));
    assertEquals(0.5, l.bubble(2));
    // the stages' ranges tile the whole layout, each as long as the stage's own layout (without a tied copy)
    long at = 0;
    for (int s = 0; s < 3; s++) {
      var r = l.wholeRange(s);
      assertEquals(at, r.start());
      try (var m = new dev.athanor.nn.Transformer(cfg, dev.athanor.runtime.Device.CPU, dev.athanor.tensor.DType.F32, l.stage(s))) {
        long own = m.parameters().numel();
        if (l.holdsTiedCopy(s)) {  // its copy of the token embedding sits after the prefix, padded to the alignment
          long wte = (long) cfg.vocabSize() * cfg.hidden(), align = dev.athanor.params.ParameterStore.ALIGN;
          own -= (wte + align - 1) / align * align;
        }
        assertEquals(own, r.length(), "stage " + s + ": " + r);
      }
      at = r.end();
    }
    assertEquals(at, l.wholeNumel());
    IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> new PipelineLayout(cfg, 6));
    assertTrue(e.getMessage().contains("6") && e.getMessage().contains("5 blocks"), e.getMessage());
  }
}

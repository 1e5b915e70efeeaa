package dev.athanor.dist;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Run by {@link MpiRunTest} under mpirun with a token shard of a 300-token vocabulary (argument): data parallel over
 * every process with the all-reduce overlapped with the backward ({@link OverlappedReduction}) against the same run
 * without overlap (ZeRO 0), for a GPT-2 (tied embeddings) and a Llama (untied head, GQA) tiny model, at accum 1 and 2:
 * ZeRO 0 with one unit per bucket and with the head and the last block in one, and ZeRO 1 with one unit per bucket; and
 * ZeRO 2 with each unit's fold on the communication thread ({@link UnitGradientFold} with overlap) against its fold on
 * the training thread, and at accum 1 also against plain dp (at accum 2 ZeRO 2 folds in one process's order, which
 * differs from plain dp's in the last bits). Every step's loss and gradient norm and the final weights must be equal bit
 * for bit, and every bucket (ZeRO 2: every unit of every micro-batch) must have been reduced by the communication thread.
 * Prints one line on rank 0 and exits 0, or throws.
 */
public final class OverlapMain {
  static final List<ModelConfig> MODELS = List.of(ModelConfig.gpt2(300, 64, 2, 64, 2),
      ModelConfig.llama(300, 64, 3, 32, 4, 2, 48, 10000f, false));

  /** One run: each step's loss and norm bits, the final masters, and the buckets the overlap reduced. */
  record Run(String steps, float[] weights, long buckets, int plan) {}

  public static void main(String[] args) throws Exception {
    Path data = Path.of(args[0]);
    int checks = 0;
    try (Communicator comm = Communicator.mpi(ReduceMode.DETERMINISTIC); TokenDataset d = TokenDataset.open(data)) {
      for (ModelConfig mc : MODELS) {
        for (int accum : new int[] {1, 2}) {
          String what = mc.family().hfModelType() + " accum " + accum + " dp " + comm.size();
          Run off = train(comm, d, mc, accum, 0, 0);
          check(off.buckets() == 0, what + ": without overlap no bucket is reduced");
          for (long[] v : new long[][] {{0, 1}, {0, -1}, {1, 1}}) {
            Run on = train(comm, d, mc, accum, (int) v[0], v[1]);
            String w = what + " ZeRO " + v[0] + (v[1] < 0 ? " the head with the last block" : " one unit") + " per bucket ("
                + on.plan() + " buckets)";
            check(on.plan() > 1, w + ": more than one bucket");
            check(on.buckets() == 4L * on.plan(), w + ": " + on.buckets() + " buckets reduced in 4 steps");
            check(off.steps().equals(on.steps()), w + ": losses and norms differ from overlap off:\n" + off.steps() + "\n" + on.steps());
            check(Arrays.equals(off.weights(), on.weights()), w + ": final weights differ from overlap off");
            checks++;
          }
          // ZeRO 2: each unit's fold of each micro-batch on the communication thread, against on the training thread
          Run foldOff = train(comm, d, mc, accum, 2, 0), foldOn = train(comm, d, mc, accum, 2, 1);
          String w = what + " ZeRO 2 (" + foldOn.plan() + " units)";
          check(foldOff.buckets() == 0, w + ": without overlap no unit is folded on the communication thread");
          check(foldOn.buckets() == 4L * accum * foldOn.plan(), w + ": " + foldOn.buckets() + " unit folds in 4 steps");
          check(foldOff.steps().equals(foldOn.steps()), w + ": losses and norms differ from overlap off:\n" + foldOff.steps()
              + "\n" + foldOn.steps());
          check(Arrays.equals(foldOff.weights(), foldOn.weights()), w + ": final weights differ from overlap off");
          if (accum == 1) {
            check(off.steps().equals(foldOn.steps()), w + ": losses and norms differ from plain dp");
            check(Arrays.equals(off.weights(), foldOn.weights()), w + ": final weights differ from plain dp");
          }
          checks++;
        }
      }
      comm.barrier();
      if (comm.rank() == 0) System.out.println("overlap: dp " + comm.size() + ", " + checks + " runs equal to overlap off bit for bit");
    }
  }

  /**
   * {@code zero}: 0, 1 or 2 (each unit's gradient folded into the shards, {@link UnitGradientFold}; {@link Run#plan} the
   * units, {@link Run#buckets} the unit folds on the communication thread). {@code bucketBytes}: 0 no overlap, -1 a cap
   * that puts the head and the last block in one bucket (ZeRO 0 and 1).
   */
  static Run train(Communicator comm, TokenDataset d, ModelConfig mc, int accum, int zero, long bucketBytes) {
    TrainConfig tc = new TrainConfig(4, 2, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    StringBuilder b = new StringBuilder();
    try (Transformer m = Transformer.create(mc, Device.CPU)) {
      m.initialize(8);
      DataLoader loader = new DataLoader(d, 2, 16, true, 5);
      long buckets;
      int plan;
      List<dev.athanor.params.Unit> us = m.parameters().units();
      long cap = bucketBytes >= 0 ? bucketBytes  // -1: the head and the last block fit in one bucket, nothing more
          : 4 * (us.get(us.size() - 1).elements().length() + us.get(us.size() - 2).elements().length());
      try (UnitGradientFold fold = zero == 2 ? UnitGradientFold.attach(m, comm, cap > 0) : null;
          Trainer t = fold != null ? new Trainer(m, tc, loader, fold)
              : zero == 1 ? new Trainer(m, tc, loader, DataParallel.optimizerShard(m.parameters(), comm)) : new Trainer(m, tc, loader)) {
        DataParallel dp = DataParallel.attach(t, comm, cap);
        check((dp.overlap() != null) == (cap > 0 && fold == null), "overlap attached: " + dp.overlap());
        check(fold == null || fold.overlaps() == (cap > 0), "ZeRO 2's fold overlapped: " + (fold != null && fold.overlaps()));
        while (!t.done()) {
          StepResult r = t.step();
          b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
        }
        buckets = fold != null ? fold.stats().buckets() : dp.overlap() == null ? 0 : dp.overlap().stats().buckets();
        plan = fold != null ? m.parameters().units().size() : dp.overlap() == null ? 0 : dp.overlap().buckets().buckets().size();
      }
      return new Run(b.toString(), m.parameters().flat(Role.MASTER).toFloatArray(), buckets, plan);
    }
  }

  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }
}

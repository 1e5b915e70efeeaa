package dev.athanor.dist;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.Set;

/**
 * Run by {@link MpiRunTest} under mpirun with a token shard of a 300-token vocabulary and a scratch directory
 * (arguments): ZeRO 3 over every process with each next unit's gather read ahead and each unit's gradient fold on the
 * communication thread ({@link ShardedWeights} with overlap) against the same run gathering each unit when it is about
 * to run and folding on the training thread, for a GPT-2 (tied embeddings) and a
 * Llama (untied head) tiny model ({@link OverlapMain#MODELS}), at accum 1 and 2, with the shard in memory and with its
 * masters, gradient and moments on DISK (chunks of a hundred elements: the gathers go piece by piece). Every step's loss
 * and gradient norm and the final weights must be equal bit for bit, and every gather but each micro-batch's first must
 * have been read ahead (2 (L + 1) per micro-batch for L blocks), none of them for a unit that did not run next, and
 * every unit's fold of every micro-batch must have run on the communication thread (the shard's gradient in memory, or
 * on DISK piece by piece). Prints
 * one line on rank 0 and exits 0, or throws.
 */
public final class ZeroReadAheadMain {
  /**
   * One run: each step's loss and norm bits, the final masters (gathered), the gathers read ahead and those missed, and
   * the unit folds on the communication thread.
   */
  record Run(String steps, float[] weights, long ahead, long missed, long folds) {}

  public static void main(String[] args) throws Exception {
    Path data = Path.of(args[0]), scratch = Path.of(args[1]);
    int checks = 0;
    try (Communicator comm = Communicator.mpi(ReduceMode.DETERMINISTIC); TokenDataset d = TokenDataset.open(data)) {
      for (ModelConfig mc : OverlapMain.MODELS) {
        for (int accum : new int[] {1, 2}) {
          for (boolean disk : new boolean[] {false, true}) {
            String what = mc.family().hfModelType() + " accum " + accum + " dp " + comm.size() + (disk ? " shard on DISK" : "");
            Path dir = scratch.resolve("rank-" + comm.rank()).resolve(mc.family().hfModelType() + "-" + accum);
            Run off = train(comm, d, mc, accum, disk ? dir.resolve("off") : null, false);
            Run on = train(comm, d, mc, accum, disk ? dir.resolve("on") : null, true);
            long want = 4L * accum * 2 * (mc.layers() + 1);
            check(off.ahead() == 0 && off.folds() == 0, what + ": overlap off read " + off.ahead() + " ahead, folded "
                + off.folds() + " on the communication thread");
            long units = mc.layers() + 2;  // the embeddings, each block, the head (tied or not: its final norm)
            check(on.folds() == 4L * accum * units, what + ": " + on.folds() + " unit folds on the communication thread, "
                + "expected " + 4L * accum * units + " in 4 steps");
            check(on.ahead() == want && on.missed() == 0, what + ": " + on.ahead() + " gathers read ahead (" + on.missed()
                + " missed), expected " + want + " in 4 steps");
            check(off.steps().equals(on.steps()), what + ": losses and norms differ from overlap off:\n" + off.steps()
                + "\n" + on.steps());
            check(Arrays.equals(off.weights(), on.weights()), what + ": final weights differ from overlap off");
            checks++;
          }
        }
      }
      comm.barrier();
      if (comm.rank() == 0) {
        System.out.println("zero 3 overlap: dp " + comm.size() + ", " + checks + " runs equal to overlap off bit for bit");
      }
    }
  }

  static Run train(Communicator comm, TokenDataset d, ModelConfig mc, int accum, Path disk, boolean readAhead) {
    TrainConfig tc = new TrainConfig(4, 2, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    OffloadConfig oc = disk == null ? OffloadConfig.NONE
        : new OffloadConfig(EnumSet.of(Role.MASTER, Role.GRAD, Role.ADAM_M, Role.ADAM_V), disk, 400, true, Set.of());
    StringBuilder b = new StringBuilder();
    try (Transformer m = Transformer.create(mc, Device.CPU)) {
      m.initialize(8);
      DataLoader loader = new DataLoader(d, 2, 16, true, 5);
      long ahead, missed, folds;
      try (ShardedWeights z = ShardedWeights.attach(m, comm, oc, readAhead);
          Trainer t = new Trainer(m, tc, loader, z, oc)) {
        DataParallel.attach(t, comm);
        check(z.readsAhead() == readAhead, "read-ahead " + z.readsAhead());
        while (!t.done()) {
          StepResult r = t.step();
          b.append(Float.floatToIntBits(r.loss())).append('/').append(Float.floatToIntBits(r.gradNorm())).append(' ');
          check(z.windowBytes() == 0, "no window held between steps: " + z.windowBytes());
        }
        ahead = z.readAheads();
        missed = z.readAheadsMissed();
        folds = z.stats().buckets();
        z.unshard();
      }
      return new Run(b.toString(), m.parameters().flat(Role.MASTER).toFloatArray(), ahead, missed, folds);
    }
  }

  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }
}

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
 * (arguments): ZeRO 3 over every process with each next unit's gather read ahead on the communication thread ({@link
 * ShardedWeights}) against the same run gathering each unit when it is about to run, for a GPT-2 (tied embeddings) and a
 * Llama (untied head) tiny model ({@link OverlapMain#MODELS}), at accum 1 and 2, with the shard in memory and with its
 * masters, gradient and moments on DISK (chunks of a hundred elements: the gathers go piece by piece). Every step's loss
 * and gradient norm and the final weights must be equal bit for bit, and every gather but each micro-batch's first must
 * have been read ahead (2 (L + 1) per micro-batch for L blocks), none of them for a unit that did not run next. Prints
 * one line on rank 0 and exits 0, or throws.
 */
public final class ZeroReadAheadMain {
  /** One run: each step's loss and norm bits, the final masters (gathered), the gathers read ahead and those missed. */
  record Run(String steps, float[] weights, long ahead, long missed) {}

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
            check(off.ahead() == 0, what + ": read-ahead off read " + off.ahead() + " ahead");
            check(on.ahead() == want && on.missed() == 0, what + ": " + on.ahead() + " gathers read ahead (" + on.missed()
                + " missed), expected " + want + " in 4 steps");
            check(off.steps().equals(on.steps()), what + ": losses and norms differ from read-ahead off:\n" + off.steps()
                + "\n" + on.steps());
            check(Arrays.equals(off.weights(), on.weights()), what + ": final weights differ from read-ahead off");
            checks++;
          }
        }
      }
      comm.barrier();
      if (comm.rank() == 0) {
        System.out.println("zero 3 read-ahead: dp " + comm.size() + ", " + checks + " runs equal to read-ahead off bit for bit");
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
      long ahead, missed;
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
        z.unshard();
      }
      return new Run(b.toString(), m.parameters().flat(Role.MASTER).toFloatArray(), ahead, missed);
    }
  }

  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }
}

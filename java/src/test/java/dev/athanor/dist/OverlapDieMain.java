package dev.athanor.dist;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;

/**
 * Run by {@link MpiRunTest} under mpirun with a token shard (argument): data parallel with the all-reduce overlapped
 * with the backward, one unit per bucket; after step 0, the last rank kills itself with SIGKILL in the middle of step
 * 1's backward (when its last block's gradient is complete, after the head's bucket started), while the others keep
 * training (their communication thread waits for it). The job must end with an error naming the lost rank, not hang.
 *
 * <p>With a second argument {@code zero3}: ZeRO 3 with read-ahead ({@link ShardedWeights}) instead; the last rank kills
 * itself in step 1's forward right after the first block's gather, when the second block's gather has been started on
 * the communication thread of every rank, so the others' communication threads wait in that gather.
 *
 * <p>With {@code zero2}: ZeRO 2 with each unit's fold on the communication thread ({@link UnitGradientFold} with
 * overlap); the last rank kills itself as in the first case (step 1, its last block's gradient complete, after the
 * head's fold was handed over), so the others' communication threads wait in a fold.
 *
 * <p>With {@code zero3fold}: ZeRO 3 with overlap, the last rank killing itself as in the first case, when on every rank
 * the head's fold and the next block's gather read ahead were handed to the communication thread, so the others' wait
 * in one of them.
 */
public final class OverlapDieMain {
  public static void main(String[] args) throws Exception {
    TrainConfig tc = new TrainConfig(3, 2, 16, 1, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    try (Communicator comm = Communicator.mpi(ReduceMode.DETERMINISTIC); TokenDataset d = TokenDataset.open(Path.of(args[0]));
        Transformer m = Transformer.create(ModelConfig.gpt2(300, 64, 2, 64, 2), Device.CPU)) {
      m.initialize(8);
      boolean zero3 = args.length > 1 && args[1].startsWith("zero3"), zero2 = args.length > 1 && args[1].equals("zero2");
      boolean zero3Fold = args.length > 1 && args[1].equals("zero3fold");
      try (ShardedWeights z = zero3 ? ShardedWeights.attach(m, comm) : null;
          UnitGradientFold f = zero2 ? UnitGradientFold.attach(m, comm, true) : null;
          Trainer t = zero3 ? new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), z)
              : zero2 ? new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5), f)
              : new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5))) {
        if (zero3 || zero2) {
          DataParallel.attach(t, comm);
        } else {
          DataParallel.attach(t, comm, 1);
        }
        int dying = comm.size() - 1;
        int lastBlock = m.parameters().units().size() - 2, firstBlock = 1;
        m.setHooks(BlockHooks.both(m.hooks(), new BlockHooks() {
          @Override
          public void beforeWeights(Unit unit, Pass pass) {
            if (zero3 && !zero3Fold && comm.rank() == dying && t.nextStep() == 1 && unit.index() == firstBlock) die();
          }

          @Override
          public void afterGradients(Unit unit) {
            if ((!zero3 || zero3Fold) && comm.rank() == dying && t.nextStep() == 1 && unit.index() == lastBlock) die();
          }
        }));
        t.step();
        System.out.println("rank " + comm.rank() + " of " + comm.size() + ": step 0 done");
        System.out.flush();
        t.step();
        System.out.println("rank " + comm.rank() + " of " + comm.size() + ": step 1 done without the lost rank");
      }
    }
  }

  private static void die() {
    try {
      new ProcessBuilder("kill", "-9", Long.toString(ProcessHandle.current().pid())).inheritIO().start().waitFor();
      Thread.sleep(60_000);  // not reached
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }
}

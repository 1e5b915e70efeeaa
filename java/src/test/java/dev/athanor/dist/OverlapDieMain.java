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
 */
public final class OverlapDieMain {
  public static void main(String[] args) throws Exception {
    TrainConfig tc = new TrainConfig(3, 2, 16, 1, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    try (Communicator comm = Communicator.mpi(ReduceMode.DETERMINISTIC); TokenDataset d = TokenDataset.open(Path.of(args[0]));
        Transformer m = Transformer.create(ModelConfig.gpt2(300, 64, 2, 64, 2), Device.CPU)) {
      m.initialize(8);
      try (Trainer t = new Trainer(m, tc, new DataLoader(d, 2, 16, true, 5))) {
        DataParallel.attach(t, comm, 1);
        int dying = comm.size() - 1;
        int lastBlock = m.parameters().units().size() - 2;
        m.setHooks(BlockHooks.both(m.hooks(), new BlockHooks() {
          @Override
          public void afterGradients(Unit unit) {
            if (comm.rank() == dying && t.nextStep() == 1 && unit.index() == lastBlock) die();
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

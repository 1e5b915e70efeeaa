package dev.athanor.dist;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.HostOffload;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.checkpoint.Checkpoint;
import dev.athanor.train.checkpoint.CheckpointManager;
import dev.athanor.train.checkpoint.RankGroup;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.HostOptimizer;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Run by {@link ZeroOffloadMpiTest} under mpirun with a token shard of a 300-token vocabulary and a scratch directory
 * (arguments): data parallel over every process (ZeRO 0) with the optimizer on the host ({@link HostOffload}) of a BF16
 * model on the CPU, for a GPT-2 and a Llama tiny model. At one micro-batch per rank: the gradients streamed to the host
 * during the backward and all-reduced there (pinned and with the moments on DISK, the updates deferred and made at
 * once), and through the slots after the all-reduce on the device; each equal bit for bit to data parallel without
 * the host optimizer and to one process with {@code accum} = the number of ranks and the host optimizer (the step's sum
 * on the host, and on the device). At two micro-batches per rank: the step's sum on the host (all-reduced there) and on
 * the device, equal to data parallel without the host optimizer. Every step's loss and norm and the final masters are
 * compared. With a third argument {@code zero1}: ZeRO 1 with the optimizer on the host instead ({@link #zeroOne}).
 * Prints one line on rank 0 and exits 0, or throws.
 */
public final class HostOffloadMain {
  static final List<ModelConfig> MODELS = List.of(ModelConfig.gpt2(300, 64, 2, 64, 2),
      ModelConfig.llama(300, 64, 3, 32, 4, 2, 48, 10000f, false));

  /** One run: each step's loss and norm bits, the final masters' bits, the final compute weights' bits (as F32). */
  record Run(String steps, int[] masters, int[] weights) {
    boolean same(Run o) {
      return steps.equals(o.steps) && Arrays.equals(masters, o.masters) && Arrays.equals(weights, o.weights);
    }
  }

  /** ZeRO 0 or ZeRO 1 (the optimizer's shard of the masters and moments only) with the optimizer on the host. */
  enum Zero { ZERO_0, ZERO_1 }

  public static void main(String[] args) throws Exception {
    Path data = Path.of(args[0]);
    int checks = 0;
    try (Communicator comm = Communicator.mpi(ReduceMode.DETERMINISTIC); TokenDataset d = TokenDataset.open(data)) {
      Path dir = Path.of(args[1]).resolve("rank-" + comm.rank());
      HostOffload disk = new HostOffload(new OffloadConfig(java.util.Set.of(Role.ADAM_M, Role.ADAM_V), dir, 4000));
      HostOffload slots = new HostOffload(OffloadConfig.NONE, false);
      int n = comm.size();
      if (args.length > 2 && args[2].equals("zero1")) {
        checks = zeroOne(comm, d, disk, slots, Path.of(args[1]));
        comm.barrier();
        if (comm.rank() == 0) System.out.println("host offload zero 1: dp " + n + ", " + checks + " runs equal bit for bit");
        return;
      }
      for (ModelConfig mc : MODELS) {
        String what = mc.family().hfModelType() + " dp " + n;
        Run memory = train(comm, d, mc, 1, null, null);
        Run oneSum = train(null, d, mc, n, HostOffload.PINNED.withSumOnHost(), HostOptimizer.Gradients.SUMMED);
        check(memory.same(oneSum), what + ": dp in memory against one process with accum " + n + " and the sum on the host");
        Run oneSlots = train(null, d, mc, n, HostOffload.PINNED, HostOptimizer.Gradients.SLOTS);
        check(memory.same(oneSlots), what + ": dp in memory against one process with accum " + n + " and the sum on the device");
        checks += 2;
        for (HostOffload h : List.of(HostOffload.PINNED, HostOffload.PINNED.updatedAtOnce(), disk, slots)) {
          HostOptimizer.Gradients path = h.streamGradients() ? HostOptimizer.Gradients.STREAMED : HostOptimizer.Gradients.SLOTS;
          Run r = train(comm, d, mc, 1, h, path);
          check(r.same(memory), what + " with " + h + ": differs from dp in memory\n" + memory.steps() + "\n" + r.steps());
          check(r.same(oneSum), what + " with " + h + ": differs from one process with accum " + n);
          checks++;
        }
        Run memory2 = train(comm, d, mc, 2, null, null);
        for (HostOffload h : List.of(HostOffload.PINNED.withSumOnHost(), disk.withSumOnHost().updatedAtOnce(), HostOffload.PINNED)) {
          HostOptimizer.Gradients path = h.sumOnHost() ? HostOptimizer.Gradients.SUMMED : HostOptimizer.Gradients.SLOTS;
          Run r = train(comm, d, mc, 2, h, path);
          check(r.same(memory2), what + " accum 2 with " + h + ": differs from dp in memory\n" + memory2.steps() + "\n"
              + r.steps());
          checks++;
        }
      }
      comm.barrier();
      if (comm.rank() == 0) {
        System.out.println("host offload: dp " + comm.size() + ", " + checks + " runs equal bit for bit");
      }
    }
  }

  /**
   * 4 steps of {@code mc} in BF16 on the CPU with {@code accum} micro-batches, data parallel over {@code comm} (null: one
   * process), the optimizer on the host by {@code host} (null: in memory), whose gradients must reach it by {@code path}.
   */
  static Run train(Communicator comm, TokenDataset d, ModelConfig mc, int accum, HostOffload host,
      HostOptimizer.Gradients path) {
    return train(comm, d, mc, accum, host, path, Zero.ZERO_0, null, -1);
  }

  /**
   * ZeRO 1 with the optimizer on the host under data parallel over {@code comm}: at one micro-batch per rank (streamed,
   * at once, moments on DISK, through the slots) and two (the sum on the host and on the device), each equal bit for
   * bit to ZeRO 0 with the optimizer on the host and to data parallel in memory (plain ZeRO 1 in memory needs F32
   * masters as the compute weights, so a BF16 model has none). Then a checkpoint written at step 2 by ZeRO 1 with the
   * host optimizer (format 3: each rank its shard of the masters and moments) resumes as one process with accum = the
   * number of ranks and the host optimizer (ZeRO 0), and again under ZeRO 1 with the host optimizer; both runs' steps
   * 2 and 3 and final state equal the dp run's.
   */
  static int zeroOne(Communicator comm, TokenDataset d, HostOffload disk, HostOffload slots, Path scratch) {
    int checks = 0, n = comm.size();
    for (ModelConfig mc : MODELS) {
      String what = mc.family().hfModelType() + " dp " + n + " ZeRO 1 on the host";
      Run memory = train(comm, d, mc, 1, null, null);
      Run zero0 = train(comm, d, mc, 1, HostOffload.PINNED, HostOptimizer.Gradients.STREAMED);
      check(zero0.same(memory), what + ": ZeRO 0 on the host differs from dp in memory");
      for (HostOffload h : List.of(HostOffload.PINNED, HostOffload.PINNED.updatedAtOnce(), disk, slots)) {
        HostOptimizer.Gradients path = h.streamGradients() ? HostOptimizer.Gradients.STREAMED : HostOptimizer.Gradients.SLOTS;
        Run r = train(comm, d, mc, 1, h, path, Zero.ZERO_1, null, -1);
        check(r.same(zero0), what + " with " + h + ": differs from ZeRO 0 on the host\n" + zero0.steps() + "\n" + r.steps());
        check(r.same(memory), what + " with " + h + ": differs from dp in memory");
        checks++;
      }
      Run memory2 = train(comm, d, mc, 2, null, null);
      Run zero0Sum = train(comm, d, mc, 2, HostOffload.PINNED.withSumOnHost(), HostOptimizer.Gradients.SUMMED);
      check(zero0Sum.same(memory2), what + " accum 2: ZeRO 0 on the host differs from dp in memory");
      for (HostOffload h : List.of(HostOffload.PINNED.withSumOnHost(), disk.withSumOnHost().updatedAtOnce(), HostOffload.PINNED)) {
        HostOptimizer.Gradients path = h.sumOnHost() ? HostOptimizer.Gradients.SUMMED : HostOptimizer.Gradients.SLOTS;
        Run r = train(comm, d, mc, 2, h, path, Zero.ZERO_1, null, -1);
        check(r.same(zero0Sum), what + " accum 2 with " + h + ": differs from ZeRO 0 on the host\n" + zero0Sum.steps()
            + "\n" + r.steps());
        check(r.same(memory2), what + " accum 2 with " + h + ": differs from dp in memory");
        checks++;
      }
      // a checkpoint of step 2 (the update before it deferred), resumed as one process
      Path ck = scratch.resolve("ck-" + mc.family().hfModelType());
      Run saved = train(comm, d, mc, 1, HostOffload.PINNED, HostOptimizer.Gradients.STREAMED, Zero.ZERO_1, ck, 2);
      check(saved.same(memory), what + " saving a checkpoint: differs from dp in memory");
      comm.barrier();
      if (comm.rank() == 0) {
        Path step2 = ck.resolve("step-00000002");
        Run resumed = train(null, d, mc, n, HostOffload.PINNED.withSumOnHost(), HostOptimizer.Gradients.SUMMED, Zero.ZERO_0,
            step2, -1);
        String tail = saved.steps().split(" ")[2] + " " + saved.steps().split(" ")[3] + " ";
        check(resumed.steps().equals(tail), what + ": resumed as one process, steps 2 and 3 " + resumed.steps() + " differ from "
            + tail);
        check(Arrays.equals(resumed.masters(), saved.masters()) && Arrays.equals(resumed.weights(), saved.weights()),
            what + ": resumed as one process, the final state differs");
      }
      comm.barrier();
      // and under dp 2 × ZeRO 1 on the host again (each rank cutting its shard of the masters and moments)
      Run again = train(comm, d, mc, 1, HostOffload.PINNED, HostOptimizer.Gradients.STREAMED, Zero.ZERO_1,
          ck.resolve("step-00000002"), -1);
      String tail = saved.steps().split(" ")[2] + " " + saved.steps().split(" ")[3] + " ";
      check(again.steps().equals(tail) && Arrays.equals(again.masters(), saved.masters())
          && Arrays.equals(again.weights(), saved.weights()), what + ": resumed under ZeRO 1 on the host, differs: "
          + again.steps() + " against " + tail);
      checks += 2;
    }
    return checks;
  }

  /**
   * As {@link #train(Communicator, TokenDataset, ModelConfig, int, HostOffload, HostOptimizer.Gradients)} under {@code
   * zero}; with {@code saveAt >= 0} a checkpoint of that step is written into {@code ck} (data parallel: each rank its
   * part, a {@link RankGroup}), with {@code saveAt < 0} and {@code ck} not null the run resumes from the checkpoint
   * {@code ck} (steps before it are not listed).
   */
  static Run train(Communicator comm, TokenDataset d, ModelConfig mc, int accum, HostOffload host,
      HostOptimizer.Gradients path, Zero zero, Path ck, int saveAt) {
    TrainConfig tc = new TrainConfig(4, 2, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 0.5f, true, 5);
    StringBuilder b = new StringBuilder();
    try (Transformer m = new Transformer(mc, Device.CPU, DType.BF16)) {
      m.initialize(8);
      DataLoader loader = new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
      Range shard = zero == Zero.ZERO_1 ? DataParallel.optimizerShard(m.parameters(), comm) : null;
      try (Trainer t = host == null ? new Trainer(m, tc, loader)
              : shard != null ? new Trainer(m, tc, loader, host, shard) : new Trainer(m, tc, loader, host);
          CheckpointManager saver = saveAt < 0 ? null : new CheckpointManager(ck, 5, false, CheckpointManager.newRunId(),
              new RankGroup(comm.rank(), comm.size(), comm.size(), zero == Zero.ZERO_1 ? 1 : 0, comm::barrier))) {
        if (host != null) check(t.hostOptimizer().gradients() == path, "gradients " + t.hostOptimizer().gradients());
        if (comm != null) DataParallel.attach(t, comm);
        if (saveAt < 0 && ck != null) Checkpoint.open(ck).restore(t);
        while (!t.done()) {
          StepResult r = t.step();
          b.append(Float.floatToRawIntBits(r.loss())).append('/').append(Float.floatToRawIntBits(r.gradNorm())).append(' ');
          if (t.nextStep() == saveAt) {
            saver.save(t);
            saver.awaitWrite();
          }
        }
        float[] masters;
        if (shard != null) {  // each rank's shard of the masters, gathered
          try (Tensor mine = t.optimizer().shardMasters(shard);
              Tensor all = Tensor.empty(DType.F32, Device.CPU, m.parameters().numel())) {
            comm.allGather(mine, all);
            masters = all.toFloatArray();
          }
        } else {
          masters = m.parameters().flat(Role.MASTER).toFloatArray();
        }
        return new Run(b.toString(), bits(masters), bits(m.parameters().flat(Role.WEIGHT).toFloatArray()));
      }
    }
  }

  private static int[] bits(float[] w) {
    int[] bits = new int[w.length];
    for (int i = 0; i < w.length; i++) bits[i] = Float.floatToRawIntBits(w[i]);
    return bits;
  }

  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }
}

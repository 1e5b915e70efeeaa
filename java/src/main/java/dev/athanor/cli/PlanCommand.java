package dev.athanor.cli;

import dev.athanor.memory.MemoryManager;
import dev.athanor.nn.ModelConfig;
import dev.athanor.offload.HostOffloadPlanner;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.runtime.Device;
import dev.athanor.train.TrainConfig;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code athanor plan}: where a training job's weights, gradients and AdamW moments would live under the memory budgets, without data and
 * without allocating the model: the table {@code train --offload auto} prints, and the plan as JSON for
 * {@code train --offload PLAN.json}.
 */
@Command(name = "plan", sortOptions = false, abbreviateSynopsis = true,
    description = "Plan where a training job's memory goes (weights, gradients and AdamW's moments in memory or on DISK; the blocks' "
        + "activations kept, recomputed or on DISK) from the model, the "
        + "batch and the budgets, without data or allocating the model: print the table, and with --json write the plan "
        + "that train --offload PLAN.json reads. Fails (exit 1) when no placement fits, naming the tier and the shortfall.",
    footer = {"%nExamples:",
        "  athanor plan --preset gpt2 --batch 8 --seq 1024 --mem-host 6g",
        "  athanor plan --preset gpt2 --mem-host 6g --json plan.json && athanor train --offload plan.json ..."})
final class PlanCommand implements Callable<Integer> {
  @Spec CommandSpec spec;
  @ParentCommand Main main;

  @ArgGroup(exclusive = false, validate = false, heading = "%nModel (one of --preset, --config, --model):%n", order = 1)
  Options.ModelOptions model = new Options.ModelOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nSteps and optimizer (batch, seq, accum, recompute count here):%n",
      order = 2)
  TrainCommand.Optimizer opt = new TrainCommand.Optimizer();

  @ArgGroup(exclusive = false, validate = false, heading = "%nRuntime:%n", order = 3)
  Options.RuntimeOptions runtime = new Options.RuntimeOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nParallel layout (issue 11; with --world):%n", order = 4)
  ParallelPlanOutput.Args parallel = new ParallelPlanOutput.Args();

  @Option(names = "--dp", paramLabel = "N", defaultValue = "1",
      description = "plan one process of a data-parallel run of N replicas with --zero 1 to 3 (its shards; --mem-host is "
          + "per process), as train --dp N --zero STAGE --offload auto plans it. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int dp = 1;

  @Option(names = "--zero", paramLabel = "STAGE", defaultValue = "0",
      description = "with --dp: the ZeRO stage (1 and 2: a rank's shard of AdamW's moments can go to DISK; 3: also its shard "
          + "of the gradient, then of the weights). Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 0, max = 3)
  int zero;

  @Option(names = "--offload", paramLabel = "auto", defaultValue = "auto",
      description = "auto: the plan follows the budgets (the only value; as train --offload auto). Default: ${DEFAULT-VALUE}")
  String offload = "auto";

  @Option(names = "--json", paramLabel = "FILE", description = "write the plan as JSON to FILE (- for stdout, then without the table)")
  String json;

  @Option(names = "--checkpoints", description = "count the host buffers checkpoints are written from (train with --checkpoint-dir)")
  boolean checkpoints;

  @Option(names = "--offload-chunk", paramLabel = "SIZE", converter = Options.Size.class,
      description = "bytes of one moment the optimizer streams from DISK at a time, through 3 host buffers per moment "
          + "(default: 4m)")
  Long chunk;

  @Override
  public Integer call() {
    Path file = json == null || json.equals("-") ? null : Path.of(json);
    if (file != null) OutputPaths.file(spec, "--json", file);
    Options.OffloadOptions.checkChunk(spec, chunk);
    long chunkBytes = chunk != null ? chunk : OffloadConfig.DEFAULT_CHUNK_BYTES;
    Device device = runtime.applyForPlanning();  // a plan for cuda can be made without a GPU
    ModelConfig mc = model.config(spec);
    TrainCommand t = new TrainCommand();
    t.opt = opt;
    TrainConfig tc = t.trainConfig(mc);
    if (tc.seq() > mc.maxSeqLen()) {
      throw Options.usage(spec, "--seq " + tc.seq() + " exceeds the model's context of " + mc.maxSeqLen() + " tokens");
    }
    if (!"auto".equalsIgnoreCase(offload)) {
      throw Options.usage(spec, "--offload " + offload + ": plan always plans from the budgets (auto); train takes off and "
          + "PLAN.json");
    }
    if (zero > 0 && dp < 2) throw Options.usage(spec, "--zero " + zero + " needs --dp 2 or more (it shards over the replicas)");
    if (parallel.world != null) return parallelPlan(mc, device, tc);
    OffloadPlanner.Job job = new OffloadPlanner.Job(mc, device, tc, opt.recompute, model.model != null, checkpoints, chunkBytes);
    boolean shard = zero > 0;  // one rank of a dp x ZeRO run: its footprint, and its shard's roles on DISK as needed
    // CUDA, ZeRO 1, not fitting the device: the optimizer on the host, each rank its shard of it (as train plans it)
    if (zero == 1 && device.isCuda() && OffloadPlanner.plan(job, MemoryManager.global()).plan() == null) {
      return hostPlan(mc, device, tc, job);
    }
    OffloadPlanner.Result r = shard ? OffloadPlanner.planShard(job, MemoryCheck.rankFootprint(job,
        new dev.athanor.dist.plan.ParallelPlanner.Layout(dp, 1, 1, zero, opt.recompute), dp), MemoryManager.global(), zero, dp)
        : OffloadPlanner.plan(job, MemoryManager.global());
    if (!shard && r.plan() == null && device.isCuda()) return hostPlan(mc, device, tc, job);
    if (r.plan() == null) throw MemoryCheck.offloadRefusal(job, r.failure());
    OffloadPlan p = r.plan();
    boolean jsonOnly = "-".equals(json);
    if (!jsonOnly) {
      header(mc, device, tc);
      if (shard) {
        main.out.printf("one of %d data-parallel processes with ZeRO %d (--mem-host per process)%n", dp, zero);
        PlanFile.printShard(p, zero, dp, main.out);
      } else {
        PlanFile.print(p, main.out);
      }
    }
    String text = shard ? PlanFile.json(p, PlanFile.shardTraffic(p, dp)) : PlanFile.json(p);
    if (jsonOnly) {
      main.out.print(text);
    } else if (file != null) {
      try {
        if (file.toAbsolutePath().getParent() != null) Files.createDirectories(file.toAbsolutePath().getParent());
        Files.writeString(file, text, StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
      }
      main.out.println("plan written to " + file + " (train with --offload " + file + ")");
    }
    main.out.flush();
    return 0;
  }

  /**
   * A CUDA job that does not fit its device: the optimizer on the host ({@link HostOffloadPlanner}), printed (exit 1
   * when even that does not fit). Its plan is not written as a file: train --offload auto makes it again.
   */
  private int hostPlan(ModelConfig mc, Device device, TrainConfig tc, OffloadPlanner.Job job) {
    if (json != null) {
      throw Options.usage(spec, "--json writes plans of the CPU's tiers; on " + device + " train with --offload auto, which "
          + "plans the optimizer on the host as this prints it");
    }
    HostOffloadPlanner.Result r = zero == 1 ? HostOffloadPlanner.plan(job, MemoryManager.global(), dp, true)
        : HostOffloadPlanner.plan(job, MemoryManager.global());
    if (r.plan() == null) throw MemoryCheck.hostOffloadRefusal(r.failure());
    header(mc, device, tc);
    for (String line : r.plan().describe()) main.out.println(line);
    main.out.flush();
    return 0;
  }

  /** The first line: the model, the batch and the device. */
  private void header(ModelConfig mc, Device device, TrainConfig tc) {
    main.out.printf("athanor plan: %s model, %d layers, hidden %d, %.1fM parameters, batch %d x seq %d, accum %d%s, on %s%n",
        mc.family().hfModelType(), mc.layers(), mc.hidden(), mc.parameterCount() / 1e6, tc.batch(), tc.seq(), tc.accum(),
        opt.recompute ? ", recompute" : "", device);
  }

  /** {@code --world N}: the parallel planner's choice for N processes (exit 1 when no layout fits). */
  private int parallelPlan(ModelConfig mc, Device device, TrainConfig tc) {
    if (json != null) throw Options.usage(spec, "--json writes offload plans; a parallel plan (--world) is printed only");
    int world = parallel.world;
    StringBuilder note = new StringBuilder();
    dev.athanor.dist.plan.ParallelPlanner.Hardware hw = ParallelPlanOutput.hardware(parallel, world, note);
    var job = new dev.athanor.dist.plan.ParallelPlanner.Job(mc, device, world, tc.batch(), tc.seq(), tc.accum(),
        ParallelPlanOutput.memoryPerRank(runtime.memHost, world), hw, parallel.dp, parallel.tp, parallel.pp, parallel.zero);
    var r = dev.athanor.dist.plan.ParallelPlanner.plan(job);
    ParallelPlanOutput.print(r, note.toString(), main.out);
    main.out.flush();
    return r.chosen() == null ? 1 : 0;
  }
}

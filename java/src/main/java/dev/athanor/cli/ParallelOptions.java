package dev.athanor.cli;

import dev.athanor.dist.Communicator;
import dev.athanor.dist.ParallelGrid;
import dev.athanor.dist.ReduceMode;
import dev.athanor.runtime.Device;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Locale;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * {@code train}'s parallel flags: {@code --dp N} data-parallel replicas and {@code --pp N} pipeline stages of processes
 * started by mpirun ({@code dp × pp} of them, in {@link ParallelGrid}'s order), {@code --micro-batches} of the pipeline,
 * {@code --reduce} how gradients are summed, {@code --zero} the ZeRO stage; {@code --tp} is refused until tensor
 * parallelism is built.
 */
final class ParallelOptions {
  @Option(names = "--dp", paramLabel = "N", defaultValue = "1",
      description = "data-parallel processes, started by mpirun (mpirun -np N ./athanor train ... --dp N); --batch stays per "
          + "process, the global batch is batch x accum x dp. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int dp;

  @Option(names = "--pp", paramLabel = "N", defaultValue = "1",
      description = "pipeline-parallel stages: the blocks cut into N contiguous stages (the first with the embeddings, the last "
          + "with the head), one process each, trained with the 1F1B schedule; N processes per data-parallel replica "
          + "(mpirun -np dp*pp). Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int pp;

  @Option(names = "--micro-batches", paramLabel = "M",
      description = "micro-batches per step with --pp (at least --pp); under --pp they replace --accum (which must stay 1): "
          + "the global batch is batch x micro-batches x dp, and the result equals one process with --accum M. "
          + "Default: --pp")
  @Options.Range(min = 1)
  Integer microBatches;

  @Option(names = "--tp", paramLabel = "N", defaultValue = "1",
      description = "tensor-parallel ranks (not built yet: only 1). Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int tp;

  @Option(names = "--reduce", paramLabel = "MODE", defaultValue = "deterministic", completionCandidates = ModeNames.class,
      description = "how --dp sums gradients: ${COMPLETION-CANDIDATES} (deterministic: in rank order by Athanor's kernels, "
          + "identical bits on every rank and equal to --accum in one process; fast: MPI's own sum). Default: ${DEFAULT-VALUE}")
  ReduceMode reduce;

  @Option(names = "--zero", paramLabel = "STAGE", defaultValue = "0",
      description = "ZeRO stage with --dp: 0 (every process keeps all of AdamW's moments) or 1 (each keeps and updates only its "
          + "1/dp of them, then the parameters are all-gathered; checkpoints gather every moment, so they resume with any --dp "
          + "and --zero; not yet with --offload). Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 0, max = 1)
  int zero;

  /** The environment variables through which MPI launchers tell a process how many were started. */
  static final String[] WORLD_SIZE_VARIABLES = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};

  /** The reduce modes in lower case, for help and completion. */
  static final class ModeNames implements Iterable<String> {
    @Override
    public Iterator<String> iterator() {
      return Arrays.stream(ReduceMode.values()).map(x -> x.name().toLowerCase(Locale.ROOT)).iterator();
    }
  }

  /** The micro-batches per step under --pp (default: one per stage). */
  int micro() {
    return microBatches != null ? microBatches : pp;
  }

  /** The grid of processes these flags ask for. */
  ParallelGrid grid() {
    return new ParallelGrid(dp, tp, pp);
  }

  /** The flags of the layout, as a user gives them, e.g. {@code "--dp 2 --pp 2"}. */
  String layout() {
    return pp == 1 && tp == 1 ? "--dp " + dp : "--dp " + dp + (tp > 1 ? " --tp " + tp : "") + " --pp " + pp;
  }

  /** The number of processes a launcher says it started, or 0 when none says so. */
  static int launchedProcesses() {
    for (String v : WORLD_SIZE_VARIABLES) {
      String s = System.getenv(v);
      if (s == null || s.isBlank()) continue;
      try {
        return Integer.parseInt(s.strip());
      } catch (NumberFormatException e) {
        return 0;
      }
    }
    return 0;
  }

  /**
   * Starts the run's communicator: null with {@code --dp 1} (one process), else MPI with exactly {@code dp} processes.
   * A launch that does not match (no mpirun, another process count, a CUDA device) is a usage error naming the flag and
   * both numbers; a missing MPI is a {@link dev.athanor.dist.CommunicatorException} saying what to install.
   */
  Communicator start(CommandSpec spec, Device device, boolean offload, int accum, boolean checkpoints) {
    if (tp > 1) throw Options.usage(spec, "--tp " + tp + ": tensor parallelism is not built yet; use --tp 1 (with --dp and --pp)");
    if (pp > 1) {
      if (accum > 1) {
        throw Options.usage(spec, "--accum " + accum + " with --pp " + pp + ": under --pp the micro-batches of a step are "
            + "--micro-batches; give --micro-batches " + (microBatches == null ? accum : microBatches) + " and --accum 1");
      }
      if (micro() < pp) {
        throw Options.usage(spec, "--micro-batches " + micro() + " is fewer than the --pp " + pp + " stages: the pipeline needs "
            + "at least one micro-batch per stage; give --micro-batches " + pp + " or more");
      }
      if (offload) throw Options.usage(spec, "--pp " + pp + " with --offload is not supported yet; use --offload off");
      if (checkpoints) {
        throw Options.usage(spec, "--pp " + pp + " with checkpoints (--checkpoint-every, --resume) is not supported yet: "
            + "per-rank checkpoint files are being built; train without --checkpoint-dir and --resume");
      }
    } else if (microBatches != null) {
      throw Options.usage(spec, "--micro-batches " + microBatches + " needs --pp 2 or more (without --pp, use --accum)");
    }
    if (zero == 1) {
      if (dp == 1) throw Options.usage(spec, "--zero 1 shards AdamW's moments over the --dp processes; with --dp 1 there is nothing to shard");
      if (offload) throw Options.usage(spec, "--zero 1 with --offload is not supported yet; use --offload off");
    }
    int launched = launchedProcesses(), world = dp * tp * pp;
    String layout = layout();
    if (world == 1) {
      if (launched > 1) {
        throw Options.usage(spec, "mpirun started " + launched + " processes but --dp is 1 (each would train alone and write "
            + "the same files): give --dp " + launched);
      }
      return null;
    }
    if (device.isCuda()) {
      throw Options.usage(spec, layout + " on " + device + ": parallel training on GPUs needs NCCL, which is not built yet; "
          + "use --device cpu");
    }
    if (launched == 0) {
      throw Options.usage(spec, layout + " needs " + world + " processes started by MPI: mpirun -np " + world
          + " ./athanor train ... " + layout);
    }
    Communicator c = Communicator.mpi(reduce);
    if (c.size() != world) {
      int size = c.size(), rank = c.rank();
      c.close();
      throw Options.usage(spec, layout + " but MPI started " + size + " process" + (size == 1 ? "" : "es") + " (this is rank "
          + rank + "); dp x tp x pp = " + dp + " x " + tp + " x " + pp + " = " + world + " must equal the processes: run "
          + "mpirun -np " + world + " with " + layout + (pp == 1 && tp == 1 ? ", or give --dp " + size : ""));
    }
    return c;
  }
}

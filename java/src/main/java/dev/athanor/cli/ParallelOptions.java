package dev.athanor.cli;

import dev.athanor.dist.Communicator;
import dev.athanor.dist.ReduceMode;
import dev.athanor.runtime.Device;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Locale;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/** {@code train}'s data-parallel flags: {@code --dp N} processes started by mpirun, {@code --reduce} how gradients are summed. */
final class ParallelOptions {
  @Option(names = "--dp", paramLabel = "N", defaultValue = "1",
      description = "data-parallel processes, started by mpirun (mpirun -np N ./athanor train ... --dp N); --batch stays per "
          + "process, the global batch is batch x accum x dp. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int dp;

  @Option(names = "--reduce", paramLabel = "MODE", defaultValue = "deterministic", completionCandidates = ModeNames.class,
      description = "how --dp sums gradients: ${COMPLETION-CANDIDATES} (deterministic: in rank order by Athanor's kernels, "
          + "identical bits on every rank and equal to --accum in one process; fast: MPI's own sum). Default: ${DEFAULT-VALUE}")
  ReduceMode reduce;

  @Option(names = "--zero", paramLabel = "STAGE", defaultValue = "0",
      description = "ZeRO stage with --dp: 0 (every process keeps all of AdamW's moments and the whole gradient), 1 (each keeps "
          + "and updates only its 1/dp of the moments, then the parameters are all-gathered), 2 (also the step's gradient: "
          + "each micro-batch's gradient is reduce-scattered to its owners and accumulated there only; equals one process "
          + "with --accum accum x dp bit for bit) or 3 (also the parameters: not built yet, refused). Checkpoints gather "
          + "every moment, so they resume with any --dp and --zero; not yet with --offload. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 0, max = 3)
  int zero;

  /** What the data-parallel line says about the ZeRO stage. */
  static String stageName(int zero) {
    return switch (zero) {
      case 1 -> ", ZeRO 1 (AdamW's moments sharded)";
      case 2 -> ", ZeRO 2 (AdamW's moments and the step's gradient sharded)";
      default -> "";
    };
  }

  /** The environment variables through which MPI launchers tell a process how many were started. */
  static final String[] WORLD_SIZE_VARIABLES = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};

  /** The reduce modes in lower case, for help and completion. */
  static final class ModeNames implements Iterable<String> {
    @Override
    public Iterator<String> iterator() {
      return Arrays.stream(ReduceMode.values()).map(x -> x.name().toLowerCase(Locale.ROOT)).iterator();
    }
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
  Communicator start(CommandSpec spec, Device device, boolean offload) {
    if (zero == 3) {
      throw Options.usage(spec, "--zero 3 (parameters sharded and gathered unit by unit) is not built yet; use --zero 2 "
          + "(moments and gradients sharded) or lower");
    }
    if (zero >= 1) {
      if (dp == 1) {
        throw Options.usage(spec, "--zero " + zero + " shards " + (zero == 1 ? "AdamW's moments" : "AdamW's moments and the gradient")
            + " over the --dp processes; with --dp 1 there is nothing to shard: give --dp 2 or more, or --zero 0");
      }
      if (offload) throw Options.usage(spec, "--zero " + zero + " with --offload is not supported yet; use --offload off");
    }
    int launched = launchedProcesses();
    if (dp == 1) {
      if (launched > 1) {
        throw Options.usage(spec, "mpirun started " + launched + " processes but --dp is 1 (each would train alone and write "
            + "the same files): give --dp " + launched);
      }
      return null;
    }
    if (device.isCuda()) {
      throw Options.usage(spec, "--dp " + dp + " on " + device + ": data parallel on GPUs needs NCCL, which is not built yet; "
          + "use --device cpu");
    }
    if (launched == 0) {
      throw Options.usage(spec, "--dp " + dp + " needs " + dp + " processes started by MPI: mpirun -np " + dp
          + " ./athanor train ... --dp " + dp);
    }
    Communicator c = Communicator.mpi(reduce);
    if (c.size() != dp) {
      int size = c.size(), rank = c.rank();
      c.close();
      throw Options.usage(spec, "--dp " + dp + " but MPI started " + size + " process" + (size == 1 ? "" : "es")
          + " (this is rank " + rank + "): run mpirun -np " + dp + " with --dp " + dp + ", or give --dp " + size);
    }
    return c;
  }
}

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
 * {@code train}'s parallel flags: {@code --dp N} data-parallel replicas, {@code --tp N} tensor-parallel ranks and {@code
 * --pp N} pipeline stages of processes started by mpirun ({@code dp × tp × pp} of them, in {@link
 * dev.athanor.dist.ParallelGrid}'s order), {@code --micro-batches} of the pipeline, {@code --reduce} how sums over
 * processes are formed, {@code --zero} the ZeRO stage, {@code --parallel auto} to let the planner choose; and {@link
 * OverlapOptions}'s {@code --overlap} and {@code --bucket-mb}.
 */
final class ParallelOptions extends OverlapOptions {
  @Option(names = "--dp", paramLabel = "N", defaultValue = "1",
      description = "data-parallel processes, started by mpirun (mpirun -np N ./athanor train ... --dp N); --batch stays per "
          + "process, the global batch is batch x accum x dp. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int dp;

  @Option(names = "--pp", paramLabel = "N", defaultValue = "1",
      description = "pipeline-parallel stages: the blocks cut into N contiguous stages (the first with the embeddings, the last "
          + "with the head), --tp processes each, trained with the 1F1B schedule; N x --tp processes per data-parallel "
          + "replica (mpirun -np dp*tp*pp). Checkpoints: each stage's ranks write its tensors (format 3), which resume with "
          + "any layout, and any checkpoint resumes under --pp (with --tp as well). Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int pp;

  @Option(names = "--micro-batches", paramLabel = "M",
      description = "micro-batches per step with --pp (at least --pp); under --pp they replace --accum (which must stay 1): "
          + "the global batch is batch x micro-batches x dp, and the result equals one process with --accum M. "
          + "Default: --pp")
  @Options.Range(min = 1)
  Integer microBatches;

  @Option(names = "--tp", paramLabel = "N", defaultValue = "1",
      description = "tensor-parallel processes, started by mpirun (mpirun -np N ./athanor train ... --tp N): each holds 1/N of "
          + "every block's attention heads and MLP width (Megatron style) and all see the same batches; N must divide the heads, "
          + "the key/value heads and the MLP width. Checkpoints: every rank writes its part (format 3: its slices of the split "
          + "tensors, its cut of the replicated ones), which resume with any layout; the model is gathered to rank 0 (with "
          + "--dp, by the tensor-parallel group of replica 0). With --dp and --pp: a dp x tp x pp grid, each pipeline "
          + "stage's blocks split over its tp ranks; not with --offload. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 1)
  int tp;

  @Option(names = "--sequence-parallel", paramLabel = "BOOL", arity = "0..1", fallbackValue = "true",
      description = "with --tp 2 or more: Megatron-style sequence parallelism, the residual stream and the norms cut along the "
          + "tokens (the batch x seq rows; the first ranks one more when --tp does not divide them) over the tensor-parallel "
          + "ranks, all-gathered before each column-parallel layer and reduce-scattered after each row-parallel one instead "
          + "of all-reduced: the residual streams and the blocks' norm activations take 1/tp of the memory; with --pp each "
          + "rank sends the next stage only its token rows of the hidden states (1/tp of the bytes). The same "
          + "results as --tp alone (bit for bit in deterministic mode when batch x seq / tp is a multiple of 32). Not with "
          + "--parallel auto. Default: false")
  boolean sequenceParallel;

  @Option(names = "--reduce", paramLabel = "MODE", defaultValue = "deterministic", completionCandidates = ModeNames.class,
      description = "how --dp sums gradients: ${COMPLETION-CANDIDATES} (deterministic: in rank order by Athanor's kernels, "
          + "identical bits on every rank and equal to --accum in one process; fast: MPI's own sum). Default: ${DEFAULT-VALUE}")
  ReduceMode reduce;

  @Option(names = "--collectives", paramLabel = "LIB", defaultValue = "auto",
      description = "what moves tensors between processes: auto (MPI on the CPU; NCCL for CUDA tensors, bootstrapped over "
          + "MPI), nccl (CUDA only: one GPU per process) or mpi (on CUDA: every collective staged through host memory, for "
          + "processes that share a GPU or machines without NCCL). On CUDA, --dp alone runs today (--zero 0, no --tp, --pp "
          + "or --offload). Default: ${DEFAULT-VALUE}")
  String collectives;

  @Option(names = "--zero", paramLabel = "STAGE", defaultValue = "0",
      description = "ZeRO stage with --dp: 0 (every process keeps all of AdamW's moments and the whole gradient), 1 (each keeps "
          + "and updates only its 1/dp of the moments, then the parameters are all-gathered), 2 (also the step's gradient: "
          + "each micro-batch's gradient is reduce-scattered to its owners and accumulated there only; equals one process "
          + "with --accum accum x dp bit for bit) or 3 (also the parameters: each keeps 1/dp of the weights and gathers a unit's "
          + "(embeddings, a block, the head) from the others just before it runs, and each unit's gradient goes to its owners "
          + "as soon as its backward is done; the same bits as 2; --dp alone, CPU). Checkpoints: each rank writes its part "
          + "(format 3), and any checkpoint resumes with any --dp and --zero. With --offload (--dp alone): each "
          + "rank's shard of AdamW's moments goes to DISK as far as its budget (--mem-host, per process) needs, in files of "
          + "its own (rank-N in --offload-dir); under 1 and 2 the weights and gradients stay in memory; under 3 its shard of the "
          + "gradient, then of the weights, follows (read a chunk at a time for each gather and fold); the same bits. "
          + "On CUDA, --dp N --offload (ZeRO 0 only) puts each rank's optimizer on its host as one GPU does. "
          + "With --dp x --tp: 1 and 2 shard each rank's tensor-parallel part over its dp group (with --pp as well); "
          + "checkpoints: each rank writes its shard of its part. Default: ${DEFAULT-VALUE}")
  @Options.Range(min = 0, max = 3)
  int zero;

  @Option(names = "--parallel", paramLabel = "MODE", defaultValue = "manual",
      description = "manual: --dp, --tp and --zero as given; auto: rank 0 plans them for the processes mpirun started (the "
          + "cost model of plan --world: the fastest layout that fits --mem-host per process, printed with its runners-up); "
          + "--dp, --tp or --zero given as well are kept, and --accum is then the micro-batches per step over all replicas. "
          + "Default: ${DEFAULT-VALUE}")
  String mode;

  /** With --parallel auto: the accumulation per replica the plan chose (the micro-batches per step / dp), else 0. */
  int autoAccum;

  /** Whether --parallel auto was asked for (a usage error for anything but auto or manual). */
  boolean auto(CommandSpec spec) {
    if (mode.equalsIgnoreCase("auto")) return true;
    if (mode.equalsIgnoreCase("manual")) return false;
    throw Options.usage(spec, "--parallel '" + mode + "': expected auto or manual");
  }

  /**
   * Refuses {@code --sequence-parallel} where it cannot run, before any work: without {@code --tp 2} or more (nothing
   * to cut over) and with {@code --parallel auto} (the planner does not choose it).
   */
  void checkSequenceParallel(CommandSpec spec) {
    if (!sequenceParallel) return;
    if (mode.equalsIgnoreCase("auto")) {
      throw Options.usage(spec, "--sequence-parallel with --parallel auto is not supported: give --tp N (2 or more) yourself");
    }
    if (tp < 2) {
      throw Options.usage(spec, "--sequence-parallel needs --tp 2 or more (it cuts the tensor-parallel ranks' residual "
          + "stream along the tokens); this run has --tp " + tp);
    }
  }

  /** A usage error unless the model's {@code layers} blocks give every one of --pp stages at least one. */
  void checkStages(CommandSpec spec, int layers) {
    if (pp > layers) {
      throw Options.usage(spec, "--pp " + pp + " exceeds the model's " + layers + " blocks (each stage needs at "
          + "least one); give --pp " + layers + " or less");
    }
  }

  /** What the data-parallel line says about the ZeRO stage. */
  static String stageName(int zero) {
    return switch (zero) {
      case 1 -> ", ZeRO 1 (AdamW's moments sharded)";
      case 2 -> ", ZeRO 2 (AdamW's moments and the step's gradient sharded)";
      case 3 -> ", ZeRO 3 (AdamW's moments, the step's gradient and the parameters sharded; each unit's weights gathered "
          + "before it runs)";
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
    if (pp == 1 && tp == 1) return "--dp " + dp;
    return (dp > 1 ? "--dp " + dp + " " : "") + (tp > 1 ? "--tp " + tp : "") + (tp > 1 && pp > 1 ? " " : "") + (pp > 1 ? "--pp " + pp : "");
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
  Communicator start(CommandSpec spec, Device device, boolean offload, int accum) {
    return start(spec, device, offload, accum, null);
  }

  /**
   * {@code --parallel auto}: starts MPI on the processes mpirun started, lets rank 0 plan the layout with {@code
   * planner} (given the process count; it prints the plan) and broadcasts the choice, sets --dp, --tp, --pp, --zero,
   * --micro-batches and {@link #autoAccum} from it on every rank, then checks them as {@link #start} does. No layout that fits is a usage
   * error on every rank.
   */
  Communicator startAuto(CommandSpec spec, Device device, boolean offload,
      java.util.function.IntFunction<dev.athanor.dist.plan.ParallelPlanner.Result> planner) {
    int launched = launchedProcesses();
    if (launched == 0) {
      throw Options.usage(spec, "--parallel auto plans for the processes mpirun starts: athanor launch --np N train ... --parallel auto");
    }
    if (device.isCuda()) {
      throw Options.usage(spec, "--parallel auto plans CPU processes; on " + device + " give the layout yourself (--dp N: "
          + "data parallel is what runs on GPUs today) or use --device cpu");
    }
    Communicator c = Communicator.mpi(reduce);
    int[] choice = new int[5];
    String failure = null;
    if (c.rank() == 0) {
      try {
        var r = planner.apply(c.size());
        if (r.chosen() == null) {
          failure = "no layout of " + c.size() + " processes fits (the plan above says why each was left out)";
        } else {
          var l = r.chosen().layout();
          choice = new int[] {l.dp(), l.tp(), l.pp(), l.zero(), r.chosen().microBatchesPerRank()};
        }
      } catch (RuntimeException e) {
        failure = dev.athanor.cli.Messages.of(e);
      }
    }
    try (dev.athanor.tensor.Tensor t = dev.athanor.tensor.Tensor.of(choice, 5)) {
      c.broadcast(t, 0);
      choice = t.toIntArray();
    }
    if (choice[0] == 0) {
      int rank = c.rank();
      c.close();
      throw Options.usage(spec, "--parallel auto: " + (failure != null ? failure : "rank 0 found no layout (see its output)")
          + (rank == 0 ? "" : " [rank " + rank + "]"));
    }
    dp = choice[0];
    tp = choice[1];
    pp = choice[2];
    zero = choice[3];
    if (pp > 1) {  // the pipeline's micro-batches per replica; no accumulation on top
      microBatches = choice[4];
      autoAccum = 1;
    } else {
      autoAccum = choice[4];
    }
    return start(spec, device, offload, 1, c);
  }

  private Communicator start(CommandSpec spec, Device device, boolean offload, int accum, Communicator opened) {
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
      if (zero >= 3) throw Options.usage(spec, "--zero " + zero + " with --pp " + pp + " is not supported yet; use --zero 0, 1 or 2");
    } else if (microBatches != null) {
      throw Options.usage(spec, "--micro-batches " + microBatches + " needs --pp 2 or more (without --pp, use --accum)");
    }
    if (tp > 1 && zero >= 3) {
      throw Options.usage(spec, "--zero " + zero + " with --tp " + tp + " is not supported yet; use --zero 0, 1 or 2");
    }
    if (tp > 1 && offload) throw Options.usage(spec, "--tp " + tp + " with --offload is not supported; use --offload off");
    int n = dp * tp * pp;
    String flag = layout();
    if (zero >= 1) {
      if (dp == 1) {
        String what = zero == 1 ? "AdamW's moments" : zero == 2 ? "AdamW's moments and the gradient"
            : "AdamW's moments, the gradient and the parameters";
        throw Options.usage(spec, "--zero " + zero + " shards " + what + " over the --dp processes; with --dp 1 there is "
            + "nothing to shard: give --dp 2 or more, or --zero 0");
      }
    }
    int launched = opened != null ? opened.size() : launchedProcesses();
    if (n == 1) {
      if (opened != null) opened.close();
      if (launched > 1) {
        throw Options.usage(spec, "mpirun started " + launched + " processes but --dp is 1 (each would train alone and write "
            + "the same files): give --dp " + launched);
      }
      return null;
    }
    String lib = collectives(spec, device);
    if (device.isCuda() && (tp > 1 || pp > 1 || zero > 0)) {
      throw Options.usage(spec, flag + (zero > 0 ? " --zero " + zero : "") + (offload ? " --offload" : "") + " on " + device
          + ": on GPUs only data parallel runs today (--dp N with --zero 0, no --tp or --pp; --offload puts each rank's "
          + "optimizer on its host); train this layout with --device cpu");
    }
    if (launched == 0) {
      throw Options.usage(spec, flag + " needs " + n + " processes started by MPI: mpirun -np " + n + " ./athanor " + spec.name()
          + " ... " + flag + " (or: ./athanor launch " + spec.name() + " ... " + flag + ")");
    }
    Communicator c = opened != null ? opened : Communicator.mpi(reduce);
    if (c.size() != n) {
      int size = c.size(), rank = c.rank();
      c.close();
      boolean one = tp == 1 && pp == 1;
      throw Options.usage(spec, flag + (one ? "" : " = " + n + " processes") + " but MPI started " + size + " process"
          + (size == 1 ? "" : "es") + " (this is rank " + rank + "): run mpirun -np " + n + " with " + flag
          + (one ? ", or give --dp " + size : tp == 1 && dp == 1 || pp == 1 && dp == 1 ? ", or give " + (tp > 1 ? "--tp " : "--pp ") + size : ""));
    }
    if (!device.isCuda()) return c;
    try {
      // CUDA tensors: NCCL between the ranks' GPUs (host tensors stay on MPI), or MPI with host staging
      return lib.equals("nccl") ? Communicator.nccl(c, device, reduce, true) : Communicator.staged(c, true);
    } catch (RuntimeException e) {
      c.close();
      throw e;
    }
  }

  /** --collectives checked against the device: "mpi" or "nccl" (auto: nccl on CUDA, mpi on the CPU). */
  String collectives(CommandSpec spec, Device device) {
    String lib = collectives == null ? "auto" : collectives.strip().toLowerCase(Locale.ROOT);
    switch (lib) {
      case "auto":
        return device.isCuda() ? "nccl" : "mpi";
      case "mpi":
        return lib;
      case "nccl":
        if (!device.isCuda()) {
          throw Options.usage(spec, "--collectives nccl moves CUDA tensors; this run is on " + device + ": use --collectives "
              + "mpi (or auto), or --device cuda");
        }
        return lib;
      default:
        throw Options.usage(spec, "--collectives '" + collectives + "': expected auto, nccl or mpi");
    }
  }
}

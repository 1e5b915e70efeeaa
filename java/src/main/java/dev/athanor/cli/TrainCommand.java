package dev.athanor.cli;

import dev.athanor.cli.Options.Range;
import dev.athanor.dist.Communicator;
import dev.athanor.dist.DataTensorParallel;
import dev.athanor.dist.ParallelGrid;
import dev.athanor.dist.TimedCommunicator;
import dev.athanor.dist.DataParallel;
import dev.athanor.dist.BucketedReduction;
import dev.athanor.dist.OverlapStats;
import dev.athanor.dist.OverlappedReduction;
import dev.athanor.dist.TensorParallelism;
import dev.athanor.dist.ShardedWeights;
import dev.athanor.dist.UnitGradientFold;
import dev.athanor.dist.pipeline.PipelineLayout;
import dev.athanor.dist.pipeline.PipelineStage;
import dev.athanor.io.FileProblems;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TextCorpus;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.memory.MemoryManager;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.HostOffloadPlanner;
import dev.athanor.offload.HostTransfers;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.offload.OffloadedWeights;
import dev.athanor.offload.TransferStats;
import dev.athanor.params.Role;
import dev.athanor.report.HostTraffic;
import dev.athanor.report.RunSummary;
import dev.athanor.report.StepTraffic;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.checkpoint.Checkpoint;
import dev.athanor.train.checkpoint.CheckpointEvent;
import dev.athanor.train.checkpoint.CheckpointException;
import dev.athanor.train.checkpoint.CheckpointManager;
import dev.athanor.train.checkpoint.RankGroup;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code athanor train}: train a model from a preset, a config.json or a Hugging Face directory on text or
 * token shards, with a progress bar, a JSON-lines log, charts, a run report and an HF-format model at the end.
 */
@Command(name = "train", sortOptions = false, abbreviateSynopsis = true,
    description = "Train a model from a preset, a config.json or a Hugging Face directory on text or llm.c token shards: "
        + "a progress bar, a JSON-lines log, charts, an HTML run report, and a Hugging Face model directory at the end.",
    footer = {"%nExamples:",
        "  athanor train --preset gpt2-tiny --data corpus/ --steps 2000 --out runs/mine \\",
        "                --checkpoint-dir runs/ck",
        "  athanor train --model hf-gpt2/ --data more.txt --lr 1e-4 --steps 100",
        "  athanor train @mine.args --resume auto     (options from a file; # comments)"})
final class TrainCommand implements Callable<Integer> {
  @Spec CommandSpec spec;
  @ParentCommand Main main;

  @Option(names = "--data", required = true, paramLabel = "PATH",
      description = "text file, directory, .zip of text files, or llm.c .bin token shard(s)")
  Path data;

  @ArgGroup(exclusive = false, validate = false, heading = "%nModel (one of --preset, --config, --model):%n", order = 1)
  Options.ModelOptions model = new Options.ModelOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nSteps and optimizer:%n", order = 2)
  Optimizer opt = new Optimizer();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOutput:%n", order = 3)
  Output output = new Output();

  @ArgGroup(exclusive = false, validate = false, heading = "%nCheckpoints:%n", order = 4)
  Checkpoints ckpt = new Checkpoints();

  @ArgGroup(exclusive = false, validate = false, heading = "%nRuntime:%n", order = 5)
  Options.RuntimeOptions runtime = new Options.RuntimeOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOffload (CPU only: weights, gradients and AdamW state on DISK):%n", order = 6)
  Options.OffloadOptions offload = new Options.OffloadOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nData and pipeline parallel (CPU, over MPI):%n", order = 7)
  ParallelOptions parallel = new ParallelOptions();

  /** The run's communicator with --dp > 1 (rank 0 alone prints and writes), else null. */
  private Communicator comm;
  /** With a grid (--dp and --tp both above 1, or --pp above 1): this rank's groups of it, else null. */
  private ParallelGrid.Groups groups;

  /** The tensor-parallel ranks: the world, or this rank's group of a dp x tp grid. */
  private Communicator tpComm() {
    return groups != null ? groups.tp() : comm;
  }

  /** What to train for, and how (defaults: {@link TrainConfig#defaults}). */
  static final class Optimizer {
    @Option(names = "--steps", paramLabel = "N", defaultValue = "1000", description = "optimizer steps. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int steps;

    @Option(names = "--batch", paramLabel = "N", defaultValue = "8", description = "sequences per micro-batch. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int batch;

    @Option(names = "--seq", paramLabel = "TOKENS", description = "tokens per sequence (default: 256, or the context if shorter)")
    @Range(min = 1)
    Integer seq;

    @Option(names = "--accum", paramLabel = "N", defaultValue = "1", description = "micro-batches per step (under --pp they are --micro-batches, and --accum stays 1). Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int accum;

    @Option(names = "--lr", paramLabel = "LR", defaultValue = "6e-4", description = "peak learning rate. Default: ${DEFAULT-VALUE}")
    @Range(min = 0)
    float lr;

    @Option(names = "--min-lr", paramLabel = "LR", description = "final learning rate of the cosine schedule (default: lr/10)")
    @Range(min = 0)
    Float minLr;

    @Option(names = "--warmup", paramLabel = "STEPS", description = "linear warmup steps (default: 10%% of the steps, at most 700)")
    @Range(min = 0)
    Integer warmup;

    @Option(names = "--schedule", paramLabel = "SHAPE", defaultValue = "cosine", completionCandidates = ScheduleNames.class,
        description = "learning-rate schedule: ${COMPLETION-CANDIDATES}. Default: ${DEFAULT-VALUE}")
    Schedule schedule;

    @Option(names = "--weight-decay", paramLabel = "WD", defaultValue = "0.1",
        description = "AdamW weight decay, on matrices only. Default: ${DEFAULT-VALUE}")
    @Range(min = 0)
    float weightDecay;

    @Option(names = "--beta1", paramLabel = "BETA", defaultValue = "0.9", description = "AdamW beta1. Default: ${DEFAULT-VALUE}")
    @Range(min = 0, max = 1, maxExclusive = true)
    float beta1;

    @Option(names = "--beta2", paramLabel = "BETA", defaultValue = "0.95", description = "AdamW beta2. Default: ${DEFAULT-VALUE}")
    @Range(min = 0, max = 1, maxExclusive = true)
    float beta2;

    @Option(names = "--eps", paramLabel = "EPS", defaultValue = "1e-8", description = "AdamW epsilon. Default: ${DEFAULT-VALUE}")
    @Range(min = 0, minExclusive = true)
    float eps;

    @Option(names = "--grad-clip", paramLabel = "NORM", defaultValue = "1",
        description = "clip the gradient's global norm (0 = off). Default: ${DEFAULT-VALUE}")
    @Range(min = 0)
    float gradClip;

    @Option(names = "--shuffle", paramLabel = "BOOL", arity = "1", defaultValue = "false", converter = Options.Bool.class,
        description = "true: a seeded permutation of windows; false: sequential batches (llm.c). Default: ${DEFAULT-VALUE}")
    boolean shuffle;

    @Option(names = "--seed", paramLabel = "SEED", defaultValue = "1337", description = "initialization and shuffling seed. Default: ${DEFAULT-VALUE}")
    long seed;

    @Option(names = "--max-bytes", paramLabel = "SIZE", converter = Options.Size.class,
        description = "tokenize at most this much text (e.g. 24000000 or 512m)")
    Long maxBytes;

    @Option(names = "--recompute", paramLabel = "BOOL", arity = "0..1", fallbackValue = "true",
        description = "keep one block's activations and recompute the rest in the backward pass")
    boolean recompute;
  }

  /** Where the results go. */
  static final class Output {
    @Option(names = "--out", paramLabel = "DIR", defaultValue = "runs/train",
        description = "the trained model as a Hugging Face directory. Default: ${DEFAULT-VALUE}")
    Path out;

    @Option(names = "--log", paramLabel = "FILE", description = "JSON lines, one per step; the charts and the report go next to it "
        + "(default: OUT/train-log.jsonl)")
    Path log;

    @Option(names = "--save-dtype", paramLabel = "DTYPE", defaultValue = "f32",
        description = "dtype of the saved weights: ${COMPLETION-CANDIDATES}. Default: ${DEFAULT-VALUE}")
    Models.FloatType saveDtype;
  }

  /** Checkpoints and resuming. */
  static final class Checkpoints {
    @Option(names = "--checkpoint-dir", paramLabel = "DIR", description = "write checkpoints (step-NNNNNNNN/) here")
    Path dir;

    @Option(names = "--checkpoint-every", paramLabel = "STEPS",
        description = "steps between checkpoints (default: 100 with --checkpoint-dir; 0 = only at the end)")
    @Range(min = 0)
    Integer every;

    @Option(names = "--keep", paramLabel = "K", defaultValue = "3", description = "newest checkpoints kept. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int keep;

    @Option(names = "--resume", paramLabel = "DIR|auto|auto-or-new",
        description = "continue exactly from a checkpoint or the newest valid one in a directory of them; auto: the newest "
            + "valid one in --checkpoint-dir (an error when it holds none); auto-or-new: the same, or a new run when "
            + "--checkpoint-dir holds no checkpoint yet. When checkpoints exist but none is valid, both refuse and leave them")
    String resume;

    @Option(names = "--overwrite-checkpoints",
        description = "delete the checkpoints of other runs in --checkpoint-dir when training starts (without it, a "
            + "directory holding another run's checkpoints is refused)")
    boolean overwrite;

    @Option(names = "--checkpoint-sync", paramLabel = "BOOL", arity = "0..1", fallbackValue = "true",
        description = "write checkpoints in the step loop instead of in the background")
    boolean sync;
  }

  /** The schedule names in lower case, for help and completion. */
  static final class ScheduleNames implements Iterable<String> {
    @Override
    public Iterator<String> iterator() {
      return Arrays.stream(Schedule.values()).map(x -> x.name().toLowerCase(Locale.ROOT)).iterator();
    }
  }

  /** What a run produced. */
  record Result(Path modelDir, Path log, Path plot, Path report, float firstLoss, float lastLoss, double tokensPerSecond,
      long steps) {}

  /** The exit code of a run stopped by SIGTERM: 128 + 15, as a shell reports a process ended by that signal. */
  static final int TERMINATED = 128 + 15;

  /** The run was stopped by a termination signal (after its state was saved, when checkpointing). */
  static final class Stopped extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    Stopped(String message) {
      super(message);
    }
  }

  @Override
  public Integer call() {
    try {
      run(main.out);
    } catch (Stopped e) {
      main.err.println("athanor train: " + (comm != null ? rankName(comm) + ": " : "") + e.getMessage());
      if (comm != null) comm.close();  // every rank stopped after the same step
      return TERMINATED;
    } catch (RuntimeException | Error e) {
      if (comm == null) throw e;
      // a failed rank may leave the others waiting in a collective: say which rank failed, then end them all
      main.err.println("athanor train: " + rankName(comm) + ": " + Messages.of(e));
      if (Boolean.getBoolean("athanor.debug")) e.printStackTrace(main.err);
      main.err.flush();
      comm.abort(e instanceof IllegalArgumentException ? 2 : 1);
      throw e;
    }
    return 0;
  }

  private static String rankName(Communicator c) {
    return "rank " + c.rank() + " of " + c.size();
  }

  /** A train command made from {@code args} then {@code more} as on the command line, checked like one (for {@code demo}). */
  static TrainCommand parse(Main main, List<String> more, String... args) {
    TrainCommand t = new TrainCommand();
    CommandLine cl = Main.configure(new CommandLine(t));
    List<String> all = new ArrayList<>(Arrays.asList(args));
    all.addAll(more);
    cl.parseArgs(all.toArray(String[]::new));
    Options.check(cl.getCommandSpec());
    t.main = main;
    return t;
  }

  /** The optimizer settings: the options over {@link TrainConfig#defaults} for {@code mc}. */
  TrainConfig trainConfig(ModelConfig mc) {
    int seq = opt.seq != null ? opt.seq : Math.min(256, mc.maxSeqLen());
    TrainConfig d = TrainConfig.defaults(opt.steps, opt.batch, seq);
    float minLr = opt.minLr != null ? opt.minLr : opt.lr == d.lr() ? d.minLr() : opt.lr / 10;
    int accum = parallel.pp > 1 ? parallel.micro() : opt.accum;  // under --pp the micro-batches are the accumulation
    return new TrainConfig(opt.steps, opt.batch, seq, accum, opt.lr, minLr,
        opt.warmup != null ? opt.warmup : d.warmup(), opt.schedule, opt.weightDecay, opt.beta1, opt.beta2, opt.eps,
        opt.gradClip, opt.shuffle, opt.seed);
  }

  Result run(PrintStream out) {
    checkBeforeWork();
    checkOffloadedDataParallel(runtime.device != null && runtime.device.startsWith("cuda"), runtime.device);
    if (parallel.tp > 1) checkTensorParallel();
    parallel.checkSequenceParallel(spec);
    parallel.bucketBytes(spec);  // --bucket-mb checked before any work
    if (parallel.sequenceParallel) {  // every rank needs token rows of its own
      TrainConfig tc = trainConfig(model.config(spec));
      if ((long) tc.batch() * tc.seq() < parallel.tp) {
        throw Options.usage(spec, "--sequence-parallel cuts the --batch " + tc.batch() + " x --seq " + tc.seq() + " = "
            + (long) tc.batch() * tc.seq() + " token rows over the --tp " + parallel.tp + " ranks: give at least one row per "
            + "rank (batch x seq >= " + parallel.tp + ")");
      }
    }
    if (parallel.pp > 1 && ckpt.resume == null) parallel.checkStages(spec, model.config(spec).layers());
    Device device = runtime.apply();
    checkOffloadedDataParallel(device.isCuda(), device.toString());  // --device auto that found a GPU
    if (parallel.auto(spec)) {  // rank 0 plans the layout for the processes mpirun started; all ranks follow
      comm = parallel.startAuto(spec, device, !offload.off(), world -> autoPlan(world, device, out));
      opt.accum = parallel.autoAccum;
    } else {
      comm = parallel.start(spec, device, !offload.off(), opt.accum);
    }
    if (comm != null) comm = new TimedCommunicator(comm);  // each step's line says how long it spent communicating
    Result r;
    if (comm != null && (parallel.dp > 1 && parallel.tp > 1 || parallel.pp > 1)) {  // a grid: this rank's dp, tp and pp groups
      try (ParallelGrid.Groups g = parallel.grid().split(comm)) {
        groups = g;
        r = run(out, device);
      } finally {
        groups = null;
      }
    } else {
      r = run(out, device);
    }
    if (comm != null) comm.close();  // MPI_Finalize: every rank gets here (a failing rank aborts them all instead)
    return r;
  }

  /**
   * --parallel auto on rank 0: the planner's choice for {@code world} processes (printed with its runners-up), from the
   * model, --batch, --seq, --accum (the micro-batches per step over all replicas) and --mem-host per process; --dp, --tp
   * and --zero given on the command line are kept. With --offload, every layout but --dp with any ZeRO stage is skipped
   * (the others cannot offload).
   */
  private dev.athanor.dist.plan.ParallelPlanner.Result autoPlan(int world, Device device, PrintStream out) {
    ModelConfig mc = model.config(spec);
    TrainConfig tc = trainConfig(mc);
    StringBuilder note = new StringBuilder();
    var hw = ParallelPlanOutput.hardware(new ParallelPlanOutput.Args(), world, note);
    var parse = spec.commandLine().getParseResult();
    // --accum is the micro-batches per step over all replicas (also with a --pp given, whose trainConfig counts --micro-batches)
    var job = new dev.athanor.dist.plan.ParallelPlanner.Job(mc, device, world, tc.batch(), tc.seq(), opt.accum,
        ParallelPlanOutput.memoryPerRank(runtime.memHost, world), hw, parse.hasMatchedOption("--dp") ? parallel.dp : 0,
        parse.hasMatchedOption("--tp") ? parallel.tp : 0, parse.hasMatchedOption("--pp") ? parallel.pp : 0,
        parse.hasMatchedOption("--zero") ? parallel.zero : 0);
    var r = dev.athanor.dist.plan.ParallelPlanner.plan(job);
    if (!offload.off()) {  // --offload runs only with --dp (any ZeRO stage)
      var fitting = r.fitting().stream()
          .filter(e -> e.layout().tp() == 1 && e.layout().pp() == 1)
          .toList();
      r = new dev.athanor.dist.plan.ParallelPlanner.Result(job, fitting.isEmpty() ? null : fitting.get(0), fitting, r.excluded());
    }
    out.println("--parallel auto:");
    ParallelPlanOutput.print(r, note.toString(), out);
    return r;
  }

  /** --tp, before any work: the split must cut the model. */
  private void checkTensorParallel() {
    try {
      new TensorParallel(parallel.tp, 0).check(model.config(spec));
    } catch (IllegalArgumentException e) {
      throw Options.usage(spec, e.getMessage());
    }
  }

  private Result run(PrintStream out, Device device) {
    boolean primary = comm == null || comm.rank() == 0;  // prints, writes the log, checkpoints and the model
    if (!primary) out = new PrintStream(java.io.OutputStream.nullOutputStream(), false, StandardCharsets.UTF_8);
    PrintStream err = main != null ? main.err : System.err;
    Path ckptDir = ckpt.dir;
    Checkpoint resume = resumeFrom(ckpt.resume, ckptDir, out, err);
    // resuming always restores through the checkpoint manager; without --checkpoint-dir, continue in the resumed set
    if (resume != null && ckptDir == null) ckptDir = resume.directory().toAbsolutePath().getParent();
    if (ckpt.overwrite && ckptDir == null) throw Options.usage(spec, "--overwrite-checkpoints needs --checkpoint-dir");
    String runId = resume != null ? resume.runId() : CheckpointManager.newRunId();
    List<CheckpointManager.Run> others = ckptDir == null ? List.of() : otherRuns(ckptDir, runId, resume == null);
    if (!others.isEmpty() && !ckpt.overwrite) throw new IllegalArgumentException(mixedRunsMessage(ckptDir, others, resume));
    ModelConfig mc = resume != null ? resume.modelConfig() : model.config(spec);
    if (resume != null && model.given()) {
      ModelConfig asked = model.config(spec);
      if (!asked.equals(mc)) {
        throw new IllegalArgumentException("--resume: checkpoint " + resume.directory() + " was taken with a different model: "
            + "saved " + mc + ", this run " + asked);
      }
    }
    Path modelDir = model.model;
    TrainConfig tc = trainConfig(mc);
    if (tc.seq() > mc.maxSeqLen()) {
      throw Options.usage(spec, "--seq " + tc.seq() + " exceeds the model's context of " + mc.maxSeqLen() + " tokens; give --seq "
          + mc.maxSeqLen() + " or less" + (resume == null && modelDir == null ? " (or a longer --context)" : ""));
    }
    PipelineLayout pipeline = null;
    if (parallel.pp > 1) {
      parallel.checkStages(spec, mc.layers());
      pipeline = new PipelineLayout(mc, parallel.pp);
    }
    OffloadPlanner.Job job = new OffloadPlanner.Job(mc, device, tc, opt.recompute, modelDir != null && resume == null,
        ckptDir != null);
    OffloadPlan plan = null;
    HostOffloadPlanner.Plan hostPlan = null;  // CUDA: the optimizer on the host, or null
    var layout = new dev.athanor.dist.plan.ParallelPlanner.Layout(parallel.dp, parallel.tp, parallel.pp, parallel.zero,
        opt.recompute, parallel.sequenceParallel);
    // ZeRO 1 on CUDA with --offload: the optimizer on the host, each rank its shard of the masters and moments
    boolean hostZeroOne = comm != null && device.isCuda() && !offload.off() && parallel.zero == 1;
    boolean shardPlan = comm != null && parallel.zero >= 1 && !hostZeroOne;  // ZeRO (with --dp only): a rank's shard of the moments
    if (comm != null && offload.off() && device.isCuda()) {  // data parallel on GPUs: each rank holds the whole model
      MemoryCheck.requireTraining(job, true, false);
    } else if (comm != null && offload.off()) {  // one process of a layout: its stage and shards, not the whole model
      MemoryCheck.requireRank(job, layout, comm.size());
    } else if (shardPlan) {
      plan = shardOffloadPlan(spec, offload, job, layout, comm.size());
    } else if (device.isCuda() && !offload.off()) {  // one GPU, or each rank of --dp N (ZeRO 0 or 1) on its own
      hostPlan = hostOffloadPlan(spec, offload, job, comm == null ? 1 : comm.size(), hostZeroOne);
      if (hostPlan == null) plan = offloadPlan(spec, offload, job);  // it fits on the device (perhaps recomputing)
    } else {
      plan = offloadPlan(spec, offload, job);
    }
    Path outDir = output.out;
    Path log = output.log != null ? output.log : outDir.resolve("train-log.jsonl");
    DType saveDtype = output.saveDtype.dtype();

    Termination.phase("preparing the run, before its first step; nothing was saved" + (ckptDir == null
        ? " (to be able to stop and resume a run, train with --checkpoint-dir DIR)"
        : resume != null ? "; the checkpoints in " + ckptDir + " are as they were" : ""));
    out.printf("athanor train: %s model, %d layers, hidden %d, %d heads, vocab %d, %.1fM parameters, on %s%n",
        mc.family().hfModelType(), mc.layers(), mc.hidden(), mc.heads(), mc.vocabSize(), mc.parameterCount() / 1e6, device);
    if (pipeline != null) {
      out.printf("pipeline parallel: %d stages (%s), 1F1B over %d micro-batches, bubble (pp-1)/(M+pp-1) = %.3f; %s%s; "
          + "global batch %d x %d x %d = %d sequences per step%n", parallel.pp, stagesText(pipeline), tc.accum(),
          pipeline.bubble(tc.accum()), comm.describe(), (parallel.tp > 1 ? ", tensor parallel " + parallel.tp
              + " (each rank holds 1/" + parallel.tp + " of its stage's heads and MLP width)"
              + (parallel.sequenceParallel ? ", sequence parallel (each holds and passes on 1/" + parallel.tp + " of the "
              + tc.batch() + " x " + tc.seq() + " token rows of the hidden states)" : "") : "")
              + (parallel.dp > 1 ? ", data parallel " + parallel.dp
              + (parallel.zero == 1 ? " with ZeRO 1 (each stage's AdamW moments sharded over its dp group)"
              : parallel.zero == 2 ? " with ZeRO 2 (each stage's AdamW moments and gradient sharded over its dp group)" : "")
              : ""),
          tc.batch(), tc.accum(), parallel.dp,
          (long) tc.batch() * tc.accum() * parallel.dp);
    } else if (comm != null && parallel.tp > 1) {
      out.printf("tensor parallel: %s; each rank holds 1/%d of every block's heads and MLP width%s%n", comm.describe(), parallel.tp,
          parallel.sequenceParallel ? "; sequence parallel: each holds 1/" + parallel.tp + " of the " + tc.batch() + " x "
              + tc.seq() + " token rows of the residual stream and the norms" : "");
    }
    if (pipeline == null && comm != null && parallel.dp > 1) {
      out.printf("data parallel: %s%s; global batch %d x %d x %d = %d sequences per step%n", comm.describe(),
          ParallelOptions.stageName(parallel.zero), tc.batch(),
          tc.accum(), parallel.dp, (long) tc.batch() * tc.accum() * parallel.dp);
    }
    if (plan != null && shardPlan) {
      PlanFile.printShard(plan, parallel.zero, parallel.dp, out);
    } else if (plan != null) {
      PlanFile.print(plan, out);
    } else if (hostPlan != null) {
      for (String line : hostPlan.describe()) out.println(line);
    }
    // more than one process: each rank's files in its own folder of the offload directory (rank-N), never shared
    Path offloadDir = comm == null || comm.size() == 1 ? offload.dir
        : (offload.dir != null ? offload.dir : MemoryManager.global().diskDirectory()).resolve("rank-" + comm.rank());
    OffloadConfig offloadConfig = plan != null ? plan.config(offloadDir) : OffloadConfig.NONE;
    // weights on DISK: the model is built without them and they go to their files tensor by tensor, so a model larger
    // than memory never holds them all
    boolean weightsOnDisk = offloadConfig.onDisk(Role.MASTER) && !shardPlan;  // ZeRO 3 keeps its shard of them there itself
    try (Transformer model = pipeline != null ? stageModel(mc, device, pipeline.stage(groups.at().pp()), resume == null ? modelDir : null)
            : weightsOnDisk ? Transformer.withoutWeights(mc, device)
            : parallel.tp > 1 ? TensorParallelism.create(mc, device, tpComm())
            : modelDir != null && resume == null ? Models.load(modelDir, device) : Transformer.create(mc, device);
        OffloadedWeights weights = weightsOnDisk
            ? OffloadedWeights.attach(model, offloadConfig.resolvedDirectory(), offloadConfig.prefetch(),
                offloadConfig.residentWeights()) : null) {
      if ((weightsOnDisk || parallel.tp > 1) && pipeline == null && modelDir != null && resume == null) {
        HfModelDir.loadInto(modelDir, model);  // one tensor at a time (--tp: each rank keeps its part)
      } else if (modelDir == null && resume == null && pipeline == null) {
        model.initialize(tc.seed());
      }
      model.setRecompute(opt.recompute || plan != null && plan.recompute()
          || hostPlan != null && hostPlan.job().recompute());  // the planner may choose it
      if (parallel.sequenceParallel) model.setSequenceParallel(TensorParallelism.tokens(tpComm()));
      TextCorpus.Options opts = TextCorpus.Options.defaults();
      if (opt.maxBytes != null) {
        opts = new TextCorpus.Options(opts.cacheDir(), opt.maxBytes, opts.extensions(), opts.threads(), opts.shardTokens());
      }
      TokenDataset dataset;
      if (TextCorpus.isShardInput(data)) {
        dataset = TokenDataset.open(data);
      } else {
        try (Tokenizer tok = Models.tokenizer(modelDir, model.config());
            Progress bar = primary ? Progress.bytes("tokenize") : Progress.logLines("tokenize", 0, 0, out)) {
          TextCorpus.ProgressListener pl = (done, total, tokens) -> bar.update(done, total, Counts.format(tokens) + " tokens");
          dataset = TextCorpus.prepare(data, tok, opts, pl);
        }
      }
      try (dataset) {
        dataset.checkVocab(model.config().vocabSize());
        if (comm != null) {  // before any step: every rank must run the same job on the same data
          List<String> flags = spec.commandLine().getParseResult().expandedArgs();
          DataParallel.requireSame(comm, "their flags (a hash of " + String.join(" ", flags) + " on rank " + comm.rank() + ")",
              fingerprint(flags));
          DataParallel.requireSame(comm, "their data (tokens in " + data + ")", dataset.size());
          // every rank resolved --resume itself (each restores the masters from the directory): the same checkpoint
          DataParallel.requireSame(comm, "the checkpoint they resume from (its step; -1: none; rank " + comm.rank() + ": "
              + (resume == null ? "none" : resume.directory()) + ")", resume == null ? -1 : resume.step());
        }
        out.printf("data: %s tokens from %s; %d steps x %d tokens (batch %d, seq %d, accum %d), lr %s %s, warmup %d%n",
            Counts.format(dataset.size()), data, tc.steps(), tc.tokensPerStep() * parallel.dp, tc.batch(),
            tc.seq(), tc.accum(),
            tc.lr(), tc.schedule().name().toLowerCase(Locale.ROOT), tc.warmup());
        DataLoader loader = new DataLoader(dataset, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
        int every = ckpt.every != null ? ckpt.every : ckptDir != null ? 100 : 0;
        List<String> args = spec.commandLine().getParseResult().expandedArgs();
        Checkpointing ck = ckptDir == null ? null
            : new Checkpointing(ckptDir, every, ckpt.keep, !ckpt.sync, resume, runId, args);
        for (CheckpointManager.Run o : primary ? others : List.<CheckpointManager.Run>of()) {  // only with --overwrite-checkpoints; as late as possible
          CheckpointManager.delete(o);
          err.println("athanor train: --overwrite-checkpoints: deleted the checkpoints of " + o.describe() + " from " + ckptDir);
        }
        PipelineStage stage = pipeline != null
            ? new PipelineStage(groups.pp(), groups.dp(), groups.tp(), pipeline, model) : null;
        List<StepResult> results = trainLoop(model, tc, loader, primary ? log : null, ck, offloadConfig,
            hostPlan != null ? hostPlan.offload(offloadDir) : null, weights, out, comm, parallel.zero, groups, stage,
            parallel.bucketBytes(spec));
        // --tp: every rank sends its parts, rank 0 gets the whole model (a collective); with --pp the stage gathers them
        Map<String, Tensor> gathered = parallel.tp > 1 && stage == null
            ? TensorParallelism.gatherWeights(model, tpComm()) : null;
        try (Transformer whole = stage != null ? stage.gatherWhole() : null) {
          if (!primary) {
            if (gathered != null) gathered.values().forEach(Tensor::close);  // tp rank 0 of another data-parallel replica
            StepResult first = results.get(0), last = results.get(results.size() - 1);
            return new Result(null, null, null, null, first.loss(), last.loss(), meanTokensPerSecond(results), results.size());
          }
          return finish(out, whole != null ? whole : model, gathered, tc, device, dataset, log, outDir, ck, results, args, saveDtype);
        }
      }
    } catch (IOException e) {
      throw new UncheckedIOException(FileProblems.describe(e), e);
    }
  }

  /**
   * Rank 0's end of a run: the model (or, under --tp, the {@code gathered} whole weights, closed here) saved with its
   * tokenizer, the charts and the report.
   */
  private Result finish(PrintStream out, Transformer model, Map<String, Tensor> gathered, TrainConfig tc, Device device,
      TokenDataset dataset, Path log, Path outDir, Checkpointing ck, List<StepResult> results, List<String> args,
      DType saveDtype) throws IOException {
    Termination.phase("saving the trained model to " + outDir + ": it may be incomplete there" + (ck == null ? ""
        : "; the checkpoints in " + ck.dir() + " are complete (the last one holds the final step)"));
    Files.createDirectories(outDir);
    try {
      HfModelDir.save(outDir, model.config(), gathered != null ? gathered : model.weights(), saveDtype);  // --tp: gathered
    } finally {
      if (gathered != null) gathered.values().forEach(Tensor::close);
    }
    Models.copyTokenizerFiles(this.model.model, outDir);
    Termination.phase(null);  // the model is complete: charts and the report are no loss
    RunOutputs written = RunOutputs.write(log, results, model.config(), tc, device, data, dataset.size(), outDir, args,
        ck == null ? List.of() : ck.events(), main != null ? main.err : System.err);
    StepResult first = results.get(0), last = results.get(results.size() - 1);
    double tps = meanTokensPerSecond(results);
    out.printf("loss %.4f -> %.4f over %d steps, %s tokens/s; model saved to %s, log %s%s%n", first.loss(), last.loss(),
        results.size(), Counts.rate(tps), outDir, log,
        written.report() != null ? ", report " + written.report() : "");
    return new Result(outDir, log, written.lossPlot(), written.report(), first.loss(), last.loss(), tps, results.size());
  }

  /**
   * Stage {@code stage} of the model (with --tp, this rank's part of it): initialized as the whole model would be, or its
   * part of {@code modelDir}'s weights.
   */
  private Transformer stageModel(ModelConfig mc, Device device, Stage stage, Path modelDir) {
    Transformer m = parallel.tp > 1 ? TensorParallelism.create(mc, device, groups.tp(), stage)
        : new Transformer(mc, device, Transformer.defaultComputeDtype(device), stage);
    try {
      if (modelDir == null) {
        m.initialize(opt.seed);
      } else {
        try (Transformer whole = Models.load(modelDir, device)) {
          m.loadWeights(whole.weights());
        }
      }
      return m;
    } catch (RuntimeException e) {
      m.close();
      throw e;
    }
  }

  /** The stages' blocks, e.g. {@code "[0, 2) [2, 4)"}. */
  private static String stagesText(PipelineLayout layout) {
    StringBuilder b = new StringBuilder();
    for (int s = 0; s < layout.stages(); s++) {
      Stage st = layout.stage(s);
      b.append(s == 0 ? "" : " ").append('[').append(st.firstBlock()).append(", ").append(st.endBlock()).append(')');
    }
    return "blocks " + b;
  }

  /**
   * The offload plan of {@code job} that {@code o} asks for, after checking that the job fits with it: null with
   * --offload off (everything in memory; a job that does not fit is refused, with --offload auto in the advice when
   * that would fit); with auto the planner's ({@link OffloadPlanner#plan}); with a file, the placement it names (a
   * usage error naming the file and the entry when it is not a valid plan for this model and device).
   */
  static OffloadPlan offloadPlan(CommandSpec spec, Options.OffloadOptions o, OffloadPlanner.Job job) {
    if (o.off()) {
      MemoryCheck.requireTraining(job, true, !job.device().isCuda());
      return null;
    }
    if (o.auto()) {
      OffloadPlanner.Job sized = new OffloadPlanner.Job(job.model(), job.device(), job.train(), job.recompute(), job.loading(),
          job.checkpoints(), o.chunkBytes());
      OffloadPlanner.Result r = OffloadPlanner.plan(sized, MemoryManager.global());
      if (r.plan() == null) throw MemoryCheck.offloadRefusal(sized, r.failure());
      return r.plan();
    }
    Path file = Path.of(o.offload);
    PlanFile.Request req = PlanFile.read(spec, "--offload", file, OffloadPlan.units(job.model()), job.inMemory());
    requireActivationsOnce(spec, file, job, req);
    OffloadPlanner.Job sized = new OffloadPlanner.Job(job.model(), job.device(), job.train(), job.recompute() || req.recompute(),
        job.loading(), job.checkpoints(), req.chunkBytes(), req.activationsOnDisk());
    OffloadPlan plan;
    try {
      plan = OffloadPlanner.place(sized, req.diskRoles(), req.residentUnits());
    } catch (IllegalArgumentException e) {
      throw Options.usage(spec, "--offload " + file + ": " + e.getMessage());
    }
    MemoryCheck.require(plan.footprint(), "train this model with the plan " + file,
        "use a smaller --batch or --seq (activations and workspace grow with batch x seq), or --offload auto",
        "use a smaller model, or --offload auto");
    return plan;
  }

  /**
   * On CUDA with --offload auto: null when the job fits in the device's memory as it is or recomputing its activations
   * ({@link OffloadPlanner#plan}; {@link #offloadPlan} then gives that plan), else the optimizer on the host as far as
   * the budgets need ({@link HostOffloadPlanner#plan}), or the refusal naming the short tier. A plan file is a usage
   * error on CUDA (plan files describe the CPU's placements).
   */
  static HostOffloadPlanner.Plan hostOffloadPlan(CommandSpec spec, Options.OffloadOptions o, OffloadPlanner.Job job) {
    return hostOffloadPlan(spec, o, job, 1);
  }

  /** As {@link #hostOffloadPlan(CommandSpec, Options.OffloadOptions, OffloadPlanner.Job)} for one of {@code replicas} ranks. */
  static HostOffloadPlanner.Plan hostOffloadPlan(CommandSpec spec, Options.OffloadOptions o, OffloadPlanner.Job job,
      int replicas) {
    return hostOffloadPlan(spec, o, job, replicas, false);
  }

  /** The same; with {@code zeroOne} each rank keeps only its ZeRO 1 shard of the optimizer on its host. */
  static HostOffloadPlanner.Plan hostOffloadPlan(CommandSpec spec, Options.OffloadOptions o, OffloadPlanner.Job job,
      int replicas, boolean zeroOne) {
    if (!o.auto()) {
      throw Options.usage(spec, "--offload " + o.offload + ": plan files place state on the CPU's tiers; on " + job.device()
          + " use --offload auto (the optimizer goes to the host as far as --mem-device and --mem-host need)");
    }
    OffloadPlanner.Job sized = new OffloadPlanner.Job(job.model(), job.device(), job.train(), job.recompute(), job.loading(),
        job.checkpoints(), o.chunkBytes());
    if (OffloadPlanner.plan(sized, MemoryManager.global()).plan() != null) return null;
    HostOffloadPlanner.Result r = HostOffloadPlanner.plan(sized, MemoryManager.global(), replicas, zeroOne);
    if (r.plan() == null) throw MemoryCheck.hostOffloadRefusal(r.failure());
    return r.plan();
  }

  /** A plan file that puts the activations on DISK, with --recompute (which recomputes them) is a usage error. */
  private static void requireActivationsOnce(CommandSpec spec, Path file, OffloadPlanner.Job job, PlanFile.Request req) {
    if (req.activationsOnDisk() && job.recompute()) {
      throw Options.usage(spec, "--offload " + file + " puts the activations on DISK (\"activations\": \"disk\") and "
          + "--recompute recomputes them: give one (drop --recompute, or edit the plan to \"recompute\")");
    }
  }

  /**
   * The offload plan of one rank of a ZeRO run ({@code layout}, {@code world} processes) that {@code o} asks for
   * (not off), after checking that it fits: the rank's footprint ({@link MemoryCheck#rankFootprint}) with its shard of
   * AdamW's moments on DISK as far as needed (auto, {@link OffloadPlanner#planShard}) or as a plan file names them
   * (ZeRO 3: then its shard of the gradient, then of the masters); under ZeRO 1 and 2 a plan file that puts the gradients
   * or the weights on DISK is a usage error (they stay in memory).
   */
  static OffloadPlan shardOffloadPlan(CommandSpec spec, Options.OffloadOptions o, OffloadPlanner.Job job,
      dev.athanor.dist.plan.ParallelPlanner.Layout layout, int world) {
    if (o.auto()) {
      OffloadPlanner.Job sized = new OffloadPlanner.Job(job.model(), job.device(), job.train(), job.recompute(), job.loading(),
          job.checkpoints(), o.chunkBytes());
      OffloadPlanner.Result r = OffloadPlanner.planShard(sized, MemoryCheck.rankFootprint(sized, layout, world),
          MemoryManager.global(), layout.zero(), layout.dp());
      if (r.plan() == null) throw MemoryCheck.offloadRefusal(sized, r.failure());
      return r.plan();
    }
    Path file = Path.of(o.offload);
    PlanFile.Request req = PlanFile.read(spec, "--offload", file, OffloadPlan.units(job.model()), job.inMemory());
    requireActivationsOnce(spec, file, job, req);
    boolean recompute = job.recompute() || req.recompute();
    OffloadPlanner.Job sized = new OffloadPlanner.Job(job.model(), job.device(), job.train(), recompute, job.loading(),
        job.checkpoints(), req.chunkBytes(), req.activationsOnDisk());
    var l = new dev.athanor.dist.plan.ParallelPlanner.Layout(layout.dp(), layout.tp(), layout.pp(), layout.zero(), recompute);
    OffloadPlan plan;
    try {
      plan = OffloadPlanner.placeShard(sized, MemoryCheck.rankFootprint(sized, l, world), req.diskRoles(), layout.zero(),
          layout.dp(), req.residentUnits());
    } catch (IllegalArgumentException e) {
      throw Options.usage(spec, "--offload " + file + " with --zero " + layout.zero() + ": " + e.getMessage());
    }
    MemoryCheck.require(plan.footprint(), "train this model as one of " + world + " processes (" + layout + ") with the plan "
        + file, "use a smaller --batch or --seq (activations and workspace grow with batch x seq), or --offload auto",
        "use more processes, a smaller model, or --offload auto");
    return plan;
  }

  /**
   * What can be checked before any work (building the model, tokenizing): that --data is a file or a directory, that
   * every output can be written, and the flags that need others. Usage errors name the flag and the value.
   */
  /**
   * {@code --dp N --zero 2} or more with {@code --offload} on a GPU ({@code cuda} true; {@code device} names it), before
   * any work: data parallel with the optimizer on the host runs with ZeRO 0 (each rank the whole optimizer on its host)
   * and ZeRO 1 (each rank its shard of the masters and moments there); a sharded gradient or sharded weights with it
   * are not built.
   */
  private void checkOffloadedDataParallel(boolean cuda, String device) {
    if (!cuda || offload.off() || parallel.dp <= 1 || parallel.zero <= 1) return;
    throw Options.usage(spec, "--dp " + parallel.dp + " --zero " + parallel.zero + " with --offload " + offload.offload + " on "
        + device + ": data parallel with the optimizer on the host runs with --zero 0 (every rank updates the whole model "
        + "on its host) and --zero 1 (each rank keeps and updates its shard of the masters and moments on its host); ZeRO "
        + parallel.zero + "'s sharded " + (parallel.zero == 2 ? "gradient" : "gradient and weights") + " with the optimizer on "
        + "the host is not built. Give --zero 0 or 1, or --offload off; with --device cpu, --dp " + parallel.dp + " --zero "
        + parallel.zero + " --offload puts each rank's shard of AdamW's moments on DISK");
  }

  void checkBeforeWork() {
    String problem = Files.isDirectory(data) ? null : FileProblems.notRegularFile(data);
    if (problem != null) {
      throw Options.usage(spec, "--data " + data + " " + problem
          + (problem.equals("does not exist") ? "" : " (expected a text file, a directory, a .zip or .bin token shards)"));
    }
    OutputPaths.directory(spec, "--out", output.out);
    OutputPaths.file(spec, "--log", output.log != null ? output.log : output.out.resolve("train-log.jsonl"));
    if (ckpt.dir != null) OutputPaths.directory(spec, "--checkpoint-dir", ckpt.dir);
    offload.check(spec);
    if (ckpt.every != null && ckpt.every > 0 && ckpt.dir == null && ckpt.resume == null) {
      throw Options.usage(spec, "--checkpoint-every " + ckpt.every + " needs --checkpoint-dir (where to write them)");
    }
  }

  /**
   * Checkpoint settings of a run: where, how often, how many to keep, async or not, what it resumes from and the run's
   * id; the saves of the run are added to {@code events} (for the report).
   */
  record Checkpointing(Path dir, int every, int keep, boolean async, Checkpoint resume, String runId, List<String> args,
      List<CheckpointEvent> events) {
    Checkpointing(Path dir, int every, int keep, boolean async, Checkpoint resume, String runId, List<String> args) {
      this(dir, every, keep, async, resume, runId, args, new ArrayList<>());
    }
  }

  /**
   * The checkpoint named by --resume: a checkpoint, the newest valid one in a directory of them, or with "auto" and
   * "auto-or-new" the newest valid one in --checkpoint-dir; null for a new run ("auto-or-new" when there is no
   * checkpoint). Refuses when checkpoints exist but none is valid, listing why each is not, and touches none of them.
   * Invalid newer checkpoints that were skipped are reported on {@code err}.
   */
  static Checkpoint resumeFrom(String r, Path ckptDir, PrintStream out, PrintStream err) {
    if (r == null) return null;
    boolean auto = r.equals("auto"), orNew = r.equals("auto-or-new");
    String flag = "--resume " + r;
    Path where = auto || orNew ? ckptDir : Path.of(r);
    if (where == null) throw new IllegalArgumentException(flag + " needs --checkpoint-dir DIR, the directory to resume from");
    Checkpoint c;
    if (!auto && !orNew && Files.isRegularFile(where.resolve("manifest.json"))) {
      c = Checkpoint.open(where);
    } else {
      List<Path> dirs;
      try {
        dirs = CheckpointManager.stepDirs(where);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot list " + where + ": " + e.getMessage(), e);
      }
      if (dirs.isEmpty()) {
        if (orNew) {
          err.println("athanor train: no checkpoint in " + where + " yet; starting a new run (--resume auto-or-new)");
          return null;
        }
        String what = !Files.exists(where) ? where + " does not exist" : Files.isDirectory(where)
            ? "there is no checkpoint (step-NNNNNNNN/) in " + where : where + " is not a directory";
        throw new IllegalArgumentException(flag + ": " + what + ", so there is nothing to resume"
            + (auto ? "; to start a new run when there is no checkpoint yet, use --resume auto-or-new" : ""));
      }
      List<String> invalid = new ArrayList<>();
      c = CheckpointManager.latestValid(where, invalid::add).orElse(null);
      if (c == null) {
        throw new CheckpointException(flag + ": none of the " + dirs.size() + " checkpoints in " + where + " is valid, so "
            + "there is nothing to resume; they were left untouched:\n  " + String.join("\n  ", invalid)
            + "\nRepair or move them away to resume from another copy, or use another --checkpoint-dir to start a new run. "
            + "Training without --resume and with --overwrite-checkpoints deletes them.");
      }
      for (String why : invalid) err.println("athanor train: skipping invalid checkpoint: " + why);
    }
    if (c.legacy()) {
      err.println("athanor train: note: " + c.directory() + " was written by an older Athanor (checkpoint format 1): its "
          + "manifest has no checksum, so only its data files were verified; its run continues as run '" + c.runId() + "'");
    }
    out.println("athanor train: resuming from " + c.directory() + " (step " + c.step() + ")");
    return c;
  }

  /**
   * The runs in {@code dir} other than {@code runId}: a run must not mix its checkpoints with them. For a new run every
   * checkpoint there is another run's; a resumed run ignores those whose run cannot be read (invalid checkpoints,
   * reported when resuming).
   */
  static List<CheckpointManager.Run> otherRuns(Path dir, String runId, boolean newRun) {
    return CheckpointManager.runs(dir).stream()
        .filter(x -> !runId.equals(x.runId()) && (newRun || x.runId() != null)).toList();
  }

  /** Why a run refuses {@code dir}: the runs there, and the ways out. */
  private static String mixedRunsMessage(Path dir, List<CheckpointManager.Run> others, Checkpoint resume) {
    StringBuilder b = new StringBuilder("--checkpoint-dir " + dir + " holds checkpoints of another run");
    if (resume != null) b.append(" than the one resumed (run ").append(resume.runId()).append(")");
    b.append(":");
    for (CheckpointManager.Run o : others) b.append("\n  ").append(o.describe());
    b.append("\nThis run would mix its checkpoints with them (--keep does not apply to them, and a later --resume auto "
        + "could pick theirs). Use another --checkpoint-dir");
    if (resume == null) b.append(", continue that run with --resume auto");
    b.append(", or pass --overwrite-checkpoints to delete them when training starts.");
    return b.toString();
  }

  /**
   * The step loop: progress bar with loss, tokens/s and ETA; one JSON line per step in {@code log}; periodic
   * checkpoints; on a failure or SIGTERM the last consistent state is saved before the error propagates. With more than
   * one process (--dp, --tp, --pp, any grid of them), every rank writes its part of each checkpoint (format version 3: its
   * ZeRO shard, or its cut of the flat state; under --pp of its stage's; under --tp of its slices, or with ZeRO 1 or 2 of
   * its shard of its tensor-parallel part) and rank 0 the manifest, at the same steps (a collective; in the background
   * unless --checkpoint-sync, committed by the next save or the final wait). A failed step saves nothing in a multi-process run (the save's collectives would need the other ranks, which may be
   * waiting in the failed step's): the last periodic checkpoint stays the one to resume from. With {@code hostOffload}
   * (CUDA) the optimizer runs on the host ({@link Trainer#Trainer(Transformer, TrainConfig, DataLoader,
   * dev.athanor.offload.HostOffload)}).
   */
  static List<StepResult> trainLoop(Transformer model, TrainConfig tc, DataLoader loader, Path log, Checkpointing ck,
      OffloadConfig offloadConfig, dev.athanor.offload.HostOffload hostOffload, OffloadedWeights weights, PrintStream out,
      Communicator comm, int zero, ParallelGrid.Groups groups, PipelineStage pipeline, long bucketBytes) throws IOException {
    // with --dp, ranks other than 0 get no log (null): they neither write it, nor the checkpoints, nor show progress
    boolean primary = log != null;
    List<StepResult> results = new ArrayList<>();
    if (primary && log.getParent() != null) Files.createDirectories(log.getParent());
    List<String> kept = new ArrayList<>();
    if (primary && ck != null && ck.resume() != null && Files.isRegularFile(log)) {
      // keep the log of the steps before the checkpoint; the rest is redone
      // bytes that are not UTF-8 (a damaged log) read as U+FFFD
      for (String line : new String(Files.readAllBytes(log), StandardCharsets.UTF_8).split("\\R")) {
        int i = line.indexOf("\"step\":");
        int end = i < 0 ? -1 : line.indexOf(',', i);
        if (end < 0 || !line.endsWith("}")) continue;  // not a step line, or cut short by a crash
        if (RunSummary.isSummaryLine(line)) continue;  // the old run's summary: this run writes its own
        long st;
        try {
          st = Long.parseLong(line.substring(i + 7, end));
        } catch (NumberFormatException e) {
          continue;
        }
        if (st < ck.resume().step()) kept.add(line);
      }
    }
    AtomicBoolean stop = new AtomicBoolean();
    CountDownLatch finished = new CountDownLatch(1);
    Thread hook = new Thread(() -> {
      stop.set(true);
      try {
        finished.await(120, TimeUnit.SECONDS);
      } catch (InterruptedException ignored) {
        Thread.currentThread().interrupt();
      }
    }, "athanor-sigterm");
    // more than one process (dp, tp, pp, any grid of them): every rank writes its part of each checkpoint (format 3),
    // rank 0 the manifest
    boolean sharded = comm != null && comm.size() > 1;
    BucketedReduction overlap = null;  // --dp with --overlap on where it applies; closed with the trainer
    try (CheckpointManager mgr = ck == null || !primary && !sharded ? null : new CheckpointManager(ck.dir(), ck.keep(), ck.async(),
            ck.runId(), sharded ? rankGroup(comm, groups, zero, model.tensorParallel().size()) : null);
        // ZeRO 3: each rank keeps its shard of the masters; the model's hooks gather a unit's weights before it runs
        // (with offload, its shard of the masters and of the step's gradient on DISK where the plan puts them); with
        // --overlap on (bucketBytes > 0) the next unit's gather runs ahead, and each unit's gradient fold runs as its
        // backward ends, on the communication thread
        ShardedWeights shards = zero == 3 ? ShardedWeights.attach(model, comm, offloadConfig, bucketBytes > 0) : null;
        // ZeRO 2 with the whole model in one process on the CPU: each unit's gradient is folded into the shards as its
        // backward ends (no whole-model gradient), with --overlap on on the communication thread while the backward goes
        // on; pipeline stages, tensor parallel and CUDA keep the whole-gradient fold
        UnitGradientFold folds = zero == 2 && pipeline == null && groups == null && UnitGradientFold.supports(model)
            ? UnitGradientFold.attach(model, comm, bucketBytes > 0 && comm != null && comm.size() > 1) : null;
        // ZeRO with offload: the optimizer keeps its shard of the moments the plan puts on DISK there
        Trainer trainer = shards != null ? new Trainer(model, tc, loader, shards, offloadConfig)
            : folds != null ? new Trainer(model, tc, loader, folds, offloadConfig)
            // ZeRO 1 with the optimizer on the host (CUDA): each rank its shard of the masters and moments there
            : zero == 1 && hostOffload != null ? new Trainer(model, tc, loader, hostOffload,
                DataParallel.optimizerShard(model.parameters(), comm))
            : zero >= 1 ? new Trainer(model, tc, loader, DataParallel.optimizerShard(model.parameters(),
                pipeline != null ? pipeline.dataParallelGroup() : groups != null ? groups.dp() : comm), zero >= 2, offloadConfig)
            : hostOffload != null ? new Trainer(model, tc, loader, hostOffload)
            : new Trainer(model, tc, loader, offloadConfig, weights)) {
      if (pipeline != null) {
        pipeline.attach(trainer);
      } else if (groups != null) {  // dp x tp: replica groups read their micro-batches, sum over dp, norm over tp
        DataParallel dpr = DataParallel.attach(trainer, groups.dp());
        trainer.setGradientReducer(new DataTensorParallel(dpr, new TensorParallelism(groups.tp(), model.config())));
      } else if (comm != null && model.tensorParallel().split()) {
        trainer.setGradientReducer(new TensorParallelism(comm, model.config()));  // every rank reads the same batches
      } else if (comm != null) {
        // ZeRO 0 and 1 on the CPU (a communication thread), ZeRO 0 on CUDA (a communication stream): the all-reduce
        // overlaps the last micro-batch's backward, bucket by bucket; with the optimizer on the host it runs after the
        // backward (the trainer never starts it during one)
        overlap = (hostOffload != null ? DataParallel.attach(trainer, comm)
            : DataParallel.attach(trainer, comm, bucketBytes)).overlap();
        if (overlap != null && primary) {
          out.printf("gradient all-reduce overlapped with the backward: %d buckets of at most %s (--bucket-mb), on a "
              + "communication %s%n", overlap.buckets().buckets().size(), Bytes.format(bucketBytes),
              model.device().isCuda() ? "stream" : "thread");
        }
        if (folds != null && folds.overlaps() && primary) {
          out.printf("ZeRO 2 gradient reduce-scatter overlapped with the backward: each of the %d units' folds on the "
              + "communication thread, at most %d in flight%n", model.parameters().units().size(), UnitGradientFold.IN_FLIGHT);
        }
      }
      if (shards != null && shards.readsAhead() && comm != null && comm.size() > 1 && primary) {
        out.printf("ZeRO 3 gathers read ahead and gradient reduce-scatter overlapped with the backward: each of the %d "
            + "units' folds on the communication thread, at most %d in flight%n", model.parameters().units().size(),
            UnitGradientFold.IN_FLIGHT);
      }
      // the step lines' comm_wait_ms and comm_buckets: the overlapped all-reduce's buckets, or ZeRO 2's or 3's unit folds
      java.util.function.Supplier<OverlapStats> overlapStats = overlap != null ? overlap::stats
          : folds != null && folds.overlaps() ? folds::stats : shards != null && shards.readsAhead() ? shards::stats : null;
      if (ck != null && ck.resume() != null) ck.resume().restore(trainer);
      if (mgr != null) mgr.prepare(trainer);  // host buffers for the first snapshot, allocated in the background
      Runtime.getRuntime().addShutdownHook(hook);  // with or without checkpoints: never end silently
      Termination.handledBy(true);
      try (BufferedWriter w = primary ? Files.newBufferedWriter(log, StandardCharsets.UTF_8) : new BufferedWriter(Writer.nullWriter());
          Progress bar = primary ? Progress.steps("train", tc.steps(), trainer.nextStep())
              : Progress.logLines("train", tc.steps(), trainer.nextStep(), out)) {
        for (String line : kept) {
          w.write(line);
          w.newLine();
        }
        w.flush();
        double ema = Double.NaN, stall = 0;
        // the summary's peaks: the highest live bytes per tier from here on, so what is live now (weights, gradients,
        // moments in memory, offload staging, the model's buffers) plus what the steps and checkpoint saves allocate
        // (activations, workspace, paging windows, snapshot copies); not what loading or restoring held before the loop
        MemoryManager.global().resetPeak();
        TransferStats.Snapshot loopStart = trainer.transfers();
        // the optimizer on the host: each line also carries the step's host-device copies and the waits for them
        HostTransfers hostStart = trainer.hostTransfers(), hostMark = hostStart;
        boolean diskFigures = offloadConfig.offloadsAnything() || hostOffload != null && hostOffload.moments().offloadsAnything();
        // each step's line counts the traffic since the previous line (checkpoint saves left out): with the update
        // deferred into the next forward (offload), the reads of a step's update start as it ends, between the lines
        TransferStats.Snapshot mark = loopStart;
        while (!trainer.done() && !(comm == null ? stop.get() : agreeToStop(comm, stop))) {
          StepResult r;
          TransferStats.Snapshot before = mark;
          TimedCommunicator.Counts talked = comm instanceof TimedCommunicator t ? t.counts() : null;
          OverlapStats waited = overlapStats != null ? overlapStats.get() : null;
          long gatherWait = shards != null ? shards.gatherWaitNanos() : 0, gathersAhead = shards != null ? shards.readAheads() : 0;
          try {
            r = trainer.step();
          } catch (RuntimeException e) {
            throw saveOnFailure(e, trainer, sharded ? null : mgr, ck, bar);
          } catch (OutOfMemoryError e) {  // Java heap: the model's native memory is intact, so the state can be saved
            throw saveOnFailure(new IllegalStateException("out of Java heap memory: " + e.getMessage(), e), trainer,
                sharded ? null : mgr, ck, bar);
          }
          results.add(r);
          // an offloaded run's line also carries the step's DISK traffic and stalls (checkpoint saves are not in it)
          mark = trainer.transfers();
          String line = diskFigures ? StepTraffic.of(r.step(), mark.minus(before)).appendTo(r) : r.toJson();
          if (hostOffload != null) {
            HostTransfers now = trainer.hostTransfers();
            line = HostTraffic.of(now.minus(hostMark)).appendTo(line);
            hostMark = now;
          }
          // with --dp, the time rank 0 spent in collectives during the step (waiting for the others included), and bytes
          if (talked != null) line = withCommunication(line, ((TimedCommunicator) comm).counts().minus(talked));
          if (waited != null) line = withOverlap(line, overlapStats.get().minus(waited));
          if (shards != null) line = withGathers(line, shards.gatherWaitNanos() - gatherWait, shards.readAheads() - gathersAhead);
          w.write(line);
          w.newLine();
          w.flush();
          if (ck != null && ck.every() > 0 && trainer.nextStep() % ck.every() == 0 && !trainer.done()) {
            stall = mgr.save(trainer);  // with more than one process: every rank writes its part (a collective)
            mark = trainer.transfers();  // the save's own traffic is in the summary, not in the next step's line
            hostMark = trainer.hostTransfers();
          }
          ema = Double.isNaN(ema) ? r.loss() : 0.9 * ema + 0.1 * r.loss();
          bar.update(r.step() + 1, String.format(Locale.ROOT, "loss %.3f (avg %.3f) | %s tok/s%s", r.loss(), ema,
              Counts.rate(r.tokensPerSecond()), stall > 0 ? String.format(Locale.ROOT, " | ckpt %.0f ms", stall * 1e3) : ""));
        }
        trainer.settle();  // a run stopped early: the last step's deferred update (offload) applied before anything saves
        if (mgr != null) {
          mgr.save(trainer);
          Path last = mgr.awaitWrite().orElseThrow();
          ck.events().addAll(mgr.events());
          if (stop.get() && primary) {
            bar.message("stopped by a termination signal at step " + trainer.nextStep() + "; state saved to " + last
                + "; resume with: athanor train " + String.join(" ", resumeArgs(ck)));
          }
        } else if (stop.get()) {
          bar.message("stopped by a termination signal at step " + trainer.nextStep() + " of " + tc.steps()
              + "; nothing was saved: without --checkpoint-dir a run keeps no state to resume from. To be able to stop "
              + "and resume, train with --checkpoint-dir DIR (a stopped run then continues with --resume auto).");
        }
        if (shards != null) shards.unshard();  // ZeRO 3: every rank gets the whole trained weights back (a collective)
        summary(w, results.size(), trainer.transfers().minus(loopStart),
            hostOffload != null ? trainer.hostTransfers().minus(hostStart) : null);
      }
      if (stop.get()) {
        throw new Stopped("training stopped by a termination signal" + (ck != null ? " (state saved)" : " (nothing saved)"));
      }
    } finally {
      Termination.handledBy(false);
      finished.countDown();
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException | IllegalArgumentException ignored) {
        // the JVM is already shutting down, or the hook was never added
      }
    }
    if (results.isEmpty()) throw new IllegalStateException("no step was run (the checkpoint is already at step " + tc.steps() + ")");
    return results;
  }

  /**
   * The processes of a run whose every rank writes its part of each checkpoint (format 3): with a grid, its dp, tp and
   * pp degrees; else every rank a data-parallel replica, or (--tp alone) a tensor-parallel rank.
   */
  private static RankGroup rankGroup(Communicator comm, ParallelGrid.Groups groups, int zero, int tp) {
    int dp = groups != null ? groups.dp().size() : comm.size() / tp, pp = groups != null ? groups.pp().size() : 1;
    return new RankGroup(comm.rank(), comm.size(), dp, tp, pp, zero, comm::barrier);
  }

  /**
   * Ends the log with the run's summary line ({@link RunSummary}): the steps this process ran, the allocator's peak
   * bytes per tier since the loop began, and {@code moved}, the DISK traffic of the loop (the final save included);
   * with the optimizer on the host, {@code host}, its copies and waits over the loop ({@link HostTraffic}; else null).
   */
  private static void summary(BufferedWriter w, int steps, TransferStats.Snapshot moved, HostTransfers host)
      throws IOException {
    String line = RunSummary.of(steps, MemoryManager.global(), moved).toJson();
    w.write(host != null ? HostTraffic.of(host).appendTo(line) : line);
    w.newLine();
    w.flush();
  }

  /**
   * A step's log line with this rank's collectives in the step added: {@code comm_ms}, {@code comm_bytes} (the bytes
   * handed to them) and {@code comm_sent_bytes} (the bytes they delivered from this rank to the others, {@link
   * dev.athanor.dist.Communicator#sentBytes}: what the parallel planner predicts).
   */
  static String withCommunication(String line, TimedCommunicator.Counts d) {
    return line.substring(0, line.length() - 1) + ",\"comm_ms\":" + Math.round(d.millis() * 1e3) / 1e3 + ",\"comm_bytes\":"
        + d.bytes() + ",\"comm_sent_bytes\":" + d.sent() + "}";
  }

  /**
   * A step's log line with the overlapped reduction's figures added: {@code comm_wait_ms}, the communication the
   * backward did not hide (CPU: the time the training thread waited for the communication thread, under ZeRO 0 and 1
   * for the gradient buckets after the backward, under ZeRO 2 for the unit folds handed over, during and after the
   * backward; CUDA: the time the compute stream stood waiting for the communication stream, from timing events), and
   * {@code comm_buckets} (the buckets all-reduced; under ZeRO 2 the unit folds, one per unit and micro-batch). {@code
   * comm_ms} counts the collectives' whole time on the CPU, the communication thread's included; on CUDA through NCCL
   * only the host time enqueueing them.
   */
  static String withOverlap(String line, OverlapStats d) {
    return line.substring(0, line.length() - 1) + ",\"comm_wait_ms\":" + Math.round(d.waitNanos() / 1e3) / 1e3
        + ",\"comm_buckets\":" + d.buckets() + "}";
  }

  /**
   * A ZeRO 3 step's log line with {@code gather_wait_ms}, the training thread's time in the weight gathers (synchronous,
   * or waiting for those read ahead on the communication thread), and {@code gathers_ahead}, the gathers read ahead.
   */
  static String withGathers(String line, long waitNanos, long ahead) {
    return line.substring(0, line.length() - 1) + ",\"gather_wait_ms\":" + Math.round(waitNanos / 1e3) / 1e3
        + ",\"gathers_ahead\":" + ahead + "}";
  }

  /** A 64-bit FNV-1a hash of the command line, to compare the ranks' flags. */
  static long fingerprint(List<String> args) {
    long h = 0xcbf29ce484222325L;
    for (String a : args) {
      for (byte b : (a + "\0").getBytes(StandardCharsets.UTF_8)) h = (h ^ (b & 0xff)) * 0x100000001b3L;
    }
    return h;
  }

  /** With --dp: whether any rank was asked to stop, so that all stop after the same step (and sets {@code stop} then). */
  private static boolean agreeToStop(Communicator comm, AtomicBoolean stop) {
    boolean any = DataParallel.anyRank(comm, stop.get());
    if (any) stop.set(true);
    return any;
  }

  /** Saves the last consistent state after a failed step (when checkpointing) and returns the exception to throw. */
  private static RuntimeException saveOnFailure(RuntimeException e, Trainer trainer, CheckpointManager mgr, Checkpointing ck,
      Progress bar) {
    if (mgr == null) return e;
    try {
      mgr.awaitWrite();
      mgr.save(trainer);
      Path saved = mgr.awaitWrite().orElseThrow();
      return new IllegalStateException("training failed at step " + trainer.nextStep() + ": " + e.getMessage()
          + "; the last consistent state was saved to " + saved + "; resume with: athanor train "
          + String.join(" ", resumeArgs(ck)), e);
    } catch (RuntimeException saveFailure) {
      e.addSuppressed(saveFailure);
      bar.message("could not save the state after the failure: " + saveFailure.getMessage());
      return e;
    }
  }

  /** The same command line with --resume auto (and --checkpoint-dir, when the run got it from --resume DIR). */
  static List<String> resumeArgs(Checkpointing ck) {
    List<String> args = ck.args();
    List<String> r = new ArrayList<>();
    for (int i = 0; i < args.size(); i++) {
      String a = args.get(i);
      if (a.equals("--resume")) {
        i++;
        continue;
      }
      if (a.startsWith("--resume=")) continue;
      r.add(a.contains(" ") ? "'" + a + "'" : a);
    }
    if (r.stream().noneMatch(a -> a.equals("--checkpoint-dir") || a.startsWith("--checkpoint-dir="))) {
      String d = ck.dir().toString();
      r.add("--checkpoint-dir");
      r.add(d.contains(" ") ? "'" + d + "'" : d);
    }
    r.add("--resume");
    r.add("auto");
    return r;
  }

  /** Tokens per second over all steps but the first (which includes one-time allocation). */
  static double meanTokensPerSecond(List<StepResult> rs) {
    double tokens = 0, secs = 0;
    for (int i = rs.size() > 1 ? 1 : 0; i < rs.size(); i++) {
      tokens += rs.get(i).tokens();
      secs += rs.get(i).seconds();
    }
    return secs > 0 ? tokens / secs : 0;
  }
}

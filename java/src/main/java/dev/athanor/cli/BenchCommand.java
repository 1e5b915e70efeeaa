package dev.athanor.cli;

import dev.athanor.cli.Options.Range;
import dev.athanor.dist.Communicator;
import dev.athanor.dist.DataParallel;
import dev.athanor.dist.DataTensorParallel;
import dev.athanor.dist.ParallelGrid;
import dev.athanor.dist.ReduceMode;
import dev.athanor.dist.ShardedWeights;
import dev.athanor.dist.TensorParallelism;
import dev.athanor.dist.TimedCommunicator;
import dev.athanor.dist.UnitGradientFold;
import dev.athanor.dist.pipeline.PipelineLayout;
import dev.athanor.dist.pipeline.PipelineStage;
import dev.athanor.io.AtomicFiles;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.HostOffload;
import dev.athanor.offload.HostOffloadPlanner;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.offload.OffloadedWeights;
import dev.athanor.offload.TransferStats;
import dev.athanor.params.Role;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code athanor bench}: model throughput on random tokens. {@code --mode train}: full {@link Trainer} steps
 * (forward, backward, global-norm clipping, AdamW) at batch x seq, median step time after warm-up steps; {@code
 * --mode decode}: greedy decoding with the KV cache after a random prompt, {@code --warmup-steps} untimed rounds
 * then {@code --steps} timed ones, the prefill and every decode step timed separately ({@link DecodeBench}:
 * median prefill, median step, decode tokens/s = batch / median step seconds). Prints one JSON object (the peer
 * is bench/model/torch_train.py with the same flags, measuring the same way).
 *
 * <p>{@code --mode train --dp N} measures data-parallel training over N processes started by mpirun ({@code athanor
 * launch bench ... --dp N}): every rank runs the same steps on its own micro-batches, with {@code --zero}, {@code
 * --reduce}, {@code --overlap} and {@code --bucket-mb} as {@code train} takes them ({@link OverlapOptions}); rank 0
 * times the steps (waiting for the others included) and prints the JSON, with the global tokens/s, the time and bytes
 * rank 0 spent in collectives per step, and what ran on the communication thread ({@code overlap}, {@code bucket_mb},
 * {@code overlapped}).
 *
 * <p>{@code --pp P --micro-batches M} (alone or with {@code --dp} and {@code --tp}, as {@code train} takes them)
 * measures pipeline-parallel training: each rank builds its stage of the model ({@link PipelineLayout}) and runs the
 * 1F1B schedule ({@link PipelineStage}) over M micro-batches of {@code --batch} sequences a step. Rank 0 (stage 0) prints
 * the JSON, with the pipeline bubble of the 1F1B schedule in theory, {@code (P-1)/(M+P-1)}, and the measured share of
 * its step time it spent blocked in sends, receives and collectives (waiting for the other stages included).
 */
@Command(name = "bench", sortOptions = false, abbreviateSynopsis = true,
    description = "Throughput of a model on random tokens, or of copies behind compute, as one JSON line on stdout.",
    footer = {"%nExamples:", "  athanor bench --preset gpt2 --mode train --batch 16 --seq 1024 --device cuda",
        "  athanor bench --mode decode --preset gpt2-tiny --batch 8 --threads 2",
        "  athanor bench --mode overlap --device cuda --json overlap.json"})
final class BenchCommand implements Callable<Integer> {
  @Spec CommandSpec spec;
  @ParentCommand Main main;

  /** What to measure. */
  enum Mode {
    TRAIN, DECODE, OVERLAP;

    @Override
    public String toString() {
      return name().toLowerCase(Locale.ROOT);
    }
  }

  @Option(names = "--mode", paramLabel = "MODE", defaultValue = "train", description = {"${COMPLETION-CANDIDATES}. Default: ${DEFAULT-VALUE}",
      "train: full training steps (forward, backward, clipping, AdamW), median step time after warm-up steps",
      "decode: greedy KV-cache decoding after a random prompt, median prefill and per-token step",
      "overlap: host->device copies on a copy stream behind GEMMs, against the same work on one stream"})
  Mode mode;

  @ArgGroup(exclusive = false, validate = false, heading = "%nModel (train, decode; one of --preset, --config, --model):%n", order = 1)
  Options.ModelOptions model = new Options.ModelOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nSteps (train, decode):%n", order = 2)
  Steps steps = new Steps();

  @ArgGroup(exclusive = false, validate = false, heading = "%nTrain (--mode train):%n", order = 3)
  Train train = new Train();

  @ArgGroup(exclusive = false, validate = false, heading = "%nDecode (--mode decode):%n", order = 4)
  Decode decode = new Decode();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOverlap (--mode overlap):%n", order = 5)
  OverlapBench.Args overlap = new OverlapBench.Args();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOffload (--mode train; CPU only):%n", order = 6)
  Options.OffloadOptions offload = new Options.OffloadOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nParallel (--mode train; processes started by mpirun or athanor launch):%n",
      order = 7)
  Parallel parallel = new Parallel();

  @ArgGroup(exclusive = false, validate = false, heading = "%nRuntime:%n", order = 8)
  Options.RuntimeOptions runtime = new Options.RuntimeOptions();

  /** Batch and rounds of train and decode. */
  static final class Steps {
    @Option(names = "--batch", paramLabel = "N", defaultValue = "8", description = "sequences. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int batch;

    @Option(names = "--steps", paramLabel = "N", description = "timed steps (train, default 10) or rounds (decode, default 5)")
    @Range(min = 1)
    Integer steps;

    @Option(names = "--warmup-steps", paramLabel = "N", defaultValue = "2",
        description = "untimed steps or rounds first (decode: at least 1). Default: ${DEFAULT-VALUE}")
    @Range(min = 0)
    int warmup;
  }

  /** Training-step shape. */
  static final class Train {
    @Option(names = "--seq", paramLabel = "TOKENS", description = "tokens per sequence (default: 256, or the context if shorter)")
    @Range(min = 1)
    Integer seq;
  }

  /** Data-parallel processes of --mode train, as {@code train} takes them (--overlap and --bucket-mb included). */
  static final class Parallel extends OverlapOptions {
    @Option(names = "--dp", paramLabel = "N", defaultValue = "1",
        description = "data-parallel processes (athanor launch bench ... --dp N); --batch stays per process, the tokens/s "
            + "count all of them. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int dp;

    @Option(names = "--tp", paramLabel = "N", defaultValue = "1",
        description = "tensor-parallel processes (athanor launch bench ... --tp N), as train takes them; with --dp a dp x tp "
            + "grid of dp x tp processes. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int tp;

    @Option(names = "--pp", paramLabel = "N", defaultValue = "1",
        description = "pipeline stages (athanor launch bench ... --pp N), as train takes them: the blocks cut into N stages "
            + "trained with the 1F1B schedule; dp x tp x pp processes. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int pp;

    @Option(names = "--micro-batches", paramLabel = "M",
        description = "micro-batches of --batch sequences per step with --pp (at least --pp), as train takes them. Default: --pp")
    @Range(min = 1)
    Integer microBatches;

    @Option(names = "--zero", paramLabel = "STAGE", defaultValue = "0",
        description = "ZeRO stage with --dp, as train takes it. Default: ${DEFAULT-VALUE}")
    @Range(min = 0, max = 3)
    int zero;

    @Option(names = "--reduce", paramLabel = "MODE", defaultValue = "deterministic",
        completionCandidates = ParallelOptions.ModeNames.class,
        description = "how sums over processes are formed: ${COMPLETION-CANDIDATES}. Default: ${DEFAULT-VALUE}")
    ReduceMode reduce;

    /** The same choice as train's flags, checked and started as train starts them. */
    ParallelOptions options() {
      ParallelOptions p = new ParallelOptions();
      p.dp = dp;
      p.tp = tp;
      p.pp = pp;
      p.microBatches = microBatches;
      p.zero = zero;
      p.reduce = reduce;
      p.mode = "manual";
      p.overlap = overlap;
      p.bucketMb = bucketMb;
      return p;
    }
  }

  /** Decoding shape. */
  static final class Decode {
    @Option(names = "--prompt-len", paramLabel = "TOKENS", defaultValue = "16", description = "random prompt tokens. Default: ${DEFAULT-VALUE}")
    @Range(min = 1)
    int promptLen;

    @Option(names = "--decode-tokens", paramLabel = "N", defaultValue = "64",
        description = "new tokens per round: one from the prefill, then steps. Default: ${DEFAULT-VALUE}")
    @Range(min = 2)
    int newTokens;
  }

  /** The option groups each mode takes (options of any other group are usage errors). */
  private static final Map<Mode, Set<Class<?>>> GROUPS = Map.of(
      Mode.TRAIN, Set.of(Options.ModelOptions.class, Steps.class, Train.class, Options.OffloadOptions.class, Parallel.class),
      Mode.DECODE, Set.of(Options.ModelOptions.class, Steps.class, Decode.class),
      Mode.OVERLAP, Set.of(OverlapBench.Args.class));

  @Override
  public Integer call() {
    checkModeOptions();
    if (overlap.json != null) OutputPaths.file(spec, "--json", overlap.json);
    Device device = runtime.apply();
    if (mode == Mode.OVERLAP) { // copies hidden behind compute, see OverlapBench
      OverlapBench.run(overlap, device, main.out);
      return 0;
    }
    if (mode == Mode.DECODE && steps.warmup < 1) {
      throw Options.usage(spec, "--warmup-steps must be >= 1 for decode (one full untimed round), got " + steps.warmup);
    }
    ModelConfig mc = model.config(spec);
    int b = steps.batch;
    int t = train.seq != null ? train.seq : Math.min(256, mc.maxSeqLen());
    OffloadConfig oc = OffloadConfig.NONE;
    HostOffloadPlanner.Plan hostPlan = null;  // CUDA: the optimizer on the host, or null
    if (mode == Mode.TRAIN) {
      offload.check(spec);
      if (parallel.tp > 1) {
        try {
          new dev.athanor.nn.TensorParallel(parallel.tp, 0).check(mc);
        } catch (IllegalArgumentException e) {
          throw Options.usage(spec, e.getMessage());
        }
      }
      ParallelOptions po = parallel.options();
      po.checkStages(spec, mc.layers());
      po.bucketBytes(spec);  // --bucket-mb checked before any work
      if (device.isCuda() && (long) po.dp * po.tp * po.pp > 1) {
        throw Options.usage(spec, "bench --dp/--tp/--pp measures CPU processes; on " + device + " use --device cpu (GPU data "
            + "parallel trains with: mpirun -np N ./athanor train --device cuda --dp N)");
      }
      Communicator c = po.start(spec, device, !offload.off(), 1);
      if (c != null) {
        try (TimedCommunicator comm = new TimedCommunicator(c)) {
          return parallel(mc, device, b, t, comm);
        }
      }
      OffloadPlanner.Job job = new OffloadPlanner.Job(mc, device, benchConfig(b, t, 1, 1), false, false, false);
      // on CUDA the optimizer goes to the host when the job does not fit on the device
      hostPlan = device.isCuda() && !offload.off() ? TrainCommand.hostOffloadPlan(spec, offload, job) : null;
      OffloadPlan plan = hostPlan != null ? null : TrainCommand.offloadPlan(spec, offload, job);  // checks that it fits
      if (hostPlan != null) for (String line : hostPlan.describe()) main.err.println(line);
      if (plan != null) {
        PlanFile.print(plan, main.err);  // stdout is the JSON
        oc = plan.config(offload.dir);
      }
    } else {
      int capacity = (int) Math.min(mc.maxSeqLen(), (long) decode.promptLen + decode.newTokens);
      MemoryCheck.require(Footprint.decoding(mc, device, Transformer.defaultComputeDtype(device), b,
          Math.min(decode.promptLen, capacity), capacity), "decode with this model", "use a smaller --batch, --prompt-len or "
          + "--decode-tokens (the KV cache grows with batch x (prompt + new tokens))", "use a smaller model");
    }
    boolean weightsOnDisk = oc.onDisk(Role.MASTER);
    try (Transformer m = weightsOnDisk ? Transformer.withoutWeights(mc, device) : Transformer.create(mc, device);
        OffloadedWeights w = weightsOnDisk
            ? OffloadedWeights.attach(m, oc.resolvedDirectory(), oc.prefetch(), oc.residentWeights()) : null) {
      m.initialize(1);
      if (mode == Mode.TRAIN) {
        int n = steps.steps != null ? steps.steps : 10;
        HostOffload host = hostPlan != null ? hostPlan.offload(offload.dir) : null;
        if (host != null) m.setRecompute(hostPlan.job().recompute());
        StepTimes st = host == null ? trainSteps(m, b, t, n, steps.warmup, new SplittableRandom(1), oc, w)
            : trainSteps(m, b, t, 1, n, steps.warmup, new SplittableRandom(1), 1, null,
                (loader, tc) -> new Trainer(m, tc, loader, host));
        Map<String, Object> j = trainJson(m, b, t, n, st.millis());
        if (host != null) {  // the optimizer on the host (CUDA)
          Map<String, Object> o = new java.util.LinkedHashMap<>();
          o.put("optimizer_on_host", true);
          o.put("disk_roles", hostPlan.diskMoments().stream().map(r -> r.name().toLowerCase(java.util.Locale.ROOT)).sorted().toList());
          o.put("recompute", hostPlan.job().recompute());
          o.put("host_device_bytes_per_step", hostPlan.hostTrafficPerStep());
          o.put("disk_bytes_per_step", hostPlan.diskTrafficPerStep());
          j.put("offload", o);
        }
        if (oc.offloadsAnything()) {
          Map<String, Object> o = new java.util.LinkedHashMap<>();
          o.put("disk_roles", oc.diskRoles().stream().map(r -> r.name().toLowerCase(java.util.Locale.ROOT)).sorted().toList());
          o.put("activations_on_disk", oc.activationsOnDisk());
          o.put("resident_weight_units", oc.residentWeights().size());
          Map<String, Object> kept = new java.util.TreeMap<>();  // per role on DISK (by name), its units kept in memory
          for (Role r : oc.diskRoles()) kept.put(r.name().toLowerCase(java.util.Locale.ROOT), oc.resident(r).size());
          o.put("resident_units", kept);
          o.put("prefetch", oc.prefetch());
          o.put("disk_read_bytes_per_step", st.traffic().diskToHost() / n);
          o.put("disk_write_bytes_per_step", st.traffic().hostToDisk() / n);
          o.put("stall_ms_per_step", Json.round(st.traffic().stallNanos() / 1e6 / n, 3));
          o.put("overlap", Json.round(st.traffic().overlap(), 4));
          j.put("offload", o);
        }
        main.out.println(Json.write(j));
      } else {
        int p = decode.promptLen, rounds = steps.steps != null ? steps.steps : 5;
        int[] prompts = DecodeBench.randomPrompts(mc.vocabSize(), b, p, 1);
        main.out.println(DecodeBench.json(m, device, DecodeBench.measure(m, prompts, b, p, decode.newTokens, steps.warmup, rounds)));
      }
    }
    return 0;
  }

  /** Usage error for an option of a group that does not belong to --mode (e.g. --batch with --mode overlap). */
  private void checkModeOptions() {
    Set<Class<?>> allowed = GROUPS.get(mode);
    for (OptionSpec o : spec.commandLine().getParseResult().matchedOptions()) {
      if (o.group() == null) continue;
      Class<?> g = o.group().typeInfo().getType();
      if (allowed.contains(g) || GROUPS.values().stream().noneMatch(s -> s.contains(g))) continue;
      List<String> takes = new ArrayList<>();
      for (OptionSpec x : spec.options()) {
        if (x.group() != null && allowed.contains(x.group().typeInfo().getType())) takes.add(x.longestName());
      }
      throw Options.usage(spec, "option '" + o.longestName() + "' does not apply to --mode " + mode + " (it takes "
          + String.join(", ", takes) + ", and --device, --threads, --mem-*)");
    }
  }

  /**
   * Milliseconds of each timed step, the offload's DISK traffic and stalls over them, and (with a timed communicator)
   * what each timed step spent in collectives.
   */
  record StepTimes(double[] millis, TransferStats.Snapshot traffic, TimedCommunicator.Counts[] comm) {}

  /**
   * {@code steps} {@link Trainer} steps (forward, backward, clipping, AdamW) after {@code warm} untimed ones, on a
   * sequential loader over a temporary shard of uniformly random tokens, offloaded as {@code oc} says (the weights in
   * {@code weights} when on DISK).
   */
  static StepTimes trainSteps(Transformer m, int b, int t, int steps, int warm, SplittableRandom rng, OffloadConfig oc,
      OffloadedWeights weights) {
    return trainSteps(m, b, t, 1, steps, warm, rng, 1, null, (loader, tc) -> new Trainer(m, tc, loader, oc, weights));
  }

  /**
   * As above, with {@code accum} micro-batches of {@code b} sequences a step (a pipeline's), the trainer {@code
   * trainer} makes (given the loader and the settings; a parallel one reads its replica's micro-batches) over tokens for
   * {@code replicas} data-parallel replicas (every rank draws them alike), and what each timed step spent in {@code
   * comm}'s collectives (null: none).
   */
  static StepTimes trainSteps(Transformer m, int b, int t, int accum, int steps, int warm, SplittableRandom rng, int replicas,
      TimedCommunicator comm, java.util.function.BiFunction<DataLoader, TrainConfig, Trainer> trainer) {
    ModelConfig mc = m.config();
    int total = steps + warm;
    TrainConfig tc = benchConfig(b, t, accum, total);
    Path dir = null;
    try {
      dir = Files.createTempDirectory("athanor-bench");
      Path shard = dir.resolve("random.bin");
      try (TokenShardWriter w = TokenShardWriter.create(shard, mc.vocabSize())) {
        w.write(rng.ints((long) total * b * t * accum * replicas + 1, 0, mc.vocabSize()).toArray());
      }
      double[] ms = new double[steps];
      TimedCommunicator.Counts[] talked = new TimedCommunicator.Counts[comm == null ? 0 : steps];
      try (TokenDataset data = TokenDataset.open(shard);
          Trainer tr = trainer.apply(new DataLoader(data, b, t, false, 1), tc)) {
        TransferStats.Snapshot before = TransferStats.Snapshot.ZERO;
        for (int s = -warm; s < steps; s++) {
          if (s == 0) before = tr.transfers();
          TimedCommunicator.Counts c0 = comm != null ? comm.counts() : null;
          long t0 = System.nanoTime();
          tr.step();
          if (m.device().isCuda()) Cuda.synchronize(m.device().index());
          if (s >= 0) {
            ms[s] = (System.nanoTime() - t0) / 1e6;
            if (comm != null) talked[s] = comm.counts().minus(c0);
          }
        }
        return new StepTimes(ms, tr.transfers().minus(before), talked);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } finally {
      if (dir != null) {
        try {
          AtomicFiles.deleteTree(dir);
        } catch (IOException ignored) {
          // a temporary directory
        }
      }
    }
  }

  /**
   * --mode train with --dp, --tp and --pp on this rank of {@code comm}: the model (this rank's stage, and its
   * tensor-parallel part of it) initialised alike on every rank, the timed steps, and on rank 0 the JSON line (global
   * tokens/s; rank 0's median time and bytes in collectives per step; with --pp the bubble).
   */
  private int parallel(ModelConfig mc, Device device, int b, int t, TimedCommunicator comm) {
    int n = steps.steps != null ? steps.steps : 10, dp = parallel.dp, tp = parallel.tp, pp = parallel.pp;
    int micro = pp > 1 ? parallel.options().micro() : 1;
    long bucketBytes = parallel.bucketBytes(spec);
    try (ParallelGrid.Groups g = dp > 1 && tp > 1 || pp > 1 ? new ParallelGrid(dp, tp, pp).split(comm) : null) {
      Communicator tpComm = g != null ? g.tp() : comm;
      PipelineLayout pipeline = pp > 1 ? new PipelineLayout(mc, pp) : null;
      Stage stage = pipeline != null ? pipeline.stage(g.at().pp()) : Stage.whole(mc);
      try (Transformer m = tp > 1 ? TensorParallelism.create(mc, device, tpComm, stage)
          : new Transformer(mc, device, Transformer.defaultComputeDtype(device), stage);
          // ZeRO 2 with the whole model in each process, as train runs it: each unit's gradient folded into the shards as
          // its backward ends, with --overlap on on the communication thread (closed after the trainer)
          UnitGradientFold folds = parallel.zero == 2 && pipeline == null && tp == 1 && UnitGradientFold.supports(m)
              ? UnitGradientFold.attach(m, comm, bucketBytes > 0 && dp > 1) : null) {
        m.initialize(1);
        // ZeRO 3 as train runs it (ParallelOptions refuses it with --tp and --pp): each rank keeps its shard of the
        // masters, copied from the weights just initialised alike on every rank; with --overlap on the next unit's
        // gather and each unit's fold on the communication thread (closed after the trainer, before the model)
        try (ShardedWeights shards = parallel.zero == 3 ? ShardedWeights.attach(m, comm, OffloadConfig.NONE, bucketBytes > 0)
            : null) {
          benchParallel(m, mc, b, t, n, micro, comm, g, pipeline, stage, folds, shards, bucketBytes);
        }
      }
    }
    return 0;
  }

  /** {@link #parallel}'s steps and JSON line on the model {@code m} as attached (ZeRO 2's folds or ZeRO 3's shards). */
  private void benchParallel(Transformer m, ModelConfig mc, int b, int t, int n, int micro, TimedCommunicator comm,
      ParallelGrid.Groups g, PipelineLayout pipeline, Stage stage, UnitGradientFold folds, ShardedWeights shards,
      long bucketBytes) {
    int dp = parallel.dp, tp = parallel.tp, pp = parallel.pp;
    Communicator tpComm = g != null ? g.tp() : comm, dpComm = g != null ? g.dp() : comm;
    DataParallel[] replica = new DataParallel[1];
    StepTimes st = trainSteps(m, b, t, micro, n, steps.warmup, new SplittableRandom(1), dp, comm, (loader, tc) -> {
      Trainer tr = shards != null ? new Trainer(m, tc, loader, shards)
          : folds != null ? new Trainer(m, tc, loader, folds)
          : parallel.zero >= 1 ? new Trainer(m, tc, loader, DataParallel.optimizerShard(m.parameters(), dpComm),
          parallel.zero >= 2) : new Trainer(m, tc, loader);
      if (pipeline != null) {  // 1F1B over the pp group; the stage's gradient summed over dp, its norm over tp
        new PipelineStage(g.pp(), g.dp(), g.tp(), pipeline, m).attach(tr);
      } else if (tp == 1) {  // ZeRO 0 and 1: with --overlap on, the all-reduce in buckets during the backward
        replica[0] = DataParallel.attach(tr, comm, bucketBytes);
      } else if (dp == 1) {
        tr.setGradientReducer(new TensorParallelism(comm, mc));  // every rank reads the same batches
      } else {
        tr.setGradientReducer(new DataTensorParallel(DataParallel.attach(tr, dpComm), new TensorParallelism(tpComm, mc)));
      }
      return tr;
    });
    if (comm.rank() != 0) return;
    Map<String, Object> j = trainJson(m, b * micro * dp, t, n, st.millis());
    j.put("dp", dp);
    j.put("tp", tp);
    j.put("pp", pp);
    j.put("zero", parallel.zero);
    j.put("reduce", comm.mode().name().toLowerCase(Locale.ROOT));
    j.put("overlap", parallel.overlap ? "on" : "off");
    j.put("bucket_mb", parallel.bucketMb);
    // what ran on the communication thread: where --overlap applies (dp > 1 alone, CPU), and what it does there
    var o = replica[0] != null ? replica[0].overlap() : null;
    j.put("overlapped", o != null ? "gradient all-reduce in " + o.buckets().buckets().size() + " buckets"
        : folds != null && folds.overlaps() ? "ZeRO 2 unit folds (" + m.parameters().units().size() + " units a micro-batch)"
        : shards != null && shards.readsAhead() ? "ZeRO 3 gathers read ahead and unit folds (" + m.parameters().units().size()
        + " units a micro-batch)" : "nothing");
    j.put("batch_per_process", b);
    double[] commMs = Arrays.stream(st.comm()).mapToDouble(TimedCommunicator.Counts::millis).toArray();
    j.put("comm_ms_median", Json.round(median(commMs), 3));
    j.put("comm_bytes_per_step", st.comm()[st.comm().length - 1].bytes());  // handed to collectives
    j.put("comm_sent_bytes_per_step", st.comm()[st.comm().length - 1].sent());  // delivered to the other rank(s)
    if (pipeline != null) {
      j.put("micro_batches", micro);
      j.put("stage_blocks", stage.blocks());
      j.put("bubble_1f1b_theory", Json.round(pipeline.bubble(micro), 4));  // (pp-1)/(M+pp-1)
      // measured: the share of stage 0's step it spent blocked in sends, receives and collectives (its idle
      // waits for the other stages and the transfers), per step, then the median
      double[] blocked = new double[n];
      for (int i = 0; i < n; i++) blocked[i] = commMs[i] / st.millis()[i];
      j.put("stage0_comm_fraction_median", Json.round(median(blocked), 4));
    }
    main.out.println(Json.write(j));
  }

  /** The JSON of --mode train: shape, step times and their median, tokens/s and the FLOP rate ({@code b} sequences a step). */
  private static Map<String, Object> trainJson(Transformer m, int b, int t, int n, double[] ms) {
    ModelConfig mc = m.config();
    double med = median(ms);
    double tps = b * t / (med / 1e3);
    // FLOPs per token: 6 N (matmul weights incl. the head) + 6 L T C (causal attention: 12 L T C halved)
    long params = mc.parameterCount() - (mc.family().hfModelType().equals("gpt2") ? (long) mc.maxSeqLen() * mc.hidden() : 0);
    double flopsPerToken = 6.0 * params + 6.0 * mc.layers() * t * mc.hidden();
    Map<String, Object> j = DecodeBench.header(m, m.device(), b);
    j.put("mode", "train");
    j.put("seq", t);
    j.put("steps", n);
    j.put("step_ms_median", Json.round(med, 3));
    j.put("step_ms", Arrays.stream(ms).boxed().toList());
    j.put("tokens_per_s", Json.round(tps, 1));
    j.put("flops_per_token", Json.significant(flopsPerToken, 4));
    j.put("achieved_tflops", Json.round(tps * flopsPerToken / 1e12, 3));
    return j;
  }

  /** The training settings of {@code --mode train}: constant lr 1e-4, sequential batches, {@code accum} micro-batches a step. */
  static TrainConfig benchConfig(int batch, int seq, int accum, int steps) {
    return new TrainConfig(steps, batch, seq, accum, 1e-4f, 1e-4f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
  }

  static double median(double[] x) {
    return DecodeBench.median(x);
  }
}

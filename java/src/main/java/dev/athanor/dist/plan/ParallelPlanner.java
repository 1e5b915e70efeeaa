package dev.athanor.dist.plan;

import dev.athanor.dist.pipeline.PipelineLayout;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.TensorParallel;
import dev.athanor.params.ParamSpec;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Chooses a data × tensor × pipeline × ZeRO layout (and recomputation) for a training job on {@code world} processes
 * from a cost model, without running anything:
 *
 * <ul>
 *   <li><b>memory per rank</b> (the busiest pipeline stage): FP32 weights, gradients (twice with accumulation), AdamW's
 *       two moments (divided by dp from ZeRO 1 on) of the stage's parameters (split ones divided by tp; a tied head's
 *       copy of the embeddings on the last stage), plus the activations of the micro-batches the stage keeps in flight
 *       (1F1B: {@code min(pp − s, M)} on stage {@code s}; not divided by tp, so the estimate errs on the safe side) and
 *       its work buffers, from the same sizes {@link Footprint} uses, and the receive buffers of the deterministic sums;
 *   <li><b>bytes sent per step</b> by the busiest rank: data parallel, a ring all-reduce of its gradient part, {@code
 *       2 (dp−1)/dp} of it, one more {@code (dp−1)/dp} with ZeRO 1 (Athanor all-reduces, then all-gathers the updated
 *       masters); ZeRO 2 reduce-scatters each micro-batch ({@code (dp−1)/dp} each) and all-gathers the masters once;
 *       ZeRO 3 gathers the weights unit by unit in each micro-batch's forward and again in its backward and
 *       reduce-scatters each unit's gradient ({@code 3 (dp−1)/dp} per micro-batch); tensor parallel, per micro-batch and block 4 all-reduces
 *       of {@code B × T × C} (6 with recomputation), each {@code 2 (tp−1)/tp} of it; pipeline, per micro-batch one
 *       activation forward and one gradient back;
 *   <li><b>time</b>: {@code 6 × parameters × tokens} FLOPs ({@code 8 ×} with recomputation) spread over the ranks at the
 *       measured speed, stretched by the pipeline bubble {@code (pp−1)/(M+pp−1)}, plus the bytes at the link's
 *       bandwidth and its latency per message (no overlap is assumed: the CPU collectives block).
 * </ul>
 *
 * Among the layouts that fit the budget and that Athanor can run ({@link #unsupported}), the fastest is chosen; the
 * others are kept with their numbers (runners-up) or the reason they were left out.
 */
public final class ParallelPlanner {
  private ParallelPlanner() {}

  /** Speeds the cost model uses. */
  public record Hardware(double flopsPerRank, double linkBytesPerSecond, double linkLatencySeconds) {
    public Hardware {
      if (!(flopsPerRank > 0) || !(linkBytesPerSecond > 0) || !(linkLatencySeconds >= 0)) {
        throw new IllegalArgumentException("hardware speeds must be positive: " + flopsPerRank + " FLOP/s per rank, "
            + linkBytesPerSecond + " B/s link, " + linkLatencySeconds + " s latency");
      }
    }
  }

  /**
   * A training job: {@code batch × seq} tokens per micro-batch and {@code microBatches} micro-batches per step over all
   * data-parallel replicas (the global batch is {@code batch × microBatches}), {@code memoryPerRank} bytes per process.
   * Fixed dimensions ({@code > 0}) are kept; 0 lets the planner choose.
   */
  public record Job(ModelConfig model, Device device, int world, int batch, int seq, int microBatches, long memoryPerRank,
      Hardware hardware, int fixedDp, int fixedTp, int fixedPp, int fixedZero) {
    public Job {
      Objects.requireNonNull(model, "model");
      Objects.requireNonNull(device, "device");
      Objects.requireNonNull(hardware, "hardware");
      if (world < 1) throw new IllegalArgumentException("world " + world + " must be >= 1 process");
      if (batch < 1 || seq < 1) throw new IllegalArgumentException("batch " + batch + " and seq " + seq + " must be >= 1");
      if (microBatches < 1) throw new IllegalArgumentException("micro-batches per step " + microBatches + " must be >= 1");
      if (memoryPerRank < 1) throw new IllegalArgumentException("memory per rank " + memoryPerRank + " must be >= 1 byte");
      if (fixedDp < 0 || fixedTp < 0 || fixedPp < 0 || fixedZero < 0 || fixedZero > 3) {
        throw new IllegalArgumentException("fixed dimensions must be >= 0 (0: free) and zero <= 3: dp " + fixedDp + ", tp " + fixedTp
            + ", pp " + fixedPp + ", zero " + fixedZero);
      }
    }

    /** The job with nothing fixed. */
    public Job(ModelConfig model, Device device, int world, int batch, int seq, int microBatches, long memoryPerRank,
        Hardware hardware) {
      this(model, device, world, batch, seq, microBatches, memoryPerRank, hardware, 0, 0, 0, 0);
    }
  }

  /** A layout: {@code dp × tp × pp} processes, a ZeRO stage, recomputation on or off. */
  public record Layout(int dp, int tp, int pp, int zero, boolean recompute) {
    @Override
    public String toString() {
      return "dp " + dp + " x tp " + tp + " x pp " + pp + ", zero " + zero + (recompute ? ", recompute" : "");
    }
  }

  /**
   * A layout's numbers. {@code memoryParts}: bytes per component on the busiest stage; {@code excluded}: why the
   * layout cannot be chosen (null when it can).
   */
  public record Estimate(Layout layout, int microBatchesPerRank, long memoryBytes, Map<String, Long> memoryParts,
      long commBytes, double bubble, double computeSeconds, double commSeconds, String excluded) {
    /** The estimated seconds of one step. */
    public double stepSeconds() {
      return computeSeconds / (1 - bubble) + commSeconds;
    }

    public boolean fits() {
      return excluded == null;
    }
  }

  /** The chosen layout (null when none fits), every candidate that fits (fastest first) and those left out. */
  public record Result(Job job, Estimate chosen, List<Estimate> fitting, List<Estimate> excluded) {}

  /** Plans {@code job}. */
  public static Result plan(Job job) {
    ModelConfig c = job.model();
    List<Estimate> ok = new ArrayList<>(), out = new ArrayList<>();
    for (int tp = 1; tp <= job.world(); tp++) {
      if (job.world() % tp != 0 || job.fixedTp() > 0 && tp != job.fixedTp()) continue;
      for (int pp = 1; pp <= job.world() / tp; pp++) {
        if ((job.world() / tp) % pp != 0 || job.fixedPp() > 0 && pp != job.fixedPp()) continue;
        int dp = job.world() / (tp * pp);
        if (job.fixedDp() > 0 && dp != job.fixedDp()) continue;
        for (int zero = 0; zero <= 3; zero++) {
          if (job.fixedZero() > 0 && zero != job.fixedZero() || job.fixedZero() == 0 && zero > 0 && dp == 1) continue;
          for (boolean recompute : new boolean[] {false, true}) {
            Estimate e = estimate(job, new Layout(dp, tp, pp, zero, recompute));
            (e.fits() ? ok : out).add(e);
          }
        }
      }
    }
    ok.sort(Comparator.comparingDouble(Estimate::stepSeconds).thenComparingLong(Estimate::memoryBytes));
    return new Result(job, ok.isEmpty() ? null : ok.get(0), List.copyOf(ok), List.copyOf(out));
  }

  /** Why Athanor cannot run {@code l} today (null: it can). */
  public static String unsupported(Layout l) {
    if (l.zero() > 3) return "ZeRO " + l.zero() + " does not exist";
    if ((l.zero() == 1 || l.zero() == 3) && l.dp() == 1) return "ZeRO " + l.zero() + " needs dp > 1";
    if (l.tp() > 1 && l.zero() > 0) return "ZeRO with tensor parallel is not built yet";
    if (l.pp() > 1 && l.tp() > 1) return "pipeline with tensor parallel is not built yet";
    if (l.pp() > 1 && l.zero() > 1) return "ZeRO " + l.zero() + " with pipeline parallel is not built yet";
    return null;
  }

  /** The numbers of {@code l} for {@code job} (with the reason it is left out, if any). */
  public static Estimate estimate(Job job, Layout l) {
    ModelConfig c = job.model();
    int m = job.microBatches() % l.dp() == 0 ? job.microBatches() / l.dp() : 0;
    String why = null;
    if (m == 0) why = "dp " + l.dp() + " does not divide the " + job.microBatches() + " micro-batches per step";
    else if (l.pp() > c.layers()) why = "pp " + l.pp() + " exceeds the " + c.layers() + " blocks";
    else if (l.pp() > 1 && m < l.pp()) why = m + " micro-batches per replica are fewer than pp " + l.pp();
    else {
      try {
        new TensorParallel(l.tp(), 0).check(c);
      } catch (IllegalArgumentException e) {
        why = e.getMessage().replace("--tp", "tp");
      }
    }
    if (why == null) why = unsupported(l);
    if (l.pp() > c.layers()) return new Estimate(l, m, 0, Map.of(), 0, 0, 0, 0, why);  // no such stages to size
    PipelineLayout pipeline = new PipelineLayout(c, l.pp());
    int mb = Math.max(1, m);
    DType dt = DType.F32;
    long tokens = (long) job.batch() * job.seq();
    // memory: the busiest stage
    long best = -1;
    Map<String, Long> parts = Map.of();
    long stageParamsMax = 0;
    for (int s = 0; s < l.pp(); s++) {
      Stage st = pipeline.stage(s);
      long p = stageParameters(c, st, l.tp());
      stageParamsMax = Math.max(stageParamsMax, p);
      long weights = 4 * p;
      // zero 2: each micro-batch's gradient and the step's sum of this rank's shard (no whole-size sum)
      long grads = l.zero() >= 2 ? 4 * p + 4 * p / l.dp() : 4 * p * (mb > 1 ? 2 : 1);
      long moments = 8 * p / (l.zero() >= 1 ? l.dp() : 1);
      if (l.zero() >= 3) {
        // as ShardedWeights runs it: the shards of the masters and of the step's gradient (one element more than 1/dp at
        // most), plus the gathered windows: at most two units' weights at once (the head and the tied embeddings it
        // reads) and as many gradient windows, bounded by the two largest units. gpt2-tiny at dp 2 (bench/results/
        // 2026-12-04-cpu-zero3-memory-*.md): the windows peak at the tied head's backward, the embeddings' weights and
        // gradient (98.7 MiB of this bound's 104.7); the whole estimate, 248.1 MiB, bounds the measured 238.1
        long windows = 4 * twoLargestUnits(c, l.tp());
        weights = 4 * (p / l.dp() + 1) + windows;
        grads = 4 * (p / l.dp() + 1) + windows;
      }
      long inFlight = l.pp() > 1 ? Math.min(l.pp() - s, mb) : 1;
      long acts = Footprint.stageActivationBytes(c, st, job.device(), dt, job.batch(), job.seq(), l.recompute()) * inFlight;
      long buffers = Footprint.stageBufferBytes(c, st, job.device(), dt, job.batch(), job.seq());
      // the deterministic sums' receive buffers, kept per communicator, plus one element per rank: over dp the gradient
      // (at most 1 GiB per piece; zero 2 folds in pieces of 2^20 elements per rank and also assembles the norm chunk
      // that straddles its shard's start), and the step's micro-batch losses gathered; over tp one activation (B, T, C)
      long dpScratch = l.zero() >= 2 ? Math.min(4 * p, 4L * l.dp() << 20) + Math.min(4 * p, 4L << 20)
          : Math.min(4 * p, 1L << 30);
      long scratch = (l.dp() > 1 ? dpScratch + 4L * l.dp() + 4L * mb * (1 + l.dp()) : 0)
          + (l.tp() > 1 ? 4 * tokens * c.hidden() + 4L * l.tp() : 0);
      long total = weights + grads + moments + acts + buffers + scratch;
      if (total > best) {
        best = total;
        Map<String, Long> pm = new LinkedHashMap<>();
        pm.put("weights", weights);
        pm.put("gradients", grads);
        pm.put("AdamW state", moments);
        pm.put("activations", acts);
        pm.put("buffers", buffers);
        pm.put("communication", scratch);
        parts = pm;
      }
    }
    if (why == null && best > job.memoryPerRank()) {
      why = "needs " + Footprint.size(best) + " per rank, the budget is " + Footprint.size(job.memoryPerRank());
    }
    // communication of the busiest rank
    long comm = 0, messages = 0;
    if (l.dp() > 1) {
      // as Athanor runs them: zero 0 all-reduces the gradient (2 (dp-1)/dp of it); zero 1 also all-gathers the updated
      // masters (+1); zero 2 reduce-scatters every micro-batch's gradient into the shard's sum (1 each) and all-gathers
      // the masters (+1); zero 3 gathers each unit's weights in every micro-batch's forward and backward and folds each
      // unit's gradient into its owners' shards (3 per micro-batch, one collective per unit each)
      int passes = l.zero() == 3 ? 3 * mb : l.zero() == 2 ? mb + 1 : l.zero() == 1 ? 3 : 2;
      comm += (long) (passes * (l.dp() - 1.0) / l.dp() * 4 * stageParamsMax);
      long perPass = l.zero() == 3 ? c.layers() + 2L : 1;  // zero 3: the embeddings, each block, the head
      messages += (long) passes * perPass * (l.dp() - 1);
    }
    int blocks = pipeline.stage(0).blocks();
    if (l.tp() > 1) {
      long per = (long) (2.0 * (l.tp() - 1) / l.tp() * 4 * tokens * c.hidden());
      int reductions = l.recompute() ? 6 : 4;
      comm += (long) mb * blocks * reductions * per;
      messages += (long) mb * blocks * reductions * 2L * (l.tp() - 1);
    }
    if (l.pp() > 1) {
      comm += (long) mb * 2 * 4 * tokens * c.hidden();
      messages += 2L * mb;
    }
    double flops = (l.recompute() ? 8.0 : 6.0) * c.parameterCount() * tokens * job.microBatches() / (double) job.world();
    double compute = flops / job.hardware().flopsPerRank();
    double commSeconds = comm / job.hardware().linkBytesPerSecond() + messages * job.hardware().linkLatencySeconds();
    double bubble = pipeline.bubble(mb);
    return new Estimate(l, m, best, parts, comm, bubble, compute, commSeconds, why);
  }

  /** Parameters one rank of stage {@code st} holds under tensor parallel {@code tp} (a tied head's copy included). */
  static long stageParameters(ModelConfig c, Stage st, int tp) {
    List<ParamSpec> specs = new ArrayList<>();
    if (st.embedding()) specs.addAll(c.embeddingSpecs());
    for (int b = st.firstBlock(); b < st.endBlock(); b++) specs.addAll(c.blockSpecs(b));
    if (st.head()) {
      specs.addAll(c.headSpecs());
      if (c.tiedEmbeddings() && !st.embedding()) specs.add(c.embeddingSpecs().get(0));
    }
    long n = 0;
    for (ParamSpec p : specs) n += TensorParallel.split(c, p.name()).replicated() || tp == 1 ? p.numel() : p.numel() / tp;
    return n;
  }

  /**
   * The parameters of the two largest units (the embeddings, a block, the head with its own weights) on one
   * tensor-parallel rank: ZeRO 3's bound of the windows gathered at once.
   */
  private static long twoLargestUnits(ModelConfig c, int tp) {
    long block = stageParameters(c, new Stage(0, 1, false, false), tp);
    long emb = 0, head = 0;
    for (ParamSpec p : c.embeddingSpecs()) emb += p.numel();
    for (ParamSpec p : c.headSpecs()) head += p.numel();
    List<Long> units = new ArrayList<>(List.of(emb, head, block, c.layers() > 1 ? block : 0L));
    units.sort(Comparator.reverseOrder());
    return units.get(0) + units.get(1);
  }
}

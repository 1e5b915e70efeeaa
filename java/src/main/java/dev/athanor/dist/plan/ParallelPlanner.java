package dev.athanor.dist.plan;

import dev.athanor.dist.Communicator;
import dev.athanor.dist.pipeline.PipelineLayout;
import dev.athanor.nn.Family;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
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
 *   <li><b>memory per rank</b> (the busiest pipeline stage): FP32 weights (the masters; on CUDA, which computes in BF16,
 *       also the BF16 compute weights, 2 bytes per parameter), FP32 gradients (twice with accumulation), AdamW's
 *       two moments (divided by dp from ZeRO 1 on) of the stage's parameters (split ones, the vocabulary-parallel
 *       embedding and head included, divided by tp; a tied head's copy of the embeddings on the last stage), plus the activations of the micro-batches the stage keeps in flight
 *       (1F1B: {@code min(pp − s, M)} on stage {@code s}; not divided by tp, so the estimate errs on the safe side, but
 *       with sequence parallelism the residual streams and the blocks' token-split buffers take 1/tp of the rows) and
 *       its work buffers in the compute dtype, from the same sizes {@link Footprint} uses, the receive buffers of the deterministic sums, and a
 *       pipeline stage's own buffers (the hidden states and gradients it receives, a tied embedding's gradient pieces,
 *       the norm's assembled chunk);
 *   <li><b>bytes sent per step</b> by the busiest rank: the bytes of its data that its calls deliver to other ranks, once
 *       per receiving rank ({@link Communicator#sentBytes}, what a run logs per step as {@code comm_sent_bytes}), call by
 *       call as Athanor makes them ({@link #sentBytes} for one rank). Athanor's deterministic all-reduce is a
 *       reduce-scatter by all-to-all (the other ranks' parts, {@code n − p}) then an all-gather of the sums ({@code
 *       p (s − 1)}): {@code 2 (s−1)/s} of the tensor, a ring's volume, though not a ring. Data parallel: the stage's F32
 *       gradient (its flat store, each parameter padded to {@link ParameterStore#ALIGN} elements) all-reduced (ZeRO 0 and
 *       1), or each micro-batch's reduce-scattered into the shards ({@code n − p} each, ZeRO 2, unit by unit on the CPU: the same bytes, whose clipping norm sends
 *       the piece of the {@link Ops#NORM_CHUNK} chunk straddling its shard's start and all-reduces one partial per
 *       chunk); from ZeRO 1 on the updated masters all-gathered ({@code p (dp − 1)}); the micro-batch losses
 *       all-gathered. Tensor parallel: per micro-batch and block 4 all-reduces of {@code B × T × C} in the compute dtype
 *       (6 with recomputation), and the norm's one partial per split parameter; with sequence parallelism the token
 *       rows' all-gathers, reduce-scatters and norm-gradient gathers instead. Pipeline: per micro-batch the hidden
 *       states (with sequence parallelism the tp rank's token rows of them) to the next stage and their gradient to the
 *       previous one (a middle stage sends both, an end stage one),
 *       tied embeddings' head gradients (the last stage, one per micro-batch) and their sum (the first stage, once), the
 *       norm's straddling chunk piece and partials, the losses broadcast from the last stage; with ZeRO 2 over dp the
 *       norm put together from every stage's shards (a chunk's pieces to its first element's dp rank, then along the
 *       pipeline to its stage; the partials all-reduced over dp and over the pipeline; under tp per parameter instead:
 *       a parameter cut by a shard boundary assembled on the dp rank holding its first element, one term per parameter
 *       all-reduced over dp, the split ones over tp, and the whole model's terms over the pipeline) and, tied, the first
 *       stage's dp group all-gathering the folded embedding gradient before it goes to the last stage. Exact for the
 *       ranks' flat layouts; not counted: what MPI forwards inside its own algorithms (a tree broadcast, a ring
 *       all-gather: the volume is the same, spread over other senders). ZeRO 3 (an estimate, not yet checked against a run): per
 *       micro-batch every unit's weights gathered in the forward and again in the backward (this rank's part to each
 *       other rank) and each unit's gradient folded into its owners' shards ({@code n − p}), no gather after the step;
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

  /**
   * A layout: {@code dp × tp × pp} processes, a ZeRO stage, recomputation on or off, sequence parallelism over the tp
   * ranks on or off (the planner does not choose it: it is sized when asked for, {@code train --sequence-parallel}).
   */
  public record Layout(int dp, int tp, int pp, int zero, boolean recompute, boolean sequenceParallel) {
    /** Without sequence parallelism. */
    public Layout(int dp, int tp, int pp, int zero, boolean recompute) {
      this(dp, tp, pp, zero, recompute, false);
    }

    @Override
    public String toString() {
      return "dp " + dp + " x tp " + tp + " x pp " + pp + ", zero " + zero + (recompute ? ", recompute" : "")
          + (sequenceParallel ? ", sequence parallel" : "");
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
    if (l.tp() > 1 && l.zero() > 2) return "ZeRO " + l.zero() + " with tensor parallel is not built yet";
    if (l.pp() > 1 && l.zero() > 2) return "ZeRO " + l.zero() + " with pipeline parallel is not built yet";
    if (l.sequenceParallel() && l.tp() < 2) return "sequence parallel needs tp > 1";
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
    // the compute dtype: F32 on the CPU (the weights are the masters), BF16 on CUDA, where each rank also keeps the
    // compute weights beside the F32 masters and the activations and work buffers are BF16
    DType dt = Transformer.defaultComputeDtype(job.device());
    long lowp = dt == DType.F32 ? 0 : dt.byteSize();
    long tokens = (long) job.batch() * job.seq();
    // memory: the busiest stage
    long best = -1;
    Map<String, Long> parts = Map.of();
    long stageParamsMax = 0;
    for (int s = 0; s < l.pp(); s++) {
      Stage st = pipeline.stage(s);
      long p = stageParameters(c, st, l.tp());
      stageParamsMax = Math.max(stageParamsMax, p);
      long weights = (4 + lowp) * p;
      // zero 2: the step's sum of this rank's shard (no whole-size sum) and each micro-batch's gradient: as
      // UnitGradientFold runs it on the CPU with the whole model in one process, unit windows only (at most two at once:
      // the tied embeddings' under the head's backward, bounded by the two largest units; gpt2-tiny at dp 2: 226.5 MiB
      // in all bounds the measured 222.5 with the fold on the training thread, bench/results/
      // 2026-12-04-cpu-zero2-unit-memory-*.md), plus, with the fold overlapped on the communication thread (--overlap
      // on, the default), the window of the one unit whose fold is in flight: the head or a block, never the
      // embeddings; else (pipeline stages, CUDA) the whole micro-batch gradient
      long grads = l.zero() >= 2 ? 4 * (p / l.dp() + 1)
          + (perUnitFold(job, l) ? 4 * (twoLargestUnits(c, l.tp()) + largestBlockOrHead(c, l.tp())) : 4 * p)
          : 4 * p * (mb > 1 ? 2 : 1);
      long moments = 8 * p / (l.zero() >= 1 ? l.dp() : 1);
      if (l.zero() >= 3) {
        // as ShardedWeights runs it: the shards of the masters and of the step's gradient (one element more than 1/dp at
        // most), plus the gathered windows: at most two units' weights at once (the head and the tied embeddings it
        // reads) and as many gradient windows, bounded by the two largest units. gpt2-tiny at dp 2 (bench/results/
        // 2026-12-04-cpu-zero3-memory-*.md): the windows peak at the tied head's backward, the embeddings' weights and
        // gradient (98.7 MiB of this bound's 104.7); without read-ahead the whole estimate, 248.1 MiB, bounded the measured
        // 238.1. Read-ahead (the default) gathers the next unit into a window of its own while
        // one computes: one unit's weights more at most, bounded by the largest unit; and the fold overlapped on the same
        // thread (UnitGradientFold.IN_FLIGHT = 1) holds the gradient window of one unit whose backward ended: a block or
        // the head, never the embeddings (theirs is the backward's last, waited for before the next forward's first
        // gather runs). Like ZeRO 2's, both are counted whether --overlap is on or not (the job does not say)
        long windows = 4 * twoLargestUnits(c, l.tp());
        weights = 4 * (p / l.dp() + 1) + windows + 4 * largestUnit(c, l.tp());
        grads = 4 * (p / l.dp() + 1) + windows + 4 * largestBlockOrHead(c, l.tp());
      }
      int inFlight = l.pp() > 1 ? Math.min(l.pp() - s, mb) : 1;
      long acts = Footprint.stageActivationBytes(c, st, job.device(), dt, job.batch(), job.seq(), l.recompute(), inFlight,
          l.tp(), l.sequenceParallel());
      // sequence parallel: a stage boundary's hidden states are a tp rank's token rows (rank 0's, the most)
      long boundaryRows = l.sequenceParallel() ? new TensorParallel(l.tp(), 0).tokenRows(tokens, 0) : tokens;
      long buffers = Footprint.stageBufferBytes(c, st, job.device(), dt, job.batch(), job.seq(), l.tp(), l.sequenceParallel())
          + pipelineBuffers(c, pipeline, l, s, inFlight, mb, (long) dt.byteSize() * boundaryRows * c.hidden());
      // the deterministic sums' receive buffers, kept per communicator, plus one element per rank: over dp the gradient
      // (at most 1 GiB per piece; zero 2 folds in pieces of 2^20 elements per rank and also assembles the norm chunk
      // that straddles its shard's start; with tp, the whole local parameter that straddles it, as its norm term is one
      // reduction), and the step's micro-batch losses gathered; over tp one activation (B, T, C) and the
      // vocabulary-parallel cross-entropy's per-row log-sum-exps and losses of every rank (2 B T tp)
      long dpScratch = l.zero() >= 2 ? Math.min(4 * p, 4L * l.dp() << 20)
          + (l.tp() > 1 ? 4 * largestParameter(c, l.tp()) : Math.min(4 * p, 4L << 20))
          : Math.min(4 * p, 1L << 30);
      long scratch = (l.dp() > 1 ? dpScratch + 4L * l.dp() + 4L * mb * (1 + l.dp()) : 0)
          + (l.tp() > 1 ? 4 * tokens * c.hidden() + 4L * l.tp() + 8 * tokens * l.tp() : 0)
          // pp: the pipeline group's all-reduce of the norm's partials, and the stop flag's over all the processes
          + (l.pp() > 1 ? 4 * chunks(pipeline.wholeNumel()) + 4L * l.pp() + 4L + 4L * job.world() : 0);
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
    // communication of the busiest rank (stage, tp rank, dp rank): its stage's traffic, its dp group's and its tp group's
    long comm = -1, messages = 0;
    for (int st = 0; st < l.pp(); st++) {
      for (int t = 0; t < l.tp(); t++) {
        long[] stage = stageTraffic(job, l, pipeline, st, t, mb), tp = tpTraffic(job, l, pipeline, st, t, mb);
        for (int d = 0; d < l.dp(); d++) {
          long[] dp = dpTraffic(job, l, pipeline, st, d, t, mb);
          if (stage[0] + dp[0] + tp[0] > comm) {
            comm = stage[0] + dp[0] + tp[0];
            messages = stage[1] + dp[1] + tp[1];
          }
        }
      }
    }
    double flops = (l.recompute() ? 8.0 : 6.0) * c.parameterCount() * tokens * job.microBatches() / (double) job.world();
    double compute = flops / job.hardware().flopsPerRank();
    double commSeconds = comm / job.hardware().linkBytesPerSecond() + messages * job.hardware().linkLatencySeconds();
    double bubble = pipeline.bubble(mb);
    return new Estimate(l, m, best, parts, comm, bubble, compute, commSeconds, why);
  }

  /**
   * The bytes a pipeline stage allocates besides its model's (pp > 1), the largest of its phases: during the schedule
   * the received hidden states of the micro-batches in flight and the one being received, the received gradient, and
   * (tied embeddings) the embedding gradient kept per micro-batch; in the tied reduction those pieces and the first
   * stage's two temporaries; for the norm the assembled chunk (whole model chunks of {@link Ops#NORM_CHUNK} elements
   * straddle stages) and the partials.
   */
  private static long pipelineBuffers(ModelConfig c, PipelineLayout pipeline, Layout l, int s, int inFlight, int mb,
      long hiddenBytes) {
    if (l.pp() == 1) return 0;
    boolean first = s == 0, last = s == l.pp() - 1, tied = c.tiedEmbeddings();
    long received = (first ? 0 : (inFlight + 1L) * hiddenBytes) + (last ? 0 : hiddenBytes);
    long piece = tied && (first || last) ? 4L * c.vocabSize() * c.hidden() : 0;  // an F32 embedding gradient
    long kept = l.zero() >= 2 ? piece : piece * mb;  // ZeRO 2: each head gradient is sent (or added) at once
    long reduction = l.zero() >= 2 ? 2 * piece : kept + (first ? 2 * piece : 0);
    long total = pipeline.wholeNumel();
    long norm = 4 * Math.min(total, Ops.NORM_CHUNK) + 4 * chunks(total);
    return Math.max(received + kept, Math.max(reduction, norm));
  }

  /**
   * The bytes that rank ({@code stage}, {@code dpRank}, {@code tpRank}) of layout {@code l} delivers to other ranks in
   * one step of {@code job}, as {@link dev.athanor.dist.Communicator#sentBytes} counts them (what a run logs as {@code
   * comm_sent_bytes}); {@link Estimate#commBytes} is the largest over the ranks. See the class comment for the calls.
   */
  public static long sentBytes(Job job, Layout l, int stage, int dpRank, int tpRank) {
    if (stage < 0 || stage >= l.pp() || dpRank < 0 || dpRank >= l.dp() || tpRank < 0 || tpRank >= l.tp()) {
      throw new IllegalArgumentException("rank (stage " + stage + ", dp " + dpRank + ", tp " + tpRank + ") is outside " + l);
    }
    if (job.microBatches() % l.dp() != 0) {
      throw new IllegalArgumentException("dp " + l.dp() + " does not divide the " + job.microBatches() + " micro-batches per step");
    }
    if (l.pp() > job.model().layers()) throw new IllegalArgumentException("pp " + l.pp() + " exceeds the " + job.model().layers() + " blocks");
    PipelineLayout pipeline = new PipelineLayout(job.model(), l.pp());
    int mb = job.microBatches() / l.dp();
    return stageTraffic(job, l, pipeline, stage, tpRank, mb)[0] + dpTraffic(job, l, pipeline, stage, dpRank, tpRank, mb)[0]
        + tpTraffic(job, l, pipeline, stage, tpRank, mb)[0];
  }

  /** The most bytes one MPI call of {@code MpiCommunicator} moves per rank: long all-reduces go in pieces of this. */
  private static final long PIECE_BYTES = 1L << 30;

  /**
   * {bytes, messages} that rank {@code r} of {@code s} delivers in a deterministic all-reduce of {@code n} elements of
   * {@code es} bytes: per piece, the other ranks' parts to them, then its part's sums to each of them.
   */
  private static long[] allReduce(long n, int s, int r, int es) {
    if (s == 1 || n == 0) return new long[] {0, 0};
    long piece = PIECE_BYTES / es, bytes = 0, pieces = 0;
    for (long b = 0; b < n; b += piece, pieces++) {
      long len = Math.min(piece, n - b), mine = Communicator.partLength(len, r, s);
      bytes += (len - mine + mine * (s - 1)) * es;
    }
    return new long[] {bytes, pieces * 2 * (s - 1)};
  }

  /**
   * The elements that the holder of {@code [start, end)} of a flat gradient of {@code n} elements sends for the
   * clipping norm: its piece of the {@link Ops#NORM_CHUNK} chunk that starts before it (that chunk's owner sums it).
   */
  private static long normPiece(long start, long end, long n) {
    if (start >= end || start % Ops.NORM_CHUNK == 0) return 0;
    return Math.min(end, Math.min(n, (start / Ops.NORM_CHUNK + 1) * Ops.NORM_CHUNK)) - start;
  }

  private static long chunks(long n) {
    return (n + Ops.NORM_CHUNK - 1) / Ops.NORM_CHUNK;
  }

  /**
   * {bytes, messages} of tensor-parallel rank {@code t} of pipeline stage {@code st} (pp > 1): per micro-batch the
   * hidden states (B×T, C) in the compute dtype (sequence parallel: rank {@code t}'s token rows of them) to the next
   * stage and their gradient to the previous one; tied
   * embeddings (rank {@code t}'s vocabulary rows under tp), the last stage's per-micro-batch head gradients to the first
   * and the first's sum back; the norm's chunk pieces and partials (under tp: one term per parameter of the whole model
   * all-reduced over the pipeline); the last stage's broadcast of the losses.
   */
  private static long[] stageTraffic(Job job, Layout l, PipelineLayout pipeline, int st, int t, int mb) {
    if (l.pp() == 1) return new long[] {0, 0};
    ModelConfig c = job.model();
    boolean first = st == 0, last = st == l.pp() - 1;
    long rows = (long) job.batch() * job.seq();  // sequence parallel: tp rank t's token rows of them
    if (l.sequenceParallel()) rows = new TensorParallel(l.tp(), t).tokenRows(rows, t);
    long hidden = rows * c.hidden() * Transformer.defaultComputeDtype(job.device()).byteSize();
    int hops = (first ? 0 : 1) + (last ? 0 : 1);
    long bytes = (long) mb * hops * hidden, messages = (long) mb * hops;
    if (c.tiedEmbeddings() && (first || last)) {
      long emb = 4 * rankNumel(c, c.embeddingSpecs().get(0), l.tp(), t);
      bytes += first ? emb : mb * emb;
      messages += first ? 1 : mb;
    }
    if (l.tp() > 1) {  // the tensor-parallel norm (with or without ZeRO 2): its terms summed over the pipeline
      long[] terms = allReduce(c.parameterSpecs().size(), l.pp(), st, 4);
      bytes += terms[0];
      messages += terms[1];
    } else if (!shardedPipeline(l)) {  // ZeRO 2 over dp: the norm of the shards, counted with the dp traffic
      Range mine = pipeline.wholeRange(st);
      long piece = normPiece(mine.start(), mine.end(), pipeline.wholeNumel());
      long[] partials = allReduce(chunks(pipeline.wholeNumel()), l.pp(), st, 4);
      bytes += 4 * piece + partials[0];
      messages += (piece > 0 ? 1 : 0) + partials[1];
    }
    if (last) {
      bytes += 4L * mb * (l.pp() - 1);
      messages += l.pp() - 1;
    }
    return new long[] {bytes, messages};
  }

  /**
   * {bytes, messages} of data-parallel rank {@code d} of stage {@code st} (dp > 1): the gradient all-reduced (ZeRO 0
   * and 1) or each micro-batch's gradient reduce-scattered into the shards (ZeRO 2, whose norm then sends the piece of
   * the chunk straddling its shard's start and all-reduces the chunks' partials); the updated masters all-gathered
   * from ZeRO 1 on (ZeRO 3, not built: once more, for the weights); the micro-batch losses all-gathered. Under tp the
   * stage's store is tensor-parallel rank {@code t}'s, and ZeRO 2's norm is formed per parameter ({@link
   * #shardTermsTraffic}).
   */
  private static long[] dpTraffic(Job job, Layout l, PipelineLayout pipeline, int st, int d, int t, int mb) {
    if (l.dp() == 1) return new long[] {0, 0};
    int n = l.dp();
    long p = flatParameters(job.model(), pipeline.stage(st), l.tp(), t), part = Communicator.partLength(p, d, n);
    long bytes = 0, messages = 0;
    if (l.zero() >= 2) {
      // the same bytes whether the whole gradient is folded at once or unit by unit (one collective per unit)
      long units = job.model().layers() + 2L;
      bytes += (long) mb * 4 * (p - part);
      messages += (long) mb * (perUnitFold(job, l) ? units : 1) * (n - 1);
      if (l.zero() == 3) {  // each unit gathered twice a micro-batch; one collective per unit and pass
        bytes += (long) mb * 2 * 4 * part * (n - 1);
        messages += (long) mb * 2 * units * (n - 1);
      }
      if (shardedPipeline(l) && st == 0 && job.model().tiedEmbeddings()) {
        // the first stage's dp group all-gathers the folded embedding gradient (each rank its shard's part of it)
        long mine = new Range(0, rankNumel(job.model(), job.model().embeddingSpecs().get(0), l.tp(), t))
            .intersect(new Range(Communicator.partStart(p, d, n), Communicator.partStart(p, d + 1, n))).length();
        bytes += 4 * mine * (n - 1);
        messages += n - 1;
      }
      if (l.tp() > 1) {
        long[] x = shardTermsTraffic(job.model(), pipeline, st, l.tp(), t, n, d);
        bytes += x[0];
        messages += x[1];
      } else if (shardedPipeline(l)) {
        long[] x = pipelineShardTraffic(job, l, pipeline, st, d);
        bytes += x[0];
        messages += x[1];
      } else {
        long start = Communicator.partStart(p, d, n), piece = normPiece(start, start + part, p);
        long[] partials = allReduce(chunks(p), n, d, 4);
        bytes += 4 * piece + partials[0];
        messages += (piece > 0 ? 1 : 0) + partials[1];
      }
    } else {
      long[] sum = allReduce(p, n, d, 4);
      bytes += sum[0];
      messages += sum[1];
    }
    if (l.zero() == 1 || l.zero() == 2) {  // the updated masters all-gathered (ZeRO 3 gathers per unit instead)
      bytes += 4 * part * (n - 1);
      messages += n - 1L;
    }
    bytes += 4L * mb * (n - 1);
    messages += n - 1;
    return new long[] {bytes, messages};
  }

  /** Whether {@code l} shards a pipeline stage's gradient over its dp group (ZeRO 2 with --pp and --dp). */
  private static boolean shardedPipeline(Layout l) {
    return l.pp() > 1 && l.dp() > 1 && l.zero() == 2;
  }

  /**
   * {bytes, messages} of dp rank {@code d} (of {@code n}) of tensor-parallel rank {@code t} of stage {@code st} for
   * ZeRO 2's tensor-parallel norm terms, as {@link dev.athanor.dist.DataTensorParallel#shardTerms} forms them: each
   * counted parameter of the stage's store that a shard boundary cuts is assembled on the dp rank holding its first
   * element (the others send it their non-empty pieces), then one term per parameter of the store is all-reduced over
   * dp. The last stage's copy of a tied embedding is not counted.
   */
  private static long[] shardTermsTraffic(ModelConfig c, PipelineLayout pipeline, int st, int tp, int t, int n, int d) {
    Stage stage = pipeline.stage(st);
    boolean copy = pipeline.holdsTiedCopy(st);
    List<ParamSpec> specs = stageSpecs(c, stage);
    long total = flatParameters(c, stage, tp, t), at = 0, bytes = 0, messages = 0;
    Range shard = new Range(Communicator.partStart(total, d, n), Communicator.partStart(total, d + 1, n));
    for (ParamSpec p : specs) {
      long e = rankNumel(c, p, tp, t);
      Range whole = new Range(at, at + e);
      at += Math.ceilDiv(e, ParameterStore.ALIGN) * ParameterStore.ALIGN;
      if (whole.isEmpty() || copy && p.name().equals(c.embeddingName()) || whole.intersect(shard).equals(whole)) continue;
      int owner = 0;
      while (whole.start() >= Communicator.partStart(total, owner + 1, n)) owner++;
      long mine = whole.intersect(shard).length();
      if (owner != d && mine > 0) {
        bytes += 4 * mine;
        messages++;
      }
    }
    long[] terms = allReduce(specs.size(), n, d, 4);
    return new long[] {bytes + terms[0], messages + terms[1]};
  }

  /**
   * {bytes, messages} of dp rank {@code d} of stage {@code st} for the norm of a pipeline with its gradient sharded over
   * dp (ZeRO 2, without tp), as {@link dev.athanor.dist.pipeline.PipelineStage} forms it: each {@link Ops#NORM_CHUNK}
   * chunk of the whole model's layout is summed by the rank holding its first element (stage {@code t0}, dp rank
   * {@code q0}); on each stage the chunk touches, the other dp ranks send their pieces to dp rank {@code q0}, which (on
   * another stage than {@code t0}) sends the stage's piece to stage {@code t0}; then the partials (one per chunk of the whole layout) are all-reduced over the dp group and over the pipeline.
   */
  private static long[] pipelineShardTraffic(Job job, Layout l, PipelineLayout pipeline, int st, int d) {
    ModelConfig c = job.model();
    int n = l.dp();
    long[] numel = new long[l.pp()];
    for (int t = 0; t < numel.length; t++) numel[t] = flatParameters(c, pipeline.stage(t), l.tp(), l.tp() - 1);
    Range shard = new Range(Communicator.partStart(numel[st], d, n), Communicator.partStart(numel[st], d + 1, n));
    long bytes = 0, messages = 0;
    Range[] whole = new Range[l.pp()];  // each stage's range of the whole layout
    for (int t = 0; t < whole.length; t++) whole[t] = pipeline.wholeRange(t);
    long total = whole[whole.length - 1].end();
    Range r = whole[st];
    for (long cs = 0; cs < total; cs += Ops.NORM_CHUNK) {
      long ce = Math.min(total, cs + Ops.NORM_CHUNK);
      int t0 = 0;
      while (cs >= whole[t0].end()) t0++;
      long base0 = whole[t0].start();
      int q0 = 0;
      while (cs - base0 >= Communicator.partStart(numel[t0], q0 + 1, n)) q0++;
      if (ce <= whole[t0].end() && ce - base0 <= Communicator.partStart(numel[t0], q0 + 1, n)) continue;
      long a = Math.max(cs, r.start()), b = Math.min(ce, r.end());
      if (st < t0 || a >= b) continue;
      if (d == q0) {
        if (st != t0) {  // the stage's piece along the pipeline to the chunk's owner
          bytes += 4 * (b - a);
          messages++;
        }
      } else {
        long piece = new Range(a - r.start(), b - r.start()).intersect(shard).length();
        if (piece > 0) {
          bytes += 4 * piece;
          messages++;
        }
      }
    }
    long[] overDp = allReduce(chunks(total), n, d, 4), overPp = allReduce(chunks(total), l.pp(), st, 4);
    return new long[] {bytes + overDp[0] + overPp[0], messages + overDp[1] + overPp[1]};
  }

  /**
   * {bytes, messages} of tensor-parallel rank {@code t} of stage {@code st} (tp > 1): per micro-batch and block, 4
   * all-reduces of (B×T, C) in the compute dtype (2 forward, 2 backward; 6 with recomputation, whose forward runs
   * twice), one more for the vocabulary-parallel embedding's lookup (first stage) and one for the head's input gradient
   * (last stage) (with sequence parallelism: {@link #sequenceParallelTraffic} instead), the head's cross-entropy's all-reduce of 2 B×T tp F32 (every rank's per-row log-sum-exps and losses),
   * and the norm's all-reduce of one partial per split parameter.
   */
  private static long[] tpTraffic(Job job, Layout l, PipelineLayout pipeline, int st, int t, int mb) {
    if (l.tp() == 1) return new long[] {0, 0};
    ModelConfig c = job.model();
    Stage stage = pipeline.stage(st);
    long[] one = allReduce((long) job.batch() * job.seq() * c.hidden(), l.tp(), t,
        Transformer.defaultComputeDtype(job.device()).byteSize());
    long count = (long) mb * (stage.blocks() * (l.recompute() ? 6 : 4) + (stage.embedding() ? 1 : 0) + (stage.head() ? 1 : 0));
    if (l.sequenceParallel()) {  // all-gathers and reduce-scatters of token rows instead of the all-reduces
      one = sequenceParallelTraffic(job, l, stage, t);
      count = mb;
    }
    int split = 0;  // the norm's terms of the split parameters (the last stage's copy of a tied embedding not counted)
    for (ParamSpec p : stageSpecs(c, stage)) {
      if (pipeline.holdsTiedCopy(st) && p.name().equals(c.embeddingName())) continue;
      if (!TensorParallel.split(c, p.name()).replicated()) split++;
    }
    long[] norm = allReduce(split, l.tp(), t, 4);
    // the head's vocabulary-parallel cross-entropy: every rank's per-row log-sum-exps and losses, F32, per micro-batch
    long[] xent = stage.head() ? allReduce(2L * job.batch() * job.seq() * l.tp(), l.tp(), t, 4) : new long[] {0, 0};
    return new long[] {count * one[0] + norm[0] + mb * xent[0], count * one[1] + norm[1] + mb * xent[1]};
  }

  /**
   * {bytes, messages} of tensor-parallel rank {@code t} of stage {@code stage} in one micro-batch under sequence
   * parallelism ({@code dev.athanor.nn.SequenceParallel}), in place of the (B×T, C) all-reduces: an all-gather sends
   * the rank's token rows to each other rank, a reduce-scatter (F32) the other ranks' rows of its partial sum, and a
   * norm's backward all-gathers the rank's partial weight (and bias) gradients, one per {@link Ops#NORM_ROW_CHUNK}-row
   * piece of the global rows its rows meet (one piece on CUDA). Per block: forward 2 gathers (the column-parallel
   * inputs) and 2 reduce-scatters (the row-parallel outputs), backward 4 gathers (2 output gradients, 2 inputs again
   * for the weight gradients), 2 reduce-scatters (the input gradients) and 2 norm gathers; recomputation runs the forward
   * once more. The embedding's lookup is reduce-scattered and its rows' gradient gathered; the head gathers the final
   * norm's rows in the forward and the backward, reduce-scatters its input gradient and gathers the final norm's pieces.
   */
  private static long[] sequenceParallelTraffic(Job job, Layout l, Stage stage, int t) {
    ModelConfig c = job.model();
    int s = l.tp();
    TensorParallel part = new TensorParallel(s, t);
    long n = (long) job.batch() * job.seq(), mine = part.tokenRows(n, t);
    long gather = mine * c.hidden() * Transformer.defaultComputeDtype(job.device()).byteSize() * (s - 1);
    long scatter = (n - mine) * c.hidden() * 4;
    long first = part.tokenStart(n, t), end = part.tokenStart(n, t + 1), grain = job.device().isCuda() ? n : Ops.NORM_ROW_CHUNK;
    long pieces = first == end ? 0 : grain >= n ? 1 : (end - 1) / grain - first / grain + 1;
    long normGather = pieces * (c.family() == Family.GPT2 ? 2L : 1L) * c.hidden() * 4 * (s - 1);
    long blocks = stage.blocks(), again = l.recompute() ? 2 : 0;
    long gathers = blocks * (6 + again) + (stage.embedding() ? 1 : 0) + (stage.head() ? 2 : 0);
    long scatters = blocks * (4 + again) + (stage.embedding() ? 1 : 0) + (stage.head() ? 1 : 0);
    long norms = 2 * blocks + (stage.head() ? 1 : 0);
    return new long[] {gathers * gather + scatters * scatter + norms * normGather, (gathers + scatters + norms) * (s - 1)};
  }

  /**
   * The elements of stage {@code st}'s flat store on one tensor-parallel rank, each parameter padded to {@link
   * ParameterStore#ALIGN} as the store lays it out (tensor-parallel rank {@code t}'s cut): what the gradient's
   * collectives and ZeRO's shards cover.
   */
  private static long flatParameters(ModelConfig c, Stage st, int tp, int t) {
    long n = 0;
    for (ParamSpec p : stageSpecs(c, st)) {
      long e = rankNumel(c, p, tp, t);
      n += Math.ceilDiv(e, ParameterStore.ALIGN) * ParameterStore.ALIGN;
    }
    return n;
  }

  /** The parameters stage {@code st} holds (a tied head's copy of the embeddings included). */
  private static List<ParamSpec> stageSpecs(ModelConfig c, Stage st) {
    List<ParamSpec> specs = new ArrayList<>();
    if (st.embedding()) specs.addAll(c.embeddingSpecs());
    for (int b = st.firstBlock(); b < st.endBlock(); b++) specs.addAll(c.blockSpecs(b));
    if (st.head()) {
      specs.addAll(c.headSpecs());
      if (c.tiedEmbeddings() && !st.embedding()) specs.add(c.embeddingSpecs().get(0));
    }
    return specs;
  }

  /** Parameters one rank of stage {@code st} holds under tensor parallel {@code tp} (a tied head's copy included). */
  static long stageParameters(ModelConfig c, Stage st, int tp) {
    long n = 0;
    for (ParamSpec p : stageSpecs(c, st)) n += rankNumel(c, p, tp, tp - 1);
    return n;
  }

  /**
   * The elements of parameter {@code p} on tensor-parallel rank {@code t} of {@code tp}, from {@link TensorParallel#split}
   * (the last rank's chunk of an uneven cut, the vocabulary's, is the largest: the busiest rank).
   */
  private static long rankNumel(ModelConfig c, ParamSpec p, int tp, int t) {
    long n = 1;
    for (long d : new TensorParallel(tp, t).localShape(TensorParallel.split(c, p.name()), p.shape())) n *= d;
    return n;
  }

  /**
   * Whether {@code l}'s gradient is folded unit by unit ({@link dev.athanor.dist.UnitGradientFold}): ZeRO 3, and ZeRO 2
   * on the CPU with the whole model in each process (no pipeline, no tensor parallel); else ZeRO 2 folds each
   * micro-batch's whole gradient.
   */
  static boolean perUnitFold(Job job, Layout l) {
    return l.zero() == 3 || l.zero() == 2 && l.pp() == 1 && l.tp() == 1 && job.device().isCpu();
  }

  /**
   * The parameters of the two largest units (the embeddings, a block, the head with its own weights) on one
   * tensor-parallel rank: ZeRO 3's bound of the windows gathered at once.
   */
  /**
   * The elements of the largest parameter a tensor-parallel rank of {@code tp} holds: a split one's {@code 1/tp}, rounded
   * up (an upper bound for any cut, even one {@code tp} does not divide), a replicated one whole.
   */
  private static long largestParameter(ModelConfig c, int tp) {
    long most = 0;
    for (ParamSpec p : c.parameterSpecs()) {
      most = Math.max(most, TensorParallel.split(c, p.name()).replicated() ? p.numel() : (p.numel() + tp - 1) / tp);
    }
    return most;
  }

  /** The most parameters in a block or the head (with its own weights only): ZeRO 2's fold in flight. */
  private static long largestBlockOrHead(ModelConfig c, int tp) {
    long head = 0;
    for (ParamSpec p : c.headSpecs()) head += p.numel();
    return Math.max(stageParameters(c, new Stage(0, 1, false, false), tp), head);
  }

  /** The most parameters in one unit (the embeddings, a block or the head). */
  private static long largestUnit(ModelConfig c, int tp) {
    long emb = 0, head = 0;
    for (ParamSpec p : c.embeddingSpecs()) emb += p.numel();
    for (ParamSpec p : c.headSpecs()) head += p.numel();
    return Math.max(stageParameters(c, new Stage(0, 1, false, false), tp), Math.max(emb, head));
  }

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

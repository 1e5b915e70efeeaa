package dev.athanor.offload;

import dev.athanor.memory.InsufficientMemoryException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Shortfall;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.TrainConfig;
import java.util.EnumSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Chooses where a training job's parameter-store roles live so that the job fits its memory budgets, before anything
 * is allocated.
 *
 * <p>The policy, for what can be offloaded (on the CPU, per role for every unit), from the cheapest traffic up:
 * <ol>
 *   <li>everything in memory, if that fits;
 *   <li>else the first moment ({@link Role#ADAM_M}) on DISK (read and written once per step), if that fits;
 *   <li>else both moments;
 *   <li>else the gradients too (written per micro-batch, read back to accumulate, read by the optimizer; the
 *       clipping norm is formed during the backward);
 *   <li>else the weights too (read per unit in the forward and the backward of every micro-batch, read and written
 *       by the optimizer);
 *   <li>else no plan: {@link Result#failure()} names the tier that is short, by how much with everything on DISK,
 *       and what still has to be in memory (activations, workspace, the windows of the units being computed).
 * </ol>
 * When the activations do not fit, they leave memory in one of two ways, weighed by a cost model ({@link Speeds},
 * {@link #activationChoices}): recomputed in the backward pass (one more forward of the blocks per micro-batch), or on
 * DISK between each micro-batch's forward and backward ({@link ActivationPager}: each block but the last two written
 * and read once), the cheaper in seconds first; both come after the moments and gradients and before the weights
 * ({@link #candidates}).
 * Each step on DISK adds its host windows and staging buffers to HOST ({@link UnitPager#windowBound}), so the
 * planner offloads no more than it must. On CUDA this planner only keeps everything on the device (the activations
 * kept or recomputed); a job that does not fit there is {@link HostOffloadPlanner}'s (the optimizer on the host).
 *
 * <p>"Fits" is {@link Footprint#worstShortfall}: every tier against its budget less what is in use, and host memory
 * against what the machine has available.
 */
public final class OffloadPlanner {
  private OffloadPlanner() {}

  /**
   * A training job to plan.
   *
   * @param model the model
   * @param device where it trains
   * @param train batch, sequence and accumulation (the rest is not used)
   * @param recompute whether activations are recomputed in the backward pass
   * @param loading whether the weights are first read from a Hugging Face directory ({@link Footprint#withLoading})
   * @param checkpoints whether it writes checkpoints ({@link Footprint#withCheckpoints}: counted with every moment in
   *     host memory, an upper estimate when moments are on DISK, whose snapshot goes one tensor at a time)
   * @param chunkBytes bytes of one role the optimizer streams per chunk
   * @param activationsOnDisk whether the blocks' saved activations go to DISK between forward and backward (not with
   *     {@code recompute})
   */
  public record Job(ModelConfig model, Device device, TrainConfig train, boolean recompute, boolean loading,
      boolean checkpoints, long chunkBytes, boolean activationsOnDisk) {
    public Job {
      Objects.requireNonNull(model, "model");
      Objects.requireNonNull(device, "device");
      Objects.requireNonNull(train, "train");
      new OffloadConfig(Set.of(), null, chunkBytes);  // checks the chunk
      if (recompute && activationsOnDisk) {
        throw new IllegalArgumentException("the activations are recomputed or on DISK, not both");
      }
    }

    /** The same job with its activations in memory (kept, or recomputed with {@code recompute}). */
    public Job(ModelConfig model, Device device, TrainConfig train, boolean recompute, boolean loading, boolean checkpoints,
        long chunkBytes) {
      this(model, device, train, recompute, loading, checkpoints, chunkBytes, false);
    }

    /** The same job with the default chunk ({@link OffloadConfig#DEFAULT_CHUNK_BYTES}). */
    public Job(ModelConfig model, Device device, TrainConfig train, boolean recompute, boolean loading, boolean checkpoints) {
      this(model, device, train, recompute, loading, checkpoints, OffloadConfig.DEFAULT_CHUNK_BYTES);
    }

    /** The same job with or without recomputation (with it, the activations are not on DISK). */
    public Job withRecompute(boolean on) {
      return new Job(model, device, train, on, loading, checkpoints, chunkBytes, activationsOnDisk && !on);
    }

    /** The same job with the activations on DISK or not (on DISK, they are not recomputed). */
    public Job withActivationsOnDisk(boolean on) {
      return new Job(model, device, train, recompute && !on, loading, checkpoints, chunkBytes, on);
    }

    /** The compute dtype the trainer uses on {@link #device}. */
    public DType dtype() {
      return Transformer.defaultComputeDtype(device);
    }

    /** The job's memory with everything in memory. */
    public Footprint inMemory() {
      Footprint f = Footprint.training(model, device, dtype(), train.batch(), train.seq(), train.accum(), recompute);
      if (loading) f = f.withLoading();
      if (checkpoints) f = f.withCheckpoints();
      return f;
    }
  }

  /** A plan, or why there is none (exactly one of the two is non-null). */
  public record Result(OffloadPlan plan, String failure) {
    public Result {
      if ((plan == null) == (failure == null)) throw new IllegalArgumentException("exactly one of plan and failure");
    }

    /** The plan; throws {@link InsufficientMemoryException} with {@link #failure()} when there is none. */
    public OffloadPlan orThrow() {
      if (plan == null) throw new InsufficientMemoryException(failure);
      return plan;
    }
  }

  /** The placements the planner tries, in order. */
  static final List<Set<Role>> STEPS = List.of(Set.of(), Set.of(Role.ADAM_M), Set.of(Role.ADAM_M, Role.ADAM_V),
      Set.of(Role.ADAM_M, Role.ADAM_V, Role.GRAD), Set.of(Role.ADAM_M, Role.ADAM_V, Role.GRAD, Role.MASTER));

  /** {@code job} with {@code diskRoles} on DISK, whether or not it fits. */
  public static OffloadPlan place(Job job, Set<Role> diskRoles) {
    return place(job, diskRoles, Set.of());
  }

  /** {@code job} with {@code diskRoles} on DISK and the weights of the units {@code resident} in memory, fitting or not. */
  public static OffloadPlan place(Job job, Set<Role> diskRoles, Set<String> resident) {
    Objects.requireNonNull(job, "job");
    OffloadConfig oc = new OffloadConfig(diskRoles, null, job.chunkBytes(), true, resident);
    Footprint f = job.inMemory();
    if (oc.enabled()) {
      if (job.device().isCuda()) {
        throw new IllegalArgumentException("offload on " + job.device() + " is not supported yet: state can be on DISK only "
            + "when training on the CPU");
      }
      // the windows are bounded by the three largest units (UnitPager.windowBound): those are all it needs
      List<Long> units = OffloadPlan.largestUnits(job.model(), Set.of(), 3);
      List<Long> paged = OffloadPlan.largestUnits(job.model(), resident, 3);
      long residentBytes = 0;
      for (String u : resident) {
        residentBytes = Math.addExact(residentBytes, Math.multiplyExact(4L, OffloadPlan.unitElements(job.model(), u)));
      }
      boolean w = oc.onDisk(Role.MASTER), g = oc.onDisk(Role.GRAD);
      // the paged units' windows, and the resident units' weights, all the time
      long weightWindows = w ? Math.addExact(UnitPager.windowBound(paged, true, false, false), residentBytes) : 0;
      long gradWindows = g ? Math.addExact(UnitPager.windowBound(units, false, true, job.train().accum() > 1),
          UnitPager.normBufferBytes(OffloadPlan.layoutElements(job.model()))) : 0;
      f = f.withStateOnDisk(oc.diskRoles(), oc.stagingBytes(OffloadPlan.largestUnit(job.model())), weightWindows, gradWindows);
      if (w && job.loading()) f = f.withStreamedLoading();  // the weights go to DISK one tensor at a time
      if (job.checkpoints()) {
        int parts = (w ? 1 : 0) + (oc.onDisk(Role.ADAM_M) ? 1 : 0) + (oc.onDisk(Role.ADAM_V) ? 1 : 0);
        f = f.withCheckpointPartsOnDisk(parts).plus(Footprint.Component.CHECKPOINT, dev.athanor.memory.Tier.HOST, residentBytes);
      }
    }
    OffloadPlan.Activations acts = null;
    if (job.activationsOnDisk()) {
      if (job.device().isCuda()) {
        throw new IllegalArgumentException("activations on DISK need the CPU backend; offload on " + job.device() + " is not "
            + "supported yet");
      }
      f = f.withActivationsOnDisk(job.train().batch(), job.train().seq());
      acts = new OffloadPlan.Activations(job.train().batch(), job.train().seq());
    }
    return new OffloadPlan(job.model(), job.device(), oc.diskRoles(), job.chunkBytes(), f, job.train().accum(), job.recompute(),
        resident, acts);
  }

  /** The placements a ZeRO rank's plan tries, in order: AdamW's moments only (its weights and gradients stay in memory). */
  static final List<Set<Role>> SHARD_STEPS = STEPS.subList(0, 3);

  /**
   * One rank of a ZeRO run ({@code rank}: its footprint with everything in memory, its shard of AdamW's moments
   * in {@link Footprint.Component#OPTIMIZER}) with its shard of {@code diskRoles} (AdamW's moments only) on DISK,
   * fitting or not: the optimizer then keeps files of the shard's elements only and streams them through its staging
   * slots. With {@link Job#checkpoints()}, the copy a background save takes of the rank's part (its shard of the
   * masters and of both moments; the moments on DISK copied on DISK) is counted too. Throws {@link
   * IllegalArgumentException} for any other role.
   */
  public static OffloadPlan placeShard(Job job, Footprint rank, Set<Role> diskRoles) {
    Objects.requireNonNull(job, "job");
    Objects.requireNonNull(rank, "rank");
    if (job.activationsOnDisk()) {
      throw new IllegalArgumentException("under ZeRO the activations stay in memory (kept, or recomputed with --recompute); "
          + "they cannot be on DISK yet");
    }
    for (Role r : diskRoles) {
      if (r != Role.ADAM_M && r != Role.ADAM_V) {
        throw new IllegalArgumentException("under ZeRO only AdamW's moments (a rank's shard of them) can be on DISK, not "
            + r.name().toLowerCase(java.util.Locale.ROOT) + ": the weights and gradients stay in memory");
      }
    }
    OffloadConfig oc = new OffloadConfig(diskRoles, null, job.chunkBytes());
    if (oc.enabled() && job.device().isCuda()) {
      throw new IllegalArgumentException("offload on " + job.device() + " is not supported yet: state can be on DISK only "
          + "when training on the CPU");
    }
    Footprint f = oc.enabled() ? rank.withShardMomentsOnDisk(oc.diskRoles(), oc.stagingBytes(OffloadPlan.largestUnit(job.model())))
        : rank;
    if (job.checkpoints()) {  // a background save's copy of the rank's part: the masters and the moments, each where it lives
      long each = rank.bytes(Footprint.Component.OPTIMIZER, Set.of(dev.athanor.memory.Tier.HOST)) / 2;
      f = f.plus(Footprint.Component.CHECKPOINT, dev.athanor.memory.Tier.HOST, each * (3 - oc.diskRoles().size()))
          .plus(Footprint.Component.CHECKPOINT, dev.athanor.memory.Tier.DISK, each * oc.diskRoles().size());
    }
    return new OffloadPlan(job.model(), job.device(), oc.diskRoles(), job.chunkBytes(), f, job.train().accum(), job.recompute());
  }

  /**
   * The plan of one rank of a ZeRO run ({@code rank} as in {@link #placeShard}) under {@code mm}'s budgets: the
   * first of everything in memory, the shard's first moment on DISK, both moments on DISK that fits; or why none does
   * (the gradients and weights cannot go to DISK under ZeRO).
   */
  public static Result planShard(Job job, Footprint rank, MemoryManager mm) {
    Objects.requireNonNull(mm, "mm");
    OffloadPlan last = null;
    for (Set<Role> roles : SHARD_STEPS) {
      last = placeShard(job, rank, roles.isEmpty() ? Set.of() : EnumSet.copyOf(roles));
      if (last.footprint().worstShortfall(mm) == null) return new Result(last, null);
    }
    Shortfall s = last.footprint().worstShortfall(mm);
    String tier = s.tiers().size() == 1 ? s.tiers().iterator().next() + " tier"
        : "host memory (" + String.join(" and ", s.tiers().stream().map(Enum::name).sorted().toList()) + ")";
    return new Result(null, "no offload plan fits this rank: with its shard of " + OffloadPlan.describe(last.diskRoles())
        + " on DISK, the " + tier + " is " + Footprint.size(s.needed() - s.available()) + " short: it "
        + last.footprint().describe(s) + "; under ZeRO only AdamW's moments go to DISK (the weights and gradients stay in "
        + "memory)");
  }

  /**
   * {@code p} (weights on DISK, fitting) with as many units' weights kept in memory as still fit: the tied embeddings
   * first (read once more per micro-batch than the others), then the head and the blocks in order. Each resident unit
   * saves its reads in the forward and backward of every micro-batch and the optimizer's read and write.
   */
  static OffloadPlan keepResident(Job job, OffloadPlan p, MemoryManager mm) {
    List<String> order = new java.util.ArrayList<>();
    if (job.model().tiedEmbeddings()) order.add(ModelConfig.EMBEDDING_UNIT);
    order.add(ModelConfig.HEAD_UNIT);
    for (int i = 0; i < job.model().layers(); i++) order.add(ModelConfig.blockUnit(i));
    if (!job.model().tiedEmbeddings()) order.add(ModelConfig.EMBEDDING_UNIT);
    Set<String> resident = new java.util.LinkedHashSet<>();
    OffloadPlan best = p;
    for (String u : order) {
      resident.add(u);
      OffloadPlan q = place(job, p.diskRoles(), Set.copyOf(resident));
      if (q.footprint().worstShortfall(mm) == null) {
        best = q;
      } else {
        resident.remove(u);
      }
    }
    return best;
  }

  /** One placement the planner tries: roles on DISK, and whether activations are recomputed or on DISK. */
  record Candidate(Set<Role> roles, boolean recompute, boolean activationsOnDisk) {
    Candidate(Set<Role> roles, boolean recompute) {
      this(roles, recompute, false);
    }

    /** {@code job} with this candidate's activations. */
    Job apply(Job job) {
      return job.withRecompute(recompute).withActivationsOnDisk(activationsOnDisk);
    }
  }

  /**
   * What the cost model assumes of the machine to weigh recomputing the activations against moving them to DISK: the
   * compute's speed and the DISK tier's bandwidth (each direction; no overlap with the computation is assumed).
   */
  public record Speeds(double flopsPerSecond, double diskBytesPerSecond) {
    /** A few CPU cores' GEMMs (50 GFLOP/s) and an NVMe drive (1 GB/s). */
    public static final Speeds DEFAULT = new Speeds(50e9, 1e9);

    public Speeds {
      if (!(flopsPerSecond > 0) || !(diskBytesPerSecond > 0)) {
        throw new IllegalArgumentException("speeds must be positive: " + flopsPerSecond + " FLOP/s, " + diskBytesPerSecond
            + " B/s of DISK");
      }
    }
  }

  /**
   * Seconds per step that recomputing the activations adds: one more forward of the blocks per micro-batch, 2 FLOPs
   * per block parameter and token plus attention's 4 x T x C per token and block.
   */
  public static double recomputeSeconds(Job job, Speeds speeds) {
    ModelConfig c = job.model();
    double tokens = (double) job.train().batch() * job.train().seq();
    double perToken = 2.0 * dev.athanor.params.ParameterStore.layoutNumel(c.blockSpecs(0)) + 4.0 * job.train().seq() * c.hidden();
    return job.train().accum() * tokens * perToken * c.layers() / speeds.flopsPerSecond();
  }

  /** Seconds per step that the activations on DISK add: their traffic ({@link OffloadPlan#activationTrafficPerStep}). */
  public static double activationDiskSeconds(Job job, Speeds speeds) {
    TrainConfig t = job.train();
    long block = Footprint.blockActivationBytes(job.model(), job.device(), job.dtype(), t.batch(), t.seq());
    double perMicroBatch = ActivationPager.bytesPerMicroBatch(block, Footprint.offloadedBlocks(dev.athanor.nn.Stage.whole(job.model())));
    return t.accum() * perMicroBatch / speeds.diskBytesPerSecond();
  }

  /**
   * The ways the activations leave memory, cheapest first by {@link #recomputeSeconds} against {@link
   * #activationDiskSeconds}: {recompute, DISK} as (recompute, onDisk) pairs; DISK only when it frees anything (more
   * blocks than its ring of two) and on the CPU.
   */
  static List<boolean[]> activationChoices(Job job, Speeds speeds) {
    boolean[] recompute = {true, false}, disk = {false, true};
    boolean diskHelps = !job.device().isCuda() && Footprint.offloadedBlocks(dev.athanor.nn.Stage.whole(job.model())) > 0;
    if (!diskHelps) return List.of(recompute);
    return activationDiskSeconds(job, speeds) <= recomputeSeconds(job, speeds) ? List.of(disk, recompute)
        : List.of(recompute, disk);
  }

  /**
   * The placements in the order they are tried, cheapest first: the roles of {@link #STEPS} up to the gradients; then,
   * unless the job already says where its activations are (recomputed, or on DISK), the same with the activations out
   * of memory, the cheaper way first ({@link #activationChoices}); then the weights on DISK too (read twice per
   * micro-batch), without and with the activations out of memory.
   */
  static List<Candidate> candidates(Job job) {
    return candidates(job, Speeds.DEFAULT);
  }

  static List<Candidate> candidates(Job job, Speeds speeds) {
    List<Candidate> out = new java.util.ArrayList<>();
    List<Set<Role>> light = STEPS.subList(0, STEPS.size() - 1);
    Set<Role> all = STEPS.get(STEPS.size() - 1);
    boolean fixed = job.recompute() || job.activationsOnDisk();
    List<boolean[]> ways = fixed ? List.of() : activationChoices(job, speeds);
    for (Set<Role> r : light) out.add(new Candidate(r, job.recompute(), job.activationsOnDisk()));
    for (boolean[] w : ways) for (Set<Role> r : light) out.add(new Candidate(r, w[0], w[1]));
    out.add(new Candidate(all, job.recompute(), job.activationsOnDisk()));
    for (boolean[] w : ways) out.add(new Candidate(all, w[0], w[1]));
    return out;
  }

  /**
   * The plan of {@code job} under {@code mm}'s budgets (see the class comment), or why there is none: then the
   * placement that came closest (the smallest shortfall) is the one described.
   */
  public static Result plan(Job job, MemoryManager mm) {
    Objects.requireNonNull(mm, "mm");
    OffloadPlan best = null;
    Shortfall bestShort = null;
    for (Candidate c : candidates(job)) {
      if ((!c.roles().isEmpty() || c.activationsOnDisk()) && job.device().isCuda()) continue;
      OffloadPlan p = place(c.apply(job), c.roles().isEmpty() ? Set.of() : EnumSet.copyOf(c.roles()));
      Shortfall s = p.footprint().worstShortfall(mm);
      if (s == null) return new Result(p.diskRoles().contains(Role.MASTER) ? keepResident(c.apply(job), p, mm) : p, null);
      if (bestShort == null || s.needed() - s.available() < bestShort.needed() - bestShort.available()) {
        best = p;
        bestShort = s;
      }
    }
    Footprint f = best.footprint();
    String tier = bestShort.tiers().size() == 1 ? bestShort.tiers().iterator().next() + " tier"
        : "host memory (" + String.join(" and ", bestShort.tiers().stream().map(Enum::name).sorted().toList()) + ")";
    String shortBy = Footprint.size(bestShort.needed() - bestShort.available());
    if (job.device().isCuda()) {
      return new Result(null, "no offload plan fits: the " + tier + " is " + shortBy + " short: it " + f.describe(bestShort)
          + "; on " + job.device() + " the optimizer's state goes to the host instead (HostOffloadPlanner)");
    }
    return new Result(null, "no offload plan fits: the closest, with " + OffloadPlan.describe(best.diskRoles()) + " on DISK"
        + (best.offloads() ? "" : " (everything in memory)") + (best.recompute() ? " and activations recomputed" : "")
        + (best.activationsOnDisk() ? " and the activations on DISK" : "")
        + ", leaves the " + tier + " " + shortBy + " short: it "
        + f.describe(bestShort) + "; what stays in memory is the activations and workspace (smaller with --batch, --seq or "
        + "--recompute) and the windows of the units being computed");
  }
}

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
import java.util.Map;
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
 * planner offloads no more than it must; of the roles it did put on DISK, it then keeps as many (unit, role) pairs in
 * memory as the HOST room left holds, the most DISK traffic saved per byte first ({@link #keepResident}). On CUDA this
 * planner only keeps everything on the device (the activations kept or recomputed); a job that does not fit there is
 * {@link HostOffloadPlanner}'s (the optimizer on the host).
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
    return place(job, diskRoles, OffloadConfig.weightsOnly(resident));
  }

  /**
   * {@code job} with {@code diskRoles} on DISK but, per role, the units {@code resident} names in memory, fitting or
   * not. A resident unit's part of a role is HOST memory all the time (as the role's component); the paged units' windows
   * and the optimizer's staging slots are counted as without resident units.
   */
  public static OffloadPlan place(Job job, Set<Role> diskRoles, Map<Role, Set<String>> resident) {
    Objects.requireNonNull(job, "job");
    OffloadConfig oc = new OffloadConfig(diskRoles, null, job.chunkBytes(), true, resident, false);
    Footprint f = job.inMemory();
    if (oc.enabled()) {
      if (job.device().isCuda()) {
        throw new IllegalArgumentException("offload on " + job.device() + " is not supported yet: state can be on DISK only "
            + "when training on the CPU");
      }
      // the windows are bounded by the three largest units (UnitPager.windowBound): those are all it needs
      List<Long> units = OffloadPlan.largestUnits(job.model(), Set.of(), 3);
      List<Long> paged = OffloadPlan.largestUnits(job.model(), oc.residentWeights(), 3);
      Map<Role, Long> held = new java.util.EnumMap<>(Role.class);  // bytes of each role's resident units
      for (Role r : OffloadPlan.ROLES) held.put(r, residentBytes(job.model(), oc.resident(r)));
      boolean w = oc.onDisk(Role.MASTER), g = oc.onDisk(Role.GRAD);
      // the paged units' windows, and the resident units' weights, all the time
      long weightWindows = w ? Math.addExact(UnitPager.windowBound(paged, true, false, false), held.get(Role.MASTER)) : 0;
      // a resident unit's gradient: its step gradient all the time, a micro-batch's window of it in the backward (counted
      // among the paged units' windows, which assume every unit may be one)
      long gradWindows = g ? Math.addExact(Math.addExact(UnitPager.windowBound(units, false, true, job.train().accum() > 1),
          UnitPager.normBufferBytes(OffloadPlan.layoutElements(job.model()))), held.get(Role.GRAD)) : 0;
      long moments = Math.addExact(held.get(Role.ADAM_M), held.get(Role.ADAM_V));
      f = f.withStateOnDisk(oc.diskRoles(), oc.stagingBytes(OffloadPlan.largestUnit(job.model())), weightWindows, gradWindows)
          .plus(Footprint.Component.OPTIMIZER, dev.athanor.memory.Tier.HOST, moments);
      if (w && job.loading()) f = f.withStreamedLoading();  // the weights go to DISK one tensor at a time
      if (job.checkpoints()) {  // a snapshot's copy of the resident parts counted in HOST (an upper estimate)
        int parts = (w ? 1 : 0) + (oc.onDisk(Role.ADAM_M) ? 1 : 0) + (oc.onDisk(Role.ADAM_V) ? 1 : 0);
        f = f.withCheckpointPartsOnDisk(parts).plus(Footprint.Component.CHECKPOINT, dev.athanor.memory.Tier.HOST,
            Math.addExact(held.get(Role.MASTER), moments));
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
        oc.residentUnits(), acts);
  }

  /** Bytes of the F32 role of {@code units} of {@code model}. */
  private static long residentBytes(ModelConfig model, Set<String> units) {
    long b = 0;
    for (String u : units) b = Math.addExact(b, Math.multiplyExact(4L, OffloadPlan.unitElements(model, u)));
    return b;
  }

  /** The placements a ZeRO rank's plan tries, in order: AdamW's moments only (its weights and gradients stay in memory). */
  static final List<Set<Role>> SHARD_STEPS = STEPS.subList(0, 3);

  /**
   * The placements a ZeRO 3 rank's plan tries, in order: its shard of the first moment, of both, then of the step's
   * gradient too, then of the masters too (ZeRO-Infinity: every role of the shard on DISK).
   */
  static final List<Set<Role>> SHARD3_STEPS = STEPS;

  /** {@link #placeShard(Job, Footprint, Set, int, int)} of a ZeRO 1 or 2 rank: AdamW's moments only. */

  /**
   * One rank of a ZeRO run ({@code rank}: its footprint with everything in memory, its shard of AdamW's moments
   * in {@link Footprint.Component#OPTIMIZER}) with its shard of {@code diskRoles} (AdamW's moments only) on DISK,
   * fitting or not: the optimizer then keeps files of the shard's elements only and streams them through its staging
   * slots. With {@link Job#checkpoints()}, the copy a background save takes of the rank's part (its shard of the
   * masters and of both moments; the moments on DISK copied on DISK) is counted too. Throws {@link
   * IllegalArgumentException} for any other role.
   */
  public static OffloadPlan placeShard(Job job, Footprint rank, Set<Role> diskRoles) {
    return placeShard(job, rank, diskRoles, 1, 1);
  }

  /**
   * One rank of a ZeRO {@code zero} run of {@code dp} replicas as {@link #placeShard(Job, Footprint, Set)}; under ZeRO 3
   * its shard of the masters ({@link Role#MASTER}) and of the step's gradient ({@link Role#GRAD}) can be on DISK too
   * (files of the shard's elements, {@code 4 n / dp} bytes each, taken out of the weights and gradients in HOST), which
   * add HOST buffers of a chunk's part of the shard each (a gather's contribution; the gradient's fold, written behind;
   * both go piece by piece through a unit) or, for the gradient, one norm chunk ({@link dev.athanor.ops.Ops#NORM_CHUNK} of the shard, the clipping norm's read,
   * made after the backward has freed its windows), whichever is larger.
   */
  public static OffloadPlan placeShard(Job job, Footprint rank, Set<Role> diskRoles, int zero, int dp) {
    return placeShard(job, rank, diskRoles, zero, dp, Map.of());
  }

  /**
   * {@link #placeShard(Job, Footprint, Set, int, int)} with, per role on DISK, the units {@code resident} names kept in
   * memory ({@link OffloadConfig#residentUnits()}): every rank keeps its part of those units of the role in HOST (the
   * busiest rank's parts counted, {@link #residentShardElements}) and its files hold the other units' parts only.
   */
  public static OffloadPlan placeShard(Job job, Footprint rank, Set<Role> diskRoles, int zero, int dp,
      Map<Role, Set<String>> resident) {
    Objects.requireNonNull(job, "job");
    Objects.requireNonNull(rank, "rank");
    if (dp < 1) throw new IllegalArgumentException("dp must be >= 1, got " + dp);
    if (job.activationsOnDisk()) {
      throw new IllegalArgumentException("under ZeRO the activations stay in memory (kept, or recomputed with --recompute); "
          + "they cannot be on DISK yet");
    }
    for (Role r : diskRoles) {
      if (r != Role.ADAM_M && r != Role.ADAM_V && !(zero == 3 && (r == Role.MASTER || r == Role.GRAD))) {
        throw new IllegalArgumentException("under ZeRO " + (zero == 3 ? "3 only a rank's shard of the weights (master), the "
            + "gradients (grad) and AdamW's moments can be on DISK, not " + r.name().toLowerCase(java.util.Locale.ROOT)
            : "1 and 2 only AdamW's moments (a rank's shard of them) can be on DISK, not "
            + r.name().toLowerCase(java.util.Locale.ROOT) + ": the weights and gradients stay in memory (--zero 3 can put "
            + "its shard of them there)"));
      }
    }
    OffloadConfig oc = new OffloadConfig(diskRoles, null, job.chunkBytes(), true, resident, false);
    if (oc.enabled() && job.device().isCuda()) {
      throw new IllegalArgumentException("offload on " + job.device() + " is not supported yet: state can be on DISK only "
          + "when training on the CPU");
    }
    Set<Role> moments = EnumSet.noneOf(Role.class);
    for (Role r : oc.diskRoles()) if (r == Role.ADAM_M || r == Role.ADAM_V) moments.add(r);
    // the optimizer's staging: a slot set per role it streams (the shard's masters and gradient on DISK too)
    Footprint f = !oc.enabled() ? rank : rank.withShardMomentsOnDisk(moments, 0)
        .plus(Footprint.Component.OPTIMIZER, dev.athanor.memory.Tier.HOST, oc.stagingBytes(OffloadPlan.largestUnit(job.model())));
    long shardElements = maxShardElements(OffloadPlan.layoutElements(job.model()), dp);
    // a gather's or a fold's part of a piece of a unit: at most a chunk of elements
    long piecePart = 4 * Math.min(OffloadConfig.chunkElements(job.chunkBytes(), OffloadPlan.largestUnit(job.model())),
        shardElements);
    if (oc.onDisk(Role.GRAD)) {  // a piece being folded or written behind; later (the windows freed) the norm's chunk
      f = f.withShardRoleOnDisk(Role.GRAD, 4 * shardElements, Math.max(piecePart, 4 * Math.min(dev.athanor.ops.Ops.NORM_CHUNK,
          shardElements)));
    }
    if (oc.onDisk(Role.MASTER)) f = f.withShardRoleOnDisk(Role.MASTER, 4 * shardElements, piecePart);
    long kept = 0;  // the resident units' parts: in HOST, not in the files
    for (Role r : oc.residentUnits().keySet()) {
      long b = residentShardElements(job.model(), dp, oc.resident(r));
      Footprint.Component c = r == Role.MASTER ? Footprint.Component.WEIGHTS : r == Role.GRAD ? Footprint.Component.GRADIENTS
          : Footprint.Component.OPTIMIZER;
      f = f.move(c, dev.athanor.memory.Tier.DISK, 4 * b, dev.athanor.memory.Tier.HOST, 4 * b);
      if (r != Role.GRAD) kept = Math.addExact(kept, 4 * b);
    }
    if (job.checkpoints()) {  // a background save's copy of the rank's part: the masters and the moments, each where it lives
      long each = rank.bytes(Footprint.Component.OPTIMIZER, Set.of(dev.athanor.memory.Tier.HOST)) / 2;
      int onDisk = moments.size() + (oc.onDisk(Role.MASTER) ? 1 : 0);
      f = f.plus(Footprint.Component.CHECKPOINT, dev.athanor.memory.Tier.HOST, Math.addExact(each * (3 - onDisk), kept))
          .plus(Footprint.Component.CHECKPOINT, dev.athanor.memory.Tier.DISK, each * onDisk);
    }
    return new OffloadPlan(job.model(), job.device(), oc.diskRoles(), job.chunkBytes(), f, job.train().accum(), job.recompute(),
        oc.residentUnits(), null);
  }

  /** The most elements of the units {@code units} that one rank's part of a ZeRO shard over {@code dp} ranks holds. */
  static long residentShardElements(ModelConfig model, int dp, Set<String> units) {
    long most = 0;
    for (int r = 0; r < dp; r++) {
      long[] parts = OffloadPlan.shardUnitElements(model, dp, r);
      long b = 0;
      for (String u : units) b = Math.addExact(b, parts[OffloadPlan.unitIndex(model, u)]);
      most = Math.max(most, b);
    }
    return most;
  }

  /**
   * The most elements of {@code model}'s unit {@code unit} that one rank's part of a ZeRO shard over {@code dp} ranks
   * holds ({@link OffloadPlan#shardUnitElements}).
   */
  static long maxShardPart(ModelConfig model, int dp, String unit) {
    int i = OffloadPlan.unitIndex(model, unit);
    long most = 0;
    for (int r = 0; r < dp; r++) most = Math.max(most, OffloadPlan.shardUnitElements(model, dp, r)[i]);
    return most;
  }

  /**
   * The plan of one rank of a ZeRO run ({@code rank} as in {@link #placeShard}) under {@code mm}'s budgets: the
   * first of everything in memory, the shard's first moment on DISK, both moments on DISK that fits; or why none does
   * (the gradients and weights cannot go to DISK under ZeRO).
   */
  public static Result planShard(Job job, Footprint rank, MemoryManager mm) {
    return planShard(job, rank, mm, 1, 1);
  }

  /**
   * {@link #planShard(Job, Footprint, MemoryManager)} of a rank of a ZeRO {@code zero} run of {@code dp} replicas: under
   * ZeRO 3 its shard's gradient, then its masters, go to DISK after the moments when the budget needs it ({@link
   * #SHARD3_STEPS}). Of the roles it puts on DISK, it then keeps as many (unit, role) pairs in memory as the HOST room
   * left holds, as one process's plan does ({@link #keepResident(ModelConfig, OffloadPlan, MemoryManager, UnitBytes,
   * UnitTraffic, java.util.function.Function)}: the most DISK traffic saved per byte first, {@link #shardUnitTraffic},
   * each unit weighed at the largest part of it any rank holds).
   */
  public static Result planShard(Job job, Footprint rank, MemoryManager mm, int zero, int dp) {
    Objects.requireNonNull(mm, "mm");
    OffloadPlan last = null;
    for (Set<Role> roles : zero == 3 ? SHARD3_STEPS : SHARD_STEPS) {
      last = placeShard(job, rank, roles.isEmpty() ? Set.of() : EnumSet.copyOf(roles), zero, dp);
      if (last.footprint().worstShortfall(mm) == null) {
        if (last.diskRoles().isEmpty()) return new Result(last, null);
        Set<Role> onDisk = last.diskRoles();
        return new Result(keepResident(job.model(), last, mm, (r, u) -> 4 * maxShardPart(job.model(), dp, u),
            (r, u, bytes) -> shardUnitTraffic(job.model(), job.train().accum(), r, u, bytes),
            res -> placeShard(job, rank, onDisk, zero, dp, res)), null);
      }
    }
    Shortfall s = last.footprint().worstShortfall(mm);
    String tier = s.tierName();
    return new Result(null, "no offload plan fits this rank: with its shard of " + OffloadPlan.describe(last.diskRoles())
        + " on DISK, the " + tier + " is " + Footprint.size(s.needed() - s.available()) + " short: it "
        + last.footprint().describe(s) + (zero == 3 ? "; what stays in memory is the activations, workspace, the gathered "
        + "units' windows and the buffers the shard goes through" : "; under ZeRO 1 and 2 only AdamW's moments go to DISK "
        + "(the weights and gradients stay in memory; --zero 3 can put its shard of them there)"));
  }

  /** The most elements of a part of {@code n} cut over {@code dp} ranks as ZeRO cuts them (rank r from {@code n r / dp}). */
  static long maxShardElements(long n, int dp) {
    long most = 0;
    for (int r = 0; r < dp; r++) most = Math.max(most, shardRange(n, r, dp)[1] - shardRange(n, r, dp)[0]);
    return most;
  }

  /** Rank {@code r}'s part {start, end} of {@code n} elements cut over {@code dp} ranks (as {@code Communicator.partStart}). */
  private static long[] shardRange(long n, int r, int dp) {
    return new long[] {Math.multiplyExact(n, (long) r) / dp, Math.multiplyExact(n, (long) r + 1) / dp};
  }

  /**
   * DISK bytes read and written per step by the busiest rank of a dp × ZeRO run with its shard of {@code roles} on DISK
   * ({@code accum} micro-batches per rank; {@link #shardTrafficPerStep(ModelConfig, int, int, int, Set)}).
   */
  public static long shardTrafficPerStep(ModelConfig model, int dp, int accum, Set<Role> roles) {
    return shardTrafficPerStep(model, dp, accum, roles, Map.of());
  }

  /** {@link #shardTrafficPerStep(ModelConfig, int, int, Set)} with the units {@code resident} names kept in memory. */
  public static long shardTrafficPerStep(ModelConfig model, int dp, int accum, Set<Role> roles, Map<Role, Set<String>> resident) {
    long most = 0;
    for (int r = 0; r < dp; r++) most = Math.max(most, shardTrafficPerStep(model, dp, r, accum, roles, resident));
    return most;
  }

  /**
   * DISK bytes read and written per step by rank {@code rank} of a dp × ZeRO run with its shard ({@code S} bytes) of
   * {@code roles} on DISK: each moment read and written once by the optimizer ({@code 2 S}); the step's gradient (ZeRO
   * 3) written by each micro-batch's folds, read back by every micro-batch's but the first, read by the clipping norm and
   * by the optimizer ({@code (2 accum + 1) S}); the masters (ZeRO 3) read by every gather of a unit this rank holds part
   * of, twice per micro-batch (forward and backward; the head once, its window kept from its forward to its backward),
   * then read and written by the optimizer. Checkpoint saves are not counted.
   */
  public static long shardTrafficPerStep(ModelConfig model, int dp, int rank, int accum, Set<Role> roles) {
    return shardTrafficPerStep(model, dp, rank, accum, roles, Map.of());
  }

  /**
   * {@link #shardTrafficPerStep(ModelConfig, int, int, int, Set)} with, per role, the units {@code resident} names kept
   * in memory (their parts of the shard move nothing): the sum over the other units' parts of {@link #shardUnitTraffic}.
   */
  public static long shardTrafficPerStep(ModelConfig model, int dp, int rank, int accum, Set<Role> roles,
      Map<Role, Set<String>> resident) {
    long[] parts = OffloadPlan.shardUnitElements(model, dp, rank);
    List<OffloadPlan.UnitSize> units = OffloadPlan.units(model);
    long t = 0;
    for (Role r : roles) {
      Set<String> kept = resident.getOrDefault(r, Set.of());
      for (int i = 0; i < parts.length; i++) {
        String u = units.get(i).name();
        if (!kept.contains(u)) t = Math.addExact(t, shardUnitTraffic(model, accum, r, u, 4 * parts[i]));
      }
    }
    return t;
  }

  /**
   * DISK bytes read and written per step of {@code role} of a unit's part of a rank's ZeRO shard ({@code bytes}) when
   * it is on DISK, which is what keeping it in memory saves: a moment read and written once by the optimizer ({@code 2
   * bytes}); the step's gradient (ZeRO 3) written by each micro-batch's fold, read back by every micro-batch's but the
   * first, read by the clipping norm and by the optimizer ({@code (2 accum + 1) bytes}); the masters (ZeRO 3) read by
   * every gather of the unit, twice per micro-batch (forward and backward; the head once, its window kept from its
   * forward to its backward), then read and written by the optimizer. Checkpoint saves are not counted.
   */
  static long shardUnitTraffic(ModelConfig model, int accum, Role role, String unit, long bytes) {
    return switch (role) {
      case ADAM_M, ADAM_V -> Math.multiplyExact(2L, bytes);
      case GRAD -> Math.multiplyExact(2L * accum + 1, bytes);
      case MASTER -> Math.multiplyExact((unit.equals(ModelConfig.HEAD_UNIT) ? accum : 2L * accum) + 2, bytes);
      default -> 0L;
    };
  }

  /**
   * {@code p} (something on DISK, fitting) with as many units' roles kept in memory as still fit, the ones that save
   * the most DISK traffic per byte first ({@link OffloadPlan#unitTraffic}): the weights (the tied embeddings first, read
   * once more per micro-batch than the others; then the head and the blocks in order), then the gradients, then AdamW's
   * moments (read and written once per step), each role's units in that same order. A (unit, role) that does not fit
   * is skipped and the next smaller ones tried (not one as large: blocks all have the same size, so a model of many
   * blocks is not tried block by block once one did not fit), so smaller units fill what is left. Each try is a whole {@link #place} checked with
   * {@link Footprint#worstShortfall}: the staging slots, the windows and the resident bytes are all counted.
   */
  static OffloadPlan keepResident(Job job, OffloadPlan p, MemoryManager mm) {
    return keepResident(job.model(), p, mm, (r, u) -> Math.multiplyExact(4L, OffloadPlan.unitElements(job.model(), u)),
        p::unitTraffic, resident -> place(job, p.diskRoles(), resident));
  }

  /** The bytes of a (role, unit) in memory that {@link #keepResident} weighs. */
  @FunctionalInterface
  interface UnitBytes {
    long of(Role role, String unit);
  }

  /** The DISK traffic per step of {@code bytes} of a (role, unit) on DISK, which keeping it in memory saves. */
  @FunctionalInterface
  interface UnitTraffic {
    long of(Role role, String unit, long bytes);
  }

  /**
   * {@link #keepResident(Job, OffloadPlan, MemoryManager)} for any job, the single process's or a ZeRO rank's: {@code p}
   * with the (unit, role) pairs of its roles on DISK that fit kept in memory, each of {@code bytes} and saving {@code
   * traffic}, each try placed by {@code place} (the resident units per role to a whole plan) and checked against {@code
   * mm}.
   */
  static OffloadPlan keepResident(ModelConfig model, OffloadPlan p, MemoryManager mm, UnitBytes bytesOf, UnitTraffic traffic,
      java.util.function.Function<Map<Role, Set<String>>, OffloadPlan> place) {
    List<String> order = new java.util.ArrayList<>();
    if (model.tiedEmbeddings()) order.add(ModelConfig.EMBEDDING_UNIT);
    order.add(ModelConfig.HEAD_UNIT);
    for (int i = 0; i < model.layers(); i++) order.add(ModelConfig.blockUnit(i));
    if (!model.tiedEmbeddings()) order.add(ModelConfig.EMBEDDING_UNIT);
    record Pick(Role role, String unit, long bytes, double perByte, int rank) {}
    List<Pick> picks = new java.util.ArrayList<>();
    for (Role r : OffloadPlan.ROLES) {
      if (!p.diskRoles().contains(r)) continue;
      for (String u : order) {
        long bytes = bytesOf.of(r, u);
        if (bytes > 0) picks.add(new Pick(r, u, bytes, (double) traffic.of(r, u, bytes) / bytes, picks.size()));
      }
    }
    picks.sort(java.util.Comparator.comparingDouble((Pick x) -> -x.perByte()).thenComparingInt(Pick::rank));
    Map<Role, Set<String>> resident = new java.util.EnumMap<>(Role.class);
    Map<Role, Long> failed = new java.util.EnumMap<>(Role.class);  // the smallest unit of each role that did not fit
    OffloadPlan best = p;
    for (Pick x : picks) {
      if (x.bytes() >= failed.getOrDefault(x.role(), Long.MAX_VALUE)) continue;  // no smaller than one that did not fit
      Set<String> units = resident.computeIfAbsent(x.role(), k -> new java.util.LinkedHashSet<>());
      units.add(x.unit());
      OffloadPlan q = place.apply(resident);
      if (q.footprint().worstShortfall(mm) == null) {
        best = q;
      } else {
        units.remove(x.unit());
        failed.put(x.role(), x.bytes());
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
      if (s == null) return new Result(p.diskRoles().isEmpty() ? p : keepResident(c.apply(job), p, mm), null);
      if (bestShort == null || s.needed() - s.available() < bestShort.needed() - bestShort.available()) {
        best = p;
        bestShort = s;
      }
    }
    Footprint f = best.footprint();
    String tier = bestShort.tierName();
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

package dev.athanor.offload;

import dev.athanor.memory.InsufficientMemoryException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.nn.Footprint.Shortfall;
import dev.athanor.params.Role;
import dev.athanor.tensor.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Plans the optimizer on the host ({@link HostOffload}) for a job on CUDA that does not fit its device's memory: the
 * BF16 compute weights, the gradients, the activations and the workspace stay on the device (bounded by {@code
 * --mem-device}); the F32 masters and AdamW's moments go to page-locked host memory, and when host memory is short
 * too, the first moment, then both moments, go further to DISK. Host memory, pinned and ordinary together, is held
 * to the HOST budget ({@code --mem-host}) as well as to each tier's own budget ({@code --mem-pinned}) and to what the
 * machine has.
 *
 * <p>The placements tried, in order (each with the job's activations, then recomputed): the moments pinned, the first
 * moment on DISK, both on DISK; each with the gradients streamed to the host during the backward (one micro-batch a
 * step: a pinned copy of the whole gradient), then through two slots of the largest unit; with accumulation, the step's
 * gradient sum on the device (read through two slots), then, when the device is short of it, on the host (each
 * micro-batch's unit gradients added into a pinned F32 accumulator as the backward completes them: the device keeps one
 * micro-batch's gradient). What the device keeps cannot shrink below its weights, gradients, activations and
 * workspace: a job whose device memory is short even then gets no plan, and the failure names the DEVICE tier.
 * The CPU's placements (weights and gradients on DISK, activations on DISK) are {@link OffloadPlanner}'s.
 */
public final class HostOffloadPlanner {
  private HostOffloadPlanner() {}

  /** The moments on DISK the planner tries, in order. */
  static final List<Set<Role>> STEPS = List.of(Set.of(), Set.of(Role.ADAM_M), Set.of(Role.ADAM_M, Role.ADAM_V));

  /**
   * A placement with the optimizer on the host.
   *
   * @param job the job (its {@link OffloadPlanner.Job#recompute()} says whether the activations are recomputed)
   * @param diskMoments AdamW's moments on DISK (the others pinned)
   * @param streamGradients whether the gradients stream to the host during the backward ({@link
   *     HostOffload#streamGradients()}; only with one micro-batch a step)
   * @param sumOnHost whether the step's gradient sum is formed on the host ({@link HostOffload#sumOnHost()}; only with
   *     accumulation)
   * @param footprint the job's memory with this placement, per component and tier
   * @param shards 1: every rank keeps the whole optimizer; N: ZeRO 1 over N data-parallel ranks, each keeping only its
   *     shard of the masters and moments (the figures are this rank's: the largest shard)
   */
  public record Plan(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients, boolean sumOnHost,
      Footprint footprint, int shards) {
    /** A plan whose ranks each keep the whole optimizer. */
    public Plan(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients, boolean sumOnHost, Footprint footprint) {
      this(job, diskMoments, streamGradients, sumOnHost, footprint, 1);
    }

    public Plan {
      if (shards < 1) throw new IllegalArgumentException("shards " + shards + " < 1");
      Objects.requireNonNull(job, "job");
      if (sumOnHost && job.train().accum() == 1) {
        throw new IllegalArgumentException("the step's gradient sum is formed on the host only with accumulation");
      }
      Objects.requireNonNull(footprint, "footprint");
      diskMoments = Set.copyOf(diskMoments);
      new HostOffload(new OffloadConfig(diskMoments, null, job.chunkBytes()));  // checks the roles
    }

    /** The trainer's configuration for this plan, the moments' files in {@code directory} (null: the DISK tier's). */
    public HostOffload offload(Path directory) {
      return new HostOffload(diskMoments.isEmpty() ? OffloadConfig.NONE
          : new OffloadConfig(EnumSet.copyOf(diskMoments), directory, job.chunkBytes()), streamGradients, true, sumOnHost);
    }

    /**
     * Bytes between the device and the host per step: every unit's F32 gradient down (each micro-batch's when the sum
     * is formed on the host), its compute weights up.
     */
    public long hostTrafficPerStep() {
      long n = OffloadPlan.layoutElements(job.model()), mine = shardElements(n, shards);
      // ZeRO 1: the gradient whole when streamed or summed (it is reduced on the host), the shard's through the slots;
      // the shard's new weights up (the other ranks' come by the all-gather on the device)
      long down = 4L * (sumOnHost ? job.train().accum() : 1) * (sumOnHost || streamGradients ? n : mine);
      return Math.addExact(down, Math.multiplyExact(mine, job.dtype().byteSize()));
    }

    /** Bytes read from and written to DISK per step: each moment there (this rank's shard of it) read and written once. */
    public long diskTrafficPerStep() {
      return Math.multiplyExact(2L * 4 * diskMoments.size(), shardElements(OffloadPlan.layoutElements(job.model()), shards));
    }

    /** The plan in a few lines, as {@code plan} and {@code train --offload auto} print it. */
    public List<String> describe() {
      List<String> out = new ArrayList<>();
      Footprint f = footprint;
      String moments = diskMoments.isEmpty() ? "AdamW's moments" : OffloadPlan.describe(diskMoments) + " on DISK";
      if (shards > 1) {
        out.add("ZeRO 1 over " + shards + " data-parallel ranks: each keeps its shard of the masters and moments on its host "
            + "(figures per rank), updates it and all-gathers the units' new " + job.dtype() + " weights on " + job.device());
      }
      out.add("offload plan: the optimizer on the host (CPU AdamW, unit by unit): the F32 masters"
          + (diskMoments.size() == 2 ? "" : " and " + (diskMoments.isEmpty() ? moments : "the other moment"))
          + " in pinned host memory" + (diskMoments.isEmpty() ? "" : ", " + moments)
          + "; the " + job.dtype() + " weights, the gradients and the activations"
          + (job.recompute() ? " (recomputed in the backward)" : "") + " on " + job.device() + "; the gradients to the host "
          + (sumOnHost ? "as the backward completes each unit, each micro-batch's added into the step's sum in pinned host "
              + "memory" : streamGradients ? "as the backward completes each unit" : "after the backward, through two slots")
          + "; each step's update made behind it, overlapping the next forward");
      for (Tier t : List.of(Tier.DEVICE, Tier.HOST_PINNED, Tier.HOST, Tier.DISK)) {
        if (f.bytes(t) == 0) continue;
        StringBuilder b = new StringBuilder("  " + t + ": " + Footprint.size(f.bytes(t)) + " (");
        boolean first = true;
        for (Component c : Component.values()) {
          long n = f.bytes(c, Set.of(t));
          if (n == 0) continue;
          b.append(first ? "" : ", ").append(c.label()).append(' ').append(Footprint.size(n));
          first = false;
        }
        out.add(b.append(')').toString());
      }
      out.add("  per step: " + Footprint.size(hostTrafficPerStep()) + " between " + job.device() + " and the host"
          + (diskMoments.isEmpty() ? "" : ", " + Footprint.size(diskTrafficPerStep()) + " of DISK traffic"));
      return out;
    }
  }

  /** A plan, or why there is none (exactly one of the two is non-null). */
  public record Result(Plan plan, String failure) {
    public Result {
      if ((plan == null) == (failure == null)) throw new IllegalArgumentException("exactly one of plan and failure");
    }

    /** The plan; throws {@link InsufficientMemoryException} with {@link #failure()} when there is none. */
    public Plan orThrow() {
      if (plan == null) throw new InsufficientMemoryException(failure);
      return plan;
    }
  }

  /**
   * The memory of {@code job} (on CUDA) with the optimizer on the host and {@code diskMoments} on DISK: the masters and
   * the pinned moments moved from DEVICE to HOST_PINNED, the moments on DISK to DISK; the host optimizer's staging
   * (with one micro-batch a step a pinned copy of the whole F32 gradient, else two F32 gradient slots of the largest
   * unit; two compute-dtype weight slots) pinned, and the DISK moments' staging buffers in HOST.
   */
  public static Footprint footprint(OffloadPlanner.Job job, Set<Role> diskMoments) {
    return footprint(job, diskMoments, job.train().accum() == 1);
  }

  /** As {@link #footprint(OffloadPlanner.Job, Set)}, the gradients streamed or not ({@link Plan#streamGradients()}). */
  public static Footprint footprint(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients) {
    return footprint(job, diskMoments, streamGradients, false);
  }

  /**
   * As {@link #footprint(OffloadPlanner.Job, Set, boolean)}, with accumulation the step's gradient sum on the host or
   * not ({@link Plan#sumOnHost()}): on the host, the device keeps one micro-batch's F32 gradient and no sum; the host
   * a pinned F32 accumulator of the whole gradient and two pinned F32 slots of the largest unit (what a later
   * micro-batch's unit gradient is copied into before it is added).
   */
  public static Footprint footprint(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients,
      boolean sumOnHost) {
    return footprint(job, diskMoments, streamGradients, sumOnHost, 1);
  }

  /**
   * As {@link #footprint(OffloadPlanner.Job, Set, boolean, boolean)} for one of {@code replicas} data-parallel ranks
   * (ZeRO 0, each with the whole model): with more than one, a step's gradient whole in pinned host memory (streamed
   * there, or summed there) is all-reduced there, and the MPI communicator keeps its scratch in HOST ({@link
   * dev.athanor.dist.Communicator#hostReduceScratchBytes}); through the slots the gradient is reduced on the device (in
   * place with NCCL).
   */
  public static Footprint footprint(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients,
      boolean sumOnHost, int replicas) {
    return footprint(job, diskMoments, streamGradients, sumOnHost, replicas, false);
  }

  /**
   * As {@link #footprint(OffloadPlanner.Job, Set, boolean, boolean, int)}; with {@code zeroOne} each rank keeps only
   * its shard of the F32 masters and AdamW's moments ({@link dev.athanor.dist.Communicator#partStart}; the largest
   * shard counted) in pinned host memory or on DISK, the rest as without it (the whole gradient reduced, the compute
   * weights whole on the device).
   */
  public static Footprint footprint(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients,
      boolean sumOnHost, int replicas, boolean zeroOne) {
    Objects.requireNonNull(job, "job");
    if (replicas < 1) throw new IllegalArgumentException("replicas " + replicas + " < 1");
    if (sumOnHost && job.train().accum() == 1) {
      throw new IllegalArgumentException("the step's gradient sum is formed on the host only with accumulation");
    }
    if (streamGradients && job.train().accum() > 1) {
      throw new IllegalArgumentException("the gradients stream during the backward only with one micro-batch a step, not "
          + job.train().accum());
    }
    if (!job.device().isCuda()) {
      throw new IllegalArgumentException("the optimizer on the host is planned for a CUDA job; on " + job.device()
          + " the state goes to DISK (OffloadPlanner)");
    }
    if (job.activationsOnDisk()) {
      throw new IllegalArgumentException("activations on DISK need the CPU backend; on " + job.device() + " they stay on the "
          + "device (kept, or recomputed with --recompute)");
    }
    long n = OffloadPlan.layoutElements(job.model());
    long state = MemoryManager.reservedSize(Tier.DEVICE, Math.multiplyExact(n, 4L));  // one F32 role on the device
    long pinned = MemoryManager.reservedSize(Tier.HOST_PINNED, Math.multiplyExact(n, 4L));
    long mine = zeroOne ? shardElements(n, replicas) : n;  // the masters and moments this rank keeps
    long shardPinned = MemoryManager.reservedSize(Tier.HOST_PINNED, Math.multiplyExact(mine, 4L));
    Footprint f = job.inMemory().move(Component.WEIGHTS, Tier.DEVICE, state, Tier.HOST_PINNED, shardPinned);
    for (Role r : List.of(Role.ADAM_M, Role.ADAM_V)) {
      boolean disk = diskMoments.contains(r);
      f = f.move(Component.OPTIMIZER, Tier.DEVICE, state, disk ? Tier.DISK : Tier.HOST_PINNED,
          disk ? Math.multiplyExact(mine, 4L) : shardPinned);
    }
    long largest = OffloadPlan.largestUnit(job.model());
    DType dt = job.dtype();
    // the gradients: with one micro-batch a step streamed during the backward into a pinned copy of the whole
    // gradient, else through two slots of the largest unit; the weights through two slots
    long grads = streamGradients ? pinned : 2 * MemoryManager.reservedSize(Tier.HOST_PINNED, largest * 4);
    if (sumOnHost) {  // the step's sum (GRAD_ACC) from the device to a pinned accumulator, beside the two slots
      f = f.move(Component.GRADIENTS, Tier.DEVICE, state, Tier.HOST_PINNED, pinned);
    }
    f = f.plus(Component.GRADIENTS, Tier.HOST_PINNED, grads)
        .plus(Component.OPTIMIZER, Tier.HOST_PINNED, 2 * MemoryManager.reservedSize(Tier.HOST_PINNED, largest * dt.byteSize()));
    if (!diskMoments.isEmpty()) {
      f = f.plus(Component.OPTIMIZER, Tier.HOST, new OffloadConfig(diskMoments, null, job.chunkBytes()).stagingBytes(largest));
    }
    long scratch = streamGradients || sumOnHost ? dev.athanor.dist.Communicator.hostReduceScratchBytes(DType.F32, n, replicas) : 0;
    if (scratch > 0) f = f.plus(Component.BUFFERS, Tier.HOST, MemoryManager.reservedSize(Tier.HOST, scratch));
    return f;
  }

  /**
   * {@code job} with the optimizer on the host and {@code diskMoments} on DISK, fitting or not, the gradients streamed
   * when the job has one micro-batch a step.
   */
  public static Plan place(OffloadPlanner.Job job, Set<Role> diskMoments) {
    return place(job, diskMoments, job.train().accum() == 1);
  }

  /** The same, the gradients streamed or not. */
  public static Plan place(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients) {
    return place(job, diskMoments, streamGradients, false);
  }

  /** The same, the gradients streamed or not, the step's sum on the host or not. */
  public static Plan place(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients, boolean sumOnHost) {
    return place(job, diskMoments, streamGradients, sumOnHost, 1);
  }

  /** The same for one of {@code replicas} data-parallel ranks ({@link #footprint(OffloadPlanner.Job, Set, boolean, boolean, int)}). */
  public static Plan place(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients, boolean sumOnHost,
      int replicas) {
    return place(job, diskMoments, streamGradients, sumOnHost, replicas, false);
  }

  /** The same, with {@code zeroOne} each rank keeping only its shard of the optimizer ({@link Plan#shards()}). */
  public static Plan place(OffloadPlanner.Job job, Set<Role> diskMoments, boolean streamGradients, boolean sumOnHost,
      int replicas, boolean zeroOne) {
    return new Plan(job, diskMoments, streamGradients, sumOnHost,
        footprint(job, diskMoments, streamGradients, sumOnHost, replicas, zeroOne), zeroOne ? replicas : 1);
  }

  /** The elements of the largest of {@code shards} parts of {@code n} ({@link dev.athanor.dist.Communicator#partStart}). */
  static long shardElements(long n, int shards) {
    long most = 0;
    for (int r = 0; r < shards; r++) {
      most = Math.max(most, dev.athanor.dist.Communicator.partStart(n, r + 1, shards)
          - dev.athanor.dist.Communicator.partStart(n, r, shards));
    }
    return most;
  }

  /**
   * Why {@code f} does not fit {@code mm}'s budgets and the machine ({@link Footprint#worstShortfall}, and host memory,
   * pinned and ordinary together, against the HOST budget), in words; null when it fits.
   */
  static String shortfall(Footprint f, MemoryManager mm) {
    Shortfall s = f.worstShortfall(mm);
    if (s != null) {
      return "the " + s.tierName() + " is " + Footprint.size(s.needed() - s.available()) + " short: it " + f.describe(s);
    }
    long budget = mm.budgetBytes(Tier.HOST);
    if (budget == MemoryManager.UNLIMITED) return null;
    long need = f.bytes(EnumSet.of(Tier.HOST, Tier.HOST_PINNED));
    long left = Math.max(0, budget - mm.liveBytes(Tier.HOST) - (mm.reservedBytes(Tier.HOST_PINNED) - mm.cachedBytes(Tier.HOST_PINNED)));
    if (need <= left) return null;
    return "host memory (HOST and HOST_PINNED, held to the HOST budget) is " + Footprint.size(need - left) + " short: it needs "
        + Footprint.size(need) + " (pinned " + Footprint.size(f.bytes(Tier.HOST_PINNED)) + ", ordinary "
        + Footprint.size(f.bytes(Tier.HOST)) + ") but the HOST budget (--mem-host) leaves " + Footprint.size(left);
  }

  /**
   * The plan of {@code job} (on CUDA, not fitting in the device's memory as it is) under {@code mm}'s budgets: the
   * first placement of {@link #STEPS} that fits, with the job's activations, then recomputed; or why none does, naming
   * the tier that is short with the placement that came closest.
   */
  public static Result plan(OffloadPlanner.Job job, MemoryManager mm) {
    return plan(job, mm, 1);
  }

  /**
   * The plan of one of {@code replicas} data-parallel ranks (ZeRO 0, each with the whole model on its device and the
   * optimizer on its host), each held to {@code mm}'s budgets on its own; as {@link #plan(OffloadPlanner.Job,
   * MemoryManager)} with the host reduction's scratch counted.
   */
  public static Result plan(OffloadPlanner.Job job, MemoryManager mm, int replicas) {
    return plan(job, mm, replicas, false);
  }

  /**
   * As {@link #plan(OffloadPlanner.Job, MemoryManager, int)}; with {@code zeroOne} (ZeRO 1) each rank keeps only its
   * shard of the masters and moments ({@link #footprint(OffloadPlanner.Job, Set, boolean, boolean, int, boolean)}).
   */
  public static Result plan(OffloadPlanner.Job job, MemoryManager mm, int replicas, boolean zeroOne) {
    Objects.requireNonNull(mm, "mm");
    List<OffloadPlanner.Job> jobs = job.recompute() || job.model().layers() < 2 ? List.of(job)
        : List.of(job, job.withRecompute(true));
    Plan last = null;
    for (OffloadPlanner.Job j : jobs) {
      for (Set<Role> roles : STEPS) {
        // one micro-batch: the gradients streamed (faster, a pinned copy of them), else through slots (less pinned
        // memory); accumulation: the step's sum on the device, else on the host (the device keeps one micro-batch's)
        boolean one = j.train().accum() == 1;
        for (boolean variant : new boolean[] {true, false}) {
          last = one ? place(j, roles, variant, false, replicas, zeroOne) : place(j, roles, false, !variant, replicas, zeroOne);
          if (shortfall(last.footprint(), mm) == null) return new Result(last, null);
        }
      }
    }
    return new Result(null, "no offload plan fits: with the optimizer on the host, " + OffloadPlan.describe(last.diskMoments())
        + " on DISK" + (last.job().recompute() ? " and the activations recomputed" : "") + ", "
        + shortfall(last.footprint(), mm) + "; what stays on " + job.device() + " is the " + job.dtype() + " weights, the "
        + (last.sumOnHost() ? "micro-batch's gradient" : "gradients") + ", the activations and the workspace");
  }
}

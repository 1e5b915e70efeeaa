package dev.athanor.offload;

import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Where a training job keeps its parameter-store roles: a tier per (unit, role) for the weights (FP32 masters, which
 * on the CPU are the compute weights), the gradients and AdamW's two moments, the job's bytes per tier with that
 * placement, and the DISK traffic of one optimizer step.
 *
 * <p>The placement is per role: a role is on DISK for every unit or for none ({@link OffloadConfig} selects roles,
 * not units), so {@link #placements()} lists each unit with its role's tier. The workspace is always in memory (HOST
 * on the CPU); the blocks' saved activations are kept in memory, recomputed in the backward, or on DISK between each
 * micro-batch's forward and backward ({@link #activations()}, a ring of two blocks' in memory).
 *
 * @param model the model the plan is for (its units and their sizes)
 * @param device where the job runs
 * @param diskRoles the roles on DISK (a subset of MASTER, GRAD, ADAM_M and ADAM_V; empty: everything in memory)
 * @param chunkBytes bytes of one role the optimizer streams per chunk ({@link OffloadConfig#chunkBytes()})
 * @param footprint the job's memory with this placement, per component and tier (the roles on DISK counted in the
 *     DISK tier, their windows and staging buffers in HOST)
 * @param accum micro-batches per step (the gradients' and weights' DISK traffic grows with it)
 * @param recompute whether the job recomputes activations in the backward pass (one block's kept instead of all)
 * @param residentWeights with the weights on DISK, the units whose weights stay in memory
 *     ({@link OffloadConfig#residentWeights()})
 * @param activations the micro-batch whose blocks' saved activations go to DISK ({@link ActivationPager}), or null when
 *     they stay in memory (kept, or recomputed with {@code recompute})
 */
public record OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint,
    int accum, boolean recompute, Set<String> residentWeights, Activations activations) {
  /**
   * The blocks' saved activations on DISK, for micro-batches of {@code batch} sequences of {@code seq} tokens (what
   * sizes their files and traffic).
   */
  public record Activations(int batch, int seq) {
    public Activations {
      if (batch < 1 || seq < 1) throw new IllegalArgumentException("batch " + batch + " and seq " + seq + " must be >= 1");
    }
  }

  /** The roles a plan places, in the order its table lists them per unit. */
  public static final List<Role> ROLES = List.of(Role.MASTER, Role.GRAD, Role.ADAM_M, Role.ADAM_V);

  /** One unit's role: its tier and bytes (the unit's padded elements x the role's element size). */
  public record Placement(String unit, Role role, Tier tier, long bytes) {
    public Placement {
      Objects.requireNonNull(unit, "unit");
      Objects.requireNonNull(role, "role");
      Objects.requireNonNull(tier, "tier");
      if (bytes < 0) throw new IllegalArgumentException("bytes must be >= 0, got " + bytes);
    }
  }

  /** A unit of the parameter store and its elements (padding included), as the store lays it out. */
  public record UnitSize(String name, long elements) {}

  public OffloadPlan {
    Objects.requireNonNull(model, "model");
    Objects.requireNonNull(device, "device");
    Objects.requireNonNull(footprint, "footprint");
    diskRoles = Set.copyOf(new OffloadConfig(diskRoles, null, chunkBytes).diskRoles());  // checks roles and chunk
    if (!diskRoles.isEmpty() && device.isCuda()) {
      throw new IllegalArgumentException("offload on " + device + " is not supported yet: state can be on DISK only "
          + "when training on the CPU");
    }
    if (accum < 1) throw new IllegalArgumentException("accum must be >= 1, got " + accum);
    residentWeights = Set.copyOf(residentWeights);
    new OffloadConfig(diskRoles, null, chunkBytes, true, residentWeights);  // resident units need the weights on DISK
    if (!residentWeights.isEmpty()) {  // (a model of a million layers has a million units: only when needed)
      java.util.Set<String> names = new java.util.HashSet<>();
      for (UnitSize u : units(model)) names.add(u.name());
      for (String u : residentWeights) if (!names.contains(u)) throw new IllegalArgumentException("no unit named \"" + u + "\"");
    }
    if (activations != null && recompute) {
      throw new IllegalArgumentException("the activations are recomputed or on DISK, not both");
    }
    if (activations != null && device.isCuda()) {
      throw new IllegalArgumentException("activations on DISK need the CPU backend; offload on " + device + " is not "
          + "supported yet");
    }
  }

  /** A plan whose activations stay in memory (kept, or recomputed). */
  public OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint, int accum,
      boolean recompute, Set<String> residentWeights) {
    this(model, device, diskRoles, chunkBytes, footprint, accum, recompute, residentWeights, null);
  }

  /** A plan without resident weight units. */
  public OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint, int accum,
      boolean recompute) {
    this(model, device, diskRoles, chunkBytes, footprint, accum, recompute, Set.of());
  }

  /** A plan of one micro-batch per step, without recomputation. */
  public OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint) {
    this(model, device, diskRoles, chunkBytes, footprint, 1, false, Set.of());
  }

  /** Elements of {@code model}'s flat layout, padding included (every unit's). */
  public static long layoutElements(ModelConfig model) {
    long block = ParameterStore.layoutNumel(model.blockSpecs(0));  // every block has the same shapes
    return Math.addExact(Math.addExact(ParameterStore.layoutNumel(model.embeddingSpecs()),
        Math.multiplyExact((long) model.layers(), block)), ParameterStore.layoutNumel(model.headSpecs()));
  }

  /**
   * The elements of the {@code n} largest units of {@code model} not named in {@code except}, largest first, without
   * listing every unit (the blocks all have the same size: a model of a million layers is planned as fast as one of
   * twelve).
   */
  static List<Long> largestUnits(ModelConfig model, Set<String> except, int n) {
    List<Long> out = new ArrayList<>();
    if (!except.contains(ModelConfig.EMBEDDING_UNIT)) out.add(ParameterStore.layoutNumel(model.embeddingSpecs()));
    if (!except.contains(ModelConfig.HEAD_UNIT)) out.add(ParameterStore.layoutNumel(model.headSpecs()));
    long block = ParameterStore.layoutNumel(model.blockSpecs(0));
    int blocks = 0;
    for (int i = 0; i < model.layers() && blocks < n; i++) if (!except.contains(ModelConfig.blockUnit(i))) blocks++;
    for (int i = 0; i < blocks; i++) out.add(block);
    out.sort(java.util.Comparator.reverseOrder());
    return List.copyOf(out.subList(0, Math.min(n, out.size())));
  }

  /** The elements of {@code model}'s unit {@code name} (embedding, block.N or head). */
  static long unitElements(ModelConfig model, String name) {
    if (name.equals(ModelConfig.EMBEDDING_UNIT)) return ParameterStore.layoutNumel(model.embeddingSpecs());
    if (name.equals(ModelConfig.HEAD_UNIT)) return ParameterStore.layoutNumel(model.headSpecs());
    return ParameterStore.layoutNumel(model.blockSpecs(0));
  }

  /**
   * The units of {@code model}'s parameter store in layout order (embedding, block.0 ... block.N-1, head) with their
   * elements: {@link ParameterStore#layoutNumel} of each unit's parameters, as the store allocates them.
   */
  public static List<UnitSize> units(ModelConfig model) {
    List<UnitSize> out = new ArrayList<>(model.layers() + 2);
    out.add(new UnitSize(ModelConfig.EMBEDDING_UNIT, ParameterStore.layoutNumel(model.embeddingSpecs())));
    long block = ParameterStore.layoutNumel(model.blockSpecs(0));  // every block has the same shapes
    for (int i = 0; i < model.layers(); i++) out.add(new UnitSize(ModelConfig.blockUnit(i), block));
    out.add(new UnitSize(ModelConfig.HEAD_UNIT, ParameterStore.layoutNumel(model.headSpecs())));
    return out;
  }

  /** Elements of the largest unit (what bounds a chunk). */
  public static long largestUnit(ModelConfig model) {
    return Math.max(ParameterStore.layoutNumel(model.embeddingSpecs()),
        Math.max(ParameterStore.layoutNumel(model.blockSpecs(0)), ParameterStore.layoutNumel(model.headSpecs())));
  }

  /** A tier per (unit, role), unit by unit in layout order, roles in {@link #ROLES} order. */
  public List<Placement> placements() {
    List<Placement> out = new ArrayList<>();
    Tier memory = device.isCuda() ? Tier.DEVICE : Tier.HOST;
    for (UnitSize u : units(model)) {
      for (Role r : ROLES) {
        long bytes = Math.multiplyExact(u.elements(), (long) r.dtype(footprint.computeDtype()).byteSize());
        boolean disk = diskRoles.contains(r) && !(r == Role.MASTER && residentWeights.contains(u.name()));
        out.add(new Placement(u.name(), r, disk ? Tier.DISK : memory, bytes));
      }
    }
    return out;
  }

  /** Whether anything is on DISK: a role, or the activations. */
  public boolean offloads() {
    return !diskRoles.isEmpty() || activations != null;
  }

  /** Whether the blocks' saved activations go to DISK. */
  public boolean activationsOnDisk() {
    return activations != null;
  }

  /**
   * Bytes the activations move per step: each offloaded block's ({@link Footprint#offloadedBlocks}, all but the ring's
   * last two) written once and read once per micro-batch ({@link ActivationPager#bytesPerMicroBatch}); 0 when they stay
   * in memory.
   */
  public long activationTrafficPerStep() {
    if (activations == null) return 0;
    long block = Footprint.blockActivationBytes(model, device, footprint.computeDtype(), activations.batch(), activations.seq());
    return Math.multiplyExact((long) accum,
        ActivationPager.bytesPerMicroBatch(block, Footprint.offloadedBlocks(dev.athanor.nn.Stage.whole(model))));
  }

  /** The job's bytes in {@code tier} with this placement. */
  public long bytes(Tier tier) {
    return footprint.bytes(tier);
  }

  /** Bytes of the roles on DISK (every unit's). */
  public long diskStateBytes() {
    return footprint.bytes(Tier.DISK);
  }

  /** Host bytes of the staging buffers the optimizer streams the roles on DISK through. */
  public long stagingBytes() {
    return new OffloadConfig(diskRoles, null, chunkBytes).stagingBytes(largestUnit(model));
  }

  /**
   * Bytes read from and written to DISK per optimizer step: each moment read and written once by the optimizer; the
   * gradients written once per micro-batch, read back before each later micro-batch adds to them and read by the
   * optimizer (the clipping norm is formed from the gradient windows during the backward, {@link UnitPager#globalNorm});
   * the weights read in the forward and the backward of each micro-batch (the
   * embeddings of a tied head once more in each), then read and written by the optimizer; the activations on DISK
   * ({@link #activationTrafficPerStep}). With the gradients on DISK too, the trainer defers each step's update into the
   * next step's forward ({@link dev.athanor.train.Trainer#defersUpdates()}): the weights the optimizer read and updated
   * are those the first forward uses, which then reads none of its own; a step of the steady state (neither the first
   * nor the last of a run) moves this. The staging buffers and windows are reused in memory, so they add no DISK traffic.
   */
  public long diskTrafficPerStep() {
    long role = Math.multiplyExact(layoutElements(model), 4L);
    long t = activationTrafficPerStep();
    for (Role r : diskRoles) {
      t = Math.addExact(t, switch (r) {
        case ADAM_M, ADAM_V -> Math.multiplyExact(2L, role);
        case GRAD -> Math.multiplyExact(2L * accum, role);  // accum writes, accum - 1 reads, optimizer
        case MASTER -> {
          long paged = 0;  // bytes of the units that are paged (not resident)
          for (UnitSize u : units(model)) if (!residentWeights.contains(u.name())) paged = Math.addExact(paged, 4 * u.elements());
          boolean embPaged = !residentWeights.contains(ModelConfig.EMBEDDING_UNIT);
          long tiedExtra = model.tiedEmbeddings() && embPaged ? Math.multiplyExact(4L, units(model).get(0).elements()) : 0;
          long reads = diskRoles.contains(Role.GRAD) ? 2L * accum + 1 : 2L * accum + 2;  // the first forward's read: the optimizer's
          yield Math.addExact(Math.multiplyExact(reads, paged), Math.multiplyExact((long) accum, tiedExtra));
        }
        default -> 0L;
      });
    }
    return t;
  }

  /** The trainer's offload configuration for this plan, with its files in {@code directory} (null: the DISK tier's). */
  public OffloadConfig config(Path directory) {
    return !offloads() ? OffloadConfig.NONE
        : new OffloadConfig(diskRoles.isEmpty() ? Set.of() : EnumSet.copyOf(diskRoles), directory, chunkBytes, true,
            residentWeights, activations != null);
  }

  /** What this plan puts on DISK, in words: its roles ({@link #describe}) and the blocks' activations when they go there. */
  public String describeOnDisk() {
    if (activations == null) return describe(diskRoles);
    return diskRoles.isEmpty() ? "the blocks' activations" : describe(diskRoles) + " and the blocks' activations";
  }

  /** What the roles on DISK are, in words: e.g. "weights, gradients and AdamW's moments". */
  public static String describe(Set<Role> roles) {
    List<String> w = new ArrayList<>();
    if (roles.contains(Role.MASTER)) w.add("weights (master)");
    if (roles.contains(Role.GRAD)) w.add("gradients (grad)");
    if (roles.contains(Role.ADAM_M) && roles.contains(Role.ADAM_V)) w.add("AdamW's moments (adam_m, adam_v)");
    else if (roles.contains(Role.ADAM_M)) w.add("AdamW's first moment (adam_m)");
    else if (roles.contains(Role.ADAM_V)) w.add("AdamW's second moment (adam_v)");
    if (w.isEmpty()) return "nothing";
    if (w.size() == 1) return w.get(0);
    return String.join(", ", w.subList(0, w.size() - 1)) + " and " + w.get(w.size() - 1);
  }
}

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
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Where a training job keeps its parameter-store roles: a tier per (unit, role) for the weights (FP32 masters, which
 * on the CPU are the compute weights), the gradients and AdamW's two moments, the job's bytes per tier with that
 * placement, and the DISK traffic of one optimizer step.
 *
 * <p>The placement is per role and unit: a role is on DISK or in memory, and a role on DISK keeps the units of {@link
 * #residentUnits()} in memory (HOST on the CPU) all the same, so {@link #placements()} lists each unit with its own tier
 * for each role. The workspace is always in memory (HOST
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
 * @param residentUnits per role on DISK, the units whose part of it stays in memory ({@link
 *     OffloadConfig#residentUnits()}; each named unit must be one of the model's)
 * @param activations the micro-batch whose blocks' saved activations go to DISK ({@link ActivationPager}), or null when
 *     they stay in memory (kept, or recomputed with {@code recompute})
 */
public record OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint,
    int accum, boolean recompute, Map<Role, Set<String>> residentUnits, Activations activations) {
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
    residentUnits = OffloadConfig.residentUnits(diskRoles, residentUnits);  // a role with resident units is on DISK
    if (!residentUnits.isEmpty()) {
      for (Map.Entry<Role, Set<String>> e : residentUnits.entrySet()) {
        for (String u : new java.util.TreeSet<>(e.getValue())) {
          if (!isUnit(model, u)) {
            throw new IllegalArgumentException("no unit named \"" + u + "\" (resident " + e.getKey().name().toLowerCase(
                java.util.Locale.ROOT) + "): this model's units are embedding, block.0 to block." + (model.layers() - 1) + " and head");
          }
        }
      }
    }
    if (activations != null && recompute) {
      throw new IllegalArgumentException("the activations are recomputed or on DISK, not both");
    }
    if (activations != null && device.isCuda()) {
      throw new IllegalArgumentException("activations on DISK need the CPU backend; offload on " + device + " is not "
          + "supported yet");
    }
  }

  /** A plan whose activations stay in memory (kept, or recomputed), with the weights of {@code residentWeights} in memory. */
  public OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint, int accum,
      boolean recompute, Set<String> residentWeights) {
    this(model, device, diskRoles, chunkBytes, footprint, accum, recompute, OffloadConfig.weightsOnly(residentWeights), null);
  }

  /** The units whose part of {@code role} stays in memory while the role is on DISK (empty: none). */
  public Set<String> resident(Role role) {
    return residentUnits.getOrDefault(role, Set.of());
  }

  /** The units whose weights (MASTER) stay in memory while the weights are on DISK. */
  public Set<String> residentWeights() {
    return resident(Role.MASTER);
  }

  /** Whether {@code role} of unit {@code unit} is on DISK with this placement. */
  public boolean onDisk(Role role, String unit) {
    return diskRoles.contains(role) && !resident(role).contains(unit);
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

  /**
   * Whether {@code name} is one of {@code model}'s units (embedding, block.0 to block.N-1, head), without listing them
   * (a model of a million layers has a million units).
   */
  static boolean isUnit(ModelConfig model, String name) {
    if (name.equals(ModelConfig.EMBEDDING_UNIT) || name.equals(ModelConfig.HEAD_UNIT)) return true;
    String prefix = ModelConfig.blockUnit(0).substring(0, ModelConfig.blockUnit(0).length() - 1);
    if (!name.startsWith(prefix)) return false;
    try {
      int i = Integer.parseInt(name.substring(prefix.length()));
      return i >= 0 && i < model.layers() && ModelConfig.blockUnit(i).equals(name);
    } catch (NumberFormatException e) {
      return false;
    }
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
    List<UnitSize> us = units(model);
    long[] elements = new long[us.size()];
    for (int i = 0; i < elements.length; i++) elements[i] = us.get(i).elements();
    return placements(elements);
  }

  /**
   * The placements of rank {@code rank}'s part of a ZeRO shard over {@code dp} ranks (a plan of {@link
   * OffloadPlanner#placeShard}): the same tiers as {@link #placements()} (every rank keeps the same units resident), the
   * bytes of that rank's part of each unit ({@link #shardUnitElements}; 0 for a unit outside it).
   */
  public List<Placement> placements(int dp, int rank) {
    return placements(shardUnitElements(model, dp, rank));
  }

  private List<Placement> placements(long[] elements) {
    List<Placement> out = new ArrayList<>();
    Tier memory = device.isCuda() ? Tier.DEVICE : Tier.HOST;
    List<UnitSize> us = units(model);
    for (int i = 0; i < elements.length; i++) {
      for (Role r : ROLES) {
        long bytes = Math.multiplyExact(elements[i], (long) r.dtype(footprint.computeDtype()).byteSize());
        out.add(new Placement(us.get(i).name(), r, onDisk(r, us.get(i).name()) ? Tier.DISK : memory, bytes));
      }
    }
    return out;
  }

  /**
   * The elements of each of {@code model}'s units ({@link #units} order) that rank {@code rank}'s part of a ZeRO shard
   * over {@code dp} ranks holds: the flat layout's elements {@code [n rank / dp, n (rank + 1) / dp)}, as {@code
   * Communicator.partStart} cuts them.
   */
  public static long[] shardUnitElements(ModelConfig model, int dp, int rank) {
    if (dp < 1 || rank < 0 || rank >= dp) throw new IllegalArgumentException("rank " + rank + " of " + dp + " ranks");
    long n = layoutElements(model);
    long lo = Math.multiplyExact(n, (long) rank) / dp, hi = Math.multiplyExact(n, (long) rank + 1) / dp;
    List<UnitSize> us = units(model);
    long[] out = new long[us.size()];
    long at = 0;
    for (int i = 0; i < out.length; i++) {
      long end = at + us.get(i).elements();
      out[i] = Math.max(0, Math.min(end, hi) - Math.max(at, lo));
      at = end;
    }
    return out;
  }

  /** The index of {@code model}'s unit {@code name} in {@link #units} order (throws for a name that is not a unit). */
  static int unitIndex(ModelConfig model, String name) {
    if (!isUnit(model, name)) throw new IllegalArgumentException("no unit named \"" + name + "\"");
    if (name.equals(ModelConfig.EMBEDDING_UNIT)) return 0;
    if (name.equals(ModelConfig.HEAD_UNIT)) return model.layers() + 1;
    return 1 + Integer.parseInt(name.substring(name.lastIndexOf('.') + 1));
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

  /**
   * Bytes of the roles on DISK: every unit's, the resident units' included (a role on DISK keeps a file for every unit,
   * {@link UnitFiles}; a resident unit's is not used while training), so this is more than the DISK rows of {@link
   * #placements()} add up to by the resident units' bytes.
   */
  public long diskStateBytes() {
    return footprint.bytes(Tier.DISK);
  }

  /** Host bytes of the staging buffers the optimizer streams the roles on DISK through. */
  public long stagingBytes() {
    return new OffloadConfig(diskRoles, null, chunkBytes).stagingBytes(largestUnit(model));
  }

  /**
   * Bytes read from and written to DISK per optimizer step: for each role on DISK, the sum of {@link #unitTraffic} over
   * the units that are not resident; and the activations on DISK ({@link #activationTrafficPerStep}). A step of the
   * steady state (neither the first nor the last of a run) moves this. The staging buffers and windows are reused in
   * memory, and a resident unit's part of a role never leaves memory, so they add no DISK traffic.
   */
  public long diskTrafficPerStep() {
    long t = activationTrafficPerStep();
    if (diskRoles.isEmpty()) return t;
    List<UnitSize> us = units(model);
    for (Role r : diskRoles) {
      Set<String> resident = resident(r);
      if (resident.isEmpty()) {  // every unit (the blocks all have the same size: no walk over a million of them)
        long body = Math.multiplyExact(4L, layoutElements(model) - us.get(0).elements() - us.get(us.size() - 1).elements());
        t = Math.addExact(t, Math.addExact(Math.multiplyExact(unitTraffic(r, ModelConfig.blockUnit(0), 1), body),
            Math.addExact(unitTraffic(r, us.get(0).name(), 4 * us.get(0).elements()),
                unitTraffic(r, us.get(us.size() - 1).name(), 4 * us.get(us.size() - 1).elements()))));
        continue;
      }
      for (UnitSize u : us) if (!resident.contains(u.name())) t = Math.addExact(t, unitTraffic(r, u.name(), 4 * u.elements()));
    }
    return t;
  }

  /**
   * Bytes of DISK traffic per step of {@code role} of unit {@code unit} ({@code bytes} of it, F32) when it is on DISK,
   * which is what keeping it in memory saves:
   * <ul>
   *   <li>a moment: read and written once by the optimizer (2 x bytes);
   *   <li>the gradient: written once per micro-batch, read back before each later micro-batch adds to it and read by the
   *       optimizer (2 x accum x bytes; the clipping norm is formed from the gradient windows during the backward,
   *       {@link UnitPager#globalNorm});
   *   <li>the weights: read in the forward and the backward of each micro-batch as the pager reads them ({@link
   *       UnitPager#weightReadsPerStep}: a block twice, the head once, the embeddings once or twice more per step), then
   *       read and written by the optimizer. With the gradients on DISK too, the trainer defers each step's update into
   *       the next step's forward ({@link dev.athanor.train.Trainer#defersUpdates()}): the weights the optimizer read and
   *       updated are those the first forward uses, which then reads none of its own.
   * </ul>
   * Per byte, a block's weights save the most (2 x accum + 1 or more), then the gradients (2 x accum), then the moments (2):
   * the planner keeps units resident in that order ({@link OffloadPlanner#keepResident}).
   */
  public long unitTraffic(Role role, String unit, long bytes) {
    return switch (role) {
      case ADAM_M, ADAM_V -> Math.multiplyExact(2L, bytes);
      case GRAD -> Math.multiplyExact(2L * accum, bytes);  // accum writes, accum - 1 reads, optimizer
      case MASTER -> {
        long[] passes = UnitPager.weightReadsPerStep(Math.max(1, model.layers()), model.tiedEmbeddings(), accum);
        long reads = unit.equals(ModelConfig.EMBEDDING_UNIT) ? passes[0] : unit.equals(ModelConfig.HEAD_UNIT) ? passes[2] : passes[1];
        // the optimizer writes; it reads too unless the update is deferred (its read is the next forward's first one)
        yield Math.multiplyExact(reads + (diskRoles.contains(Role.GRAD) ? 1 : 2), bytes);
      }
      default -> 0L;
    };
  }

  /** The trainer's offload configuration for this plan, with its files in {@code directory} (null: the DISK tier's). */
  public OffloadConfig config(Path directory) {
    return !offloads() ? OffloadConfig.NONE
        : new OffloadConfig(diskRoles.isEmpty() ? Set.of() : EnumSet.copyOf(diskRoles), directory, chunkBytes, true,
            residentUnits, activations != null);
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

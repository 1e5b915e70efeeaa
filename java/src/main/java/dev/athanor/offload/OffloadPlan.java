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
 * Where a training job keeps the parts of its parameter store that can be placed today: a tier per (unit, role) for
 * AdamW's two moments, the job's bytes per tier with that placement, and the DISK traffic of one optimizer step.
 *
 * <p>The placement is per role: a moment is on DISK for every unit or for none ({@link OffloadConfig} selects roles,
 * not units), so {@link #placements()} lists each unit with its role's tier. Weights, masters, gradients and
 * activations are always in memory (HOST on the CPU) in this version.
 *
 * @param model the model the plan is for (its units and their sizes)
 * @param device where the job runs
 * @param diskRoles the moments on DISK (a subset of ADAM_M and ADAM_V; empty: everything in memory)
 * @param chunkBytes bytes of one role the optimizer streams per chunk ({@link OffloadConfig#chunkBytes()})
 * @param footprint the job's memory with this placement, per component and tier (the moments on DISK counted in the
 *     DISK tier, their staging buffers in HOST)
 */
public record OffloadPlan(ModelConfig model, Device device, Set<Role> diskRoles, long chunkBytes, Footprint footprint) {
  /** The roles a plan places. */
  public static final List<Role> ROLES = List.of(Role.ADAM_M, Role.ADAM_V);

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
      throw new IllegalArgumentException("offload on " + device + " is not supported yet: AdamW's moments can be on DISK only "
          + "when training on the CPU");
    }
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

  /** A tier per (unit, role), unit by unit in layout order, ADAM_M before ADAM_V. */
  public List<Placement> placements() {
    List<Placement> out = new ArrayList<>();
    Tier memory = device.isCuda() ? Tier.DEVICE : Tier.HOST;
    for (UnitSize u : units(model)) {
      for (Role r : ROLES) {
        long bytes = Math.multiplyExact(u.elements(), (long) r.dtype(footprint.computeDtype()).byteSize());
        out.add(new Placement(u.name(), r, diskRoles.contains(r) ? Tier.DISK : memory, bytes));
      }
    }
    return out;
  }

  /** Whether anything is on DISK. */
  public boolean offloads() {
    return !diskRoles.isEmpty();
  }

  /** The job's bytes in {@code tier} with this placement. */
  public long bytes(Tier tier) {
    return footprint.bytes(tier);
  }

  /** Bytes of the moments on DISK (every unit's). */
  public long diskStateBytes() {
    return footprint.bytes(Footprint.Component.OPTIMIZER, Set.of(Tier.DISK));
  }

  /** Host bytes of the staging buffers the moments on DISK are streamed through. */
  public long stagingBytes() {
    return new OffloadConfig(diskRoles, null, chunkBytes).stagingBytes(largestUnit(model));
  }

  /**
   * Bytes read from and written to DISK per optimizer step: each moment on DISK read once and written once
   * (2 x {@link #diskStateBytes()}); the staging buffers are reused in memory, so they add no DISK traffic.
   */
  public long diskTrafficPerStep() {
    return Math.multiplyExact(2L, diskStateBytes());
  }

  /** The trainer's offload configuration for this plan, with its files in {@code directory} (null: the DISK tier's). */
  public OffloadConfig config(Path directory) {
    return diskRoles.isEmpty() ? OffloadConfig.NONE : new OffloadConfig(EnumSet.copyOf(diskRoles), directory, chunkBytes);
  }
}

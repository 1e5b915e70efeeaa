package dev.athanor.offload;

import dev.athanor.memory.MemoryManager;
import dev.athanor.params.Role;
import java.nio.file.Path;
import java.util.Collections;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;

/**
 * Which parameter-store roles live on the DISK tier, where their files go, how much of a unit the optimizer streams
 * through host memory at a time, and whether the next unit's data is read ahead.
 *
 * <p>On the CPU backend four roles can be placed on DISK, each for every unit but those {@link #residentUnits()} keeps
 * in memory for it (one file per unit and role, {@link UnitFiles}; a resident unit's file is not used while training):
 * <ul>
 *   <li>{@link Role#MASTER}: the FP32 weights (on the CPU also the compute weights). A {@link UnitPager} reads a
 *       unit's weights into a host window before the unit runs and frees the window after; the next unit in the
 *       model's execution order is read ahead while the current one computes.
 *   <li>{@link Role#GRAD}: the gradients. A unit's micro-batch gradient is formed in a host window during its
 *       backward and written behind (added to the step's gradient read back from DISK with accumulation); the step's
 *       gradient stays on DISK, and the clipping norm streams it.
 *   <li>{@link Role#ADAM_M}, {@link Role#ADAM_V}: AdamW's moments.
 * </ul>
 * The optimizer step streams every DISK role unit by unit in chunks of at most {@code chunkBytes} per role through
 * {@value #STAGING_SLOTS} host staging slots (one being read ahead, one being updated, one being written behind),
 * which count in the HOST budget. With the weights and the gradients on DISK, the trainer defers a step's update into
 * the next step's forward: each unit is updated when the forward first reads its weights, and the I/O of the next
 * units' gradients and moments runs behind the computation ({@link dev.athanor.train.Trainer#defersUpdates()}). Every
 * path runs the same kernels on the same elements as the in-memory run, so the results are bit-identical.
 *
 * @param diskRoles the roles kept on DISK (a subset of MASTER, GRAD, ADAM_M and ADAM_V; empty: no offload)
 * @param directory where the offload files go (null: {@link MemoryManager#diskDirectory()}, under
 *     {@code java.io.tmpdir} unless {@code -Dathanor.disk.dir} says otherwise); each trainer makes its own
 *     subdirectory there and removes it on close
 * @param chunkBytes bytes of one role streamed per chunk (a multiple of 4, at least 4; a unit larger than this is
 *     split into several chunks, which need not end at tensor boundaries)
 * @param prefetch whether the next unit's weights are read while the current unit computes (off: each unit is read
 *     when it is needed, which shows what the overlap is worth)
 * @param residentUnits per role on DISK, the units whose part of that role stays in memory (HOST on the CPU) all the
 *     time instead (what a budget between "the whole role" and "a few units" holds): a resident unit's weights are read
 *     once and updated in place by the optimizer, never paged; its gradient is formed and accumulated in a window of its
 *     own; its moments are updated in place; none of them is read from or written to DISK while training. A role
 *     absent (or with no units) is on DISK for every unit
 * @param activationsOnDisk whether the blocks' saved activations go to DISK between each micro-batch's forward and
 *     backward ({@link ActivationPager}; with {@code prefetch}, the next block's read while the current backward runs),
 *     instead of staying in memory or being recomputed
 */
public record OffloadConfig(Set<Role> diskRoles, Path directory, long chunkBytes, boolean prefetch,
    Map<Role, Set<String>> residentUnits, boolean activationsOnDisk) {
  /** Host staging slots per streamed role: read-ahead, compute, write-behind. */
  public static final int STAGING_SLOTS = 3;
  /** The default chunk: 4 MiB per role. */
  public static final long DEFAULT_CHUNK_BYTES = 4L << 20;
  /** Everything in memory (no offload). */
  public static final OffloadConfig NONE = new OffloadConfig(Set.of(), null, DEFAULT_CHUNK_BYTES, true, Map.of(), false);
  /** The roles that can be placed on DISK. */
  public static final Set<Role> OFFLOADABLE = Set.copyOf(EnumSet.of(Role.MASTER, Role.GRAD, Role.ADAM_M, Role.ADAM_V));

  public OffloadConfig {
    Objects.requireNonNull(diskRoles, "diskRoles");
    for (Role r : diskRoles) {
      if (!OFFLOADABLE.contains(Objects.requireNonNull(r, "role"))) {
        throw new IllegalArgumentException("role " + r + " cannot be placed on DISK: only " + new java.util.TreeSet<>(OFFLOADABLE)
            + " can (" + r + " follows " + (r == Role.WEIGHT ? "MASTER" : "GRAD") + ")");
      }
    }
    diskRoles = diskRoles.isEmpty() ? Set.of() : Set.copyOf(EnumSet.copyOf(diskRoles));
    if (chunkBytes < 4 || chunkBytes % 4 != 0) {
      throw new IllegalArgumentException("chunkBytes must be a positive multiple of 4 (whole F32 elements), got " + chunkBytes);
    }
    residentUnits = residentUnits(diskRoles, residentUnits);
  }

  /**
   * {@code resident} checked against {@code diskRoles} (every role named is on DISK; names are not checked against a
   * model here) and copied without empty sets, in role order.
   */
  static Map<Role, Set<String>> residentUnits(Set<Role> diskRoles, Map<Role, Set<String>> resident) {
    Objects.requireNonNull(resident, "residentUnits");
    Map<Role, Set<String>> out = new EnumMap<>(Role.class);
    for (Map.Entry<Role, Set<String>> e : resident.entrySet()) {
      Role r = Objects.requireNonNull(e.getKey(), "role");
      Set<String> units = Set.copyOf(Objects.requireNonNull(e.getValue(), "units"));
      if (units.isEmpty()) continue;
      if (!diskRoles.contains(r)) {
        throw new IllegalArgumentException("resident units " + new TreeSet<>(units) + " of " + r + " need " + r + " on DISK; "
            + "with it in memory every unit is resident");
      }
      out.put(r, units);
    }
    return out.isEmpty() ? Map.of() : Collections.unmodifiableMap(out);
  }

  /** {@code diskRoles} on DISK in {@code directory}, with the weights of the units {@code residentWeights} in memory. */
  public OffloadConfig(Set<Role> diskRoles, Path directory, long chunkBytes, boolean prefetch, Set<String> residentWeights,
      boolean activationsOnDisk) {
    this(diskRoles, directory, chunkBytes, prefetch, weightsOnly(residentWeights), activationsOnDisk);
  }

  /** {@code units} as the resident units of MASTER (none: an empty map). */
  static Map<Role, Set<String>> weightsOnly(Set<String> units) {
    return Objects.requireNonNull(units, "residentWeights").isEmpty() ? Map.of() : Map.of(Role.MASTER, units);
  }

  /** The units whose part of {@code role} stays in memory while the role is on DISK (empty: none, or not on DISK). */
  public Set<String> resident(Role role) {
    return residentUnits.getOrDefault(role, Set.of());
  }

  /** The units whose weights (MASTER) stay in memory while the weights are on DISK. */
  public Set<String> residentWeights() {
    return resident(Role.MASTER);
  }

  /** {@code diskRoles} on DISK in {@code directory}, the activations in memory. */
  public OffloadConfig(Set<Role> diskRoles, Path directory, long chunkBytes, boolean prefetch, Set<String> residentWeights) {
    this(diskRoles, directory, chunkBytes, prefetch, weightsOnly(residentWeights), false);
  }

  /** {@code diskRoles} on DISK in {@code directory}, with read-ahead. */
  public OffloadConfig(Set<Role> diskRoles, Path directory, long chunkBytes) {
    this(diskRoles, directory, chunkBytes, true, Set.of());
  }

  /** {@code diskRoles} on DISK in {@code directory}, every unit paged. */
  public OffloadConfig(Set<Role> diskRoles, Path directory, long chunkBytes, boolean prefetch) {
    this(diskRoles, directory, chunkBytes, prefetch, Set.of());
  }

  /** AdamW's moments on DISK in {@code directory} (null: the DISK tier's directory), in default-sized chunks. */
  public static OffloadConfig optimizerStateOnDisk(Path directory) {
    return new OffloadConfig(EnumSet.of(Role.ADAM_M, Role.ADAM_V), directory, DEFAULT_CHUNK_BYTES);
  }

  /** Every offloadable role (weights, gradients, moments) on DISK in {@code directory}, in default-sized chunks. */
  public static OffloadConfig allOnDisk(Path directory) {
    return new OffloadConfig(OFFLOADABLE, directory, DEFAULT_CHUNK_BYTES);
  }

  /** The same with {@code bytes} per role per chunk. */
  public OffloadConfig withChunkBytes(long bytes) {
    return new OffloadConfig(diskRoles, directory, bytes, prefetch, residentUnits, activationsOnDisk);
  }

  /** The same with read-ahead on or off. */
  public OffloadConfig withPrefetch(boolean on) {
    return new OffloadConfig(diskRoles, directory, chunkBytes, on, residentUnits, activationsOnDisk);
  }

  /** The same with the weights of {@code units} kept in memory (the weights must be on DISK). */
  public OffloadConfig withResidentWeights(Set<String> units) {
    return withResident(Role.MASTER, units);
  }

  /** The same with {@code role}'s part of {@code units} kept in memory (the role must be on DISK; empty: every unit paged). */
  public OffloadConfig withResident(Role role, Set<String> units) {
    Map<Role, Set<String>> m = new EnumMap<>(Role.class);
    m.putAll(residentUnits);
    m.put(role, units);
    return new OffloadConfig(diskRoles, directory, chunkBytes, prefetch, m, activationsOnDisk);
  }

  /** The same with the blocks' saved activations on DISK or not ({@link ActivationPager}). */
  public OffloadConfig withActivationsOnDisk(boolean on) {
    return new OffloadConfig(diskRoles, directory, chunkBytes, prefetch, residentUnits, on);
  }

  /** Whether {@code role} lives on DISK. */
  public boolean onDisk(Role role) {
    return diskRoles.contains(role);
  }

  /** Whether any parameter-store role is offloaded (the activations aside: {@link #offloadsAnything()}). */
  public boolean enabled() {
    return !diskRoles.isEmpty();
  }

  /** Whether anything is on DISK: a role, or the activations. */
  public boolean offloadsAnything() {
    return enabled() || activationsOnDisk;
  }

  /** Whether weights or gradients are paged unit by unit during the forward and backward ({@link UnitPager}). */
  public boolean pagesUnits() {
    return onDisk(Role.MASTER) || onDisk(Role.GRAD);
  }

  /** The directory offload files go to: {@link #directory()}, or the DISK tier's directory when that is null. */
  public Path resolvedDirectory() {
    return directory != null ? directory.toAbsolutePath() : MemoryManager.global().diskDirectory();
  }

  /** The most host bytes the staging slots take: slots x roles x chunk (less when every unit is smaller than a chunk). */
  public long stagingBytes() {
    return STAGING_SLOTS * diskRoles.size() * chunkBytes;
  }

  /**
   * Elements of one role per chunk when the largest unit has {@code largestUnit} elements: the chunk, but no more
   * than that unit (at least 1).
   */
  public static long chunkElements(long chunkBytes, long largestUnit) {
    return Math.min(Math.max(1, chunkBytes / 4), Math.max(1, largestUnit));
  }

  /**
   * The host bytes the optimizer's staging slots take when the largest unit has {@code largestUnit} elements: slots x
   * roles x {@link #chunkElements} x 4 bytes (what the optimizer's streamer allocates).
   */
  public long stagingBytes(long largestUnit) {
    return Math.multiplyExact(STAGING_SLOTS * (long) diskRoles.size(), Math.multiplyExact(chunkElements(chunkBytes, largestUnit), 4L));
  }
}

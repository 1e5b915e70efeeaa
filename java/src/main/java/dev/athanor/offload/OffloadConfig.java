package dev.athanor.offload;

import dev.athanor.memory.MemoryManager;
import dev.athanor.params.Role;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.Objects;
import java.util.Set;

/**
 * Which parameter-store roles live on the DISK tier, where their files go, and how much of a unit the optimizer
 * streams through host memory at a time.
 *
 * <p>This is the first slice of tiered offload: only AdamW's moments ({@link Role#ADAM_M}, {@link Role#ADAM_V}) can
 * be placed on DISK, on the CPU backend. Compute weights (which are the FP32 masters on the CPU), gradients and
 * accumulated gradients stay in HOST memory, so the forward, backward and global-norm clipping are unchanged. The
 * optimizer step then streams the moments unit by unit in chunks of at most {@code chunkBytes} per role through
 * {@value #STAGING_SLOTS} host staging slots (one being read ahead, one being updated, one being written behind),
 * which count in the HOST budget.
 *
 * @param diskRoles the roles kept on DISK (a subset of ADAM_M and ADAM_V; empty: no offload)
 * @param directory where the offload files go (null: {@link MemoryManager#diskDirectory()}, under
 *     {@code java.io.tmpdir} unless {@code -Dathanor.disk.dir} says otherwise); each optimizer makes its own
 *     subdirectory there and removes it on close
 * @param chunkBytes bytes of one role streamed per chunk (a multiple of 4, at least 4; a unit larger than this is
 *     split into several chunks, which need not end at tensor boundaries)
 */
public record OffloadConfig(Set<Role> diskRoles, Path directory, long chunkBytes) {
  /** Host staging slots per streamed role: read-ahead, compute, write-behind. */
  public static final int STAGING_SLOTS = 3;
  /** The default chunk: 4 MiB per role (24 MiB of staging for both moments). */
  public static final long DEFAULT_CHUNK_BYTES = 4L << 20;
  /** Everything in memory (no offload). */
  public static final OffloadConfig NONE = new OffloadConfig(Set.of(), null, DEFAULT_CHUNK_BYTES);

  private static final Set<Role> OFFLOADABLE = EnumSet.of(Role.ADAM_M, Role.ADAM_V);

  public OffloadConfig {
    Objects.requireNonNull(diskRoles, "diskRoles");
    for (Role r : diskRoles) {
      if (!OFFLOADABLE.contains(Objects.requireNonNull(r, "role"))) {
        throw new IllegalArgumentException("role " + r + " cannot be placed on DISK yet: only the AdamW moments "
            + OFFLOADABLE + " can (weights, masters and gradients stay in memory in this version)");
      }
    }
    diskRoles = diskRoles.isEmpty() ? Set.of() : Set.copyOf(EnumSet.copyOf(diskRoles));
    if (chunkBytes < 4 || chunkBytes % 4 != 0) {
      throw new IllegalArgumentException("chunkBytes must be a positive multiple of 4 (whole F32 elements), got " + chunkBytes);
    }
  }

  /** AdamW's moments on DISK in {@code directory} (null: the DISK tier's directory), in default-sized chunks. */
  public static OffloadConfig optimizerStateOnDisk(Path directory) {
    return new OffloadConfig(EnumSet.of(Role.ADAM_M, Role.ADAM_V), directory, DEFAULT_CHUNK_BYTES);
  }

  /** The same with {@code bytes} per role per chunk. */
  public OffloadConfig withChunkBytes(long bytes) {
    return new OffloadConfig(diskRoles, directory, bytes);
  }

  /** Whether {@code role} lives on DISK. */
  public boolean onDisk(Role role) {
    return diskRoles.contains(role);
  }

  /** Whether anything is offloaded. */
  public boolean enabled() {
    return !diskRoles.isEmpty();
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
   * The host bytes the staging slots take when the largest unit has {@code largestUnit} elements: slots x roles x
   * {@link #chunkElements} x 4 bytes (what the optimizer's streamer allocates).
   */
  public long stagingBytes(long largestUnit) {
    return Math.multiplyExact(STAGING_SLOTS * (long) diskRoles.size(), Math.multiplyExact(chunkElements(chunkBytes, largestUnit), 4L));
  }
}

package dev.athanor.offload;

import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Role;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Set;

/**
 * A model's weights kept on the DISK tier: one file per unit ({@link UnitFiles}) and a {@link UnitPager} among the
 * model's hooks that reads each unit's weights into a host window before it runs (the next unit read ahead) and frees
 * the window after. The forward, the backward and cached decoding run unchanged, so training and generation give the
 * bits they give with the weights in memory, while host memory holds a few units at a time.
 *
 * <p>Attach it to a model built with its weights ({@link #attach}: they are written to the files and freed), or to a
 * model built without them ({@link Transformer#withoutWeights}), whose weights then never are all in memory: fill
 * them afterwards through the model ({@link Transformer#initialize}, {@link Transformer#loadWeights}, a checkpoint),
 * which writes them to the files one tensor at a time. {@link #close()} removes the pager from the model's hooks and
 * deletes the files; the weights are read back into memory first when the model had them there before
 * ({@link #restoresOnClose()}). Close it before the model.
 */
public final class OffloadedWeights implements AutoCloseable {
  private final Transformer model;
  private final UnitFiles files;
  private final UnitPager pager;
  private final BlockHooks before;   // the model's hooks before this was attached
  private final boolean restore;
  private boolean closed;

  private OffloadedWeights(Transformer model, UnitFiles files, UnitPager pager, BlockHooks before, boolean restore) {
    this.model = model;
    this.files = files;
    this.pager = pager;
    this.before = before;
    this.restore = restore;
  }

  /**
   * Moves {@code model}'s weights (the FP32 masters, which are the compute weights on the CPU) to new files in
   * {@code directory} (null: the DISK tier's directory) and pages them from there; with {@code prefetch} the next unit
   * is read while the current one computes. CPU backend, F32 compute. Throws
   * {@link dev.athanor.memory.AllocationFailedException} naming the tier, the directory and the bytes when the
   * directory cannot hold them.
   */
  public static OffloadedWeights attach(Transformer model, Path directory, boolean prefetch) {
    return attach(model, directory, prefetch, Set.of());
  }

  /**
   * As {@link #attach(Transformer, Path, boolean)}, with the weights of the units named in {@code resident} (e.g.
   * "embedding", "block.0") kept in memory all the time: they are never paged, and the optimizer updates them in place.
   */
  public static OffloadedWeights attach(Transformer model, Path directory, boolean prefetch, Set<String> resident) {
    Objects.requireNonNull(model, "model");
    if (model.parameters().isPaged(Role.MASTER)) throw new IllegalStateException("the model's weights are already paged");
    Path dir = directory != null ? directory : dev.athanor.memory.MemoryManager.global().diskDirectory();
    boolean had = model.parameters().has(Role.MASTER);
    UnitFiles f = new UnitFiles(model.parameters(), Set.of(Role.MASTER), dir);
    UnitPager p;
    try {
      p = new UnitPager(model, f, prefetch, resident);
    } catch (RuntimeException e) {
      f.close();
      throw e;
    }
    BlockHooks before = model.hooks();
    model.setHooks(BlockHooks.both(before, p));
    return new OffloadedWeights(model, f, p, before, had);
  }

  /** The files of the weights. */
  public UnitFiles files() {
    return files;
  }

  /** The pager that maps them in and out. */
  public UnitPager pager() {
    return pager;
  }

  /** Whether {@link #close()} reads the weights back into memory (the model had them in memory when attached). */
  public boolean restoresOnClose() {
    return restore;
  }

  /** Drops every weight window (e.g. before something changes the files), waiting for reads in flight. */
  public void flush() {
    pager.flush();
  }

  /** The DISK traffic of the weights so far, and the time the computation waited for it. */
  public TransferStats.Snapshot transfers() {
    return files.stats().snapshot();
  }

  /**
   * Stops paging: the weights are read back into memory when {@link #restoresOnClose()}, else left unallocated (the
   * model cannot run again); the model's hooks are put back as they were; the files are deleted.
   */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      pager.close(restore);
    } finally {
      try {
        model.setHooks(before);
      } finally {
        files.close();
      }
    }
  }
}

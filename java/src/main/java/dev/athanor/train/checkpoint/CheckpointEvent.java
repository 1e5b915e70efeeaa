package dev.athanor.train.checkpoint;

import java.nio.file.Path;

/**
 * One checkpoint save of a {@link CheckpointManager}, as the run report shows it.
 *
 * @param step the checkpoint's step (the number of optimizer steps it holds)
 * @param directory the {@code step-NNNNNNNN} directory it was written to (or was to be written to, on failure)
 * @param stallSeconds how long the training loop waited in {@link CheckpointManager#save}: for an asynchronous
 *     save the wait for the previous write plus the copy into host memory; for a synchronous one the whole write
 * @param writeSeconds how long writing, fsyncing and renaming took (on the writer thread when asynchronous)
 * @param bytes the bytes of the checkpoint's files (0 on failure)
 * @param failure why the write failed, or null when it succeeded
 */
public record CheckpointEvent(long step, Path directory, double stallSeconds, double writeSeconds, long bytes, String failure) {
  /** Whether the checkpoint was written. */
  public boolean succeeded() {
    return failure == null;
  }
}

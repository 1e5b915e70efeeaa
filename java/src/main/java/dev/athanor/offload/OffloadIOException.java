package dev.athanor.offload;

import dev.athanor.runtime.AthanorException;
import java.nio.file.Path;

/** A transfer between host memory and an offload file failed (the file was deleted or truncated, the disk is full). */
public final class OffloadIOException extends AthanorException {
  private final transient Path file;

  public OffloadIOException(Path file, String message, Throwable cause) {
    super(message, cause);
    this.file = file;
  }

  /** The offload file involved. */
  public Path file() {
    return file;
  }
}

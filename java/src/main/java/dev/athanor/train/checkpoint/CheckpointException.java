package dev.athanor.train.checkpoint;

/** A checkpoint could not be written, read, verified or applied; the message names the file and the problem. */
public class CheckpointException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public CheckpointException(String message) {
    super(message);
  }

  public CheckpointException(String message, Throwable cause) {
    super(message, cause);
  }
}

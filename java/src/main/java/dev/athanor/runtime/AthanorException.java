package dev.athanor.runtime;

/** Base class of every exception Athanor throws for a failure that is not a plain argument error. */
public class AthanorException extends RuntimeException {
  public AthanorException(String message) {
    super(message);
  }

  public AthanorException(String message, Throwable cause) {
    super(message, cause);
  }
}

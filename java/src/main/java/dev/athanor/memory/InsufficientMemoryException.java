package dev.athanor.memory;

import dev.athanor.runtime.AthanorException;

/**
 * A job would need more memory than a tier's budget or the machine allows; thrown before anything is allocated (see
 * {@code dev.athanor.nn.Footprint#require}). The message says what is needed, per component, and what is there.
 */
public class InsufficientMemoryException extends AthanorException {
  public InsufficientMemoryException(String message) {
    super(message);
  }
}

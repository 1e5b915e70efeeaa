package dev.athanor.io.safetensors;

import dev.athanor.io.FileProblems;
import dev.athanor.runtime.AthanorException;

/**
 * A safetensors file that cannot be read or written: malformed header, offsets out of range, a dtype that cannot
 * be converted, or an I/O failure. The message names the file and the problem.
 */
public class SafetensorsException extends AthanorException {
  public SafetensorsException(String message) {
    super(FileProblems.printable(message));
  }

  public SafetensorsException(String message, Throwable cause) {
    super(FileProblems.printable(message), cause);
  }
}

package dev.athanor.io.hf;

import dev.athanor.io.FileProblems;
import dev.athanor.runtime.AthanorException;

/**
 * A Hugging Face model directory or {@code config.json} that cannot be used: missing or malformed files, an
 * unsupported architecture option, missing, extra or misshapen tensors. The message names the file or
 * directory, and the key or tensor at fault.
 */
public class HfFormatException extends AthanorException {
  public HfFormatException(String message) {
    super(FileProblems.printable(message));
  }

  public HfFormatException(String message, Throwable cause) {
    super(FileProblems.printable(message), cause);
  }
}

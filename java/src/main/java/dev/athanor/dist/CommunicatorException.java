package dev.athanor.dist;

import dev.athanor.runtime.AthanorException;

/**
 * A communication failure: an MPI call that failed (the message names the shim's source file and line, the MPI
 * function and MPI's error string), a shim or MPI library that cannot be loaded, or a peer that is gone. Constructed
 * by the JNI shim (native/dist/mpi_shim.cpp: {@code (Ljava/lang/String;)V}); keep that constructor.
 */
public class CommunicatorException extends AthanorException {
  private static final long serialVersionUID = 1L;

  public CommunicatorException(String message) {
    super(message);
  }

  public CommunicatorException(String message, Throwable cause) {
    super(message, cause);
  }
}

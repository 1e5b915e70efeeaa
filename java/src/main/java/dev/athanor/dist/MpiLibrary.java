package dev.athanor.dist;

import dev.athanor.runtime.NativeLibrary;
import java.io.IOException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Finds and loads the MPI shim libathanor_mpi, once per JVM, and only when a distributed run asks for it: libathanor
 * and the jar never need MPI. Where it looks: the file named by {@value #LIBRARY_PATH_PROPERTY} if set, else the copy
 * in the jar ({@value #RESOURCE}), extracted to the same cache as libathanor ({@link NativeLibrary#extractToCache}).
 * The shim links Open MPI's libmpi; a missing shim or libmpi is a {@link CommunicatorException} saying what to
 * install. A failure is remembered and rethrown by later calls.
 */
@SuppressWarnings("restricted") // System.load: loading the shim is this class's job
final class MpiLibrary {
  /** System property: path of a libathanor_mpi.so to load instead of the one in the jar. */
  static final String LIBRARY_PATH_PROPERTY = "athanor.mpi.library.path";
  /** Where the shim lives inside the jar. */
  static final String RESOURCE = "META-INF/native/linux-x86_64/libathanor_mpi.so";
  /** What a user installs. */
  static final String INSTALL_HINT = "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)";

  private static Path loadedFrom;            // guarded by MpiLibrary.class
  private static CommunicatorException failure;  // guarded by MpiLibrary.class

  private MpiLibrary() {}

  /** Loads libathanor (tensors need it) and the shim; idempotent. */
  static synchronized Path load() {
    if (loadedFrom != null) return loadedFrom;
    if (failure != null) throw new CommunicatorException(failure.getMessage(), failure);
    NativeLibrary.load();
    try {
      Path p = locate();
      try {
        System.load(p.toString());
      } catch (UnsatisfiedLinkError e) {
        String m = String.valueOf(e.getMessage());
        throw new CommunicatorException("cannot load the MPI shim " + p + ": " + m
            + (m.contains("libmpi") ? "; the shim needs Open MPI's libmpi: " + INSTALL_HINT
                : "; it needs the Open MPI it was built against: " + INSTALL_HINT), e);
      }
      loadedFrom = p;
      return p;
    } catch (CommunicatorException e) {
      failure = e;
      throw e;
    }
  }

  private static Path locate() {
    String override = System.getProperty(LIBRARY_PATH_PROPERTY);
    if (override != null && !override.isBlank()) {
      Path p = Path.of(override).toAbsolutePath();
      if (!Files.isRegularFile(p)) {
        throw new CommunicatorException("-D" + LIBRARY_PATH_PROPERTY + "=" + override + ": no such file");
      }
      return p;
    }
    URL res = MpiLibrary.class.getClassLoader().getResource(RESOURCE);
    if (res == null) {
      throw new CommunicatorException("this Athanor build has no MPI support: " + RESOURCE + " is not in the jar "
          + "(CMake builds libathanor_mpi only when it finds MPI). To run with --dp > 1, " + INSTALL_HINT
          + " and rebuild (./athanor build), or give -D" + LIBRARY_PATH_PROPERTY + "=/path/to/libathanor_mpi.so");
    }
    try {
      return NativeLibrary.extractToCache(res, "libathanor_mpi.so", NativeLibrary.javaVersion());
    } catch (IOException e) {
      throw new CommunicatorException("cannot extract the MPI shim: " + e.getMessage(), e);
    }
  }
}

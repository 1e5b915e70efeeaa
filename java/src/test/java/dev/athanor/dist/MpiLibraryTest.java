package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A shim that cannot be loaded is a clear error saying what to install, and it is remembered (no MPI needed: the
 * override property points at a file that is not a loadable library). Its own test class, so its JVM never loads the
 * real shim.
 */
class MpiLibraryTest {
  @TempDir Path tmp;

  @Test
  void anUnloadableShimSaysWhatToInstall() throws Exception {
    Path fake = Files.writeString(tmp.resolve("libathanor_mpi.so"), "not an ELF file");
    String old = System.getProperty(MpiLibrary.LIBRARY_PATH_PROPERTY);
    System.setProperty(MpiLibrary.LIBRARY_PATH_PROPERTY, fake.toString());
    try {
      CommunicatorException e = assertThrows(CommunicatorException.class, () -> Communicator.mpi(ReduceMode.DETERMINISTIC));
      assertTrue(e.getMessage().contains("cannot load the MPI shim " + fake), e.getMessage());
      assertTrue(e.getMessage().contains("apt-get install openmpi-bin libopenmpi-dev"), e.getMessage());
      CommunicatorException again = assertThrows(CommunicatorException.class, () -> Communicator.mpi(ReduceMode.FAST));
      assertEquals(e.getMessage(), again.getMessage(), "the failure is remembered");
    } finally {
      if (old == null) System.clearProperty(MpiLibrary.LIBRARY_PATH_PROPERTY);
      else System.setProperty(MpiLibrary.LIBRARY_PATH_PROPERTY, old);
    }
  }
}

package dev.athanor.dist;

import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.NativeLibrary;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * NCCL through libathanor's {@code ath_nccl_*} C ABI (native/dist/nccl.cpp), which opens {@code libnccl.so.2} with
 * dlopen at run time: nothing links NCCL, and the jar runs without it. {@link #load} finds the library, once per JVM:
 * the file named by {@value #LIBRARY_PATH_PROPERTY} if set; else {@code libnccl.so.2} on the library path (what
 * {@code ldconfig} and {@code LD_LIBRARY_PATH} give); else a Python installation's {@code nvidia/nccl/lib} (PyTorch's
 * wheels bring NCCL as the {@code nvidia-nccl-cu*} package): the {@code PYTHONPATH} entries, {@code VIRTUAL_ENV} and
 * {@code CONDA_PREFIX}, the usual site directories, then what {@code python3} itself reports. A failure names every
 * place tried and what to install. Pointers and streams are longs; {@link NcclCommunicator} checks
 * arguments before it calls in.
 */
final class NcclNative {
  /** System property: path of a libnccl.so.2 to load. */
  static final String LIBRARY_PATH_PROPERTY = "athanor.nccl.library.path";
  /** What a user installs. */
  static final String INSTALL_HINT = "install NCCL (Debian/Ubuntu with NVIDIA's repository: apt-get install libnccl2; "
      + "or pip install nvidia-nccl-cu13, which PyTorch's CUDA wheels bring along), or give -D" + LIBRARY_PATH_PROPERTY
      + "=/path/to/libnccl.so.2";
  static final String FILE = "libnccl.so.2";

  private static String loadedFrom;  // guarded by NcclNative.class

  private NcclNative() {}

  /** Loads libathanor and NCCL; returns where NCCL came from. Idempotent once it succeeded; a failure searches again. */
  static synchronized String load() {
    if (loadedFrom != null) return loadedFrom;
    NativeLibrary.load();
    List<String> tried = new ArrayList<>();
    String override = System.getProperty(LIBRARY_PATH_PROPERTY);
    if (override != null && !override.isBlank()) {
      Path p = Path.of(override).toAbsolutePath();
      if (!Files.isRegularFile(p)) throw new CommunicatorException("-D" + LIBRARY_PATH_PROPERTY + "=" + override + ": no such file");
      return loadedFrom = open(p.toString(), tried);
    }
    String found = open(null, tried);  // the library path
    if (found != null) return loadedFrom = found;
    for (Path p : pythonCandidates()) {
      found = open(p.toString(), tried);
      if (found != null) return loadedFrom = found;
    }
    throw new CommunicatorException("NCCL is needed for collectives on CUDA tensors but " + FILE + " was not found; tried: "
        + String.join("; ", tried) + ". To use it, " + INSTALL_HINT + " (or train with --collectives mpi, which stages "
        + "CUDA tensors through host memory)");
  }

  /** Whether NCCL was loaded in this JVM. */
  static synchronized boolean loaded() {
    return loadedFrom != null;
  }

  /** dlopen of {@code path} (null: the library path's libnccl.so.2): where it came from, or null (recorded in tried). */
  private static String open(String path, List<String> tried) {
    try {
      load0(path);
      return path == null ? FILE + " from the library path" : path;
    } catch (NativeException e) {
      if (path != null && System.getProperty(LIBRARY_PATH_PROPERTY) != null) {
        throw new CommunicatorException("cannot load NCCL from " + path + ": " + e.detail(), e);
      }
      tried.add(e.detail().replace("ath_nccl_load: ", ""));
      return null;
    }
  }

  /** The {@code nvidia/nccl/lib/libnccl.so.2} files of the Python installations this process can see, existing only. */
  static List<Path> pythonCandidates() {
    Set<Path> sites = new LinkedHashSet<>();
    String pp = System.getenv("PYTHONPATH");
    if (pp != null) for (String s : pp.split(":")) if (!s.isBlank()) sites.add(Path.of(s));
    for (String env : new String[] {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
      String v = System.getenv(env);
      if (v != null && !v.isBlank()) addSites(Path.of(v, "lib"), sites);
    }
    addSites(Path.of("/usr/local/lib"), sites);
    addSites(Path.of("/usr/lib"), sites);
    addSites(Path.of(System.getProperty("user.home", "/root"), ".local", "lib"), sites);
    List<Path> out = new ArrayList<>();
    for (Path s : sites) {
      Path lib = s.resolve("nvidia/nccl/lib").resolve(FILE);
      if (Files.isRegularFile(lib)) out.add(lib);
    }
    if (out.isEmpty()) {
      Path asked = askPython();
      if (asked != null) out.add(asked);
    }
    return out;
  }

  /** {@code dir/python3.*}/{site,dist}-packages. */
  private static void addSites(Path dir, Set<Path> sites) {
    if (!Files.isDirectory(dir)) return;
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "python3*")) {
      for (Path py : ds) {
        for (String s : new String[] {"site-packages", "dist-packages"}) if (Files.isDirectory(py.resolve(s))) sites.add(py.resolve(s));
      }
    } catch (IOException e) {
      // an unreadable directory holds nothing we can load
    }
  }

  /** Where {@code python3} finds the nvidia.nccl package (10 s at most), or null. */
  private static Path askPython() {
    try {
      Process p = new ProcessBuilder("python3", "-c",
          "import os, nvidia.nccl as m; print(os.path.join(list(m.__path__)[0], 'lib', '" + FILE + "'))")
          .redirectErrorStream(false).redirectError(ProcessBuilder.Redirect.DISCARD).start();
      if (!p.waitFor(10, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return null;
      }
      String line = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
      if (p.exitValue() != 0 || line.isEmpty()) return null;
      Path lib = Path.of(line);
      return Files.isRegularFile(lib) ? lib : null;
    } catch (IOException | InterruptedException | RuntimeException e) {
      if (e instanceof InterruptedException) Thread.currentThread().interrupt();
      return null;
    }
  }

  /** "2.27.3" from NCCL's version code (major × 10000 + minor × 100 + patch since 2.9; × 1000 / × 100 before). */
  static String versionString(int code) {
    if (code >= 10000) return code / 10000 + "." + (code / 100) % 100 + "." + code % 100;
    return code / 1000 + "." + (code / 100) % 10 + "." + code % 100;
  }

  static native void load0(String path);
  static native int version0();
  static native byte[] uniqueId0();
  static native long commInit0(int nranks, byte[] id, int rank, int device);
  static native void commDestroy0(long comm, boolean abort);
  static native void allReduce0(long comm, long send, long recv, long count, int dtype, long stream);
  static native void reduce0(long comm, long send, long recv, long count, int dtype, int root, long stream);
  static native void reduceScatter0(long comm, long send, long recv, long recvCount, int dtype, long stream);
  static native void allGather0(long comm, long send, long recv, long sendCount, int dtype, long stream);
  static native void broadcast0(long comm, long send, long recv, long count, int dtype, int root, long stream);
  static native void send0(long comm, long buf, long count, int dtype, int peer, long stream);
  static native void recv0(long comm, long buf, long count, int dtype, int peer, long stream);
  static native void group0(boolean start);
}

package dev.athanor.runtime;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.System.Logger.Level;
import java.net.URL;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Properties;

/**
 * Finds and loads libathanor, once per JVM.
 *
 * <p>Where it looks, in order:
 * <ol>
 *   <li>the file named by the system property {@value #LIBRARY_PATH_PROPERTY}, if set (then nothing else
 *       is tried);
 *   <li>the copy inside the jar ({@value #RESOURCE}), extracted to
 *       {@code <cache>/<version>-<sha256 prefix>/libathanor.so}, where {@code <cache>} is, in turn, the
 *       property {@value #CACHE_DIR_PROPERTY}, {@code $XDG_CACHE_HOME/athanor} or {@code ~/.cache/athanor},
 *       and {@code <java.io.tmpdir>/athanor-<user>}. Extraction is skipped when the file there already has
 *       the resource's size and SHA-256; otherwise it is written to a temporary file in the same
 *       directory and atomically renamed, so concurrent JVMs never load a half-written file;
 *   <li>{@code System.loadLibrary("athanor")} ({@code java.library.path}).
 * </ol>
 * A failure throws {@link AthanorException} naming every place tried and why it failed; the failure is
 * remembered and rethrown by later calls.
 *
 * <p>Classes with natives and class initialization: JNI_OnLoad looks up every class with natives
 * (FindClass initializes it) while this class's lock is held. If such a class's static initializer calls
 * {@link #load()} and another thread were initializing it at that moment, the two threads would wait on each
 * other. {@link #load()} therefore initializes those classes ({@link #CLASSES_WITH_NATIVES}) before it takes
 * its lock; a class added to JNI_OnLoad must be added to that list too.
 */
@SuppressWarnings("restricted") // System.load: loading libathanor is this class's job
public final class NativeLibrary {
  /** System property: path of a libathanor.so to load instead of the one in the jar. */
  public static final String LIBRARY_PATH_PROPERTY = "athanor.library.path";
  /** System property: directory to extract the bundled library into (tried first). */
  public static final String CACHE_DIR_PROPERTY = "athanor.cache.dir";
  /** Where the library lives inside the jar. */
  public static final String RESOURCE = "META-INF/native/linux-x86_64/libathanor.so";

  private static final System.Logger LOG = System.getLogger("dev.athanor.runtime.NativeLibrary");

  private static volatile Path loadedFrom;
  private static Thread loadingThread; // guarded by NativeLibrary.class
  private static AthanorException failure; // guarded by NativeLibrary.class

  private NativeLibrary() {}

  /** Loads libathanor if it is not loaded yet. Idempotent and thread-safe. */
  public static void load() {
    if (loadedFrom != null) return;
    initializeNativeClasses();
    synchronized (NativeLibrary.class) {
      // Re-entry from JNI_OnLoad on the loading thread (FindClass of a class whose code calls load()).
      if (loadedFrom != null || loadingThread == Thread.currentThread()) return;
      if (failure != null) throw new AthanorException(failure.getMessage(), failure);
      loadingThread = Thread.currentThread();
      try {
        Path p = loadWith(Config.fromSystem(), System::load);
        loadedFrom = p;
        LOG.log(Level.DEBUG, "loaded libathanor from {0}", p);
      } catch (AthanorException e) {
        failure = e;
        throw e;
      } finally {
        loadingThread = null;
      }
    }
    checkVersion();
  }

  /** The classes whose natives JNI_OnLoad registers (see the class comment). */
  static final String[] CLASSES_WITH_NATIVES = {"dev.athanor.runtime.NativeRuntime", "dev.athanor.runtime.NativeKernels"};

  private static void initializeNativeClasses() {
    for (String name : CLASSES_WITH_NATIVES) {
      try {
        Class.forName(name, true, NativeLibrary.class.getClassLoader());
      } catch (ClassNotFoundException e) {
        // not part of this build; JNI_OnLoad will report it by name if it is needed
      } catch (LinkageError e) {
        // ExceptionInInitializerError / NoClassDefFoundError: a static initializer that calls load() failed;
        // the load failure itself is thrown (or the library loaded) below
      }
    }
  }

  /** Whether the library has been loaded successfully. Does not attempt to load it. */
  public static boolean isLoaded() {
    return loadedFrom != null;
  }

  /** The file the library was loaded from, or null when it is not loaded. */
  public static Path loadedFrom() {
    return loadedFrom;
  }

  /**
   * Loads the library if needed and returns null, or returns the failure message without throwing.
   * For callers that want to degrade gracefully, e.g. {@link Cuda#unavailableReason()}.
   */
  public static String tryLoad() {
    try {
      load();
      return null;
    } catch (AthanorException e) {
      return e.getMessage();
    }
  }

  /** The Java side's version (from dev/athanor/athanor.properties, filtered by Maven). */
  public static String javaVersion() {
    try (InputStream in = NativeLibrary.class.getResourceAsStream("/dev/athanor/athanor.properties")) {
      if (in == null) return "unknown";
      Properties p = new Properties();
      p.load(in);
      String v = p.getProperty("version", "unknown");
      return v.contains("${") ? "unknown" : v;
    } catch (IOException e) {
      return "unknown";
    }
  }

  private static void checkVersion() {
    String nativeVersion = NativeRuntime.version();
    String javaVersion = javaVersion();
    if (!javaVersion.equals("unknown") && !javaVersion.equals(nativeVersion)) {
      LOG.log(Level.WARNING, "libathanor {0} loaded from {1} does not match the Java library version {2}",
          nativeVersion, loadedFrom, javaVersion);
    }
  }

  // ------------------------------------------------------------------ the search (package-private for tests)

  /** Loads one file; throws anything on failure. */
  @FunctionalInterface
  interface Loader {
    void load(String absolutePath) throws Throwable;
  }

  /** Everything the search depends on, so tests can run it against fakes. */
  record Config(String overridePath, URL resource, List<Path> cacheDirs, String version, String os,
      String arch, boolean trySystemLibraryPath) {
    static Config fromSystem() {
      List<Path> dirs = new ArrayList<>();
      String prop = System.getProperty(CACHE_DIR_PROPERTY);
      if (prop != null && !prop.isBlank()) dirs.add(Path.of(prop));
      String xdg = System.getenv("XDG_CACHE_HOME");
      if (xdg != null && !xdg.isBlank()) {
        dirs.add(Path.of(xdg, "athanor"));
      } else {
        String home = System.getProperty("user.home");
        if (home != null && !home.isBlank() && !home.equals("?")) dirs.add(Path.of(home, ".cache", "athanor"));
      }
      dirs.add(Path.of(System.getProperty("java.io.tmpdir"), "athanor-" + System.getProperty("user.name", "user")));
      String override = System.getProperty(LIBRARY_PATH_PROPERTY);
      return new Config(override == null || override.isBlank() ? null : override,
          NativeLibrary.class.getClassLoader().getResource(RESOURCE), dirs, javaVersion(),
          System.getProperty("os.name", "?"), System.getProperty("os.arch", "?"), true);
    }
  }

  static Path loadWith(Config cfg, Loader loader) {
    List<String> tried = new ArrayList<>();
    if (cfg.overridePath() != null) {
      Path p = Path.of(cfg.overridePath()).toAbsolutePath();
      String why;
      if (!Files.exists(p)) {
        why = "file does not exist";
      } else if (!Files.isRegularFile(p)) {
        why = "not a regular file";
      } else {
        why = tryLoadFile(p, loader);
        if (why == null) return p;
      }
      tried.add("-D" + LIBRARY_PATH_PROPERTY + "=" + cfg.overridePath() + " (" + p + "): " + why);
      throw failure(tried);
    }
    String os = cfg.os().toLowerCase(Locale.ROOT);
    String arch = cfg.arch().toLowerCase(Locale.ROOT);
    boolean platformOk = os.startsWith("linux") && (arch.equals("amd64") || arch.equals("x86_64"));
    if (!platformOk) {
      tried.add("jar resource " + RESOURCE + ": this platform (" + cfg.os() + "/" + cfg.arch()
          + ") has no bundled library; only linux x86_64 is built");
    } else if (cfg.resource() == null) {
      tried.add("jar resource " + RESOURCE + ": not found on the class path (was the jar built without the "
          + "native library, e.g. with -Dathanor.native.skip=true?)");
    } else {
      for (Path dir : cfg.cacheDirs()) {
        Path target = null;
        String why;
        try {
          Extraction ex = extract(cfg.resource(), dir, cfg.version());
          target = ex.path();
          why = tryLoadFile(target, loader);
          if (why == null) {
            if (ex.extracted()) LOG.log(Level.DEBUG, "extracted libathanor to {0}", target);
            return target;
          }
        } catch (IOException | RuntimeException e) {
          why = "extraction failed: " + describe(e);
        }
        tried.add("extracted copy in " + (target != null ? target : dir) + ": " + why);
      }
    }
    if (cfg.trySystemLibraryPath()) {
      try {
        System.loadLibrary("athanor");
        return Path.of(System.mapLibraryName("athanor"));
      } catch (Throwable t) {
        tried.add("System.loadLibrary(\"athanor\") with java.library.path="
            + System.getProperty("java.library.path") + ": " + describe(t));
      }
    }
    throw failure(tried);
  }

  private static String tryLoadFile(Path p, Loader loader) {
    try {
      loader.load(p.toString());
      return null;
    } catch (Throwable t) {
      return describe(t);
    }
  }

  private static String describe(Throwable t) {
    String m = t.getMessage();
    return t.getClass().getSimpleName() + (m == null ? "" : ": " + m);
  }

  private static AthanorException failure(List<String> tried) {
    StringBuilder sb = new StringBuilder("could not load libathanor; places tried:");
    for (int i = 0; i < tried.size(); i++) sb.append("\n  ").append(i + 1).append(". ").append(tried.get(i));
    sb.append("\nSet -D").append(LIBRARY_PATH_PROPERTY).append("=/path/to/libathanor.so to use a specific build.");
    return new AthanorException(sb.toString());
  }

  /**
   * Extracts another bundled native library (e.g. a dependency's) the way this class extracts libathanor: to
   * {@code <cache>/<version>-<sha256 prefix>/<fileName>} in the first of the cache directories described in the
   * class comment that works, reusing a copy whose size and SHA-256 match. Does not load it.
   *
   * @return the extracted file
   * @throws IOException naming every directory tried and why it failed
   */
  public static Path extractToCache(URL resource, String fileName, String version) throws IOException {
    Objects.requireNonNull(resource, "resource");
    List<String> tried = new ArrayList<>();
    for (Path dir : Config.fromSystem().cacheDirs()) {
      try {
        return extract(resource, dir, version, fileName).path();
      } catch (IOException | RuntimeException e) {
        tried.add(dir + ": " + describe(e));
      }
    }
    throw new IOException("cannot extract " + resource + " (" + fileName + "); directories tried: "
        + String.join("; ", tried));
  }

  /** Result of {@link #extract}: where the library is, and whether it had to be (re)written. */
  record Extraction(Path path, boolean extracted) {}

  /** {@link #extract(URL, Path, String, String)} of libathanor.so. */
  static Extraction extract(URL resource, Path baseDir, String version) throws IOException {
    return extract(resource, baseDir, version, "libathanor.so");
  }

  /**
   * Makes sure {@code <baseDir>/<version>-<sha256[0..16]>/<fileName>} holds the resource's bytes: reuses
   * it when its size and SHA-256 match, else writes a temporary file next to it and renames it atomically.
   */
  static Extraction extract(URL resource, Path baseDir, String version, String fileName) throws IOException {
    Objects.requireNonNull(resource, "resource");
    Digest res = digest(resource);
    Path dir = baseDir.resolve(version + "-" + res.hex().substring(0, 16));
    Files.createDirectories(dir);
    Path target = dir.resolve(fileName);
    if (Files.isRegularFile(target) && Files.size(target) == res.size()) {
      try (InputStream in = Files.newInputStream(target)) {
        if (digest(in).equals(res)) return new Extraction(target, false);
      }
    }
    Path tmp = Files.createTempFile(dir, "." + fileName + "-", ".tmp");
    try {
      Digest written;
      try (InputStream in = resource.openStream(); OutputStream out = Files.newOutputStream(tmp)) {
        written = copyWithDigest(in, out);
      }
      if (!written.equals(res)) {
        throw new IOException("resource " + resource + " changed while it was being extracted");
      }
      try {
        Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
      } catch (UnsupportedOperationException e) {
        // not a POSIX file system; the default permissions will do
      }
      try {
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        throw new IOException("file system of " + dir + " does not support atomic rename", e);
      }
    } finally {
      Files.deleteIfExists(tmp);
    }
    return new Extraction(target, true);
  }

  private record Digest(long size, String hex) {}

  private static Digest digest(URL url) throws IOException {
    try (InputStream in = url.openStream()) {
      return digest(in);
    }
  }

  private static Digest digest(InputStream in) throws IOException {
    return copyWithDigest(in, OutputStream.nullOutputStream());
  }

  private static Digest copyWithDigest(InputStream in, OutputStream out) throws IOException {
    MessageDigest md;
    try {
      md = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
    byte[] buf = new byte[1 << 16];
    long size = 0;
    for (int n; (n = in.read(buf)) > 0; ) {
      md.update(buf, 0, n);
      out.write(buf, 0, n);
      size += n;
    }
    return new Digest(size, HexFormat.of().formatHex(md.digest()));
  }
}

package dev.athanor.io.tokenizer;

import ai.djl.huggingface.tokenizers.jni.TokenizersLibrary;
import dev.athanor.runtime.NativeLibrary;
import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Properties;

/**
 * Hugging Face's tokenizers library (Rust), reached through DJL's JNI binding ({@code ai.djl.huggingface:tokenizers}).
 *
 * <p>Only the binding's natives ({@link TokenizersLibrary}) are used, never DJL's Java loader: that loader may
 * contact the network (telemetry on EC2, and downloading a CUDA build of the library when it sees a GPU), so this
 * class finds the library for this platform inside DJL's jar ({@code native/lib/<os>-<arch>/cpu/}), extracts it
 * like libathanor (see {@link NativeLibrary#extractToCache}) and loads it itself. Nothing here touches the
 * network. The only other DJL class the library needs is the exception it throws
 * ({@code ai.djl.engine.EngineException}, in {@code ai.djl:api}); without it the library is reported unavailable.
 */
@SuppressWarnings("restricted") // System.load: loading libtokenizers is this class's job
final class HfLibrary {
  /** The binding's class: its presence says whether the jar is on the class path at all. */
  static final String BINDING_CLASS = "ai.djl.huggingface.tokenizers.jni.TokenizersLibrary";
  /**
   * The exception the native library throws for a rejected file or text. Without it, its throwing fails and the
   * library aborts the process, so the library is not loaded at all without it.
   */
  static final String EXCEPTION_CLASS = "ai.djl.engine.EngineException";
  private static final String PROPERTIES = "native/lib/tokenizers.properties";

  private HfLibrary() {}

  private static final class Holder {
    static final String FAILURE;
    static final Path LOADED_FROM;

    static {
      String failure = null;
      Path from = null;
      try {
        from = load();
      } catch (RuntimeException | IOException | LinkageError e) {
        failure = e.getMessage() == null ? e.toString() : e.getMessage();
      }
      FAILURE = failure;
      LOADED_FROM = from;
    }
  }

  /** The binding, with its native library loaded. */
  static TokenizersLibrary lib() {
    if (!onClassPath()) throw new IllegalStateException(notOnClassPath());
    if (Holder.FAILURE != null) throw new IllegalStateException(Holder.FAILURE);
    return TokenizersLibrary.LIB;
  }

  /** Null when the library loads (loading it if needed), else why it does not. */
  static String unavailableReason() {
    if (!onClassPath()) return notOnClassPath();
    return Holder.FAILURE;
  }

  /** Where the native library was loaded from (null if it was not). */
  static Path loadedFrom() {
    return onClassPath() ? Holder.LOADED_FROM : null;
  }

  /**
   * The version of the Rust library and of DJL's binding, e.g. {@code 0.21.0-0.38.0} (from the binding's jar;
   * "unknown" if it is not on the class path).
   */
  static String version() {
    try (InputStream in = HfLibrary.class.getClassLoader().getResourceAsStream(PROPERTIES)) {
      if (in == null) return "unknown";
      Properties p = new Properties();
      p.load(in);
      return p.getProperty("version", "unknown");
    } catch (IOException e) {
      return "unknown";
    }
  }

  static boolean onClassPath() {
    return missingClass() == null;
  }

  /** The first class of the binding that is not on the class path, with its artifact; null when both are. */
  private static String missingClass() {
    for (String[] c : new String[][] {{BINDING_CLASS, "ai.djl.huggingface:tokenizers"}, {EXCEPTION_CLASS, "ai.djl:api"}}) {
      try {
        Class.forName(c[0], false, HfLibrary.class.getClassLoader());
      } catch (ClassNotFoundException | LinkageError e) {
        return c[0] + " from " + c[1];
      }
    }
    return null;
  }

  private static String notOnClassPath() {
    return "Hugging Face tokenizers are not on the class path (" + missingClass() + " is missing); tokenizer.json "
        + "files cannot be read";
  }

  /** The platform's folder in DJL's jar: linux-x86_64, linux-aarch64, osx-aarch64 (null for any other). */
  static String platformFolder(String osName, String osArch) {
    String os = osName.toLowerCase(Locale.ROOT);
    String arch = osArch.toLowerCase(Locale.ROOT);
    boolean x86 = arch.equals("amd64") || arch.equals("x86_64");
    boolean arm = arch.equals("aarch64") || arch.equals("arm64");
    if (os.startsWith("linux") && x86) return "linux-x86_64";
    if (os.startsWith("linux") && arm) return "linux-aarch64";
    if (os.startsWith("mac") && arm) return "osx-aarch64";
    return null; // Windows needs three more DLLs next to tokenizers.dll; Athanor itself runs on Linux only
  }

  private static Path load() throws IOException {
    String osName = System.getProperty("os.name", "?");
    String osArch = System.getProperty("os.arch", "?");
    String folder = platformFolder(osName, osArch);
    if (folder == null) {
      throw new IllegalStateException("Hugging Face tokenizers: no native library for this platform (" + osName + "/"
          + osArch + "); DJL's jar carries one for linux-x86_64, linux-aarch64 and osx-aarch64 that Athanor can load");
    }
    String file = System.mapLibraryName("tokenizers");
    String resource = "native/lib/" + folder + "/cpu/" + file;
    URL url = HfLibrary.class.getClassLoader().getResource(resource);
    if (url == null) {
      throw new IllegalStateException("Hugging Face tokenizers: " + resource + " for this platform (" + osName + "/"
          + osArch + ") is not in the ai.djl.huggingface:tokenizers jar on the class path");
    }
    Path path = NativeLibrary.extractToCache(url, file, "tokenizers-" + version());
    try {
      System.load(path.toString());
    } catch (UnsatisfiedLinkError e) {
      throw new IllegalStateException("Hugging Face tokenizers: cannot load " + path + " (" + osName + "/" + osArch
          + "): " + e.getMessage(), e);
    }
    return path;
  }
}

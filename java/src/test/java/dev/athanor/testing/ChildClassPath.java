package dev.athanor.testing;

import dev.athanor.cli.Main;
import dev.athanor.runtime.NativeLibrary;
import java.io.File;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The class path for a child JVM that runs {@code dev.athanor.cli.Main} (or a test's own main class): this JVM's
 * {@code java.class.path} plus the class-path entries (directories or jars) that hold the library, its dependencies
 * and its native library. A launcher such as the JUnit console puts those on a class loader of its own, so
 * {@code java.class.path} alone is not enough there.
 *
 * <p>Entries are found by resource name ({@code a/b/C.class}), never by loading the class: loading a class whose
 * superclass is an AWT type (the SVG renderer's {@code SVGGraphics2D}) fails on a runtime without the java.desktop
 * module, such as the GPU check's trimmed one, and the child must still be startable there.
 */
public final class ChildClassPath {
  /** The classes (by name) whose class-path entries a child running {@code Main} needs. */
  private static final List<String> MAIN_CLASSES = List.of(Main.class.getName(), "com.google.gson.JsonParser",
      "picocli.CommandLine", "me.tongfei.progressbar.ProgressBar", "org.jline.terminal.Terminal",
      "org.knowm.xchart.XYChart", "org.jfree.svg.SVGGraphics2D");

  private ChildClassPath() {}

  /**
   * The class path for a child JVM running {@code Main} or a test's own main class: the entries of the library, its
   * dependencies (those this JVM can see), the native library and the test classes, then {@code java.class.path}.
   */
  public static String forMain() {
    Set<String> cp = new LinkedHashSet<>();
    for (String c : MAIN_CLASSES) entryOfClass(c).ifPresent(p -> cp.add(p.toString()));
    entryOf(NativeLibrary.RESOURCE).ifPresent(p -> cp.add(p.toString()));
    entryOfClass(ChildClassPath.class.getName()).ifPresent(p -> cp.add(p.toString()));  // the tests' own main classes
    for (String s : System.getProperty("java.class.path").split(File.pathSeparator)) if (!s.isBlank()) cp.add(s);
    return String.join(File.pathSeparator, cp);
  }

  /**
   * The class path made of the entries that hold {@code classNames}; fails naming a class this JVM cannot see.
   */
  public static String of(String... classNames) {
    Set<String> cp = new LinkedHashSet<>();
    for (String c : classNames) {
      cp.add(entryOfClass(c).orElseThrow(() -> new IllegalStateException(c + " is not on this JVM's class path"))
          .toString());
    }
    return String.join(File.pathSeparator, cp);
  }

  /** The class-path entry that holds class {@code className} (binary name), without loading the class. */
  public static Optional<Path> entryOfClass(String className) {
    return entryOf(className.replace('.', '/') + ".class");
  }

  /**
   * The class-path entry (a directory, or a jar file) that holds {@code resource}, as seen by the class loader
   * that loaded the library; empty if none does or it is neither a file nor inside a jar file.
   */
  public static Optional<Path> entryOf(String resource) {
    URL url = Main.class.getClassLoader().getResource(resource);
    if (url == null) return Optional.empty();
    try {
      return switch (url.getProtocol()) {
        case "file" -> {
          Path p = Path.of(url.toURI());
          for (int i = 0; i < resource.split("/").length; i++) p = p.getParent();
          yield Optional.of(p);
        }
        case "jar" -> {
          String s = url.getPath();  // file:/x/y.jar!/a/b/C.class
          yield Optional.of(Path.of(java.net.URI.create(s.substring(0, s.indexOf("!/")))));
        }
        default -> Optional.empty();
      };
    } catch (URISyntaxException e) {
      throw new IllegalStateException("cannot turn " + url + " into a path: " + e, e);
    }
  }
}

package dev.athanor.testing;

import javax.tools.ToolProvider;
import org.junit.jupiter.api.Assumptions;

/**
 * What the Java runtime running the tests has, and assumptions that skip a test (with the reason) where it lacks what
 * the test needs. The GPU check runs the suite on a trimmed runtime: no java.desktop module (AWT, for the charts) and
 * no Java compiler; on a full JDK (the build, CI) every assumption here holds.
 */
public final class RuntimeAssumptions {
  private RuntimeAssumptions() {}

  /** Whether this runtime has the java.desktop module (AWT), which drawing the training charts needs. */
  public static boolean hasDesktop() {
    return ModuleLayer.boot().findModule("java.desktop").isPresent();
  }

  /** Skips the test unless this runtime has java.desktop; {@code what}: what the test draws with it. */
  public static void assumeDesktop(String what) {
    Assumptions.assumeTrue(hasDesktop(),
        "this Java runtime has no java.desktop module (AWT) to draw " + what + " with, e.g. the GPU check's trimmed runtime");
  }

  /** Skips the test unless this runtime is a JDK with a Java compiler ({@code javac}). */
  public static void assumeJavaCompiler() {
    Assumptions.assumeTrue(ToolProvider.getSystemJavaCompiler() != null,
        "this Java runtime has no Java compiler (not a JDK, e.g. the GPU check's trimmed runtime)");
  }
}

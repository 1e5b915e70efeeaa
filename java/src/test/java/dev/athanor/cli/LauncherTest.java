package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.athanor.testing.RuntimeAssumptions;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The {@code ./athanor} launcher script: on a first run it builds, and the build's output must not reach standard
 * output (which carries only what the command prints, e.g. JSON). The launcher runs from a copy in a temporary "clone"
 * with a fake {@code mvn} on the PATH that prints a build log (with ANSI codes) to stdout and produces a small jar.
 */
class LauncherTest {
  private static final String BUILD_LOG = "\u001b[1;34m[INFO]\u001b[m BUILD SUCCESS (fake mvn)";

  @Test
  void launcherBuildOutputGoesToStderr(@TempDir Path tmp) throws Exception {
    RuntimeAssumptions.assumeJavaCompiler();  // the stand-in CLI jar is compiled here
    Path script = repoRoot().resolve("athanor");
    String text = Files.readString(script);
    Matcher v = Pattern.compile("(?m)^VERSION=\"([^\"]+)\"").matcher(text);
    assertTrue(v.find(), "the launcher sets VERSION");
    Path clone = tmp.resolve("clone");
    Files.createDirectories(clone);
    Path launcher = clone.resolve("athanor");
    Files.writeString(launcher, text);
    executable(launcher);

    Path jar = tmp.resolve("payload.jar");
    payloadJar(tmp.resolve("classes"), jar);
    Path bin = tmp.resolve("bin");
    Files.createDirectories(bin);
    // what a real build does to stdout: a log with colours (Maven) and CMake's progress
    script(bin.resolve("mvn"), "printf '%s\\n' \"$FAKE_BUILD_LOG\"\necho '[ 50%] Building CXX object native/ops.cpp.o'\n"
        + "mkdir -p java/target && cp \"$FAKE_JAR\" \"java/target/athanor-" + v.group(1) + ".jar\"\n");
    script(bin.resolve("cmake"), "echo 'cmake version 3.28.0'\n");

    Result first = launch(launcher, bin, jar, "score", "--text", "x");
    assertEquals(0, first.rc(), first.toString());
    assertEquals("payload: score --text x\n", first.out(), "stdout carries only what the command prints");
    assertTrue(first.err().contains(BUILD_LOG) && first.err().contains("Building CXX"), "the build log is on stderr: " + first);
    assertTrue(first.err().contains("athanor: building"), first.toString());

    Result build = launch(launcher, bin, jar, "build");
    assertEquals(0, build.rc(), build.toString());
    assertEquals("", build.out(), "./athanor build prints nothing on stdout");
    assertTrue(build.err().contains(BUILD_LOG), build.toString());

    Result again = launch(launcher, bin, jar, "info");
    assertEquals("payload: info\n", again.out(), "built: no build the second time");
    assertFalse(again.err().contains(BUILD_LOG), again.toString());
  }

  record Result(int rc, String out, String err) {}

  /** Runs the launcher with the fake build tools first on the PATH and the test's JDK as JAVA_HOME. */
  private static Result launch(Path launcher, Path bin, Path jar, String... args) throws Exception {
    List<String> cmd = new java.util.ArrayList<>(List.of("bash", launcher.toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    Map<String, String> env = pb.environment();
    env.put("PATH", bin + ":" + env.getOrDefault("PATH", "/usr/bin:/bin"));
    env.put("JAVA_HOME", System.getProperty("java.home"));
    env.put("FAKE_JAR", jar.toString());
    env.put("FAKE_BUILD_LOG", BUILD_LOG);
    env.remove("ATHANOR_JAVA_OPTS");
    Process p = pb.start();
    p.getOutputStream().close();
    ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    Thread t1 = Thread.ofVirtual().start(() -> copy(p.getInputStream(), out));
    Thread t2 = Thread.ofVirtual().start(() -> copy(p.getErrorStream(), err));
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly().waitFor();
      fail("the launcher did not finish in 60 s");
    }
    t1.join();
    t2.join();
    return new Result(p.exitValue(), out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  private static void copy(java.io.InputStream in, OutputStream out) {
    try (in) {
      in.transferTo(out);
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /** A jar whose main class prints "payload: ARGS" (standing in for the CLI). */
  private static void payloadJar(Path classes, Path jar) throws IOException {
    Files.createDirectories(classes);
    Path src = classes.resolve("Payload.java");
    Files.writeString(src, "public class Payload { public static void main(String[] a) { "
        + "System.out.println(\"payload: \" + String.join(\" \", a)); } }");
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    assertTrue(javac != null, "a JDK (checked by launcherBuildOutputGoesToStderr)");
    assertEquals(0, javac.run(null, null, null, "-d", classes.toString(), src.toString()), "compiles");
    Manifest mf = new Manifest();
    mf.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
    mf.getMainAttributes().put(Attributes.Name.MAIN_CLASS, "Payload");
    try (JarOutputStream j = new JarOutputStream(Files.newOutputStream(jar), mf)) {
      j.putNextEntry(new JarEntry("Payload.class"));
      j.write(Files.readAllBytes(classes.resolve("Payload.class")));
      j.closeEntry();
    }
  }

  private static void script(Path file, String body) throws IOException {
    Files.writeString(file, "#!/usr/bin/env bash\n" + body);
    executable(file);
  }

  private static void executable(Path f) throws IOException {
    Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rwxr-xr-x"));
  }

  /** The repository root: the first directory up from the working directory that holds the launcher and pom.xml. */
  static Path repoRoot() {
    for (Path d = Path.of("").toAbsolutePath(); d != null; d = d.getParent()) {
      if (Files.isRegularFile(d.resolve("athanor")) && Files.isRegularFile(d.resolve("pom.xml"))) return d;
    }
    throw new IllegalStateException("no athanor launcher above " + Path.of("").toAbsolutePath());
  }
}

package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.net.URL;
import java.net.URLConnection;
import java.net.URLStreamHandler;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Loading a tokenizer.json needs no network and touches none: in a fresh JVM (inside a network namespace without
 * interfaces where {@code unshare -rn} works, as here), with every http/https/ftp URL refused and counted, with a
 * fresh cache directory and home. The JVM's class-loading log must show that of DJL only its JNI binding (and the
 * exception class its natives throw) was loaded, not its loader, which can download a CUDA build of the library, nor
 * its telemetry.
 */
class HfOfflineTest {
  @TempDir Path dir;

  /** Runs in the child JVM: refuses and counts network URLs, loads args[0], encodes, prints what happened. */
  public static final class Probe {
    static final AtomicInteger ATTEMPTS = new AtomicInteger();

    public static void main(String[] args) throws Exception {
      URL.setURLStreamHandlerFactory(protocol -> switch (protocol) {
        case "http", "https", "ftp" -> new URLStreamHandler() {
          @Override
          protected URLConnection openConnection(URL u) throws IOException {
            ATTEMPTS.incrementAndGet();
            throw new IOException("network refused by the test: " + u);
          }
        };
        default -> null;
      });
      try (HfTokenizer t = HfTokenizer.load(Path.of(args[0]))) {
        System.out.println("ids=" + Arrays.toString(t.encode("hello world")));
        System.out.println("text=" + t.decode(t.encode("hello world")));
      }
      System.out.println("attempts=" + ATTEMPTS.get());
      System.out.println("library=" + HfLibrary.loadedFrom());
      try { // the counter works: a deliberate attempt is seen
        new URL("http://169.254.169.254/latest/meta-data/").openConnection();
      } catch (IOException expected) {
        // refused
      }
      System.out.println("deliberate=" + ATTEMPTS.get());
    }
  }

  /** Runs in a child JVM with part of DJL missing: says whether tokenizer.json can be read, and what load does. */
  public static final class Availability {
    public static void main(String[] args) {
      System.out.println("available=" + HfTokenizer.isAvailable());
      System.out.println("reason=" + HfTokenizer.unavailableReason());
      try (HfTokenizer t = HfTokenizer.load(Path.of(args[0]))) {
        System.out.println("loaded " + t);
      } catch (IllegalStateException | IOException e) {
        System.out.println("load=" + e.getClass().getSimpleName() + ": " + e.getMessage());
      }
    }
  }

  /**
   * Without the binding's jar, or without ai.djl:api (whose exception class the natives throw: without it a rejected
   * file would abort the JVM), tokenizer.json files are refused with a message naming what is missing.
   */
  @Test
  void withoutPartsOfDjlTheLibraryIsUnavailableNotFatal() throws Exception {
    Path json = dir.resolve("tokenizer.json");
    Files.writeString(json, "{\"not\": \"a tokenizer\"}");
    List<String> classPath = List.of(System.getProperty("java.class.path").split(java.io.File.pathSeparator));
    assumeTrue(classPath.stream().anyMatch(e -> e.contains("tokenizers-")), "DJL's jar is not a class-path entry");
    String[][] cases = {{"tokenizers-", "ai.djl.huggingface:tokenizers"}, {"api-", "ai.djl:api"}};
    for (String[] c : cases) {
      String cp = String.join(java.io.File.pathSeparator, classPath.stream()
          .filter(e -> !(e.contains("ai" + java.io.File.separator + "djl") && Path.of(e).getFileName().toString()
              .startsWith(c[0]))).toList());
      Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          "--enable-native-access=ALL-UNNAMED", "-Dathanor.cache.dir=" + dir.resolve("cache"), "-cp", cp,
          Availability.class.getName(), json.toString()).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child JVM finished");
      assertEquals(0, p.exitValue(), out);
      List<String> lines = out.lines().toList();
      assertTrue(lines.contains("available=false"), c[1] + " missing\n" + out);
      assertTrue(out.contains("reason=") && out.contains(c[1] + " is missing"), out);
      assertTrue(out.contains("load=IllegalStateException: cannot read " + json) && out.contains(c[1]), out);
    }
  }

  private static boolean unshareWorks() {
    try {
      Process p = new ProcessBuilder("unshare", "-rn", "true").redirectErrorStream(true).start();
      p.getInputStream().readAllBytes();
      return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
    } catch (IOException | InterruptedException e) {
      return false;
    }
  }

  @Test
  void loadsWithoutNetwork() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    Path json = dir.resolve("tokenizer.json");
    Files.writeString(json, HfSentencePieceTest.json(false, true, true).toString());
    Path cache = dir.resolve("cache"), home = dir.resolve("home");
    Files.createDirectories(home);
    List<String> cmd = new ArrayList<>();
    boolean isolated = unshareWorks();
    if (isolated) cmd.addAll(List.of("unshare", "-rn"));
    cmd.addAll(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "--enable-native-access=ALL-UNNAMED", "-Xlog:class+load=info:stdout", "-Dathanor.cache.dir=" + cache,
        "-Duser.home=" + home, "-cp", System.getProperty("java.class.path"), Probe.class.getName(), json.toString()));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().remove("XDG_CACHE_HOME");
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child JVM finished");
    assertEquals(0, p.exitValue(), out);
    List<String> lines = out.lines().toList();
    assertTrue(lines.contains("ids=[" + HfSentencePieceTest.HELLO + ", " + HfSentencePieceTest.WORLD + "]"), out);
    assertTrue(lines.contains("text=hello world"), out);
    assertTrue(lines.contains("attempts=0"), "no network attempt while loading (isolated: " + isolated + ")\n" + out);
    assertTrue(lines.contains("deliberate=1"), "the counter sees attempts\n" + out);
    // DJL classes loaded: the binding and the exception class its natives throw, nothing else
    List<String> djl = lines.stream().filter(l -> l.contains("[class,load] ai.djl."))
        .map(l -> l.replaceAll(".*\\[class,load\\] (\\S+).*", "$1")).toList();
    assertEquals(List.of(HfLibrary.BINDING_CLASS, HfLibrary.EXCEPTION_CLASS), djl, out);
    // the native library came from the jar into our cache; nothing went to the home directory (DJL's ~/.djl.ai)
    String lib = lines.stream().filter(l -> l.startsWith("library=")).findFirst().orElseThrow().substring(8);
    assertTrue(Path.of(lib).startsWith(cache) && Files.isRegularFile(Path.of(lib)), lib);
    try (Stream<Path> s = Files.list(home)) {
      assertFalse(s.findAny().isPresent(), "nothing written under the home directory");
    }
  }
}

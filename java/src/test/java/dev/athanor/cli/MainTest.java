package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class MainTest {
  private record Result(int code, String out, String err) {}

  private static Result run(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void infoListsBackendsKernelsAndTiers() {
    Result r = run("info");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("Backend cpu: available"), r.out());
    assertTrue(r.out().contains("Backend cuda:"), r.out());
    assertTrue(r.out().contains("gemm"), r.out());
    for (String tier : new String[] {"DEVICE", "HOST_PINNED", "HOST", "DISK"}) assertTrue(r.out().contains(tier), r.out());
  }

  @Test
  void infoJsonIsOneObject() {
    Result r = run("info", "--json");
    assertEquals(0, r.code(), r.err());
    String json = r.out().strip();
    assertTrue(json.startsWith("{\"version\":") && json.endsWith("}"), json);
    assertTrue(json.contains("\"cuda\":{\"built\":"), json);
  }

  @Test
  void unknownCommandAndOptionAreUsageErrors() {
    Result r = run("frobnicate");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("unknown command 'frobnicate'"), r.err());
    Result o = run("info", "--bogus");
    assertEquals(2, o.code());
    assertTrue(o.err().contains("Unknown option: '--bogus'"), o.err());
  }
}

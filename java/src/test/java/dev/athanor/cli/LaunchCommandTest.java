package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code athanor launch}: how it turns a command into an mpirun command line, and what it refuses (no MPI needed). */
class LaunchCommandTest {
  /** The launch command parsed from {@code args} (as the CLI parses it), for calling {@link LaunchCommand#plan}. */
  private static LaunchCommand parsed(String... args) {
    ByteArrayOutputStream sink = new ByteArrayOutputStream();
    PrintStream ps = new PrintStream(sink, true, StandardCharsets.UTF_8);
    CommandLine cl = Main.commandLine(ps, ps);
    List<CommandLine> chain = cl.parseArgs(args).asCommandLineList();
    return (LaunchCommand) chain.get(chain.size() - 1).getCommand();
  }

  private record Result(int code, String out, String err) {}

  private static Result run(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    int rc;
    try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8); PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
      rc = Main.run(args, o, e);
    }
    return new Result(rc, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void theProcessCountIsTheProductOfTheParallelFlags() {
    LaunchCommand.Plan p = parsed("launch", "train", "--steps", "3", "--dp", "2", "--pp=3").plan(64, false);
    List<String> c = p.command();
    assertEquals(List.of("mpirun", "-np", "6", "--bind-to", "none"), c.subList(0, 5));
    int main = c.indexOf(Main.class.getName());
    assertTrue(main > 0, c.toString());
    assertEquals(List.of("train", "--steps", "3", "--dp", "2", "--pp=3", "--threads", "10"), c.subList(main + 1, c.size()),
        "the command's arguments in order, then --threads 64 CPUs / 6 processes");
    assertTrue(c.contains("-cp") && c.contains("--enable-native-access=ALL-UNNAMED"), c.toString());
    assertFalse(p.environment().containsKey("OMPI_ALLOW_RUN_AS_ROOT"), "not root: " + p.environment());
    assertTrue(p.note().contains("--threads 10"), p.note());
  }

  @Test
  void moreProcessesThanCpusOversubscribeAndRootGetsWhatOpenMpiNeeds() {
    LaunchCommand.Plan p = parsed("launch", "train", "--dp", "4", "--threads", "1").plan(2, true);
    assertTrue(p.command().contains("--oversubscribe"), p.command().toString());
    assertEquals(1, p.command().stream().filter("--threads"::equals).count(), "the command's own --threads is kept alone");
    assertEquals("1", p.environment().get("OMPI_ALLOW_RUN_AS_ROOT"));
    assertEquals("1", p.environment().get("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"));
    assertTrue(p.note().contains("4 processes on 2 CPUs"), p.note());
  }

  @Test
  void npAloneWorksAndMustAgreeWithTheFlags() {
    LaunchCommand.Plan p = parsed("launch", "--np", "3", "info").plan(8, false);
    assertEquals("3", p.command().get(2));
    assertFalse(p.command().contains("--threads"), "info has no --threads: " + p.command());

    Result r = run("launch", "--dry-run", "--np", "3", "train", "--dp", "2");
    assertEquals(Main.USAGE, r.code(), r.err());
    assertTrue(r.err().contains("--np 3 but the command asks for --dp 2 = 2 processes"), r.err());
  }

  @Test
  void unclearOrBadCountsAreUsageErrorsNamingTheFlag() {
    Result none = run("launch", "--dry-run", "train", "--steps", "3");
    assertEquals(Main.USAGE, none.code());
    assertTrue(none.err().contains("how many processes? give the command's --dp"), none.err());

    Result bad = run("launch", "--dry-run", "train", "--dp", "two");
    assertEquals(Main.USAGE, bad.code());
    assertTrue(bad.err().contains("train --dp 'two' is not a positive whole number"), bad.err());

    Result zero = run("launch", "--dry-run", "--np", "0", "info");
    assertEquals(Main.USAGE, zero.code());
    assertTrue(zero.err().contains("--np") && zero.err().contains("0"), zero.err());

    Result self = run("launch", "--dry-run", "--np", "2", "launch");
    assertEquals(Main.USAGE, self.code());
    assertTrue(self.err().contains("launch cannot launch itself"), self.err());

    Result file = run("launch", "--dry-run", "train", "@run.args");
    assertTrue(file.err().contains("flags inside @files are not read by launch"), file.err());
  }

  @Test
  void dryRunPrintsTheCommandLineQuotedForTheShell() {
    Result r = run("launch", "--dry-run", "--hostfile", "/dev/null", "train", "--data", "my corpus.txt", "--dp", "2");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().startsWith("mpirun -np 2 --hostfile /dev/null --bind-to none "), r.out());
    assertTrue(r.out().contains("train --data 'my corpus.txt' --dp 2"), r.out());
    assertFalse(r.out().contains("--threads"), "with a hostfile the machines' CPUs are unknown: " + r.out());
  }

  @Test
  void aMissingMpirunSaysWhatToInstall() {
    Result r = run("launch", "--mpirun", "/nonexistent/mpirun", "--np", "2", "info");
    assertEquals(1, r.code());
    assertTrue(r.err().contains("/nonexistent/mpirun was not found; install Open MPI"), r.err());
  }
}

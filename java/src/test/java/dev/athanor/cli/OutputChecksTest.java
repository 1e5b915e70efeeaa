package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.hf.HfConfig;
import dev.athanor.nn.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Issue 14, case 3: {@code train --out} naming an existing file or {@code /dev/null} ran every step and failed only when
 * saving. Every output path and every flag value is now checked before any work: each case below exits with code 2,
 * names the flag, the value and the problem, and prints nothing on stdout (the model summary that comes before
 * building the model and tokenizing the data is not reached), and nothing is written.
 */
class OutputChecksTest {
  @TempDir static Path tmp;
  static Path config;
  static Path text;
  static Path aFile;
  static Path fifo;

  @BeforeAll
  static void files() throws IOException, InterruptedException {
    config = tmp.resolve("config.json");
    Files.writeString(config, HfConfig.toJson(ModelConfig.gpt2(50257, 32, 1, 16, 1)));
    text = tmp.resolve("corpus.txt");
    Files.writeString(text, "the furnace of iron ".repeat(500));
    aFile = tmp.resolve("a-file");
    Files.writeString(aFile, "x");
    fifo = FifoInputsTest.mkfifo(tmp.resolve("fifo"));
  }

  static Stream<Arguments> badOutputsAndFlags() {
    String out = tmp.resolve("out").toString();
    return Stream.of(
        Arguments.of(List.of("--out", aFile.toString()), "--out " + aFile + " is a file, not a directory; give another --out"),
        Arguments.of(List.of("--out", "/dev/null"), "--out /dev/null is a character device, not a directory"),
        Arguments.of(List.of("--out", aFile.resolve("sub").toString()),
            "--out " + aFile.resolve("sub") + " cannot be created: " + aFile + " is a file, not a directory"),
        Arguments.of(List.of("--out", out, "--log", tmp.toString()), "--log " + tmp + " is a directory, not a regular file"),
        Arguments.of(List.of("--out", out, "--log", "/dev/null"), "--log /dev/null is a character device, not a regular file"),
        Arguments.of(List.of("--out", out, "--log", fifo.toString()), "--log " + fifo + " is a FIFO (named pipe), not a regular file"),
        Arguments.of(List.of("--out", out, "--checkpoint-dir", aFile.toString()),
            "--checkpoint-dir " + aFile + " is a file, not a directory"),
        Arguments.of(List.of("--out", out, "--checkpoint-every", "5"), "--checkpoint-every 5 needs --checkpoint-dir"),
        Arguments.of(List.of("--out", out, "--checkpoint-every", "-1"),
            "Invalid value for option '--checkpoint-every': -1 is out of range (expected an integer >= 0)"),
        Arguments.of(List.of("--out", out, "--keep", "0"), "Invalid value for option '--keep': 0 is out of range (expected an integer >= 1)"),
        Arguments.of(List.of("--out", out, "--threads", "100000"), "Invalid value for option '--threads': 100000 is out of range "
            + "(expected an integer in [1, " + Options.Threads.maxThreads() + "]: at most 4 threads per CPU"),
        Arguments.of(List.of("--out", out, "--seq", "64"), "--seq 64 exceeds the model's context of 32 tokens; give --seq 32 or less"));
  }

  @ParameterizedTest
  @MethodSource("badOutputsAndFlags")
  void case3OutputsAndFlagsAreCheckedBeforeAnyWork(List<String> flags, String expected) throws IOException {
    List<String> args = new ArrayList<>(List.of("train", "--config", config.toString(), "--data", text.toString(), "--steps",
        "2", "--batch", "1", "--device", "cpu"));
    args.addAll(flags);
    CliTest.Out r = CliTest.run(args.toArray(String[]::new));
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor train: " + expected), r.err());
    assertEquals("", r.out(), "nothing ran: the model summary comes before building the model and tokenizing");
    assertFalse(Files.exists(tmp.resolve("out")), "nothing was written");
  }

  @Test
  void case3AnUnwritableOutputDirectoryIsRefusedFirst() throws IOException {
    Path ro = Files.createDirectory(tmp.resolve("read-only"));
    Files.setPosixFilePermissions(ro, PosixFilePermissions.fromString("r-xr-xr-x"));
    try {
      // permissions do not bind root, but /proc/1 is not writable for anyone
      Path dir = Files.isWritable(ro) ? Path.of("/proc/1") : ro;
      assumeTrue(Files.isDirectory(dir) && !Files.isWritable(dir), "no unwritable directory for this user");
      CliTest.Out r = CliTest.run("train", "--config", config.toString(), "--data", text.toString(), "--device", "cpu",
          "--out", dir.resolve("model").toString());
      assertEquals(2, r.code(), r.err());
      assertTrue(r.err().startsWith("athanor train: --out " + dir.resolve("model") + " cannot be created: the directory " + dir
          + " is not writable"), r.err());
      assertEquals("", r.out());
      r = CliTest.run("train", "--config", config.toString(), "--data", text.toString(), "--device", "cpu", "--out",
          tmp.resolve("o").toString(), "--checkpoint-dir", dir.toString());
      assertEquals(2, r.code(), r.err());
      assertTrue(r.err().startsWith("athanor train: --checkpoint-dir " + dir + " is a directory that is not writable"), r.err());
    } finally {
      Files.setPosixFilePermissions(ro, PosixFilePermissions.fromString("rwxr-xr-x"));
    }
  }

  @Test
  void case3BenchJsonOutputIsCheckedBeforeMeasuring() {
    CliTest.Out r = CliTest.run("bench", "--mode", "overlap", "--device", "cpu", "--json", tmp.toString());
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor bench: --json " + tmp + " is a directory, not a regular file; give another --json"), r.err());
    assertEquals("", r.out());
    r = CliTest.run("bench", "--mode", "overlap", "--device", "cpu", "--json", aFile.resolve("x.json").toString());
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("cannot be created: " + aFile + " is a file, not a directory"), r.err());
  }
}

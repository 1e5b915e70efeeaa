package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.nn.ModelConfig;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;
import picocli.CommandLine;

/**
 * The command line's shape without running any model: help and version, usage errors (message, exit code, stderr),
 * suggestions, typed options, @argsfiles, bash completion.
 */
class CliTest {
  @TempDir Path tmp;

  record Out(int code, String out, String err) {}

  static Out run(String... args) {
    ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
    int code = Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8), new PrintStream(e, true, StandardCharsets.UTF_8));
    return new Out(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
  }

  /** The train command as parsed from {@code args} (nothing runs). */
  static TrainCommand parseTrain(String... args) {
    CommandLine cl = Main.commandLine(System.out, System.err);
    CommandLine.ParseResult pr = cl.parseArgs(args);
    CommandLine train = pr.subcommand().commandSpec().commandLine();
    Options.check(train.getCommandSpec());
    return train.getCommand();
  }

  @ParameterizedTest
  @ValueSource(strings = {"demo", "train", "plan", "generate", "score", "bench", "info", "completion", "help"})
  void everyCommandHasItsOwnHelpAndExitsZero(String command) {
    for (String flag : new String[] {"--help", "-h"}) {
      Out r = run(command, flag);
      assertEquals(0, r.code(), r.err());
      assertTrue(r.out().contains("Usage: athanor " + command), r.out());
      assertEquals("", r.err());
    }
    Out r = run("help", command);
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("Usage: athanor " + command), r.out());
  }

  @Test
  void helpListsTheCommandsAndTheLauncherOnes() {
    for (String[] args : new String[][] {{}, {"--help"}, {"help"}}) {
      Out r = run(args);
      assertEquals(0, r.code(), r.err());
      for (String c : List.of("demo", "train", "generate", "score", "bench", "info", "completion")) {
        assertTrue(r.out().contains("\n  " + c + " "), c + " in:\n" + r.out());
      }
      assertTrue(r.out().contains("./athanor test") && r.out().contains("@run.args"), r.out());
    }
  }

  @Test
  void trainHelpShowsEveryFlagWithItsSection() {
    String help = run("train", "--help").out();
    for (String flag : List.of("--model", "--config", "--preset", "--context", "--data", "--steps", "--batch", "--seq",
        "--lr", "--min-lr", "--warmup", "--schedule", "--weight-decay", "--beta1", "--beta2", "--eps", "--grad-clip",
        "--accum", "--shuffle", "--seed", "--device", "--out", "--log", "--max-bytes", "--recompute", "--save-dtype",
        "--checkpoint-dir", "--checkpoint-every", "--keep", "--resume", "--checkpoint-sync", "--threads", "--mem-host")) {
      assertTrue(help.contains(flag), flag + " missing from:\n" + help);
    }
    for (String section : List.of("Model", "Steps and optimizer:", "Output:", "Checkpoints:", "Runtime:")) {
      assertTrue(help.contains("\n" + section), section + " missing from:\n" + help);
    }
    assertTrue(help.contains("--steps=N") && help.contains("Default: 1000"), help);
  }

  @Test
  void versionNamesTheLibraryAndTheNativeBuild() {
    for (String[] args : new String[][] {{"--version"}, {"-V"}, {"train", "--version"}}) {
      Out r = run(args);
      assertEquals(0, r.code(), r.err());
      assertTrue(r.out().startsWith("athanor " + dev.athanor.runtime.NativeLibrary.javaVersion()), r.out());
      assertTrue(r.out().contains("libathanor " + dev.athanor.runtime.NativeRuntime.version()), r.out());
    }
  }

  @Test
  void mistypedFlagsAndCommandsGetSuggestions() {
    Out r = run("train", "--data", tmp.toString(), "--stpes", "5");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("'--stpes'") && r.err().contains("Did you mean: --steps?"), r.err());
    assertTrue(r.err().contains("Try 'athanor train --help'"), r.err());
    assertEquals("", r.out());
    r = run("generate", "--model", "m", "--promt", "x");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("Did you mean: --prompt?"), r.err());
    r = run("tarin");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("unknown command 'tarin'") && r.err().contains("Did you mean: athanor") && r.err().contains("train"),
        r.err());
  }

  /** Each bad value: exit code 2, nothing on stdout, and stderr names the flag, the value and what was expected. */
  @ParameterizedTest
  @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
      "--steps|abc|'abc' is not an integer",
      "--steps|0|0 is out of range (expected an integer >= 1)",
      "--batch|-3|-3 is out of range (expected an integer >= 1)",
      "--keep|0|0 is out of range (expected an integer >= 1)",
      "--beta1|1|1.0 is out of range (expected a number in [0, 1))",
      "--eps|0|0.0 is out of range (expected a number > 0)",
      "--lr|NaN|'NaN' is not a finite number",
      "--threads|0|0 is out of range (expected an integer in [1, ",
      "--mem-host|12q|'12q' is not a size (expected e.g. 123, 64k, 512m, 12g or unlimited)",
      "--max-bytes|lots|'lots' is not a size",
      "--schedule|linear|expected one of [CONSTANT, COSINE] (case-insensitive) but was 'linear'",
      "--save-dtype|i32|expected one of [F32, BF16, F16] (case-insensitive) but was 'i32'",
      "--device|tpu|'tpu' is not a device (expected auto, cpu, cuda or cuda:N)",
      "--shuffle|maybe|'maybe' is not a boolean (expected true or false)",
      "--preset|gpt3|unknown model preset \"gpt3\"; known: [gpt2,"})
  void badValuesNameTheFlagTheValueAndTheExpectation(String flag, String value, String expected) {
    Out r = run("train", "--data", tmp.toString(), flag, value);
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor train: Invalid value for option '" + flag + "': " + expected), r.err());
    assertEquals("", r.out());
  }

  @Test
  void otherUsageErrorsNameTheirFlags() {
    Out r = run("train", "--data", tmp.toString(), "--steps", "5", "--batch", "2", "--steps", "6");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("option '--steps' should be given only once, got 5 and 6"), r.err());
    r = run("train", "--data", tmp.toString(), "--preset", "gpt2", "--config", "c.json");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("give only one of --model, --config and --preset (got --config and --preset)"), r.err());
    r = run("train", "--data", tmp.resolve("nowhere").toString(), "--device", "cpu");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--data " + tmp.resolve("nowhere") + " does not exist"), r.err());
    r = run("bench", "--mode", "train", "--chunks", "2");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("option '--chunks' does not apply to --mode train (it takes --preset"), r.err());
    r = run("score", "--model", tmp.toString());
    assertEquals(2, r.code());
    assertTrue(r.err().contains("(--tokens=FILE | --text=TEXT)"), r.err());
    r = run("generate", "--model", tmp.toString(), "--prompt", "x", "--top-p", "1.5");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("Invalid value for option '--top-p': 1.5 is out of range (expected a number in (0, 1])"), r.err());
  }

  @Test
  void optionsAreTypedSizesTakeUnitsAndDefaultsAreTheLibrarys() {
    TrainCommand t = parseTrain("train", "--data", "corpus", "--mem-host", "12g", "--mem-device", "70G", "--max-bytes", "512m",
        "--steps", "1_000", "--schedule", "CONSTANT", "--save-dtype", "BF16", "--shuffle", "yes", "--recompute",
        "--device", "CUDA");
    assertEquals(12L << 30, t.runtime.memHost);
    assertEquals(70L << 30, t.runtime.memDevice);
    assertNull(t.runtime.memPinned);
    assertEquals(512L << 20, t.opt.maxBytes);
    assertEquals(1000, t.opt.steps);
    assertEquals(Schedule.CONSTANT, t.opt.schedule);
    assertEquals(Models.FloatType.BF16, t.output.saveDtype);
    assertTrue(t.opt.shuffle && t.opt.recompute && !t.ckpt.sync);
    assertEquals("cuda:0", t.runtime.device);
    assertEquals(MemoryManager.UNLIMITED, MemoryManager.parseBytes("unlimited"));

    // with no optimizer flags, the run uses the library's defaults
    ModelConfig tiny = ModelConfig.preset("gpt2-tiny");
    assertEquals(TrainConfig.defaults(1000, 8, 256), parseTrain("train", "--data", "x").trainConfig(tiny));
    TrainConfig tc = parseTrain("train", "--data", "x", "--steps", "50", "--lr", "1e-3").trainConfig(tiny.withMaxSeqLen(64));
    assertEquals(64, tc.seq(), "--seq defaults to the context when it is shorter than 256");
    assertEquals(1e-3f / 10, tc.minLr(), "--min-lr defaults to lr/10");
    assertEquals(5, tc.warmup(), "--warmup defaults to 10% of the steps");
  }

  @Test
  void argsFilesHoldLongConfigurations() throws IOException {
    Path file = tmp.resolve("run.args");
    Files.writeString(file, """
        # a training configuration
        --data corpus/ --preset llama-tiny
        --steps 20
        --batch 4
        --lr 1e-3
        --out 'runs/with space'
        """);
    TrainCommand t = parseTrain("train", "@" + file, "--seed", "7");
    assertEquals(Path.of("corpus/"), t.data);
    assertEquals("llama-tiny", t.model.preset);
    assertEquals(20, t.opt.steps);
    assertEquals(4, t.opt.batch);
    assertEquals(1e-3f, t.opt.lr);
    assertEquals(7, t.opt.seed);
    assertEquals(Path.of("runs/with space"), t.output.out);
    // a bad flag inside the file is reported like one on the command line
    Files.writeString(file, "--data x\n--stepz 3\n");
    Out r = run("train", "@" + file);
    assertEquals(2, r.code());
    assertTrue(r.err().contains("'--stepz'") && r.err().contains("Did you mean: --steps?"), r.err());
  }

  @Test
  void completionPrintsABashScriptForEveryCommandAndOption() {
    Out r = run("completion");
    assertEquals(0, r.code(), r.err());
    String script = r.out();
    assertTrue(script.startsWith("#!/usr/bin/env bash"), script.substring(0, 80));
    assertTrue(script.contains("complete -F _complete_athanor"), "registers a completion function");
    for (String w : List.of("train", "generate", "score", "bench", "demo", "info", "--checkpoint-every", "--mem-host",
        "--prompt-len", "gpt2-tiny", "overlap", "cosine")) {
      assertTrue(script.contains(w), w + " missing from the completion script");
    }
  }
}

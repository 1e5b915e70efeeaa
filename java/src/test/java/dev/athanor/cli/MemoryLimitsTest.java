package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.SystemMemory;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.testing.ChildClassPath;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Issue 14, case 1 and the budget items of case 7: models larger than memory are refused before anything is
 * allocated, with one message saying what is needed, what is there and what to do; budget properties and flags are
 * checked before any work.
 */
class MemoryLimitsTest {
  private static final MemoryManager MM = MemoryManager.global();
  private static final Duration HANG = Duration.ofSeconds(60);

  @TempDir Path tmp;

  private Path file(String name, String text) throws IOException {
    Path p = tmp.resolve(name);
    Files.writeString(p, text, StandardCharsets.UTF_8);
    return p;
  }

  private Path gpt2Config(String name, int hidden, int layers, int heads) throws IOException {
    return file(name, "{\"model_type\": \"gpt2\", \"vocab_size\": 50257, \"n_positions\": 1024, \"n_embd\": " + hidden
        + ", \"n_layer\": " + layers + ", \"n_head\": " + heads + "}");
  }

  private static CliTest.Out run(String... args) {
    return assertTimeoutPreemptively(HANG, () -> CliTest.run(args));
  }

  /** The one line of a refusal: no stack trace, no exception class names. */
  private static String oneLine(CliTest.Out r) {
    String err = r.err().strip();
    assertFalse(err.contains("\n"), "one line:\n" + err);
    assertFalse(err.contains("Exception") || err.contains("\tat "), err);
    return err;
  }

  @Test
  void modelLargerThanMemoryIsRefusedBeforeAllocating() throws IOException {
    Path data = file("data.txt", "public static void main(String[] args) {}\n");
    Path tenB = gpt2Config("gpt2-10b.json", 8192, 12, 64);
    Path million = gpt2Config("million-layers.json", 768, 1_000_000, 12);
    // The default HOST budget (a share of this machine's memory). The 10B model needs about 160 GiB to train; on a
    // machine with that much it would start. With its gradients and AdamW state on DISK it needs about 60 GiB of host
    // memory: where the budget holds that (a large machine), the refusal also suggests --offload auto, and what it
    // says the offloaded run needs must then fit.
    Assumptions.assumeTrue(SystemMemory.hostAvailableBytes() < (150L << 30), "this machine could train a 10B model");
    for (Path config : List.of(tenB, million)) {
      String m = refusedBeforeAllocating(config, data);
      if (!m.contains(", or --offload auto (")) {
        assertTrue(m.endsWith("use a smaller model."), m);
      } else {
        offloadAdviceFitsTheBudget(m);
      }
    }
    // An explicit budget the offloaded plan cannot fit either (8 GiB < 60 GiB): the same refusal on any machine.
    assertTrue(refusedBeforeAllocating(tenB, data, "--mem-host", "8g").endsWith("use a smaller model."));
  }

  /** Runs {@code train} on {@code config}: it must be refused in one line before allocating; returns the line. */
  private String refusedBeforeAllocating(Path config, Path data, String... extra) {
    long allocations = MM.allocationCount(), live = MM.liveBytes(Tier.HOST);
    Path out = tmp.resolve("out-" + config.getFileName());
    List<String> args = new ArrayList<>(List.of("train", "--config", config.toString(), "--data", data.toString(),
        "--device", "cpu", "--out", out.toString()));
    args.addAll(List.of(extra));
    CliTest.Out r = run(args.toArray(String[]::new));
    assertEquals(1, r.code(), r.err());
    String m = oneLine(r);
    assertTrue(m.startsWith("athanor train: not enough memory to train this model: it needs "), m);
    for (String part : List.of("of host memory (weights ", ", gradients ", ", AdamW state ", ", activations ", ", workspace ")) {
      assertTrue(m.contains(part), part + " in: " + m);
    }
    assertTrue(m.contains("but the HOST budget is ") || m.contains("but the machine has "), m);
    assertTrue(m.contains("The weights, gradients and AdamW state alone need "), m);
    assertEquals(allocations, MM.allocationCount(), "nothing was allocated");
    assertEquals(live, MM.liveBytes(Tier.HOST));
    assertFalse(Files.exists(out), "no output directory");
    assertEquals("", r.out(), "nothing printed before the refusal");
    return m;
  }

  private static final Pattern SIZE = Pattern.compile("([0-9.]+) (B|KiB|MiB|GiB|TiB|PiB)");

  /**
   * {@code m} ends with "use a smaller model, or --offload auto (... then go to DISK: X of host memory and Y on DISK)."
   * and X, what the offloaded run needs, fits the HOST budget or machine size the refusal names.
   */
  private static void offloadAdviceFitsTheBudget(String m) {
    var advice = Pattern.compile("use a smaller model, or --offload auto \\(.+ then go to DISK: ([0-9.]+ [A-Za-z]+) of "
        + "host memory and \\S+ \\S+ on DISK\\)\\.$").matcher(m);
    assertTrue(advice.find(), m);
    var limit = Pattern.compile("but the (?:HOST budget is|machine has) ([0-9.]+ [A-Za-z]+)").matcher(m);
    assertTrue(limit.find(), m);
    assertTrue(bytes(advice.group(1)) <= bytes(limit.group(1)), "the offloaded run fits: " + m);
  }

  /** "60.1 GiB" as bytes (as printed: rounded to 0.1 of the unit). */
  private static double bytes(String size) {
    var s = SIZE.matcher(size);
    assertTrue(s.matches(), size);
    int unit = List.of("B", "KiB", "MiB", "GiB", "TiB", "PiB").indexOf(s.group(2));
    return Double.parseDouble(s.group(1)) * Math.pow(1024, unit);
  }

  @Test
  void configSizesDoNotOverflowOnTheCommandLine() throws IOException {
    Path data = file("data.txt", "int x = 1;\n");
    Path wide = gpt2Config("wide.json", 1610612736, 12, 12);
    CliTest.Out r = run("train", "--config", wide.toString(), "--data", data.toString(), "--device", "cpu");
    assertEquals(1, r.code(), r.err());
    assertEquals("athanor train: " + wide + ": n_embd 1610612736 is too large: the MLP's inner width 4 x n_embd = "
        + "6442450944 exceeds the largest width, 2147483647", oneLine(r));
    CliTest.Out b = run("bench", "--preset", "gpt2-tiny", "--batch", "65536", "--seq", "65536", "--device", "cpu");
    assertEquals(2, b.code(), b.err());
    assertTrue(oneLine(b).contains("batch 65536 x seq 65536 = 4294967296 tokens per micro-batch exceeds 2147483647"), b.err());
  }

  @Test
  void tooManyTokensAtOnceAreRefusedWithWhatToChange() throws IOException {
    Path data = file("data.txt", "int x = 1;\n");
    CliTest.Out r = run("train", "--preset", "gpt2-tiny", "--data", data.toString(), "--device", "cpu", "--batch", "64",
        "--seq", "256", "--mem-host", "1g", "--out", tmp.resolve("out").toString());
    assertEquals(1, r.code(), r.err());
    String m = oneLine(r);
    assertTrue(m.contains("but the HOST budget is 1.0 GiB"), m);
    assertTrue(m.contains("Use a smaller --batch or --seq"), m);
    assertTrue(m.contains("or --recompute (activations then need "), m);
    assertTrue(m.contains("or raise the HOST budget with --mem-host"), m);
    assertFalse(m.contains("smaller model"), m);
  }

  @Test
  void generateScoreAndBenchAreRefusedBeforeLoading() throws IOException {
    ModelConfig c = ModelConfig.gpt2(50257, 64, 2, 32, 2);
    Path model = tmp.resolve("model");
    try (Transformer m = Transformer.create(c, Device.CPU)) {
      HfModelDir.save(model, c, m.weights(), DType.F32);
    }
    Path tokens = file("tokens.txt", "1 2 3 4 5 6");
    Path cfg = file("config.json", HfConfig.toJson(c));
    String[][] commands = {
        {"generate", "--model", model.toString(), "--prompt", "hello", "--max-tokens", "8"},
        {"score", "--model", model.toString(), "--tokens", tokens.toString()},
        {"bench", "--config", cfg.toString(), "--mode", "train", "--batch", "1", "--seq", "8", "--steps", "1"},
        {"bench", "--config", cfg.toString(), "--mode", "decode", "--batch", "1", "--steps", "1"}};
    String[] jobs = {"generate with this model", "score with this model", "train this model", "decode with this model"};
    for (int i = 0; i < commands.length; i++) {
      List<String> args = new ArrayList<>(List.of(commands[i]));
      args.addAll(List.of("--device", "cpu", "--mem-host", "1m"));
      long allocations = MM.allocationCount();
      CliTest.Out r = run(args.toArray(String[]::new));
      assertEquals(1, r.code(), r.err());
      String m = oneLine(r);
      assertTrue(m.contains("not enough memory to " + jobs[i] + ": it needs "), m);
      assertTrue(m.contains("weights ") && m.contains("the HOST budget is 1.0 MiB"), m);
      assertEquals(allocations, MM.allocationCount(), "nothing was allocated: " + m);
    }
    CliTest.Out r = run("bench", "--mode", "overlap", "--chunks", "4", "--chunk-mib", "1", "--device", "cpu", "--mem-host", "1m");
    assertEquals(1, r.code(), r.err());
    assertTrue(oneLine(r).contains("not enough memory to run this benchmark: it needs 6.0 MiB of host memory (buffers "
        + "6.0 MiB) but the HOST budget is 1.0 MiB. Use fewer --chunks or a smaller --chunk-mib or --gemm"), r.err());
  }

  @ParameterizedTest
  @ValueSource(strings = {"demo", "train", "generate", "score", "bench"})
  void everyCommandThatAllocatesTakesCheckedBudgetFlags(String command) {
    for (String flag : List.of("--mem-device", "--mem-pinned", "--mem-host", "--mem-disk")) {
      CliTest.Out r = run(command, flag, "12q");
      assertEquals(2, r.code(), r.err());
      assertTrue(r.err().contains("Invalid value for option '" + flag + "': '12q' is not a size"), r.err());
    }
  }

  @Test
  void defaultHostBudgetFollowsTheMachine() {
    long available = SystemMemory.hostAvailableBytes();
    Assumptions.assumeTrue(available > 0, "no /proc/meminfo");
    Assumptions.assumeTrue(System.getProperty("athanor.budget.host") == null, "the HOST budget is set explicitly");
    long budget = MemoryManager.global().budgetBytes(Tier.HOST);
    assertNotEquals(MemoryManager.UNLIMITED, budget);
    assertTrue(budget <= SystemMemory.hostTotalBytes() * MemoryManager.DEFAULT_HOST_PERCENT / 100, budget + " bytes");
    assertTrue(budget > 0);
  }

  // ------------------------------------------------------------------ budget properties, in a child JVM

  /** Runs {@code athanor info} in a child JVM with {@code property}; returns the exit code and the output. */
  private static CliTest.Out child(String property) throws IOException, InterruptedException {
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "--enable-native-access=ALL-UNNAMED", "-Xmx128m", "-XX:TieredStopAtLevel=1", property, "-cp",
        ChildClassPath.forMain(), Main.class.getName(), "train", "--data",
        "nowhere.txt");
    Process p = new ProcessBuilder(cmd).start();
    p.getOutputStream().close();
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly().waitFor();
      throw new AssertionError("the child JVM did not finish in 60 s");
    }
    return new CliTest.Out(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8),
        new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8));
  }

  @Test
  void badBudgetPropertyIsOneLine() throws Exception {
    CliTest.Out r = child("-Dathanor.budget.host=12x");
    assertEquals(2, r.code(), r.err());
    assertEquals("athanor train: -Dathanor.budget.host=12x is not a size: expected a byte count with an optional binary "
        + "unit (123, 64k, 512m, 8g, 1t) or unlimited", r.err().strip());
    assertEquals("", r.out());
  }

  @Test
  void misspelledBudgetPropertyIsAnError() throws Exception {
    CliTest.Out r = child("-Dathanor.budget.hots=8g");
    assertEquals(2, r.code(), r.err());
    assertEquals("athanor train: unknown memory budget property -Dathanor.budget.hots (did you mean "
        + "-Dathanor.budget.host?); the budget properties are athanor.budget.device, athanor.budget.host_pinned, "
        + "athanor.budget.host, athanor.budget.disk", r.err().strip());
  }
}

package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.hf.HfFormatException;
import dev.athanor.io.safetensors.SafetensorsException;
import dev.athanor.io.safetensors.SafetensorsSet;
import dev.athanor.nn.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, case 4: a FIFO as {@code model.safetensors}, {@code config.json}, a tokenizer file or {@code --data} blocked
 * forever (opening a FIFO waits for a writer), and {@code /dev/zero} as {@code config.json} was reported as "no
 * config.json". Files that must be regular files are now checked before they are opened, and the message says what the
 * path is. Every case runs under a time limit, so a hang fails the test instead of stalling the suite.
 */
class FifoInputsTest {
  private static final Duration LIMIT = Duration.ofSeconds(60);

  @TempDir static Path tmp;
  static Path good;
  static final ModelConfig CFG = ModelConfig.gpt2(50257, 16, 1, 16, 1);

  @BeforeAll
  static void saveAModel() {
    good = TestModels.save(tmp.resolve("good"), CFG, 1);
  }

  /** Makes a FIFO at {@code p} with mkfifo(1). */
  static Path mkfifo(Path p) throws IOException, InterruptedException {
    Process pr = new ProcessBuilder("mkfifo", p.toString()).inheritIO().start();
    assumeTrue(pr.waitFor(30, TimeUnit.SECONDS) && pr.exitValue() == 0, "mkfifo is not available");
    return p;
  }

  /** A copy of the good model directory whose {@code name} is replaced by a FIFO. */
  private static Path withFifo(String dirName, String name) throws IOException, InterruptedException {
    Path d = Files.createDirectory(tmp.resolve(dirName));
    try (var s = Files.list(good)) {
      for (Path f : s.toList()) {
        if (!f.getFileName().toString().equals(name)) Files.copy(f, d.resolve(f.getFileName()));
      }
    }
    mkfifo(d.resolve(name));
    return d;
  }

  private static CliTest.Out run(String... args) {
    return assertTimeoutPreemptively(LIMIT, () -> CliTest.run(args), "hangs: " + String.join(" ", args));
  }

  /** Runs {@code args}: exit code {@code code}, and stderr holds {@code message}. */
  private static void fails(int code, String message, String... args) {
    CliTest.Out r = run(args);
    assertEquals(code, r.code(), r.err());
    assertTrue(r.err().contains(message), r.err());
  }

  @Test
  void case4AFifoAsTheWeightsIsRefusedNotOpened() throws Exception {
    Path d = withFifo("fifo-weights", "model.safetensors");
    CliTest.Out r = run("score", "--model", d.toString(), "--text", "the furnace", "--device", "cpu");
    assertEquals(1, r.code(), r.err());
    assertEquals("athanor score: " + d.resolve("model.safetensors") + " is a FIFO (named pipe), not a regular file\n", r.err());
    r = run("generate", "--model", d.toString(), "--prompt", "the", "--device", "cpu");
    assertEquals(1, r.code(), r.err());
    assertTrue(r.err().contains("model.safetensors is a FIFO (named pipe), not a regular file"), r.err());
  }

  @Test
  void case4AFifoOrADeviceAsConfigJsonIsReportedAsWhatItIs() throws Exception {
    Path d = withFifo("fifo-config", "config.json");
    fails(1, "athanor generate: " + d.resolve("config.json") + " is a FIFO (named pipe), not a regular file (expected the "
        + "model's JSON configuration)", "generate", "--model", d.toString(), "--prompt", "the", "--device", "cpu");
    Path z = Files.createDirectory(tmp.resolve("dev-zero-config"));
    Files.copy(good.resolve("model.safetensors"), z.resolve("model.safetensors"));
    Files.createSymbolicLink(z.resolve("config.json"), Path.of("/dev/zero"));
    fails(1, "athanor score: " + z.resolve("config.json") + " is a character device, not a regular file", "score", "--model",
        z.toString(), "--text", "the furnace", "--device", "cpu");
    Path fifo = mkfifo(tmp.resolve("config-fifo.json"));
    fails(1, "athanor train: " + fifo + " is a FIFO (named pipe), not a regular file", "train", "--config", fifo.toString(),
        "--data", tmp.toString(), "--device", "cpu", "--out", tmp.resolve("o").toString());
    HfFormatException e = assertThrows(HfFormatException.class, () -> HfConfig.read(Path.of("/dev/zero")));
    assertEquals("/dev/zero is a character device, not a regular file (expected a JSON model configuration)", e.getMessage());
  }

  @Test
  void case4AFifoAsATokenizerFileIsRefused() throws Exception {
    Path d = withFifo("fifo-tokenizer", "tokenizer.json");
    fails(1, "athanor generate: " + d.resolve("tokenizer.json") + " is a FIFO (named pipe), not a regular file", "generate",
        "--model", d.toString(), "--prompt", "the", "--device", "cpu");
    Path c = withFifo("fifo-tokenizer-config", "tokenizer_config.json");
    fails(1, "athanor score: " + c.resolve("tokenizer_config.json") + " is a FIFO (named pipe), not a regular file", "score",
        "--model", c.toString(), "--text", "the", "--device", "cpu");
  }

  @Test
  void case4AFifoAsDataOrTokensIsRefused() throws Exception {
    Path fifo = mkfifo(tmp.resolve("data-fifo"));
    Path config = tmp.resolve("data-config.json");
    Files.writeString(config, HfConfig.toJson(CFG));
    CliTest.Out r = run("train", "--config", config.toString(), "--data", fifo.toString(), "--device", "cpu", "--out",
        tmp.resolve("out").toString());
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor train: --data " + fifo + " is a FIFO (named pipe), not a regular file"), r.err());
    assertEquals("", r.out());
    Path bin = mkfifo(tmp.resolve("tokens.bin"));
    r = run("score", "--model", good.toString(), "--tokens", bin.toString(), "--device", "cpu");
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("token file " + bin + " is a FIFO (named pipe), not a regular file"), r.err());
    r = run("train", "--config", config.toString(), "--data", bin.toString(), "--device", "cpu", "--out",
        tmp.resolve("out").toString());
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("--data " + bin + " is a FIFO (named pipe), not a regular file"), r.err());
  }

  @Test
  void case4AFifoAsAShardOrAnIndexIsRefused() throws Exception {
    Path d = Files.createDirectory(tmp.resolve("sharded"));
    Files.writeString(d.resolve(SafetensorsSet.INDEX), "{\"weight_map\": {\"a\": \"model-00001-of-00001.safetensors\"}}");
    mkfifo(d.resolve("model-00001-of-00001.safetensors"));
    SafetensorsException e = assertTimeoutPreemptively(LIMIT, () -> assertThrows(SafetensorsException.class,
        () -> SafetensorsSet.open(d)));
    assertTrue(e.getMessage().endsWith("in " + d + " is a FIFO (named pipe), not a regular file"), e.getMessage());
    Path i = Files.createDirectory(tmp.resolve("index-fifo"));
    mkfifo(i.resolve(SafetensorsSet.INDEX));
    e = assertTimeoutPreemptively(LIMIT, () -> assertThrows(SafetensorsException.class, () -> SafetensorsSet.open(i)));
    assertEquals(i.resolve(SafetensorsSet.INDEX) + " is a FIFO (named pipe), not a regular file", e.getMessage());
  }
}

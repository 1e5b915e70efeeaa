package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code generate} and {@code score} with the weights on the DISK tier ({@code --offload PLAN.json} placing
 * {@code master} there): the same tokens and the same log-probabilities, bit for bit, as with the weights in memory,
 * the files removed afterwards; {@code --offload auto} keeps a model that fits in memory; a model that does not fit
 * with {@code --offload off} is refused with advice naming {@code --offload auto}.
 */
class InferenceOffloadTest {
  @TempDir static Path tmp;
  static Path modelDir, plan;
  static final ModelConfig CFG = ModelConfig.gpt2(50257, 48, 3, 32, 1);

  @BeforeAll
  static void saveAModelAndAPlan() throws Exception {
    modelDir = tmp.resolve("model");
    CommandsTest.savePeakedModel(modelDir, CFG, 5);
    CommandsTest.Out p = CommandsTest.run("plan", "--model", modelDir.toString(), "--batch", "1", "--seq", "16", "--device", "cpu",
        "--json", "-");
    assertEquals(0, p.code(), p.err());
    // every role on DISK; generate and score use the weights' placement
    plan = tmp.resolve("plan.json");
    Files.writeString(plan, p.out().replace("\"HOST\"", "\"DISK\"").replace("\"totals\": {\n    \"DISK\"", "\"totals\": {\n    \"HOST\""));
  }

  @Test
  void generateWithWeightsOnDiskGivesTheSameTokens() throws Exception {
    Path off = tmp.resolve("gen-offload");
    List<String> args = List.of("generate", "--model", modelDir.toString(), "--prompt", "The furnace", "--temperature", "0.9",
        "--seed", "11", "--max-tokens", "10", "--no-stop", "--device", "cpu");
    CommandsTest.Out mem = CommandsTest.run(args.toArray(String[]::new));
    assertEquals(0, mem.code(), mem.err());
    assertFalse(mem.err().contains("on DISK"), mem.err());
    CommandsTest.Out disk = CommandsTest.run(concat(args, "--offload", plan.toString(), "--offload-dir", off.toString()));
    assertEquals(0, disk.code(), disk.err());
    assertEquals(mem.out(), disk.out(), "the same text, token for token");
    assertTrue(disk.err().contains("athanor generate: weights on DISK in " + off + ": read "), disk.err());
    try (var left = Files.list(off)) {
      assertEquals(0, left.count(), "the weights' files are removed");
    }
  }

  @Test
  void scoreWithWeightsOnDiskGivesTheSameLogProbabilities() throws Exception {
    Path ids = tmp.resolve("ids.txt");
    Files.writeString(ids, "464 2068 7586 21831 18045 625 262 11 290 13\n");
    List<String> args = List.of("score", "--model", modelDir.toString(), "--tokens", ids.toString(), "--device", "cpu");
    CommandsTest.Out mem = CommandsTest.run(args.toArray(String[]::new));
    assertEquals(0, mem.code(), mem.err());
    CommandsTest.Out disk = CommandsTest.run(concat(args, "--offload", plan.toString(), "--offload-dir", tmp.resolve("score-off").toString()));
    assertEquals(0, disk.code(), disk.err());
    assertEquals(mem.out(), disk.out(), "the same JSON, log-probabilities to the bit");
    assertTrue(disk.err().contains("athanor score: weights on DISK"), disk.err());
  }

  @Test
  void autoKeepsWhatFitsAndOffIsRefusedWithAdvice() {
    List<String> args = List.of("score", "--model", modelDir.toString(), "--text", "a furnace that holds its heat", "--device", "cpu");
    CommandsTest.Out auto = CommandsTest.run(concat(args, "--offload", "auto"));
    assertEquals(0, auto.code(), auto.err());
    assertFalse(auto.err().contains("on DISK"), "it fits: the weights stay in memory; " + auto.err());
    MemoryManager mm = MemoryManager.global();
    long before = mm.budgetBytes(Tier.HOST);
    try {
      CommandsTest.Out r = CommandsTest.run(concat(args, "--mem-host", Long.toString(mm.liveBytes(Tier.HOST) + (1 << 20))));
      assertEquals(1, r.code(), r.err());
      assertTrue(r.err().contains("not enough memory to score with this model") && r.err().contains("or --offload auto (the "
          + "weights then stay on DISK and are read unit by unit: "), r.err());
    } finally {
      mm.setBudget(Tier.HOST, before);
    }
  }

  private static String[] concat(List<String> a, String... more) {
    List<String> all = new java.util.ArrayList<>(a);
    all.addAll(List.of(more));
    return all.toArray(String[]::new);
  }
}

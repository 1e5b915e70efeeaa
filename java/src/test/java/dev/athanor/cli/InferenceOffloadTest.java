package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.KvCache;
import dev.athanor.nn.ModelConfig;
import dev.athanor.offload.KvCacheOnDisk;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
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

  /**
   * {@code generate --offload auto} under a HOST budget that the KV cache in memory exceeds but its host windows do
   * not: the cache goes to DISK (its files are smaller than the weights'), the command says so, the text is the
   * in-memory run's, the HOST peak stays within the budget and the files are removed; a budget below even everything on
   * DISK is refused naming the HOST budget and the bytes.
   */
  @Test
  void generateAutoPutsTheKvCacheOnDiskWhenItDoesNotFit() throws Exception {
    ModelConfig cfg = ModelConfig.gpt2(50257, 256, 6, 32, 1);
    Path dir = tmp.resolve("long-model"), off = tmp.resolve("kv-offload");
    CommandsTest.savePeakedModel(dir, cfg, 9);
    String prompt = "The furnace";
    int maxTokens = 200;
    List<String> args = List.of("generate", "--model", dir.toString(), "--prompt", prompt, "--temperature", "0.9",
        "--seed", "4", "--max-tokens", Integer.toString(maxTokens), "--no-stop", "--device", "cpu");
    CommandsTest.Out mem = CommandsTest.run(args.toArray(String[]::new));
    assertEquals(0, mem.code(), mem.err());
    int promptLen;
    try (dev.athanor.io.tokenizer.Tokenizer tok = Models.tokenizer(dir, cfg)) {
      promptLen = GenerateCommand.promptIds(cfg, tok, prompt).length;
    }
    int capacity = promptLen + maxTokens;
    Footprint inMemory = Footprint.decoding(cfg, Device.CPU, DType.F32, 1, promptLen, capacity).withLoading();
    KvCache.Layout layout = Footprint.kvCacheLayout(cfg, DType.F32, 1, capacity);
    Footprint kvOnDisk = inMemory.withKvCacheOnDisk(KvCacheOnDisk.hostBytes(layout), KvCacheOnDisk.diskBytes(layout));
    MemoryManager mm = MemoryManager.global();
    long before = mm.budgetBytes(Tier.HOST);
    try {
      long budget = mm.liveBytes(Tier.HOST) + kvOnDisk.bytes(Tier.HOST) + (16 << 10);
      assertTrue(mm.liveBytes(Tier.HOST) + inMemory.bytes(Tier.HOST) > budget, "the KV cache in memory does not fit");
      mm.resetPeak();
      CommandsTest.Out disk = CommandsTest.run(concat(args, "--offload", "auto", "--mem-host", Long.toString(budget),
          "--offload-dir", off.toString()));
      assertEquals(0, disk.code(), disk.err());
      assertTrue(mm.peakBytes(Tier.HOST) <= budget, "HOST peak " + mm.peakBytes(Tier.HOST) + " within " + budget);
      assertEquals(mem.out(), disk.out(), "the same text, token for token");
      assertTrue(disk.err().contains("athanor generate: placed weights in memory (") && disk.err().contains(
          "KV cache on DISK (" + Footprint.size(KvCacheOnDisk.diskBytes(layout)) + " in files, "), disk.err());
      assertTrue(disk.err().contains("athanor generate: KV cache on DISK in " + off + ": read "), disk.err());
      try (var left = Files.list(off)) {
        assertEquals(0, left.count(), "the cache's files are removed");
      }
      CommandsTest.Out none = CommandsTest.run(concat(args, "--offload", "auto", "--mem-host",
          Long.toString(mm.liveBytes(Tier.HOST) + (64 << 10)), "--offload-dir", off.toString()));
      assertEquals(1, none.code(), none.err());
      assertTrue(none.err().contains("not enough memory to generate with this model: it needs ")
          && none.err().contains("KV cache ") && none.err().contains("the HOST budget"), none.err());
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

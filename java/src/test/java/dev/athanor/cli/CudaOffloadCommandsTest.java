package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Cuda;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 9 on CUDA: {@code plan --device cuda} with --mem-device and --mem-host prints the optimizer on the host (made
 * on paper, without a GPU), names the short tier when nothing fits, and refuses --json; {@code train --device cuda
 * --offload auto} parses and, without a GPU, fails as any CUDA command does; {@code --dp N} with {@code --offload} on
 * CUDA is a usage error naming what is not built, before any work (with or without a GPU).
 */
class CudaOffloadCommandsTest {
  private static final MemoryManager MM = MemoryManager.global();
  private final Map<Tier, Long> budgets = new EnumMap<>(Tier.class);

  @BeforeEach
  void saveBudgets() {
    for (Tier t : Tier.values()) budgets.put(t, MM.budgetBytes(t));
  }

  @AfterEach
  void restoreBudgets() {
    budgets.forEach(MM::setBudget);  // --mem-* set the process's budgets
  }

  static CliTest.Out plan(String device, String host, String... extra) {
    String[] base = {"plan", "--device", "cuda", "--preset", "gpt2", "--batch", "4", "--seq", "1024", "--mem-device", device,
        "--mem-host", host};
    String[] all = java.util.Arrays.copyOf(base, base.length + extra.length);
    System.arraycopy(extra, 0, all, base.length, extra.length);
    return CliTest.run(all);
  }

  @Test
  void planOnCudaPutsTheOptimizerOnTheHostAsTheBudgetsNeed() {
    CliTest.Out p = plan("2g", "8g");
    assertEquals(0, p.code(), p.err());
    assertTrue(p.out().contains("on cuda:0") && p.out().contains("the optimizer on the host (CPU AdamW, unit by unit)")
        && p.out().contains("AdamW's moments in pinned host memory") && p.out().contains("HOST_PINNED: "), p.out());
    // host memory too small for both moments pinned: the first moment goes to DISK, then both
    p = plan("2g", "1600m");
    assertEquals(0, p.code(), p.err());
    assertTrue(p.out().contains("AdamW's first moment (adam_m) on DISK") && p.out().contains("DISK: "), p.out());
    p = plan("2g", "1200m");
    assertEquals(0, p.code(), p.err());
    assertTrue(p.out().contains("AdamW's moments (adam_m, adam_v) on DISK"), p.out());
  }

  @Test
  void planOnCudaNamesTheShortTier() {
    CliTest.Out p = plan("1g", "8g");
    assertEquals(1, p.code(), p.out());
    assertTrue(p.err().contains("the DEVICE tier is") && p.err().contains("--mem-device"), p.err());
    p = plan("2g", "8g", "--json", "plan.json");
    assertEquals(2, p.code(), p.out());
    assertTrue(p.err().contains("--json writes plans of the CPU's tiers"), p.err());
  }

  @Test
  void trainOnCudaWithOffloadParsesAndWithoutAGpuFailsAsAnyCudaCommand(@TempDir Path tmp) throws Exception {
    assumeFalse(Cuda.isAvailable(), "a GPU is present: the GPU check trains on it (HostOffloadTrainingTest)");
    Path text = tmp.resolve("t.txt");
    Files.writeString(text, "hello world ".repeat(500));
    String[] common = {"train", "--device", "cuda", "--preset", "gpt2-tiny", "--steps", "2", "--data", text.toString(),
        "--out", tmp.resolve("out").toString()};
    CliTest.Out plain = CliTest.run(common);
    String[] offload = java.util.Arrays.copyOf(common, common.length + 6);
    System.arraycopy(new String[] {"--offload", "auto", "--mem-device", "2G", "--mem-host", "8G"}, 0, offload, common.length, 6);
    CliTest.Out off = CliTest.run(offload);
    assertEquals(plain.code(), off.code(), off.err());
    assertEquals(plain.err(), off.err());
    assertTrue(off.err().contains("CUDA is unavailable"), off.err());
  }

  /**
   * On CUDA, {@code --dp N --zero 1} or more with {@code --offload} is refused before any work (a ZeRO shard of the
   * optimizer on the host is not built); {@code --dp N} with {@code --offload} (ZeRO 0) is not: without a GPU it gets as
   * far as a plain run does (CUDA is unavailable), nothing written.
   */
  @Test
  void dataParallelWithOffloadOnCudaIsRefusedBeforeAnyWorkOnlyWithZero(@TempDir Path tmp) throws Exception {
    Path text = tmp.resolve("t.txt");
    Files.writeString(text, "hello world ".repeat(500));
    Path out = tmp.resolve("out");
    for (String[] extra : new String[][] {{"--device", "cuda", "--dp", "4", "--zero", "1", "--offload", "auto"},
        {"--device", "cuda:0", "--dp", "2", "--zero", "2", "--offload", "auto", "--mem-host", "8G"}}) {
      String[] common = {"train", "--preset", "gpt2-tiny", "--steps", "2", "--data", text.toString(), "--out", out.toString()};
      String[] args = java.util.Arrays.copyOf(common, common.length + extra.length);
      System.arraycopy(extra, 0, args, common.length, extra.length);
      CliTest.Out r = CliTest.run(args);
      String what = String.join(" ", extra) + ": " + r.err();
      assertEquals(2, r.code(), what);
      assertTrue(r.err().contains("with --offload auto on " + extra[1]) && r.err().contains("a ZeRO shard of the optimizer on "
          + "the host is not built yet"), what);
      assertTrue(!r.err().contains("CUDA is unavailable") && !r.err().contains("HostOffloadPlanner")
          && !r.err().contains("mpirun"), "refused before the device, MPI or a planner is asked: " + what);
      assertTrue(!Files.exists(out), "nothing written: " + what);
    }
    assumeFalse(dev.athanor.runtime.Cuda.isAvailable(), "a GPU is here: the ZeRO 0 run would start");
    String[] zero0 = {"train", "--preset", "gpt2-tiny", "--steps", "2", "--data", text.toString(), "--out", out.toString(),
        "--device", "cuda", "--dp", "2", "--offload", "auto"};
    CliTest.Out r = CliTest.run(zero0);
    assertTrue(!r.err().contains("not built"), r.err());
    assertTrue(r.err().contains("CUDA is unavailable"), r.err());
    assertTrue(!Files.exists(out), "nothing written");
  }
}

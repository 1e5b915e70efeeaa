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

  /**
   * {@code plan --device cuda --dp 2 --zero 1} without a GPU: the optimizer on the host with each rank's shard of the
   * masters and moments: their pinned figures half of ZeRO 0's, the streamed gradient's copy whole (it is reduced on the
   * host), so about 10/16 of ZeRO 0's pinned bytes; under a host budget where ZeRO 0 needs a moment on DISK, ZeRO 1
   * keeps both pinned.
   */
  @Test
  void planOnCudaWithZeroOneCountsARanksShard() {
    CliTest.Out z0 = plan("2g", "8g", "--dp", "2");
    CliTest.Out z1 = plan("2g", "8g", "--dp", "2", "--zero", "1");
    assertEquals(0, z1.code(), z1.err());
    assertTrue(z1.out().contains("ZeRO 1 over 2 data-parallel ranks") && z1.out().contains("(figures per rank)")
        && z1.out().contains("AdamW's moments in pinned host memory"), z1.out());
    assertTrue(!z0.out().contains("ZeRO 1 over"), z0.out());
    assertTrue(z0.out().contains("HOST_PINNED: 2.0 GiB (weights 474.7 MiB") && z1.out().contains("(weights 237.4 MiB, "
        + "gradients 474.7 MiB"), z0.out() + "\n" + z1.out());
    assertTrue(pinned(z1.out()) < 0.7 * pinned(z0.out()) && pinned(z1.out()) > 0.55 * pinned(z0.out()),
        z0.out() + "\n" + z1.out());
    CliTest.Out tight0 = plan("2g", "1700m", "--dp", "2");
    CliTest.Out tight1 = plan("2g", "1700m", "--dp", "2", "--zero", "1");
    assertEquals(0, tight1.code(), tight1.err());
    assertTrue(tight0.out().contains("DISK: "), tight0.out());
    assertTrue(tight1.out().contains("AdamW's moments in pinned host memory") && !tight1.out().contains("DISK: "), tight1.out());
  }

  /** The HOST_PINNED figure of a printed host plan, in MiB. */
  private static double pinned(String out) {
    java.util.regex.Matcher m = java.util.regex.Pattern.compile("HOST_PINNED: ([0-9.]+) (KiB|MiB|GiB)").matcher(out);
    assertTrue(m.find(), out);
    double v = Double.parseDouble(m.group(1));
    return m.group(2).equals("GiB") ? v * 1024 : m.group(2).equals("KiB") ? v / 1024 : v;
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
   * On CUDA, {@code --dp N --zero 2} or 3 with {@code --offload} is refused before any work (a sharded gradient or
   * sharded weights with the optimizer on the host are not built); {@code --dp N} with {@code --offload} under ZeRO 0
   * and 1 is not: without a GPU it gets as far as a plain run does (CUDA is unavailable), nothing written.
   */
  @Test
  void dataParallelWithOffloadOnCudaIsRefusedBeforeAnyWorkOnlyWithZeroTwoAndThree(@TempDir Path tmp) throws Exception {
    Path text = tmp.resolve("t.txt");
    Files.writeString(text, "hello world ".repeat(500));
    Path out = tmp.resolve("out");
    for (String[] extra : new String[][] {{"--device", "cuda", "--dp", "4", "--zero", "3", "--offload", "auto"},
        {"--device", "cuda:0", "--dp", "2", "--zero", "2", "--offload", "auto", "--mem-host", "8G"}}) {
      String[] common = {"train", "--preset", "gpt2-tiny", "--steps", "2", "--data", text.toString(), "--out", out.toString()};
      String[] args = java.util.Arrays.copyOf(common, common.length + extra.length);
      System.arraycopy(extra, 0, args, common.length, extra.length);
      CliTest.Out r = CliTest.run(args);
      String what = String.join(" ", extra) + ": " + r.err();
      assertEquals(2, r.code(), what);
      assertTrue(r.err().contains("with --offload auto on " + extra[1]) && r.err().contains("with the optimizer on the host is "
          + "not built") && r.err().contains("Give --zero 0 or 1"), what);
      assertTrue(!r.err().contains("CUDA is unavailable") && !r.err().contains("HostOffloadPlanner")
          && !r.err().contains("mpirun"), "refused before the device, MPI or a planner is asked: " + what);
      assertTrue(!Files.exists(out), "nothing written: " + what);
    }
    assumeFalse(dev.athanor.runtime.Cuda.isAvailable(), "a GPU is here: the ZeRO 0 and 1 runs would start");
    for (String zero : new String[] {"0", "1"}) {
      String[] run = {"train", "--preset", "gpt2-tiny", "--steps", "2", "--data", text.toString(), "--out", out.toString(),
          "--device", "cuda", "--dp", "2", "--zero", zero, "--offload", "auto"};
      CliTest.Out r = CliTest.run(run);
      assertTrue(!r.err().contains("not built"), r.err());
      assertTrue(r.err().contains("CUDA is unavailable"), r.err());
      assertTrue(!Files.exists(out), "nothing written");
    }
  }
}

package dev.athanor.dist.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.cli.Main;
import dev.athanor.dist.plan.ParallelPlanner.Estimate;
import dev.athanor.dist.plan.ParallelPlanner.Hardware;
import dev.athanor.dist.plan.ParallelPlanner.Job;
import dev.athanor.dist.plan.ParallelPlanner.Layout;
import dev.athanor.dist.plan.ParallelPlanner.Result;
import dev.athanor.nn.ModelConfig;
import dev.athanor.runtime.Device;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The parallel planner on a table of cases: what it picks, that it never picks what does not fit, and why. */
class ParallelPlannerTest {
  static final Hardware HW = new Hardware(50e9, 5e9, 2e-5);
  static final ModelConfig GPT2 = ModelConfig.gpt2(50257, 1024, 12, 768, 12);  // GPT-2 124M
  static final ModelConfig LLAMA = ModelConfig.llama(32000, 2048, 16, 1024, 16, 4, 2816, 10000f, false);

  private static Job job(ModelConfig c, int world, int micro, long memory) {
    return new Job(c, Device.CPU, world, 4, 256, micro, memory, HW);
  }

  @Test
  void plentyOfMemoryPicksPureDataParallel() {
    Result r = ParallelPlanner.plan(job(GPT2, 4, 8, 64L << 30));
    assertNotNull(r.chosen());
    assertEquals(new Layout(4, 1, 1, 0, false), r.chosen().layout(), "dp splits the compute with the least communication");
    assertTrue(r.fitting().size() > 3, "runners-up are kept");
    for (int i = 1; i < r.fitting().size(); i++) {
      assertTrue(r.fitting().get(i - 1).stepSeconds() <= r.fitting().get(i).stepSeconds(), "fastest first");
    }
  }

  @Test
  void aBudgetThatDpCannotMeetPicksAShardingLayout() {
    Estimate dp = ParallelPlanner.estimate(job(GPT2, 4, 8, Long.MAX_VALUE), new Layout(4, 1, 1, 0, false));
    Estimate zero = ParallelPlanner.estimate(job(GPT2, 4, 8, Long.MAX_VALUE), new Layout(4, 1, 1, 1, false));
    assertTrue(zero.memoryBytes() < dp.memoryBytes(), "ZeRO 1 divides the moments");
    long budget = (dp.memoryBytes() + zero.memoryBytes()) / 2;
    Result r = ParallelPlanner.plan(job(GPT2, 4, 8, budget));
    assertNotNull(r.chosen());
    assertTrue(r.chosen().memoryBytes() <= budget, r.chosen().toString());
    assertTrue(r.chosen().layout().zero() > 0 || r.chosen().layout().tp() > 1 || r.chosen().layout().pp() > 1
        || r.chosen().layout().recompute(), r.chosen().layout().toString());
    assertTrue(r.excluded().stream().anyMatch(e -> e.layout().equals(new Layout(4, 1, 1, 0, false))
        && e.excluded().startsWith("needs ")), "plain dp is left out for its memory");
  }

  /**
   * On CUDA (BF16 compute) a rank keeps the BF16 compute weights beside the F32 masters (6 bytes per parameter instead of
   * 4), the same F32 gradients and moments, and BF16 activations (fewer bytes than the CPU's F32 ones).
   */
  @Test
  void onCudaTheWeightsAreMastersPlusBf16AndTheActivationsBf16() {
    Layout l = new Layout(4, 1, 1, 0, false);
    Estimate cpu = ParallelPlanner.estimate(new Job(GPT2, Device.CPU, 4, 4, 256, 8, Long.MAX_VALUE, HW), l);
    Estimate gpu = ParallelPlanner.estimate(new Job(GPT2, Device.cuda(0), 4, 4, 256, 8, Long.MAX_VALUE, HW), l);
    long w = cpu.memoryParts().get("weights");
    assertEquals(w / 4 * 6, gpu.memoryParts().get("weights"), "F32 masters + BF16 compute weights");
    assertEquals(cpu.memoryParts().get("gradients"), gpu.memoryParts().get("gradients"), "F32 gradients on both");
    assertEquals(cpu.memoryParts().get("AdamW state"), gpu.memoryParts().get("AdamW state"), "F32 moments on both");
    assertTrue(gpu.memoryParts().get("activations") < cpu.memoryParts().get("activations"), "BF16 activations");
  }

  @Test
  void zeroThreeRunsWithDpAloneAndShardsTheWeights() {
    Estimate two = ParallelPlanner.estimate(job(GPT2, 4, 8, Long.MAX_VALUE), new Layout(4, 1, 1, 2, false));
    Estimate three = ParallelPlanner.estimate(job(GPT2, 4, 8, Long.MAX_VALUE), new Layout(4, 1, 1, 3, false));
    assertNull(three.excluded(), three.toString());
    assertTrue(three.memoryBytes() < two.memoryBytes(), "ZeRO 3 divides the weights and the micro-batch gradient too");
    assertTrue(three.commBytes() > two.commBytes(), "and gathers them in every micro-batch");
    assertEquals("ZeRO 3 needs dp > 1", ParallelPlanner.unsupported(new Layout(1, 1, 1, 3, false)));
    assertNotNull(ParallelPlanner.unsupported(new Layout(2, 2, 1, 3, false)), "not with tensor parallel");
    assertNotNull(ParallelPlanner.unsupported(new Layout(2, 1, 2, 3, false)), "not with pipeline parallel");
    // a budget between ZeRO 3's and ZeRO 2's needs of dp 4 leaves ZeRO 3 among the layouts that fit
    long budget = (two.memoryBytes() + three.memoryBytes()) / 2;
    Result r = ParallelPlanner.plan(new Job(GPT2, Device.CPU, 4, 4, 256, 8, budget, HW, 4, 1, 1, 0));
    assertTrue(r.fitting().stream().anyMatch(e -> e.layout().zero() == 3), r.fitting().toString());
    assertTrue(r.fitting().stream().noneMatch(e -> e.layout().zero() == 2 && !e.layout().recompute()), r.fitting().toString());
  }

  @Test
  void neverPicksALayoutThatDoesNotFitOrCannotRun() {
    SplittableRandom rnd = new SplittableRandom(7);
    for (int i = 0; i < 200; i++) {
      ModelConfig c = rnd.nextBoolean() ? GPT2 : LLAMA;
      int world = new int[] {1, 2, 3, 4, 6, 8}[rnd.nextInt(6)];
      int micro = 1 + rnd.nextInt(8);
      long memory = (long) (Math.pow(2, 27 + rnd.nextDouble() * 8));
      Result r = ParallelPlanner.plan(job(c, world, micro, memory));
      for (Estimate e : r.fitting()) {
        Layout l = e.layout();
        assertEquals(world, l.dp() * l.tp() * l.pp(), l.toString());
        assertTrue(e.memoryBytes() <= memory, l + " " + e.memoryBytes() + " > " + memory);
        assertNull(ParallelPlanner.unsupported(l), l.toString());
        assertEquals(0, micro % l.dp(), l + " with " + micro + " micro-batches");
        assertTrue(c.heads() % l.tp() == 0 && c.kvHeads() % l.tp() == 0, l.toString());
      }
      if (r.chosen() == null) assertTrue(r.fitting().isEmpty());
    }
  }

  @Test
  void fixedDimensionsAreKeptAndReasonsNameTheNumbers() {
    Result r = ParallelPlanner.plan(new Job(GPT2, Device.CPU, 4, 4, 256, 8, 64L << 30, HW, 0, 2, 0, 0));
    assertNotNull(r.chosen());
    assertEquals(2, r.chosen().layout().tp());
    assertTrue(r.fitting().stream().allMatch(e -> e.layout().tp() == 2));

    Result three = ParallelPlanner.plan(job(LLAMA, 3, 3, 64L << 30));
    assertTrue(three.excluded().stream().anyMatch(e -> e.excluded().equals("tp 3 does not divide the model's 16 attention heads")),
        three.excluded().toString());
    Result odd = ParallelPlanner.plan(job(GPT2, 4, 3, 64L << 30));
    assertTrue(odd.excluded().stream().anyMatch(e -> e.excluded().equals("dp 4 does not divide the 3 micro-batches per step")),
        odd.excluded().toString());
    assertThrows(IllegalArgumentException.class, () -> new Job(GPT2, Device.CPU, 0, 4, 256, 8, 1, HW));
  }

  @Test
  void tensorTimesPipelineIsRunnableWithZeroUpToTwoAndSequenceParallel() {
    assertNull(ParallelPlanner.unsupported(new Layout(1, 2, 2, 0, false)));
    assertNull(ParallelPlanner.unsupported(new Layout(2, 2, 2, 0, true)));
    assertNull(ParallelPlanner.unsupported(new Layout(2, 2, 2, 1, false)));
    assertNull(ParallelPlanner.unsupported(new Layout(2, 2, 2, 2, false)));
    assertNull(ParallelPlanner.unsupported(new Layout(1, 2, 2, 0, false, true)));  // sequence parallel under pp too
    assertEquals("sequence parallel needs tp > 1", ParallelPlanner.unsupported(new Layout(1, 1, 2, 0, false, true)));
    assertEquals("ZeRO 3 with tensor parallel is not built yet", ParallelPlanner.unsupported(new Layout(2, 2, 2, 3, false)));
    // the planner considers dp x tp x pp with ZeRO 2: with ZeRO 2 fixed on 8 processes, tp 2 x pp 2 is among the fitting
    Result z2 = ParallelPlanner.plan(new Job(GPT2, Device.CPU, 8, 4, 256, 8, 64L << 30, HW, 2, 2, 2, 2));
    assertNotNull(z2.chosen(), z2.excluded().toString());
    assertEquals(2, z2.chosen().layout().zero(), z2.chosen().toString());
    assertNull(ParallelPlanner.unsupported(new Layout(2, 2, 1, 1, false)));  // dp x tp x ZeRO 1 and 2 run
    assertNull(ParallelPlanner.unsupported(new Layout(2, 2, 1, 2, true)));
    assertEquals("ZeRO 3 with tensor parallel is not built yet", ParallelPlanner.unsupported(new Layout(2, 2, 1, 3, false)));
    Result r = ParallelPlanner.plan(new Job(GPT2, Device.CPU, 4, 4, 256, 8, 64L << 30, HW, 0, 2, 2, 0));
    assertNotNull(r.chosen(), r.excluded().toString());
    assertEquals(new Layout(1, 2, 2, 0, false), new Layout(r.chosen().layout().dp(), r.chosen().layout().tp(),
        r.chosen().layout().pp(), r.chosen().layout().zero(), false), r.chosen().toString());
  }

  @Test
  void nothingFitsIsAnEmptyChoiceWithEveryReason() {
    Result r = ParallelPlanner.plan(job(GPT2, 2, 2, 1L << 20));
    assertNull(r.chosen());
    assertTrue(r.fitting().isEmpty());
    assertTrue(r.excluded().stream().anyMatch(e -> e.excluded().contains("per rank, the budget is 1.0 MiB")), r.excluded().toString());
  }

  @Test
  void stagesCoverEveryBlockOnce() {
    for (int pp = 1; pp <= 12; pp++) {
      int next = 0;
      for (int s = 0; s < pp; s++) {
        var st = new dev.athanor.dist.pipeline.PipelineLayout(GPT2, pp).stage(s);
        assertEquals(next, st.firstBlock());
        assertTrue(st.blocks() == 12 / pp || st.blocks() == 12 / pp + 1);
        next = st.endBlock();
      }
      assertEquals(12, next);
    }
  }

  @Test
  void planWorldPrintsTheChoiceAndTheRunnersUp() {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    int rc;
    try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
      rc = Main.run(new String[] {"plan", "--preset", "gpt2", "--batch", "2", "--seq", "128", "--accum", "4", "--world", "4",
          "--mem-host", "2g", "--flops-per-rank", "2e10", "--link-bandwidth", "4g"}, ps, ps);
    }
    String out = buf.toString(StandardCharsets.UTF_8);
    assertEquals(0, rc, out);
    assertTrue(out.contains("parallel plan for 4 processes"), out);
    assertTrue(out.contains("chosen: dp "), out);
    assertTrue(out.contains("faster than the runner-up"), out);
    assertTrue(out.contains("left out ("), out);
  }
}

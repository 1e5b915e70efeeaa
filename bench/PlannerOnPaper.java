import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.dist.plan.ParallelPlanner.Estimate;
import dev.athanor.dist.plan.ParallelPlanner.Hardware;
import dev.athanor.dist.plan.ParallelPlanner.Job;
import dev.athanor.dist.plan.ParallelPlanner.Layout;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.nn.ModelConfig;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The parallel planner on paper: its choices for GPT-2 1.5B (gpt2-xl) and Llama 7B on 8 and 64 A100-80GB-like ranks,
 * the ZeRO paper's 7.5B model on 64 ranks per ZeRO stage, and Megatron-LM's 1.7B model on 32 ranks, printed as Markdown.
 * Nothing runs: {@link ParallelPlanner} only. Run by bench/run-planner-on-paper.sh (after a build).
 */
public final class PlannerOnPaper {
  static final double PEAK = 312e12, ACHIEVED = 0.40;  // A100 BF16 dense peak; the fraction of it assumed achieved
  static final double NVLINK = 300e9, IB = 25e9, LATENCY = 1e-5;  // bytes/s per GPU per direction; seconds per message
  static final long HBM = 80L << 30;  // bytes per rank

  public static void main(String[] args) throws Exception {
    Device device = Device.cuda(0);  // not opened: the planner only reads sizes and the compute dtype (BF16)
    ModelConfig xl = ModelConfig.preset("gpt2-xl");
    ModelConfig llama = HfConfig.read(Path.of(args.length > 0 ? args[0] : "bench/configs/llama-7b.json"));
    Hardware node = new Hardware(PEAK * ACHIEVED, NVLINK, LATENCY), cluster = new Hardware(PEAK * ACHIEVED, IB, LATENCY);
    System.out.printf(Locale.ROOT, "Hardware: %.0f TFLOP/s per rank (%.0f%% of %.0f), link %.0f GB/s (8 ranks, NVLink) or "
        + "%.0f GB/s (64 ranks, InfiniBand), %.0f us per message, %d GiB per rank; device CUDA (BF16 compute dtype).%n%n",
        PEAK * ACHIEVED / 1e12, ACHIEVED * 100, PEAK / 1e12, NVLINK / 1e9, IB / 1e9, LATENCY * 1e6, HBM >> 30);
    for (int world : new int[] {8, 64}) {
      Hardware hw = world == 8 ? node : cluster;
      plan("GPT-2 1.5B (gpt2-xl), B=4 x T=1024, 128 micro-batches per step (512 sequences)", new Job(xl, device, world, 4,
          1024, 128, HBM, hw));
      plan("Llama 7B, B=1 x T=2048, 512 micro-batches per step (512 sequences, 1M tokens)", new Job(llama, device, world, 1,
          2048, 512, HBM, hw));
    }
    // ZeRO (Rajbhandari et al., SC'20), Figure 1: a 7.5B model, 64-way data parallel, model states per GPU
    ModelConfig z = ModelConfig.gpt2(50257, 1024, 36, 4096, 32);
    System.out.printf(Locale.ROOT, "### ZeRO's 7.5B model: %d layers, hidden %d, %.2fB parameters, dp 64, one micro-batch per "
        + "replica (B=1, T=1024), model states per rank%n%n", z.layers(), z.hidden(), z.parameterCount() / 1e9);
    System.out.println("| Athanor ZeRO stage | weights (GiB) | gradients (GiB) | AdamW state (GiB) | model states (GB) | "
        + "whole estimate (GB) | bytes sent per step (GB) | excluded |");
    System.out.println("|---|---|---|---|---|---|---|---|");
    Job zj = new Job(z, device, 64, 1, 1024, 64, 1L << 50, cluster);
    for (int stage = 0; stage <= 3; stage++) {
      Estimate e = ParallelPlanner.estimate(zj, new Layout(64, 1, 1, stage, false));
      Map<String, Long> p = e.memoryParts();
      long states = p.get("weights") + p.get("gradients") + p.get("AdamW state");
      System.out.printf(Locale.ROOT, "| %d | %.2f | %.2f | %.2f | %.1f | %.1f | %.1f | %s |%n", stage, gib(p.get("weights")),
          gib(p.get("gradients")), gib(p.get("AdamW state")), states / 1e9, e.memoryBytes() / 1e9, e.commBytes() / 1e9,
          e.excluded() == null ? "" : e.excluded());
    }
    System.out.println();
    // Megatron-LM (Narayanan et al., SC'21), Table 1: 1.7B, 24 layers, hidden 2304, 24 heads, 32 GPUs, batch 512
    ModelConfig m = ModelConfig.gpt2(51200, 2048, 24, 2304, 24);
    plan(String.format(Locale.ROOT, "Megatron's 1.7B (24 layers, hidden 2304, 24 heads, vocab 51200: %.2fB), 32 ranks, B=1 x "
        + "T=2048, 512 micro-batches per step", m.parameterCount() / 1e9), new Job(m, device, 32, 1, 2048, 512, HBM, cluster));
  }

  static double gib(long b) {
    return b / (double) (1L << 30);
  }

  static void plan(String title, Job job) {
    ParallelPlanner.Result r = ParallelPlanner.plan(job);
    System.out.printf(Locale.ROOT, "### %s on %d ranks (%.2fB parameters)%n%n", title, job.world(), job.model().parameterCount() / 1e9);
    if (r.chosen() == null) {
      System.out.println("No layout fits. First reasons: " + r.excluded().stream().limit(3).map(Estimate::excluded).toList());
      System.out.println();
      return;
    }
    System.out.println("| | layout | memory per rank (GiB) | bytes sent per step by the busiest rank (GiB) | bubble | compute (s) "
        + "| communication (s) | step (s) | model TFLOP/s per rank |");
    System.out.println("|---|---|---|---|---|---|---|---|---|");
    List<Estimate> top = r.fitting().subList(0, Math.min(4, r.fitting().size()));
    double tokens = (double) job.batch() * job.seq() * job.microBatches();
    for (int i = 0; i < top.size(); i++) {
      Estimate e = top.get(i);
      double tflops = 6.0 * job.model().parameterCount() * tokens / e.stepSeconds() / job.world() / 1e12;
      System.out.printf(Locale.ROOT, "| %s | %s | %.1f | %.1f | %.1f%% | %.2f | %.2f | %.2f | %.0f |%n", i == 0 ? "chosen" : "runner-up " + i,
          e.layout(), gib(e.memoryBytes()), gib(e.commBytes()), e.bubble() * 100, e.computeSeconds(), e.commSeconds(),
          e.stepSeconds(), tflops);
    }
    StringBuilder parts = new StringBuilder();
    r.chosen().memoryParts().forEach((k, v) -> parts.append(String.format(Locale.ROOT, "%s %.1f GiB; ", k, gib(v))));
    System.out.printf(Locale.ROOT, "%nChosen layout's memory per rank: %s%d layouts fit, %d left out.%n%n", parts,
        r.fitting().size(), r.excluded().size());
  }
}

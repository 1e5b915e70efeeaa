package dev.athanor.cli;

import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.io.PrintStream;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import picocli.CommandLine.Option;

/** {@code plan --world N}: the parallel planner's options, its speed measurements, and its table. */
final class ParallelPlanOutput {
  /** The options of {@code plan} for a parallel plan (an argument group). */
  static final class Args {
    @Option(names = "--world", paramLabel = "N",
        description = "plan a parallel layout for N processes (dp x tp x pp x zero, recomputation) instead of an offload plan")
    @Options.Range(min = 1)
    Integer world;

    @Option(names = "--fix-dp", paramLabel = "N", defaultValue = "0", description = "keep dp at N (0: the planner chooses)")
    @Options.Range(min = 0)
    int dp;

    @Option(names = "--fix-tp", paramLabel = "N", defaultValue = "0", description = "keep tp at N (0: the planner chooses)")
    @Options.Range(min = 0)
    int tp;

    @Option(names = "--fix-pp", paramLabel = "N", defaultValue = "0", description = "keep pp at N (0: the planner chooses)")
    @Options.Range(min = 0)
    int pp;

    @Option(names = "--fix-zero", paramLabel = "STAGE", defaultValue = "0",
        description = "keep the ZeRO stage (1 to 3; 0: the planner chooses)")
    @Options.Range(min = 0, max = 3)
    int zero;

    @Option(names = "--flops-per-rank", paramLabel = "FLOPS",
        description = "compute speed of one process in FLOP/s (default: measured here with a GEMM, divided among the processes)")
    @Options.Range(min = 0, minExclusive = true)
    Double flops;

    @Option(names = "--link-bandwidth", paramLabel = "SIZE", converter = Options.Size.class,
        description = "bytes per second between processes (default: measured here as a memory copy, the link between "
            + "processes on one machine)")
    Long bandwidth;

    @Option(names = "--link-latency", paramLabel = "SECONDS", defaultValue = "2e-5",
        description = "seconds per message. Default: ${DEFAULT-VALUE}")
    @Options.Range(min = 0)
    double latency = 2e-5;  // the same when the class is built without picocli (train --parallel auto)
  }

  private ParallelPlanOutput() {}

  /**
   * The speeds the plan uses: given, or measured now: FP32 GEMM FLOP/s of this process (its threads), divided by {@code
   * world} (processes on one machine share the cores), and a 64 MiB host copy's bytes per second.
   */
  static ParallelPlanner.Hardware hardware(Args a, int world, StringBuilder note) {
    double flops;
    if (a.flops != null) {
      flops = a.flops;
    } else {
      int n = 512;
      double best = Double.MAX_VALUE;
      try (Tensor x = Tensor.zeros(DType.F32, Device.CPU, n, n); Tensor y = Tensor.zeros(DType.F32, Device.CPU, n, n);
          Tensor z = Tensor.empty(DType.F32, Device.CPU, n, n)) {
        Ops.fill(x, 0.5f);
        Ops.fill(y, 0.25f);
        for (int i = 0; i < 6; i++) {
          long t0 = System.nanoTime();
          Ops.gemm(x, false, y, false, 1f, 0f, null, z);
          best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
      }
      flops = 2.0 * n * n * n / best / world;
      note.append(String.format(Locale.ROOT, "measured here: FP32 GEMM %.1f GFLOP/s, shared by %d processes (%.1f each); ",
          flops * world / 1e9, world, flops / 1e9));
    }
    double bw;
    if (a.bandwidth != null) {
      bw = a.bandwidth;
    } else {
      long bytes = 64L << 20;
      double best = Double.MAX_VALUE;
      try (Tensor x = Tensor.zeros(DType.F32, Device.CPU, bytes / 4); Tensor y = Tensor.empty(DType.F32, Device.CPU, bytes / 4)) {
        for (int i = 0; i < 4; i++) {
          long t0 = System.nanoTime();
          y.copyFrom(x);
          best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
      }
      bw = bytes / best;
      note.append(String.format(Locale.ROOT, "memory copy %.1f GB/s as the link; ", bw / 1e9));
    }
    return new ParallelPlanner.Hardware(flops, bw, a.latency);
  }

  /** The memory budget of one process: --mem-host as given, else the HOST budget shared by the {@code world} processes. */
  static long memoryPerRank(Long memHost, int world) {
    if (memHost != null) return memHost;
    long b = MemoryManager.global().budgetBytes(Tier.HOST);
    return b == Long.MAX_VALUE ? b : Math.max(1, b / world);
  }

  /** Prints the plan: the chosen layout with its numbers, the runners-up, and what was left out and why. */
  static void print(ParallelPlanner.Result r, String note, PrintStream out) {
    ParallelPlanner.Job j = r.job();
    out.printf("parallel plan for %d processes: batch %d x seq %d per micro-batch, %d micro-batches per step, %s per process%n",
        j.world(), j.batch(), j.seq(), j.microBatches(), Footprint.size(j.memoryPerRank()));
    out.printf("speeds: %.1f GFLOP/s per process, link %.2f GB/s, %.0f us per message (%s)%n", j.hardware().flopsPerRank() / 1e9,
        j.hardware().linkBytesPerSecond() / 1e9, j.hardware().linkLatencySeconds() * 1e6, note.isEmpty() ? "as given" : note.strip());
    if (r.chosen() == null) {
      out.println("no layout fits; the candidates and why each was left out:");
    } else {
      out.println("chosen: " + r.chosen().layout() + "  (" + because(r) + ")");
    }
    out.printf("%-42s %12s %12s %8s %10s %10s %10s%n", "layout", "memory/rank", "comm/step", "bubble", "compute s", "comm s", "step s");
    List<ParallelPlanner.Estimate> shown = r.fitting().subList(0, Math.min(6, r.fitting().size()));
    for (ParallelPlanner.Estimate e : shown) out.println(row(e, e == r.chosen() ? "* " : "  "));
    int more = r.fitting().size() - shown.size();
    if (more > 0) out.println("  ... " + more + " more that fit, slower");
    if (r.chosen() != null) {
      out.print("memory of the chosen layout per rank:");
      for (Map.Entry<String, Long> p : r.chosen().memoryParts().entrySet()) out.print(" " + p.getKey() + " " + Footprint.size(p.getValue()) + ";");
      out.println();
    }
    out.println("left out (" + r.excluded().size() + "):");
    int n = 0;
    for (ParallelPlanner.Estimate e : r.excluded()) {
      if (n++ == 12) {
        out.println("  ... " + (r.excluded().size() - 12) + " more");
        break;
      }
      out.println("  " + e.layout() + ": " + e.excluded());
    }
  }

  /** Why the chosen layout beat the next one, in numbers. */
  private static String because(ParallelPlanner.Result r) {
    ParallelPlanner.Estimate c = r.chosen();
    String s = String.format(Locale.ROOT, "fits in %s of %s; estimated %.3f s per step", Footprint.size(c.memoryBytes()),
        Footprint.size(r.job().memoryPerRank()), c.stepSeconds());
    if (r.fitting().size() > 1) {
      ParallelPlanner.Estimate next = r.fitting().get(1);
      double pct = 100 * (next.stepSeconds() / c.stepSeconds() - 1);
      s += String.format(Locale.ROOT, ", %s faster than the runner-up %s", pct < 0.1 ? "under 0.1%" : String.format(Locale.ROOT, "%.1f%%", pct),
          next.layout());
    }
    return s;
  }

  private static String row(ParallelPlanner.Estimate e, String mark) {
    return String.format(Locale.ROOT, "%s%-40s %12s %12s %7.0f%% %10.3f %10.3f %10.3f", mark, e.layout(), Footprint.size(e.memoryBytes()),
        Footprint.size(e.commBytes()), 100 * e.bubble(), e.computeSeconds(), e.commSeconds(), e.stepSeconds());
  }
}

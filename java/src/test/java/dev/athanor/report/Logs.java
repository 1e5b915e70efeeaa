package dev.athanor.report;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.checkpoint.CheckpointEvent;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Synthetic training logs for the chart and report tests. */
final class Logs {
  private Logs() {}

  /**
   * {@code n} steps of a plausible run: the loss falls from about 10.8 towards 3 with a deterministic wobble, the
   * learning rate warms up over a tenth of the steps and decays by a cosine, the gradient norm falls from 4, and each
   * step takes about 0.6 s for 2048 tokens (the first one 2 s).
   */
  static List<StepResult> run(int n) {
    List<StepResult> steps = new ArrayList<>();
    int warmup = Math.max(1, n / 10);
    for (int i = 0; i < n; i++) {
      double t = n > 1 ? (double) i / (n - 1) : 0;
      float loss = (float) (3 + 7.8 * Math.exp(-5 * t) + 0.15 * Math.sin(i * 0.9));
      float lr = (float) (i < warmup ? 1e-3 * (i + 1) / warmup
          : 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + Math.cos(Math.PI * (i - warmup) / Math.max(1, n - warmup))));
      float norm = (float) (0.4 + 3.6 * Math.exp(-8 * t) + 0.05 * Math.cos(i * 1.3));
      double seconds = i == 0 ? 2.0 : 0.6 + 0.02 * Math.sin(i * 0.37);
      steps.add(new StepResult(i, loss, lr, norm, 2048, seconds));
    }
    return steps;
  }

  /**
   * Offload figures for {@code steps}: 40 MiB read and 24 MiB written per step (a little more for every third), a
   * stall of a few milliseconds, most of the transfer time overlapped.
   */
  static List<StepTraffic> traffic(List<StepResult> steps) {
    List<StepTraffic> out = new ArrayList<>();
    for (StepResult r : steps) {
      long extra = r.step() % 3 == 0 ? 4L << 20 : 0;
      out.add(new StepTraffic(r.step(), (40L << 20) + extra, (24L << 20) + extra, 2 + 1.5 * Math.sin(r.step() * 0.5), 0.875));
    }
    return out;
  }

  /** The lines of an offloaded run's train-log.jsonl: each step with its figures, then {@code summary}. */
  static List<String> lines(List<StepResult> steps, List<StepTraffic> traffic, RunSummary summary) {
    List<String> out = new ArrayList<>();
    for (int i = 0; i < steps.size(); i++) out.add(traffic.get(i).appendTo(steps.get(i)));
    out.add(summary.toJson());
    return out;
  }

  /** A summary line's contents for {@code traffic}: peaks on HOST and DISK. */
  static RunSummary summary(List<StepTraffic> traffic) {
    long read = 0, written = 0;
    double stall = 0;
    for (StepTraffic t : traffic) {
      read += t.diskReadBytes();
      written += t.diskWriteBytes();
      stall += t.stallMs();
    }
    return new RunSummary(traffic.size(), Map.of(Tier.HOST, 1536L << 20, Tier.DISK, 6L << 30), read, written,
        Math.round(stall * 1e3) / 1e3, 0.875);  // as the log line writes it
  }

  /** The lines of a train-log.jsonl holding {@code steps}. */
  static List<String> lines(List<StepResult> steps) {
    return steps.stream().map(StepResult::toJson).toList();
  }

  /** The demo's model: GPT-2 vocabulary, 4 layers, width 256, 4 heads. */
  static final ModelConfig MODEL = ModelConfig.gpt2(50257, 1024, 4, 256, 4);

  /**
   * A report of {@code steps} for the demo's model with a fixed finish time, memory of every tier (a budget on HOST
   * only), {@code charts} (or none, {@code chartsMissing} saying why) and {@code checkpoints}; no JUnit class is used
   * (a child JVM without it calls this).
   */
  static RunReport.Run report(List<StepResult> steps, List<TrainingCharts.Chart> charts, String chartsMissing,
      List<CheckpointEvent> checkpoints) {
    Map<String, String> details = new LinkedHashMap<>();
    details.put("device", "cpu");
    details.put("data", "/usr/lib/jvm/x/lib/src.zip (6.2M tokens)");
    details.put("command", "athanor train --preset gpt2-tiny --data <src.zip> --steps " + steps.size());
    List<RunReport.TierUse> memory = List.of(new RunReport.TierUse(Tier.DEVICE, 0, 0, MemoryManager.UNLIMITED, 0),
        new RunReport.TierUse(Tier.HOST_PINNED, 0, 0, MemoryManager.UNLIMITED, 0),
        new RunReport.TierUse(Tier.HOST, 300L << 20, 1536L << 20, 8L << 30, 300L << 20),
        new RunReport.TierUse(Tier.DISK, 0, 0, MemoryManager.UNLIMITED, 0));
    return new RunReport.Run("athanor train", "0.1.0", Instant.parse("2026-12-04T10:15:30Z"), MODEL, MODEL.parameterCount(),
        TrainConfig.defaults(Math.max(1, steps.size()), 8, 256), details, steps, charts, chartsMissing, memory, checkpoints);
  }

  /** Two checkpoint saves that worked and one that failed. */
  static List<CheckpointEvent> checkpoints(Path dir) {
    return List.of(new CheckpointEvent(100, dir.resolve("step-00000100"), 0.021, 0.43, 193L << 20, null),
        new CheckpointEvent(200, dir.resolve("step-00000200"), 0.019, 0.47, 193L << 20, null),
        new CheckpointEvent(300, dir.resolve("step-00000300"), 0.4, 0.05, 0, "writing checkpoint <dir> failed: No space left on device"));
  }
}

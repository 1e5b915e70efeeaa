package dev.athanor.bench;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.offload.OffloadedWeights;
import dev.athanor.offload.TransferStats;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/**
 * Offloaded training throughput against in-memory training of the same model at HOST budgets of 1/2, 1/4 and 1/8 of
 * the training state (issue 9), on the CPU, with the offload's prefetch on and off.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp CLASSPATH dev.athanor.bench.OffloadBudgetBench \
 *       [--vocab 50257] [--layers 6] [--hidden 512] [--heads 8] [--batch 2] [--seq 128] [--steps 3] [--dir DIR]
 *       [--fractions 2,4,8] [--command TEXT] [--note TEXT]
 * </pre>
 *
 * <p>State = weights + gradients + AdamW's two moments (16 bytes per parameter in FP32). For each fraction 1/k and
 * each prefetch setting: a fresh in-memory trainer A (no budget) takes one warm-up step; then the HOST budget is set
 * to the bytes live at that point (A's whole state, the dataset, the runtime) plus state/k, {@link OffloadPlanner}
 * chooses the cheapest placement that fits it, and a fresh offloaded trainer B is built under that budget (when the
 * plan puts the weights on DISK: {@link Transformer#withoutWeights} and {@link OffloadedWeights}, so the weights are
 * never all in memory). B takes its warm-up step, then A and B alternate {@code --steps} timed steps (the budget
 * lifted for A's steps, set again for B's). Every pair of losses must be equal bit for bit, or the bench fails. The
 * runs are configured for one step more than they take, so every timed step is a steady-state one (with the weights
 * and gradients on DISK, B applies the previous step's update in its forward and defers its own).
 * Reported per row: median tokens/s of A and B, B / A, B's DISK bytes, stall and overlap per timed step, and B's HOST
 * peak above the base (the allocator refuses to go over the budget). Prints Markdown on stdout.
 */
public final class OffloadBudgetBench {
  private OffloadBudgetBench() {}

  public static void main(String[] args) throws IOException {
    int vocab = 50257, layers = 6, hidden = 512, heads = 8, batch = 2, seq = 128, steps = 3;
    Path dir = Path.of("bench/target/offload-budgets");
    String fractions = "2,4,8", command = "", note = "";
    for (int i = 0; i < args.length; i += 2) {
      switch (args[i]) {
        case "--vocab" -> vocab = Integer.parseInt(args[i + 1]);
        case "--layers" -> layers = Integer.parseInt(args[i + 1]);
        case "--hidden" -> hidden = Integer.parseInt(args[i + 1]);
        case "--heads" -> heads = Integer.parseInt(args[i + 1]);
        case "--batch" -> batch = Integer.parseInt(args[i + 1]);
        case "--seq" -> seq = Integer.parseInt(args[i + 1]);
        case "--steps" -> steps = Integer.parseInt(args[i + 1]);
        case "--dir" -> dir = Path.of(args[i + 1]);
        case "--fractions" -> fractions = args[i + 1];
        case "--command" -> command = args[i + 1];
        case "--note" -> note = args[i + 1];
        default -> throw new IllegalArgumentException("unknown argument " + args[i] + "; expected --vocab, --layers, "
            + "--hidden, --heads, --batch, --seq, --steps, --dir, --fractions, --command, --note");
      }
    }
    Files.createDirectories(dir);
    try {
      run(ModelConfig.gpt2(vocab, seq, layers, hidden, heads), batch, seq, steps, dir, fractions, command, note);
    } finally {
      deleteTree(dir);
    }
  }

  private record Row(int k, boolean prefetch, OffloadPlan plan, String failure, long budget, List<Double> mem,
      List<Double> off, long diskBytes, double stall, double overlap, long peak) {}

  private static void run(ModelConfig cfg, int batch, int seq, int steps, Path dir, String fractions, String command,
      String note) throws IOException {
    String loadBefore = CheckpointBench.loadAverage();
    // one step more than A and B take: no timed step is a run's last, which makes its update at once where B defers
    // the others into the next forward (Trainer.defersUpdates); B's last update is applied when it closes, untimed
    TrainConfig tc = new TrainConfig(steps + 2, batch, seq, 1, 1e-3f, 1e-4f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f,
        1e-8f, 1f, false, 5);
    Path shard = dir.resolve("tokens.bin");
    SplittableRandom rnd = new SplittableRandom(11);
    try (TokenShardWriter w = TokenShardWriter.create(shard, cfg.vocabSize())) {
      for (long i = 0; i < (long) batch * seq * (steps + 2) + 1; i++) w.write(rnd.nextInt(cfg.vocabSize()));
    }
    long params = OffloadPlan.layoutElements(cfg), state = 16 * params;
    OffloadPlanner.Job job = new OffloadPlanner.Job(cfg, Device.CPU, tc, false, false, false);
    Footprint inMemory = job.inMemory();
    long transient_ = 0;
    for (Footprint.Component c : Footprint.Component.values()) {
      if (c.ordinal() >= Footprint.Component.ACTIVATIONS.ordinal()) transient_ += inMemory.bytes(c, EnumSet.of(Tier.HOST));
    }
    MemoryManager mm = MemoryManager.global();
    long oldBudget = mm.budgetBytes(Tier.HOST);
    List<Row> rows = new ArrayList<>();
    try (TokenDataset data = TokenDataset.open(shard)) {
      for (String f : fractions.split(",")) {
        int k = Integer.parseInt(f.trim());
        for (boolean prefetch : new boolean[] {true, false}) {
          rows.add(pair(cfg, tc, data, dir.resolve("state"), k, prefetch, state, steps, mm, oldBudget));
          System.err.println("OffloadBudgetBench: 1/" + k + " prefetch " + (prefetch ? "on" : "off") + " done");
        }
      }
    } finally {
      mm.setBudget(Tier.HOST, oldBudget);
    }
    StringBuilder sb = new StringBuilder();
    sb.append("# Offloaded training at HOST budgets of 1/2, 1/4, 1/8 of the state, against in-memory training\n\n");
    sb.append(Report.machine());
    sb.append("- CPU threads: ").append(NativeRuntime.cpuThreads()).append('\n');
    sb.append("- offload directory: ").append(dir.toAbsolutePath()).append(" (").append(Files.getFileStore(dir).type())
        .append(", O_DIRECT where the file system takes it)\n");
    sb.append("- load average (1/5/15 min) before: ").append(loadBefore).append(", after: ")
        .append(CheckpointBench.loadAverage()).append('\n');
    if (!note.isEmpty()) sb.append("- ").append(note).append('\n');
    if (!command.isEmpty()) sb.append("- command: `").append(command).append("`\n");
    sb.append(String.format(Locale.ROOT, "- model: GPT-2 shape, vocab %d, %d layers, width %d, %d heads, tied head: %.1fM "
        + "parameters, FP32%n", cfg.vocabSize(), cfg.layers(), cfg.hidden(), cfg.heads(), params / 1e6));
    sb.append("- state (weights + gradients + 2 moments, 16 B/parameter): ").append(MemoryManager.formatBytes(state))
        .append("; in memory the job also needs ").append(MemoryManager.formatBytes(transient_))
        .append(" of activations, workspace and scratch at B=").append(batch).append(", T=").append(seq)
        .append(" (the planner's estimate), i.e. ").append(String.format(Locale.ROOT, "%.2f", (double) transient_ / (state / 8)))
        .append(" of state/8\n");
    sb.append("- per row: fresh in-memory trainer A and offloaded trainer B from the same seed, one warm-up step each, then ")
        .append(steps).append(" timed steps each, alternating A, B; B's HOST budget = bytes live after A's warm-up + state/k; "
        + "the planner (OffloadPlanner, default 4 MiB chunks) picks B's placement; losses of every step equal bit for bit\n");
    sb.append("- tokens/s = B·T / step seconds (StepResult.seconds), medians; ratio = offloaded / in-memory; DISK bytes, "
        + "stall (time the step waited on I/O) and overlap (1 - stall / I/O time) from Trainer.transfers(), per timed step\n\n");
    sb.append("| budget | prefetch | roles on DISK | plan HOST | HOST peak | in-memory tokens/s | offloaded tokens/s | "
        + "ratio | DISK read+written / step | stall s / step | overlap |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (Row r : rows) {
      String budget = "state/" + r.k + " (" + MemoryManager.formatBytes(state / r.k) + ")";
      if (r.plan == null) {
        sb.append("| ").append(budget).append(" | ").append(r.prefetch ? "on" : "off").append(" | no plan fits: ")
            .append(r.failure.replace('|', '/')).append(" | | | | | | | | |\n");
        continue;
      }
      double m = OffloadBench.median(r.mem), o = OffloadBench.median(r.off);
      sb.append(String.format(Locale.ROOT, "| %s | %s | %s | %s | %s | %.0f %s | %.0f %s | **%.2f** | %s | %.3f | %.2f |%n",
          budget, r.prefetch ? "on" : "off", (r.plan.diskRoles().isEmpty() ? "none" : OffloadPlan.describe(r.plan.diskRoles()))
              + (r.plan.residentWeights().isEmpty() ? "" : "; " + r.plan.residentWeights().size() + " weight units resident")
              + (r.plan.recompute() ? "; activations recomputed" : "") + (r.plan.activationsOnDisk() ? "; activations on DISK" : ""),
          MemoryManager.formatBytes(r.plan.bytes(Tier.HOST)), MemoryManager.formatBytes(r.peak),
          batch * seq / m, OffloadBench.fmt(r.mem), batch * seq / o, OffloadBench.fmt(r.off), m / o,
          MemoryManager.formatBytes(r.diskBytes), r.stall, r.overlap));
    }
    sb.append("\nStep seconds of every timed step in brackets. The plan's own DISK traffic estimate per step: ");
    List<String> est = new ArrayList<>();
    for (Row r : rows) {
      if (r.plan != null && r.prefetch) est.add("1/" + r.k + " " + MemoryManager.formatBytes(r.plan.diskTrafficPerStep()));
    }
    sb.append(String.join(", ", est)).append(".\n");
    System.out.print(sb);
  }

  /** One row: in-memory trainer A against the planner's offloaded trainer B under state/k of HOST. */
  private static Row pair(ModelConfig cfg, TrainConfig tc, TokenDataset data, Path stateDir, int k, boolean prefetch,
      long state, int steps, MemoryManager mm, long oldBudget) throws IOException {
    List<Double> mem = new ArrayList<>(), off = new ArrayList<>();
    try (Transformer a = Transformer.create(cfg, Device.CPU);
        Trainer ta = new Trainer(a, tc, new DataLoader(data, tc.batch(), tc.seq(), false, 0))) {
      a.initialize(1);
      mm.setBudget(Tier.HOST, oldBudget);
      StepResult warmA = ta.step();
      long base = mm.liveBytes(Tier.HOST), budget = state / k;
      mm.setBudget(Tier.HOST, base + budget);
      OffloadPlanner.Result planned = OffloadPlanner.plan(new OffloadPlanner.Job(cfg, Device.CPU, tc, false, false, false), mm);
      if (planned.plan() == null) {
        mm.setBudget(Tier.HOST, oldBudget);
        return new Row(k, prefetch, null, planned.failure(), budget, mem, off, 0, 0, 0, 0);
      }
      OffloadPlan plan = planned.plan();
      OffloadConfig oc = plan.config(stateDir).withPrefetch(prefetch);
      boolean weightsOnDisk = plan.diskRoles().contains(Role.MASTER);
      mm.resetPeak();
      TransferStats.Snapshot moved = TransferStats.Snapshot.ZERO;
      try (Transformer b = weightsOnDisk ? Transformer.withoutWeights(cfg, Device.CPU) : Transformer.create(cfg, Device.CPU);
          OffloadedWeights weights = weightsOnDisk ? OffloadedWeights.attach(b, stateDir, prefetch, oc.residentWeights()) : null;
          Trainer tb = new Trainer(b, tc, new DataLoader(data, tc.batch(), tc.seq(), false, 0), oc, weights)) {
        b.setRecompute(plan.recompute());  // the planner may choose it
        b.initialize(1);
        check(0, warmA, tb.step());
        // B's traffic from the end of its warm-up step to the end of its last: with the update deferred into the next
        // forward (Trainer.defersUpdates), its first reads start when a step ends and may run during A's step
        TransferStats.Snapshot before = tb.transfers();
        for (int s = 1; s <= steps; s++) {
          mm.setBudget(Tier.HOST, oldBudget);
          StepResult ra = ta.step();
          mm.setBudget(Tier.HOST, base + budget);
          StepResult rb = tb.step();
          TransferStats.Snapshot now = tb.transfers();
          moved = moved.plus(now.minus(before));
          before = now;
          check(s, ra, rb);
          mem.add(ra.seconds());
          off.add(rb.seconds());
        }
      } finally {
        mm.setBudget(Tier.HOST, oldBudget);
      }
      long peak = mm.peakBytes(Tier.HOST) - base;
      return new Row(k, prefetch, plan, null, budget, mem, off, (moved.diskToHost() + moved.hostToDisk()) / steps,
          moved.stallNanos() / 1e9 / steps, moved.overlap(), peak);
    } finally {
      deleteTree(stateDir);
    }
  }

  private static void check(int step, StepResult a, StepResult b) {
    if (Float.floatToRawIntBits(a.loss()) != Float.floatToRawIntBits(b.loss())) {
      throw new IllegalStateException("step " + step + ": loss " + a.loss() + " in memory but " + b.loss() + " offloaded");
    }
  }

  static void deleteTree(Path dir) throws IOException {
    if (!Files.exists(dir)) return;
    try (Stream<Path> s = Files.walk(dir)) {
      for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
    }
  }
}

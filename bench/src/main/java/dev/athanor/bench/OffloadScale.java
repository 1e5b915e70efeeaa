package dev.athanor.bench;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadedWeights;
import dev.athanor.offload.TransferStats;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * Training steps of a model whose training state does not fit in the machine's RAM, through the DISK tier (issue 9).
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp CLASSPATH dev.athanor.bench.OffloadScale \
 *       [--layers 24] [--hidden 3200] [--heads 32] [--kv-heads 32] [--intermediate 8640] [--vocab 32000] [--seq 32]
 *       [--steps 4] [--budget-gib 8] [--lr 3e-4] [--in-memory-check false] [--dir DIR] [--command TEXT] [--note TEXT]
 * </pre>
 *
 * <p>A Llama-shaped model (tied embeddings) is built without weights ({@link Transformer#withoutWeights}), attached to
 * its DISK files ({@link OffloadedWeights}, prefetch on) and initialized tensor by tensor onto DISK; weights, gradients
 * and both moments live on DISK ({@link OffloadConfig#allOnDisk}). The HOST budget is set to the bytes live before the
 * model is built plus {@code --budget-gib}, so the whole run (building included) is held to it. The batch is one
 * sequence of {@code --seq} seeded random tokens, the same every step (a one-window shard), so the loss must fall.
 * Prints Markdown on stdout: per step seconds, loss, DISK bytes read and written, stall; the HOST peak at the end.
 * The directory is deleted afterwards, also on failure.
 */
public final class OffloadScale {
  private OffloadScale() {}

  public static void main(String[] args) throws IOException {
    int layers = 24, hidden = 3200, heads = 32, kvHeads = 32, inter = 8640, vocab = 32000, seq = 32, steps = 4;
    long budgetGib = 8;
    float lr = 3e-4f;
    boolean inMemoryCheck = false;
    Path dir = Path.of("bench/target/offload-scale");
    String command = "", note = "";
    for (int i = 0; i < args.length; i += 2) {
      switch (args[i]) {
        case "--layers" -> layers = Integer.parseInt(args[i + 1]);
        case "--hidden" -> hidden = Integer.parseInt(args[i + 1]);
        case "--heads" -> heads = Integer.parseInt(args[i + 1]);
        case "--kv-heads" -> kvHeads = Integer.parseInt(args[i + 1]);
        case "--intermediate" -> inter = Integer.parseInt(args[i + 1]);
        case "--vocab" -> vocab = Integer.parseInt(args[i + 1]);
        case "--seq" -> seq = Integer.parseInt(args[i + 1]);
        case "--steps" -> steps = Integer.parseInt(args[i + 1]);
        case "--budget-gib" -> budgetGib = Long.parseLong(args[i + 1]);
        case "--lr" -> lr = Float.parseFloat(args[i + 1]);
        case "--in-memory-check" -> inMemoryCheck = Boolean.parseBoolean(args[i + 1]);
        case "--dir" -> dir = Path.of(args[i + 1]);
        case "--command" -> command = args[i + 1];
        case "--note" -> note = args[i + 1];
        default -> throw new IllegalArgumentException("unknown argument " + args[i] + "; expected --layers, --hidden, "
            + "--heads, --kv-heads, --intermediate, --vocab, --seq, --steps, --budget-gib, --lr, --in-memory-check, --dir, --command, --note");
      }
    }
    ModelConfig cfg = ModelConfig.llama(vocab, seq, layers, hidden, heads, kvHeads, inter, 10000f, true);
    Files.createDirectories(dir);
    try {
      run(cfg, seq, steps, budgetGib << 30, lr, inMemoryCheck, dir, command, note);
    } finally {
      OffloadBudgetBench.deleteTree(dir);
    }
  }

  private static void run(ModelConfig cfg, int seq, int steps, long budget, float lr, boolean inMemoryCheck, Path dir,
      String command,
      String note)
      throws IOException {
    String loadBefore = CheckpointBench.loadAverage();
    long params = OffloadPlan.layoutElements(cfg), state = 16 * params;
    long free = Files.getFileStore(dir).getUsableSpace();
    StringBuilder sb = new StringBuilder();
    sb.append("# Training a model larger than RAM through the DISK tier\n\n");
    sb.append(Report.machine());
    sb.append("- CPU threads: ").append(NativeRuntime.cpuThreads()).append('\n');
    sb.append("- offload directory: ").append(dir.toAbsolutePath()).append(" (").append(Files.getFileStore(dir).type())
        .append("), ").append(MemoryManager.formatBytes(free)).append(" free before the run\n");
    if (!note.isEmpty()) sb.append("- ").append(note).append('\n');
    if (!command.isEmpty()) sb.append("- command: `").append(command).append("`\n");
    sb.append(String.format(java.util.Locale.ROOT, "- model: Llama shape, %d layers, width %d, %d heads (%d KV), MLP %d, "
            + "vocab %d, tied embeddings: %.2fB parameters, FP32; state (weights + gradients + 2 moments) %s, all on DISK%n",
        cfg.layers(), cfg.hidden(), cfg.heads(), cfg.kvHeads(), cfg.intermediate(), cfg.vocabSize(), params / 1e9,
        MemoryManager.formatBytes(state)));
    sb.append("- batch 1 x ").append(seq).append(" tokens, the same sequence every step; AdamW lr ").append(lr)
        .append(" constant after 1 warm-up step, no weight decay, clip 1; HOST budget ").append(MemoryManager.formatBytes(budget)).append(" above what was live "
        + "before the model was built\n");
    Path shard = dir.resolve("tokens.bin");
    SplittableRandom rnd = new SplittableRandom(11);
    try (TokenShardWriter w = TokenShardWriter.create(shard, cfg.vocabSize())) {
      for (int i = 0; i <= seq; i++) w.write(rnd.nextInt(cfg.vocabSize()));
    }
    TrainConfig tc = new TrainConfig(steps, 1, seq, 1, lr, lr, 1, Schedule.CONSTANT, 0f, 0.9f, 0.95f, 1e-8f, 1f,
        true, 5);
    float[] reference = null;
    if (inMemoryCheck) {  // the same training in memory, no budget: its losses must match the offloaded run's bit for bit
      reference = new float[steps];
      try (TokenDataset d = TokenDataset.open(shard); Transformer model = Transformer.create(cfg, Device.CPU);
          Trainer t = new Trainer(model, tc, new DataLoader(d, 1, seq, true, 0))) {
        model.initialize(1);
        for (int s = 0; s < steps; s++) reference[s] = t.step().loss();
      }
    }
    MemoryManager mm = MemoryManager.global();
    long oldBudget = mm.budgetBytes(Tier.HOST);
    mm.setBudget(Tier.HOST, mm.liveBytes(Tier.HOST) + budget);
    mm.resetPeak();
    long base = mm.liveBytes(Tier.HOST);
    StringBuilder table = new StringBuilder("| step | seconds | loss | DISK read | DISK written | stall s | overlap |\n"
        + "| --- | --- | --- | --- | --- | --- | --- |\n");
    double initSeconds;
    Path stateDir = dir.resolve("state");
    try (TokenDataset d = TokenDataset.open(shard); Transformer model = Transformer.withoutWeights(cfg, Device.CPU);
        OffloadedWeights weights = OffloadedWeights.attach(model, stateDir, true);
        Trainer t = new Trainer(model, tc, new DataLoader(d, 1, seq, true, 0), OffloadConfig.allOnDisk(stateDir), weights)) {
      long t0 = System.nanoTime();
      model.initialize(1);
      initSeconds = (System.nanoTime() - t0) / 1e9;
      System.err.printf("OffloadScale: initialized %.2fB parameters onto DISK in %.1f s%n", params / 1e9, initSeconds);
      for (int s = 1; s <= steps; s++) {
        TransferStats.Snapshot before = t.transfers();
        StepResult r = t.step();
        TransferStats.Snapshot m = t.transfers().minus(before);
        String line = String.format(java.util.Locale.ROOT, "| %d | %.1f | %.4f | %s | %s | %.1f | %.2f |%n", s, r.seconds(),
            r.loss(), MemoryManager.formatBytes(m.diskToHost()), MemoryManager.formatBytes(m.hostToDisk()),
            m.stallNanos() / 1e9, m.overlap());
        System.err.print("OffloadScale: " + line);
        table.append(line);
        if (reference != null && Float.floatToRawIntBits(reference[s - 1]) != Float.floatToRawIntBits(r.loss())) {
          throw new IllegalStateException("step " + s + ": loss " + reference[s - 1] + " in memory but " + r.loss()
              + " offloaded");
        }
      }
    } finally {
      mm.setBudget(Tier.HOST, oldBudget);
    }
    long peak = mm.peakBytes(Tier.HOST) - base;
    sb.append("- load average (1/5/15 min) before: ").append(loadBefore).append(", after: ")
        .append(CheckpointBench.loadAverage()).append('\n');
    sb.append(String.format(java.util.Locale.ROOT, "- initialize (weights written tensor by tensor onto DISK): %.1f s%n",
        initSeconds));
    sb.append("- HOST peak above the base (the allocator's, whole run): ").append(MemoryManager.formatBytes(peak))
        .append(" of the ").append(MemoryManager.formatBytes(budget)).append(" budget; state / RAM of this machine: ")
        .append(String.format(java.util.Locale.ROOT, "%.2f", state / (double) machineRam())).append("\n\n");
    sb.append("Seconds = StepResult.seconds (forward, backward, clip, AdamW, all paging). DISK bytes and stall "
        + "(time the step waited on I/O) from Trainer.transfers(); overlap = 1 - stall / I/O time.\n\n");
    if (reference != null) {
      sb.append("\nThe same training fully in memory (no budget, run first) gave the same loss bit for bit at every step.\n\n");
    }
    sb.append(table);
    System.out.print(sb);
  }

  private static long machineRam() {
    try {
      for (String l : Files.readAllLines(Path.of("/proc/meminfo"))) {
        if (l.startsWith("MemTotal:")) return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
      }
    } catch (IOException e) {
      // fall through
    }
    return -1;
  }
}

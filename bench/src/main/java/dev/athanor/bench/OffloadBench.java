package dev.athanor.bench;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.train.AdamW;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The AdamW update of a whole model with its moments in HOST memory against the same update with the moments on the
 * DISK tier (streamed per unit through host staging slots), on the CPU, alternating in one run.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp CLASSPATH dev.athanor.bench.OffloadBench \
 *       [--preset gpt2-tiny] [--rounds 5] [--dir DIR] [--chunk-mib 4] [--steps 0] [--batch 4] [--seq 256]
 * </pre>
 *
 * <p>Per round: one update with the moments in memory, one with them on DISK (same gradients, same step count).
 * Reported: the median seconds of each, their ratio, and the DISK update's traffic (the moments read and written
 * once: 2 x 2 x 4 bytes per element) over its time. The first round of each is a warm-up and not counted. The DISK
 * figures include the page cache where the file system does not take O_DIRECT. With {@code --steps N > 0}, also
 * whole training steps ({@link Trainer}: forward, backward, clipping, AdamW) on seeded random tokens, the two runs'
 * steps alternating, after one warm-up step each; their losses must agree bit for bit. Prints Markdown on stdout.
 */
public final class OffloadBench {
  private OffloadBench() {}

  public static void main(String[] args) throws IOException {
    String preset = "gpt2-tiny";
    int rounds = 5;
    Path dir = Path.of("bench/target/offload-bench");
    long chunk = OffloadConfig.DEFAULT_CHUNK_BYTES;
    int steps = 0, batch = 4, seq = 256;
    for (int i = 0; i < args.length; i += 2) {
      switch (args[i]) {
        case "--preset" -> preset = args[i + 1];
        case "--rounds" -> rounds = Integer.parseInt(args[i + 1]);
        case "--dir" -> dir = Path.of(args[i + 1]);
        case "--chunk-mib" -> chunk = Long.parseLong(args[i + 1]) << 20;
        case "--steps" -> steps = Integer.parseInt(args[i + 1]);
        case "--batch" -> batch = Integer.parseInt(args[i + 1]);
        case "--seq" -> seq = Integer.parseInt(args[i + 1]);
        default -> throw new IllegalArgumentException("unknown argument " + args[i]
            + "; expected --preset, --rounds, --dir, --chunk-mib, --steps, --batch, --seq");
      }
    }
    Files.createDirectories(dir);
    String loadBefore = CheckpointBench.loadAverage();
    ModelConfig cfg = ModelConfig.preset(preset);
    List<Double> host = new ArrayList<>(), disk = new ArrayList<>();
    long bytes;
    long staging;
    try (Transformer a = Transformer.create(cfg, Device.CPU); Transformer b = Transformer.create(cfg, Device.CPU);
        AdamW inMemory = new AdamW(a.parameters());
        AdamW offloaded = new AdamW(b.parameters(), OffloadConfig.optimizerStateOnDisk(dir).withChunkBytes(chunk))) {
      for (Transformer m : List.of(a, b)) {
        m.initialize(1);
        m.parameters().allocate(Role.GRAD);
        Ops.randNormal(m.parameters().flat(Role.GRAD), 7, 0, 0f, 1e-3f);
      }
      ParameterStore s = a.parameters();
      bytes = s.bytes(Role.ADAM_M) + s.bytes(Role.ADAM_V);
      for (int r = 0; r <= rounds; r++) {
        double h = time(inMemory, s), d = time(offloaded, b.parameters());
        if (r > 0) {
          host.add(h);
          disk.add(d);
        }
      }
      staging = offloaded.stagingBytes();
    }
    List<Double> stepHost = new ArrayList<>(), stepDisk = new ArrayList<>();
    if (steps > 0) trainSteps(cfg, dir, chunk, steps, batch, seq, stepHost, stepDisk);
    double mh = median(host), md = median(disk);
    StringBuilder sb = new StringBuilder();
    sb.append("# AdamW update: moments in HOST vs on DISK (").append(preset).append(")\n\n");
    sb.append(Report.machine());
    sb.append("- CPU threads: ").append(NativeRuntime.cpuThreads()).append('\n');
    sb.append("- offload directory: ").append(dir.toAbsolutePath()).append(" (").append(Files.getFileStore(dir).type())
        .append(")\n");
    sb.append("- load average (1/5/15 min) before: ").append(loadBefore).append(", after: ").append(CheckpointBench.loadAverage()).append('\n');
    sb.append("- moments: ").append(MemoryManager.formatBytes(bytes)).append("; chunk ").append(MemoryManager.formatBytes(chunk))
        .append(" per role; staging ").append(MemoryManager.formatBytes(staging)).append(" of HOST\n");
    sb.append("- rounds: ").append(rounds).append(" (after one warm-up), medians\n\n");
    sb.append("| moments in | update seconds (median) | all rounds | traffic GB/s |\n| --- | --- | --- | --- |\n");
    sb.append(String.format(Locale.ROOT, "| HOST | %.4f | %s | |%n", mh, fmt(host)));
    sb.append(String.format(Locale.ROOT, "| DISK | %.4f | %s | %.2f |%n", md, fmt(disk), 2.0 * bytes / md / 1e9));
    sb.append(String.format(Locale.ROOT, "%nDISK / HOST update time: %.2f%n", md / mh));
    if (steps > 0) {
      double sh = median(stepHost), sd = median(stepDisk);
      sb.append(String.format(Locale.ROOT, "%nWhole training steps (B=%d, T=%d, %d timed each, alternating; losses equal bit for bit):%n%n",
          batch, seq, steps));
      sb.append("| moments in | step seconds (median) | all steps | tokens/s |\n| --- | --- | --- | --- |\n");
      sb.append(String.format(Locale.ROOT, "| HOST | %.3f | %s | %.0f |%n", sh, fmt(stepHost), batch * seq / sh));
      sb.append(String.format(Locale.ROOT, "| DISK | %.3f | %s | %.0f |%n", sd, fmt(stepDisk), batch * seq / sd));
      sb.append(String.format(Locale.ROOT, "%nDISK / HOST training throughput: %.3f%n", sh / sd));
    }
    System.out.print(sb);
  }

  private static double time(AdamW opt, ParameterStore s) {
    long t0 = System.nanoTime();
    opt.beginStep();
    opt.update(s.all(), Role.GRAD, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1f);
    return (System.nanoTime() - t0) / 1e9;
  }

  static double median(List<Double> v) {
    double[] a = v.stream().mapToDouble(Double::doubleValue).sorted().toArray();
    return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
  }

  static String fmt(List<Double> v) {
    return Arrays.toString(v.stream().map(x -> String.format(Locale.ROOT, "%.3f", x)).toArray());
  }

  private static void trainSteps(ModelConfig cfg, Path dir, long chunk, int steps, int batch, int seq, List<Double> host,
      List<Double> disk) throws IOException {
    Path shard = dir.resolve("tokens.bin");
    SplittableRandom rnd = new SplittableRandom(11);
    try (TokenShardWriter w = TokenShardWriter.create(shard, cfg.vocabSize())) {
      for (long i = 0; i < (long) batch * seq * (steps + 2) + 1; i++) w.write(rnd.nextInt(cfg.vocabSize()));
    }
    TrainConfig tc = TrainConfig.defaults(steps + 1, batch, seq);
    try (TokenDataset d = TokenDataset.open(shard); Transformer a = Transformer.create(cfg, Device.CPU);
        Transformer b = Transformer.create(cfg, Device.CPU);
        Trainer ta = new Trainer(a, tc, new DataLoader(d, batch, seq, false, 0));
        Trainer tb = new Trainer(b, tc, new DataLoader(d, batch, seq, false, 0),
            OffloadConfig.optimizerStateOnDisk(dir).withChunkBytes(chunk))) {
      a.initialize(1);
      b.initialize(1);
      for (int s = 0; s <= steps; s++) {
        StepResult ra = ta.step(), rb = tb.step();
        if (Float.floatToRawIntBits(ra.loss()) != Float.floatToRawIntBits(rb.loss())) {
          throw new IllegalStateException("step " + s + ": loss " + ra.loss() + " in memory but " + rb.loss() + " offloaded");
        }
        if (s > 0) {
          host.add(ra.seconds());
          disk.add(rb.seconds());
        }
      }
    } finally {
      Files.deleteIfExists(shard);
    }
  }
}

package dev.athanor.cli;

import dev.athanor.io.AtomicFiles;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * {@code athanor bench}: model throughput on random tokens. {@code --mode train}: full {@link Trainer} steps
 * (forward, backward, global-norm clipping, AdamW) at batch x seq, median step time after warm-up steps; {@code
 * --mode decode}: greedy decoding with the KV cache after a random prompt, {@code --warmup-steps} untimed rounds
 * then {@code --steps} timed ones, the prefill and every decode step timed separately ({@link DecodeBench}:
 * median prefill, median step, decode tokens/s = batch / median step seconds). Prints one JSON object (the peer
 * is bench/model/torch_train.py with the same flags, measuring the same way).
 */
final class BenchCommand {
  static final Set<String> FLAGS = Set.of("preset", "config", "model", "context", "batch", "seq", "steps", "warmup-steps",
      "mode", "device", "prompt-len", "decode-tokens", "threads");

  private BenchCommand() {}

  static void run(List<String> args, PrintStream out) {
    if (OverlapBench.requested(args)) { // copies hidden behind compute: its own flags, see OverlapBench
      OverlapBench.run(args, out);
      return;
    }
    Flags f = new Flags("bench", args, FLAGS, Set.of());
    Device device = Models.device(f.str("device", "auto"));
    Models.cpuThreads(f);
    ModelConfig mc = Models.config(f);
    String mode = f.str("mode", "train");
    int b = f.integer("batch", 8);
    SplittableRandom rng = new SplittableRandom(1);
    try (Transformer m = Transformer.create(mc, device)) {
      m.initialize(1);
      String common = String.format(Locale.ROOT,
          "\"impl\":\"athanor\",\"family\":\"%s\",\"layers\":%d,\"hidden\":%d,\"heads\":%d,\"vocab\":%d,\"params\":%d,"
              + "\"device\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,\"batch\":%d",
          mc.family().hfModelType(), mc.layers(), mc.hidden(), mc.heads(), mc.vocabSize(), mc.parameterCount(), device,
          m.computeDtype(), dev.athanor.runtime.NativeRuntime.cpuThreads(), b);
      if (mode.equals("train")) {
        int t = f.integer("seq", Math.min(256, mc.maxSeqLen()));
        int steps = f.integer("steps", 10), warm = f.integer("warmup-steps", 2);
        double[] ms = trainStepMillis(m, b, t, steps, warm, rng);
        double med = median(ms);
        double tps = b * t / (med / 1e3);
        // FLOPs per token: 6 N (matmul weights incl. the head) + 6 L T C (causal attention: 12 L T C halved)
        long n = mc.parameterCount() - (mc.family().hfModelType().equals("gpt2") ? (long) mc.maxSeqLen() * mc.hidden() : 0);
        double flopsPerToken = 6.0 * n + 6.0 * mc.layers() * t * mc.hidden();
        out.printf(Locale.ROOT, "{%s,\"mode\":\"train\",\"seq\":%d,\"steps\":%d,\"step_ms_median\":%.3f,\"step_ms\":%s,"
            + "\"tokens_per_s\":%.1f,\"flops_per_token\":%.4g,\"achieved_tflops\":%.3f}%n", common, t, steps, med,
            Arrays.toString(ms), tps, flopsPerToken, tps * flopsPerToken / 1e12);
      } else if (mode.equals("decode")) {
        int p = f.integer("prompt-len", 16), n = f.integer("decode-tokens", 64);
        int rounds = f.integer("steps", 5), warm = f.integer("warmup-steps", 2);
        if (warm < 1) throw new IllegalArgumentException("--warmup-steps must be >= 1 for decode (one full untimed round), got " + warm);
        int[] prompts = DecodeBench.randomPrompts(mc.vocabSize(), b, p, 1);
        out.println(DecodeBench.json(m, device, DecodeBench.measure(m, prompts, b, p, n, warm, rounds)));
      } else {
        throw new IllegalArgumentException("--mode must be train, decode or overlap, got '" + mode + "'");
      }
    }
  }

  /**
   * Milliseconds of {@code steps} {@link Trainer} steps (forward, backward, clipping, AdamW) after {@code warm}
   * untimed ones, on a sequential loader over a temporary shard of uniformly random tokens.
   */
  static double[] trainStepMillis(Transformer m, int b, int t, int steps, int warm, SplittableRandom rng) {
    ModelConfig mc = m.config();
    int total = steps + warm;
    TrainConfig tc = new TrainConfig(total, b, t, 1, 1e-4f, 1e-4f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f,
        false, 1);
    Path dir = null;
    try {
      dir = Files.createTempDirectory("athanor-bench");
      Path shard = dir.resolve("random.bin");
      try (TokenShardWriter w = TokenShardWriter.create(shard, mc.vocabSize())) {
        w.write(rng.ints((long) total * b * t + 1, 0, mc.vocabSize()).toArray());
      }
      double[] ms = new double[steps];
      try (TokenDataset data = TokenDataset.open(shard);
          Trainer trainer = new Trainer(m, tc, new DataLoader(data, b, t, false, 1))) {
        for (int s = -warm; s < steps; s++) {
          long t0 = System.nanoTime();
          trainer.step();
          if (m.device().isCuda()) Cuda.synchronize(m.device().index());
          if (s >= 0) ms[s] = (System.nanoTime() - t0) / 1e6;
        }
      }
      return ms;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } finally {
      if (dir != null) {
        try {
          AtomicFiles.deleteTree(dir);
        } catch (IOException ignored) {
          // a temporary directory
        }
      }
    }
  }

  static double median(double[] x) {
    return DecodeBench.median(x);
  }
}

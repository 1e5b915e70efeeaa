package dev.athanor.cli;

import dev.athanor.nn.KvCache;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Greedy KV-cache decoding, timed as prefill and per-token decode steps. The measuring code behind {@code athanor
 * bench --mode decode}, and a stand-alone main for comparing two builds with the same code.
 *
 * <p>Method (bench/model/torch_train.py's decode mode does the same in PyTorch): one cache for {@code batch}
 * sequences of {@code promptLen + newTokens}, made once and reset before each round. A round is the prefill (the
 * whole random prompt in one {@link Transformer#forwardCached} call plus the argmax of its logits: the first new
 * token) followed by {@code newTokens - 1} decode steps (one token per sequence through {@code forwardCached}
 * plus the argmax). Every prefill and every decode step is timed on its own ({@link System#nanoTime}; the logits
 * come back to the host, so each call is complete when it returns). {@code warmup} untimed rounds (at least one,
 * so every buffer and JIT path is exercised) come before {@code rounds} timed ones. Reported: the median prefill,
 * the median decode step over all timed steps of all rounds, decode tokens/s = batch / median step seconds,
 * prefill tokens/s = batch * promptLen / median prefill seconds, end-to-end tokens/s = batch * newTokens / median
 * round seconds (a round's prefill plus its steps), and the raw lists.
 *
 * <p>It uses only public API that has been stable across the model redesign ({@code Transformer.create},
 * {@code initialize}, {@code newCache}, {@code forwardCached}, {@code KvCache.reset}), so bench/run-model-cpu.sh
 * compiles this one file against an older jar too and times both builds with identical code. Keep it that way.
 */
public final class DecodeBench {
  private DecodeBench() {}

  /** The timings of one measurement, in milliseconds. */
  public record Result(int batch, int promptLen, int newTokens, int warmup, double[] prefillMs, double[] stepMs,
      double[] roundMs, long tokensChecksum) {
    public double prefillMsMedian() {
      return median(prefillMs);
    }

    public double stepMsMedian() {
      return median(stepMs);
    }

    /** New tokens per second in steady decoding: batch / median step seconds. */
    public double decodeTokensPerS() {
      return batch / (stepMsMedian() / 1e3);
    }

    public double prefillTokensPerS() {
      return (double) batch * promptLen / (prefillMsMedian() / 1e3);
    }

    /** batch * newTokens / median round seconds (prefill + all decode steps of a round). */
    public double endToEndTokensPerS() {
      return (double) batch * newTokens / (median(roundMs) / 1e3);
    }
  }

  /**
   * Times {@code rounds} rounds after {@code warmup} (>= 1) untimed ones; {@code prompts} is batch x promptLen,
   * row-major. {@code tokensChecksum} hashes every token of the last round (equal across builds whose numerics
   * agree).
   */
  public static Result measure(Transformer m, int[] prompts, int batch, int promptLen, int newTokens, int warmup,
      int rounds) {
    if (warmup < 1) throw new IllegalArgumentException("warm-up rounds must be >= 1, got " + warmup);
    if (rounds < 1) throw new IllegalArgumentException("timed rounds must be >= 1, got " + rounds);
    if (newTokens < 2) throw new IllegalArgumentException("new tokens must be >= 2 (one from the prefill, then steps), got " + newTokens);
    if (promptLen < 1) throw new IllegalArgumentException("prompt length must be >= 1, got " + promptLen);
    if (prompts.length != batch * promptLen) {
      throw new IllegalArgumentException("prompts hold " + prompts.length + " ids, expected " + batch + " x " + promptLen);
    }
    int ctx = m.config().maxSeqLen();
    if (promptLen + newTokens > ctx) {
      throw new IllegalArgumentException("prompt " + promptLen + " + new tokens " + newTokens + " exceed the model's context " + ctx);
    }
    int vocab = m.config().vocabSize(), steps = newTokens - 1;
    double[] prefill = new double[rounds], step = new double[rounds * steps], round = new double[rounds];
    long checksum = 0;
    int[] next = new int[batch];
    try (KvCache cache = m.newCache(batch, promptLen + newTokens)) {
      for (int r = -warmup; r < rounds; r++) {
        cache.reset();
        checksum = 17;
        long t0 = System.nanoTime();
        argmax(m.forwardCached(cache, prompts, batch, promptLen), batch, vocab, next);
        long t1 = System.nanoTime();
        checksum = hash(checksum, next);
        if (r >= 0) prefill[r] = (t1 - t0) / 1e6;
        long sum = t1 - t0;
        for (int i = 0; i < steps; i++) {
          long s0 = System.nanoTime();
          argmax(m.forwardCached(cache, next, batch, 1), batch, vocab, next);
          long s1 = System.nanoTime();
          checksum = hash(checksum, next);
          sum += s1 - s0;
          if (r >= 0) step[r * steps + i] = (s1 - s0) / 1e6;
        }
        if (r >= 0) round[r] = sum / 1e6;
      }
    }
    return new Result(batch, promptLen, newTokens, warmup, prefill, step, round, checksum);
  }

  /** Uniformly random prompts (batch x promptLen), the same for a given seed in every build. */
  public static int[] randomPrompts(int vocab, int batch, int promptLen, long seed) {
    return new SplittableRandom(seed).ints((long) batch * promptLen, 0, vocab).toArray();
  }

  /** One JSON object (no newline): the model, the settings, the medians and the raw lists. */
  public static String json(Transformer m, Device device, Result r) {
    Map<String, Object> j = header(m, device, r.batch());
    j.put("mode", "decode");
    j.put("prompt_len", r.promptLen());
    j.put("decode_tokens", r.newTokens());
    j.put("warmup_steps", r.warmup());
    j.put("steps", r.prefillMs().length);
    j.put("prefill_ms_median", Json.round(r.prefillMsMedian(), 4));
    j.put("decode_ms_per_token_median", Json.round(r.stepMsMedian(), 4));
    j.put("decode_tokens_per_s", Json.round(r.decodeTokensPerS(), 2));
    j.put("prefill_tokens_per_s", Json.round(r.prefillTokensPerS(), 1));
    j.put("end_to_end_tokens_per_s", Json.round(r.endToEndTokensPerS(), 2));
    j.put("tokens_per_s", Json.round(r.decodeTokensPerS(), 2));
    j.put("tokens_checksum", r.tokensChecksum());
    j.put("prefill_ms", Json.round(r.prefillMs(), 4));
    j.put("round_ms", Json.round(r.roundMs(), 4));
    j.put("decode_step_ms", Json.round(r.stepMs(), 4));
    return Json.write(j);
  }

  /** The fields every bench line starts with: the implementation, the model, the device and the batch. */
  static Map<String, Object> header(Transformer m, Device device, int batch) {
    ModelConfig mc = m.config();
    Map<String, Object> j = new LinkedHashMap<>();
    j.put("impl", "athanor");
    j.put("family", mc.family().hfModelType());
    j.put("layers", mc.layers());
    j.put("hidden", mc.hidden());
    j.put("heads", mc.heads());
    j.put("vocab", mc.vocabSize());
    j.put("params", mc.parameterCount());
    j.put("device", device.toString());
    j.put("dtype", m.computeDtype().toString());
    j.put("threads", NativeRuntime.cpuThreads());
    j.put("batch", batch);
    return j;
  }

  /** Builds the model, measures, returns the JSON line (what {@code bench --mode decode} prints). */
  public static String run(ModelConfig mc, Device device, int batch, int promptLen, int newTokens, int warmup, int rounds) {
    try (Transformer m = Transformer.create(mc, device)) {
      m.initialize(1);
      int[] prompts = randomPrompts(mc.vocabSize(), batch, promptLen, 1);
      return json(m, device, measure(m, prompts, batch, promptLen, newTokens, warmup, rounds));
    }
  }

  /**
   * Stand-alone use, for timing another build with this same code (bench/run-model-cpu.sh compiles this file
   * against that build's jar, with picocli on the class path); {@code --help} lists the options.
   */
  public static void main(String[] args) {
    System.exit(new CommandLine(new Standalone()).execute(args));
  }

  /** The stand-alone command line: the decode options of {@code athanor bench --mode decode}, with its defaults here. */
  @Command(name = "DecodeBench", mixinStandardHelpOptions = true,
      description = "Greedy KV-cache decoding of random prompts, timed as prefill and per-token steps; one JSON line.")
  static final class Standalone implements Callable<Integer> {
    @Option(names = "--preset", defaultValue = "gpt2-tiny", description = "model preset. Default: ${DEFAULT-VALUE}")
    String preset;

    @Option(names = "--device", defaultValue = "cpu", description = "cpu, cuda or cuda:N. Default: ${DEFAULT-VALUE}")
    String device;

    @Option(names = "--threads", defaultValue = "0", description = "CPU threads (0: the default)")
    int threads;

    @Option(names = "--batch", defaultValue = "1", description = "Default: ${DEFAULT-VALUE}")
    int batch;

    @Option(names = "--prompt-len", defaultValue = "16", description = "Default: ${DEFAULT-VALUE}")
    int promptLen;

    @Option(names = "--decode-tokens", defaultValue = "64", description = "Default: ${DEFAULT-VALUE}")
    int newTokens;

    @Option(names = "--steps", defaultValue = "5", description = "timed rounds. Default: ${DEFAULT-VALUE}")
    int rounds;

    @Option(names = "--warmup-steps", defaultValue = "1", description = "untimed rounds first. Default: ${DEFAULT-VALUE}")
    int warmup;

    @Override
    public Integer call() {
      if (threads > 0) NativeRuntime.setCpuThreads(threads);
      System.out.println(run(ModelConfig.preset(preset), Device.parse(device), batch, promptLen, newTokens, warmup, rounds));
      return 0;
    }
  }

  private static void argmax(float[] logits, int batch, int vocab, int[] out) {
    for (int b = 0; b < batch; b++) {
      int best = 0, o = b * vocab;
      float bv = logits[o];
      for (int v = 1; v < vocab; v++) {
        if (logits[o + v] > bv) {
          bv = logits[o + v];
          best = v;
        }
      }
      out[b] = best;
    }
  }

  private static long hash(long h, int[] tokens) {
    for (int t : tokens) h = h * 31 + t;
    return h;
  }

  static double median(double[] x) {
    double[] s = x.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }
}

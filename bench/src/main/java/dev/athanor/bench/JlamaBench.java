package dev.athanor.bench;

import com.github.tjake.jlama.model.AbstractModel;
import com.github.tjake.jlama.model.ModelSupport;
import com.github.tjake.jlama.safetensors.DType;
import com.github.tjake.jlama.tensor.AbstractTensor;
import com.github.tjake.jlama.tensor.KvBufferCache;
import com.github.tjake.jlama.tensor.operations.TensorOperationsProvider;
import com.github.tjake.jlama.util.MachineSpec;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.KvCache;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * Greedy CPU decoding of one Hugging Face Llama model (F32) by Athanor and by Jlama ({@code
 * com.github.tjake:jlama-core}), in one JVM, same thread count, same prompt ids, rounds alternating between the two;
 * token agreement checked.
 *
 * <p><b>What is timed</b> (as in {@code dev.athanor.cli.DecodeBench} and bench/model/torch_train.py): a round is the
 * prefill (the whole prompt in one call, then the argmax of the last position's logits: the first new token) and
 * {@code newTokens - 1} decode steps (one token through the model with its KV cache, then the argmax), each timed on
 * its own with {@link System#nanoTime}. Athanor: {@code Transformer.forwardCached} (logits come back to a Java
 * array) and an argmax in Java. Jlama: {@code AbstractModel.batchForward} (its batched prompt path, as its
 * {@code generate} uses) or {@code forward(token, position, kv)}, then {@code AbstractModel.sample(output, 0, ...)}
 * (its output norm, the head as a parallel dot product over the vocabulary, and the argmax at temperature 0). Each
 * side keeps one KV cache for all rounds (Athanor: reset; Jlama: positions are overwritten): Jlama's is the
 * in-memory "ephemeral" buffer (its {@code generate} would map files in a temporary directory instead). {@code warmup}
 * untimed rounds of each, then {@code rounds} timed rounds; the order alternates every round (A J, J A, ...), so
 * drifting load hits both alike. The load average is read at the start of every timed round.
 *
 * <p><b>Agreement</b>: the free-running greedy tokens of every round are compared (within each side: determinism;
 * across sides: the first divergence, if any). Then one untimed teacher-forced pass: Jlama is fed Athanor's tokens,
 * so the logits of both are compared at every position with the same prefix: max |difference|, the argmax
 * disagreements, and Athanor's smallest top-1 / top-2 margin (how close the run came to a tie); the logits right
 * after the prefill are reported apart from those of the decode steps. A second teacher-forced Jlama pass feeds the
 * prompt one token at a time ({@code forward} per token instead of {@code batchForward}), which tells an error of
 * the batched prefill from a general one.
 *
 * <p><b>Jlama's path</b>: {@code --jlama-ops panama} (default) sets {@code jlama.force_panama_tensor_operations},
 * so its pure-Java Vector API operations run even when jlama-native is on the class path; {@code native} leaves the
 * choice to Jlama (its native SIMD library when {@code jlama-native} is on the class path). The report names the
 * operations class Jlama actually picked. Jlama runs with working memory and quantized working memory F32 (no
 * quantization).
 *
 * <p>Usage: {@code JlamaBench --model DIR --threads N --prompt-len P --new-tokens N --warmup W --rounds R
 * --jlama-ops panama|native --out PREFIX [--command TEXT]}; writes {@code PREFIX.json} and {@code PREFIX.md}. Run
 * with {@code --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED} (bench/run-jlama.sh).
 */
public final class JlamaBench {
  /** A fixed Java snippet; its first tokens (after BOS) are the prompt. */
  static final String PROMPT_TEXT = "/**\n * Returns the number of elements in this list. If this list contains more than\n"
      + " * {@code Integer.MAX_VALUE} elements, returns {@code Integer.MAX_VALUE}.\n *\n * @return the number of elements"
      + " in this list\n */\npublic int size() {\n    return size;\n}\n\n/**\n * Returns {@code true} if this list contains"
      + " no elements.\n *\n * @return {@code true} if this list contains no elements\n */\npublic boolean isEmpty() {\n";

  private JlamaBench() {}

  /** One round of one side: the prefill time, every step's time, the tokens (first from the prefill). */
  record Round(double prefillMs, double[] stepMs, int[] tokens, double load1) {}

  /** What each side must do. */
  interface Side {
    String name();

    /** Runs one round; when {@code logits} is non-null, the logits of every position are stored into it. */
    Round round(int[] prompt, int newTokens, int[] forced, float[][] logits);
  }

  static final class AthanorSide implements Side, AutoCloseable {
    final Transformer model;
    final KvCache cache;
    final int vocab;

    AthanorSide(Path dir, int maxLen) {
      model = HfModelDir.loadModel(dir, Device.CPU);
      cache = model.newCache(1, maxLen);
      vocab = model.config().vocabSize();
    }

    @Override
    public String name() {
      return "athanor";
    }

    @Override
    public Round round(int[] prompt, int newTokens, int[] forced, float[][] logits) {
      int[] tokens = new int[newTokens];
      double[] step = new double[newTokens - 1];
      double load = load1();
      cache.reset();
      long t0 = System.nanoTime();
      float[] lg = model.forwardCached(cache, prompt, 1, prompt.length);
      tokens[0] = argmax(lg, vocab);
      long t1 = System.nanoTime();
      if (logits != null) logits[0] = lg.clone();
      int[] in = new int[1];
      for (int i = 1; i < newTokens; i++) {
        in[0] = forced != null ? forced[i - 1] : tokens[i - 1];
        long s0 = System.nanoTime();
        lg = model.forwardCached(cache, in, 1, 1);
        tokens[i] = argmax(lg, vocab);
        long s1 = System.nanoTime();
        step[i - 1] = (s1 - s0) / 1e6;
        if (logits != null) logits[i] = lg.clone();
      }
      return new Round((t1 - t0) / 1e6, step, tokens, load);
    }

    @Override
    public void close() {
      cache.close();
      model.close();
    }
  }

  static final class JlamaSide implements Side, AutoCloseable {
    final AbstractModel model;
    final KvBufferCache.KvBuffer kv;
    final AbstractTensor logitsBuf;
    final int vocab;
    /** Prefill one prompt token at a time through {@code forward} instead of {@code batchForward} (a diagnostic). */
    boolean serialPrefill;

    JlamaSide(Path dir, int threads) {
      model = ModelSupport.loadModel(dir.toFile(), null, DType.F32, DType.F32, Optional.empty(), Optional.of(threads));
      kv = new KvBufferCache(model).getEphemeralKvBuffer();
      vocab = model.getConfig().vocabularySize;
      logitsBuf = model.makeDenseTensor(1, vocab);
    }

    @Override
    public String name() {
      return "jlama";
    }

    @Override
    public Round round(int[] prompt, int newTokens, int[] forced, float[][] logits) {
      int[] tokens = new int[newTokens];
      double[] step = new double[newTokens - 1];
      double load = load1();
      long t0 = System.nanoTime();
      if (serialPrefill) {
        AbstractTensor last = null;
        for (int p = 0; p < prompt.length; p++) {
          if (last != null) last.close();
          last = model.forward(prompt[p], p, kv, Optional.empty());
        }
        tokens[0] = model.sample(last, 0f, 0f, logitsBuf);
        last.close();
      } else {
        AbstractTensor last = model.batchForward(prompt, 0, kv);
        tokens[0] = model.sample(last.slice(last.shape().first() - 1), 0f, 0f, logitsBuf);
        last.close();
      }
      long t1 = System.nanoTime();
      if (logits != null) logits[0] = read(logitsBuf, vocab);
      for (int i = 1; i < newTokens; i++) {
        int in = forced != null ? forced[i - 1] : tokens[i - 1];
        long s0 = System.nanoTime();
        AbstractTensor out = model.forward(in, prompt.length + i - 1, kv, Optional.empty());
        tokens[i] = model.sample(out, 0f, 0f, logitsBuf);
        out.close();
        long s1 = System.nanoTime();
        step[i - 1] = (s1 - s0) / 1e6;
        if (logits != null) logits[i] = read(logitsBuf, vocab);
      }
      return new Round((t1 - t0) / 1e6, step, tokens, load);
    }

    private static float[] read(AbstractTensor t, int n) {
      float[] r = new float[n];
      for (int i = 0; i < n; i++) r[i] = t.get(0, i);
      return r;
    }

    @Override
    public void close() {
      logitsBuf.close();
      kv.close();
      model.close();
    }
  }

  public static void main(String[] args) throws IOException {
    Path dir = null, out = null;
    int threads = 2, promptLen = 64, newTokens = 128, warmup = 3, rounds = 10;
    String ops = "panama", command = "";
    for (int i = 0; i < args.length; i += 2) {
      if (i + 1 >= args.length) throw new IllegalArgumentException("flag " + args[i] + " needs a value");
      String v = args[i + 1];
      switch (args[i]) {
        case "--model" -> dir = Path.of(v);
        case "--threads" -> threads = Integer.parseInt(v);
        case "--prompt-len" -> promptLen = Integer.parseInt(v);
        case "--new-tokens" -> newTokens = Integer.parseInt(v);
        case "--warmup" -> warmup = Integer.parseInt(v);
        case "--rounds" -> rounds = Integer.parseInt(v);
        case "--jlama-ops" -> ops = v;
        case "--out" -> out = Path.of(v);
        case "--command" -> command = v;
        default -> throw new IllegalArgumentException("unknown flag " + args[i]);
      }
    }
    if (dir == null || out == null) throw new IllegalArgumentException("--model DIR and --out PREFIX are required");
    if (!ops.equals("panama") && !ops.equals("native")) throw new IllegalArgumentException("--jlama-ops panama|native, got " + ops);
    if (warmup < 1 || rounds < 1 || newTokens < 2 || promptLen < 1) throw new IllegalArgumentException("bad sizes");
    if (ops.equals("panama")) System.setProperty("jlama.force_panama_tensor_operations", "true");
    String loadBefore = loadavg();

    NativeRuntime.setCpuThreads(threads);
    ModelConfig mc = HfModelDir.readConfig(dir);
    if (promptLen + newTokens > mc.maxSeqLen()) throw new IllegalArgumentException("prompt + new tokens exceed the context " + mc.maxSeqLen());
    Tokenizer tok = Tokenizers.forModelDir(dir, mc);
    int[] text = tok.encode(PROMPT_TEXT);
    if (text.length + 1 < promptLen) throw new IllegalArgumentException("the prompt text has only " + (text.length + 1) + " tokens");
    int[] prompt = new int[promptLen];
    prompt[0] = mc.bosTokenId();
    System.arraycopy(text, 0, prompt, 1, promptLen - 1);

    try (tok; AthanorSide a = new AthanorSide(dir, promptLen + newTokens); JlamaSide j = new JlamaSide(dir, threads)) {
      String jlamaOps = TensorOperationsProvider.get().name() + " (" + TensorOperationsProvider.get().getClass().getName() + ")";
      long[] jlamaEnc = j.model.getTokenizer().encode(PROMPT_TEXT);
      boolean tokenizersAgree = Arrays.equals(Arrays.stream(jlamaEnc).mapToInt(x -> (int) x).toArray(), text);
      System.err.printf(Locale.ROOT, "model %s: %s%nJlama operations: %s, vector type %s%n", dir, mc, jlamaOps, MachineSpec.VECTOR_TYPE);

      List<Side> sides = List.of(a, j);
      List<Round> ra = new ArrayList<>(), rj = new ArrayList<>();
      for (int r = -warmup; r < rounds; r++) {
        boolean aFirst = Math.floorMod(r, 2) == 0;
        for (Side s : aFirst ? sides : List.of(j, a)) {
          Round x = s.round(prompt, newTokens, null, null);
          if (r >= 0) (s == a ? ra : rj).add(x);
          System.err.printf(Locale.ROOT, "%s round %d: prefill %.2f ms, step median %.3f ms (load %.2f)%n", s.name(), r,
              x.prefillMs(), median(x.stepMs()), x.load1());
        }
      }
      // teacher-forced pass: both fed Athanor's greedy tokens
      float[][] la = new float[newTokens][], lj = new float[newTokens][];
      Round fa = a.round(prompt, newTokens, null, la);
      Round fj = j.round(prompt, newTokens, fa.tokens(), lj);
      // the same with Jlama's prompt fed one token at a time: tells a batched-prefill error from a general one
      float[][] ljSerial = new float[newTokens][];
      j.serialPrefill = true;
      j.round(prompt, newTokens, fa.tokens(), ljSerial);
      j.serialPrefill = false;
      LogitStats serial = compare(la, ljSerial);
      String loadAfter = loadavg();

      String json = json(dir, mc, threads, promptLen, newTokens, warmup, rounds, prompt, jlamaOps, tokenizersAgree, ra, rj, fa,
          fj, la, lj, serial, loadBefore, loadAfter, command);
      Files.writeString(Path.of(out + ".json"), json);
      String md = markdown(dir, mc, threads, promptLen, newTokens, warmup, rounds, jlamaOps, tokenizersAgree, ra, rj, fa, fj, la,
          lj, serial, loadBefore, loadAfter, command, tok);
      Files.writeString(Path.of(out + ".md"), md);
      System.out.print(md);
    }
  }

  // ------------------------------------------------------------------ analysis

  /** Agreement of the free-running tokens: -1 when every round of both sides produced the same tokens. */
  static int firstDivergence(int[] x, int[] y) {
    for (int i = 0; i < Math.min(x.length, y.length); i++) if (x[i] != y[i]) return i;
    return x.length == y.length ? -1 : Math.min(x.length, y.length);
  }

  static boolean allSame(List<Round> rs) {
    for (Round r : rs) if (!Arrays.equals(r.tokens(), rs.get(0).tokens())) return false;
    return true;
  }

  /**
   * Teacher-forced logit comparison; position 0 is the prefill's output (the logits after the batched prompt), the
   * rest are decode steps.
   */
  record LogitStats(double maxAbsDiff, int maxAt, double prefillMaxAbsDiff, double decodeMaxAbsDiff, double maxAbsLogit,
      int argmaxDisagreements, int firstDisagreement, double minMargin, int minMarginAt) {}

  static LogitStats compare(float[][] la, float[][] lj) {
    double maxDiff = 0, maxLogit = 0, minMargin = Double.MAX_VALUE, prefillDiff = 0, decodeDiff = 0;
    int maxAt = -1, dis = 0, firstDis = -1, minAt = -1;
    for (int i = 0; i < la.length; i++) {
      for (int v = 0; v < la[i].length; v++) {
        double d = Math.abs(la[i][v] - lj[i][v]);
        if (d > maxDiff) {
          maxDiff = d;
          maxAt = i;
        }
        if (i == 0) prefillDiff = Math.max(prefillDiff, d);
        else decodeDiff = Math.max(decodeDiff, d);
        maxLogit = Math.max(maxLogit, Math.abs(la[i][v]));
      }
      int[] ta = top2(la[i]);
      if (ta[0] != top2(lj[i])[0]) {
        dis++;
        if (firstDis < 0) firstDis = i;
      }
      double margin = la[i][ta[0]] - la[i][ta[1]];
      if (margin < minMargin) {
        minMargin = margin;
        minAt = i;
      }
    }
    return new LogitStats(maxDiff, maxAt, prefillDiff, decodeDiff, maxLogit, dis, firstDis, minMargin, minAt);
  }

  static int[] top2(float[] x) {
    int a = 0, b = -1;
    for (int i = 1; i < x.length; i++) {
      if (x[i] > x[a]) {
        b = a;
        a = i;
      } else if (b < 0 || x[i] > x[b]) {
        b = i;
      }
    }
    return new int[] {a, b};
  }

  static int argmax(float[] x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
  }

  static double median(double[] x) {
    double[] s = x.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  static double[] prefills(List<Round> rs) {
    return rs.stream().mapToDouble(Round::prefillMs).toArray();
  }

  static double[] steps(List<Round> rs) {
    return rs.stream().flatMapToDouble(r -> Arrays.stream(r.stepMs())).toArray();
  }

  static double[] loads(List<Round> rs) {
    return rs.stream().mapToDouble(Round::load1).toArray();
  }

  static double load1() {
    try {
      return Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]);
    } catch (IOException | RuntimeException e) {
      return Double.NaN;
    }
  }

  static String loadavg() {
    try {
      String[] f = Files.readString(Path.of("/proc/loadavg")).split(" ");
      return f[0] + " " + f[1] + " " + f[2];
    } catch (IOException e) {
      return "unknown";
    }
  }

  // ------------------------------------------------------------------ reports

  private static String json(Path dir, ModelConfig mc, int threads, int promptLen, int newTokens, int warmup, int rounds,
      int[] prompt, String jlamaOps, boolean tokenizersAgree, List<Round> ra, List<Round> rj, Round fa, Round fj, float[][] la,
      float[][] lj, LogitStats serial, String loadBefore, String loadAfter, String command) {
    LogitStats st = compare(la, lj);
    StringBuilder sb = new StringBuilder("{");
    sb.append(String.format(Locale.ROOT, "\"model_dir\":\"%s\",\"model\":\"%s\",\"params\":%d,\"dtype\":\"F32\",\"threads\":%d,",
        esc(dir.toString()), esc(mc.toString()), mc.parameterCount(), threads));
    sb.append(String.format(Locale.ROOT, "\"prompt_len\":%d,\"new_tokens\":%d,\"warmup_rounds\":%d,\"rounds\":%d,",
        promptLen, newTokens, warmup, rounds));
    sb.append("\"prompt_ids\":").append(Arrays.toString(prompt)).append(',');
    sb.append("\"jlama_ops\":\"").append(esc(jlamaOps)).append("\",\"jlama_vector_type\":\"").append(MachineSpec.VECTOR_TYPE)
        .append("\",\"tokenizers_agree_on_prompt\":").append(tokenizersAgree).append(',');
    sb.append("\"load_before\":\"").append(loadBefore).append("\",\"load_after\":\"").append(loadAfter).append("\",");
    sb.append("\"command\":\"").append(esc(command)).append("\",\"java\":\"").append(esc(System.getProperty("java.vm.name") + " "
        + Runtime.version())).append("\",");
    for (List<Round> rs : List.of(ra, rj)) {
      String k = rs == ra ? "athanor" : "jlama";
      sb.append('"').append(k).append("\":{");
      sb.append(String.format(Locale.ROOT, "\"prefill_ms_median\":%.4f,\"decode_ms_per_token_median\":%.4f,", median(prefills(rs)),
          median(steps(rs))));
      sb.append("\"deterministic_across_rounds\":").append(allSame(rs)).append(',');
      sb.append("\"tokens\":").append(Arrays.toString(rs.get(0).tokens())).append(',');
      sb.append("\"prefill_ms\":").append(list(prefills(rs))).append(',');
      sb.append("\"round_step_ms_median\":").append(list(rs.stream().mapToDouble(r -> median(r.stepMs())).toArray())).append(',');
      sb.append("\"load1_at_round_start\":").append(list(loads(rs))).append(',');
      sb.append("\"decode_step_ms\":").append(list(steps(rs))).append("},");
    }
    sb.append(String.format(Locale.ROOT, "\"ratio_decode_jlama_over_athanor\":%.4f,\"ratio_prefill_jlama_over_athanor\":%.4f,",
        median(steps(rj)) / median(steps(ra)), median(prefills(rj)) / median(prefills(ra))));
    sb.append("\"free_running_first_divergence\":").append(firstDivergence(ra.get(0).tokens(), rj.get(0).tokens())).append(',');
    sb.append(String.format(Locale.ROOT,
        "\"teacher_forced\":{\"max_abs_logit_diff\":%.6g,\"at_position\":%d,\"after_prefill_max_abs_logit_diff\":%.6g,"
            + "\"decode_steps_max_abs_logit_diff\":%.6g,\"max_abs_logit\":%.4f,\"argmax_disagreements\":%d,"
            + "\"first_disagreement\":%d,\"athanor_min_top2_margin\":%.6g,\"min_margin_at\":%d,\"jlama_tokens\":%s}",
        st.maxAbsDiff(), st.maxAt(), st.prefillMaxAbsDiff(), st.decodeMaxAbsDiff(), st.maxAbsLogit(), st.argmaxDisagreements(), st.firstDisagreement(), st.minMargin(),
        st.minMarginAt(), Arrays.toString(fj.tokens())));
    sb.append(String.format(Locale.ROOT, ",\"teacher_forced_jlama_serial_prefill\":{\"after_prefill_max_abs_logit_diff\":%.6g,"
        + "\"decode_steps_max_abs_logit_diff\":%.6g,\"argmax_disagreements\":%d}", serial.prefillMaxAbsDiff(),
        serial.decodeMaxAbsDiff(), serial.argmaxDisagreements()));
    return sb.append("}\n").toString();
  }

  private static String markdown(Path dir, ModelConfig mc, int threads, int promptLen, int newTokens, int warmup, int rounds,
      String jlamaOps, boolean tokenizersAgree, List<Round> ra, List<Round> rj, Round fa, Round fj, float[][] la, float[][] lj,
      LogitStats serial, String loadBefore, String loadAfter, String command, Tokenizer tok) {
    LogitStats st = compare(la, lj);
    double pa = median(prefills(ra)), pj = median(prefills(rj)), sa = median(steps(ra)), sj = median(steps(rj));
    double[] allLoads = java.util.stream.DoubleStream.concat(Arrays.stream(loads(ra)), Arrays.stream(loads(rj))).toArray();
    String cpu = "unknown";
    try {
      cpu = Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name")).findFirst()
          .map(l -> l.substring(l.indexOf(':') + 1).trim()).orElse("unknown");
    } catch (IOException ignored) {
      // leave "unknown"
    }
    List<String> o = new ArrayList<>();
    o.add("# CPU greedy decoding: Athanor vs Jlama (same run, same model)");
    o.add("");
    o.add(String.format(Locale.ROOT, "- machine: %s, %d visible CPUs; **%d threads for both** (Athanor `NativeRuntime.setCpuThreads`, "
        + "Jlama `PhysicalCoreExecutor` via `ModelSupport.loadModel(..., threadCount)`)", cpu, Runtime.getRuntime().availableProcessors(),
        threads));
    o.add(String.format(Locale.ROOT, "- load average before %s, after %s; 1-min load at the start of the timed rounds: %.2f to %.2f "
        + "(median %.2f; the benchmark itself keeps about %d cores busy)", loadBefore, loadAfter,
        Arrays.stream(allLoads).min().orElse(0), Arrays.stream(allLoads).max().orElse(0), median(allLoads), threads));
    o.add(String.format(Locale.ROOT, "- model: `%s`, Hugging Face Llama (config.json + model.safetensors, F32), %d layers, hidden %d, "
        + "%d heads, %d KV heads, MLP %d, vocab %d, context %d, %s head, %.1fM parameters (made by `BenchLlama`: r50k_base cut to "
        + "4,094 BPE tokens + BOS/EOS, trained briefly with Athanor on JDK sources)", dir, mc.layers(), mc.hidden(), mc.heads(),
        mc.kvHeads(), mc.intermediate(), mc.vocabSize(), mc.maxSeqLen(), mc.tiedEmbeddings() ? "tied" : "untied",
        mc.parameterCount() / 1e6));
    o.add("- Jlama: `com.github.tjake:jlama-core` 0.8.4, working memory F32, no quantization; operations: **" + jlamaOps + "**, "
        + "vector type " + MachineSpec.VECTOR_TYPE);
    o.add("- Java: " + System.getProperty("java.vm.name") + " " + Runtime.version());
    o.add(String.format(Locale.ROOT, "- batch 1, prompt %d tokens (BOS + the start of a fixed Javadoc snippet), %d new tokens, greedy; "
        + "%d warm-up rounds of each, then %d timed rounds alternating (A J, J A, ...)%s", promptLen, newTokens, warmup, rounds,
        tokenizersAgree ? "; Jlama's tokenizer encodes the snippet to the same ids as Athanor's" : "; NOTE: Jlama's tokenizer "
            + "encodes the snippet differently from Athanor's (the ids, not the text, are the prompt of both)"));
    if (!command.isEmpty()) o.add("- command: `" + command + "`");
    o.add("");
    o.add("| | Athanor | Jlama (" + (jlamaOps.startsWith("Panama") ? "Vector API" : jlamaOps.split(" \\(")[0]) + ") | Jlama / Athanor |");
    o.add("| --- | --- | --- | --- |");
    o.add(String.format(Locale.ROOT, "| prefill, %d tokens (median ms) | %.2f | %.2f | %.2f |", promptLen, pa, pj, pj / pa));
    o.add(String.format(Locale.ROOT, "| decode, per token (median ms) | %.3f | %.3f | %.2f |", sa, sj, sj / sa));
    o.add(String.format(Locale.ROOT, "| decode tokens/s | %.1f | %.1f | %.2f |", 1e3 / sa, 1e3 / sj, sa / sj));
    o.add("");
    o.add("Medians over all timed rounds: prefill of " + rounds + " rounds; decode over " + rounds + " x " + (newTokens - 1)
        + " steps. Per-round step medians (ms): Athanor " + list(ra.stream().mapToDouble(r -> median(r.stepMs())).toArray())
        + ", Jlama " + list(rj.stream().mapToDouble(r -> median(r.stepMs())).toArray()) + ".");
    o.add("");
    o.add("## Token agreement");
    o.add("");
    int div = firstDivergence(ra.get(0).tokens(), rj.get(0).tokens());
    o.add("- deterministic across rounds: Athanor " + (allSame(ra) ? "yes" : "NO") + ", Jlama " + (allSame(rj) ? "yes" : "NO"));
    if (div < 0) {
      o.add("- free-running greedy decoding: **identical**, all " + newTokens + " new tokens");
    } else {
      int[] ta = top2(la[div]), tj = top2(lj[div]);
      o.add(String.format(Locale.ROOT, "- free-running greedy decoding: **first divergence at new token %d** (Athanor %d, Jlama %d); "
          + "there, with the same prefix: Athanor's top two %d (%.5f) and %d (%.5f), Jlama's %d (%.5f) and %d (%.5f)", div,
          ra.get(0).tokens()[div], rj.get(0).tokens()[div], ta[0], la[div][ta[0]], ta[1], la[div][ta[1]], tj[0], lj[div][tj[0]],
          tj[1], lj[div][tj[1]]));
    }
    o.add(String.format(Locale.ROOT, "- teacher-forced (Jlama fed Athanor's tokens), all %d positions: max |logit difference| %.3g "
        + "(at new token %d; after the batched prefill %.3g, over the decode steps %.3g; the largest |logit| is %.2f), argmax "
        + "disagreements: %d%s; Athanor's smallest top-1/top-2 margin: %.4f (at new token %d)", newTokens, st.maxAbsDiff(),
        st.maxAt(), st.prefillMaxAbsDiff(), st.decodeMaxAbsDiff(), st.maxAbsLogit(), st.argmaxDisagreements(),
        st.firstDisagreement() >= 0 ? " (first at " + st.firstDisagreement() + ")" : "", st.minMargin(), st.minMarginAt()));
    o.add(String.format(Locale.ROOT, "- the same with Jlama's prompt fed one token at a time (`forward` per token instead of "
        + "`batchForward`; untimed): max |logit difference| after the prefill %.3g, over the decode steps %.3g, argmax "
        + "disagreements: %d", serial.prefillMaxAbsDiff(), serial.decodeMaxAbsDiff(), serial.argmaxDisagreements()));
    o.add("- the continuation (Athanor's tokens, decoded): `" + tok.decode(ra.get(0).tokens()).replace("\n", "\\n").replace("`", "'")
        + "`");
    return String.join("\n", o) + "\n";
  }

  private static String list(double[] x) {
    StringBuilder sb = new StringBuilder("[");
    for (int i = 0; i < x.length; i++) sb.append(i == 0 ? "" : ",").append(String.format(Locale.ROOT, "%.4f", x[i]));
    return sb.append(']').toString();
  }

  private static String esc(String s) {
    return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
  }
}

package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.HfTokenizer;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.io.tokenizer.Tokenizers;
import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.params.ParameterStore;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The score and generate commands against the library they wrap, and the CLI's handling of bad input. */
class CommandsTest {
  @TempDir static Path tmp;
  static Path modelDir;
  static final ModelConfig CFG = ModelConfig.gpt2(50257, 48, 1, 32, 1);

  record Out(int code, String out, String err) {}

  static Out run(String... args) {
    ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
    int code = Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8), new PrintStream(e, true, StandardCharsets.UTF_8));
    return new Out(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
  }

  @BeforeAll
  static void saveAModel() {
    modelDir = tmp.resolve("model");
    savePeakedModel(modelDir, CFG, 3);
  }

  /** A model of {@code cfg} with seeded weights scaled so that its predictions are peaked, saved to {@code dir}. */
  static void savePeakedModel(Path dir, ModelConfig cfg, long seed) {
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(seed);
      for (ParameterStore.Param p : m.parameters().list()) {
        if (p.spec().shape().length < 2) continue;
        float[] w = p.master().toFloatArray();
        for (int i = 0; i < w.length; i++) w[i] *= 20;
        p.master().copyFrom(w);
      }
      HfModelDir.save(dir, cfg, m.weights(), DType.F32);
    }
  }

  @Test
  void scorePrintsTheModelsLogProbabilities() throws Exception {
    Path ids = tmp.resolve("ids.txt");
    Files.writeString(ids, "464 2068 7586 21831 18045 625 262\n");
    Out r = run("score", "--model", modelDir.toString(), "--tokens", ids.toString(), "--device", "cpu");
    assertEquals(0, r.code(), r.err());
    JsonObject j = JsonParser.parseString(r.out().trim()).getAsJsonObject();
    assertEquals(7, j.get("tokens").getAsInt());
    assertEquals(6, j.get("scored").getAsInt());
    JsonArray lp = j.getAsJsonArray("logprobs");
    int[] in = {464, 2068, 7586, 21831, 18045, 625}, tg = {2068, 7586, 21831, 18045, 625, 262};
    try (Transformer m = HfModelDir.loadModel(modelDir, Device.CPU)) {
      m.forward(in, tg, 1, 6);
      float[] losses = m.tokenLosses();
      double mean = 0;
      for (int i = 0; i < 6; i++) {
        assertEquals(-losses[i], lp.get(i).getAsFloat(), "log-probability of token " + (i + 1));
        mean += losses[i] / 6;
      }
      assertEquals(mean, j.get("mean_loss").getAsDouble(), 1e-5);
    }
  }

  @Test
  void generateStreamsWhatTheGeneratorProduces() {
    Tokenizer tok = Tokenizers.gpt2();
    String prompt = "The furnace";
    Out r = run("generate", "--model", modelDir.toString(), "--prompt", prompt, "--temperature", "0", "--max-tokens", "12",
        "--no-stop", "--device", "cpu");
    assertEquals(0, r.code(), r.err());
    try (Transformer m = HfModelDir.loadModel(modelDir, Device.CPU)) {
      int[] ids = new Generator(m).generate(tok.encode(prompt), new SamplingConfig(0f, 0, 1f, 0, 12, false), null);
      assertEquals(12, ids.length);
      assertEquals(prompt + tok.decode(ids), r.out().stripTrailing());
    }
  }

  @Test
  void benchDecodeReportsPrefillAndPerTokenMediansAsJson() {
    int batch = 2, prompt = 5, newTokens = 4, rounds = 3;
    Out r = run("bench", "--mode", "decode", "--model", modelDir.toString(), "--device", "cpu", "--batch", "" + batch,
        "--prompt-len", "" + prompt, "--decode-tokens", "" + newTokens, "--steps", "" + rounds, "--warmup-steps", "1");
    assertEquals(0, r.code(), r.err());
    JsonObject j = JsonParser.parseString(r.out().trim()).getAsJsonObject();
    assertEquals("athanor", j.get("impl").getAsString());
    assertEquals("decode", j.get("mode").getAsString());
    assertEquals(batch, j.get("batch").getAsInt());
    assertEquals(prompt, j.get("prompt_len").getAsInt());
    assertEquals(newTokens, j.get("decode_tokens").getAsInt());
    assertEquals(rounds, j.get("steps").getAsInt());
    assertEquals(1, j.get("warmup_steps").getAsInt());
    assertEquals(rounds, j.getAsJsonArray("prefill_ms").size());
    assertEquals(rounds, j.getAsJsonArray("round_ms").size());
    assertEquals(rounds * (newTokens - 1), j.getAsJsonArray("decode_step_ms").size(), "every decode step of every round");
    for (String k : List.of("prefill_ms", "round_ms", "decode_step_ms")) {
      for (var e : j.getAsJsonArray(k)) assertTrue(e.getAsDouble() > 0, k + " holds " + e);
    }
    for (String k : List.of("prefill_ms_median", "decode_ms_per_token_median", "decode_tokens_per_s",
        "prefill_tokens_per_s", "end_to_end_tokens_per_s", "tokens_per_s")) {
      double v = j.get(k).getAsDouble();
      assertTrue(v > 0 && Double.isFinite(v), k + " = " + v);
    }
    // decode tokens/s = batch / median step seconds (both printed rounded: compare loosely)
    double perToken = j.get("decode_ms_per_token_median").getAsDouble();
    assertEquals(batch / (perToken / 1e3), j.get("decode_tokens_per_s").getAsDouble(), 1e-3 * batch / (perToken / 1e3));
    assertEquals(j.get("decode_tokens_per_s").getAsDouble(), j.get("tokens_per_s").getAsDouble());
    r = run("bench", "--mode", "decode", "--model", modelDir.toString(), "--device", "cpu", "--warmup-steps", "0");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--warmup-steps must be >= 1"), r.err());
  }

  @Test
  void decodeBenchDecodesGreedilyLikeTheGenerator() {
    int batch = 2, prompt = 6, newTokens = 5;
    try (Transformer m = HfModelDir.loadModel(modelDir, Device.CPU)) {
      int[] prompts = DecodeBench.randomPrompts(CFG.vocabSize(), batch, prompt, 7);
      DecodeBench.Result r = DecodeBench.measure(m, prompts, batch, prompt, newTokens, 1, 2);
      List<int[]> ps = List.of(java.util.Arrays.copyOfRange(prompts, 0, prompt),
          java.util.Arrays.copyOfRange(prompts, prompt, 2 * prompt));
      List<int[]> made = new Generator(m).generate(ps, new SamplingConfig(0f, 0, 1f, 0, newTokens, false), null);
      long h = 17;
      for (int t = 0; t < newTokens; t++) {
        for (int b = 0; b < batch; b++) h = h * 31 + made.get(b)[t];
      }
      assertEquals(h, r.tokensChecksum(), "the bench decodes the same tokens as greedy generation");
    }
  }

  /**
   * A Llama with a Llama-2-style tokenizer.json (Prepend/Replace normalizer, Strip decoder) whose head makes "▁the"
   * the greedy choice after the prompt: the CLI prints "Train the", not "Trainthe" (decoded alone, the token loses
   * its space to the decoder's Strip), and what it prints is the decoded whole minus the decoded prompt.
   */
  @Test
  void generateWithALlama2TokenizerKeepsTheSpaceOfTheFirstNewToken() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    Path dir = tmp.resolve("llama2");
    Files.createDirectories(dir);
    try (InputStream in = CommandsTest.class.getResourceAsStream("/tokenizers/llama2-style.json")) {
      Files.copy(in, dir.resolve("tokenizer.json"));
    }
    ModelConfig cfg = new ModelConfig(Family.LLAMA, 1640, 32, 1, 16, 2, 1, 32, 1e-5f, 10000f, false, 1, 2);
    String prompt = "Train";
    int[] promptIds;
    int the;
    try (Tokenizer tok = Tokenizers.forModelDir(dir, cfg)) {
      the = ((HfTokenizer) tok).tokenId("▁the").getAsInt();
      assertEquals("the", tok.decode(new int[] {the}), "decoded alone, the Strip decoder drops the space");
      promptIds = Models.withBos(cfg, tok, tok.encode(prompt));
    }
    SamplingConfig greedy = new SamplingConfig(0f, 0, 1f, 0, 4, false);
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(11);
      // the head's only non-zero row is "▁the": its logit is the only one that is not 0; flip it if it is negative
      ParameterStore.Param head = m.parameters().get("lm_head.weight");
      float[] w = new float[head.master().toFloatArray().length];
      for (int k = 0; k < cfg.hidden(); k++) w[the * cfg.hidden() + k] = 10 * (k % 3 - 1) + 1;
      head.master().copyFrom(w);
      m.parameters().syncWeights();
      if (new Generator(m).generate(promptIds, greedy, null)[0] != the) {
        for (int k = 0; k < w.length; k++) w[k] = -w[k];
        head.master().copyFrom(w);
        m.parameters().syncWeights();
      }
      HfModelDir.save(dir, cfg, m.weights(), DType.F32);
    }
    Out r = run("generate", "--model", dir.toString(), "--prompt", prompt, "--temperature", "0", "--max-tokens", "4",
        "--no-stop", "--device", "cpu");
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().startsWith("Train the"), r.out());
    try (Transformer m = HfModelDir.loadModel(dir, Device.CPU); Tokenizer tok = Tokenizers.forModelDir(dir, cfg)) {
      int[] made = new Generator(m).generate(promptIds, greedy, null);
      assertEquals(the, made[0]);
      int[] all = java.util.stream.IntStream.concat(java.util.Arrays.stream(promptIds), java.util.Arrays.stream(made)).toArray();
      String before = tok.decode(promptIds);
      assertEquals(prompt + tok.decode(all).substring(before.length()), r.out().stripTrailing());
    }
  }

  @Test
  void llamaTextGetsItsBosTokenOnce() {
    Tokenizer withBos = new Tokenizer() {
      public String id() { return "stub"; }
      public int vocabSize() { return 10; }
      public int[] encode(String text) { return new int[] {5, 6}; }
      public String decode(int[] ids) { return ""; }
      public java.util.OptionalInt eosToken() { return java.util.OptionalInt.of(2); }
      public java.util.OptionalInt bosToken() { return java.util.OptionalInt.of(1); }
    };
    ModelConfig llama = ModelConfig.llama(10, 8, 1, 8, 1, 1, 8, 10000f, true);
    assertEquals(List.of(1, 5, 6), boxed(Models.withBos(llama, withBos, new int[] {5, 6})));
    assertEquals(List.of(1, 5), boxed(Models.withBos(llama, withBos, new int[] {1, 5})));
    assertEquals(List.of(5, 6), boxed(Models.withBos(ModelConfig.gpt2(10, 8, 1, 8, 1), withBos, new int[] {5, 6})));
  }

  static List<Integer> boxed(int[] a) {
    return java.util.Arrays.stream(a).boxed().toList();
  }

  /** --collectives: nccl needs CUDA tensors, an unknown library is named; both before any process is needed. */
  @Test
  void collectivesAreChecked() throws Exception {
    Path text = Files.writeString(tmp.resolve("collectives.txt"), "some text to train on, enough for a batch or two\n".repeat(50));
    String[] base = {"train", "--preset", "gpt2-tiny", "--device", "cpu", "--steps", "1", "--dp", "2", "--data", text.toString()};
    Out r = run(concat(base, "--collectives", "nccl"));
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--collectives nccl moves CUDA tensors; this run is on cpu"), r.err());
    r = run(concat(base, "--collectives", "gloo"));
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--collectives 'gloo': expected auto, nccl or mpi"), r.err());
    r = run(concat(base, "--collectives", "mpi"));  // valid: then the missing mpirun is what stops it
    assertEquals(2, r.code());
    assertTrue(r.err().contains("needs 2 processes started by MPI"), r.err());
  }

  /** bench's --pp and --micro-batches are refused as train refuses them, before any process is needed, naming the flags. */
  @Test
  void benchPipelineFlagsAreCheckedAsTrainChecksThem() {
    String[] base = {"bench", "--mode", "train", "--preset", "gpt2-tiny", "--device", "cpu"};  // 4 blocks
    Out r = run(concat(base, "--pp", "2", "--micro-batches", "1"));
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--micro-batches 1 is fewer than the --pp 2 stages"), r.err());
    r = run(concat(base, "--pp", "5"));
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--pp 5 exceeds the model's 4 blocks"), r.err());
    r = run(concat(base, "--micro-batches", "2"));
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--micro-batches 2 needs --pp 2 or more"), r.err());
    r = run(concat(base, "--pp", "2", "--dp", "2", "--zero", "3"));
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--zero 3 with --pp 2 is not supported"), r.err());
    r = run(concat(base, "--pp", "2"));  // a valid layout, but no mpirun
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--pp 2 needs 2 processes started by MPI"), r.err());
    r = run("bench", "--mode", "decode", "--preset", "gpt2-tiny", "--device", "cpu", "--pp", "2");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("option '--pp' does not apply to --mode decode"), r.err());
  }

  private static String[] concat(String[] a, String... b) {
    return java.util.stream.Stream.concat(java.util.Arrays.stream(a), java.util.Arrays.stream(b)).toArray(String[]::new);
  }

  @Test
  void badInputGivesAClearMessageAndAUsageExitCode() {
    Out r = run("train", "--steps", "5");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("Missing required option: '--data=PATH'"), r.err());
    r = run("train", "--data", tmp.toString(), "--stpes", "5");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("'--stpes'") && r.err().contains("Did you mean: --steps?"), r.err());
    r = run("generate", "--model", tmp.resolve("nowhere").toString(), "--prompt", "x");
    assertTrue(r.code() != 0 && r.err().contains("nowhere"), r.err());
    r = run("train", "--preset", "gpt3", "--data", tmp.toString());
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--preset") && r.err().contains("unknown model preset \"gpt3\""), r.err());
    r = run("score", "--model", modelDir.toString(), "--text", "hi", "--tokens", "x");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("--tokens=FILE, --text=TEXT are mutually exclusive"), r.err());
    r = run("bench", "--mode", "sprint", "--device", "cpu", "--preset", "gpt2-tiny");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("Invalid value for option '--mode'") && r.err().contains("'sprint'")
        && r.err().contains("TRAIN, DECODE, OVERLAP"), r.err());
    r = run("frobnicate");
    assertEquals(2, r.code());
    assertTrue(r.err().contains("unknown command 'frobnicate'"), r.err());
    assertTrue(List.of(r.err().split("\n")).stream().anyMatch(s -> s.contains("generate")), "usage is printed");
  }

}

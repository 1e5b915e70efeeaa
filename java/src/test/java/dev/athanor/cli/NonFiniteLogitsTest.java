package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.athanor.infer.Generator;
import dev.athanor.infer.NonFiniteLogitsException;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.report.TrainLog;
import dev.athanor.runtime.Device;
import dev.athanor.train.StepResult;
import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, case 2: a model whose weights hold NaN made {@code score} print {@code "mean_loss":NaN} (not JSON) with
 * exit code 0, and {@code generate} print garbage with exit code 0. Non-finite logits or losses are now an error
 * naming the first position (exit code 1), and every JSON the CLI writes is standard JSON (NaN and infinities as null).
 */
class NonFiniteLogitsTest {
  @TempDir static Path tmp;
  static Path good;
  /** The embedding of position {@link #BAD_POSITION} holds a NaN. */
  static Path nanPosition;
  /** Untied (the head is finite): the embedding of token {@link #BAD_TOKEN} holds a NaN. */
  static Path nanToken;
  /** GPT-2's vocabulary (the r50k_base tokenizer applies), context 16. */
  static final ModelConfig CFG = ModelConfig.gpt2(50257, 16, 1, 32, 1);
  /** Cached decoding: logits are finite before this position and NaN from it on (causal attention). */
  static final int BAD_POSITION = 3;
  static final int BAD_TOKEN = 262;

  @BeforeAll
  static void saveModels() {
    good = TestModels.save(tmp.resolve("good"), CFG, 5);
    nanPosition = TestModels.save(tmp.resolve("nan-position"), CFG, 5, m -> poison(m, "transformer.wpe.weight", BAD_POSITION));
    ModelConfig untied = new ModelConfig(CFG.family(), CFG.vocabSize(), CFG.maxSeqLen(), CFG.layers(), CFG.hidden(),
        CFG.heads(), CFG.kvHeads(), CFG.intermediate(), CFG.normEps(), CFG.ropeTheta(), false, CFG.bosTokenId(),
        CFG.eosTokenId());
    nanToken = TestModels.save(tmp.resolve("nan-token"), untied, 5, m -> poison(m, "transformer.wte.weight", BAD_TOKEN));
  }

  /** Sets the first element of row {@code row} of parameter {@code name} to NaN. */
  private static void poison(Transformer m, String name, int row) {
    TestModels.edit(m, name, w -> {
      w[row * CFG.hidden()] = Float.NaN;
      return w;
    });
  }

  @Test
  void case2ScoreOfNaNWeightsFailsNamingTheFirstPosition() throws IOException {
    // 20 tokens: scored in a window of 16 (no BAD_TOKEN among its inputs) and one of 3 starting with BAD_TOKEN
    Path ids = tmp.resolve("ids.txt");
    Files.writeString(ids, "464 2068 7586 21831 18045 625 464 2068 7586 21831 18045 625 464 2068 7586 21831 "
        + BAD_TOKEN + " 16931 464 2068\n");
    CliTest.Out r = CliTest.run("score", "--model", nanToken.toString(), "--tokens", ids.toString(), "--device", "cpu");
    assertEquals(1, r.code(), r.err());
    assertEquals("", r.out(), "no JSON with NaN in it");
    assertTrue(r.err().contains("athanor score: the loss is NaN for sequence 0 at token position 16:"), r.err());
    assertTrue(r.err().contains("weights hold NaN or infinity"), r.err());
    // the same tokens with good weights: standard JSON
    r = CliTest.run("score", "--model", good.toString(), "--tokens", ids.toString(), "--device", "cpu");
    assertEquals(0, r.code(), r.err());
    JsonObject j = strict(r.out()).getAsJsonObject();
    assertEquals(19, j.getAsJsonArray("logprobs").size());
    assertTrue(Double.isFinite(j.get("mean_loss").getAsDouble()));
  }

  @Test
  void case2GenerateWithNaNWeightsFailsNamingThePosition() {
    // "Hello" is one token: its logits (position 0) are finite, those at position 3 are not
    CliTest.Out r = CliTest.run("generate", "--model", nanPosition.toString(), "--prompt", "Hello", "--max-tokens", "10",
        "--temperature", "0", "--device", "cpu");
    assertEquals(1, r.code(), r.err());
    assertTrue(r.err().contains("athanor generate: the logit of token id 0 is NaN for sequence 0 at token position "
        + BAD_POSITION + ":"), r.err());
    r = CliTest.run("generate", "--model", good.toString(), "--prompt", "Hello", "--max-tokens", "10", "--temperature", "0",
        "--device", "cpu");
    assertEquals(0, r.code(), r.err());
    // the library: the same exception, naming the prompt of the batch
    try (Transformer m = HfModelDir.loadModel(nanPosition, Device.CPU)) {
      NonFiniteLogitsException e = assertThrows(NonFiniteLogitsException.class, () -> new Generator(m)
          .generate(List.of(new int[] {1, 2}, new int[] {3, 4, 5, 6, 7}), new SamplingConfig(0f, 0, 1f, 0, 1, false), null));
      assertEquals(1, e.sequence(), "one token after the 2-token prompt is fine; the 5-token prompt reaches position 3");
      assertEquals(4, e.position(), "the prefill's logits are those of its last token");
    }
  }

  @Test
  void case2EveryJsonOutputIsStandardJson() {
    // the strict parser used below rejects what the CLI used to write
    assertThrows(IOException.class, () -> strictOrThrow("{\"mean_loss\":NaN}"));
    assertThrows(IOException.class, () -> strictOrThrow("{\"x\":Infinity}"));

    Map<String, Object> m = new LinkedHashMap<>();
    m.put("nan", Double.NaN);
    m.put("inf", Float.NEGATIVE_INFINITY);
    m.put("list", List.of(1.5, Double.POSITIVE_INFINITY));
    m.put("rounded", Json.round(Double.NaN, 3));
    assertEquals("{\"nan\":null,\"inf\":null,\"list\":[1.5,null],\"rounded\":null}", Json.write(m));
    strict(Json.write(Map.of("tiny", Json.round(1e-9, 4), "big", Json.significant(1.23456e12, 4))));

    // the train log: a non-finite value is null, and reads back as NaN
    String line = new StepResult(4, Float.NaN, Float.POSITIVE_INFINITY, 2.5f, 64, 0.01).toJson();
    JsonObject o = strict(line).getAsJsonObject();
    assertTrue(o.get("loss").isJsonNull() && o.get("lr").isJsonNull(), line);
    StepResult back = TrainLog.parse(List.of(line)).getFirst();
    assertTrue(Float.isNaN(back.loss()) && Float.isNaN(back.lr()) && back.gradNorm() == 2.5f, back.toString());

    // the commands' JSON lines
    for (String[] args : new String[][] {{"info", "--json"},
        {"bench", "--mode", "decode", "--model", good.toString(), "--device", "cpu", "--batch", "1", "--prompt-len", "3",
            "--decode-tokens", "3", "--steps", "1", "--warmup-steps", "1"},
        {"bench", "--mode", "train", "--config", good.resolve(HfConfig.FILE_NAME).toString(), "--device", "cpu", "--batch",
            "1", "--seq", "8", "--steps", "1", "--warmup-steps", "0"}}) {
      CliTest.Out r = CliTest.run(args);
      assertEquals(0, r.code(), String.join(" ", args) + ": " + r.err());
      assertFalse(strict(r.out()).getAsJsonObject().isEmpty(), r.out());
    }
  }

  /** {@code text} parsed by Gson in strict mode (RFC 8259: no NaN, no Infinity, nothing after the value). */
  static JsonElement strict(String text) {
    try {
      return strictOrThrow(text);
    } catch (IOException e) {
      throw new AssertionError("not standard JSON: " + e.getMessage() + "\n" + text, e);
    }
  }

  private static JsonElement strictOrThrow(String text) throws IOException {
    JsonReader r = new JsonReader(new StringReader(text.strip()));
    r.setStrictness(Strictness.STRICT);
    JsonElement e = new Gson().getAdapter(JsonElement.class).read(r);
    if (r.peek() != JsonToken.END_DOCUMENT) throw new IOException("data after the JSON value");
    return e;
  }
}

package dev.athanor.io.hf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** config.json of GPT-2 and Llama models: hub files, round trips, and every rejection. */
class HfConfigTest {
  @TempDir Path dir;

  /** openai-community/gpt2's config.json as published. */
  static final String GPT2_HUB = """
      {
        "activation_function": "gelu_new",
        "architectures": [
          "GPT2LMHeadModel"
        ],
        "attn_pdrop": 0.1,
        "bos_token_id": 50256,
        "embd_pdrop": 0.1,
        "eos_token_id": 50256,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": 1024,
        "n_embd": 768,
        "n_head": 12,
        "n_layer": 12,
        "n_positions": 1024,
        "resid_pdrop": 0.1,
        "summary_activation": null,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": true,
        "summary_type": "cls_index",
        "summary_use_proj": true,
        "task_specific_params": {
          "text-generation": {
            "do_sample": true,
            "max_length": 50
          }
        },
        "vocab_size": 50257
      }
      """;

  /** TinyLlama-1.1B-Chat's config.json as published. */
  static final String TINYLLAMA_HUB = """
      {
        "architectures": [
          "LlamaForCausalLM"
        ],
        "attention_bias": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 5632,
        "max_position_embeddings": 2048,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 22,
        "num_key_value_heads": 4,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": null,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.35.0",
        "use_cache": true,
        "vocab_size": 32000
      }
      """;

  private static ModelConfig parse(String json) {
    return HfConfig.parse(json, "config.json");
  }

  /** {@code base} with key set to the raw JSON {@code value} (or removed when value is null). */
  private static String with(String base, String key, String value) {
    JsonObject o = JsonParser.parseString(base).getAsJsonObject();
    if (value == null) o.remove(key);
    else o.add(key, JsonParser.parseString(value));
    return o.toString();
  }

  private static void rejects(String json, String... fragments) {
    HfFormatException e = assertThrows(HfFormatException.class, () -> HfConfig.parse(json, "some/dir/config.json"));
    assertTrue(e.getMessage().startsWith("some/dir/config.json: "), "names the file: " + e.getMessage());
    for (String f : fragments) assertTrue(e.getMessage().contains(f), "message lacks \"" + f + "\": " + e.getMessage());
  }

  @Test
  void gpt2FromTheHub() {
    assertEquals(ModelConfig.preset("gpt2"), parse(GPT2_HUB));
  }

  @Test
  void gpt2Variants() {
    // no n_positions: the legacy n_ctx
    assertEquals(1024, parse(with(GPT2_HUB, "n_positions", null)).maxSeqLen());
    // n_positions wins over n_ctx
    assertEquals(2048, parse(with(GPT2_HUB, "n_positions", "2048")).maxSeqLen());
    // n_inner given, null, absent
    assertEquals(1000, parse(with(GPT2_HUB, "n_inner", "1000")).intermediate());
    assertEquals(4 * 768, parse(with(GPT2_HUB, "n_inner", "null")).intermediate());
    // defaults when keys are absent
    String bare = "{\"model_type\": \"gpt2\", \"vocab_size\": 50257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 2,"
        + " \"n_head\": 4}";
    ModelConfig c = parse(bare);
    assertEquals(1e-5f, c.normEps());
    assertTrue(c.tiedEmbeddings());
    assertEquals(50256, c.bosTokenId());
    assertEquals(50256, c.eosTokenId());
    assertEquals(0f, c.ropeTheta());
    // the other tanh GELUs are accepted
    for (String act : new String[] {"\"gelu_pytorch_tanh\"", "\"gelu_fast\"", "\"gelu_new\""}) {
      assertEquals(c, parse(with(bare, "activation_function", act)));
    }
    // a small test vocabulary with transformers' default token 50256: no BOS/EOS
    ModelConfig tiny = parse("{\"model_type\": \"gpt2\", \"vocab_size\": 97, \"n_positions\": 16, \"n_embd\": 24,"
        + " \"n_layer\": 2, \"n_head\": 3, \"bos_token_id\": 50256, \"eos_token_id\": 50256, \"n_inner\": null}");
    assertEquals(ModelConfig.gpt2(97, 16, 2, 24, 3), tiny);
    assertEquals(-1, tiny.bosTokenId());
    // hf-internal-testing style: ids inside a small vocab, untied, integral floats for ints
    ModelConfig t2 = parse("{\"model_type\": \"gpt2\", \"vocab_size\": 1000, \"n_positions\": 512.0, \"n_embd\": 32,"
        + " \"n_layer\": 5, \"n_head\": 4, \"bos_token_id\": 98, \"eos_token_id\": 99, \"tie_word_embeddings\": false,"
        + " \"layer_norm_epsilon\": 1e-6, \"scale_attn_weights\": true, \"reorder_and_upcast_attn\": false}");
    assertEquals(new ModelConfig(Family.GPT2, 1000, 512, 5, 32, 4, 4, 128, 1e-6f, 0f, false, 98, 99), t2);
    // null ids mean none
    assertEquals(-1, parse(with(bare, "eos_token_id", "null")).eosTokenId());
  }

  @Test
  void llamaFromTheHub() {
    assertEquals(new ModelConfig(Family.LLAMA, 32000, 2048, 22, 2048, 32, 4, 5632, 1e-5f, 10000f, false, 1, 2),
        parse(TINYLLAMA_HUB));
  }

  @Test
  void llamaVariants() {
    // head_dim written by newer transformers, equal to hidden / heads
    assertEquals(parse(TINYLLAMA_HUB), parse(with(TINYLLAMA_HUB, "head_dim", "64")));
    // no num_key_value_heads: multi-head attention
    assertEquals(32, parse(with(TINYLLAMA_HUB, "num_key_value_heads", null)).kvHeads());
    // EOS as a list takes the first; null BOS is none
    ModelConfig l = parse(with(with(TINYLLAMA_HUB, "eos_token_id", "[2, 31999, 7]"), "bos_token_id", "null"));
    assertEquals(2, l.eosTokenId());
    assertEquals(-1, l.bosTokenId());
    // defaults of transformers' LlamaConfig when keys are absent
    String bare = "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 32, \"intermediate_size\": 64,"
        + " \"num_hidden_layers\": 2, \"num_attention_heads\": 4}";
    ModelConfig b = parse(bare);
    assertEquals(new ModelConfig(Family.LLAMA, 100, 2048, 2, 32, 4, 4, 64, 1e-6f, 10000f, false, 1, 2), b);
    // transformers 5 writes rope_parameters and dtype
    String v5 = with(with(with(with(bare, "rope_parameters", "{\"rope_theta\": 500000.0, \"rope_type\": \"default\"}"),
        "dtype", "\"bfloat16\""), "tie_word_embeddings", "true"), "eos_token_id", "[99, 98]");
    ModelConfig c5 = parse(v5);
    assertEquals(500000f, c5.ropeTheta());
    assertTrue(c5.tiedEmbeddings());
    assertEquals(99, c5.eosTokenId());
    assertEquals(500000f, parse(with(v5, "rope_theta", "500000")).ropeTheta(), "agreeing legacy key");
    // explicit false biases, plain rope_scaling null, silu
    assertEquals(b, parse(with(with(with(bare, "attention_bias", "false"), "mlp_bias", "false"), "hidden_act", "\"silu\"")));
  }

  @Test
  void roundTripsPresetsAndRandomConfigsExactly() throws IOException {
    List<ModelConfig> configs = new ArrayList<>(ModelConfig.presets().values());
    configs.add(parse(GPT2_HUB));
    configs.add(parse(TINYLLAMA_HUB));
    Random rnd = new Random(3);
    for (int i = 0; i < 200; i++) {
      boolean gpt = rnd.nextBoolean();
      int heads = 1 + rnd.nextInt(8);
      int kv = gpt ? heads : pickDivisor(heads, rnd);
      int headDim = 2 * (1 + rnd.nextInt(16));
      int vocab = 1 + rnd.nextInt(70000);
      float eps = Float.intBitsToFloat(0x2f000000 + rnd.nextInt(0x8000000)); // ~1e-10 .. 1e-3, arbitrary bits
      float theta = gpt ? (rnd.nextBoolean() ? 0f : 1 + rnd.nextFloat() * 1e6f) : 1 + rnd.nextFloat() * 1e6f;
      int bos = rnd.nextInt(3) == 0 ? -1 : rnd.nextInt(vocab);
      int eos = rnd.nextInt(3) == 0 ? -1 : rnd.nextInt(vocab);
      int intermediate = rnd.nextBoolean() ? 4 * heads * headDim : 1 + rnd.nextInt(5000);
      configs.add(new ModelConfig(gpt ? Family.GPT2 : Family.LLAMA, vocab, 1 + rnd.nextInt(9000), 1 + rnd.nextInt(48),
          heads * headDim, heads, kv, intermediate, eps, theta, rnd.nextBoolean(), bos, eos));
    }
    for (ModelConfig c : configs) {
      assertEquals(c, parse(HfConfig.toJson(c)), c::toString);
      for (DType d : new DType[] {DType.BF16, DType.F16}) assertEquals(c, parse(HfConfig.toJson(c, d)));
    }
    Path f = dir.resolve("config.json");
    for (ModelConfig c : configs.subList(0, 10)) {
      HfConfig.write(c, f);
      assertEquals(c, HfConfig.read(f));
    }
    try (var files = Files.list(dir)) {
      assertEquals(List.of(f), files.toList(), "no temporary files left");
    }
  }

  private static int pickDivisor(int n, Random rnd) {
    List<Integer> d = new ArrayList<>();
    for (int i = 1; i <= n; i++) if (n % i == 0) d.add(i);
    return d.get(rnd.nextInt(d.size()));
  }

  @Test
  void writesWhatSavePretrainedWrites() {
    String g = HfConfig.toJson(ModelConfig.preset("gpt2"));
    JsonObject o = JsonParser.parseString(g).getAsJsonObject();
    assertEquals("GPT2LMHeadModel", o.getAsJsonArray("architectures").get(0).getAsString());
    assertEquals("gpt2", o.get("model_type").getAsString());
    assertEquals("float32", o.get("torch_dtype").getAsString());
    assertEquals("gelu_new", o.get("activation_function").getAsString());
    assertEquals(768, o.get("n_embd").getAsInt());
    assertTrue(o.get("n_inner").isJsonNull());
    assertFalse(o.has("rope_theta"));
    List<String> keys = new ArrayList<>(o.keySet());
    List<String> sorted = new ArrayList<>(keys);
    sorted.sort(null);
    assertEquals(sorted, keys, "keys sorted as json.dumps(sort_keys=True)");
    assertTrue(g.startsWith("{\n  \"") && g.endsWith("}\n"), "two-space indent, trailing newline");

    JsonObject l = JsonParser.parseString(HfConfig.toJson(parse(TINYLLAMA_HUB), DType.BF16)).getAsJsonObject();
    assertEquals("LlamaForCausalLM", l.getAsJsonArray("architectures").get(0).getAsString());
    assertEquals("bfloat16", l.get("torch_dtype").getAsString());
    assertEquals(4, l.get("num_key_value_heads").getAsInt());
    assertEquals(64, l.get("head_dim").getAsInt());
    assertEquals(10000.0, l.get("rope_theta").getAsDouble());
    assertEquals(1e-5, l.get("rms_norm_eps").getAsDouble(), "the float's shortest decimal, as Python wrote it");
    assertTrue(l.get("rope_scaling").isJsonNull());
    assertEquals("silu", l.get("hidden_act").getAsString());
    assertFalse(l.get("tie_word_embeddings").getAsBoolean());
    assertEquals("float16", JsonParser.parseString(HfConfig.toJson(parse(TINYLLAMA_HUB), DType.F16))
        .getAsJsonObject().get("torch_dtype").getAsString());
  }

  @Test
  void rejectsMalformedJson() {
    rejects("{\"model_type\": \"gpt2\", \"n_embd\": ", "malformed JSON");
    HfFormatException e = assertThrows(HfFormatException.class,
        () -> HfConfig.parse("{\n  \"model_type\": \"gpt2\",\n  \"n_embd\": 768\n  \"n_head\": 12\n}", "config.json"));
    assertTrue(e.getMessage().contains("line 4"), "Gson's position: " + e.getMessage());
    assertFalse(e.getMessage().contains("https://"), e.getMessage());
    rejects("[1, 2]", "expected a JSON object");
    rejects("", "empty (expected a JSON object)");
    rejects(" \n", "empty");
    rejects("{} {}", "data after the JSON object");
  }

  @Test
  void rejectsUnknownOrMissingModelType() {
    rejects("{\"model_type\": \"bert\"}", "unsupported model_type \"bert\"; supported: gpt2, llama");
    rejects("{\"vocab_size\": 5}", "model_type missing");
    rejects("{\"model_type\": 3}", "model_type must be a string");
  }

  @Test
  void rejectsMissingAndMistypedKeys() {
    rejects(with(GPT2_HUB, "n_embd", null), "n_embd missing");
    rejects(with(GPT2_HUB, "n_embd", "null"), "n_embd missing");
    rejects(with(with(GPT2_HUB, "n_positions", null), "n_ctx", null), "n_positions missing");
    rejects(with(GPT2_HUB, "n_layer", "\"12\""), "n_layer must be an integer", "\"12\"");
    rejects(with(GPT2_HUB, "n_head", "12.5"), "n_head must be an integer");
    rejects(with(GPT2_HUB, "vocab_size", "1e12"), "vocab_size must be an integer in int range");
    rejects(with(GPT2_HUB, "vocab_size", "0"), "vocab_size must be > 0");
    rejects(with(GPT2_HUB, "n_inner", "-5"), "n_inner must be > 0");
    rejects(with(GPT2_HUB, "layer_norm_epsilon", "\"1e-5\""), "layer_norm_epsilon must be a number");
    rejects(with(GPT2_HUB, "layer_norm_epsilon", "1e99"), "layer_norm_epsilon must be a finite number");
    rejects(with(GPT2_HUB, "tie_word_embeddings", "1"), "tie_word_embeddings must be true or false");
    rejects(with(GPT2_HUB, "bos_token_id", "\"<s>\""), "bos_token_id must be an integer");
    rejects(with(GPT2_HUB, "activation_function", "7"), "activation_function must be a string");
    rejects(with(TINYLLAMA_HUB, "num_hidden_layers", null), "num_hidden_layers missing");
    rejects(with(TINYLLAMA_HUB, "eos_token_id", "[2, \"x\"]"), "eos_token_id[1] must be an integer");
    rejects(with(TINYLLAMA_HUB, "rope_theta", "[]"), "rope_theta must be a number");
  }

  @Test
  void rejectsInvalidModels() {
    rejects(with(GPT2_HUB, "n_head", "7"), "n_embd 768 is not divisible by n_head 7");
    rejects(with(TINYLLAMA_HUB, "num_attention_heads", "7"), "hidden_size 2048 is not divisible by num_attention_heads 7");
    rejects(with(TINYLLAMA_HUB, "num_key_value_heads", "5"), "num_attention_heads 32 is not divisible by num_key_value_heads 5");
    rejects(with(TINYLLAMA_HUB, "rms_norm_eps", "0"), "invalid model", "normEps");
    rejects(with(TINYLLAMA_HUB, "hidden_size", "2080"), "invalid model"); // head dim 65: odd, no rotary
  }

  @Test
  void configSizesDoNotOverflow() {
    String wide = with(GPT2_HUB, "n_embd", "1610612736");  // 12 heads divide it; 4 x n_embd does not fit in an int
    rejects(wide, "n_embd 1610612736 is too large: the MLP's inner width 4 x n_embd = 6442450944 exceeds the largest "
        + "width, 2147483647");
    HfFormatException e = assertThrows(HfFormatException.class, () -> HfConfig.parse(wide, "config.json"));
    assertFalse(e.getMessage().contains("-2147483648") || e.getMessage().contains("must be > 0"), e.getMessage());
    // with n_inner given the widths fit, but one block's parameters do not fit in a long
    rejects(with(wide, "n_inner", "1"), "invalid model: the model is too large: its parameter count does not fit in 64 bits");
    rejects(with(TINYLLAMA_HUB, "hidden_size", "2147483520"), "the model is too large");
    rejects(with(GPT2_HUB, "n_embd", "4294967296"), "n_embd must be an integer in int range, got 4294967296");
    // huge but countable: valid configs (whether they fit in memory is checked when they are used)
    ModelConfig deep = HfConfig.parse(with(GPT2_HUB, "n_layer", "2147483647"), "config.json");
    assertEquals(2147483647L * (12L * 768 * 768 + 13 * 768) + 50257L * 768 + 1024 * 768 + 2 * 768, deep.parameterCount());
    ModelConfig vocab = HfConfig.parse(with(GPT2_HUB, "vocab_size", "2147483647"), "config.json");
    assertTrue(vocab.parameterCount() > 2147483647L * 768, "" + vocab.parameterCount());
    // the API reports the same in its own names
    IllegalArgumentException a = assertThrows(IllegalArgumentException.class,
        () -> ModelConfig.gpt2(50257, 1024, 12, 1610612736, 12));
    assertEquals("hidden 1610612736 is too large: the MLP's width 4 x hidden = 6442450944 exceeds the largest width, "
        + "2147483647", a.getMessage());
  }

  @Test
  void rejectsGpt2OptionsThatChangeTheArchitecture() {
    for (String act : new String[] {"gelu", "relu", "quick_gelu", "silu", "gelu_python"}) {
      rejects(with(GPT2_HUB, "activation_function", "\"" + act + "\""), "activation_function \"" + act + "\"",
          "only the tanh-approximated GELU is implemented");
    }
    rejects(with(GPT2_HUB, "scale_attn_by_inverse_layer_idx", "true"), "scale_attn_by_inverse_layer_idx=true is not supported");
    rejects(with(GPT2_HUB, "reorder_and_upcast_attn", "true"), "reorder_and_upcast_attn=true is not supported");
    rejects(with(GPT2_HUB, "scale_attn_weights", "false"), "scale_attn_weights=false is not supported");
    rejects(with(GPT2_HUB, "add_cross_attention", "true"), "add_cross_attention=true is not supported");
  }

  @Test
  void rejectsLlamaOptionsThatChangeTheArchitecture() {
    rejects(with(TINYLLAMA_HUB, "head_dim", "128"), "head_dim 128 differs from hidden_size / num_attention_heads = 2048 / 32");
    rejects(with(TINYLLAMA_HUB, "hidden_act", "\"gelu\""), "hidden_act \"gelu\" is not supported", "silu");
    rejects(with(TINYLLAMA_HUB, "rope_scaling", "{\"factor\": 32.0, \"rope_type\": \"llama3\"}"),
        "rope_scaling of type \"llama3\" is not supported");
    rejects(with(TINYLLAMA_HUB, "rope_scaling", "{\"factor\": 2.0, \"type\": \"linear\"}"), "rope_scaling of type \"linear\"");
    rejects(with(TINYLLAMA_HUB, "rope_parameters", "{\"rope_theta\": 1e4, \"rope_type\": \"yarn\", \"factor\": 4.0}"),
        "rope_parameters of type \"yarn\" is not supported");
    rejects(with(TINYLLAMA_HUB, "rope_parameters", "{\"rope_theta\": 20000.0, \"rope_type\": \"default\"}"),
        "rope_theta 10000.0 disagrees with rope_parameters.rope_theta 20000.0");
    rejects(with(TINYLLAMA_HUB, "attention_bias", "true"), "attention_bias=true is not supported");
    rejects(with(TINYLLAMA_HUB, "mlp_bias", "true"), "mlp_bias=true is not supported");
  }

  @Test
  void readNamesTheFile() throws IOException {
    HfFormatException e = assertThrows(HfFormatException.class, () -> HfConfig.read(dir.resolve("config.json")));
    assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("no such file"), e.getMessage());
    Path f = Files.writeString(dir.resolve("config.json"), with(GPT2_HUB, "n_embd", null));
    e = assertThrows(HfFormatException.class, () -> HfConfig.read(f));
    assertEquals(f + ": n_embd missing", e.getMessage());
    Files.write(f, new byte[] {'{', (byte) 0xff, '}'});
    e = assertThrows(HfFormatException.class, () -> HfConfig.read(f));
    assertTrue(e.getMessage().contains("UTF-8"), e.getMessage());
  }

  @Test
  void floatsAreSpelledAsPythonSpellsThem() {
    assertEquals("1e-05", HfConfig.pythonRepr(1e-5f));
    assertEquals("1e-06", HfConfig.pythonRepr(1e-6f));
    assertEquals("1.5e-05", HfConfig.pythonRepr(1.5e-5f));
    assertEquals("0.0001", HfConfig.pythonRepr(1e-4f));
    assertEquals("0.02", HfConfig.pythonRepr(0.02f));
    assertEquals("10000.0", HfConfig.pythonRepr(10000f));
    assertEquals("500000.0", HfConfig.pythonRepr(500000f));
    assertEquals("1e+16", HfConfig.pythonRepr(1e16f));
    assertEquals("123.25", HfConfig.pythonRepr(123.25f));
    assertEquals("0.0", HfConfig.pythonRepr(0f));
    assertEquals("-0.0", HfConfig.pythonRepr(-0f));
    assertEquals("-2.5", HfConfig.pythonRepr(-2.5f));
    Random rnd = new Random(11);
    for (int i = 0; i < 100_000; i++) {
      float f = Float.intBitsToFloat(rnd.nextInt());
      if (!Float.isFinite(f)) continue;
      assertEquals(f, Float.parseFloat(HfConfig.pythonRepr(f)), () -> Float.toString(f));
    }
    assertTrue(HfConfig.toJson(ModelConfig.preset("gpt2")).contains("\"layer_norm_epsilon\": 1e-05,"));
  }
}

package dev.athanor.io.hf;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.athanor.io.AtomicFiles;
import dev.athanor.io.FileProblems;
import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.tensor.DType;
import java.io.IOException;
import java.io.StringReader;
import java.math.BigDecimal;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;

/**
 * Reads and writes the {@code config.json} of Hugging Face {@code gpt2} and {@code llama} models as a
 * {@link ModelConfig}.
 *
 * <p><b>GPT-2</b> ({@code model_type "gpt2"}): {@code vocab_size}, {@code n_positions} (else the legacy
 * {@code n_ctx}), {@code n_embd}, {@code n_layer}, {@code n_head}, {@code n_inner} (null or absent: 4 *
 * n_embd), {@code layer_norm_epsilon} (default 1e-5), {@code tie_word_embeddings} (default true),
 * {@code bos_token_id}/{@code eos_token_id} (absent: 50256 when the vocabulary has it, else none).
 * {@code activation_function} must be a tanh-approximated GELU ({@code gelu_new}, the default,
 * {@code gelu_pytorch_tanh} or {@code gelu_fast}); options that change the architecture
 * ({@code scale_attn_by_inverse_layer_idx}, {@code reorder_and_upcast_attn}, {@code scale_attn_weights=false},
 * {@code add_cross_attention}) are rejected. GPT-2 has no rotary base; {@code rope_theta} is read and written
 * only as an extension key so that every config round-trips.
 *
 * <p><b>Llama</b> ({@code model_type "llama"}): {@code vocab_size}, {@code hidden_size},
 * {@code intermediate_size}, {@code num_hidden_layers}, {@code num_attention_heads},
 * {@code num_key_value_heads} (default: the heads), {@code max_position_embeddings} (default 2048, as in
 * transformers), {@code rms_norm_eps} (default 1e-6), {@code rope_theta} (default 10000; also read from the
 * newer {@code rope_parameters} object), {@code tie_word_embeddings} (default false),
 * {@code bos_token_id}/{@code eos_token_id} (absent: 1 and 2 as in transformers; a list of EOS ids gives its
 * first). {@code head_dim} must equal {@code hidden_size / num_attention_heads}, {@code hidden_act} must be
 * {@code silu}, {@code rope_scaling} must be absent or null, {@code attention_bias} and {@code mlp_bias} must be
 * false.
 *
 * <p>Token ids that are null or outside the vocabulary read as -1 (none): transformers writes GPT-2's 50256
 * even for small test vocabularies. Keys that do not affect the computation (dropouts,
 * {@code initializer_range}, {@code torch_dtype}/{@code dtype}, {@code use_cache}, {@code pretraining_tp},
 * {@code architectures}, ...) are ignored.
 *
 * <p>Writing produces what {@code save_pretrained} writes for these model types (sorted keys, two-space
 * indent), and {@code parse(toJson(c)) equals c} for every valid config.
 */
public final class HfConfig {
  /** The file name of a model's configuration. */
  public static final String FILE_NAME = "config.json";

  /** The largest {@code config.json} read, in bytes. */
  static final long MAX_BYTES = 16L << 20;

  private static final Set<String> TANH_GELUS = Set.of("gelu_new", "gelu_pytorch_tanh", "gelu_fast");

  private HfConfig() {}

  /**
   * Reads {@code configJson}.
   *
   * @throws HfFormatException naming the file when it is missing, malformed, or describes an unsupported model
   */
  public static ModelConfig read(Path configJson) {
    Objects.requireNonNull(configJson, "configJson");
    String src = configJson.toString();
    String problem = FileProblems.notRegularFile(configJson);
    if (problem != null && Files.exists(configJson)) {
      throw new HfFormatException(src + " " + problem + " (expected a JSON model configuration)");
    }
    String text;
    try {
      long size = Files.size(configJson);
      if (size > MAX_BYTES) {
        throw new HfFormatException(src + ": " + size + " bytes is too large for a model configuration (limit " + MAX_BYTES
            + "; a config.json has a few kilobytes)");
      }
      text = Files.readString(configJson, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      throw new HfFormatException(src + ": no such file");
    } catch (MalformedInputException e) {
      throw new HfFormatException(src + ": not valid UTF-8", e);
    } catch (IOException e) {
      throw new HfFormatException(src + ": cannot read: " + FileProblems.reason(e), e);
    }
    return parse(text, src);
  }

  /**
   * Parses the text of a {@code config.json}; {@code source} names it in errors.
   *
   * @throws HfFormatException starting with {@code source} when the text is malformed or describes an
   *     unsupported model
   */
  public static ModelConfig parse(String json, String source) {
    Objects.requireNonNull(json, "json");
    String src = source == null ? "config.json" : source;
    if (json.isBlank()) throw new HfFormatException(src + ": empty (expected a JSON object)");
    JsonElement root;
    try (JsonReader r = new JsonReader(new StringReader(json))) {
      // Python's json module writes NaN and Infinity, which strict JSON lacks
      r.setStrictness(Strictness.LENIENT);
      root = JsonParser.parseReader(r);
      if (r.peek() != JsonToken.END_DOCUMENT) throw new HfFormatException(src + ": data after the JSON object");
    } catch (JsonParseException | IOException | IllegalStateException e) {
      throw new HfFormatException(src + ": malformed JSON: " + jsonError(e), e);
    }
    if (!root.isJsonObject()) throw new HfFormatException(src + ": expected a JSON object, got " + brief(root));
    Keys k = new Keys(src, root.getAsJsonObject());
    String type = k.string("model_type", null);
    if (type == null) throw k.fail("model_type missing");
    Family family;
    try {
      family = Family.fromHfModelType(type);
    } catch (IllegalArgumentException e) {
      throw k.fail(e.getMessage());
    }
    try {
      return family == Family.GPT2 ? gpt2(k) : llama(k);
    } catch (IllegalArgumentException e) { // ModelConfig's own validation
      throw k.fail("invalid model: " + e.getMessage());
    }
  }

  private static ModelConfig gpt2(Keys k) {
    int vocab = k.posInt("vocab_size");
    Integer positions = k.optInt("n_positions");
    if (positions == null) positions = k.optInt("n_ctx");
    if (positions == null) throw k.fail("n_positions missing (and no n_ctx)");
    int hidden = k.posInt("n_embd");
    int layers = k.posInt("n_layer");
    int heads = k.posInt("n_head");
    Integer inner = k.optInt("n_inner");
    float eps = k.optFloat("layer_norm_epsilon", 1e-5f);
    String act = k.string("activation_function", "gelu_new");
    if (!TANH_GELUS.contains(act)) {
      throw k.fail("activation_function \"" + act + "\" is not supported; only the tanh-approximated GELU is "
          + "implemented (gelu_new, gelu_pytorch_tanh, gelu_fast)");
    }
    k.reject("scale_attn_by_inverse_layer_idx", true, "scaling attention by the inverse layer index is not implemented");
    k.reject("reorder_and_upcast_attn", true, "reordered and upcast attention is not implemented");
    k.reject("scale_attn_weights", false, "attention without 1/sqrt(head_dim) scaling is not implemented");
    k.reject("add_cross_attention", true, "cross-attention layers are not implemented");
    boolean tied = k.bool("tie_word_embeddings", true);
    int eot = vocab > 50256 ? 50256 : -1;
    int bos = k.tokenId("bos_token_id", eot, vocab);
    int eos = k.tokenId("eos_token_id", eot, vocab);
    float theta = k.optFloat("rope_theta", 0f);
    divisible(k, "n_embd", hidden, "n_head", heads);
    if (inner == null && 4L * hidden > Integer.MAX_VALUE) {
      throw k.fail("n_embd " + hidden + " is too large: the MLP's inner width 4 x n_embd = " + 4L * hidden
          + " exceeds the largest width, " + Integer.MAX_VALUE);
    }
    return new ModelConfig(Family.GPT2, vocab, positive(k, "n_positions", positions), layers, hidden, heads, heads,
        inner == null ? 4 * hidden : positive(k, "n_inner", inner), eps, theta, tied, bos, eos);
  }

  private static ModelConfig llama(Keys k) {
    int vocab = k.posInt("vocab_size");
    int hidden = k.posInt("hidden_size");
    int inter = k.posInt("intermediate_size");
    int layers = k.posInt("num_hidden_layers");
    int heads = k.posInt("num_attention_heads");
    Integer kvOpt = k.optInt("num_key_value_heads");
    int kv = kvOpt == null ? heads : positive(k, "num_key_value_heads", kvOpt);
    divisible(k, "hidden_size", hidden, "num_attention_heads", heads);
    divisible(k, "num_attention_heads", heads, "num_key_value_heads", kv);
    Integer headDim = k.optInt("head_dim");
    if (headDim != null && (hidden % heads != 0 || headDim != hidden / heads)) {
      throw k.fail("head_dim " + headDim + " differs from hidden_size / num_attention_heads = " + hidden + " / " + heads
          + "; a head dimension decoupled from the hidden size is not supported");
    }
    Integer maxPosOpt = k.optInt("max_position_embeddings");
    int maxPos = maxPosOpt == null ? 2048 : positive(k, "max_position_embeddings", maxPosOpt);
    float eps = k.optFloat("rms_norm_eps", 1e-6f);
    String act = k.string("hidden_act", "silu");
    if (!act.equals("silu")) {
      throw k.fail("hidden_act \"" + act + "\" is not supported; only \"silu\" (SwiGLU) is implemented");
    }
    JsonElement scaling = k.obj.get("rope_scaling");
    if (scaling != null && !scaling.isJsonNull()) {
      throw k.fail("rope_scaling of type " + ropeType(scaling) + " is not supported; only plain RoPE is implemented "
          + "(rope_scaling must be null)");
    }
    Float legacyTheta = k.optFloatOrNull("rope_theta");
    float theta = legacyTheta == null ? 10000f : legacyTheta;
    JsonElement params = k.obj.get("rope_parameters");
    if (params != null && !params.isJsonNull()) {
      if (!params.isJsonObject()) throw k.fail("rope_parameters must be an object, got " + brief(params));
      JsonElement t = params.getAsJsonObject().get("rope_type");
      if (t == null) t = params.getAsJsonObject().get("type");
      if (t != null && !t.isJsonNull() && !(t.isJsonPrimitive() && t.getAsString().equals("default"))) {
        throw k.fail("rope_parameters of type " + ropeType(params) + " is not supported; only plain RoPE (\"default\") is implemented");
      }
      Keys p = new Keys(k.src, params.getAsJsonObject(), "rope_parameters.");
      Float fromParams = p.optFloatOrNull("rope_theta");
      if (fromParams != null) {
        if (legacyTheta != null && legacyTheta.floatValue() != fromParams.floatValue()) {
          throw k.fail("rope_theta " + legacyTheta + " disagrees with rope_parameters.rope_theta " + fromParams);
        }
        theta = fromParams;
      }
    }
    k.reject("attention_bias", true, "biases on the attention projections are not implemented");
    k.reject("mlp_bias", true, "biases on the MLP projections are not implemented");
    boolean tied = k.bool("tie_word_embeddings", false);
    int bos = k.tokenId("bos_token_id", 1, vocab);
    int eos = k.tokenId("eos_token_id", 2, vocab);
    return new ModelConfig(Family.LLAMA, vocab, maxPos, layers, hidden, heads, kv, inter, eps, theta, tied, bos, eos);
  }

  private static String ropeType(JsonElement scaling) {
    if (scaling.isJsonObject()) {
      for (String key : new String[] {"rope_type", "type"}) {
        JsonElement t = scaling.getAsJsonObject().get(key);
        if (t != null && t.isJsonPrimitive()) return "\"" + t.getAsString() + "\"";
      }
    }
    return brief(scaling);
  }

  /** Checks that key {@code a} is a multiple of key {@code b} (in the file's names, before ModelConfig checks it). */
  private static void divisible(Keys k, String a, int av, String b, int bv) {
    if (av % bv != 0) throw k.fail(a + " " + av + " is not divisible by " + b + " " + bv);
  }

  private static int positive(Keys k, String key, int v) {
    if (v <= 0) throw k.fail(key + " must be > 0, got " + v);
    return v;
  }

  // ------------------------------------------------------------------ writing

  /** The {@code config.json} text for {@code c}, with {@code torch_dtype "float32"}. */
  public static String toJson(ModelConfig c) {
    return toJson(c, DType.F32);
  }

  /** The {@code config.json} text for {@code c} whose weights are saved as {@code dtype} (its torch_dtype). */
  public static String toJson(ModelConfig c, DType dtype) {
    Objects.requireNonNull(c, "config");
    Objects.requireNonNull(dtype, "dtype");
    Map<String, JsonElement> m = new TreeMap<>();
    m.put("model_type", str(c.family().hfModelType()));
    m.put("torch_dtype", str(torchDtype(dtype)));
    m.put("vocab_size", num(c.vocabSize()));
    m.put("bos_token_id", c.bosTokenId() < 0 ? JsonNull.INSTANCE : num(c.bosTokenId()));
    m.put("eos_token_id", c.eosTokenId() < 0 ? JsonNull.INSTANCE : num(c.eosTokenId()));
    m.put("tie_word_embeddings", new JsonPrimitive(c.tiedEmbeddings()));
    m.put("initializer_range", num(0.02f));
    m.put("use_cache", new JsonPrimitive(true));
    if (c.family() == Family.GPT2) {
      m.put("architectures", list("GPT2LMHeadModel"));
      m.put("activation_function", str("gelu_new"));
      m.put("n_positions", num(c.maxSeqLen()));
      m.put("n_embd", num(c.hidden()));
      m.put("n_layer", num(c.layers()));
      m.put("n_head", num(c.heads()));
      m.put("n_inner", c.intermediate() == 4L * c.hidden() ? JsonNull.INSTANCE : num(c.intermediate()));
      m.put("layer_norm_epsilon", num(c.normEps()));
      m.put("attn_pdrop", num(0f));
      m.put("embd_pdrop", num(0f));
      m.put("resid_pdrop", num(0f));
      m.put("scale_attn_weights", new JsonPrimitive(true));
      m.put("scale_attn_by_inverse_layer_idx", new JsonPrimitive(false));
      m.put("reorder_and_upcast_attn", new JsonPrimitive(false));
      if (c.ropeTheta() != 0f && Float.isFinite(c.ropeTheta())) m.put("rope_theta", num(c.ropeTheta()));
    } else {
      m.put("architectures", list("LlamaForCausalLM"));
      m.put("hidden_act", str("silu"));
      m.put("hidden_size", num(c.hidden()));
      m.put("intermediate_size", num(c.intermediate()));
      m.put("num_hidden_layers", num(c.layers()));
      m.put("num_attention_heads", num(c.heads()));
      m.put("num_key_value_heads", num(c.kvHeads()));
      m.put("head_dim", num(c.headDim()));
      m.put("max_position_embeddings", num(c.maxSeqLen()));
      m.put("rms_norm_eps", num(c.normEps()));
      m.put("rope_theta", num(c.ropeTheta()));
      m.put("rope_scaling", JsonNull.INSTANCE);
      m.put("attention_bias", new JsonPrimitive(false));
      m.put("attention_dropout", num(0f));
      m.put("mlp_bias", new JsonPrimitive(false));
      m.put("pretraining_tp", num(1));
    }
    JsonObject o = new JsonObject();
    m.forEach(o::add);
    return new GsonBuilder().setPrettyPrinting().serializeNulls().disableHtmlEscaping().create().toJson(o) + "\n";
  }

  /** Writes {@code c} to {@code configJson} atomically, with {@code torch_dtype "float32"}. */
  public static void write(ModelConfig c, Path configJson) {
    write(c, DType.F32, configJson);
  }

  /** Writes {@code c} to {@code configJson} atomically, naming {@code dtype} as the weights' torch_dtype. */
  public static void write(ModelConfig c, DType dtype, Path configJson) {
    Objects.requireNonNull(configJson, "configJson");
    String text = toJson(c, dtype);
    try {
      AtomicFiles.writeString(configJson, text);
    } catch (IOException e) {
      throw new HfFormatException(configJson + ": cannot write: " + FileProblems.reason(e), e);
    }
  }

  /** The PyTorch name of a dtype as {@code torch_dtype} writes it. */
  static String torchDtype(DType d) {
    return switch (d) {
      case F32 -> "float32";
      case BF16 -> "bfloat16";
      case F16 -> "float16";
      case I32 -> "int32";
    };
  }

  private static JsonPrimitive str(String s) {
    return new JsonPrimitive(s);
  }

  private static JsonPrimitive num(int v) {
    return new JsonPrimitive(v);
  }

  /** A float as its shortest decimal, so that reading it back as a float is exact, spelled as Python does. */
  private static JsonPrimitive num(float v) {
    return new JsonPrimitive(new Literal(pythonRepr(v)));
  }

  /**
   * The shortest decimal that reads back as {@code v} (finite), spelled as Python's {@code repr} spells
   * floats: {@code 1e-05}, {@code 0.0001}, {@code 10000.0}, {@code 1e+16}.
   */
  static String pythonRepr(float v) {
    if (v == 0f) return 1 / v < 0 ? "-0.0" : "0.0";
    BigDecimal bd = new BigDecimal(Float.toString(v)).stripTrailingZeros();
    String digits = bd.unscaledValue().abs().toString();
    int point = digits.length() - bd.scale(); // v = 0.digits * 10^point
    String sign = bd.signum() < 0 ? "-" : "";
    if (point > 16 || point < -3) {
      int exp = point - 1;
      String mant = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
      return sign + mant + "e" + (exp < 0 ? "-" : "+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
    }
    if (point <= 0) return sign + "0." + "0".repeat(-point) + digits;
    if (point >= digits.length()) return sign + digits + "0".repeat(point - digits.length()) + ".0";
    return sign + digits.substring(0, point) + "." + digits.substring(point);
  }

  /** A JSON number written exactly as given. */
  private static final class Literal extends Number {
    private static final long serialVersionUID = 1L;
    private final String text;

    Literal(String text) {
      this.text = text;
    }

    @Override
    public int intValue() {
      return (int) doubleValue();
    }

    @Override
    public long longValue() {
      return (long) doubleValue();
    }

    @Override
    public float floatValue() {
      return Float.parseFloat(text);
    }

    @Override
    public double doubleValue() {
      return Double.parseDouble(text);
    }

    @Override
    public String toString() {
      return text;
    }
  }

  private static JsonArray list(String s) {
    JsonArray a = new JsonArray();
    a.add(s);
    return a;
  }

  static String jsonError(Exception e) {
    return dev.athanor.io.JsonErrors.message(e);
  }

  static String brief(JsonElement e) {
    String s = String.valueOf(e);
    return s.length() > 60 ? s.substring(0, 57) + "..." : s;
  }

  /** Typed access to the keys of a JSON object, with errors naming the source and the key. */
  private static final class Keys {
    final String src;
    final JsonObject obj;
    final String prefix;

    Keys(String src, JsonObject obj) {
      this(src, obj, "");
    }

    Keys(String src, JsonObject obj, String prefix) {
      this.src = src;
      this.obj = obj;
      this.prefix = prefix;
    }

    HfFormatException fail(String problem) {
      return new HfFormatException(src + ": " + problem);
    }

    /** The value, or null when absent or JSON null. */
    private JsonElement get(String key) {
      JsonElement e = obj.get(key);
      return e == null || e.isJsonNull() ? null : e;
    }

    int posInt(String key) {
      Integer v = optInt(key);
      if (v == null) throw fail(prefix + key + " missing");
      if (v <= 0) throw fail(prefix + key + " must be > 0, got " + v);
      return v;
    }

    Integer optInt(String key) {
      JsonElement e = get(key);
      return e == null ? null : asInt(key, e);
    }

    private int asInt(String key, JsonElement e) {
      if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber())) {
        throw fail(prefix + key + " must be an integer, got " + brief(e));
      }
      try {
        return new BigDecimal(e.getAsString()).intValueExact();
      } catch (ArithmeticException | NumberFormatException ex) {
        throw fail(prefix + key + " must be an integer in int range, got " + brief(e));
      }
    }

    Float optFloatOrNull(String key) {
      JsonElement e = get(key);
      if (e == null) return null;
      if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber())) {
        throw fail(prefix + key + " must be a number, got " + brief(e));
      }
      float f;
      try {
        f = Float.parseFloat(e.getAsString());
      } catch (NumberFormatException ex) {
        throw fail(prefix + key + " must be a number, got " + brief(e));
      }
      if (!Float.isFinite(f)) throw fail(prefix + key + " must be a finite number, got " + brief(e));
      return f;
    }

    float optFloat(String key, float dflt) {
      Float f = optFloatOrNull(key);
      return f == null ? dflt : f;
    }

    boolean bool(String key, boolean dflt) {
      JsonElement e = get(key);
      if (e == null) return dflt;
      if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isBoolean())) {
        throw fail(prefix + key + " must be true or false, got " + brief(e));
      }
      return e.getAsBoolean();
    }

    String string(String key, String dflt) {
      JsonElement e = get(key);
      if (e == null) return dflt;
      if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isString())) {
        throw fail(prefix + key + " must be a string, got " + brief(e));
      }
      return e.getAsString();
    }

    /** Throws when boolean {@code key} is present with value {@code bad}. */
    void reject(String key, boolean bad, String why) {
      if (bool(key, !bad) == bad) throw fail(prefix + key + "=" + bad + " is not supported: " + why);
    }

    /**
     * A token id: {@code dflt} when absent, -1 when null, the first element of a list; ids outside
     * [0, vocab) read as -1.
     */
    int tokenId(String key, int dflt, int vocab) {
      JsonElement raw = obj.get(key);
      int id;
      if (raw == null) {
        id = dflt;
      } else if (raw.isJsonNull()) {
        id = -1;
      } else if (raw.isJsonArray()) {
        JsonArray a = raw.getAsJsonArray();
        id = a.isEmpty() || a.get(0).isJsonNull() ? -1 : asInt(key + "[0]", a.get(0));
        for (int i = 1; i < a.size(); i++) asInt(key + "[" + i + "]", a.get(i));
      } else {
        id = asInt(key, raw);
      }
      return id >= 0 && id < vocab ? id : -1;
    }
  }
}

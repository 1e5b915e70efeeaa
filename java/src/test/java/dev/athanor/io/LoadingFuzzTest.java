package dev.athanor.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.hf.HfFormatException;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.safetensors.SafetensorsSet;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14, mutation fuzzing of what a model directory's loading reads first: the safetensors header and
 * {@code config.json}. From a valid tiny model, a fixed seed makes a few hundred mutants of each (byte flips, truncations,
 * changed length prefixes, huge, negative and fractional offsets, wrong dtypes, overflowing shapes, duplicate and missing
 * names, bytes that are not UTF-8, wrong types, huge, negative and zero values, missing keys, deep nesting, text that is
 * not JSON) and loads each through {@link HfModelDir#load}, the path {@code generate}, {@code score} and {@code train
 * --model} take. Every outcome must be a valid model or the documented {@link HfFormatException} with a message for
 * people (naming the directory or file, no class names or links), within a time limit: no other exception, no hang, no
 * crash, no out-of-memory.
 */
class LoadingFuzzTest {
  private static final long SEED = 0x1404_2024L;
  private static final int CASES = 300;
  private static final Duration LIMIT = Duration.ofSeconds(20);
  private static final Pattern LEAK = Pattern.compile("[A-Za-z]+(Exception|Error)\\b|https?://|ATH_ERR");
  private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();

  @TempDir static Path tmp;
  static Path base;
  static byte[] header;
  static byte[] data;
  static String configText;
  static final ModelConfig CFG = ModelConfig.gpt2(40, 8, 1, 8, 2);

  @BeforeAll
  static void saveATinyModel() throws IOException {
    base = tmp.resolve("base");
    try (Transformer m = Transformer.create(CFG, Device.CPU)) {
      m.initialize(3);
      HfModelDir.save(base, CFG, m.weights(), DType.F32);
    }
    byte[] file = Files.readAllBytes(base.resolve(SafetensorsSet.SINGLE));
    int n = (int) ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    header = Arrays.copyOfRange(file, 8, 8 + n);
    data = Arrays.copyOfRange(file, 8 + n, file.length);
    configText = Files.readString(base.resolve(HfConfig.FILE_NAME));
  }

  @Test
  void mutatedSafetensorsHeadersLoadOrFailCleanly() throws IOException {
    Path dir = Files.createDirectory(tmp.resolve("st"));
    Files.writeString(dir.resolve(HfConfig.FILE_NAME), configText);
    int valid = fuzz(dir, SafetensorsSet.SINGLE, SEED, LoadingFuzzTest::mutateSafetensors);
    assertTrue(valid < CASES / 2, "most mutants are invalid: " + valid + " of " + CASES + " loaded");
  }

  @Test
  void mutatedConfigsLoadOrFailCleanly() throws IOException {
    Path dir = Files.createDirectory(tmp.resolve("cfg"));
    Files.copy(base.resolve(SafetensorsSet.SINGLE), dir.resolve(SafetensorsSet.SINGLE));
    int valid = fuzz(dir, HfConfig.FILE_NAME, SEED + 1, LoadingFuzzTest::mutateConfig);
    assertTrue(valid > 0 && valid < CASES / 2, valid + " of " + CASES + " mutated configs loaded");
  }

  /** Makes a mutant file from the valid one with {@code count} operations, recording them in {@code ops}. */
  private interface Mutator {
    byte[] mutate(SplittableRandom rng, List<String> ops, int count);
  }

  /** Loads {@link #CASES} mutants of {@code dir}'s {@code file} (one operation each, then two); returns how many loaded. */
  private static int fuzz(Path dir, String file, long seed, Mutator mutator) throws IOException {
    SplittableRandom rng = new SplittableRandom(seed);
    int valid = 0;
    for (int i = 0; i < CASES; i++) {
      List<String> ops = new ArrayList<>();
      Files.write(dir.resolve(file), mutator.mutate(rng, ops, i < CASES / 2 ? 1 : 2));
      if (load(dir, file + " case " + i + " " + ops)) valid++;
    }
    return valid;
  }

  /** Loads {@code dir}: true for a valid model, false for a clean error; anything else fails the test. */
  private static boolean load(Path dir, String what) {
    return assertTimeoutPreemptively(LIMIT, () -> {
      try (HfModelDir.Loaded l = HfModelDir.load(dir)) {
        assertEquals(l.config().parameterSpecs().size(), l.tensors().size(), what);
        return true;
      } catch (HfFormatException e) {
        String m = e.getMessage();
        assertTrue(m != null && m.contains(dir.toString()), what + ": the message names no file: " + m);
        assertFalse(LEAK.matcher(m).find(), what + ": the message is not for people: " + m);
        assertTrue(m.chars().noneMatch(Character::isISOControl), what + ": one line without control characters: " + m);
        return false;
      } catch (RuntimeException | Error e) {
        return fail(what + ": not a clean error: " + e, e);
      }
    }, what + " hangs");
  }

  // ------------------------------------------------------------------------------------------- safetensors

  private static final String[] DTYPES = {"F32", "F16", "BF16", "F64", "I32", "I64", "U8", "I8", "BOOL", "F8_E4M3", "XYZ", "",
      "f32", "F32 "};

  private static byte[] mutateSafetensors(SplittableRandom rng, List<String> ops, int count) {
    byte[] h = header;
    Long prefix = null;
    byte[] tail = data;
    Integer cut = null;
    for (int k = 0; k < count; k++) {
      int op = rng.nextInt(10);
      ops.add("op" + op);
      switch (op) {
        case 0 -> { // flip bytes of the header
          h = h.clone();
          for (int j = rng.nextInt(1, 4); j > 0; j--) h[rng.nextInt(h.length)] = (byte) rng.nextInt(256);
        }
        case 1 -> cut = rng.nextInt(8 + h.length + tail.length); // truncate the file
        case 2 -> { // the length prefix
          long[] choices = {0, 1, 7, h.length - 1, h.length + 1, h.length + tail.length, h.length + tail.length + 1,
              100_000_000L, 100_000_001L, Integer.MAX_VALUE, 1L << 32, Long.MAX_VALUE, -1L, Long.MIN_VALUE, rng.nextLong()};
          prefix = choices[rng.nextInt(choices.length)];
        }
        case 3 -> h = withEntries(h, rng, (o, name) -> entry(o, name).add("data_offsets", offsets(rng)));
        case 4 -> h = withEntries(h, rng, (o, name) -> entry(o, name).add("dtype", value(rng, DTYPES)));
        case 5 -> h = withEntries(h, rng, (o, name) -> entry(o, name).add("shape", shape(rng)));
        case 6 -> h = duplicateOrRename(h, rng);
        case 7 -> h = insert(h, rng, new byte[][] {{(byte) 0xff}, {(byte) 0xc0, (byte) 0x80}, {(byte) 0xed, (byte) 0xa0, (byte) 0x80},
            {(byte) 0xe2, (byte) 0x82}, {(byte) 0xfe, (byte) 0xff}, {0}}[rng.nextInt(6)]);
        case 8 -> h = structure(h, rng);
        default -> { // append to the data section, or shorten it
          tail = rng.nextBoolean() ? Arrays.copyOf(tail, tail.length + rng.nextInt(1, 64))
              : Arrays.copyOf(tail, rng.nextInt(tail.length));
        }
      }
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, prefix != null ? prefix : h.length).array());
    out.writeBytes(h);
    out.writeBytes(tail);
    byte[] file = out.toByteArray();
    return cut != null && cut < file.length ? Arrays.copyOf(file, cut) : file;
  }

  /** A change to the parsed header: {@code o} is the whole header, {@code name} a tensor picked at random. */
  private interface EntryChange {
    void apply(JsonObject o, String name);
  }

  /** {@code h} parsed (as it stands: unchanged when it no longer parses), changed, and written again. */
  private static byte[] withEntries(byte[] h, SplittableRandom rng, EntryChange change) {
    JsonObject o;
    try {
      o = JsonParser.parseString(new String(h, StandardCharsets.UTF_8)).getAsJsonObject();
    } catch (RuntimeException e) {
      return h;
    }
    List<String> names = new ArrayList<>(o.keySet());
    names.remove("__metadata__");
    if (names.isEmpty()) return h;
    change.apply(o, names.get(rng.nextInt(names.size())));
    return write(o).getBytes(StandardCharsets.UTF_8);
  }

  private static JsonObject entry(JsonObject o, String name) {
    JsonElement e = o.get(name);
    if (e.isJsonObject()) return e.getAsJsonObject();
    JsonObject fresh = new JsonObject();
    o.add(name, fresh);
    return fresh;
  }

  private static JsonElement offsets(SplittableRandom rng) {
    Object[] ends = {-1, 0, 1, 4, data.length, data.length + 1, Integer.MAX_VALUE, 1L << 32, 1L << 53, Long.MAX_VALUE,
        new BigInteger("18446744073709551616"), 1e30, 1.5, -0.0, "3", null};
    JsonArray a = new JsonArray();
    int n = rng.nextInt(8) == 0 ? rng.nextInt(4) : 2;
    for (int i = 0; i < n; i++) a.add(json(ends[rng.nextInt(ends.length)]));
    return rng.nextInt(10) == 0 ? new JsonPrimitive("0-4") : a;
  }

  private static JsonElement shape(SplittableRandom rng) {
    Object[][] shapes = {{1L << 62, 4}, {1L << 31, 1L << 31, 1L << 31}, {-1}, {1e30}, {1.5}, {"a"}, {}, {0}, {0, 5},
        {Long.MAX_VALUE, Long.MAX_VALUE}, {new BigInteger("99999999999999999999999")}, {40, 8}, {8, 40}, {320}, {null}};
    JsonArray a = new JsonArray();
    for (Object x : shapes[rng.nextInt(shapes.length)]) a.add(json(x));
    return switch (rng.nextInt(12)) {
      case 0 -> new JsonPrimitive("x");
      case 1 -> JsonNull.INSTANCE;
      case 2 -> nested(rng.nextInt(1, 400));
      default -> a;
    };
  }

  private static JsonElement value(SplittableRandom rng, String[] strings) {
    return switch (rng.nextInt(8)) {
      case 0 -> new JsonPrimitive(5);
      case 1 -> JsonNull.INSTANCE;
      case 2 -> new JsonArray();
      case 3 -> new JsonObject();
      default -> new JsonPrimitive(strings[rng.nextInt(strings.length)]);
    };
  }

  /** A tensor named twice, renamed to another's name, to a buffer's, to "", or removed. */
  private static byte[] duplicateOrRename(byte[] h, SplittableRandom rng) {
    JsonObject o;
    try {
      o = JsonParser.parseString(new String(h, StandardCharsets.UTF_8)).getAsJsonObject();
    } catch (RuntimeException e) {
      return h;
    }
    List<Map.Entry<String, JsonElement>> es = new ArrayList<>(o.entrySet());
    if (es.isEmpty()) return h;
    int i = rng.nextInt(es.size()), j = rng.nextInt(es.size());
    List<String> parts = new ArrayList<>();
    String[] names = {es.get(j).getKey(), "", "transformer.h.0.attn.bias", "h.0.ln_1.weight", "lm_head.weight",
        "transformer.h.7.ln_1.weight", "\u00e9\u4e2d", "__metadata__"};
    int kind = rng.nextInt(4);
    for (int k = 0; k < es.size(); k++) {
      Map.Entry<String, JsonElement> e = es.get(k);
      if (k == i && kind == 3) continue; // removed
      String name = k == i && kind == 1 ? names[rng.nextInt(names.length)] : e.getKey();
      parts.add(GSON.toJson(name) + ":" + write(e.getValue()));
      if (k == i && kind == 0) parts.add(GSON.toJson(e.getKey()) + ":" + write(es.get(j).getValue())); // twice
      if (k == i && kind == 2) parts.add(GSON.toJson("extra." + k) + ":" + write(e.getValue())); // overlapping data
    }
    return ("{" + String.join(",", parts) + "}").getBytes(StandardCharsets.UTF_8);
  }

  /** Structural changes: keys removed, entries of the wrong type, odd metadata, a header that is not an object. */
  private static byte[] structure(byte[] h, SplittableRandom rng) {
    return switch (rng.nextInt(8)) {
      case 0 -> withEntries(h, rng, (o, name) -> entry(o, name).remove(new String[] {"dtype", "shape", "data_offsets"}[rng.nextInt(3)]));
      case 1 -> withEntries(h, rng, (o, name) -> o.add(name, value(rng, new String[] {"x"})));
      case 2 -> withEntries(h, rng, (o, name) -> {
        JsonObject meta = new JsonObject();
        meta.add("format", value(rng, new String[] {"pt", "np"}));
        o.add("__metadata__", rng.nextBoolean() ? meta : value(rng, new String[] {"pt"}));
      });
      case 3 -> withEntries(h, rng, (o, name) -> o.add("__metadata__", nested(rng.nextInt(100, 3000))));
      case 4 -> new String[] {"[]", "null", "\"x\"", "1", "{}", "", " ", "{\"a\":", "[[[["}[rng.nextInt(9)].getBytes(StandardCharsets.UTF_8);
      case 5 -> (new String(h, StandardCharsets.UTF_8) + new String[] {"   ", "x", "{}", "\n", "\u0000"}[rng.nextInt(5)])
          .getBytes(StandardCharsets.UTF_8);
      case 6 -> withEntries(h, rng, (o, name) -> entry(o, name).addProperty("extra_key", 1));
      default -> Arrays.copyOf(h, rng.nextInt(h.length)); // a cut header with a matching prefix
    };
  }

  private static final Pattern DEEP = Pattern.compile("\"@@deep(\\d+)@@\"");

  /** A placeholder for an array nested {@code depth} deep, which {@link #write} spells out (Gson's writer recurses). */
  private static JsonElement nested(int depth) {
    return new JsonPrimitive("@@deep" + depth + "@@");
  }

  /** {@code e} as JSON text, with the nested arrays of {@link #nested} spelled out. */
  private static String write(JsonElement e) {
    return DEEP.matcher(GSON.toJson(e)).replaceAll(m -> {
      int d = Integer.parseInt(m.group(1));
      return "[".repeat(d) + "1" + "]".repeat(d);
    });
  }

  private static byte[] insert(byte[] h, SplittableRandom rng, byte[] bad) {
    int at = rng.nextInt(h.length + 1);
    byte[] out = new byte[h.length + bad.length];
    System.arraycopy(h, 0, out, 0, at);
    System.arraycopy(bad, 0, out, at, bad.length);
    System.arraycopy(h, at, out, at + bad.length, h.length - at);
    return out;
  }

  private static JsonElement json(Object x) {
    return switch (x) {
      case null -> JsonNull.INSTANCE;
      case Number n -> new JsonPrimitive(n);
      case String s -> new JsonPrimitive(s);
      default -> throw new IllegalArgumentException(String.valueOf(x));
    };
  }

  // ---------------------------------------------------------------------------------------------- config

  private static final String[] KEYS = {"model_type", "vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head",
      "n_inner", "layer_norm_epsilon", "activation_function", "tie_word_embeddings", "bos_token_id", "eos_token_id",
      "rope_theta", "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention",
      "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
      "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_scaling", "rope_parameters", "attention_bias", "mlp_bias",
      "unknown_key"};
  /** The first keys of {@link #KEYS}: those of GPT-2's sizes and ids. */
  private static final int SIZES = 13;
  private static final String[] LITERALS = {"0", "-1", "1", "2", "3", "4", "7", "8", "16", "40", "2147483647", "2147483648",
      "-2147483648", "9223372036854775808", "1e300", "1e-300", "1.5", "-0.0", "8.0", "\"8\"", "\"\"", "true", "false", "null",
      "[]", "[8]", "[2, 3]", "{}", "{\"rope_type\": \"linear\"}", "{\"type\": \"default\", \"rope_theta\": 5.0}", "NaN",
      "Infinity", "-Infinity", "1000000", "100000000", "1610612736", "536870912", "\"gelu\"", "\"silu\"", "\"llama\"",
      "\"gpt2\"", "\"gelu_new\""};

  private static byte[] mutateConfig(SplittableRandom rng, List<String> ops, int count) {
    String text = configText;
    for (int k = 0; k < count; k++) {
      int op = rng.nextInt(8);
      ops.add("op" + op);
      text = switch (op) {
        case 0, 1, 2 -> { // a key set to another value, as JSON text (NaN and Infinity are what Python writes)
          String key = KEYS[rng.nextInt(rng.nextInt(3) == 0 ? KEYS.length : SIZES)]; // mostly the sizes
          yield setKey(text, key, LITERALS[rng.nextInt(LITERALS.length)]);
        }
        case 3 -> { // a key removed
          JsonObject o = parseOrNull(text);
          if (o == null || o.isEmpty()) yield text;
          List<String> keys = new ArrayList<>(o.keySet());
          o.remove(keys.get(rng.nextInt(keys.size())));
          yield write(o);
        }
        case 4 -> setKey(text, KEYS[rng.nextInt(KEYS.length)], write(nested(rng.nextInt(1, 5000)))); // deep nesting
        case 5 -> { // duplicate keys
          String key = KEYS[rng.nextInt(7)];
          int brace = text.lastIndexOf('}');
          yield brace < 0 ? text : text.substring(0, brace) + ", \"" + key + "\": " + LITERALS[rng.nextInt(LITERALS.length)] + "}";
        }
        case 6 -> { // not JSON, or not an object
          String[] junk = {"", " ", "null", "[]", "\"x\"", "42", "{", "}", "{\"model_type\": \"gpt2\"", "\ufeff" + text,
              text + "x", text + "{}", text.substring(0, rng.nextInt(text.length())), "{'model_type': 'gpt2'}"};
          yield junk[rng.nextInt(junk.length)];
        }
        default -> { // bytes flipped (possibly not UTF-8 any more)
          byte[] b = text.getBytes(StandardCharsets.ISO_8859_1);
          for (int j = rng.nextInt(1, 4); j > 0; j--) b[rng.nextInt(b.length)] = (byte) rng.nextInt(256);
          yield new String(b, StandardCharsets.ISO_8859_1);
        }
      };
    }
    return text.getBytes(StandardCharsets.ISO_8859_1.newEncoder().canEncode(text) ? StandardCharsets.ISO_8859_1
        : StandardCharsets.UTF_8);
  }

  /** {@code text} with {@code key} set to the JSON literal {@code literal} (appended textually when it does not parse). */
  private static String setKey(String text, String key, String literal) {
    JsonObject o = parseOrNull(text);
    if (o == null) return text;
    o.remove(key);
    String rest = write(o);
    return rest.equals("{}") ? "{\"" + key + "\": " + literal + "}"
        : "{\"" + key + "\": " + literal + ", " + rest.substring(1);
  }

  private static JsonObject parseOrNull(String text) {
    try {
      JsonElement e = JsonParser.parseString(text);
      return e.isJsonObject() ? e.getAsJsonObject() : null;
    } catch (RuntimeException e) {
      return null;
    }
  }
}

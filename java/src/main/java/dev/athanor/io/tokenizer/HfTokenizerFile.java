package dev.athanor.io.tokenizer;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Reads the JSON of a Hugging Face {@code tokenizer.json} into the parts of an {@link HfTokenizer}; every error
 * names the file and the JSON path of the offending value.
 */
final class HfTokenizerFile {
  static final int MAX_ID = (1 << 24) - 1;

  /** The pieces of a parsed file. */
  static final class Parsed {
    String source;
    HfNormalizer normalizer;
    HfPreTokenizer preTokenizer;
    HfDecoder decoder;
    BpeModel model;
    Pattern addedPattern;
    int[] addedGroupIds;
    byte[][] tokenBytes;
    String[] tokenStrings;
    Map<String, Integer> tokenIds;
    Map<String, Integer> addedIds;
  }

  private final String source;
  private boolean byteLevelPre;

  HfTokenizerFile(String source) {
    this.source = source;
  }

  private IllegalArgumentException error(String msg) {
    return new IllegalArgumentException(source + ": " + msg);
  }

  Parsed parse(String json) {
    JsonElement rootElement;
    try {
      rootElement = JsonParser.parseString(json);
    } catch (JsonParseException e) {
      throw error("not valid JSON (" + (e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage()) + ")");
    }
    if (!rootElement.isJsonObject()) throw error("expected a JSON object at the top level");
    JsonObject root = rootElement.getAsJsonObject();
    Parsed p = new Parsed();
    p.source = source;

    JsonObject model = object(root, "model", "");
    String type = optString(model, "type", "model");
    if (type == null) throw error("model.type is missing (only \"BPE\" models are supported)");
    if (!type.equals("BPE")) {
      throw error("model.type \"" + type + "\" is not supported (only BPE models are: byte-level like GPT-2/Llama 3, "
          + "or SentencePiece-style like Llama 2)");
    }
    JsonElement dropout = model.get("dropout");
    if (dropout != null && !dropout.isJsonNull() && number(dropout, "model.dropout") != 0) {
      throw error("model.dropout " + dropout + " (BPE dropout) is not supported");
    }
    for (String affix : List.of("continuing_subword_prefix", "end_of_word_suffix")) {
      String v = optString(model, affix, "model");
      if (v != null && !v.isEmpty()) throw error("model." + affix + " \"" + v + "\" is not supported");
    }

    p.normalizer = root.has("normalizer") && !root.get("normalizer").isJsonNull()
        ? normalizer(object(root, "normalizer", ""), "normalizer") : null;
    p.preTokenizer = root.has("pre_tokenizer") && !root.get("pre_tokenizer").isJsonNull()
        ? preTokenizer(object(root, "pre_tokenizer", ""), "pre_tokenizer") : null;
    if (!root.has("decoder") || root.get("decoder").isJsonNull()) {
      throw error("decoder is missing or null; supported decoders: ByteLevel, Metaspace, Sequence of Replace/"
          + "ByteFallback/Fuse/Strip");
    }
    p.decoder = decoder(object(root, "decoder", ""));
    boolean byteLevelDecoder = p.decoder.steps().stream().anyMatch(s -> s instanceof HfDecoder.ByteLevel);
    if (byteLevelDecoder != byteLevelPre) {
      throw error(byteLevelPre ? "the pre_tokenizer is ByteLevel but the decoder is not"
          : "the decoder is ByteLevel but the pre_tokenizer is not (byte-level vocabularies need both)");
    }

    Map<String, Integer> vocab = vocab(object(model, "vocab", "model"));
    List<String[]> merges = merges(model);
    String unk = optString(model, "unk_token", "model");
    p.model = new BpeModel(source, vocab, merges, unk, optBool(model, "fuse_unk", false, "model"),
        optBool(model, "byte_fallback", false, "model"), optBool(model, "ignore_merges", false, "model"), byteLevelPre);

    List<Added> added = addedTokens(root, vocab);
    int size = 0;
    for (int id : vocab.values()) size = Math.max(size, id + 1);
    for (Added a : added) size = Math.max(size, a.id + 1);
    p.tokenStrings = new String[size];
    p.tokenBytes = new byte[size][];
    p.tokenIds = new HashMap<>(vocab);
    p.addedIds = new HashMap<>();
    for (Map.Entry<String, Integer> e : vocab.entrySet()) {
      p.tokenStrings[e.getValue()] = e.getKey();
      p.tokenBytes[e.getValue()] = p.decoder.bytes(e.getKey());
    }
    for (Added a : added) {
      p.tokenStrings[a.id] = a.content;
      p.tokenBytes[a.id] = a.content.getBytes(StandardCharsets.UTF_8);
      p.tokenIds.put(a.content, a.id);
      p.addedIds.put(a.content, a.id);
    }
    addedPattern(p, added);
    return p;
  }

  private record Added(int id, String content, boolean special, boolean lstrip, boolean rstrip, boolean singleWord) {}

  private static void addedPattern(Parsed p, List<Added> added) {
    List<Added> plain = new ArrayList<>(added.stream().filter(a -> !a.special).toList());
    if (plain.isEmpty()) return;
    plain.sort(Comparator.comparingInt((Added a) -> a.content.length()).reversed());
    StringBuilder re = new StringBuilder();
    p.addedGroupIds = new int[plain.size()];
    for (int i = 0; i < plain.size(); i++) {
      Added a = plain.get(i);
      if (i > 0) re.append('|');
      if (a.singleWord) re.append("(?<!\\w)");
      if (a.lstrip) re.append("\\s*");
      re.append('(').append(Pattern.quote(a.content)).append(')');
      if (a.rstrip) re.append("\\s*");
      if (a.singleWord) re.append("(?!\\w)");
      p.addedGroupIds[i] = a.id;
    }
    p.addedPattern = Pattern.compile(re.toString(), Pattern.UNICODE_CHARACTER_CLASS);
  }

  private Map<String, Integer> vocab(JsonObject v) {
    Map<String, Integer> vocab = new HashMap<>(v.size() * 2);
    Map<Integer, String> byId = new HashMap<>(v.size() * 2);
    for (Map.Entry<String, JsonElement> e : v.entrySet()) {
      int id = intValue(e.getValue(), "model.vocab[\"" + e.getKey() + "\"]");
      String other = byId.putIfAbsent(id, e.getKey());
      if (other != null) {
        throw error("model.vocab gives id " + id + " to both \"" + other + "\" and \"" + e.getKey() + "\"");
      }
      vocab.put(e.getKey(), id);
    }
    if (vocab.isEmpty()) throw error("model.vocab is empty");
    return vocab;
  }

  private List<String[]> merges(JsonObject model) {
    JsonElement m = model.get("merges");
    if (m == null || m.isJsonNull()) return List.of();
    if (!m.isJsonArray()) throw error("model.merges must be an array, got " + kind(m));
    JsonArray a = m.getAsJsonArray();
    List<String[]> merges = new ArrayList<>(a.size());
    for (int i = 0; i < a.size(); i++) {
      JsonElement e = a.get(i);
      String[] pair;
      if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) {
        String s = e.getAsString();
        pair = s.split(" ", -1);
        if (pair.length != 2 || pair[0].isEmpty() || pair[1].isEmpty()) {
          throw error("model.merges[" + i + "] \"" + s + "\" is not two tokens separated by one space");
        }
      } else if (e.isJsonArray() && e.getAsJsonArray().size() == 2 && isString(e.getAsJsonArray().get(0))
          && isString(e.getAsJsonArray().get(1))) {
        pair = new String[] {e.getAsJsonArray().get(0).getAsString(), e.getAsJsonArray().get(1).getAsString()};
      } else {
        throw error("model.merges[" + i + "] is " + e + "; expected \"a b\" or [\"a\", \"b\"]");
      }
      merges.add(pair);
    }
    return merges;
  }

  private List<Added> addedTokens(JsonObject root, Map<String, Integer> vocab) {
    JsonElement at = root.get("added_tokens");
    if (at == null || at.isJsonNull()) return List.of();
    if (!at.isJsonArray()) throw error("added_tokens must be an array, got " + kind(at));
    List<Added> out = new ArrayList<>();
    JsonArray a = at.getAsJsonArray();
    for (int i = 0; i < a.size(); i++) {
      String where = "added_tokens[" + i + "]";
      if (!a.get(i).isJsonObject()) throw error(where + " must be an object, got " + kind(a.get(i)));
      JsonObject o = a.get(i).getAsJsonObject();
      if (!o.has("id")) throw error(where + ".id is missing");
      int id = intValue(o.get("id"), where + ".id");
      String content = optString(o, "content", where);
      if (content == null || content.isEmpty()) throw error(where + ".content is missing or empty");
      // as in Hugging Face, an added token that the model's vocabulary already has keeps the vocabulary's id
      Integer inVocab = vocab.get(content);
      if (inVocab != null) id = inVocab;
      out.add(new Added(id, content, optBool(o, "special", false, where), optBool(o, "lstrip", false, where),
          optBool(o, "rstrip", false, where), optBool(o, "single_word", false, where)));
    }
    return out;
  }

  private HfNormalizer normalizer(JsonObject o, String where) {
    String type = type(o, where);
    return switch (type) {
      case "Sequence" -> {
        JsonArray a = array(o, "normalizers", where);
        List<HfNormalizer> steps = new ArrayList<>();
        for (int i = 0; i < a.size(); i++) {
          String w = where + ".normalizers[" + i + "]";
          steps.add(normalizer(asObject(a.get(i), w), w));
        }
        yield new HfNormalizer.Sequence(List.copyOf(steps));
      }
      case "Prepend" -> new HfNormalizer.Prepend(string(o, "prepend", where));
      case "Replace" -> new HfNormalizer.Replace(pattern(o, where, type), string(o, "content", where));
      case "NFC" -> new HfNormalizer.Unicode(java.text.Normalizer.Form.NFC);
      case "NFD" -> new HfNormalizer.Unicode(java.text.Normalizer.Form.NFD);
      case "NFKC" -> new HfNormalizer.Unicode(java.text.Normalizer.Form.NFKC);
      case "NFKD" -> new HfNormalizer.Unicode(java.text.Normalizer.Form.NFKD);
      case "Lowercase" -> new HfNormalizer.Lowercase();
      case "Strip" -> new HfNormalizer.Strip(optBool(o, "strip_left", false, where), optBool(o, "strip_right", false, where));
      default -> throw error(where + " type \"" + type + "\" is not supported (supported normalizers: Sequence, "
          + "Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)");
    };
  }

  private HfPreTokenizer preTokenizer(JsonObject o, String where) {
    if (byteLevelPre) throw error(where + " follows a ByteLevel pre-tokenizer, which must come last");
    String type = type(o, where);
    return switch (type) {
      case "Sequence" -> {
        JsonArray a = array(o, "pretokenizers", where);
        List<HfPreTokenizer> steps = new ArrayList<>();
        for (int i = 0; i < a.size(); i++) {
          String w = where + ".pretokenizers[" + i + "]";
          steps.add(preTokenizer(asObject(a.get(i), w), w));
        }
        yield new HfPreTokenizer.Sequence(List.copyOf(steps));
      }
      case "Split" -> {
        String b = string(o, "behavior", where);
        HfPreTokenizer.Behavior behavior = HfPreTokenizer.Behavior.fromJson(b);
        if (behavior == null) {
          throw error(where + ".behavior \"" + b + "\" is not one of Removed, Isolated, MergedWithPrevious, "
              + "MergedWithNext, Contiguous");
        }
        yield new HfPreTokenizer.Split(pattern(o, where, type), behavior, optBool(o, "invert", false, where));
      }
      case "ByteLevel" -> {
        byteLevelPre = true;
        yield new HfPreTokenizer.ByteLevel(optBool(o, "add_prefix_space", true, where), optBool(o, "use_regex", true, where));
      }
      case "Metaspace" -> new HfPreTokenizer.Metaspace(replacement(o, where), prependScheme(o, where),
          optBool(o, "split", true, where));
      case "Digits" -> new HfPreTokenizer.Digits(optBool(o, "individual_digits", false, where));
      default -> throw error(where + " type \"" + type + "\" is not supported (supported pre-tokenizers: Sequence, "
          + "Split, ByteLevel, Metaspace, Digits)");
    };
  }

  private HfDecoder decoder(JsonObject o) {
    String type = type(o, "decoder");
    List<JsonObject> parts = new ArrayList<>();
    List<String> wheres = new ArrayList<>();
    if (type.equals("Sequence")) {
      JsonArray a = array(o, "decoders", "decoder");
      for (int i = 0; i < a.size(); i++) {
        String w = "decoder.decoders[" + i + "]";
        parts.add(asObject(a.get(i), w));
        wheres.add(w);
      }
    } else {
      parts.add(o);
      wheres.add("decoder");
    }
    List<HfDecoder.Step> steps = new ArrayList<>();
    int strip = 0;
    boolean fused = false;
    for (int i = 0; i < parts.size(); i++) {
      JsonObject d = parts.get(i);
      String w = wheres.get(i);
      String t = type(d, w);
      switch (t) {
        case "ByteLevel" -> steps.add(new HfDecoder.ByteLevel());
        case "ByteFallback" -> steps.add(new HfDecoder.ByteFallback());
        case "Fuse" -> fused = true;
        case "Replace" -> {
          JsonObject pat = object(d, "pattern", w);
          if (!pat.has("String")) throw error(w + ".pattern: only literal (\"String\") Replace decoders are supported");
          if (fused) throw error(w + ": a Replace decoder after Fuse is not supported");
          steps.add(new HfDecoder.Replace(string(pat, "String", w + ".pattern"), string(d, "content", w)));
        }
        case "Strip" -> {
          String content = string(d, "content", w);
          int start = intValue(d.get("start"), w + ".start");
          int stop = d.has("stop") ? intValue(d.get("stop"), w + ".stop") : 0;
          if (!content.equals(" ") || stop != 0 || !fused) {
            throw error(w + ": only a Strip of leading spaces (content \" \", stop 0) after Fuse is supported");
          }
          strip += start;
        }
        case "Metaspace" -> {
          if (fused) throw error(w + ": a Metaspace decoder after Fuse is not supported");
          steps.add(new HfDecoder.Replace(String.valueOf(replacement(d, w)), " "));
          if (prependScheme(d, w) != HfPreTokenizer.PrependScheme.NEVER) strip += 1;
        }
        default -> throw error(w + " type \"" + t + "\" is not supported (supported decoders: ByteLevel, Metaspace, "
            + "Sequence of Replace/ByteFallback/Fuse/Strip)");
      }
    }
    return new HfDecoder(List.copyOf(steps), strip);
  }

  private char replacement(JsonObject o, String where) {
    String r = o.has("replacement") ? string(o, "replacement", where) : "\u2581";
    if (r.length() != 1) throw error(where + ".replacement \"" + r + "\" must be one character");
    return r.charAt(0);
  }

  private HfPreTokenizer.PrependScheme prependScheme(JsonObject o, String where) {
    String s = optString(o, "prepend_scheme", where);
    if (s == null) {
      return optBool(o, "add_prefix_space", true, where) ? HfPreTokenizer.PrependScheme.ALWAYS
          : HfPreTokenizer.PrependScheme.NEVER;
    }
    return switch (s) {
      case "always" -> HfPreTokenizer.PrependScheme.ALWAYS;
      case "first" -> HfPreTokenizer.PrependScheme.FIRST;
      case "never" -> HfPreTokenizer.PrependScheme.NEVER;
      default -> throw error(where + ".prepend_scheme \"" + s + "\" is not one of always, first, never");
    };
  }

  private Pattern pattern(JsonObject o, String where, String type) {
    JsonObject pat = object(o, "pattern", where);
    if (pat.has("String")) return Pattern.compile(Pattern.quote(string(pat, "String", where + ".pattern")));
    if (pat.has("Regex")) {
      return HfPreTokenizer.compileOniguruma(string(pat, "Regex", where + ".pattern"), source + ": " + where + " " + type);
    }
    throw error(where + ".pattern must have \"String\" or \"Regex\", got " + pat);
  }

  // ---- JSON helpers ----

  private String type(JsonObject o, String where) {
    String t = optString(o, "type", where);
    if (t == null) throw error(where + ".type is missing");
    return t;
  }

  private JsonObject object(JsonObject o, String key, String where) {
    JsonElement e = o.get(key);
    String w = where.isEmpty() ? key : where + "." + key;
    if (e == null || e.isJsonNull()) throw error(w + " is missing");
    return asObject(e, w);
  }

  private JsonObject asObject(JsonElement e, String where) {
    if (!e.isJsonObject()) throw error(where + " must be an object, got " + kind(e));
    return e.getAsJsonObject();
  }

  private JsonArray array(JsonObject o, String key, String where) {
    JsonElement e = o.get(key);
    if (e == null || !e.isJsonArray()) throw error(where + "." + key + " must be an array, got " + kind(e));
    return e.getAsJsonArray();
  }

  private String string(JsonObject o, String key, String where) {
    String s = optString(o, key, where);
    if (s == null) throw error(where + "." + key + " is missing");
    return s;
  }

  private String optString(JsonObject o, String key, String where) {
    JsonElement e = o.get(key);
    if (e == null || e.isJsonNull()) return null;
    if (!isString(e)) throw error(where + "." + key + " must be a string, got " + kind(e));
    return e.getAsString();
  }

  private boolean optBool(JsonObject o, String key, boolean dflt, String where) {
    JsonElement e = o.get(key);
    if (e == null || e.isJsonNull()) return dflt;
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
      throw error(where + "." + key + " must be true or false, got " + kind(e));
    }
    return e.getAsBoolean();
  }

  private double number(JsonElement e, String where) {
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) throw error(where + " must be a number, got " + kind(e));
    return e.getAsDouble();
  }

  private int intValue(JsonElement e, String where) {
    if (e == null) throw error(where + " is missing");
    double d = number(e, where);
    if (d != Math.rint(d) || d < 0 || d > MAX_ID) {
      throw error(where + " = " + e + " is not an integer in [0, " + MAX_ID + "]");
    }
    return (int) d;
  }

  private static boolean isString(JsonElement e) {
    return e.isJsonPrimitive() && e.getAsJsonPrimitive().isString();
  }

  private static String kind(JsonElement e) {
    if (e == null || e.isJsonNull()) return "nothing";
    if (e.isJsonObject()) return "an object";
    if (e.isJsonArray()) return "an array";
    JsonPrimitive p = e.getAsJsonPrimitive();
    return p.isString() ? "a string" : p.isNumber() ? "the number " + p : "the boolean " + p;
  }
}

package dev.athanor.io.tokenizer;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Builds a Hugging Face byte-level {@code tokenizer.json} equivalent to GPT-2 from JTokkit's r50k_base rank table
 * (test helper).
 *
 * <p>r50k_base lists each token's bytes with its rank (= id); tiktoken-style BPE merges, among the adjacent pairs
 * whose concatenation is a token, the one of lowest rank (leftmost on ties). HF BPE instead needs the merge pairs.
 * Reconstruction: for each multi-byte token T of rank r, run that rank-based BPE on T's own bytes while only
 * allowing merges that make tokens of rank below r. If it stops at exactly two parts (a, b), then "a b" is T's
 * merge, with T's rank as its position in the merges list; that is the split BPE reaches just before making T. If it
 * stops at more than two parts, BPE can never make T from its bytes (T is only reachable as a whole piece, which
 * tiktoken and JTokkit look up before merging), and T gets no merge.
 */
final class R50kTokenizerJson {
  /** The result: the file's JSON text, and how many tokens got no merge. */
  record Built(String json, List<String[]> merges, int unreachable) {}

  private R50kTokenizerJson() {}

  /** The bytes of every r50k token but {@code <|endoftext|>}, by id. */
  static byte[][] tokenBytes() {
    Gpt2Tokenizer g = Gpt2Tokenizer.instance();
    byte[][] t = new byte[Gpt2Tokenizer.END_OF_TEXT][];
    for (int i = 0; i < t.length; i++) t[i] = g.tokenBytes(i);
    return t;
  }

  /** Reconstructs the merges (see the class comment), in rank order. */
  static List<String[]> reconstructMerges(byte[][] tokens, int[] unreachableOut) {
    Map<String, Integer> rank = new HashMap<>();
    for (int i = 0; i < tokens.length; i++) rank.put(new String(tokens[i], StandardCharsets.ISO_8859_1), i);
    List<String[]> merges = new ArrayList<>();
    int unreachable = 0;
    for (int r = 0; r < tokens.length; r++) {
      byte[] t = tokens[r];
      if (t.length < 2) continue;
      List<String> parts = new ArrayList<>();
      for (byte b : t) parts.add(new String(new byte[] {b}, StandardCharsets.ISO_8859_1));
      while (parts.size() > 2) {
        int best = -1, bestRank = r;
        for (int i = 0; i + 1 < parts.size(); i++) {
          Integer m = rank.get(parts.get(i) + parts.get(i + 1));
          if (m != null && m < bestRank) {
            bestRank = m;
            best = i;
          }
        }
        if (best < 0) break;
        parts.set(best, parts.get(best) + parts.remove(best + 1));
      }
      if (parts.size() == 2) {
        merges.add(new String[] {alphabet(parts.get(0)), alphabet(parts.get(1))});
      } else {
        unreachable++;
      }
    }
    unreachableOut[0] = unreachable;
    return merges;
  }

  private static String alphabet(String latin1) {
    return alphabet(latin1.getBytes(StandardCharsets.ISO_8859_1));
  }

  /**
   * GPT-2's byte alphabet (its {@code bytes_to_unicode}): the printable bytes ! to ~, ¡ to ¬ and ® to ÿ stand for
   * themselves; the other 68 bytes, in order, for U+0100, U+0101, ...
   */
  static char alphabet(int b) {
    if (b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae && b <= 0xff) return (char) b;
    int n = 0;
    for (int c = 0; c < b; c++) {
      if (!(c >= '!' && c <= '~' || c >= 0xa1 && c <= 0xac || c >= 0xae && c <= 0xff)) n++;
    }
    return (char) (256 + n);
  }

  /** Bytes written in GPT-2's byte alphabet, as byte-level vocabularies write their tokens. */
  static String alphabet(byte[] bytes) {
    StringBuilder sb = new StringBuilder(bytes.length);
    for (byte x : bytes) sb.append(alphabet(x & 0xff));
    return sb.toString();
  }

  /** The tokenizer.json text; merges as {@code ["a", "b"]} pairs or {@code "a b"} strings. */
  static Built build(boolean pairFormat, boolean ignoreMerges) {
    byte[][] tokens = tokenBytes();
    int[] unreachable = new int[1];
    List<String[]> merges = reconstructMerges(tokens, unreachable);
    return build(tokens, merges, unreachable[0], pairFormat, ignoreMerges, true);
  }

  /**
   * The tokenizer.json text for merges already reconstructed; {@code useRegex} false makes the ByteLevel
   * pre-tokenizer keep the text whole (pure BPE over all of it).
   */
  static Built build(byte[][] tokens, List<String[]> merges, int unreachable, boolean pairFormat, boolean ignoreMerges,
      boolean useRegex) {
    JsonObject vocab = new JsonObject();
    for (int i = 0; i < tokens.length; i++) vocab.addProperty(alphabet(tokens[i]), i);
    vocab.addProperty("<|endoftext|>", Gpt2Tokenizer.END_OF_TEXT);
    JsonArray m = new JsonArray();
    for (String[] p : merges) {
      if (pairFormat) {
        JsonArray pair = new JsonArray();
        pair.add(p[0]);
        pair.add(p[1]);
        m.add(pair);
      } else {
        m.add(p[0] + " " + p[1]);
      }
    }
    JsonObject model = new JsonObject();
    model.addProperty("type", "BPE");
    model.add("dropout", null);
    model.add("unk_token", null);
    model.addProperty("continuing_subword_prefix", "");
    model.addProperty("end_of_word_suffix", "");
    model.addProperty("fuse_unk", false);
    model.addProperty("byte_fallback", false);
    model.addProperty("ignore_merges", ignoreMerges);
    model.add("vocab", vocab);
    model.add("merges", m);
    JsonObject pre = new JsonObject();
    pre.addProperty("type", "ByteLevel");
    pre.addProperty("add_prefix_space", false);
    pre.addProperty("trim_offsets", true);
    pre.addProperty("use_regex", useRegex);
    JsonObject dec = new JsonObject();
    dec.addProperty("type", "ByteLevel");
    dec.addProperty("add_prefix_space", true);
    dec.addProperty("trim_offsets", true);
    dec.addProperty("use_regex", true);
    JsonObject eot = new JsonObject();
    eot.addProperty("id", Gpt2Tokenizer.END_OF_TEXT);
    eot.addProperty("content", "<|endoftext|>");
    eot.addProperty("single_word", false);
    eot.addProperty("lstrip", false);
    eot.addProperty("rstrip", false);
    eot.addProperty("normalized", true);
    eot.addProperty("special", true);
    JsonArray added = new JsonArray();
    added.add(eot);
    JsonObject root = new JsonObject();
    root.addProperty("version", "1.0");
    root.add("truncation", null);
    root.add("padding", null);
    root.add("added_tokens", added);
    root.add("normalizer", null);
    root.add("pre_tokenizer", pre);
    root.add("post_processor", dec.deepCopy());
    root.add("decoder", dec);
    root.add("model", model);
    return new Built(root.toString(), merges, unreachable);
  }
}

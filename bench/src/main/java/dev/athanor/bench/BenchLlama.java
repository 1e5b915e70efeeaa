package dev.athanor.bench;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import dev.athanor.cli.Main;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.nn.Family;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The Hugging Face Llama model that {@link JlamaBench} decodes with Athanor and Jlama, made here without any
 * download: a byte-level BPE tokenizer and a small Llama trained briefly on the JDK's own Java sources, so that its
 * next-token distribution is peaked like a real model's (random weights give near-ties everywhere, where any
 * rounding difference flips the argmax and token agreement would say nothing).
 *
 * <p><b>Tokenizer</b> ({@code tokenizer.json}, Llama 3 style: a GPT-2 {@code Split} regex then {@code ByteLevel},
 * BPE model, ByteLevel decoder): GPT-2's r50k_base cut to its first {@value #BPE_TOKENS} ranks (the 256 bytes and
 * the first 3,838 merges, read from JTokkit's copy of r50k_base), plus {@code <|begin_of_text|>} (4094) and
 * {@code <|end_of_text|>} (4095): a vocabulary of {@value #VOCAB}. Every kept token is made of lower-ranked ones,
 * so the cut is itself a valid BPE tokenizer; each merge is recovered by running BPE over the token's bytes with
 * the ranks below its own (as tiktoken-to-Hugging-Face converters do).
 *
 * <p><b>Model</b> ({@link #config()}): Llama family, 8 layers, hidden 512, 8 heads of 64, 4 key/value heads
 * (grouped-query), SwiGLU 1408, RoPE theta 10000, RMSNorm eps 1e-5, context 512, untied head: 28.3M parameters,
 * F32 (113 MB). Initialised with seed 1, saved, then trained with {@code athanor train --model} (AdamW, lr 1e-3
 * cosine to 1e-4, batch 8 x 256 tokens) on the first {@code maxBytes} of the JDK's {@code lib/src.zip}. The
 * result is {@code dir/model}: {@code config.json}, {@code model.safetensors} (F32), {@code tokenizer.json}, and
 * {@code dir/train-log.jsonl}. A marker file {@code dir/model/MADE} holds the recipe; an existing directory with
 * the same recipe is reused.
 */
public final class BenchLlama {
  /** Tokens taken from r50k_base (ranks 0 .. BPE_TOKENS-1). */
  static final int BPE_TOKENS = 4094;
  /** The model's vocabulary: the BPE tokens plus BOS and EOS. */
  static final int VOCAB = BPE_TOKENS + 2;
  static final int BOS = BPE_TOKENS;
  static final int EOS = BPE_TOKENS + 1;
  static final String BOS_TEXT = "<|begin_of_text|>";
  static final String EOS_TEXT = "<|end_of_text|>";
  /** GPT-2's pre-tokenizer pattern, as in its tokenizer.json. */
  static final String GPT2_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

  private BenchLlama() {}

  /** The benchmark model's architecture. */
  public static ModelConfig config() {
    return new ModelConfig(Family.LLAMA, VOCAB, 512, 8, 512, 8, 4, 1408, 1e-5f, 10000f, false, BOS, EOS);
  }

  /**
   * Makes (or reuses) the model under {@code dir} and returns {@code dir/model}.
   *
   * @param corpus text to train on (a directory, a text file or a .zip such as the JDK's src.zip)
   * @param maxBytes how much of it to tokenize
   * @param steps training steps of 8 x 256 tokens
   * @param threads CPU threads for training
   */
  public static Path make(Path dir, Path corpus, long maxBytes, int steps, int threads) throws IOException {
    Path model = dir.resolve("model");
    String recipe = "config=" + config() + "\ncorpus=" + corpus.toAbsolutePath() + "\nmaxBytes=" + maxBytes + "\nsteps=" + steps
        + "\nbatch=8 seq=256 lr=1e-3 min-lr=1e-4 warmup=20 shuffle=true seed=1\ntokenizer=r50k_base ranks < " + BPE_TOKENS
        + " + BOS/EOS\n";
    Path marker = model.resolve("MADE");
    if (Files.isRegularFile(marker) && Files.readString(marker).equals(recipe)) {
      System.err.println("BenchLlama: reusing " + model);
      return model;
    }
    Path init = dir.resolve("init");
    Files.createDirectories(init);
    Files.writeString(init.resolve("tokenizer.json"), tokenizerJson());
    if (threads > 0) NativeRuntime.setCpuThreads(threads);
    try (Transformer m = Transformer.create(config(), Device.CPU)) {
      m.initialize(1);
      HfModelDir.save(init, m.config(), m.weights(), DType.F32);
    }
    // tokenized corpus cache next to the model, not in the user's home
    System.setProperty("athanor.cache.dir", dir.resolve("token-cache").toAbsolutePath().toString());
    List<String> args = new ArrayList<>(List.of("train", "--model", init.toString(), "--data", corpus.toString(),
        "--max-bytes", Long.toString(maxBytes), "--steps", Integer.toString(steps), "--batch", "8", "--seq", "256",
        "--lr", "1e-3", "--min-lr", "1e-4", "--warmup", "20", "--shuffle", "true", "--seed", "1", "--device", "cpu",
        "--out", model.toString(), "--log", dir.resolve("train-log.jsonl").toString()));
    if (threads > 0) args.addAll(List.of("--threads", Integer.toString(threads)));
    int rc = Main.run(args.toArray(String[]::new), System.err, System.err);
    if (rc != 0) throw new IllegalStateException("athanor train failed (exit " + rc + "): " + args);
    Files.writeString(marker, recipe);
    return model;
  }

  /** The tokenizer.json described in the class comment. */
  static String tokenizerJson() throws IOException {
    List<byte[]> tokens = r50kTokens(BPE_TOKENS);
    Map<String, Integer> rank = new HashMap<>();
    for (int i = 0; i < tokens.size(); i++) rank.put(latin1(tokens.get(i)), i);
    JsonObject vocab = new JsonObject();
    for (int i = 0; i < tokens.size(); i++) vocab.addProperty(byteLevel(tokens.get(i)), i);
    JsonArray merges = new JsonArray();
    for (int r = 0; r < tokens.size(); r++) {
      byte[] t = tokens.get(r);
      if (t.length < 2) continue;
      List<String> parts = bpe(latin1(t), rank, r);
      if (parts.size() != 2) throw new IllegalStateException("r50k rank " + r + " does not split into two lower ranks: " + parts);
      merges.add(byteLevel(parts.get(0).getBytes(StandardCharsets.ISO_8859_1)) + " "
          + byteLevel(parts.get(1).getBytes(StandardCharsets.ISO_8859_1)));
    }
    JsonObject model = new JsonObject();
    model.addProperty("type", "BPE");
    model.add("dropout", JsonNull.INSTANCE);
    model.add("unk_token", JsonNull.INSTANCE);
    model.add("continuing_subword_prefix", JsonNull.INSTANCE);
    model.add("end_of_word_suffix", JsonNull.INSTANCE);
    model.addProperty("fuse_unk", false);
    model.addProperty("byte_fallback", false);
    model.addProperty("ignore_merges", false);
    model.add("vocab", vocab);
    model.add("merges", merges);

    JsonObject split = new JsonObject();
    split.addProperty("type", "Split");
    JsonObject pattern = new JsonObject();
    pattern.addProperty("Regex", GPT2_SPLIT);
    split.add("pattern", pattern);
    split.addProperty("behavior", "Isolated");
    split.addProperty("invert", false);
    JsonObject byteLevel = new JsonObject();
    byteLevel.addProperty("type", "ByteLevel");
    byteLevel.addProperty("add_prefix_space", false);
    byteLevel.addProperty("trim_offsets", true);
    byteLevel.addProperty("use_regex", false);
    JsonArray pre = new JsonArray();
    pre.add(split);
    pre.add(byteLevel);
    JsonObject preTokenizer = new JsonObject();
    preTokenizer.addProperty("type", "Sequence");
    preTokenizer.add("pretokenizers", pre);

    JsonObject decoder = new JsonObject();
    decoder.addProperty("type", "ByteLevel");
    decoder.addProperty("add_prefix_space", true);
    decoder.addProperty("trim_offsets", true);
    decoder.addProperty("use_regex", true);

    JsonArray added = new JsonArray();
    added.add(addedToken(BOS, BOS_TEXT));
    added.add(addedToken(EOS, EOS_TEXT));

    JsonObject root = new JsonObject();
    root.addProperty("version", "1.0");
    root.add("truncation", JsonNull.INSTANCE);
    root.add("padding", JsonNull.INSTANCE);
    root.add("added_tokens", added);
    root.add("normalizer", JsonNull.INSTANCE);
    root.add("pre_tokenizer", preTokenizer);
    root.add("post_processor", JsonNull.INSTANCE);
    root.add("decoder", decoder);
    root.add("model", model);
    return new GsonBuilder().serializeNulls().disableHtmlEscaping().create().toJson(root) + "\n";
  }

  private static JsonObject addedToken(int id, String content) {
    JsonObject o = new JsonObject();
    o.addProperty("id", id);
    o.addProperty("content", content);
    o.addProperty("single_word", false);
    o.addProperty("lstrip", false);
    o.addProperty("rstrip", false);
    o.addProperty("normalized", false);
    o.addProperty("special", true);
    return o;
  }

  /** BPE over {@code word}'s bytes (ISO-8859-1 chars) using only ranks below {@code maxRank}; the final parts. */
  private static List<String> bpe(String word, Map<String, Integer> rank, int maxRank) {
    List<String> parts = new ArrayList<>();
    for (int i = 0; i < word.length(); i++) parts.add(word.substring(i, i + 1));
    while (true) {
      int best = -1, bestRank = Integer.MAX_VALUE;
      for (int i = 0; i + 1 < parts.size(); i++) {
        Integer r = rank.get(parts.get(i) + parts.get(i + 1));
        if (r != null && r < maxRank && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) return parts;
      parts.set(best, parts.get(best) + parts.remove(best + 1));
    }
  }

  /** The first {@code n} tokens of r50k_base (as bytes, by rank), from JTokkit's resource. */
  private static List<byte[]> r50kTokens(int n) throws IOException {
    String res = "com/knuddels/jtokkit/r50k_base.tiktoken";
    byte[][] byRank = new byte[n][];
    try (InputStream in = BenchLlama.class.getClassLoader().getResourceAsStream(res)) {
      if (in == null) throw new IOException("resource " + res + " not found (JTokkit missing from the class path?)");
      BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII));
      for (String line; (line = r.readLine()) != null; ) {
        if (line.isBlank()) continue;
        String[] f = line.trim().split(" ");
        int rank = Integer.parseInt(f[1]);
        if (rank < n) byRank[rank] = Base64.getDecoder().decode(f[0]);
      }
    }
    List<byte[]> out = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      if (byRank[i] == null) throw new IOException(res + " has no rank " + i);
      out.add(byRank[i]);
    }
    return out;
  }

  private static String latin1(byte[] b) {
    return new String(b, StandardCharsets.ISO_8859_1);
  }

  /** GPT-2's byte-to-character alphabet (printable bytes stand for themselves, the other 68 become U+0100...). */
  static String byteLevel(byte[] bytes) {
    StringBuilder sb = new StringBuilder(bytes.length);
    for (byte x : bytes) sb.append(BYTE_CHARS[x & 0xff]);
    return sb.toString();
  }

  private static final char[] BYTE_CHARS = new char[256];

  static {
    int extra = 0;
    for (int b = 0; b < 256; b++) {
      boolean printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      BYTE_CHARS[b] = printable ? (char) b : (char) (256 + extra++);
    }
  }

  /** {@code java ... dev.athanor.bench.BenchLlama DIR CORPUS MAX_BYTES STEPS THREADS}: makes the model, prints its path. */
  public static void main(String[] args) throws IOException {
    if (args.length != 5) {
      System.err.println("usage: BenchLlama DIR CORPUS MAX_BYTES STEPS THREADS");
      System.exit(2);
    }
    try {
      System.out.println(make(Path.of(args[0]), Path.of(args[1]), Long.parseLong(args[2]), Integer.parseInt(args[3]),
          Integer.parseInt(args[4])));
    } catch (UncheckedIOException e) {
      throw e.getCause();
    }
  }
}

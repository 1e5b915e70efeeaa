package dev.athanor.io.tokenizer;

import ai.djl.huggingface.tokenizers.jni.TokenizersLibrary;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A tokenizer read from a Hugging Face {@code tokenizer.json}, run by Hugging Face's own tokenizers library (the Rust
 * crate behind Python's {@code tokenizers} and {@code transformers}, through DJL's JNI binding; see {@link HfLibrary}).
 * Every normalizer, pre-tokenizer, model (BPE, Unigram, WordPiece, WordLevel), added token and decoder therefore
 * behaves exactly as in Python.
 *
 * <p>Semantics, as Python's {@code tokenizer.encode(text, add_special_tokens=False)} and {@code
 * tokenizer.decode(ids, skip_special_tokens=False)}:
 *
 * <ul>
 *   <li>{@link #encode(String)} adds no special tokens: the post-processor (e.g. Llama's BOS) is not applied; callers
 *       that want BOS add {@link #bosToken()} themselves. Added tokens, special or not, are recognised in the text
 *       (so {@code "</s>"} in the text becomes the EOS token, as in Python).
 *   <li>{@link #decode(int[])} writes special tokens as their text; ids outside the vocabulary are rejected.
 *   <li>{@link #vocabSize()} is one more than the largest id of the model's vocabulary and the added tokens.
 * </ul>
 *
 * <p>The tokenizer holds native memory: {@link #close()} frees it (idempotent; a use after close throws); an
 * unreachable tokenizer that was not closed is freed by a {@link Cleaner}. Thread-safe: any number of threads may
 * encode and decode at once (results do not depend on the thread), and close waits for calls in flight.
 */
public final class HfTokenizer implements Tokenizer {
  private static final long MAX_FILE_BYTES = 1L << 29;
  /** Token ids above this are refused: no real vocabulary comes near (the largest have about 2^18 tokens). */
  static final int MAX_TOKEN_ID = (1 << 24) - 1;
  private static final List<String> EOS_NAMES = List.of("</s>", "<|end_of_text|>", "<|endoftext|>");
  private static final List<String> BOS_NAMES = List.of("<s>", "<|begin_of_text|>", "<|endoftext|>");
  private static final Cleaner CLEANER = Cleaner.create();
  /** Where a JSON error of the library is ("... at line 3 column 17"), and how much text before it to quote. */
  private static final Pattern POSITION = Pattern.compile("line (\\d{1,9}) column (\\d{1,9})");
  private static final int NEAR_CHARS = 80;

  private final String source;
  private final String id;
  private final int vocabSize;
  private final BitSet known;
  private final Map<String, Integer> tokenIds;
  private final int bos;
  private final int eos;
  private final TokenizersLibrary lib;
  private final Native handle;
  private final Cleaner.Cleanable cleanable;
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();

  /** The native tokenizer; freed once, by close() or by the Cleaner. */
  private static final class Native implements Runnable {
    final TokenizersLibrary lib;
    long pointer;

    Native(TokenizersLibrary lib, long pointer) {
      this.lib = lib;
      this.pointer = pointer;
    }

    @Override
    public void run() {
      if (pointer != 0) lib.deleteTokenizer(pointer);
      pointer = 0;
    }
  }

  private HfTokenizer(String source, String id, Vocabulary v, int bos, int eos, TokenizersLibrary lib, long pointer) {
    this.source = source;
    this.id = id;
    this.vocabSize = v.size;
    this.known = v.known;
    this.tokenIds = v.ids;
    this.bos = bos;
    this.eos = eos;
    this.lib = lib;
    this.handle = new Native(lib, pointer);
    this.cleanable = CLEANER.register(this, handle);
  }

  /** Whether tokenizer.json files can be read here: the tokenizers library loads (loading it if needed). */
  public static boolean isAvailable() {
    return HfLibrary.unavailableReason() == null;
  }

  /** Why {@link #isAvailable()} is false (naming the platform or the missing jar), or null when it is true. */
  public static String unavailableReason() {
    return HfLibrary.unavailableReason();
  }

  /**
   * Reads {@code tokenizerJson}, guessing the BOS and EOS tokens from their names ({@code </s>},
   * {@code <|end_of_text|>}, {@code <|endoftext|>} for EOS; {@code <s>}, {@code <|begin_of_text|>},
   * {@code <|endoftext|>} for BOS; the first present wins, added tokens first).
   *
   * @throws IOException if the file cannot be read
   * @throws IllegalArgumentException naming the file if it is not UTF-8 text or the tokenizers library (or a JSON parser)
   *     rejects it
   * @throws IllegalStateException if the tokenizers library is not available here ({@link #unavailableReason()})
   */
  public static HfTokenizer load(Path tokenizerJson) throws IOException {
    return read(tokenizerJson, -2, -2);
  }

  /**
   * Reads {@code tokenizerJson} with the BOS and EOS ids of the model's {@code config.json} (-1: none).
   *
   * @throws IOException if the file cannot be read
   * @throws IllegalArgumentException naming the file if it is rejected, or if {@code bosId}/{@code eosId} are not -1
   *     and not tokens of the file
   * @throws IllegalStateException if the tokenizers library is not available here ({@link #unavailableReason()})
   */
  public static HfTokenizer load(Path tokenizerJson, int bosId, int eosId) throws IOException {
    Objects.requireNonNull(tokenizerJson, "tokenizerJson");
    if (bosId < -1 || eosId < -1) {
      throw new IllegalArgumentException("bosId/eosId must be >= -1 (-1: none), got " + bosId + "/" + eosId);
    }
    return read(tokenizerJson, bosId, eosId);
  }

  private static HfTokenizer read(Path file, int bosId, int eosId) throws IOException {
    long size = Files.size(file);
    if (size > MAX_FILE_BYTES) {
      throw new IllegalArgumentException(file + " is " + size + " bytes; a tokenizer.json of more than " + MAX_FILE_BYTES
          + " bytes is not plausible");
    }
    byte[] bytes = Files.readAllBytes(file);
    String json;
    try {  // checked here, not left to the library: bytes that are not UTF-8 would reach it as U+FFFD
      json = StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
    } catch (CharacterCodingException e) {
      throw new IllegalArgumentException(file + ": not valid UTF-8 text (a tokenizer.json is JSON in UTF-8)", e);
    }
    String reason = HfLibrary.unavailableReason();
    if (reason != null) throw new IllegalStateException("cannot read " + file + ": " + reason);
    TokenizersLibrary lib = HfLibrary.lib();
    long pointer;
    try {
      pointer = lib.createTokenizerFromString(json);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(file + ": rejected by the tokenizers library: " + e.getMessage()
          + near(json, e.getMessage()), e);
    }
    try {
      // the file decides nothing about lengths here: no truncation, no padding (encode returns every token)
      lib.disableTruncation(pointer);
      lib.disablePadding(pointer);
      Vocabulary v = Vocabulary.parse(json, file.toString());
      int bos = bosId == -2 ? v.guess(BOS_NAMES) : v.check(bosId, "bos");
      int eos = eosId == -2 ? v.guess(EOS_NAMES) : v.check(eosId, "eos");
      return new HfTokenizer(file.toString(), "hf-" + HfLibrary.version() + "-" + shortHash(bytes), v, bos, eos, lib,
          pointer);
    } catch (RuntimeException e) {
      lib.deleteTokenizer(pointer);
      throw e;
    }
  }

  /** The ids of a file's tokens: the model's vocabulary and the added tokens (the native side has no such query). */
  private record Vocabulary(int size, BitSet known, Map<String, Integer> ids, Map<String, Integer> added,
      String source) {
    static Vocabulary parse(String json, String source) {
      Vocabulary v;
      try {
        v = parse(JsonParser.parseString(json).getAsJsonObject(), source);
      } catch (BadId e) {
        throw e;
      } catch (RuntimeException e) {
        throw new IllegalArgumentException(source + ": cannot read the vocabulary (" + e + ")", e);
      }
      if (v.known.isEmpty()) throw new IllegalArgumentException(source + ": the vocabulary is empty");
      return v;
    }

    private static Vocabulary parse(JsonObject root, String source) {
      Map<String, Integer> ids = new HashMap<>();
      Map<String, Integer> added = new HashMap<>();
      BitSet known = new BitSet();
      JsonElement model = root.get("model");
      JsonElement vocab = model != null && model.isJsonObject() ? model.getAsJsonObject().get("vocab") : null;
      if (vocab != null && vocab.isJsonObject()) { // BPE, WordPiece, WordLevel: {"token": id}
        for (Map.Entry<String, JsonElement> e : vocab.getAsJsonObject().entrySet()) {
          int id = checkedId(e.getValue().getAsLong(), e.getKey(), source);
          ids.put(e.getKey(), id);
          known.set(id);
        }
      } else if (vocab != null && vocab.isJsonArray()) { // Unigram: [["piece", score], ...], the id is the position
        JsonArray a = vocab.getAsJsonArray();
        if (!a.isEmpty()) checkedId(a.size() - 1L, "(the last piece)", source);
        for (int i = 0; i < a.size(); i++) {
          ids.putIfAbsent(a.get(i).getAsJsonArray().get(0).getAsString(), i);
          known.set(i);
        }
      }
      JsonElement at = root.get("added_tokens");
      if (at != null && at.isJsonArray()) {
        for (JsonElement e : at.getAsJsonArray()) {
          JsonObject o = e.getAsJsonObject();
          String content = o.get("content").getAsString();
          // as in Hugging Face, an added token that the model's vocabulary already has keeps the vocabulary's id
          int id = ids.getOrDefault(content, checkedId(o.get("id").getAsLong(), content, source));
          ids.put(content, id);
          added.put(content, id);
          known.set(id);
        }
      }
      return new Vocabulary(known.length(), known, ids, added, source);
    }

    /** A token id out of range (its message names the file, the token and the id). */
    private static final class BadId extends IllegalArgumentException {
      BadId(String message) {
        super(message);
      }
    }

    private static int checkedId(long id, String token, String source) {
      if (id < 0 || id > MAX_TOKEN_ID) {
        throw new BadId(source + ": token " + token + " has id " + id + ", outside [0, " + MAX_TOKEN_ID
            + "]");
      }
      return (int) id;
    }

    int guess(List<String> names) {
      for (String n : names) {
        Integer i = added.get(n);
        if (i != null) return i;
      }
      for (String n : names) {
        Integer i = ids.get(n);
        if (i != null) return i;
      }
      return -1;
    }

    int check(int id, String what) {
      if (id != -1 && !known.get(id)) {
        throw new IllegalArgumentException(what + " token id " + id + " is not a token of " + source + " (vocabulary size "
            + size + ")");
      }
      return id;
    }
  }

  /**
   * The text up to the position a JSON error names ("... at line 1 column 404"), white space squeezed, as
   * {@code " (near: ...)"}: the library's message names the kind of component it could not read, this shows which
   * one. Empty when the message names no position.
   */
  static String near(String json, String message) {
    if (message == null) return "";
    Matcher m = POSITION.matcher(message);
    if (!m.find()) return "";
    int line = Integer.parseInt(m.group(1)), column = Integer.parseInt(m.group(2));
    int at = 0; // where the line starts
    for (int l = 1; l < line; l++) {
      int newline = json.indexOf('\n', at);
      if (newline < 0) return "";
      at = newline + 1;
    }
    int end = at; // the column counts UTF-8 bytes
    for (int bytes = 0; end < json.length() && bytes < column; ) {
      int c = json.codePointAt(end);
      bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      end += Character.charCount(c);
    }
    String before = json.substring(Math.max(0, end - NEAR_CHARS), end).replaceAll("\\s+", " ").strip();
    if (before.isEmpty()) return "";
    return " (near: " + (end > NEAR_CHARS ? "..." : "") + before + ")";
  }

  private static String shortHash(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)).substring(0, 12);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
  }

  /** The file this tokenizer was read from. */
  public String source() {
    return source;
  }

  /** The id of the token whose string (as written in the file's vocabulary, or an added token's content) is {@code token}. */
  public OptionalInt tokenId(String token) {
    Integer i = tokenIds.get(token);
    return i == null ? OptionalInt.empty() : OptionalInt.of(i);
  }

  /** {@code hf-<library version>-<SHA-256 prefix of the file>}: a new library version gives new corpus caches. */
  @Override
  public String id() {
    return id;
  }

  @Override
  public int vocabSize() {
    return vocabSize;
  }

  @Override
  public int[] encode(String text) {
    Objects.requireNonNull(text, "text");
    long[] ids;
    ReentrantReadWriteLock.ReadLock r = lock.readLock();
    r.lock();
    try {
      long p = pointer();
      long encoding;
      try {
        encoding = lib.encode(p, text, false);
      } catch (RuntimeException e) {
        throw new IllegalArgumentException(source + ": the tokenizers library cannot encode the text: " + e.getMessage(), e);
      }
      try {
        ids = lib.getTokenIds(encoding);
      } finally {
        lib.deleteEncoding(encoding);
      }
    } finally {
      r.unlock();
      Reference.reachabilityFence(this);
    }
    int[] out = new int[ids.length];
    for (int i = 0; i < ids.length; i++) out[i] = Math.toIntExact(ids[i]);
    return out;
  }

  @Override
  public String decode(int[] ids) {
    long[] l = new long[ids.length];
    for (int i = 0; i < ids.length; i++) {
      checkId(ids[i]);
      l[i] = ids[i];
    }
    ReentrantReadWriteLock.ReadLock r = lock.readLock();
    r.lock();
    try {
      return lib.decode(pointer(), l, false);
    } finally {
      r.unlock();
      Reference.reachabilityFence(this);
    }
  }

  private long pointer() {
    long p = handle.pointer;
    if (p == 0) throw new IllegalStateException("tokenizer of " + source + " is closed");
    return p;
  }

  @Override
  public OptionalInt eosToken() {
    return eos < 0 ? OptionalInt.empty() : OptionalInt.of(eos);
  }

  @Override
  public OptionalInt bosToken() {
    return bos < 0 ? OptionalInt.empty() : OptionalInt.of(bos);
  }

  /** Frees the native tokenizer (idempotent; waits for encode/decode calls in flight; later calls throw). */
  @Override
  public void close() {
    ReentrantReadWriteLock.WriteLock w = lock.writeLock();
    w.lock();
    try {
      cleanable.clean();
    } finally {
      w.unlock();
    }
  }

  private void checkId(int id) {
    if (id < 0 || id >= vocabSize) {
      throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + vocabSize + ") of " + source);
    }
    if (!known.get(id)) {
      throw new IllegalArgumentException("token id " + id + " has no token in " + source + " (the ids of its "
          + "vocabulary have gaps)");
    }
  }

  @Override
  public String toString() {
    return "HfTokenizer[" + source + ", " + vocabSize + " tokens]";
  }
}

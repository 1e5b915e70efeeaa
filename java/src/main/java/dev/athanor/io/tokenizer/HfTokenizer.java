package dev.athanor.io.tokenizer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A tokenizer read from a Hugging Face {@code tokenizer.json} whose model is BPE, in one of two styles:
 *
 * <ul>
 *   <li><b>byte-level</b> (GPT-2, Llama 3, Qwen): a {@code ByteLevel} pre-tokenizer (alone, or last in a
 *       {@code Sequence} after {@code Split} patterns), vocabulary strings written in GPT-2's byte alphabet, a
 *       {@code ByteLevel} decoder;
 *   <li><b>SentencePiece-style</b> (Llama 2, TinyLlama, Mistral): spaces turned into "▁" by a normalizer
 *       ({@code Prepend} + {@code Replace}) or a {@code Metaspace} pre-tokenizer, byte fallback to {@code <0xNN>}
 *       tokens and/or an unknown token, a decoder that turns "▁" back into spaces and strips the leading one.
 * </ul>
 *
 * <p>Supported components: normalizers Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip;
 * pre-tokenizers Sequence, Split, ByteLevel, Metaspace, Digits; decoders ByteLevel, Metaspace, and Sequence of
 * Replace (literal), ByteFallback, Fuse, Strip (leading spaces, after Fuse), ByteLevel, Metaspace. Merges may be
 * written as {@code "a b"} strings or {@code ["a", "b"]} pairs. Anything else is refused by {@link #load(Path)}
 * with a message naming the file and the component. The post-processor is ignored: {@link #encode(String)}
 * never adds BOS/EOS (see {@link #bosToken()}).
 *
 * <p>Added tokens: special ones are not recognised in text given to {@link #encode(String)} (their text is
 * encoded like any other text); non-special ones are matched in the raw text (longest first; {@code lstrip} and
 * {@code rstrip} absorb neighbouring white space, {@code single_word} requires non-word neighbours), as Hugging
 * Face does. {@link #decode(int[])} writes every added token as its content.
 *
 * <p>Immutable and thread-safe.
 */
public final class HfTokenizer implements Tokenizer {
  private static final long MAX_FILE_BYTES = 1L << 29;
  private static final List<String> EOS_NAMES = List.of("</s>", "<|end_of_text|>", "<|endoftext|>");
  private static final List<String> BOS_NAMES = List.of("<s>", "<|begin_of_text|>", "<|endoftext|>");

  private final String source;
  private final String id;
  private final HfNormalizer normalizer;
  private final HfPreTokenizer preTokenizer;
  private final BpeModel model;
  private final Pattern addedPattern;
  private final int[] addedGroupIds;
  private final byte[][] tokenBytes;
  private final String[] tokenStrings;
  private final Map<String, Integer> tokenIds;
  private final int stripLeadingSpaces;
  private final int bos;
  private final int eos;

  private HfTokenizer(HfTokenizerFile.Parsed p, String id, int bos, int eos) {
    this.source = p.source;
    this.id = id;
    this.normalizer = p.normalizer;
    this.preTokenizer = p.preTokenizer;
    this.model = p.model;
    this.addedPattern = p.addedPattern;
    this.addedGroupIds = p.addedGroupIds;
    this.tokenBytes = p.tokenBytes;
    this.tokenStrings = p.tokenStrings;
    this.tokenIds = p.tokenIds;
    this.stripLeadingSpaces = p.decoder.stripLeadingSpaces();
    this.bos = bos;
    this.eos = eos;
  }

  /**
   * Reads {@code tokenizerJson}, guessing the BOS and EOS tokens from their names ({@code </s>},
   * {@code <|end_of_text|>}, {@code <|endoftext|>} for EOS; {@code <s>}, {@code <|begin_of_text|>},
   * {@code <|endoftext|>} for BOS; the first present wins).
   *
   * @throws IOException if the file cannot be read
   * @throws IllegalArgumentException naming the file if it is malformed or uses an unsupported component
   */
  public static HfTokenizer load(Path tokenizerJson) throws IOException {
    return read(tokenizerJson, -2, -2);
  }

  /**
   * Reads {@code tokenizerJson} with the BOS and EOS ids of the model's {@code config.json} (-1: none).
   *
   * @throws IOException if the file cannot be read
   * @throws IllegalArgumentException naming the file if it is malformed or uses an unsupported component, or if
   *     {@code bosId}/{@code eosId} are not -1 and not tokens of the file
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
    return parse(new String(bytes, StandardCharsets.UTF_8), file.toString(), "hf-" + shortHash(bytes), bosId, eosId);
  }

  /**
   * Parses the text of a {@code tokenizer.json}; {@code source} names it in messages. BOS/EOS ids of -2 are guessed
   * by name, -1 means none.
   */
  static HfTokenizer parse(String json, String source, String id, int bosId, int eosId) {
    HfTokenizerFile.Parsed p = new HfTokenizerFile(source).parse(json);
    int bos = bosId == -2 ? guess(p, BOS_NAMES) : checkSpecial(p, bosId, "bos");
    int eos = eosId == -2 ? guess(p, EOS_NAMES) : checkSpecial(p, eosId, "eos");
    return new HfTokenizer(p, id, bos, eos);
  }

  private static int guess(HfTokenizerFile.Parsed p, List<String> names) {
    for (String n : names) {
      Integer i = p.addedIds.get(n);
      if (i != null) return i;
    }
    for (String n : names) {
      Integer i = p.tokenIds.get(n);
      if (i != null) return i;
    }
    return -1;
  }

  private static int checkSpecial(HfTokenizerFile.Parsed p, int id, String what) {
    if (id == -1) return -1;
    if (id >= p.tokenBytes.length || p.tokenBytes[id] == null) {
      throw new IllegalArgumentException(what + " token id " + id + " is not a token of " + p.source + " (vocabulary size "
          + p.tokenBytes.length + ")");
    }
    return id;
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

  /** The string of token {@code id} as the file writes it (byte-level tokens in GPT-2's byte alphabet). */
  public String tokenString(int id) {
    checkId(id);
    return tokenStrings[id];
  }

  @Override
  public String id() {
    return id;
  }

  @Override
  public int vocabSize() {
    return tokenBytes.length;
  }

  @Override
  public int[] encode(String text) {
    Objects.requireNonNull(text, "text");
    IntList out = new IntList(text.length() / 3 + 4);
    if (addedPattern == null) {
      encodeSegment(text, true, out);
    } else {
      Matcher m = addedPattern.matcher(text);
      int last = 0;
      while (m.find()) {
        if (m.start() > last) encodeSegment(text.substring(last, m.start()), last == 0, out);
        for (int g = 1; g <= addedGroupIds.length; g++) {
          if (m.start(g) >= 0) {
            out.add(addedGroupIds[g - 1]);
            break;
          }
        }
        last = m.end();
      }
      if (last < text.length()) encodeSegment(text.substring(last), last == 0, out);
    }
    return out.toArray();
  }

  private void encodeSegment(String s, boolean first, IntList out) {
    if (normalizer != null) s = normalizer.apply(s);
    if (preTokenizer == null) {
      model.encode(s, out);
      return;
    }
    List<String> pieces = new ArrayList<>();
    preTokenizer.split(s, first, pieces);
    for (String piece : pieces) model.encode(piece, out);
  }

  @Override
  public String decode(int[] ids) {
    int total = 0;
    for (int i : ids) {
      checkId(i);
      total += tokenBytes[i].length;
    }
    byte[] all = new byte[total];
    int k = 0;
    for (int i : ids) {
      byte[] b = tokenBytes[i];
      System.arraycopy(b, 0, all, k, b.length);
      k += b.length;
    }
    int from = 0;
    while (from < stripLeadingSpaces && from < total && all[from] == ' ') from++;
    return new String(all, from, total - from, StandardCharsets.UTF_8);
  }

  @Override
  public OptionalInt eosToken() {
    return eos < 0 ? OptionalInt.empty() : OptionalInt.of(eos);
  }

  @Override
  public OptionalInt bosToken() {
    return bos < 0 ? OptionalInt.empty() : OptionalInt.of(bos);
  }

  @Override
  public byte[] tokenBytes(int id) {
    checkId(id);
    return tokenBytes[id].clone();
  }

  @Override
  public int leadingSpacesStripped() {
    return stripLeadingSpaces;
  }

  private void checkId(int id) {
    if (id < 0 || id >= tokenBytes.length) {
      throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + tokenBytes.length
          + ") of " + source);
    }
    if (tokenBytes[id] == null) {
      throw new IllegalArgumentException("token id " + id + " has no token in " + source + " (the ids of its "
          + "vocabulary have gaps)");
    }
  }

  /** The underlying BPE model (for tests). */
  BpeModel model() {
    return model;
  }

  @Override
  public String toString() {
    return "HfTokenizer[" + source + ", " + tokenBytes.length + " tokens, " + model.mergeCount() + " merges, "
        + (model.byteLevel() ? "byte-level" : "character-level") + "]";
  }
}

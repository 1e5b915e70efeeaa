package dev.athanor.io.tokenizer;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.Encoding;
import com.knuddels.jtokkit.api.EncodingType;
import com.knuddels.jtokkit.api.IntArrayList;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import java.util.OptionalInt;

/**
 * GPT-2's tokenizer: OpenAI's {@code r50k_base} byte-level BPE (50,257 tokens, the last being
 * {@code <|endoftext|>}, which serves as both BOS and EOS), through JTokkit. Immutable and thread-safe; use the
 * shared {@link #instance()} ({@link #close()} does nothing). {@link #encode(String)} is tiktoken's
 * {@code encode_ordinary}: {@code <|endoftext|>} in the text is encoded as plain text.
 */
public final class Gpt2Tokenizer implements Tokenizer {
  /** The number of tokens. */
  public static final int VOCAB_SIZE = 50257;
  /** The id of {@code <|endoftext|>}. */
  public static final int END_OF_TEXT = 50256;

  private final Encoding encoding;
  private final byte[][] tokenBytes;

  private Gpt2Tokenizer() {
    // the lazy registry loads only r50k_base, not all four of JTokkit's encodings
    encoding = Encodings.newLazyEncodingRegistry().getEncoding(EncodingType.R50K_BASE);
    tokenBytes = new byte[VOCAB_SIZE][];
    IntArrayList one = new IntArrayList(1);
    one.add(0);
    for (int i = 0; i < VOCAB_SIZE; i++) {
      one.set(0, i);
      tokenBytes[i] = encoding.decodeBytes(one);
    }
  }

  private static final class Holder {
    static final Gpt2Tokenizer INSTANCE = new Gpt2Tokenizer();
  }

  /** The shared instance (loaded on first use; loading takes a few hundred milliseconds). */
  public static Gpt2Tokenizer instance() {
    return Holder.INSTANCE;
  }

  @Override
  public String id() {
    return "gpt2-r50k_base";
  }

  @Override
  public int vocabSize() {
    return VOCAB_SIZE;
  }

  @Override
  public int[] encode(String text) {
    Objects.requireNonNull(text, "text");
    return encoding.encodeOrdinary(text).toArray();
  }

  @Override
  public String decode(int[] ids) {
    int total = 0;
    for (int id : ids) total += bytesOf(id).length;
    byte[] all = new byte[total];
    int k = 0;
    for (int id : ids) {
      byte[] b = tokenBytes[id];
      System.arraycopy(b, 0, all, k, b.length);
      k += b.length;
    }
    return new String(all, StandardCharsets.UTF_8);
  }

  @Override
  public OptionalInt eosToken() {
    return OptionalInt.of(END_OF_TEXT);
  }

  @Override
  public OptionalInt bosToken() {
    return OptionalInt.of(END_OF_TEXT);
  }

  /** The raw bytes of one token (a copy). */
  public byte[] tokenBytes(int id) {
    return bytesOf(id).clone();
  }

  private byte[] bytesOf(int id) {
    if (id < 0 || id >= VOCAB_SIZE) {
      throw new IllegalArgumentException("token id " + id + " is outside the GPT-2 vocabulary [0, " + VOCAB_SIZE + ")");
    }
    return tokenBytes[id];
  }

  @Override
  public String toString() {
    return "Gpt2Tokenizer[r50k_base]";
  }
}

package dev.athanor.io.tokenizer;

import java.util.OptionalInt;

/**
 * Text to token ids and back. Implementations are thread-safe. Some hold native memory ({@link HfTokenizer}):
 * {@link #close()} frees it; for the others it does nothing.
 */
public interface Tokenizer extends AutoCloseable {
  /** A short stable identifier of the vocabulary and rules (e.g. {@code gpt2-r50k_base}); keys token caches. */
  String id();

  /** The number of token ids this tokenizer can produce (ids are in {@code [0, vocabSize())}). */
  int vocabSize();

  /**
   * Encodes text without adding special tokens (no BOS/EOS: callers add {@link #bosToken()} where the model wants
   * it). Whether special-token strings inside the text become special tokens is the tokenizer's own rule: a Hugging
   * Face tokenizer.json recognises its added tokens as Hugging Face does; GPT-2's r50k_base encodes them as plain
   * text.
   */
  int[] encode(String text);

  /**
   * Decodes ids to text (special tokens are written as their text); byte sequences that are not valid UTF-8 become
   * U+FFFD.
   *
   * @throws IllegalArgumentException if an id is not a token of this tokenizer
   */
  String decode(int[] ids);

  /** The end-of-text / end-of-sequence token, if the vocabulary has one. */
  OptionalInt eosToken();

  /** The beginning-of-sequence token, if the vocabulary has one. */
  default OptionalInt bosToken() {
    return OptionalInt.empty();
  }

  /** A decoder for a stream of tokens that starts the text (see {@link #streamDecoder(int[])}). */
  default StreamDecoder streamDecoder() {
    return new StreamDecoder(this, new int[0]);
  }

  /**
   * A decoder for a stream of tokens that continue {@code context} (e.g. the prompt's ids):
   * {@link StreamDecoder#push(int)} returns the text that became complete with that token, decoded in context, so
   * that a space or character the new tokens share with the context comes out as it does in {@link #decode(int[])}
   * of the whole sequence.
   */
  default StreamDecoder streamDecoder(int[] context) {
    return new StreamDecoder(this, context);
  }

  /** Frees what the tokenizer holds (nothing by default). Idempotent. */
  @Override
  default void close() {}
}

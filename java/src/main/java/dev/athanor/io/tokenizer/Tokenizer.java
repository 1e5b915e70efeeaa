package dev.athanor.io.tokenizer;

import java.util.OptionalInt;

/**
 * Text to token ids and back. Implementations are immutable and thread-safe.
 */
public interface Tokenizer {
  /** A short stable identifier of the vocabulary and rules (e.g. {@code gpt2-r50k_base}); keys token caches. */
  String id();

  /** The number of token ids this tokenizer can produce (ids are in {@code [0, vocabSize())}). */
  int vocabSize();

  /** Encodes ordinary text; special-token strings in it are encoded as plain text. */
  int[] encode(String text);

  /** Decodes ids to text; byte sequences that are not valid UTF-8 become U+FFFD. */
  String decode(int[] ids);

  /** The end-of-text / end-of-sequence token, if the vocabulary has one. */
  OptionalInt eosToken();

  /** The beginning-of-sequence token, if the vocabulary has one. */
  default OptionalInt bosToken() {
    return OptionalInt.empty();
  }

  /** The raw bytes of one token (for streaming decoders that must not split a UTF-8 sequence). */
  byte[] tokenBytes(int id);

  /**
   * How many leading spaces {@link #decode(int[])} removes from the start of the decoded text: SentencePiece-style
   * tokenizers mark the start of every word, the first included, with a space that the original text did not have,
   * and their decoders drop it again (at most this many spaces, and only at the very start of the text). The
   * concatenated {@link #tokenBytes(int)} of a sequence are the decoded text before this stripping; {@link
   * StreamDecoder} strips the same way. 0 (the default) for byte-level tokenizers such as GPT-2's.
   */
  default int leadingSpacesStripped() {
    return 0;
  }

  /**
   * A decoder for a stream of tokens: {@link StreamDecoder#push(int)} returns the text that became complete
   * with that token (possibly empty while a multi-byte UTF-8 character is still open).
   */
  default StreamDecoder streamDecoder() {
    return new StreamDecoder(this);
  }
}

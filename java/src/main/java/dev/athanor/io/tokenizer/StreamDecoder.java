package dev.athanor.io.tokenizer;

import java.util.Arrays;
import java.util.Objects;

/**
 * Turns a stream of token ids into text as it comes, decoding in context: each {@link #push(int)} decodes a short
 * window (the tokens whose text was returned last, then the new ones) with {@link Tokenizer#decode(int[])} and
 * returns what the new tokens add to the window's earlier text. The tokenizer's own decoder thus decides spaces and
 * characters that depend on neighbours: the space a SentencePiece-style tokenizer (Llama 2) carries on the first
 * token of a word is kept even when that token is the first one generated after a prompt (decoded alone, its
 * decoder strips it), and the bytes of a UTF-8 character split over several tokens (byte-level BPE, byte fallback)
 * are held back until the text no longer ends in U+FFFD. The scheme of Hugging Face's {@code DecodeStream}; the
 * window starts where a previous text ended, never inside a character (a run of byte-fallback tokens cut inside a
 * character would decode to nothing but U+FFFD).
 *
 * <p>For decoders whose output for a sequence starts with their output for its prefix (all common ones), the texts
 * returned by {@link #push(int)} followed by {@link #flush()} concatenate to {@code decode(context + ids)} minus
 * {@code decode(context)}. Not thread-safe.
 */
public final class StreamDecoder {
  /** How many of the context's last tokens are kept at least (more when that would cut a character). */
  static final int CONTEXT_TOKENS = 8;
  /** How far back the context's window may reach to start at a clean place before it takes the whole context. */
  static final int MAX_CONTEXT_TOKENS = 64;
  /**
   * Tokens held back at most: a UTF-8 character has at most 4 bytes, so text still ending in U+FFFD after this many
   * tokens is invalid bytes, not an unfinished character, and is returned as it is.
   */
  static final int MAX_PENDING = 32;

  private final Tokenizer tokenizer;
  private int[] window = new int[2 * CONTEXT_TOKENS];
  private int size; // tokens in the window
  private int printed; // the first `printed` tokens of the window are context: their text is `prefix`
  private String prefix;

  /**
   * A decoder whose first tokens follow {@code context}: the window starts with the context's last tokens, as few
   * as decode to the end of the context's text ({@value #CONTEXT_TOKENS} at least).
   *
   * @throws IllegalArgumentException if an id of the context is not a token of the tokenizer
   */
  StreamDecoder(Tokenizer tokenizer, int[] context) {
    this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
    Objects.requireNonNull(context, "context");
    int from = Math.max(0, context.length - CONTEXT_TOKENS);
    String tail = from == context.length ? "" : tokenizer.decode(Arrays.copyOfRange(context, from, context.length));
    if (from > 0) {
      String whole = tokenizer.decode(context);
      int limit = Math.max(0, context.length - MAX_CONTEXT_TOKENS);
      while (from > limit && !whole.endsWith(tail)) {
        from--;
        tail = tokenizer.decode(Arrays.copyOfRange(context, from, context.length));
      }
      if (!whole.endsWith(tail)) {
        from = 0;
        tail = whole;
      }
    }
    size = context.length - from;
    if (size > window.length) window = new int[size + CONTEXT_TOKENS];
    System.arraycopy(context, from, window, 0, size);
    printed = size;
    prefix = tail;
  }

  /**
   * Adds one token; returns the text completed by it (empty while a character is incomplete).
   *
   * @throws IllegalArgumentException if {@code id} is not a token of the tokenizer (the decoder is unchanged)
   */
  public String push(int id) {
    if (size == window.length) window = Arrays.copyOf(window, 2 * window.length);
    window[size] = id;
    String text = tokenizer.decode(Arrays.copyOf(window, size + 1)); // throws before anything changes
    size++;
    boolean wait = text.length() <= prefix.length() || text.endsWith("\uFFFD");
    if (wait && size - printed < MAX_PENDING) return "";
    return emit(text);
  }

  /** The text still held back (an incomplete character comes out as U+FFFD); the decoder stays usable. */
  public String flush() {
    if (size == printed) return "";
    return emit(tokenizer.decode(Arrays.copyOf(window, size)));
  }

  /** Whether tokens were pushed whose text has not been returned yet. */
  public boolean hasPending() {
    return size > printed;
  }

  /**
   * Returns what {@code text} (the window decoded) adds to the prefix; the tokens just returned become the window's
   * context (they start where the previous text ended).
   */
  private String emit(String text) {
    String added;
    if (text.startsWith(prefix)) {
      added = text.substring(prefix.length());
    } else { // a decoder that rewrites earlier text: the part already printed cannot change, print from the difference
      int same = 0;
      while (same < prefix.length() && same < text.length() && prefix.charAt(same) == text.charAt(same)) same++;
      added = text.substring(same);
    }
    int keep = size - printed;
    System.arraycopy(window, printed, window, 0, keep);
    size = keep;
    printed = keep;
    prefix = tokenizer.decode(Arrays.copyOf(window, keep));
    return added;
  }
}

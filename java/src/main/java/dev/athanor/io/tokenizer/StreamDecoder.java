package dev.athanor.io.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Turns a stream of token ids into text as it comes, holding back the bytes of a UTF-8 character that a
 * token split until the rest arrives. The texts returned by {@link #push(int)} followed by {@link #flush()}
 * concatenate to {@link Tokenizer#decode(int[])} of the same ids (exactly so for ids whose bytes are valid UTF-8;
 * invalid bytes become U+FFFD either way). Leading spaces that the tokenizer's decoder strips ({@link
 * Tokenizer#leadingSpacesStripped()}) are stripped here too. Not thread-safe.
 */
public final class StreamDecoder {
  private final Tokenizer tokenizer;
  private byte[] pending = new byte[16];
  private int pendingLength;
  private int spacesToStrip;

  StreamDecoder(Tokenizer tokenizer) {
    this.tokenizer = tokenizer;
    this.spacesToStrip = tokenizer.leadingSpacesStripped();
  }

  /**
   * Adds one token; returns the text completed by it (empty while a character is incomplete).
   *
   * @throws IllegalArgumentException if {@code id} is not a token of the tokenizer (the decoder is unchanged)
   */
  public String push(int id) {
    byte[] t = tokenizer.tokenBytes(id);
    int from = 0;
    // strip the decoder's leading spaces: only while nothing but those spaces has been seen
    while (spacesToStrip > 0 && pendingLength == 0 && from < t.length) {
      if (t[from] == ' ') {
        from++;
        spacesToStrip--;
      } else {
        spacesToStrip = 0;
      }
    }
    int add = t.length - from;
    if (pendingLength + add > pending.length) {
      pending = Arrays.copyOf(pending, Math.max(2 * pending.length, pendingLength + add));
    }
    System.arraycopy(t, from, pending, pendingLength, add);
    pendingLength += add;
    int complete = completePrefix(pending, pendingLength);
    if (complete == 0) return "";
    String s = new String(pending, 0, complete, StandardCharsets.UTF_8);
    System.arraycopy(pending, complete, pending, 0, pendingLength - complete);
    pendingLength -= complete;
    return s;
  }

  /** The text still held back (an incomplete character, decoded as U+FFFD), and resets the held-back bytes. */
  public String flush() {
    String s = new String(pending, 0, pendingLength, StandardCharsets.UTF_8);
    pendingLength = 0;
    return s;
  }

  /** Whether bytes of an incomplete character are being held back. */
  public boolean hasPending() {
    return pendingLength > 0;
  }

  /** {@link #completePrefix(byte[], int)} over the whole array. */
  static int completePrefix(byte[] b) {
    return completePrefix(b, b.length);
  }

  /**
   * The length of the longest prefix of {@code b[0, n)} that does not end inside a UTF-8 sequence that the
   * following bytes could still complete: only a valid lead byte (C2-F4) followed by fewer continuation bytes
   * than it announces is held back; invalid bytes pass through (and decode to U+FFFD).
   */
  static int completePrefix(byte[] b, int n) {
    // look back at most 3 bytes for the lead of the last sequence
    for (int back = 1; back <= Math.min(3, n); back++) {
      int c = b[n - back] & 0xff;
      if ((c & 0xc0) == 0x80) continue; // continuation byte: keep looking for the lead
      int len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 1;
      return len > back ? n - back : n;
    }
    return n;
  }
}

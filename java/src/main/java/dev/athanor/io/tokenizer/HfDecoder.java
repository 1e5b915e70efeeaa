package dev.athanor.io.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The decoder of a Hugging Face {@code tokenizer.json}, reduced to what {@link HfTokenizer} supports: a chain of
 * per-token steps that turn a vocabulary string into bytes, then at most {@code stripLeadingSpaces} spaces removed
 * from the start of the whole text (the "Strip" after "Fuse" of SentencePiece-style decoders, or Metaspace's).
 *
 * @param steps the per-token steps, in order
 * @param stripLeadingSpaces how many leading spaces of the decoded text are dropped
 */
record HfDecoder(List<Step> steps, int stripLeadingSpaces) {
  /** One per-token decoding step. */
  sealed interface Step {}

  /** Replaces a literal string (e.g. "▁" with " "). */
  record Replace(String pattern, String content) implements Step {}

  /** Tokens written as {@code <0xNN>} stand for byte NN. */
  record ByteFallback() implements Step {}

  /** Token strings are written in {@link ByteLevelAlphabet}. */
  record ByteLevel() implements Step {}

  /** The bytes of the vocabulary string {@code token}. */
  byte[] bytes(String token) {
    String s = token;
    for (Step step : steps) {
      switch (step) {
        case Replace r -> s = s.replace(r.pattern(), r.content());
        case ByteFallback f -> {
          int b = byteToken(s);
          if (b >= 0) return new byte[] {(byte) b};
        }
        case ByteLevel l -> {
          byte[] b = ByteLevelAlphabet.decode(s);
          return b != null ? b : s.getBytes(StandardCharsets.UTF_8);
        }
      }
    }
    return s.getBytes(StandardCharsets.UTF_8);
  }

  /** NN if {@code s} is {@code <0xNN>} (hex digits in either case), else -1. */
  static int byteToken(String s) {
    if (s.length() != 6 || !s.startsWith("<0x") || s.charAt(5) != '>') return -1;
    int hi = hex(s.charAt(3)), lo = hex(s.charAt(4));
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }

  private static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
}

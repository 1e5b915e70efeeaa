package dev.athanor.io.tokenizer;

/**
 * GPT-2's reversible map from bytes to printable characters, used by byte-level BPE vocabularies (GPT-2, Llama 3,
 * Qwen) to write tokens as strings: the printable bytes {@code !..~}, {@code ¡..¬} and {@code ®..ÿ} stand for
 * themselves; the other 68 bytes, in increasing order, become U+0100, U+0101, ... (so space is {@code Ġ}, U+0120).
 */
final class ByteLevelAlphabet {
  private static final char[] BYTE_TO_CHAR = new char[256];
  private static final int[] CHAR_TO_BYTE = new int[512];

  static {
    java.util.Arrays.fill(CHAR_TO_BYTE, -1);
    int extra = 0;
    for (int b = 0; b < 256; b++) {
      boolean printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      char c = printable ? (char) b : (char) (256 + extra++);
      BYTE_TO_CHAR[b] = c;
      CHAR_TO_BYTE[c] = b;
    }
  }

  private ByteLevelAlphabet() {}

  /** The character that stands for byte {@code b} (0..255). */
  static char toChar(int b) {
    return BYTE_TO_CHAR[b & 0xff];
  }

  /** The byte that character {@code c} stands for, or -1 if {@code c} is not in the alphabet. */
  static int toByte(int c) {
    return c >= 0 && c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
  }

  /** {@code bytes} written in the alphabet, one character per byte. */
  static String encode(byte[] bytes) {
    char[] c = new char[bytes.length];
    for (int i = 0; i < bytes.length; i++) c[i] = BYTE_TO_CHAR[bytes[i] & 0xff];
    return new String(c);
  }

  /** The bytes that {@code s} stands for, or null if a character of {@code s} is not in the alphabet. */
  static byte[] decode(String s) {
    byte[] out = new byte[s.length()];
    for (int i = 0; i < s.length(); i++) {
      int b = toByte(s.charAt(i));
      if (b < 0) return null;
      out[i] = (byte) b;
    }
    return out;
  }
}

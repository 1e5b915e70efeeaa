package dev.athanor.io.data;

import java.util.function.Consumer;

/**
 * Cuts one document's text into pieces of about {@code target} chars so that a long document can be
 * tokenized by several workers. A cut is made only right after a {@code '\n'} whose neighbours on both
 * sides are not whitespace ({@code "x\nY"}); for regex pre-tokenizers of the GPT-2 / Llama 3 kind a piece
 * boundary always falls there, so encoding the pieces separately gives the same tokens as encoding the whole
 * text. The cut is the first such place at or after {@code target} chars into the current piece, so the
 * pieces depend only on the text, never on how it was fed in (whole or in chunks) or on the thread count.
 * Text without such a place stays one piece.
 */
final class PieceSplitter {
  private final int target;
  private final Consumer<String> sink;
  private final StringBuilder buf = new StringBuilder();
  private int scanFrom;

  PieceSplitter(int target, Consumer<String> sink) {
    if (target < 1) throw new IllegalArgumentException("piece target must be positive, got " + target);
    this.target = target;
    this.sink = sink;
  }

  /** Appends text; emits every piece that became complete. */
  void feed(CharSequence text, int from, int to) {
    buf.append(text, from, to);
    cut();
  }

  /** Appends chars; emits every piece that became complete. */
  void feed(char[] text, int from, int len) {
    buf.append(text, from, len);
    cut();
  }

  /** Emits the rest (if any) and resets. */
  void finish() {
    if (!buf.isEmpty()) sink.accept(buf.toString());
    buf.setLength(0);
    scanFrom = 0;
  }

  private void cut() {
    while (true) {
      int n = buf.length();
      int i = Math.max(Math.max(scanFrom, target), 1);
      int found = -1;
      for (; i + 1 < n; i++) {
        if (buf.charAt(i) == '\n' && !space(buf.charAt(i - 1)) && !space(buf.charAt(i + 1))) {
          found = i;
          break;
        }
      }
      if (found < 0) {
        scanFrom = Math.max(scanFrom, n - 1);
        return;
      }
      sink.accept(buf.substring(0, found + 1));
      buf.delete(0, found + 1);
      scanFrom = 0;
    }
  }

  private static boolean space(char c) {
    return Character.isWhitespace(c) || Character.isSpaceChar(c);
  }

  /** Splits a whole text (feeding it in chunks, exactly as a stream would be). */
  static void split(String text, int target, int chunk, Consumer<String> sink) {
    PieceSplitter s = new PieceSplitter(target, sink);
    for (int at = 0; at < text.length(); at += chunk) s.feed(text, at, Math.min(text.length(), at + chunk));
    s.finish();
  }
}

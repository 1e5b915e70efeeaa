package dev.athanor.io.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A BPE vocabulary with ranked merges, as in a Hugging Face {@code tokenizer.json} "BPE" model. A piece of text is
 * split into initial symbols (its bytes, for byte-level vocabularies; its code points otherwise, with byte fallback
 * or the unknown token for code points the vocabulary lacks) and adjacent symbols are merged by rank, the lowest
 * rank first and the leftmost pair first among equal ranks, until no adjacent pair has a merge. Immutable and
 * thread-safe; results for short pieces are cached.
 */
final class BpeModel {
  private static final int CACHE_MAX_ENTRIES = 100_000;
  private static final int CACHE_MAX_PIECE_CHARS = 64;

  private final String source;
  private final Map<String, Integer> vocab;
  /** (left id, right id) -> rank << 32 | merged id. */
  private final LongLongMap merges;
  /** Code point -> id of the token that is exactly that code point (not byte-level). */
  private final LongLongMap charIds;
  /** Byte-level: byte -> id of the token of its alphabet character, or -1. Null otherwise. */
  private final int[] byteIds;
  /** Byte fallback: byte -> id of token {@code <0xNN>}, or -1. Null without byte fallback. */
  private final int[] fallbackIds;
  private final int unkId;
  private final boolean fuseUnk;
  private final boolean ignoreMerges;
  private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();
  /**
   * Whether long pieces may be cut before every "▁" that follows another character: true when "▁" is a token and
   * no token has a "▁" right after a character other than "▁", so that no merge can ever cross such a cut (and
   * the words between cuts can be merged, and cached, one by one with the same result).
   */
  private final boolean cutBeforeWordStarts;

  /**
   * @param source the file the model came from (for messages)
   * @param vocab token string to id
   * @param merges the merges in rank order, each a pair of token strings
   * @param unkToken the unknown token's string, or null
   * @param byteLevel whether token strings are written in {@link ByteLevelAlphabet} (initial symbols are bytes)
   * @throws IllegalArgumentException if a merge names a token that is not in the vocabulary or makes one that is not
   */
  BpeModel(String source, Map<String, Integer> vocab, java.util.List<String[]> merges, String unkToken,
      boolean fuseUnk, boolean byteFallback, boolean ignoreMerges, boolean byteLevel) {
    this.source = source;
    this.vocab = Map.copyOf(vocab);
    this.fuseUnk = fuseUnk;
    this.ignoreMerges = ignoreMerges;
    this.merges = new LongLongMap(merges.size());
    for (int rank = 0; rank < merges.size(); rank++) {
      String[] m = merges.get(rank);
      int a = idOf(m[0], rank, m), b = idOf(m[1], rank, m);
      Integer merged = vocab.get(m[0] + m[1]);
      if (merged == null) {
        throw new IllegalArgumentException(source + ": merge #" + rank + " " + show(m) + " makes \"" + m[0] + m[1]
            + "\", which is not in the vocabulary");
      }
      this.merges.put(pair(a, b), (long) rank << 32 | merged);
    }
    if (unkToken != null) {
      Integer u = vocab.get(unkToken);
      if (u == null) throw new IllegalArgumentException(source + ": unk_token \"" + unkToken + "\" is not in the vocabulary");
      unkId = u;
    } else {
      unkId = -1;
    }
    if (byteFallback) {
      fallbackIds = new int[256];
      for (int b = 0; b < 256; b++) {
        Integer id = vocab.get(String.format("<0x%02X>", b));
        fallbackIds[b] = id == null ? -1 : id;
      }
    } else {
      fallbackIds = null;
    }
    if (byteLevel) {
      byteIds = new int[256];
      for (int b = 0; b < 256; b++) {
        Integer id = vocab.get(String.valueOf(ByteLevelAlphabet.toChar(b)));
        byteIds[b] = id == null ? -1 : id;
      }
      charIds = null;
    } else {
      byteIds = null;
      charIds = new LongLongMap(1024);
      for (Map.Entry<String, Integer> e : vocab.entrySet()) {
        String t = e.getKey();
        if (!t.isEmpty() && t.codePointCount(0, t.length()) == 1) charIds.put(t.codePointAt(0), e.getValue());
      }
    }
    boolean cut = byteIds == null && vocab.containsKey(String.valueOf(WORD_START));
    for (String t : cut ? vocab.keySet() : java.util.Set.<String>of()) {
      for (int i = t.indexOf(WORD_START, 1); i > 0; i = t.indexOf(WORD_START, i + 1)) {
        if (t.charAt(i - 1) != WORD_START) cut = false;
      }
      if (!cut) break;
    }
    cutBeforeWordStarts = cut;
  }

  /** SentencePiece's word-start mark, "▁" (U+2581). */
  static final char WORD_START = '\u2581';

  private int idOf(String token, int rank, String[] m) {
    Integer id = vocab.get(token);
    if (id == null) {
      throw new IllegalArgumentException(source + ": merge #" + rank + " " + show(m) + " names \"" + token
          + "\", which is not in the vocabulary");
    }
    return id;
  }

  private static String show(String[] m) {
    return "[\"" + m[0] + "\", \"" + m[1] + "\"]";
  }

  private static long pair(int a, int b) {
    return (long) a << 32 | (b & 0xffffffffL);
  }

  /** Whether token strings are written in the byte-level alphabet. */
  boolean byteLevel() {
    return byteIds != null;
  }

  /** The number of merges. */
  int mergeCount() {
    return merges.size();
  }

  /** Appends the ids of one pre-tokenized piece to {@code out}. */
  void encode(String piece, IntList out) {
    if (cutBeforeWordStarts && piece.length() > CACHE_MAX_PIECE_CHARS) {
      int start = 0;
      for (int i = piece.indexOf(WORD_START, 1); i > 0; i = piece.indexOf(WORD_START, i + 1)) {
        if (piece.charAt(i - 1) != WORD_START) {
          encodeWord(piece.substring(start, i), out);
          start = i;
        }
      }
      encodeWord(start == 0 ? piece : piece.substring(start), out);
    } else {
      encodeWord(piece, out);
    }
  }

  private void encodeWord(String piece, IntList out) {
    if (piece.isEmpty()) return;
    boolean cacheable = piece.length() <= CACHE_MAX_PIECE_CHARS;
    if (cacheable) {
      int[] hit = cache.get(piece);
      if (hit != null) {
        out.addAll(hit);
        return;
      }
    }
    int[] ids = encodeUncached(piece);
    if (cacheable) {
      if (cache.size() >= CACHE_MAX_ENTRIES) cache.clear();
      cache.put(piece, ids);
    }
    out.addAll(ids);
  }

  /** Byte-level models only: appends the ids of arbitrary bytes (not necessarily UTF-8), uncached. */
  void encodeBytes(byte[] bytes, IntList out) {
    if (byteIds == null) throw new IllegalStateException("not a byte-level vocabulary: " + source);
    out.addAll(encodeBytes(bytes));
  }

  private int[] encodeBytes(byte[] bytes) {
    if (ignoreMerges) {
      Integer whole = vocab.get(ByteLevelAlphabet.encode(bytes));
      if (whole != null) return new int[] {whole};
    }
    IntList syms = new IntList(bytes.length);
    boolean lastUnk = false;
    for (byte b : bytes) {
      int id = byteIds[b & 0xff];
      if (id >= 0) {
        syms.add(id);
        lastUnk = false;
      } else {
        lastUnk = unknown(String.valueOf(ByteLevelAlphabet.toChar(b)), syms, lastUnk);
      }
    }
    int n = merge(syms.array(), syms.size());
    return java.util.Arrays.copyOf(syms.array(), n);
  }

  private int[] encodeUncached(String piece) {
    if (byteIds != null) return encodeBytes(piece.getBytes(StandardCharsets.UTF_8));
    if (ignoreMerges) {
      Integer whole = vocab.get(piece);
      if (whole != null) return new int[] {whole};
    }
    IntList syms = new IntList(piece.length());
    boolean lastUnk = false;
    for (int i = 0; i < piece.length(); ) {
      int cp = piece.codePointAt(i);
      int n = Character.charCount(cp);
      long id = charIds.get(cp);
      if (id != LongLongMap.MISSING) {
        syms.add((int) id);
        lastUnk = false;
      } else {
        lastUnk = unknown(piece.substring(i, i + n), syms, lastUnk);
      }
      i += n;
    }
    int n = merge(syms.array(), syms.size());
    return java.util.Arrays.copyOf(syms.array(), n);
  }

  /** Adds the symbols of a character that has no token of its own; returns whether the last symbol is unk. */
  private boolean unknown(String ch, IntList syms, boolean lastUnk) {
    if (fallbackIds != null) {
      byte[] b = ch.getBytes(StandardCharsets.UTF_8);
      boolean all = true;
      for (byte x : b) all &= fallbackIds[x & 0xff] >= 0;
      if (all) {
        for (byte x : b) syms.add(fallbackIds[x & 0xff]);
        return false;
      }
    }
    if (unkId < 0) {
      throw new IllegalArgumentException("cannot encode character " + describe(ch) + ": it is not in the vocabulary of "
          + source + ", which has no " + (fallbackIds != null ? "byte fallback token for all its bytes and no " : "")
          + "unknown token");
    }
    if (!(fuseUnk && lastUnk)) syms.add(unkId);
    return true;
  }

  private static String describe(String ch) {
    return String.format("U+%04X", ch.codePointAt(0));
  }

  /**
   * Merges {@code s[0, n)} in place by rank (lowest first, leftmost first among equal ranks); returns the number
   * of symbols left, which are compacted to the front of {@code s}.
   */
  private int merge(int[] s, int n) {
    if (n < 2) return n;
    int[] next = new int[n];
    int[] prev = new int[n];
    LongHeap heap = new LongHeap(n);
    for (int i = 0; i < n; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
      if (i + 1 < n) push(heap, s[i], s[i + 1], i);
    }
    while (!heap.isEmpty()) {
      long top = heap.pop();
      int rank = (int) (top >>> 32);
      int i = (int) top;
      if (s[i] < 0) continue;
      int j = next[i];
      if (j >= n) continue;
      long m = merges.get(pair(s[i], s[j]));
      if (m == LongLongMap.MISSING || (int) (m >>> 32) != rank) continue; // stale entry
      s[i] = (int) m;
      s[j] = -1;
      next[i] = next[j];
      if (next[j] < n) prev[next[j]] = i;
      if (prev[i] >= 0) push(heap, s[prev[i]], s[i], prev[i]);
      if (next[i] < n) push(heap, s[i], s[next[i]], i);
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
      if (s[i] >= 0) s[k++] = s[i];
    }
    return k;
  }

  private void push(LongHeap heap, int a, int b, int pos) {
    long m = merges.get(pair(a, b));
    if (m != LongLongMap.MISSING) heap.push((m >>> 32) << 32 | pos);
  }

  /** A binary min-heap of longs. */
  private static final class LongHeap {
    private long[] h;
    private int n;

    LongHeap(int capacity) {
      h = new long[Math.max(4, capacity)];
    }

    boolean isEmpty() {
      return n == 0;
    }

    void push(long v) {
      if (n == h.length) h = java.util.Arrays.copyOf(h, 2 * n);
      int i = n++;
      while (i > 0) {
        int p = (i - 1) >>> 1;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
      }
      h[i] = v;
    }

    long pop() {
      long top = h[0];
      long v = h[--n];
      int i = 0;
      while (true) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = v;
      return top;
    }
  }
}

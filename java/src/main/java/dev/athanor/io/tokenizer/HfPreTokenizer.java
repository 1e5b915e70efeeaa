package dev.athanor.io.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/** The pre-tokenizers of a Hugging Face {@code tokenizer.json} that {@link HfTokenizer} supports. */
sealed interface HfPreTokenizer {
  /** GPT-2's split pattern, which the ByteLevel pre-tokenizer uses when {@code use_regex} is set. */
  String GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

  /**
   * Splits {@code piece} and appends the non-empty pieces to {@code out}.
   *
   * @param first whether {@code piece} starts the text (Metaspace's "first" prepend scheme)
   */
  void split(String piece, boolean first, List<String> out);

  /** Applies each pre-tokenizer to every piece of the one before. */
  record Sequence(List<HfPreTokenizer> steps) implements HfPreTokenizer {
    @Override
    public void split(String piece, boolean first, List<String> out) {
      List<String> cur = List.of(piece);
      for (HfPreTokenizer step : steps) {
        List<String> next = new ArrayList<>(cur.size() * 2);
        for (int i = 0; i < cur.size(); i++) step.split(cur.get(i), first && i == 0, next);
        cur = next;
      }
      out.addAll(cur);
    }
  }

  /** What a split does with the delimiters (the pattern's matches, or the gaps between them when inverted). */
  enum Behavior {
    REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS;

    /** The behavior named as in {@code tokenizer.json} ("Isolated", "MergedWithPrevious", ...), or null. */
    static Behavior fromJson(String name) {
      return switch (name) {
        case "Removed" -> REMOVED;
        case "Isolated" -> ISOLATED;
        case "MergedWithPrevious" -> MERGED_WITH_PREVIOUS;
        case "MergedWithNext" -> MERGED_WITH_NEXT;
        case "Contiguous" -> CONTIGUOUS;
        default -> null;
      };
    }
  }

  /** Splits on the matches of a pattern. */
  record Split(Pattern pattern, Behavior behavior, boolean invert) implements HfPreTokenizer {
    @Override
    public void split(String piece, boolean first, List<String> out) {
      splitOn(piece, pattern, behavior, invert, out);
    }
  }

  /**
   * Byte-level pre-tokenization: optionally a space in front of pieces that do not start with one, then (with
   * {@code useRegex}) GPT-2's split. Turning the pieces into bytes is left to the byte-level {@link BpeModel}.
   */
  record ByteLevel(boolean addPrefixSpace, boolean useRegex) implements HfPreTokenizer {
    private static final Pattern GPT2 = Pattern.compile(GPT2_PATTERN, Pattern.UNICODE_CHARACTER_CLASS);

    @Override
    public void split(String piece, boolean first, List<String> out) {
      if (addPrefixSpace && !piece.startsWith(" ")) piece = " " + piece;
      if (useRegex) {
        splitOn(piece, GPT2, Behavior.ISOLATED, false, out);
      } else if (!piece.isEmpty()) {
        out.add(piece);
      }
    }
  }

  /** When Metaspace puts its replacement character in front of a piece. */
  enum PrependScheme { ALWAYS, FIRST, NEVER }

  /**
   * SentencePiece-style pre-tokenization: spaces become {@code replacement} ("▁"), which is also put in front of
   * the text per {@code scheme}; with {@code split}, the text is cut before every replacement character.
   */
  record Metaspace(char replacement, PrependScheme scheme, boolean split) implements HfPreTokenizer {
    @Override
    public void split(String piece, boolean first, List<String> out) {
      String s = piece.replace(' ', replacement);
      boolean prepend = switch (scheme) {
        case ALWAYS -> true;
        case FIRST -> first;
        case NEVER -> false;
      };
      if (prepend && !s.isEmpty() && s.charAt(0) != replacement) s = replacement + s;
      if (split) {
        splitOn(s, Pattern.compile(Pattern.quote(String.valueOf(replacement))), Behavior.MERGED_WITH_NEXT, false, out);
      } else if (!s.isEmpty()) {
        out.add(s);
      }
    }
  }

  /** Splits digits off: each digit alone, or runs of digits. */
  record Digits(boolean individual) implements HfPreTokenizer {
    private static final Pattern ONE = Pattern.compile("\\p{N}");
    private static final Pattern RUN = Pattern.compile("\\p{N}+");

    @Override
    public void split(String piece, boolean first, List<String> out) {
      splitOn(piece, individual ? ONE : RUN, Behavior.ISOLATED, false, out);
    }
  }

  /**
   * Cuts {@code s} into the matches of {@code p} and the gaps between them, treats the matches as delimiters (the
   * gaps, if {@code invert}), applies {@code behavior} and appends the non-empty pieces to {@code out}.
   */
  static void splitOn(String s, Pattern p, Behavior behavior, boolean invert, List<String> out) {
    if (s.isEmpty()) return;
    IntList bounds = new IntList(16); // start, end, isDelimiter (0/1) triples
    Matcher m = p.matcher(s);
    int prev = 0;
    while (m.find()) {
      if (m.start() > prev) addSegment(bounds, prev, m.start(), invert);
      addSegment(bounds, m.start(), m.end(), !invert);
      prev = m.end();
    }
    if (prev < s.length()) addSegment(bounds, prev, s.length(), invert);
    int n = bounds.size() / 3;
    int[] b = bounds.array();
    switch (behavior) {
      case ISOLATED -> {
        for (int i = 0; i < n; i++) emit(s, b[3 * i], b[3 * i + 1], out);
      }
      case REMOVED -> {
        for (int i = 0; i < n; i++) {
          if (b[3 * i + 2] == 0) emit(s, b[3 * i], b[3 * i + 1], out);
        }
      }
      case MERGED_WITH_PREVIOUS, CONTIGUOUS -> {
        // a delimiter joins the segment before it (if that one is not a delimiter; for CONTIGUOUS: if it is)
        int start = -1, end = -1;
        boolean previousDelim = false;
        for (int i = 0; i < n; i++) {
          boolean delim = b[3 * i + 2] == 1;
          boolean join = behavior == Behavior.CONTIGUOUS ? delim == previousDelim : delim && !previousDelim;
          if (join && start >= 0) {
            end = b[3 * i + 1];
          } else {
            if (start >= 0) emit(s, start, end, out);
            start = b[3 * i];
            end = b[3 * i + 1];
          }
          previousDelim = delim;
        }
        if (start >= 0) emit(s, start, end, out);
      }
      case MERGED_WITH_NEXT -> {
        // a delimiter joins the segment after it (if that one is not a delimiter); walk backwards
        List<String> rev = new ArrayList<>();
        int start = -1, end = -1;
        boolean previousDelim = false;
        for (int i = n - 1; i >= 0; i--) {
          boolean delim = b[3 * i + 2] == 1;
          if (delim && !previousDelim && start >= 0) {
            start = b[3 * i];
          } else {
            if (start >= 0) emit(s, start, end, rev);
            start = b[3 * i];
            end = b[3 * i + 1];
          }
          previousDelim = delim;
        }
        if (start >= 0) emit(s, start, end, rev);
        for (int i = rev.size() - 1; i >= 0; i--) out.add(rev.get(i));
      }
    }
  }

  private static void addSegment(IntList bounds, int start, int end, boolean delimiter) {
    bounds.add(start);
    bounds.add(end);
    bounds.add(delimiter ? 1 : 0);
  }

  private static void emit(String s, int start, int end, List<String> out) {
    if (end > start) out.add(s.substring(start, end));
  }

  /**
   * Compiles a pattern written for Oniguruma (the regex engine of Hugging Face tokenizers) with java.util.regex,
   * Unicode-aware like the original ({@code \s}, {@code \w}, {@code \d} and case-insensitivity follow Unicode).
   * Oniguruma's {@code \h}/{@code \H} (hex digit) are translated; POSIX brackets ({@code [:alpha:]}) are refused.
   *
   * @param where what the pattern is, for messages (e.g. "/path/tokenizer.json: pre_tokenizer Split")
   * @throws IllegalArgumentException naming {@code where} and the pattern if it cannot be compiled
   */
  static Pattern compileOniguruma(String pattern, String where) {
    StringBuilder j = new StringBuilder(pattern.length() + 16);
    int classDepth = 0;
    for (int i = 0; i < pattern.length(); i++) {
      char c = pattern.charAt(i);
      if (c == '\\' && i + 1 < pattern.length()) {
        char d = pattern.charAt(i + 1);
        if (d == 'h') {
          j.append(classDepth > 0 ? "0-9A-Fa-f" : "[0-9A-Fa-f]");
        } else if (d == 'H' && classDepth == 0) {
          j.append("[^0-9A-Fa-f]");
        } else if (d == 'H') {
          throw cannot(where, pattern, "\\H inside a character class has no java.util.regex equivalent");
        } else {
          j.append(c).append(d);
        }
        i++;
        continue;
      }
      if (c == '[') {
        if (classDepth > 0 && i + 1 < pattern.length() && pattern.charAt(i + 1) == ':') {
          throw cannot(where, pattern, "POSIX bracket expressions like [:alpha:] are not supported");
        }
        classDepth++;
        j.append(c);
        // a ']' right after '[' or '[^' is a literal in Oniguruma; escape it for Java
        int k = i + 1;
        if (k < pattern.length() && pattern.charAt(k) == '^') {
          j.append('^');
          k++;
        }
        if (k < pattern.length() && pattern.charAt(k) == ']') {
          j.append("\\]");
          k++;
        }
        i = k - 1;
        continue;
      }
      if (c == ']' && classDepth > 0) classDepth--;
      j.append(c);
    }
    try {
      return Pattern.compile(j.toString(), Pattern.UNICODE_CHARACTER_CLASS);
    } catch (PatternSyntaxException e) {
      throw cannot(where, pattern, e.getDescription() + " near index " + e.getIndex());
    }
  }

  private static IllegalArgumentException cannot(String where, String pattern, String why) {
    return new IllegalArgumentException(where + " pattern \"" + pattern + "\" cannot be compiled with java.util.regex: "
        + why);
  }
}

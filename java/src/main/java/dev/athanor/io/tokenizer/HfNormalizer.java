package dev.athanor.io.tokenizer;

import java.text.Normalizer;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The normalizers of a Hugging Face {@code tokenizer.json} that {@link HfTokenizer} supports. */
sealed interface HfNormalizer {
  /** The normalized text. */
  String apply(String s);

  /** Applies each normalizer in turn. */
  record Sequence(List<HfNormalizer> steps) implements HfNormalizer {
    @Override
    public String apply(String s) {
      for (HfNormalizer n : steps) s = n.apply(s);
      return s;
    }
  }

  /** Puts {@code prefix} in front of non-empty text (SentencePiece's "dummy prefix", e.g. "▁"). */
  record Prepend(String prefix) implements HfNormalizer {
    @Override
    public String apply(String s) {
      return s.isEmpty() ? s : prefix + s;
    }
  }

  /** Replaces every match of {@code pattern} (a literal or a regular expression) with {@code content}. */
  record Replace(Pattern pattern, String content) implements HfNormalizer {
    @Override
    public String apply(String s) {
      return pattern.matcher(s).replaceAll(Matcher.quoteReplacement(content));
    }
  }

  /** A Unicode normalization form (NFC, NFD, NFKC, NFKD). */
  record Unicode(Normalizer.Form form) implements HfNormalizer {
    @Override
    public String apply(String s) {
      return Normalizer.normalize(s, form);
    }
  }

  /**
   * Lower-cases the text character by character, locale-independently and without context (so capital sigma is
   * always σ, never the final ς that {@link String#toLowerCase} writes at the end of a word), as Hugging Face does.
   */
  record Lowercase() implements HfNormalizer {
    @Override
    public String apply(String s) {
      return s.replace('\u03a3', '\u03c3').toLowerCase(Locale.ROOT);
    }
  }

  /** Removes white space at the start and/or end. */
  record Strip(boolean left, boolean right) implements HfNormalizer {
    @Override
    public String apply(String s) {
      if (left) s = s.stripLeading();
      if (right) s = s.stripTrailing();
      return s;
    }
  }
}

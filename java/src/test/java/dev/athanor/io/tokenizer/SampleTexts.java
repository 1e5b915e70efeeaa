package dev.athanor.io.tokenizer;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/** Test inputs: seeded random Unicode strings and Java sources from the JDK's lib/src.zip. */
final class SampleTexts {
  private SampleTexts() {}

  /** Code point ranges to draw from: ASCII, Latin-1, Cyrillic, Arabic, Devanagari, CJK, Hangul, emoji, marks. */
  private static final int[][] RANGES = {
      {0x20, 0x7e}, {0xa0, 0xff}, {0x400, 0x4ff}, {0x600, 0x6ff}, {0x900, 0x97f}, {0x4e00, 0x9fff},
      {0xac00, 0xd7a3}, {0x1f300, 0x1faff}, {0x300, 0x36f}, {0x1d400, 0x1d7ff}, {0x3040, 0x30ff}};
  private static final int[] SPACES = {' ', ' ', ' ', '\t', '\n', '\r', 0xa0, 0x3000, 0x2028, 0x2009, 0x85};

  /**
   * {@code count} random strings of valid code points (no surrogates) mixing scripts, emoji, combining marks,
   * digits, punctuation and runs of (Unicode) white space, avoiding {@code exclude}.
   */
  static List<String> randomStrings(long seed, int count, int maxCodePoints, int exclude) {
    Random r = new Random(seed);
    List<String> out = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      StringBuilder sb = new StringBuilder();
      int n = r.nextInt(maxCodePoints + 1);
      int style = r.nextInt(4); // 0: one range, 1: mixed, 2: mostly white space, 3: ASCII words
      int[] home = RANGES[r.nextInt(RANGES.length)];
      while (sb.codePointCount(0, sb.length()) < n) {
        int cp;
        int k = r.nextInt(10);
        if (style == 2 ? k < 6 : k == 0) {
          int run = 1 + r.nextInt(5);
          for (int j = 0; j < run; j++) sb.appendCodePoint(SPACES[r.nextInt(SPACES.length)]);
          continue;
        } else if (style == 3 && k < 8) {
          cp = k < 6 ? 'a' + r.nextInt(26) : k == 6 ? '0' + r.nextInt(10) : "'.,;:!?-()\"".charAt(r.nextInt(11));
        } else {
          int[] range = style == 0 || style == 3 ? (k < 7 ? home : RANGES[r.nextInt(RANGES.length)])
              : RANGES[r.nextInt(RANGES.length)];
          cp = range[0] + r.nextInt(range[1] - range[0] + 1);
        }
        if (cp == exclude) continue;
        sb.appendCodePoint(cp);
      }
      out.add(sb.toString());
    }
    return out;
  }

  /** Fixed awkward strings: empty, white space only, emoji sequences, combining marks, special-token text. */
  static List<String> awkward() {
    return List.of("", " ", "  ", "\n", "\r\n\r\n", "\t \t", "a", "Hello world", " leading", "trailing ",
        "multiple   spaces\n\n\nand lines", "👍🏽 family: 👨‍👩‍👧‍👦 flag: 🇩🇪", "e\u0301\u0302 n\u0303 a\u0308\u0304",
        "日本語のテキストと中文", "한국어 텍스트", "Ελληνικά και русский", "<|endoftext|>", "<s></s><unk>",
        "x".repeat(2000), " ".repeat(300) + "y", "1234567890 3.14159 -42", "don't can't it's WE'LL I'M",
        "\u0000\u0001\u007f\u0080\u00ff", "𝕳𝖊𝖑𝖑𝖔 𝒲ℴ𝓇𝓁𝒹", "\u3000\u00a0\u2028\u2029\u200b", "tab\tsep\tvalues");
  }

  /** The JDK's lib/src.zip, or null if this JDK has none. */
  static Path jdkSources() {
    Path p = Path.of(System.getProperty("java.home"), "lib", "src.zip");
    return Files.isRegularFile(p) ? p : null;
  }

  /** Java sources from {@code src.zip} under {@code prefix}, in name order, until {@code maxChars} are read. */
  static List<String> jdkSourceFiles(Path srcZip, String prefix, int maxChars) throws IOException {
    List<String> out = new ArrayList<>();
    try (ZipFile z = new ZipFile(srcZip.toFile())) {
      List<? extends ZipEntry> entries = new ArrayList<>(Collections.list(z.entries()));
      entries.sort(Comparator.comparing(ZipEntry::getName));
      int total = 0;
      for (ZipEntry e : entries) {
        if (!e.getName().startsWith(prefix) || !e.getName().endsWith(".java")) continue;
        try (InputStream in = z.getInputStream(e)) {
          String s = new String(in.readAllBytes(), StandardCharsets.UTF_8);
          out.add(s);
          total += s.length();
        }
        if (total >= maxChars) break;
      }
    }
    return out;
  }
}

package dev.athanor.cli;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class ProgressBarTest {
  private final AtomicLong now = new AtomicLong(123_456_789_000L); // arbitrary origin: only differences matter
  private final ByteArrayOutputStream buf = new ByteArrayOutputStream();
  private final PrintStream ps = new PrintStream(buf, true, UTF_8);

  private ProgressBar bar(String label, long total, boolean interactive, int width) {
    return new ProgressBar(label, total, ps, interactive, now::get, width);
  }

  private void advanceMs(long ms) {
    now.addAndGet(ms * 1_000_000L);
  }

  private String out() {
    return buf.toString(UTF_8);
  }

  /** The bar frames drawn: text after each '\r' that starts with the label, up to the next newline. */
  private static List<String> frames(String s, String label) {
    List<String> frames = new ArrayList<>();
    for (String seg : s.split("\r", -1)) {
      String text = seg.split("\n", -1)[0].stripTrailing(); // drop the spaces that clear a longer previous frame
      if (text.startsWith(label)) frames.add(text);
    }
    return frames;
  }

  /** What a terminal shows after printing s: '\r' returns to column 0, '\n' starts a new line. */
  private static List<String> screen(String s) {
    List<String> lines = new ArrayList<>();
    StringBuilder cur = new StringBuilder();
    int col = 0;
    for (char c : s.toCharArray()) {
      if (c == '\r') col = 0;
      else if (c == '\n') {
        lines.add(cur.toString().stripTrailing());
        cur.setLength(0);
        col = 0;
      } else {
        if (col < cur.length()) cur.setCharAt(col, c);
        else cur.append(c);
        col++;
      }
    }
    if (!cur.isEmpty()) lines.add(cur.toString().stripTrailing());
    return lines;
  }

  private static long count(String s, char c) {
    return s.chars().filter(x -> x == c).count();
  }

  // ---- interactive ----

  @Test
  void interactiveFrameHasTheDocumentedLayoutAndEta() {
    try (ProgressBar b = bar("train", 1000, true, 100)) {
      advanceMs(10_000);
      b.update(250, "loss 3.214 | 12.3k tok/s"); // 25 per second, 750 left: 30 s
      List<String> frames = frames(out(), "train");
      String f = frames.getLast();
      // counts are right-aligned to the width of "1000/1000" so they do not shift as they grow
      Matcher m = Pattern.compile("train  25% \\[(#*)>(\\.*)]   250/1000  loss 3\\.214 \\| 12\\.3k tok/s  ETA 30s").matcher(f);
      assertTrue(m.matches(), f);
      int inner = m.group(1).length() + 1 + m.group(2).length();
      assertEquals(inner / 4, m.group(1).length(), f);
      assertTrue(f.length() <= 99, f);
      assertFalse(out().contains("\n"), "no newline while the bar is live");
      // The bar keeps its width while the time estimate changes length.
      advanceMs(10_000);
      b.update(260, null); // ETA 57s
      advanceMs(200_000);
      b.update(270, null); // ETA 9m25s
      List<String> same = frames(out(), "train").subList(1, 4); // the same status: the first frame has none
      assertEquals(1, same.stream().map(s -> s.indexOf(']') - s.indexOf('[')).distinct().count(), same.toString());
    }
  }

  @Test
  void etaForKnownRates() {
    try (ProgressBar b = bar("train", 1000, true, 100)) {
      advanceMs(5_000);
      b.update(0, null);
      assertTrue(frames(out(), "train").getLast().endsWith("ETA --"), out());
      advanceMs(55_000);
      b.update(10, null); // 10 in 60 s; 990 left at 1/6 per second = 5940 s
      assertTrue(frames(out(), "train").getLast().endsWith("ETA 1h39m"), out());
      advanceMs(1_000);
      b.update(990, null); // 990 in 61 s; 10 left: 0.616 s
      assertTrue(frames(out(), "train").getLast().endsWith("ETA 1s"), out());
    }
  }

  @Test
  void framesFitTheWidthAndClearLeftovers() {
    for (int width : new int[] {20, 40, 60, 100, 200}) {
      buf.reset();
      try (ProgressBar b = bar("train", 1_000_000, true, width)) {
        for (int i = 1; i <= 20; i++) {
          advanceMs(150);
          b.update(i * 50_000L, i % 2 == 1 ? "loss 3.214 | 12.3k tok/s | lr 6.0e-04 | grad norm 1.23" : "short");
        }
      }
      for (String seg : out().split("[\r\n]"))
        assertTrue(seg.length() <= width - 1, "width " + width + ": '" + seg + "' has " + seg.length() + " chars");
      List<String> frames = frames(out(), "train");
      assertEquals(22, frames.size(), out());
      if (width >= 60) assertTrue(frames.get(4).contains("["), "a bar when there is room: " + frames.get(4));
      if (width == 40) assertTrue(frames.get(3).contains("..."), "long status truncated: " + frames.get(3));
      if (width == 200) assertTrue(frames.get(3).contains("grad norm 1.23"), "whole status when there is room: " + frames.get(3));
      // A short status after a long one must not leave the long one's tail on screen.
      List<String> screen = screen(out());
      assertEquals(List.of(frames.getLast()), screen, out());
      assertTrue(screen.getFirst().startsWith("train 100%"), screen.getFirst());
    }
  }

  @Test
  void redrawsAtMostTenTimesPerSecond() {
    try (ProgressBar b = bar("train", 1000, true, 100)) {
      for (int i = 0; i < 1000; i++) {
        advanceMs(1);
        b.step(null);
      }
      // initial frame + one per 100 ms over one second (the last one is also the final state)
      List<String> frames = frames(out(), "train");
      assertEquals(11, frames.size(), out());
      assertTrue(frames.getLast().contains("1000/1000"), frames.getLast());
    }
    assertEquals(12, frames(out(), "train").size(), "close draws once more");
  }

  @Test
  void reachingTheTotalIsDrawnEvenWithinTheRateLimit() {
    try (ProgressBar b = bar("tok", 1000, true, 100)) {
      for (int i = 1; i <= 999; i++) b.update(i, null); // no time passes: no redraws
      assertEquals(1, frames(out(), "tok").size(), out());
      b.update(1000, "done");
      List<String> frames = frames(out(), "tok");
      assertEquals(2, frames.size(), out());
      assertTrue(frames.getLast().startsWith("tok 100% [##########"), frames.getLast());
      b.update(1000, "again");
      assertEquals(2, frames(out(), "tok").size(), "the end state is drawn once, then the rate limit applies");
    }
  }

  @Test
  void unknownTotalShowsCountAndRateWithoutBar() {
    for (long total : new long[] {0, -5}) {
      buf.reset();
      try (ProgressBar b = bar("read", total, true, 100)) {
        advanceMs(2_000);
        b.update(24_600, "shard 3");
        String f = frames(out(), "read").getLast();
        assertEquals("read  24.6k  12.3k/s  shard 3  2s", f);
      }
      String last = frames(out(), "read").getLast();
      assertEquals("read  24.6k  12.3k/s  shard 3  elapsed 2s", last);
      assertFalse(out().contains("[") || out().contains("%"), out());
    }
  }

  @Test
  void messagePrintsAboveTheBarWithoutGarbling() {
    try (ProgressBar b = bar("train", 100, true, 100)) {
      advanceMs(200);
      b.update(10, "loss 3.214 | 12.3k tok/s | a long status to make the line wide");
      b.message("saved checkpoint step 10");
      advanceMs(200);
      b.update(20, "loss 3.100");
      b.message("eval loss 3.3");
      assertEquals(List.of("saved checkpoint step 10", "eval loss 3.3"), screen(out()).subList(0, 2));
      assertTrue(screen(out()).get(2).startsWith("train  20%"), screen(out()).toString());
    }
    List<String> screen = screen(out());
    assertEquals(3, screen.size(), screen.toString());
    assertTrue(screen.get(2).startsWith("train  20%") && screen.get(2).endsWith("elapsed 0s"), screen.get(2));
    // after close a message is a plain line below the finished bar
    ProgressBar x = bar("x", 1, true, 100);
    x.close();
    x.message("after");
    assertTrue(out().endsWith("\nafter\n"), out());
  }

  @Test
  void closeEndsTheLineOnceAndIgnoresLaterUpdates() {
    ProgressBar b = bar("train", 10, true, 100);
    advanceMs(65_000);
    b.update(10, "loss 2.0");
    b.close();
    String done = out();
    assertTrue(done.endsWith("\n"), done);
    assertEquals(1, count(done, '\n'));
    String last = frames(done, "train").getLast();
    assertTrue(last.endsWith("elapsed 1m05s") && !last.contains("ETA"), last);
    b.close();
    b.update(5, "late");
    b.step("late");
    assertEquals(done, out(), "nothing printed after close");
    assertEquals(10, b.done());
  }

  // ---- non-interactive ----

  @Test
  void nonInteractivePrintsEveryTenPercent() {
    try (ProgressBar b = bar("train", 1000, false, 100)) {
      for (int i = 0; i < 1000; i++) {
        advanceMs(10);
        b.step("loss 3.0");
      }
    }
    String s = out();
    assertEquals(0, count(s, '\r'), s);
    List<String> lines = s.lines().toList();
    assertEquals(11, lines.size(), s); // start, 10%..90%, close
    assertTrue(lines.getFirst().startsWith("train   0%  0/1000  elapsed 0s  ETA --"), lines.getFirst());
    for (int k = 1; k <= 9; k++)
      assertTrue(lines.get(k).startsWith("train  " + k + "0%  " + k + "00/1000  loss 3.0  elapsed " + k + "s  ETA " + (10 - k) + "s"), lines.get(k));
    assertEquals("train 100%  1000/1000  loss 3.0  elapsed 10s", lines.getLast());
  }

  @Test
  void nonInteractivePrintsEveryThirtySecondsWhenProgressIsSlow() {
    for (long total : new long[] {1_000_000, 0}) {
      buf.reset();
      try (ProgressBar b = bar("dl", total, false, 100)) {
        for (int i = 1; i <= 100; i++) {
          advanceMs(1_000);
          b.update(i * 10L, null);
        }
      }
      List<String> lines = out().lines().toList();
      assertEquals(5, lines.size(), out()); // start, 30 s, 60 s, 90 s, close
      assertTrue(lines.get(1).contains("300") && lines.get(1).contains("elapsed 30s"), lines.get(1));
      assertTrue(lines.get(3).contains("900") && lines.get(3).contains("elapsed 1m30s"), lines.get(3));
      assertEquals(0, count(out(), '\r'));
    }
  }

  @Test
  void nonInteractiveBigJumpPrintsOneLine() {
    try (ProgressBar b = bar("x", 100, false, 100)) {
      b.update(55, null); // crosses 10%..50%: one line
      b.update(59, null); // still in the 50s: none
      b.update(60, null); // 60%
    }
    List<String> lines = out().lines().toList();
    assertEquals(4, lines.size(), out());
    assertTrue(lines.get(1).startsWith("x  55%"), lines.get(1));
    assertTrue(lines.get(2).startsWith("x  60%"), lines.get(2));
  }

  @Test
  void concurrentStepsAndMessagesDoNotInterleave() throws InterruptedException {
    ProgressBar b = bar("train", 2000, true, 100);
    Thread stepper = Thread.ofPlatform().start(() -> {
      for (int i = 0; i < 2000; i++) {
        now.addAndGet(1_000_000L);
        b.step("loss " + i);
      }
    });
    Thread writer = Thread.ofPlatform().start(() -> {
      for (int i = 0; i < 200; i++) b.message("msg " + i);
    });
    stepper.join();
    writer.join();
    b.close();
    List<String> screen = screen(out());
    assertEquals(201, screen.size(), out());
    for (int i = 0; i < 200; i++) assertEquals("msg " + i, screen.get(i));
    assertTrue(screen.getLast().startsWith("train 100% ["), screen.getLast());
  }

  // ---- input handling and formatting ----

  @Test
  void badInputAndControlCharacters() {
    try (ProgressBar b = bar("train", 10, true, 100)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> b.update(-1, null));
      assertTrue(e.getMessage().contains("-1") && e.getMessage().contains("train"), e.getMessage());
      advanceMs(500);
      b.update(1, "a\nb\rc\td");
      assertTrue(frames(out(), "train").getLast().contains("a b c d"), out());
    }
    assertEquals(1, count(out(), '\n'), "only the closing newline");
    assertThrows(NullPointerException.class, () -> bar(null, 1, false, 100));
    assertThrows(NullPointerException.class, () -> new ProgressBar("x", 1, null, false));
  }

  @Test
  void terminalWidthFromColumns() {
    assertEquals(100, ProgressBar.terminalWidth(null));
    assertEquals(80, ProgressBar.terminalWidth(" 80 "));
    assertEquals(100, ProgressBar.terminalWidth("wide"));
    assertEquals(100, ProgressBar.terminalWidth("-3"));
    assertEquals(ProgressBar.MIN_WIDTH, ProgressBar.terminalWidth("5"));
  }

  @Test
  void countFormatting() {
    assertEquals("0", ProgressBar.formatCount(0));
    assertEquals("420", ProgressBar.formatCount(420));
    assertEquals("9999", ProgressBar.formatCount(9_999));
    assertEquals("10.0k", ProgressBar.formatCount(10_000));
    assertEquals("12.3k", ProgressBar.formatCount(12_345));
    assertEquals("123k", ProgressBar.formatCount(123_456));
    assertEquals("1.0M", ProgressBar.formatCount(999_999));
    assertEquals("3.4M", ProgressBar.formatCount(3_400_000));
    assertEquals("5.0G", ProgressBar.formatCount(5_000_000_000L));
    assertEquals("9.2E", ProgressBar.formatCount(Long.MAX_VALUE));
    assertEquals("-12.3k", ProgressBar.formatCount(-12_345));
  }

  @Test
  void rateFormatting() {
    assertEquals("0.25", ProgressBar.formatRate(0.25));
    assertEquals("12.3", ProgressBar.formatRate(12.34));
    assertEquals("456", ProgressBar.formatRate(456.2));
    assertEquals("12.3k", ProgressBar.formatRate(12_345.0));
    assertEquals("1.5M", ProgressBar.formatRate(1.5e6));
    assertEquals("--", ProgressBar.formatRate(Double.NaN));
    assertEquals("--", ProgressBar.formatRate(Double.POSITIVE_INFINITY));
    assertEquals("--", ProgressBar.formatRate(-1));
  }

  @Test
  void durationFormatting() {
    assertEquals("0s", ProgressBar.formatDuration(0.4));
    assertEquals("45s", ProgressBar.formatDuration(45));
    assertEquals("1m00s", ProgressBar.formatDuration(59.6));
    assertEquals("3m05s", ProgressBar.formatDuration(185));
    assertEquals("59m59s", ProgressBar.formatDuration(3599));
    assertEquals("1h00m", ProgressBar.formatDuration(3600));
    assertEquals("1h02m", ProgressBar.formatDuration(3720));
    assertEquals("26h40m", ProgressBar.formatDuration(96_000));
    assertEquals(">99999h", ProgressBar.formatDuration(1e12));
    assertEquals("--", ProgressBar.formatDuration(Double.NaN));
    assertEquals("--", ProgressBar.formatDuration(-1));
  }
}

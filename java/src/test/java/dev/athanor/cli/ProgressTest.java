package dev.athanor.cli;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * How the CLI drives me.tongfei:progressbar: the status it shows, and the plain lines it prints away from a terminal.
 * The library draws on its own thread on a timer, so these tests assert on content and on {@link Progress.LogLines}'s
 * rules (with an injected clock), never on timing.
 */
class ProgressTest {
  private final ByteArrayOutputStream buf = new ByteArrayOutputStream();
  private final PrintStream ps = new PrintStream(buf, true, UTF_8);

  private List<String> lines() {
    return buf.toString(UTF_8).lines().toList();
  }

  @Test
  void aTrainingBarAwayFromATerminalPrintsPlainLinesWithTheStatusThenTheMessages() {
    try (Progress bar = Progress.logLines("train", 10, 0, ps)) {
      for (int i = 1; i <= 10; i++) bar.update(i, "loss " + (4.0 - i * 0.1) + " | 12.3k tok/s");
      bar.message("stopped at step 10; resume with: athanor train --resume auto");
      assertFalse(buf.toString(UTF_8).contains("stopped"), "messages wait for the bar to close");
    }
    String all = buf.toString(UTF_8);
    assertFalse(all.contains("\r"), "no carriage returns in logs");
    List<String> lines = lines();
    assertTrue(lines.size() >= 2, all);
    assertTrue(lines.getFirst().startsWith("train "), all);
    String last = lines.get(lines.size() - 2);
    assertTrue(last.startsWith("train 100% [") && last.contains("10/10") && last.contains("loss 3.0 | 12.3k tok/s"), last);
    assertTrue(last.length() <= Progress.LOG_WIDTH, last);
    assertEquals("stopped at step 10; resume with: athanor train --resume auto", lines.getLast());
    for (String l : lines.subList(0, lines.size() - 1)) assertTrue(l.startsWith("train "), l);
  }

  @Test
  void aResumedRunCountsFromItsFirstStep() {
    try (Progress bar = Progress.logLines("train", 100, 40, ps)) {
      bar.update(41, "loss 2.0");
    }
    String last = lines().getLast();
    assertTrue(last.contains(" 41/100 "), last);
  }

  @Test
  void aTotalLearntLaterMakesTheBarDefinite() {
    try (Progress bar = Progress.logLines("tokenize", 0, 0, ps)) {
      bar.update(500, 1000, "1.2k tokens");
      bar.update(1000, 1000, "2.4k tokens");
    }
    String last = lines().getLast();
    assertTrue(last.startsWith("tokenize 100% [") && last.contains("1000/1000") && last.contains("2.4k tokens"), last);
  }

  @Test
  void messagesAfterCloseArePrintedAtOnce() {
    Progress bar = Progress.logLines("x", 1, 0, ps);
    bar.close();
    bar.close();
    int before = lines().size();
    bar.message("after");
    assertEquals(before + 1, lines().size());
    assertEquals("after", lines().getLast());
  }

  /** LogLines: the first state, every further 10% or 30 s, the last state at close; never a line twice in a row. */
  @Test
  void logLinesPrintTheFirstStateEachTenthAndEveryThirtySecondsAndTheLast() {
    AtomicLong now = new AtomicLong(5_000_000_000L), done = new AtomicLong(), total = new AtomicLong(1000);
    Progress.LogLines ll = new Progress.LogLines(ps, 80, now::get, done::get, total::get);
    assertEquals(80, ll.getMaxRenderedLength());
    ll.accept("s0   ");
    for (int i = 1; i <= 1000; i++) {
      done.set(i);
      now.addAndGet(10_000_000L); // 10 ms a step
      ll.accept("s" + i);
    }
    ll.close();
    ll.close();
    ll.accept("late");
    List<String> expected = new java.util.ArrayList<>(List.of("s0"));
    for (int k = 1; k <= 9; k++) expected.add("s" + k * 100);
    expected.add("s1000");
    assertEquals(expected, lines(), "the first state (trailing blanks dropped), 10%..90%, then the final one");

    buf.reset();
    now.set(0);
    done.set(0);
    total.set(0); // unknown total: time alone decides
    Progress.LogLines slow = new Progress.LogLines(ps, 80, now::get, done::get, total::get);
    for (int s = 0; s <= 100; s++) {
      now.set(s * 1_000_000_000L);
      done.set(s);
      slow.accept("t" + s);
    }
    slow.close();
    assertEquals(List.of("t0", "t30", "t60", "t90", "t100"), lines());

    buf.reset();
    Progress.LogLines once = new Progress.LogLines(ps, 80, now::get, done::get, total::get);
    once.accept("only");
    once.close();
    assertEquals(List.of("only"), lines(), "a state already printed is not printed again at close");
  }

  @Test
  void countsAndRatesForPeople() {
    assertEquals("9999", Counts.format(9_999));
    assertEquals("12.3k", Counts.format(12_345));
    assertEquals("123k", Counts.format(123_456));
    assertEquals("1.0M", Counts.format(999_999));
    assertEquals("9.2E", Counts.format(Long.MAX_VALUE));
    assertEquals("-12.3k", Counts.format(-12_345));
    assertEquals("0.25", Counts.rate(0.25));
    assertEquals("12.3", Counts.rate(12.34));
    assertEquals("456", Counts.rate(456.2));
    assertEquals("12.3k", Counts.rate(12_345.0));
    assertEquals("--", Counts.rate(Double.NaN));
    assertEquals("--", Counts.rate(-1));
  }
}

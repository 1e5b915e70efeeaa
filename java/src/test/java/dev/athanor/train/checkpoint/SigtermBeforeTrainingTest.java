package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * SIGTERM before the training loop (here: while a large text corpus is being tokenized) used to end the run with
 * exit code 143 and no word. The run now says what it was doing and that nothing was saved, with how to enable
 * checkpoints.
 */
class SigtermBeforeTrainingTest {
  @Test
  void sigtermWhileTokenizingSaysNothingWasSaved(@TempDir Path tmp) throws Exception {
    TrainFixture fx = TrainFixture.create(tmp);
    Path corpus = tmp.resolve("corpus.txt");
    writeWords(corpus, 48 << 20);  // long enough to tokenize that the signal arrives during it
    Path out = tmp.resolve("child.out");
    Process p = fx.startChild(List.of(),
        List.of("train", "--preset", "gpt2-tiny", "--data", corpus.toString(), "--steps", "5", "--batch", "2", "--seq",
            "32", "--out", tmp.resolve("model").toString()), out);
    long deadline = System.nanoTime() + 120_000_000_000L;
    while (p.isAlive() && !TrainFixture.readOrWhy(out).contains("tokenize") && System.nanoTime() < deadline) {
      Thread.sleep(20);
    }
    String before = TrainFixture.readOrWhy(out);
    assertTrue(p.isAlive() && before.contains("tokenize"), () -> "the child should be tokenizing:\n" + before);
    assertFalse(before.contains("data: "), () -> "tokenizing ended before the signal; a larger corpus is needed:\n" + before);
    p.destroy();  // SIGTERM on Linux
    int rc = TrainFixture.await(p, out);
    String text = TrainFixture.readOrWhy(out);
    assertEquals(143, rc, text);
    assertTrue(text.contains("athanor train: stopped by a termination signal while preparing the run, before its first "
        + "step; nothing was saved"), text);
    assertTrue(text.contains("--checkpoint-dir DIR"), text);
    assertFalse(Files.exists(tmp.resolve("model")), "no model was written");
  }

  /** About {@code bytes} of lines of random lowercase words. */
  private static void writeWords(Path file, long bytes) throws IOException {
    SplittableRandom r = new SplittableRandom(7);
    StringBuilder line = new StringBuilder();
    try (Writer w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
      for (long written = 0; written < bytes; ) {
        line.setLength(0);
        for (int i = 0; i < 12; i++) {
          int n = 2 + r.nextInt(9);
          for (int j = 0; j < n; j++) line.append((char) ('a' + r.nextInt(26)));
          line.append(i == 11 ? '\n' : ' ');
        }
        w.write(line.toString());
        written += line.length();
      }
    }
  }
}

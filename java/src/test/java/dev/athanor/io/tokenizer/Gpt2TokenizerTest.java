package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalInt;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

class Gpt2TokenizerTest {
  private final Gpt2Tokenizer gpt2 = Gpt2Tokenizer.instance();

  @Test
  void basics() {
    assertSame(gpt2, Gpt2Tokenizer.instance());
    assertSame(gpt2, Tokenizers.gpt2());
    assertEquals("gpt2-r50k_base", gpt2.id());
    assertEquals(50257, gpt2.vocabSize());
    assertEquals(OptionalInt.of(50256), gpt2.eosToken());
    assertEquals(OptionalInt.of(50256), gpt2.bosToken());
    gpt2.close(); // the shared instance holds nothing native: close does nothing
    assertEquals(15496, gpt2.encode("Hello")[0]);
    assertArrayEquals("<|endoftext|>".getBytes(StandardCharsets.US_ASCII), gpt2.tokenBytes(50256));
    assertEquals("<|endoftext|>", gpt2.decode(new int[] {50256}));
  }

  @Test
  void knownEncodings() {
    assertArrayEquals(new int[] {15496, 995}, gpt2.encode("Hello world"));
    assertArrayEquals(new int[] {262}, gpt2.encode(" the"));
    assertArrayEquals(new int[] {198}, gpt2.encode("\n"));
    assertArrayEquals(new int[] {220}, gpt2.encode(" "));
    assertArrayEquals(new int[0], gpt2.encode(""));
    assertEquals("Hello world", gpt2.decode(new int[] {15496, 995}));
  }

  @Test
  void specialTokenTextIsPlainText() {
    int[] ids = gpt2.encode("a<|endoftext|>b");
    assertFalse(Arrays.stream(ids).anyMatch(i -> i == 50256), Arrays.toString(ids));
    assertTrue(ids.length > 3);
    assertEquals("a<|endoftext|>b", gpt2.decode(ids));
  }

  @Test
  void tokenBytesAreDefensiveCopies() {
    byte[] b = gpt2.tokenBytes(15496);
    assertEquals("Hello", new String(b, StandardCharsets.UTF_8));
    b[0] = 'J';
    assertEquals("Hello", new String(gpt2.tokenBytes(15496), StandardCharsets.UTF_8));
  }

  @Test
  void outOfRangeIdsAreRejected() {
    for (int bad : new int[] {-1, 50257, Integer.MAX_VALUE, Integer.MIN_VALUE}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> gpt2.tokenBytes(bad));
      assertTrue(e.getMessage().contains(Integer.toString(bad)) && e.getMessage().contains("50257"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class, () -> gpt2.decode(new int[] {15496, bad}));
      assertTrue(e.getMessage().contains(Integer.toString(bad)), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> gpt2.streamDecoder().push(bad));
    }
  }

  @Test
  void invalidUtf8DecodesToReplacementCharacters() {
    int lone = -1;
    for (int i = 0; i < 256 && lone < 0; i++) {
      byte[] b = gpt2.tokenBytes(i);
      if (b.length == 1 && (b[0] & 0xff) == 0xff) lone = i;
    }
    assertTrue(lone >= 0, "r50k has a token for the single byte 0xFF");
    int a = gpt2.encode("a")[0], b = gpt2.encode("b")[0];
    assertEquals("a\uFFFDb", gpt2.decode(new int[] {a, lone, b}));
    // the first token of a 4-byte character alone is an incomplete sequence
    int[] emoji = gpt2.encode("🎉");
    assertEquals("\uFFFD", gpt2.decode(new int[] {emoji[0]}));
    assertEquals("🎉", gpt2.decode(emoji));
  }

  @Test
  void roundTripsRandomUnicode() {
    List<String> texts = new ArrayList<>(SampleTexts.awkward());
    texts.addAll(SampleTexts.randomStrings(42, 400, 200, -1));
    for (String s : texts) {
      int[] ids = gpt2.encode(s);
      assertEquals(s, gpt2.decode(ids), () -> "round trip of " + escape(s));
      for (int id : ids) assertTrue(id >= 0 && id < 50256, "plain text never encodes to <|endoftext|>");
    }
  }

  @Test
  void roundTripsJdkSources() throws Exception {
    Path src = SampleTexts.jdkSources();
    assumeTrue(src != null, "the JDK has no lib/src.zip");
    long chars = 0, tokens = 0;
    for (String s : SampleTexts.jdkSourceFiles(src, "java.base/java/lang/", 300_000)) {
      int[] ids = gpt2.encode(s);
      assertEquals(s, gpt2.decode(ids));
      chars += s.length();
      tokens += ids.length;
    }
    // indented Java is about 2.5 characters per GPT-2 token; one token per byte would be a broken tokenizer
    assertTrue(tokens < 0.6 * chars, tokens + " tokens for " + chars + " characters");
  }

  @Test
  void streamDecoderEmitsWholeCharactersOnly() {
    List<String> texts = new ArrayList<>(SampleTexts.awkward());
    texts.addAll(SampleTexts.randomStrings(7, 200, 120, -1));
    int heldBack = 0;
    for (String s : texts) {
      StreamDecoder d = gpt2.streamDecoder();
      StringBuilder out = new StringBuilder();
      for (int id : gpt2.encode(s)) {
        String piece = d.push(id);
        if (piece.isEmpty()) heldBack++;
        assertFalse(piece.contains("\uFFFD"), () -> "partial character emitted for " + escape(s));
        if (!piece.isEmpty()) {
          assertFalse(Character.isHighSurrogate(piece.charAt(piece.length() - 1)), "split surrogate pair");
        }
        out.append(piece);
      }
      assertFalse(d.hasPending());
      assertEquals("", d.flush());
      assertEquals(s, out.toString(), () -> "streamed " + escape(s));
    }
    assertTrue(heldBack > 10, "some characters were split across tokens (emoji, CJK): " + heldBack);
  }

  @Test
  void streamDecoderInContextNeverPrintsBrokenCharacters() {
    // continuations of a prompt, cut at every token: what streams out is decode(prompt + rest) minus decode(prompt)
    List<String> texts = new ArrayList<>(SampleTexts.randomStrings(8, 60, 80, -1));
    texts.add("价格是 €5 🎉🎉 — naïve 👨‍👩‍👧‍👦!");
    int split = 0;
    for (String s : texts) {
      int[] ids = gpt2.encode(s);
      for (int cut = 0; cut <= ids.length; cut += Math.max(1, ids.length / 7)) {
        int[] prompt = Arrays.copyOfRange(ids, 0, cut);
        StreamDecoder d = gpt2.streamDecoder(prompt);
        StringBuilder out = new StringBuilder();
        for (int i = cut; i < ids.length; i++) {
          String piece = d.push(ids[i]);
          if (piece.isEmpty()) split++;
          assertFalse(piece.contains("\uFFFD"), () -> "broken character streamed for " + escape(s));
          out.append(piece);
        }
        out.append(d.flush());
        String all = gpt2.decode(ids), before = gpt2.decode(prompt);
        // a cut inside a character: the prompt's decoding ends in U+FFFD, the continuation completes it
        String expected = all.startsWith(before) ? all.substring(before.length()) : null;
        if (expected != null) assertEquals(expected, out.toString(), () -> "streamed " + escape(s));
      }
    }
    assertTrue(split > 10, "characters were split across tokens: " + split);
  }

  @Test
  void streamDecoderSplitsAnEmojiAcrossTokens() {
    int[] ids = gpt2.encode("🎉");
    assertTrue(ids.length >= 2, "GPT-2 needs several tokens for this emoji: " + Arrays.toString(ids));
    StreamDecoder d = gpt2.streamDecoder();
    for (int i = 0; i < ids.length - 1; i++) assertEquals("", d.push(ids[i]));
    assertTrue(d.hasPending());
    assertEquals("🎉", d.push(ids[ids.length - 1]));
    // a stream that stops inside a character flushes a replacement character
    d.push(ids[0]);
    assertEquals("\uFFFD", d.flush());
    assertFalse(d.hasPending());
  }

  @Test
  void encodesConcurrently() throws Exception {
    List<String> texts = SampleTexts.randomStrings(99, 64, 300, -1);
    List<int[]> expected = texts.stream().map(gpt2::encode).toList();
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<Future<Boolean>> fs = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        fs.add(pool.submit(() -> {
          for (int i = 0; i < texts.size(); i++) {
            if (!Arrays.equals(expected.get(i), gpt2.encode(texts.get(i)))) return false;
          }
          return true;
        }));
      }
      for (Future<Boolean> f : fs) assertTrue(f.get());
    } finally {
      pool.shutdownNow();
    }
  }

  static String escape(String s) {
    StringBuilder b = new StringBuilder();
    s.codePoints().limit(80).forEach(c -> {
      if (c >= 0x20 && c < 0x7f) b.append((char) c);
      else b.append(String.format("\\u{%X}", c));
    });
    return b.toString();
  }
}

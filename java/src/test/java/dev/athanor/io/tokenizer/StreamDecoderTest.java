package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StreamDecoderTest {
  @TempDir Path dir;

  /**
   * A tokenizer whose token i is the i-th byte array given; decode concatenates the bytes and strips up to
   * {@code strip} leading spaces of the whole text, as a SentencePiece decoder (Llama 2's Strip) does.
   */
  private record Bytes(byte[][] tokens, int strip) implements Tokenizer {
    @Override
    public String id() {
      return "bytes";
    }

    @Override
    public int vocabSize() {
      return tokens.length;
    }

    @Override
    public int[] encode(String text) {
      throw new UnsupportedOperationException();
    }

    @Override
    public String decode(int[] ids) {
      java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
      for (int id : ids) {
        if (id < 0 || id >= tokens.length) throw new IllegalArgumentException("token id " + id);
        all.writeBytes(tokens[id]);
      }
      String s = all.toString(StandardCharsets.UTF_8);
      int k = 0;
      while (k < strip && k < s.length() && s.charAt(k) == ' ') k++;
      return s.substring(k);
    }

    @Override
    public OptionalInt eosToken() {
      return OptionalInt.empty();
    }
  }

  private static byte[] b(int... v) {
    byte[] out = new byte[v.length];
    for (int i = 0; i < v.length; i++) out[i] = (byte) v[i];
    return out;
  }

  private static String stream(StreamDecoder d, int... ids) {
    StringBuilder out = new StringBuilder();
    for (int id : ids) out.append(d.push(id));
    return out.append(d.flush()).toString();
  }

  @Test
  void splitCharactersAreEmittedWhole() {
    // "é€🎉!" split byte by byte
    byte[] all = "é€🎉!".getBytes(StandardCharsets.UTF_8);
    byte[][] toks = new byte[all.length][];
    for (int i = 0; i < all.length; i++) toks[i] = new byte[] {all[i]};
    Bytes t = new Bytes(toks, 0);
    StreamDecoder d = t.streamDecoder();
    StringBuilder out = new StringBuilder();
    String[] expected = {"", "é", "", "", "€", "", "", "", "🎉", "!"};
    for (int i = 0; i < all.length; i++) {
      String s = d.push(i);
      assertEquals(expected[i], s, "after byte " + i);
      out.append(s);
    }
    assertEquals("é€🎉!", out.toString());
    assertFalse(d.hasPending());
  }

  @Test
  void invalidBytesComeOutOnceTheTextGoesOn() {
    Bytes t = new Bytes(new byte[][] {b(0xff), b('a'), b(0xe2, 0x82), b(0x80)}, 0);
    StreamDecoder d = t.streamDecoder();
    assertEquals("", d.push(0)); // text ending in U+FFFD may be an unfinished character: held back
    assertTrue(d.hasPending());
    assertEquals("\uFFFDa", d.push(1));
    assertEquals("", d.push(2));
    assertEquals("\uFFFDa", d.push(1)); // an interrupted sequence is one replacement character
    assertEquals("", d.push(2));
    assertEquals("\uFFFD", d.flush());
    assertFalse(d.hasPending());
    assertEquals("", d.flush());
    // garbage is not held back forever
    StreamDecoder g = t.streamDecoder();
    StringBuilder out = new StringBuilder();
    for (int i = 0; i < StreamDecoder.MAX_PENDING; i++) out.append(g.push(0));
    assertEquals("\uFFFD".repeat(StreamDecoder.MAX_PENDING), out.toString());
  }

  @Test
  void streamsConcatenateToTheDecodedWhole() {
    Bytes t = new Bytes(new byte[][] {b(' ', 'h', 'i'), b(' ', 'y', 'o'), b(' '), b(), b(0xc3), b(0xa9)}, 1);
    int[][] streams = {{0, 1}, {2, 2, 0}, {3, 2, 0}, {3, 3}, {2}, {1, 2, 2}, {4, 5, 0}, {0, 4, 5, 2, 4}};
    for (int[] ids : streams) {
      assertEquals(t.decode(ids), stream(t.streamDecoder(), ids), Arrays.toString(ids));
    }
    assertEquals("hi yo", t.decode(new int[] {0, 1}));
    assertEquals("  hi", t.decode(new int[] {2, 2, 0}));
  }

  @Test
  void aContinuationKeepsTheSpaceItsFirstTokenCarries() {
    // " hi" then " yo": decoded alone, " yo" loses its space to the decoder's strip; after the prompt it keeps it
    Bytes t = new Bytes(new byte[][] {b(' ', 'h', 'i'), b(' ', 'y', 'o'), b(' ')}, 1);
    assertEquals("yo", t.decode(new int[] {1}));
    assertEquals(" yo", stream(t.streamDecoder(new int[] {0}), 1));
    assertEquals(" yo yo", stream(t.streamDecoder(new int[] {0}), 1, 1));
    assertEquals("  yo", stream(t.streamDecoder(new int[] {0}), 2, 1));
    // a long context: only its tail is decoded again
    int[] context = new int[1000];
    assertEquals(" yo", stream(t.streamDecoder(context), 1));
  }

  @Test
  void badIdsLeaveTheDecoderUnchanged() {
    Bytes t = new Bytes(new byte[][] {b(0xc3), b(0xa9)}, 0);
    StreamDecoder d = t.streamDecoder();
    assertEquals("", d.push(0));
    assertThrows(IllegalArgumentException.class, () -> d.push(7));
    assertTrue(d.hasPending());
    assertEquals("é", d.push(1));
    assertThrows(IllegalArgumentException.class, () -> t.streamDecoder(new int[] {1, 9}));
  }

  // ---- with real tokenizer.json files (Hugging Face's tokenizers library)

  /**
   * Llama 2's layout (Prepend + Replace normalizer, byte fallback, a Strip decoder): the first generated token's
   * "▁" is a space after the prompt. Decoding that token alone (what streaming did before) drops it and glues the
   * continuation to the prompt.
   */
  @Test
  void llama2StyleContinuationKeepsItsSpace() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    Path p = dir.resolve("tokenizer.json");
    Files.writeString(p, HfSentencePieceTest.json(false, true, true).toString());
    try (HfTokenizer t = HfTokenizer.load(p)) {
      int bos = t.bosToken().getAsInt();
      int[] prompt = {bos, HfSentencePieceTest.HELLO};
      assertEquals("world", t.decode(new int[] {HfSentencePieceTest.WORLD}), "the strip decoder alone");
      assertEquals(" world", stream(t.streamDecoder(prompt), HfSentencePieceTest.WORLD));
      assertEquals(" world  world", stream(t.streamDecoder(prompt), HfSentencePieceTest.WORLD, HfSentencePieceTest.SPACE,
          HfSentencePieceTest.WORLD));
      // byte fallback: "é" is two byte tokens after "▁"; nothing broken comes out in between
      int[] e = t.encode("hello é!");
      StreamDecoder d = t.streamDecoder(prompt);
      List<String> pieces = new ArrayList<>();
      for (int i = 1; i < e.length; i++) pieces.add(d.push(e[i]));
      assertEquals(List.of(" ", "", "é", "!"), pieces);
      // a prompt that ends inside a run of byte tokens (a family emoji is 25 bytes): the window must not start
      // inside a character, where the byte-fallback decoder would turn the whole run into U+FFFD
      int[] all = t.encode("hello 👨‍👩‍👧‍👦 world");
      String whole = t.decode(all);
      int cuts = 0;
      for (int cut = 1; cut < all.length; cut++) {
        int[] ctx = Arrays.copyOfRange(all, 0, cut);
        String before = t.decode(ctx);
        if (before.endsWith("\uFFFD")) continue;
        int[] rest = Arrays.copyOfRange(all, cut, all.length);
        assertEquals(whole.substring(before.length()), stream(t.streamDecoder(ctx), rest), "cut at " + cut);
        cuts++;
      }
      assertTrue(cuts >= 6, "cuts between characters: " + cuts);
    }
  }

  /** The same on a Llama-2-style file that Hugging Face's library trained and saved, over many prompts. */
  @Test
  void inContextStreamingMatchesDecodeOnFixtures() throws Exception {
    assumeTrue(HfTokenizer.isAvailable(), HfTokenizer.unavailableReason());
    for (String name : List.of("llama2-style", "metaspace-bpe", "bytelevel-bpe", "llama3-style", "unigram")) {
      try (HfTokenizer t = HfFixturesTest.load(name, dir)) {
        List<String> texts = new ArrayList<>(SampleTexts.randomStrings(5, 40, 60, -1));
        texts.add("The model generates text. 价格是 €5 🎉 — naïve 👨‍👩‍👧‍👦!");
        int kept = 0;
        for (String s : texts) {
          int[] ids = t.encode(s);
          for (int cut = 1; cut < ids.length; cut += Math.max(1, ids.length / 5)) {
            int[] prompt = Arrays.copyOfRange(ids, 0, cut);
            String before = t.decode(prompt), all = t.decode(ids);
            if (!all.startsWith(before) || before.endsWith("\uFFFD")) continue; // a cut inside a character
            StreamDecoder d = t.streamDecoder(prompt);
            StringBuilder out = new StringBuilder();
            for (int i = cut; i < ids.length; i++) {
              String piece = d.push(ids[i]);
              assertFalse(piece.contains("\uFFFD") && !s.contains("\uFFFD"), name + ": broken character streamed");
              out.append(piece);
            }
            out.append(d.flush());
            assertEquals(all.substring(before.length()), out.toString(), () -> name + ": " + Gpt2TokenizerTest.escape(s));
            if (out.length() > 0 && out.charAt(0) == ' ') kept++;
          }
        }
        assertTrue(name.startsWith("byte") || name.startsWith("llama3") || kept > 5,
            name + ": continuations starting with a space: " + kept);
      }
    }
  }
}

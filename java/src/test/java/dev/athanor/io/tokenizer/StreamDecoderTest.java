package dev.athanor.io.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;

class StreamDecoderTest {
  /** A tokenizer whose token i is the i-th byte array given (only the decoding side is implemented). */
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
      StringBuilder b = new StringBuilder();
      java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
      for (int id : ids) all.writeBytes(tokenBytes(id));
      String s = all.toString(StandardCharsets.UTF_8);
      int k = 0;
      while (k < strip && k < s.length() && s.charAt(k) == ' ') k++;
      return b.append(s, k, s.length()).toString();
    }

    @Override
    public OptionalInt eosToken() {
      return OptionalInt.empty();
    }

    @Override
    public byte[] tokenBytes(int id) {
      if (id < 0 || id >= tokens.length) throw new IllegalArgumentException("token id " + id);
      return tokens[id].clone();
    }

    @Override
    public int leadingSpacesStripped() {
      return strip;
    }
  }

  private static byte[] b(int... v) {
    byte[] out = new byte[v.length];
    for (int i = 0; i < v.length; i++) out[i] = (byte) v[i];
    return out;
  }

  @Test
  void completePrefixHoldsBackOnlyIncompleteSequences() {
    assertEquals(0, StreamDecoder.completePrefix(b()));
    assertEquals(1, StreamDecoder.completePrefix(b('a')));
    assertEquals(1, StreamDecoder.completePrefix(b('a', 0xc3)));
    assertEquals(3, StreamDecoder.completePrefix(b('a', 0xc3, 0xa9)));
    assertEquals(0, StreamDecoder.completePrefix(b(0xe2, 0x82)));
    assertEquals(3, StreamDecoder.completePrefix(b(0xe2, 0x82, 0xac)));
    assertEquals(1, StreamDecoder.completePrefix(b('x', 0xf0, 0x9f, 0x8e)));
    assertEquals(5, StreamDecoder.completePrefix(b('x', 0xf0, 0x9f, 0x8e, 0x89)));
    // invalid bytes are not held back: stray continuations, C0/C1, F5..FF
    assertEquals(2, StreamDecoder.completePrefix(b('a', 0x80)));
    assertEquals(1, StreamDecoder.completePrefix(b(0xc0)));
    assertEquals(1, StreamDecoder.completePrefix(b(0xff)));
    assertEquals(1, StreamDecoder.completePrefix(b(0xf8)));
    // four continuation bytes after a lead of 4: complete as far as holding back goes
    assertEquals(5, StreamDecoder.completePrefix(b(0xf0, 0x80, 0x80, 0x80, 0x80)));
  }

  @Test
  void splitCharactersAreEmittedWhole() {
    // "é€🎉" split byte by byte
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
  void invalidBytesPassThroughAsReplacementCharacters() {
    Bytes t = new Bytes(new byte[][] {b(0xff), b('a'), b(0xe2, 0x82), b(0x80)}, 0);
    StreamDecoder d = t.streamDecoder();
    assertEquals("\uFFFD", d.push(0));
    assertEquals("\uFFFDa", t.streamDecoder().push(3) + d.push(1));
    assertEquals("", d.push(2));
    assertEquals("\uFFFDa", d.push(1)); // an interrupted sequence is one replacement character
    assertEquals("", d.push(2));
    assertEquals("\uFFFD", d.flush());
    assertEquals("", d.flush());
  }

  @Test
  void stripsLeadingSpacesLikeDecode() {
    Bytes t = new Bytes(new byte[][] {b(' ', 'h', 'i'), b(' ', 'y', 'o'), b(' '), b()}, 1);
    int[][] streams = {{0, 1}, {2, 2, 0}, {3, 2, 0}, {3, 3}, {2}, {1, 2, 2}};
    for (int[] ids : streams) {
      StreamDecoder d = t.streamDecoder();
      StringBuilder out = new StringBuilder();
      for (int id : ids) out.append(d.push(id));
      out.append(d.flush());
      assertEquals(t.decode(ids), out.toString(), java.util.Arrays.toString(ids));
    }
    assertEquals("hi yo", t.decode(new int[] {0, 1}));
    assertEquals("  hi", t.decode(new int[] {2, 2, 0}));
  }

  @Test
  void badIdsLeaveTheDecoderUnchanged() {
    Bytes t = new Bytes(new byte[][] {b(0xc3), b(0xa9)}, 0);
    StreamDecoder d = t.streamDecoder();
    assertEquals("", d.push(0));
    assertThrows(IllegalArgumentException.class, () -> d.push(7));
    assertTrue(d.hasPending());
    assertEquals("é", d.push(1));
  }
}

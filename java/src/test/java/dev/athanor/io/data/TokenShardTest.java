package dev.athanor.io.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenShardTest {
  @TempDir Path tmp;

  /** Writes a raw shard: header (magic, version, count) then the given token bytes. */
  static Path raw(Path file, int magic, int version, int count, byte[] body) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(1024 + body.length).order(ByteOrder.LITTLE_ENDIAN);
    b.putInt(0, magic).putInt(4, version).putInt(8, count);
    b.put(1024, body);
    Files.write(file, b.array());
    return file;
  }

  static byte[] u16(int... ids) {
    ByteBuffer b = ByteBuffer.allocate(ids.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int id : ids) b.putShort((short) id);
    return b.array();
  }

  static Path write(Path file, int vocab, int... ids) {
    try (TokenShardWriter w = TokenShardWriter.create(file, vocab)) {
      w.write(ids);
    }
    return file;
  }

  @Test
  void uint16RoundTripIncludingExtremeIds() throws IOException {
    int[] ids = {0, 1, 65535, 50256, 32768, 255, 256, 0, 65535};
    Path f = write(tmp.resolve("a.bin"), 65536, ids);
    assertEquals(1024 + 2L * ids.length, Files.size(f));
    ByteBuffer h = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(20240520, h.getInt(0));
    assertEquals(1, h.getInt(4));
    assertEquals(ids.length, h.getInt(8));
    for (int i = 3; i < 256; i++) assertEquals(0, h.getInt(4 * i), "unused header int " + i);
    assertEquals(65535, h.getShort(1024 + 4) & 0xffff);  // little-endian uint16 on disk
    try (TokenShard s = TokenShard.open(f)) {
      assertEquals(ids.length, s.size());
      assertEquals(2, s.tokenBytes());
      assertEquals(f, s.path());
      int[] all = new int[ids.length];
      s.read(0, all, 0, ids.length);
      assertArrayEquals(ids, all);
      for (int i = 0; i < ids.length; i++) assertEquals(ids[i], s.get(i));
      int[] part = new int[5];
      s.read(2, part, 1, 3);
      assertArrayEquals(new int[] {0, 65535, 50256, 32768, 0}, part);
    }
  }

  @Test
  void uint32RoundTripAboveUint16() throws IOException {
    int[] ids = {0, 65535, 65536, 128255, 128000, 7, 200_000};
    Path f = write(tmp.resolve("b.bin"), 200_001, ids);
    ByteBuffer h = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(20240801, h.getInt(0));
    assertEquals(7, h.getInt(4));
    assertEquals(1024 + 4L * ids.length, Files.size(f));
    try (TokenShard s = TokenShard.open(f)) {
      assertEquals(4, s.tokenBytes());
      int[] all = new int[ids.length];
      s.read(0, all, 0, ids.length);
      assertArrayEquals(ids, all);
      assertEquals(128255, s.get(3));
    }
  }

  @Test
  void vocabOf65536IsUint16And65537IsUint32() {
    try (TokenShardWriter w = TokenShardWriter.create(tmp.resolve("x.bin"), 65536)) {
      assertEquals(2, w.tokenBytes());
    }
    try (TokenShardWriter w = TokenShardWriter.create(tmp.resolve("y.bin"), 65537)) {
      assertEquals(4, w.tokenBytes());
      w.write(65536);
    }
    try (TokenShard s = TokenShard.open(tmp.resolve("x.bin"))) {
      assertEquals(0, s.size());  // an empty shard is well-formed (datasets reject it)
    }
  }

  @Test
  void largeRandomStreamRoundTripsThroughBufferBoundaries() {
    Random r = new Random(7);
    int[] ids = new int[1_500_000];  // > the 1 MiB write buffer and many 8K read chunks
    for (int i = 0; i < ids.length; i++) ids[i] = r.nextInt(50257);
    Path f = tmp.resolve("big.bin");
    try (TokenShardWriter w = TokenShardWriter.create(f, 50257)) {
      for (int off = 0; off < ids.length; off += 99_991) w.write(ids, off, Math.min(99_991, ids.length - off));
      assertEquals(ids.length, w.count());
    }
    try (TokenShard s = TokenShard.open(f)) {
      int[] back = new int[ids.length];
      s.read(0, back, 0, back.length);
      assertArrayEquals(ids, back);
      int[] mid = new int[20_000];
      s.read(777_777, mid, 0, mid.length);
      for (int i = 0; i < mid.length; i++) assertEquals(ids[777_777 + i], mid[i]);
    }
  }

  @Test
  void writerRejectsOutOfVocabIdsNamingIdAndPosition() {
    Path f = tmp.resolve("c.bin");
    try (TokenShardWriter w = TokenShardWriter.create(f, 50257)) {
      w.write(new int[] {1, 2, 3});
      var e = assertThrows(IllegalArgumentException.class, () -> w.write(new int[] {4, 50257, 6}));
      assertTrue(e.getMessage().contains("50257") && e.getMessage().contains("position 4")
          && e.getMessage().contains("c.bin"), e.getMessage());
      var n = assertThrows(IllegalArgumentException.class, () -> w.write(-1));
      assertTrue(n.getMessage().contains("-1") && n.getMessage().contains("position 3"), n.getMessage());
      assertEquals(3, w.count());  // nothing of the rejected calls was written
      w.write(7);
    }
    try (TokenShard s = TokenShard.open(f)) {
      int[] all = new int[4];
      s.read(0, all, 0, 4);
      assertArrayEquals(new int[] {1, 2, 3, 7}, all);
    }
    assertThrows(IllegalArgumentException.class, () -> TokenShardWriter.create(tmp.resolve("d.bin"), 0));
  }

  @Test
  void writerIsAtomicAndAbortLeavesNothing() throws IOException {
    Path f = tmp.resolve("e.bin");
    write(f, 100, 1, 2, 3);
    TokenShardWriter w = TokenShardWriter.create(f, 100);
    w.write(new int[] {9, 9, 9, 9, 9});
    try (TokenShard old = TokenShard.open(f)) {
      assertEquals(3, old.size());  // the target is untouched while writing
    }
    w.abort();
    w.close();  // no-op after abort
    try (TokenShard old = TokenShard.open(f)) {
      assertEquals(3, old.size());
    }
    try (Stream<Path> s = Files.list(tmp)) {
      assertEquals(1, s.count(), "temporary file left behind");
    }
    TokenShardWriter w2 = TokenShardWriter.create(f, 100);
    w2.write(new int[] {5, 6});
    w2.close();
    w2.close();  // idempotent
    assertThrows(IllegalStateException.class, () -> w2.write(1));
    try (TokenShard s = TokenShard.open(f)) {
      assertEquals(2, s.size());
      assertEquals(6, s.get(1));
    }
  }

  @Test
  void tooShort() throws IOException {
    Path f = tmp.resolve("short.bin");
    Files.write(f, new byte[100]);
    var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(f));
    assertTrue(e.getMessage().contains("short.bin") && e.getMessage().contains("too short")
        && e.getMessage().contains("100 bytes"), e.getMessage());
    Files.write(f, new byte[0]);
    assertThrows(IllegalArgumentException.class, () -> TokenShard.open(f));
  }

  @Test
  void badMagicSaysFoundAndExpected() throws IOException {
    Path f = raw(tmp.resolve("magic.bin"), 12345, 1, 0, new byte[0]);
    var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(f));
    assertTrue(e.getMessage().contains("magic.bin") && e.getMessage().contains("12345")
        && e.getMessage().contains("20240520") && e.getMessage().contains("20240801"), e.getMessage());
  }

  @Test
  void unsupportedVersions() throws IOException {
    Path a = raw(tmp.resolve("v2.bin"), 20240520, 2, 0, new byte[0]);
    var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(a));
    assertTrue(e.getMessage().contains("v2.bin") && e.getMessage().contains("version 2"), e.getMessage());
    Path b = raw(tmp.resolve("v1u32.bin"), 20240801, 1, 0, new byte[0]);
    var e2 = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(b));
    assertTrue(e2.getMessage().contains("v1u32.bin") && e2.getMessage().contains("version 1"), e2.getMessage());
  }

  @Test
  void negativeCount() throws IOException {
    Path f = raw(tmp.resolve("neg.bin"), 20240520, 1, -5, new byte[0]);
    var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(f));
    assertTrue(e.getMessage().contains("neg.bin") && e.getMessage().contains("-5"), e.getMessage());
  }

  @Test
  void truncatedAndTrailingBytes() throws IOException {
    Path t = raw(tmp.resolve("trunc.bin"), 20240520, 1, 4, u16(1, 2, 3));
    var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(t));
    assertTrue(e.getMessage().contains("trunc.bin") && e.getMessage().contains("truncated")
        && e.getMessage().contains("4 tokens"), e.getMessage());
    Path odd = raw(tmp.resolve("odd.bin"), 20240520, 1, 3, new byte[7]);
    var e2 = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(odd));
    assertTrue(e2.getMessage().contains("odd.bin") && e2.getMessage().contains("1 trailing bytes"), e2.getMessage());
    Path u32 = raw(tmp.resolve("u32.bin"), 20240801, 7, 2, new byte[6]);
    var e3 = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(u32));
    assertTrue(e3.getMessage().contains("truncated"), e3.getMessage());
  }

  @Test
  void missingFileAndDirectory() {
    var e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(tmp.resolve("nope.bin")));
    assertTrue(e.getMessage().contains("nope.bin") && e.getMessage().contains("does not exist"), e.getMessage());
    var d = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(tmp));
    assertTrue(d.getMessage().contains("directory"), d.getMessage());
  }

  @Test
  void rangeChecksAndUseAfterClose() {
    Path f = write(tmp.resolve("r.bin"), 10, 1, 2, 3);
    TokenShard s = TokenShard.open(f);
    int[] dst = new int[4];
    assertThrows(IndexOutOfBoundsException.class, () -> s.read(1, dst, 0, 3));
    assertThrows(IndexOutOfBoundsException.class, () -> s.read(-1, dst, 0, 1));
    assertThrows(IndexOutOfBoundsException.class, () -> s.read(0, dst, 2, 3));
    assertThrows(IndexOutOfBoundsException.class, () -> s.get(3));
    s.read(3, dst, 0, 0);  // empty read at the end is fine
    s.close();
    s.close();
    var e = assertThrows(IllegalStateException.class, () -> s.get(0));
    assertTrue(e.getMessage().contains("r.bin"), e.getMessage());
  }

  @Test
  void sparseFileBeyondTwoGigabytes() throws IOException {
    // 1.2G uint16 tokens = 2.4 GB, but sparse: only the header and two tokens take disk space
    int count = 1_200_000_000;
    Path f = tmp.resolve("huge.bin");
    try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      ByteBuffer h = ByteBuffer.allocate(1024).order(ByteOrder.LITTLE_ENDIAN);
      h.putInt(0, 20240520).putInt(4, 1).putInt(8, count);
      ch.write(h, 0);
      ch.write(ByteBuffer.wrap(u16(4242)), 1024 + 2L * 1_100_000_000);
      ch.write(ByteBuffer.wrap(u16(65535)), 1024 + 2L * (count - 1));
    }
    try (TokenShard s = TokenShard.open(f)) {
      assertEquals(count, s.size());
      assertEquals(4242, s.get(1_100_000_000));
      assertEquals(65535, s.get(count - 1));
      int[] d = new int[3];
      s.read(1_099_999_999, d, 0, 3);
      assertArrayEquals(new int[] {0, 4242, 0}, d);
      assertFalse(s.toString().isEmpty());
    }
  }
}

package dev.athanor.io.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenDatasetTest {
  @TempDir Path tmp;

  static int[] range(int from, int to) {
    int[] a = new int[to - from];
    for (int i = 0; i < a.length; i++) a[i] = from + i;
    return a;
  }

  @Test
  void directoryShardsConcatenateInSortedNameOrderAcrossBoundaries() throws IOException {
    // written out of order; names sort b0 < b1 < b2; an empty shard sits in the middle
    TokenShardTest.write(tmp.resolve("b2.bin"), 1000, range(10, 17));
    TokenShardTest.write(tmp.resolve("b0.bin"), 1000, range(0, 4));
    TokenShardTest.write(tmp.resolve("b1.bin"), 1000);
    TokenShardTest.write(tmp.resolve("b11.bin"), 1000, range(4, 10));
    Files.writeString(tmp.resolve("notes.txt"), "not a shard");
    try (TokenDataset d = TokenDataset.open(tmp)) {
      assertEquals(17, d.size());
      assertEquals(List.of("b0.bin", "b1.bin", "b11.bin", "b2.bin"),
          d.files().stream().map(p -> p.getFileName().toString()).toList());
      int[] all = new int[17];
      d.read(0, all, 0, 17);
      assertArrayEquals(range(0, 17), all);
      for (int from = 0; from < 17; from++) {
        for (int len = 0; from + len <= 17; len++) {
          int[] part = new int[len + 2];
          d.read(from, part, 1, len);
          for (int i = 0; i < len; i++) assertEquals(from + i, part[1 + i], "read(" + from + ", " + len + ")");
          assertEquals(0, part[0]);
          assertEquals(0, part[len + 1]);
        }
        assertEquals(from, d.get(from));
      }
      assertThrows(IndexOutOfBoundsException.class, () -> d.read(15, new int[3], 0, 3));
      assertThrows(IndexOutOfBoundsException.class, () -> d.read(-1, new int[3], 0, 1));
      assertThrows(IndexOutOfBoundsException.class, () -> d.get(17));
    }
  }

  @Test
  void singleFileAndOf() {
    Path a = TokenShardTest.write(tmp.resolve("a.bin"), 70000, 69999, 1);
    Path b = TokenShardTest.write(tmp.resolve("z.bin"), 100, 5);
    try (TokenDataset d = TokenDataset.open(a)) {
      assertEquals(2, d.size());
      assertEquals(69999, d.get(0));
    }
    // of() keeps the given order (uint32 and uint16 shards mixed)
    try (TokenDataset d = TokenDataset.of(List.of(TokenShard.open(b), TokenShard.open(a)))) {
      int[] all = new int[3];
      d.read(0, all, 0, 3);
      assertArrayEquals(new int[] {5, 69999, 1}, all);
    }
  }

  @Test
  void emptyDataIsRejectedNamingThePaths() throws IOException {
    Path e1 = TokenShardTest.write(tmp.resolve("e1.bin"), 10);
    Path e2 = TokenShardTest.write(tmp.resolve("e2.bin"), 10);
    var e = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(tmp));
    assertTrue(e.getMessage().contains("e1.bin") && e.getMessage().contains("e2.bin")
        && e.getMessage().contains("empty"), e.getMessage());
    var e3 = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(e1));
    assertTrue(e3.getMessage().contains("e1.bin"), e3.getMessage());
    assertThrows(IllegalArgumentException.class, () -> TokenDataset.of(List.of()));
    Path empty = Files.createDirectory(tmp.resolve("nothing"));
    var e4 = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(empty));
    assertTrue(e4.getMessage().contains("nothing") && e4.getMessage().contains("no .bin"), e4.getMessage());
    var e5 = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(tmp.resolve("missing")));
    assertTrue(e5.getMessage().contains("missing"), e5.getMessage());
    assertTrue(Files.exists(e2));
  }

  @Test
  void aMalformedShardInADirectoryIsNamed() throws IOException {
    TokenShardTest.write(tmp.resolve("a.bin"), 10, 1, 2);
    Files.write(tmp.resolve("b.bin"), new byte[1030]);
    var e = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(tmp));
    assertTrue(e.getMessage().contains("b.bin") && e.getMessage().contains("magic"), e.getMessage());
  }

  @Test
  void checkVocabNamesShardPositionAndId() {
    int[] big = new int[(1 << 20) + 10];  // crosses the scan chunk
    for (int i = 0; i < big.length; i++) big[i] = i % 1000;
    TokenShardTest.write(tmp.resolve("a.bin"), 1000, big);
    big[(1 << 20) + 5] = 1000;
    TokenShardTest.write(tmp.resolve("b.bin"), 2000, big);
    try (TokenDataset d = TokenDataset.open(tmp)) {
      d.checkVocab(1000 + 1);
      var e = assertThrows(IllegalArgumentException.class, () -> d.checkVocab(1000));
      String m = e.getMessage();
      assertTrue(m.contains("b.bin") && m.contains("token id 1000") && m.contains("position " + ((1 << 20) + 5))
          && m.contains("position " + (big.length + (1 << 20) + 5) + " of the data"), m);
      var e2 = assertThrows(IllegalArgumentException.class, () -> d.checkVocab(999));
      assertTrue(e2.getMessage().contains("a.bin") && e2.getMessage().contains("token id 999"), e2.getMessage());
      assertThrows(IllegalArgumentException.class, () -> d.checkVocab(0));
    }
  }

  @Test
  void checkVocabSeesUint32ValuesAboveIntMax() throws IOException {
    // a uint32 token of 0xFFFFFFFF reads as -1 and must be reported as 4294967295
    Path f = TokenShardTest.raw(tmp.resolve("u.bin"), 20240801, 7, 2,
        new byte[] {1, 0, 0, 0, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff});
    try (TokenDataset d = TokenDataset.open(f)) {
      var e = assertThrows(IllegalArgumentException.class, () -> d.checkVocab(128256));
      assertTrue(e.getMessage().contains("4294967295") && e.getMessage().contains("position 1"), e.getMessage());
    }
  }
}

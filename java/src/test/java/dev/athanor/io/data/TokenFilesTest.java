package dev.athanor.io.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenFilesTest {
  @TempDir Path tmp;

  private Path text(String name, String content) throws IOException {
    return Files.writeString(tmp.resolve(name), content);
  }

  private void bad(Path f, String... parts) {
    var e = assertThrows(IllegalArgumentException.class, () -> TokenFiles.readIds(f));
    assertTrue(e.getMessage().contains(f.getFileName().toString()), e.getMessage());
    for (String p : parts) assertTrue(e.getMessage().contains(p), e.getMessage());
  }

  @Test
  void shardsByExtensionAndByMagic() throws IOException {
    Path a = TokenShardTest.write(tmp.resolve("a.bin"), 50257, 15496, 11, 50256);
    assertArrayEquals(new int[] {15496, 11, 50256}, TokenFiles.readIds(a));
    Path b = TokenShardTest.write(tmp.resolve("b.tokens"), 128256, 128000, 9906);
    assertArrayEquals(new int[] {128000, 9906}, TokenFiles.readIds(b));
    Path empty = TokenShardTest.write(tmp.resolve("e.bin"), 10);
    bad(empty, "no tokens");
    Files.write(tmp.resolve("junk.bin"), new byte[2000]);
    bad(tmp.resolve("junk.bin"), "magic");
  }

  @Test
  void textWithWhitespaceCommasNewlinesAndBrackets() throws IOException {
    assertArrayEquals(new int[] {1, 2, 3, 40, 5, 0},
        TokenFiles.readIds(text("a.txt", "1 2,3\n\n 40 ,5\t0\r\n")));
    assertArrayEquals(new int[] {7}, TokenFiles.readIds(text("b.txt", "7")));
    assertArrayEquals(new int[] {1, 2, 3}, TokenFiles.readIds(text("c.json", "[1, 2,\n 3]\n")));
    assertArrayEquals(new int[] {2147483647}, TokenFiles.readIds(text("d.txt", "2147483647")));
  }

  @Test
  void junkIsRejectedNamingLineAndToken() throws IOException {
    bad(text("j1.txt", "1 2\n3 x4 5\n"), "line 2", "'x4'");
    bad(text("j2.txt", "1\n2\n-3\n"), "line 3", "'-3'", "negative");
    bad(text("j3.txt", "1 2.5"), "line 1", "'2.5'");
    bad(text("j4.txt", "99999999999"), "line 1", "larger than");
    bad(text("j5.txt", " \n,, \n"), "no token ids");
    bad(text("j6.txt", ""), "no token ids");
    bad(text("j7.txt", "[1, 2"), "'['");
    bad(text("j8.txt", "[1] 2"), "after the closing");
    bad(text("j9.txt", "1 - 2"), "line 1", "'-'");
    Files.write(tmp.resolve("bin.txt"), new byte[] {'1', ' ', (byte) 0xff, (byte) 0xfe});
    bad(tmp.resolve("bin.txt"), "UTF-8");
    bad(tmp.resolve("missing.txt"), "does not exist");
    bad(tmp, "not a regular file");
  }
}

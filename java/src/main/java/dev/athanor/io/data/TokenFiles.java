package dev.athanor.io.data;

import dev.athanor.io.FileProblems;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;

/** Reading token ids from files given on a command line. */
public final class TokenFiles {
  private TokenFiles() {}

  /**
   * Reads token ids from a {@code .bin} token shard (recognised by the {@code .bin} extension or by a shard
   * magic number at its start) or from a UTF-8 text file of non-negative integer ids separated by whitespace
   * and/or commas (one optional pair of enclosing brackets, as in {@code [1, 2, 3]}, is accepted).
   *
   * @throws IllegalArgumentException if the file does not exist, is a malformed shard, has no ids, or holds
   *     something other than non-negative int32 ids (naming the line and the offending text)
   */
  public static int[] readIds(Path path) {
    if (path == null) throw new IllegalArgumentException("token file path is null");
    String problem = FileProblems.notRegularFile(path);
    if (problem != null) throw new IllegalArgumentException("token file " + path + " " + problem);
    if (path.getFileName().toString().toLowerCase(java.util.Locale.ROOT).endsWith(".bin") || startsWithMagic(path)) {
      try (TokenShard shard = TokenShard.open(path)) {
        if (shard.size() == 0) throw new IllegalArgumentException("token shard " + path + " holds no tokens");
        if (shard.size() > Integer.MAX_VALUE - 8) {
          throw new IllegalArgumentException("token shard " + path + " holds " + shard.size()
              + " tokens, too many to read into one array");
        }
        int[] ids = new int[(int) shard.size()];
        shard.read(0, ids, 0, ids.length);
        for (int i = 0; i < ids.length; i++) {
          if (ids[i] < 0) {
            throw new IllegalArgumentException("token id " + Integer.toUnsignedLong(ids[i]) + " at position " + i
                + " of token shard " + path + " does not fit in an int32");
          }
        }
        return ids;
      }
    }
    return readText(path);
  }

  private static boolean startsWithMagic(Path path) {
    try (InputStream in = Files.newInputStream(path)) {
      byte[] b = in.readNBytes(4);
      return b.length == 4 && TokenShard.isMagic(ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getInt());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read token file " + path + ": " + FileProblems.reason(e), e);
    }
  }

  private static int[] readText(Path path) {
    var decoder = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    int[] ids = new int[1024];
    int n = 0;
    boolean open = false;
    boolean closed = false;
    try (BufferedReader r = new BufferedReader(new java.io.InputStreamReader(Files.newInputStream(path), decoder))) {
      String line;
      int lineNo = 0;
      while ((line = r.readLine()) != null) {
        lineNo++;
        int i = 0;
        int len = line.length();
        while (i < len) {
          char c = line.charAt(i);
          if (c == ',' || Character.isWhitespace(c) || c == '\uFEFF') {
            i++;
            continue;
          }
          int j = i;
          while (j < len && line.charAt(j) != ',' && !Character.isWhitespace(line.charAt(j))) j++;
          String tok = line.substring(i, j);
          if (closed) throw junk(path, lineNo, tok, "text after the closing ']'");
          if (tok.startsWith("[") && n == 0 && !open) {
            open = true;
            tok = tok.substring(1);
          }
          if (tok.endsWith("]") && open) {
            closed = true;
            tok = tok.substring(0, tok.length() - 1);
          }
          if (!tok.isEmpty()) {
            int id = parseId(path, lineNo, line.substring(i, j), tok);
            if (n == ids.length) ids = Arrays.copyOf(ids, Math.max(16, n * 2));
            ids[n++] = id;
          }
          i = j;
        }
      }
    } catch (CharacterCodingException e) {
      throw new IllegalArgumentException("token file " + path + " is not UTF-8 text (nor a .bin token shard)", e);
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException("token file " + path + " does not exist", e);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read token file " + path + ": " + FileProblems.reason(e), e);
    }
    if (open && !closed) throw new IllegalArgumentException("token file " + path + " has a '[' without a ']'");
    if (n == 0) throw new IllegalArgumentException("token file " + path + " contains no token ids");
    return Arrays.copyOf(ids, n);
  }

  private static int parseId(Path path, int lineNo, String shown, String tok) {
    for (int k = 0; k < tok.length(); k++) {
      char c = tok.charAt(k);
      if (c == '-' && k == 0 && tok.length() > 1) {
        throw junk(path, lineNo, shown, "token ids cannot be negative");
      }
      if (c < '0' || c > '9') throw junk(path, lineNo, shown, "not a non-negative integer token id");
    }
    try {
      return Integer.parseInt(tok);
    } catch (NumberFormatException e) {
      throw junk(path, lineNo, shown, "larger than " + Integer.MAX_VALUE);
    }
  }

  private static IllegalArgumentException junk(Path path, int lineNo, String tok, String why) {
    String shown = tok.length() > 40 ? tok.substring(0, 40) + "..." : tok;
    return new IllegalArgumentException("token file " + path + " line " + lineNo + ": '" + shown + "': " + why);
  }
}

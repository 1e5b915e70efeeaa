package dev.athanor.io.data;

import dev.athanor.io.FileProblems;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A read-only, memory-mapped token shard in llm.c's format: a header of 256 little-endian int32 values
 * ({@code [0]} magic, {@code [1]} version, {@code [2]} token count, the rest unused) followed by the tokens.
 *
 * <ul>
 *   <li>magic {@value #MAGIC_U16}, version {@value #VERSION_U16}: uint16 tokens (GPT-2 vocabularies);
 *   <li>magic {@value #MAGIC_U32}, version {@value #VERSION_U32}: uint32 tokens (llm.c's Llama 3 format).
 * </ul>
 *
 * <p>The whole file is validated when opened (header, and file length = 1024 + count × token bytes); token
 * values are not (see {@link TokenDataset#checkVocab(int)}). Files larger than 2 GB are supported. Reads are
 * thread-safe; reading after {@link #close()} throws {@link IllegalStateException}.
 */
public final class TokenShard implements AutoCloseable {
  /** Magic number of uint16 shards (version {@value #VERSION_U16}). */
  public static final int MAGIC_U16 = 20240520;
  /** Version of uint16 shards. */
  public static final int VERSION_U16 = 1;
  /** Magic number of uint32 shards (version {@value #VERSION_U32}). */
  public static final int MAGIC_U32 = 20240801;
  /** Version of uint32 shards. */
  public static final int VERSION_U32 = 7;
  /** Header length in bytes (256 int32 values). */
  public static final int HEADER_BYTES = 1024;

  static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  static final ValueLayout.OfShort SHORT_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final int CHUNK = 8192;

  private final Path path;
  private final Arena arena;
  private final MemorySegment segment;
  private final long size;
  private final int tokenBytes;

  private TokenShard(Path path, Arena arena, MemorySegment segment, long size, int tokenBytes) {
    this.path = path;
    this.arena = arena;
    this.segment = segment;
    this.size = size;
    this.tokenBytes = tokenBytes;
  }

  /**
   * Opens and validates a shard.
   *
   * @throws IllegalArgumentException if the file is not a well-formed shard (the message names the file and
   *     the problem)
   * @throws UncheckedIOException if the file cannot be read
   */
  public static TokenShard open(Path path) {
    if (path == null) throw new IllegalArgumentException("token shard path is null");
    if (Files.isDirectory(path)) {
      throw new IllegalArgumentException("token shard " + path + " is a directory, not a .bin file");
    }
    String problem = FileProblems.notRegularFile(path);
    if (problem != null && Files.exists(path)) throw new IllegalArgumentException("token shard " + path + " " + problem);
    try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
      long length = ch.size();
      if (length < HEADER_BYTES) {
        throw new IllegalArgumentException("token shard " + path + " is too short: " + length
            + " bytes, but the header alone is " + HEADER_BYTES + " bytes");
      }
      Arena arena = Arena.ofShared();
      try {
        MemorySegment seg = ch.map(FileChannel.MapMode.READ_ONLY, 0, length, arena);
        int magic = seg.get(INT_LE, 0);
        int version = seg.get(INT_LE, 4);
        int count = seg.get(INT_LE, 8);
        int tokenBytes = tokenBytesOf(path, magic, version);
        if (count < 0) {
          throw new IllegalArgumentException("token shard " + path + " has a negative token count " + count
              + " in its header");
        }
        long expected = HEADER_BYTES + (long) count * tokenBytes;
        if (length != expected) {
          String what = length < expected ? "is truncated" : "has " + (length - expected) + " trailing bytes";
          throw new IllegalArgumentException("token shard " + path + " " + what + ": its header says " + count
              + " tokens of " + tokenBytes + " bytes (" + expected + " bytes with the header) but the file has "
              + length + " bytes");
        }
        return new TokenShard(path, arena, seg, count, tokenBytes);
      } catch (RuntimeException e) {
        arena.close();
        throw e;
      }
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException("token shard " + path + " does not exist", e);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read token shard " + path + ": " + FileProblems.reason(e), e);
    }
  }

  /** Token width for a header, or an error naming the file. */
  static int tokenBytesOf(Path path, int magic, int version) {
    if (magic == MAGIC_U16) {
      if (version != VERSION_U16) {
        throw new IllegalArgumentException("token shard " + path + " has unsupported version " + version
            + " for magic " + MAGIC_U16 + " (supported: " + VERSION_U16 + ", uint16 tokens)");
      }
      return 2;
    }
    if (magic == MAGIC_U32) {
      if (version != VERSION_U32) {
        throw new IllegalArgumentException("token shard " + path + " has unsupported version " + version
            + " for magic " + MAGIC_U32 + " (supported: " + VERSION_U32 + ", uint32 tokens)");
      }
      return 4;
    }
    throw new IllegalArgumentException("token shard " + path + " has bad magic " + magic + " (0x"
        + Integer.toHexString(magic) + "); expected " + MAGIC_U16 + " (uint16 tokens) or " + MAGIC_U32
        + " (uint32 tokens) -- is this an llm.c .bin token file?");
  }

  /** Whether the first four bytes of {@code header} (little-endian) are a known shard magic. */
  static boolean isMagic(int magicLe) {
    return magicLe == MAGIC_U16 || magicLe == MAGIC_U32;
  }

  /** The file this shard was opened from. */
  public Path path() {
    return path;
  }

  /** The number of tokens. */
  public long size() {
    return size;
  }

  /** Bytes per token: 2 (uint16, version 1) or 4 (uint32, version 7). */
  public int tokenBytes() {
    return tokenBytes;
  }

  /**
   * Copies tokens {@code [start, start + len)} into {@code dst[off .. off + len)}. uint32 tokens of 2^31 and
   * above read as negative ints (and fail {@link TokenDataset#checkVocab(int)}).
   *
   * @throws IndexOutOfBoundsException if the range is outside the shard or the array
   */
  public void read(long start, int[] dst, int off, int len) {
    if (len < 0 || start < 0 || start > size - len) {
      throw new IndexOutOfBoundsException("tokens [" + start + ", " + (start + len) + ") are outside [0, "
          + size + ") of token shard " + path);
    }
    java.util.Objects.checkFromIndexSize(off, len, dst.length);
    ensureOpen();
    long base = HEADER_BYTES + start * tokenBytes;
    if (tokenBytes == 4) {
      MemorySegment.copy(segment, INT_LE, base, dst, off, len);
      return;
    }
    short[] tmp = new short[Math.min(len, CHUNK)];
    for (int done = 0; done < len; ) {
      int n = Math.min(tmp.length, len - done);
      MemorySegment.copy(segment, SHORT_LE, base + 2L * done, tmp, 0, n);
      for (int i = 0; i < n; i++) dst[off + done + i] = tmp[i] & 0xffff;
      done += n;
    }
  }

  /** Token {@code i}. */
  public int get(long i) {
    java.util.Objects.checkIndex(i, size);
    ensureOpen();
    long at = HEADER_BYTES + i * tokenBytes;
    return tokenBytes == 4 ? segment.get(INT_LE, at) : segment.get(SHORT_LE, at) & 0xffff;
  }

  private void ensureOpen() {
    if (!arena.scope().isAlive()) throw new IllegalStateException("token shard " + path + " is closed");
  }

  /** Unmaps the file. Idempotent. */
  @Override
  public void close() {
    synchronized (this) {
      if (arena.scope().isAlive()) arena.close();
    }
  }

  @Override
  public String toString() {
    return "TokenShard[" + path + ", " + size + " tokens x " + tokenBytes + " bytes]";
  }
}

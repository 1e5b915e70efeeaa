package dev.athanor.io.data;

import dev.athanor.io.AtomicFiles;
import dev.athanor.io.FileProblems;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Streams tokens into a new llm.c token shard (see {@link TokenShard}): uint16 tokens (magic
 * {@value TokenShard#MAGIC_U16}, version 1) when the vocabulary has at most 65536 ids, uint32 tokens (magic
 * {@value TokenShard#MAGIC_U32}, version 7) otherwise.
 *
 * <p>Tokens go to a temporary file next to the target; {@link #close()} patches the token count into the
 * header, fsyncs, and renames the file to the target atomically, so readers never see a partial shard.
 * {@link #abort()} discards the temporary file instead (use it when the data being written turned out
 * wrong: {@code close()} after an exception in a try-with-resources block still commits what was written).
 * Not thread-safe.
 */
public final class TokenShardWriter implements AutoCloseable {
  private static final int BUFFER_BYTES = 1 << 20;

  private final Path path;
  private final Path temp;
  private final int vocabSize;
  private final int tokenBytes;
  private final FileChannel channel;
  private final ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
  private long count;
  private boolean finished;

  private TokenShardWriter(Path path, Path temp, int vocabSize, FileChannel channel) {
    this.path = path;
    this.temp = temp;
    this.vocabSize = vocabSize;
    this.tokenBytes = vocabSize <= 65536 ? 2 : 4;
    this.channel = channel;
  }

  /**
   * Starts a shard at {@code path} (replaced on {@link #close()} if it exists) for ids in
   * {@code [0, vocabSize)}.
   *
   * @throws IllegalArgumentException if {@code vocabSize < 1}
   * @throws UncheckedIOException if the temporary file cannot be created
   */
  public static TokenShardWriter create(Path path, int vocabSize) {
    if (path == null) throw new IllegalArgumentException("token shard path is null");
    if (vocabSize < 1) {
      throw new IllegalArgumentException("vocabulary size must be positive, got " + vocabSize + " (for " + path
          + ")");
    }
    Path abs = path.toAbsolutePath();
    Path dir = abs.getParent();
    Path temp = dir.resolve("." + abs.getFileName() + ".tmp-"
        + Long.toHexString(ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE));
    try {
      FileChannel ch = FileChannel.open(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
      TokenShardWriter w = new TokenShardWriter(path, temp, vocabSize, ch);
      try {
        w.writeHeader(0);
        ch.position(TokenShard.HEADER_BYTES);
      } catch (IOException | RuntimeException e) {
        w.abort();
        throw e;
      }
      return w;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create token shard " + path + ": " + FileProblems.reason(e), e);
    }
  }

  /** The target file. */
  public Path path() {
    return path;
  }

  /** Bytes per token in the file: 2 or 4. */
  public int tokenBytes() {
    return tokenBytes;
  }

  /** Tokens written so far. */
  public long count() {
    return count;
  }

  /** Appends one token. */
  public void write(int id) {
    write(new int[] {id}, 0, 1);
  }

  /** Appends all of {@code ids}. */
  public void write(int[] ids) {
    write(ids, 0, ids.length);
  }

  /**
   * Appends {@code ids[off .. off + len)}. All ids are checked first: on a bad id nothing is written.
   *
   * @throws IllegalArgumentException if an id is outside {@code [0, vocabSize)} (naming the id and its
   *     position in the shard) or the shard would exceed 2^31 - 1 tokens
   */
  public void write(int[] ids, int off, int len) {
    java.util.Objects.checkFromIndexSize(off, len, ids.length);
    ensureOpen();
    for (int i = 0; i < len; i++) {
      int id = ids[off + i];
      if (id < 0 || id >= vocabSize) {
        throw new IllegalArgumentException("token id " + id + " at position " + (count + i) + " of token shard "
            + path + " is outside the vocabulary [0, " + vocabSize + ")");
      }
    }
    if (count + len > Integer.MAX_VALUE) {
      throw new IllegalArgumentException("token shard " + path + " would exceed " + Integer.MAX_VALUE
          + " tokens (the header's count is an int32); start a new shard");
    }
    try {
      for (int i = 0; i < len; i++) {
        if (buffer.remaining() < tokenBytes) flush();
        if (tokenBytes == 2) buffer.putShort((short) ids[off + i]);
        else buffer.putInt(ids[off + i]);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write token shard " + path + ": " + e, e);
    }
    count += len;
  }

  private void flush() throws IOException {
    buffer.flip();
    while (buffer.hasRemaining()) channel.write(buffer);
    buffer.clear();
  }

  private void writeHeader(int n) throws IOException {
    ByteBuffer h = ByteBuffer.allocate(TokenShard.HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    h.putInt(0, tokenBytes == 2 ? TokenShard.MAGIC_U16 : TokenShard.MAGIC_U32);
    h.putInt(4, tokenBytes == 2 ? TokenShard.VERSION_U16 : TokenShard.VERSION_U32);
    h.putInt(8, n);
    long pos = 0;  // positional writes: the channel's own position stays after the tokens
    while (h.hasRemaining()) pos += channel.write(h, pos);
  }

  private void ensureOpen() {
    if (finished) throw new IllegalStateException("token shard writer for " + path + " is closed");
  }

  /** Discards the temporary file; the target is left untouched. Idempotent; a no-op after close. */
  public void abort() {
    if (finished) return;
    finished = true;
    try {
      channel.close();
    } catch (IOException ignored) {
      // best effort
    }
    try {
      Files.deleteIfExists(temp);
    } catch (IOException ignored) {
      // best effort
    }
  }

  /**
   * Finishes the shard: writes the count into the header, fsyncs and atomically renames the temporary file
   * to the target. Idempotent; a no-op after {@link #abort()}.
   */
  @Override
  public void close() {
    if (finished) return;
    try {
      flush();
      writeHeader((int) count);
      channel.force(true);
      channel.close();
      finished = true;
      try {
        Files.move(temp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(temp, path, StandardCopyOption.REPLACE_EXISTING);
      }
      AtomicFiles.forceDirectory(path.toAbsolutePath().getParent());
    } catch (IOException e) {
      finished = false;
      abort();
      throw new UncheckedIOException("cannot finish token shard " + path + ": " + e, e);
    }
  }
}

package dev.athanor.io.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * An ordered list of {@link TokenShard}s read as one token stream. Owns its shards: {@link #close()} closes
 * them. Reads are thread-safe. Never empty: a dataset without tokens is rejected when built.
 */
public final class TokenDataset implements AutoCloseable {
  private static final int SCAN_CHUNK = 1 << 20;

  private final List<TokenShard> shards;
  /** starts[i] is the stream position of shard i's first token; starts[n] is the size. */
  private final long[] starts;

  private TokenDataset(List<TokenShard> shards) {
    this.shards = List.copyOf(shards);
    this.starts = new long[shards.size() + 1];
    for (int i = 0; i < shards.size(); i++) starts[i + 1] = starts[i] + shards.get(i).size();
  }

  /**
   * Opens a {@code .bin} shard, or a directory whose {@code *.bin} files (not recursive) are taken in sorted
   * name order.
   *
   * @throws IllegalArgumentException if the path does not exist, a directory has no .bin files, a shard is
   *     malformed, or there are no tokens at all
   */
  public static TokenDataset open(Path pathOrDir) {
    if (pathOrDir == null) throw new IllegalArgumentException("token data path is null");
    if (!Files.exists(pathOrDir)) {
      throw new IllegalArgumentException("token data " + pathOrDir + " does not exist");
    }
    List<Path> files;
    if (Files.isDirectory(pathOrDir)) {
      files = binFiles(pathOrDir);
      if (files.isEmpty()) {
        throw new IllegalArgumentException("directory " + pathOrDir + " contains no .bin token shards");
      }
    } else {
      files = List.of(pathOrDir);
    }
    return openAll(files);
  }

  /** Opens the given shard files in this order (closing those already open if one fails). */
  static TokenDataset openAll(List<Path> files) {
    List<TokenShard> shards = new ArrayList<>();
    try {
      for (Path f : files) shards.add(TokenShard.open(f));
      return of(shards);
    } catch (RuntimeException e) {
      for (TokenShard s : shards) s.close();
      throw e;
    }
  }

  /** The top-level regular {@code *.bin} files of a directory, sorted by name. */
  static List<Path> binFiles(Path dir) {
    List<Path> files = new ArrayList<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.bin")) {
      for (Path p : ds) if (Files.isRegularFile(p)) files.add(p);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot list directory " + dir + ": " + e, e);
    }
    files.sort(Comparator.comparing(p -> p.getFileName().toString()));
    return files;
  }

  /**
   * A dataset over these shards in this order; takes ownership of them.
   *
   * @throws IllegalArgumentException if the list is empty or the shards hold no tokens at all
   */
  public static TokenDataset of(List<TokenShard> shards) {
    if (shards == null || shards.isEmpty()) throw new IllegalArgumentException("no token shards given");
    TokenDataset d = new TokenDataset(shards);
    if (d.size() == 0) {
      throw new IllegalArgumentException("token data is empty (0 tokens) in " + d.files());
    }
    return d;
  }

  /** The total number of tokens. */
  public long size() {
    return starts[starts.length - 1];
  }

  /** The shard files, in stream order. */
  public List<Path> files() {
    return shards.stream().map(TokenShard::path).toList();
  }

  /** The shards, in stream order. */
  public List<TokenShard> shards() {
    return shards;
  }

  /**
   * Copies stream tokens {@code [pos, pos + len)} into {@code dst[off .. off + len)}, crossing shard
   * boundaries as needed.
   *
   * @throws IndexOutOfBoundsException if the range is not within {@code [0, size())} or the array
   */
  public void read(long pos, int[] dst, int off, int len) {
    long size = size();
    if (len < 0 || pos < 0 || pos > size - len) {
      throw new IndexOutOfBoundsException("tokens [" + pos + ", " + (pos + len) + ") are outside [0, " + size
          + ") of the token data " + files());
    }
    java.util.Objects.checkFromIndexSize(off, len, dst.length);
    int s = shardIndex(pos);
    while (len > 0) {
      TokenShard shard = shards.get(s);
      long local = pos - starts[s];
      int n = (int) Math.min(len, shard.size() - local);
      shard.read(local, dst, off, n);
      pos += n;
      off += n;
      len -= n;
      s++;
    }
  }

  /** Token at stream position {@code pos}. */
  public int get(long pos) {
    java.util.Objects.checkIndex(pos, size());
    int s = shardIndex(pos);
    return shards.get(s).get(pos - starts[s]);
  }

  /** The shard holding position {@code pos} (skipping empty shards). */
  private int shardIndex(long pos) {
    int i = Arrays.binarySearch(starts, pos);
    if (i >= 0) {
      while (i + 1 < starts.length && starts[i + 1] == pos) i++;  // empty shards share a start
      return Math.min(i, shards.size() - 1);
    }
    return -i - 2;
  }

  /**
   * Checks that every token is in {@code [0, vocabSize)}.
   *
   * @throws IllegalArgumentException naming the first bad token's shard, position and id
   */
  public void checkVocab(int vocabSize) {
    if (vocabSize < 1) throw new IllegalArgumentException("vocabulary size must be positive, got " + vocabSize);
    int[] buf = new int[(int) Math.min(SCAN_CHUNK, Math.max(1, maxShardSize()))];
    for (int s = 0; s < shards.size(); s++) {
      TokenShard shard = shards.get(s);
      for (long at = 0; at < shard.size(); ) {
        int n = (int) Math.min(buf.length, shard.size() - at);
        shard.read(at, buf, 0, n);
        int bad = -1;
        for (int i = 0; i < n; i++) {
          // one unsigned compare: negative ids (uint32 >= 2^31) are huge unsigned
          if (Integer.compareUnsigned(buf[i], vocabSize) >= 0) {
            bad = i;
            break;
          }
        }
        if (bad >= 0) {
          long id = Integer.toUnsignedLong(buf[bad]);
          throw new IllegalArgumentException("token id " + id + " at position " + (at + bad) + " of token shard "
              + shard.path() + " (position " + (starts[s] + at + bad) + " of the data) is outside the vocabulary"
              + " [0, " + vocabSize + ")");
        }
        at += n;
      }
    }
  }

  private long maxShardSize() {
    long m = 0;
    for (TokenShard s : shards) m = Math.max(m, s.size());
    return m;
  }

  /** Closes every shard. Idempotent. */
  @Override
  public void close() {
    for (TokenShard s : shards) s.close();
  }

  @Override
  public String toString() {
    return "TokenDataset[" + size() + " tokens in " + shards.size() + " shard(s)]";
  }
}

package dev.athanor.io.data;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.io.AtomicFiles;
import dev.athanor.io.FileProblems;
import dev.athanor.io.tokenizer.Tokenizer;
import java.io.ByteArrayInputStream;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.io.SequenceInputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Tokenizes text input once into cached token shards.
 *
 * <p>Input is a text file, a directory (all regular files below it, recursively, in sorted relative-path
 * order), or a {@code .zip}/{@code .jar} archive (file entries in sorted name order). Hidden files and
 * directories (names starting with '.') are ignored and symbolic links are not followed. A file is skipped
 * as binary if its first 8 KiB hold a NUL byte, and skipped as well if it is not valid UTF-8; both are
 * counted in the {@link Summary}. A leading byte-order mark is dropped. Documents are joined with the
 * tokenizer's end-of-text token between them (when it has one). If the input is itself an llm.c
 * {@code .bin} shard, or a directory with such shards at its top level, it is opened as it is
 * ({@link TokenDataset#open(Path)}) without tokenizing.
 *
 * <p>The tokens are cached in {@code <cacheDir>/<key>/} ({@code shard_000000.bin}, ... and a
 * {@code done.json} manifest), where the key is a SHA-256 over the canonical input path, every candidate
 * document's name, size and modification time (or CRC, in archives), the tokenizer's id, vocabulary size
 * and end-of-text token, and the options that change the output ({@code maxBytes}, {@code extensions},
 * {@code shardTokens}; not {@code threads}). A cache directory is built under a temporary name and renamed
 * into place only once its manifest is written, so concurrent runs never see each other's partial work; a
 * directory without a valid manifest is rebuilt, and temporary directories of runs that died are removed
 * after a day.
 *
 * <p>Documents longer than a quarter of a million chars are cut into pieces at line breaks between two
 * non-space chars (see {@code PieceSplitter}) so that several workers can share them; the pieces and the
 * output do not depend on the thread count.
 */
public final class TextCorpus {
  private TextCorpus() {}

  /** Bumped whenever the output for the same input changes. */
  static final String FORMAT = "athanor-text-corpus/1";
  static final String MANIFEST = "done.json";
  static final int DEFAULT_PIECE_CHARS = 1 << 18;
  static final long DEFAULT_IN_MEMORY_BYTES = 64L << 20;
  private static final int BINARY_PROBE = 8192;
  private static final int FEED_CHARS = 1 << 16;
  private static final long STALE_MILLIS = 24L * 3600 * 1000;

  /**
   * Options of {@link #prepare}.
   *
   * @param cacheDir where token caches live
   * @param maxBytes stop after this many bytes of text: documents are taken whole while the total stays
   *     within the limit (at least one is always taken); {@link Long#MAX_VALUE} for no limit
   * @param extensions file extensions to take (without the dot, case-insensitive); empty for all files
   * @param threads tokenizing workers
   * @param shardTokens tokens per output shard (at most 2^31 - 1)
   */
  public record Options(Path cacheDir, long maxBytes, Set<String> extensions, int threads, long shardTokens) {
    /** Validates and normalises (extensions to lower case without a leading dot). */
    public Options {
      if (cacheDir == null) throw new IllegalArgumentException("text corpus: cacheDir is null");
      if (maxBytes <= 0) throw new IllegalArgumentException("text corpus: maxBytes must be positive, got " + maxBytes);
      if (threads < 1) throw new IllegalArgumentException("text corpus: threads must be positive, got " + threads);
      if (shardTokens < 1 || shardTokens > Integer.MAX_VALUE) {
        throw new IllegalArgumentException("text corpus: shardTokens must be in [1, " + Integer.MAX_VALUE
            + "], got " + shardTokens);
      }
      TreeSet<String> ext = new TreeSet<>();
      if (extensions != null) {
        for (String e : extensions) {
          if (e == null) throw new IllegalArgumentException("text corpus: null extension");
          String n = e.startsWith(".") ? e.substring(1) : e;
          if (n.isEmpty() || n.contains("/")) {
            throw new IllegalArgumentException("text corpus: bad extension '" + e + "'");
          }
          ext.add(n.toLowerCase(Locale.ROOT));
        }
      }
      extensions = java.util.Collections.unmodifiableSortedSet(ext);
    }

    /**
     * Cache in {@code ${athanor.cache.dir}} if that system property is set, else
     * {@code ${user.home}/.cache/athanor/tokens}; no byte limit; all files; one worker per processor;
     * 100M tokens per shard.
     */
    public static Options defaults() {
      String prop = System.getProperty("athanor.cache.dir");
      Path dir = prop != null && !prop.isBlank() ? Path.of(prop)
          : Path.of(System.getProperty("user.home"), ".cache", "athanor", "tokens");
      return new Options(dir, Long.MAX_VALUE, Set.of(), Runtime.getRuntime().availableProcessors(), 100_000_000L);
    }

    /** A copy with another cache directory. */
    public Options withCacheDir(Path dir) {
      return new Options(dir, maxBytes, extensions, threads, shardTokens);
    }

    /** A copy with another byte limit. */
    public Options withMaxBytes(long bytes) {
      return new Options(cacheDir, bytes, extensions, threads, shardTokens);
    }

    /** A copy with another extension filter. */
    public Options withExtensions(Set<String> ext) {
      return new Options(cacheDir, maxBytes, ext, threads, shardTokens);
    }

    /** A copy with another worker count. */
    public Options withThreads(int n) {
      return new Options(cacheDir, maxBytes, extensions, n, shardTokens);
    }

    /** A copy with another shard size. */
    public Options withShardTokens(long n) {
      return new Options(cacheDir, maxBytes, extensions, threads, n);
    }
  }

  /** Where the tokens of a {@link #prepare} call came from. */
  public enum Source {
    /** The input was already token shards. */
    SHARDS,
    /** A complete cache entry was found. */
    CACHE,
    /** The input was tokenized now. */
    TOKENIZED
  }

  /**
   * What {@link #prepare} did.
   *
   * @param input the input path
   * @param directory the cache directory holding the shards ({@code null} for {@link Source#SHARDS})
   * @param source where the tokens came from
   * @param documents documents taken
   * @param skippedBinary files skipped for a NUL byte in their first 8 KiB
   * @param skippedInvalidUtf8 files skipped for not being valid UTF-8
   * @param textBytes bytes of text taken
   * @param tokens tokens in the data (including end-of-text tokens between documents)
   * @param shards number of shard files
   */
  public record Summary(Path input, Path directory, Source source, long documents, long skippedBinary,
      long skippedInvalidUtf8, long textBytes, long tokens, int shards) {}

  /** Progress of tokenizing (called on the thread that called {@link #prepare}). */
  @FunctionalInterface
  public interface ProgressListener {
    /** Reports nothing. */
    ProgressListener NONE = (doneBytes, totalBytes, tokens) -> {};

    /**
     * Called as documents are tokenized; {@code totalBytes} is an estimate (the candidates' sizes, capped at
     * {@code maxBytes}), and {@code doneBytes} never exceeds it.
     */
    void update(long doneBytes, long totalBytes, long tokens);

    /** Called once at the end, also when nothing had to be tokenized. */
    default void finished(Summary summary) {}
  }

  /** Internal knobs (tests shrink them to reach the piece and streaming paths with small inputs). */
  record Tuning(int pieceChars, long inMemoryBytes) {
    static final Tuning DEFAULT = new Tuning(DEFAULT_PIECE_CHARS, DEFAULT_IN_MEMORY_BYTES);
  }

  /**
   * Tokens of {@code input}, from the cache if present, else tokenized now and cached.
   *
   * @param progress may be {@code null} (= {@link ProgressListener#NONE})
   * @throws IllegalArgumentException if the input does not exist, holds no text, is a malformed archive or
   *     shard, or the tokenizer produced an id outside its vocabulary
   * @throws UncheckedIOException on read or write failures (naming the file)
   */
  public static TokenDataset prepare(Path input, Tokenizer tok, Options opts, ProgressListener progress) {
    return prepare(input, tok, opts, progress, Tuning.DEFAULT);
  }

  static TokenDataset prepare(Path input, Tokenizer tok, Options opts, ProgressListener progress, Tuning tuning) {
    if (input == null) throw new IllegalArgumentException("text corpus: input is null");
    Objects.requireNonNull(tok, "tokenizer");
    Objects.requireNonNull(opts, "options");
    ProgressListener listener = progress == null ? ProgressListener.NONE : progress;
    if (!Files.exists(input)) throw new IllegalArgumentException("text input " + input + " does not exist");
    Path real;
    try {
      real = input.toRealPath();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot resolve text input " + input + ": " + FileProblems.reason(e), e);
    }
    if (isShardInput(real)) {
      TokenDataset d = TokenDataset.open(input);
      listener.finished(new Summary(input, null, Source.SHARDS, 0, 0, 0, 0, d.size(), d.files().size()));
      return d;
    }
    Path excluded = null;
    if (Files.isDirectory(opts.cacheDir())) {
      try {
        excluded = opts.cacheDir().toRealPath();
      } catch (IOException ignored) {
        // not excluding anything
      }
    }
    try (CorpusSource src = CorpusSource.open(real, opts.extensions(), excluded)) {
      String key = cacheKey(src, tok, opts, tuning);
      Path dir = opts.cacheDir().resolve(key);
      TokenDataset cached = loadCached(dir, listener, input);
      if (cached != null) return cached;
      if (src.docs.isEmpty()) {
        throw new IllegalArgumentException("text input " + input + " has no files to read"
            + (opts.extensions().isEmpty() ? "" : " with extensions " + opts.extensions()));
      }
      Summary made = build(src, input, tok, opts, tuning, key, dir, listener);
      TokenDataset d = loadCached(dir, ProgressListener.NONE, input);
      if (d == null) {
        throw new IllegalStateException("token cache " + dir + " was written but cannot be read back");
      }
      listener.finished(made);
      return d;
    }
  }

  /**
   * Whether {@code p} is token shards rather than text: a .bin file, or a directory with a top-level .bin file
   * that starts with a shard magic ({@link #prepare} then opens it as is, without tokenizing).
   */
  public static boolean isShardInput(Path p) {
    if (Files.isRegularFile(p)) return p.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".bin");
    if (!Files.isDirectory(p)) return false;
    for (Path f : TokenDataset.binFiles(p)) {
      try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
        ByteBuffer b = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining() && ch.read(b) >= 0) {}
        if (!b.hasRemaining() && TokenShard.isMagic(b.getInt(0))) return true;
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read " + f + ": " + FileProblems.reason(e), e);
      }
    }
    return false;
  }

  // ---------------------------------------------------------------------------------------- cache key

  static String cacheKey(CorpusSource src, Tokenizer tok, Options opts, Tuning tuning) {
    MessageDigest md;
    try {
      md = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
    StringBuilder sb = new StringBuilder(64);
    OptionalInt eos = tok.eosToken();
    sb.append(FORMAT).append('\n')
        .append("input\t").append(src.kind).append('\t').append(src.input).append('\t').append(src.inputStamp)
        .append('\n')
        .append("tokenizer\t").append(tok.id()).append('\t').append(tok.vocabSize()).append('\t')
        .append(eos.isPresent() ? Integer.toString(eos.getAsInt()) : "-").append('\n')
        .append("options\t").append(opts.maxBytes()).append('\t').append(String.join(",", opts.extensions()))
        .append('\t').append(opts.shardTokens()).append('\t').append(tuning.pieceChars()).append('\n');
    md.update(sb.toString().getBytes(StandardCharsets.UTF_8));
    for (CorpusSource.Doc d : src.docs) {
      sb.setLength(0);
      sb.append(d.name()).append('\t').append(d.stamp()).append('\n');
      md.update(sb.toString().getBytes(StandardCharsets.UTF_8));
    }
    return HexFormat.of().formatHex(md.digest(), 0, 16);
  }

  // ------------------------------------------------------------------------------------ cache entries

  /** The dataset of a complete cache entry, or null if there is none (or it is incomplete or damaged). */
  private static TokenDataset loadCached(Path dir, ProgressListener listener, Path input) {
    Path manifest = dir.resolve(MANIFEST);
    if (!Files.isRegularFile(manifest)) return null;
    List<Path> files = new ArrayList<>();
    List<Long> sizes = new ArrayList<>();
    Summary expected;
    try {
      JsonObject m = JsonParser.parseString(Files.readString(manifest)).getAsJsonObject();
      if (!FORMAT.equals(m.get("format").getAsString())) return null;
      for (var e : m.getAsJsonArray("shards")) {
        JsonObject s = e.getAsJsonObject();
        String name = s.get("file").getAsString();
        if (name.contains("/") || name.contains("\\") || name.startsWith(".")) return null;
        files.add(dir.resolve(name));
        sizes.add(s.get("tokens").getAsLong());
      }
      expected = new Summary(input, dir, Source.CACHE, m.get("documents").getAsLong(),
          m.get("skippedBinary").getAsLong(), m.get("skippedInvalidUtf8").getAsLong(),
          m.get("textBytes").getAsLong(), m.get("tokens").getAsLong(), files.size());
    } catch (IOException | RuntimeException e) {
      return null;  // unreadable or incomplete manifest: rebuild
    }
    TokenDataset d;
    try {
      d = TokenDataset.openAll(files);
    } catch (RuntimeException e) {
      return null;  // missing or damaged shard: rebuild
    }
    boolean ok = d.size() == expected.tokens();
    for (int i = 0; ok && i < files.size(); i++) ok = d.shards().get(i).size() == sizes.get(i);
    if (!ok) {
      d.close();
      return null;
    }
    listener.update(expected.textBytes(), expected.textBytes(), expected.tokens());
    listener.finished(expected);
    return d;
  }

  /** Tokenizes into a temporary directory and publishes it as {@code dir}; returns what it did. */
  private static Summary build(CorpusSource src, Path input, Tokenizer tok, Options opts, Tuning tuning,
      String key, Path dir, ProgressListener listener) {
    Path tmp = opts.cacheDir().resolve(key + ".tmp-"
        + Long.toHexString(ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE));
    try {
      Files.createDirectories(opts.cacheDir());
      deleteStale(opts.cacheDir(), key);
      Files.createDirectory(tmp);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create token cache directory " + tmp + ": " + FileProblems.reason(e), e);
    }
    boolean published = false;
    try {
      Summary s;
      try (Run run = new Run(src, input, tok, opts, tuning, tmp, listener)) {
        s = run.execute();
      }
      writeManifest(tmp, input, tok, key, s);
      AtomicFiles.forceDirectory(tmp);
      published = publish(tmp, dir);
      return new Summary(input, dir, Source.TOKENIZED, s.documents(), s.skippedBinary(), s.skippedInvalidUtf8(),
          s.textBytes(), s.tokens(), s.shards());
    } finally {
      if (!published) deleteTree(tmp);
    }
  }

  /** Temporary directories of this key left by runs that died more than a day ago. */
  private static void deleteStale(Path cacheDir, String key) {
    long cutoff = System.currentTimeMillis() - STALE_MILLIS;
    try (var ds = Files.newDirectoryStream(cacheDir, key + ".{tmp,old}-*")) {
      for (Path p : ds) {
        try {
          if (Files.getLastModifiedTime(p).toMillis() < cutoff) deleteTree(p);
        } catch (IOException ignored) {
          // gone meanwhile
        }
      }
    } catch (IOException ignored) {
      // best effort
    }
  }

  /** Renames the finished {@code tmp} to {@code dir}; false if another run got there first. */
  private static boolean publish(Path tmp, Path dir) {
    IOException last = null;
    for (int attempt = 0; attempt < 5; attempt++) {
      try {
        try {
          Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
          Files.move(tmp, dir);
        }
        AtomicFiles.forceDirectory(dir.getParent());
        return true;
      } catch (IOException e) {
        last = e;
        if (!Files.exists(dir)) continue;  // vanished meanwhile (another run moving an old entry aside)
        if (complete(dir)) return false;  // another run finished it first
        // an incomplete or damaged entry: move it aside atomically, then delete it
        Path aside = dir.resolveSibling(dir.getFileName() + ".old-"
            + Long.toHexString(ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE));
        try {
          Files.move(dir, aside, StandardCopyOption.ATOMIC_MOVE);
          deleteTree(aside);
        } catch (IOException ignored) {
          // raced with another run; look again
        }
      }
    }
    if (complete(dir)) return false;
    throw new UncheckedIOException("cannot move token cache " + tmp + " to " + dir + ": " + FileProblems.reason(last), last);
  }

  /** Whether {@code dir} is a complete, readable cache entry. */
  private static boolean complete(Path dir) {
    TokenDataset d = loadCached(dir, ProgressListener.NONE, dir);
    if (d == null) return false;
    d.close();
    return true;
  }

  private static void writeManifest(Path tmp, Path input, Tokenizer tok, String key, Summary s) {
    JsonObject m = new JsonObject();
    m.addProperty("format", FORMAT);
    m.addProperty("key", key);
    m.addProperty("input", input.toAbsolutePath().toString());
    m.addProperty("tokenizer", tok.id());
    m.addProperty("vocabSize", tok.vocabSize());
    m.addProperty("documents", s.documents());
    m.addProperty("skippedBinary", s.skippedBinary());
    m.addProperty("skippedInvalidUtf8", s.skippedInvalidUtf8());
    m.addProperty("textBytes", s.textBytes());
    m.addProperty("tokens", s.tokens());
    JsonArray shards = new JsonArray();
    for (int i = 0; i < s.shards(); i++) {
      JsonObject o = new JsonObject();
      o.addProperty("file", shardName(i));
      try (TokenShard sh = TokenShard.open(tmp.resolve(shardName(i)))) {
        o.addProperty("tokens", sh.size());
      }
      shards.add(o);
    }
    m.add("shards", shards);
    Gson gson = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();
    Path f = tmp.resolve(MANIFEST);
    try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      ByteBuffer b = ByteBuffer.wrap((gson.toJson(m) + "\n").getBytes(StandardCharsets.UTF_8));
      while (b.hasRemaining()) ch.write(b);
      ch.force(true);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + f + ": " + FileProblems.reason(e), e);
    }
  }

  static String shardName(int i) {
    return String.format(Locale.ROOT, "shard_%06d.bin", i);
  }

  /** Best-effort removal of a temporary or stale cache directory. */
  static void deleteTree(Path root) {
    try {
      AtomicFiles.deleteTree(root);
    } catch (IOException ignored) {
      // best effort
    }
  }

  // ------------------------------------------------------------------------------------- tokenizing

  /** One tokenizing run into a temporary directory. */
  private static final class Run implements AutoCloseable {
    /** A queued result in document order: tokens (maybe still being computed) and the progress it makes. */
    private record Item(Future<int[]> tokens, long bytes, String doc) {}

    private final CorpusSource src;
    private final Path input;
    private final Tokenizer tok;
    private final Options opts;
    private final Tuning tuning;
    private final Path dir;
    private final ProgressListener listener;
    private final ExecutorService pool;
    private final ArrayDeque<Item> queue = new ArrayDeque<>();
    private final int maxQueued;
    private final long totalBytes;

    private TokenShardWriter writer;
    private int shards;
    private long tokens;
    private long doneBytes;
    private long documents;
    private long skippedBinary;
    private long skippedInvalid;
    private long textBytes;

    Run(CorpusSource src, Path input, Tokenizer tok, Options opts, Tuning tuning, Path dir,
        ProgressListener listener) {
      this.src = src;
      this.input = input;
      this.tok = tok;
      this.opts = opts;
      this.tuning = tuning;
      this.dir = dir;
      this.listener = listener;
      long total = 0;
      for (CorpusSource.Doc d : src.docs) total += Math.max(0, d.size());
      this.totalBytes = Math.min(total, opts.maxBytes());
      if (opts.threads() > 1) {
        AtomicInteger n = new AtomicInteger();
        this.pool = Executors.newFixedThreadPool(opts.threads(), r -> {
          Thread t = new Thread(r, "athanor-tokenize-" + n.incrementAndGet());
          t.setDaemon(true);
          return t;
        });
      } else {
        this.pool = null;
      }
      this.maxQueued = 4 * opts.threads();
    }

    Summary execute() {
      OptionalInt eos = tok.eosToken();
      for (CorpusSource.Doc d : src.docs) {
        Text text = read(d);
        if (text == null) continue;
        if (documents > 0 && textBytes + text.bytes() > opts.maxBytes()) break;
        if (documents > 0 && eos.isPresent()) {
          enqueue(CompletableFuture.completedFuture(new int[] {eos.getAsInt()}), 0, d.name());
        }
        documents++;
        textBytes += text.bytes();
        emit(d, text);
        if (textBytes >= opts.maxBytes()) break;
      }
      while (!queue.isEmpty()) drainOne();
      if (writer != null) {
        writer.close();
        writer = null;
      }
      if (tokens == 0) {
        String why = documents > 0 ? "its text produced no tokens"
            : "no text found (" + src.docs.size() + " file(s): " + skippedBinary + " binary, " + skippedInvalid
                + " not valid UTF-8, the rest empty)";
        throw new IllegalArgumentException("text input " + input + ": " + why);
      }
      listener.update(totalBytes, totalBytes, tokens);
      return new Summary(input, dir, Source.TOKENIZED, documents, skippedBinary, skippedInvalid, textBytes, tokens,
          shards);
    }

    /** A document's text: whole (small) or to be streamed again (large). */
    private record Text(String whole, long bytes) {}

    /** Reads and classifies one document; null if it is skipped. */
    private Text read(CorpusSource.Doc d) {
      try {
        byte[] bytes = null;
        if (d.size() >= 0 && d.size() <= tuning.inMemoryBytes()) {
          try (InputStream in = d.open()) {
            bytes = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, tuning.inMemoryBytes() + 1));
          }
          if (bytes.length > tuning.inMemoryBytes()) bytes = null;  // grew since listed: stream it
        }
        if (bytes != null) {
          if (hasNul(bytes, Math.min(bytes.length, BINARY_PROBE))) return skipBinary(d);
          String s;
          try {
            s = strictUtf8().decode(ByteBuffer.wrap(bytes)).toString();
          } catch (CharacterCodingException e) {
            return skipInvalid(d);
          }
          if (s.startsWith("\uFEFF")) s = s.substring(1);
          if (s.isEmpty()) return skipEmpty(d);
          return new Text(s, bytes.length);
        }
        // large: a validating pass first, the text is streamed again by emit()
        try (InputStream raw = d.open()) {
          byte[] head = raw.readNBytes(BINARY_PROBE);
          if (hasNul(head, head.length)) return skipBinary(d);
          CountingStream in = new CountingStream(new SequenceInputStream(new ByteArrayInputStream(head), raw));
          char[] buf = new char[FEED_CHARS];
          long chars = 0;
          try (Reader r = new InputStreamReader(in, strictUtf8())) {
            for (int n; (n = r.read(buf)) >= 0; ) chars += n;
          } catch (CharacterCodingException e) {
            return skipInvalid(d);
          }
          if (chars == 0 || (chars == 1 && buf[0] == '\uFEFF')) return skipEmpty(d);
          return new Text(null, in.count);
        }
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read " + d + ": " + FileProblems.reason(e), e);
      }
    }

    private Text skipBinary(CorpusSource.Doc d) {
      skippedBinary++;
      doneBytes += Math.max(0, d.size());
      return null;
    }

    private Text skipInvalid(CorpusSource.Doc d) {
      skippedInvalid++;
      doneBytes += Math.max(0, d.size());
      return null;
    }

    private Text skipEmpty(CorpusSource.Doc d) {
      doneBytes += Math.max(0, d.size());
      return null;
    }

    /** Queues the pieces of one document for tokenizing. */
    private void emit(CorpusSource.Doc d, Text text) throws UncheckedIOException {
      long[] credited = {0};
      PieceSplitter splitter = new PieceSplitter(tuning.pieceChars(), piece -> {
        long b = Math.min(piece.length(), text.bytes() - credited[0]);
        credited[0] += b;
        submit(piece, b, d.name());
      });
      if (text.whole() != null) {
        String s = text.whole();
        for (int at = 0; at < s.length(); at += FEED_CHARS) {
          splitter.feed(s, at, Math.min(s.length(), at + FEED_CHARS));
        }
      } else {
        try (Reader r = new InputStreamReader(d.open(), strictUtf8())) {
          char[] buf = new char[FEED_CHARS];
          boolean first = true;
          for (int n; (n = r.read(buf)) >= 0; ) {
            int from = 0;
            if (first && n > 0) {
              first = false;
              if (buf[0] == '\uFEFF') from = 1;
            }
            splitter.feed(buf, from, n - from);
          }
        } catch (IOException e) {
          throw new UncheckedIOException("cannot read " + d + " (a second time): " + e, e);
        }
      }
      splitter.finish();
      long rest = text.bytes() - credited[0];
      if (rest > 0) enqueue(CompletableFuture.completedFuture(new int[0]), rest, d.name());
    }

    private void submit(String piece, long bytes, String doc) {
      Future<int[]> f;
      if (pool == null) {
        f = CompletableFuture.completedFuture(encode(piece, doc));
      } else {
        f = pool.submit(() -> encode(piece, doc));
      }
      enqueue(f, bytes, doc);
    }

    private int[] encode(String piece, String doc) {
      try {
        return tok.encode(piece);
      } catch (RuntimeException e) {
        throw new IllegalStateException("tokenizer " + tok.id() + " failed on " + doc + " in " + input + ": " + e,
            e);
      }
    }

    private void enqueue(Future<int[]> f, long bytes, String doc) {
      queue.addLast(new Item(f, bytes, doc));
      while (queue.size() > maxQueued) drainOne();
    }

    /** Writes the oldest queued result. */
    private void drainOne() {
      Item it = queue.removeFirst();
      int[] ids;
      try {
        ids = it.tokens().get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("tokenizing " + input + " was interrupted", e);
      } catch (ExecutionException e) {
        Throwable c = e.getCause();
        if (c instanceof RuntimeException re) throw re;
        throw new IllegalStateException("tokenizing " + it.doc() + " in " + input + " failed: " + c, c);
      }
      write(ids, it.doc());
      doneBytes += it.bytes();
      listener.update(Math.min(doneBytes, totalBytes), totalBytes, tokens);
    }

    private void write(int[] ids, String doc) {
      int off = 0;
      while (off < ids.length) {
        if (writer == null) writer = TokenShardWriter.create(dir.resolve(shardName(shards++)), tok.vocabSize());
        int n = (int) Math.min(ids.length - off, opts.shardTokens() - writer.count());
        try {
          writer.write(ids, off, n);
        } catch (IllegalArgumentException e) {
          throw new IllegalArgumentException("tokenizer " + tok.id() + " produced a bad id for " + doc + " in "
              + input + ": " + e.getMessage(), e);
        }
        off += n;
        tokens += n;
        if (writer.count() == opts.shardTokens()) {
          writer.close();
          writer = null;
        }
      }
    }

    @Override
    public void close() {
      if (pool != null) pool.shutdownNow();
      if (writer != null) writer.abort();
    }
  }

  private static CharsetDecoder strictUtf8() {
    return StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
  }

  private static boolean hasNul(byte[] b, int n) {
    for (int i = 0; i < n; i++) if (b[i] == 0) return true;
    return false;
  }

  /** Counts the bytes read through it. */
  private static final class CountingStream extends FilterInputStream {
    long count;

    CountingStream(InputStream in) {
      super(in);
    }

    @Override
    public int read() throws IOException {
      int b = super.read();
      if (b >= 0) count++;
      return b;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      int n = super.read(b, off, len);
      if (n > 0) count += n;
      return n;
    }

    @Override
    public long skip(long n) throws IOException {
      long k = super.skip(n);
      count += k;
      return k;
    }
  }
}

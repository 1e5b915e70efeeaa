package dev.athanor.io.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.TextCorpus.Options;
import dev.athanor.io.data.TextCorpus.ProgressListener;
import dev.athanor.io.data.TextCorpus.Source;
import dev.athanor.io.data.TextCorpus.Summary;
import dev.athanor.io.data.TextCorpus.Tuning;
import dev.athanor.io.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextCorpusTest {
  @TempDir Path tmp;

  private Options opts(String cache) {
    return Options.defaults().withCacheDir(tmp.resolve(cache)).withThreads(1);
  }

  static int[] all(TokenDataset d) {
    int[] a = new int[Math.toIntExact(d.size())];
    d.read(0, a, 0, a.length);
    return a;
  }

  /** Records the last summary and checks the progress reports are sane. */
  static final class Recorder implements ProgressListener {
    Summary summary;
    long lastDone = -1;
    long lastTotal;
    long lastTokens;
    long runTokens;
    int updates;

    @Override
    public void update(long doneBytes, long totalBytes, long tokens) {
      assertTrue(doneBytes >= 0 && doneBytes <= totalBytes, doneBytes + " / " + totalBytes);
      assertTrue(tokens >= runTokens);
      runTokens = tokens;
      lastDone = doneBytes;
      lastTotal = totalBytes;
      lastTokens = tokens;
      updates++;
    }

    @Override
    public void finished(Summary s) {
      summary = s;
      runTokens = 0;
    }
  }

  private Path corpusDir() throws IOException {
    Path d = Files.createDirectories(tmp.resolve("in"));
    Files.writeString(d.resolve("b.txt"), "second");
    Files.writeString(d.resolve("a.txt"), "first\n");
    Files.createDirectories(d.resolve("a"));
    Files.writeString(d.resolve("a/c.md"), "in a/ (sorts after a.txt: '/' > '.')");
    Files.createDirectories(d.resolve(".git"));
    Files.writeString(d.resolve(".git/config"), "hidden dir");
    Files.writeString(d.resolve(".hidden.txt"), "hidden file");
    Files.write(d.resolve("img.png"), new byte[] {(byte) 0x89, 'P', 'N', 'G', 0, 0, 1});
    Files.write(d.resolve("latin1.txt"), new byte[] {'c', 'a', 'f', (byte) 0xe9});
    Files.writeString(d.resolve("empty.txt"), "");
    Files.write(d.resolve("z.txt"), "\uFEFFbom dropped, ünïcödé kept ✓".getBytes(StandardCharsets.UTF_8));
    return d;
  }

  private static final List<String> CORPUS_TEXTS = List.of(
      "first\n", "in a/ (sorts after a.txt: '/' > '.')", "second", "bom dropped, ünïcödé kept ✓");

  private static int[] expectedBytes(List<String> docs, boolean eos) {
    FakeTokenizers.Bytes b = new FakeTokenizers.Bytes();
    List<Integer> out = new ArrayList<>();
    for (int i = 0; i < docs.size(); i++) {
      if (i > 0 && eos) out.add(256);
      for (int id : b.encode(docs.get(i))) out.add(id);
    }
    return out.stream().mapToInt(Integer::intValue).toArray();
  }

  @Test
  void directoryInSortedOrderSkippingHiddenBinaryAndInvalidUtf8() throws IOException {
    Path in = corpusDir();
    Recorder r = new Recorder();
    try (TokenDataset d = TextCorpus.prepare(in, new FakeTokenizers.Bytes(), opts("cache"), r)) {
      assertArrayEquals(expectedBytes(CORPUS_TEXTS, true), all(d));
      Summary s = r.summary;
      assertEquals(Source.TOKENIZED, s.source());
      assertEquals(4, s.documents());
      assertEquals(1, s.skippedBinary());
      assertEquals(1, s.skippedInvalidUtf8());
      assertEquals(d.size(), s.tokens());
      assertEquals(1, s.shards());
      assertEquals(r.lastTotal, r.lastDone);
      assertEquals(d.size(), r.lastTokens);
      assertTrue(Files.isRegularFile(s.directory().resolve("done.json")));
      assertEquals(tmp.resolve("cache"), s.directory().getParent());
    }
    // without an eos token documents are simply concatenated
    try (TokenDataset d = TextCorpus.prepare(in, new FakeTokenizers.Bytes(false), opts("cache"), null)) {
      assertArrayEquals(expectedBytes(CORPUS_TEXTS, false), all(d));
    }
    // extension filter (normalised: dot and case)
    try (TokenDataset d = TextCorpus.prepare(in, new FakeTokenizers.Bytes(),
        opts("cache").withExtensions(Set.of(".TXT")), null)) {
      assertArrayEquals(expectedBytes(List.of("first\n", "second", CORPUS_TEXTS.get(3)), true), all(d));
    }
    // a single file is taken whatever its extension
    try (TokenDataset d = TextCorpus.prepare(in.resolve("a/c.md"), new FakeTokenizers.Bytes(),
        opts("cache").withExtensions(Set.of("txt")), null)) {
      assertArrayEquals(expectedBytes(List.of(CORPUS_TEXTS.get(1)), true), all(d));
    }
  }

  private static void zip(Path zip, Map<String, byte[]> entries) throws IOException {
    try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(zip))) {
      for (var e : entries.entrySet()) {
        z.putNextEntry(new ZipEntry(e.getKey()));
        if (e.getValue() != null) z.write(e.getValue());
        z.closeEntry();
      }
    }
  }

  @Test
  void zipArchiveInSortedEntryOrderWithNestedDirectories() throws IOException {
    Map<String, byte[]> entries = new LinkedHashMap<>();
    entries.put("z.txt", "\uFEFFbom dropped, ünïcödé kept ✓".getBytes(StandardCharsets.UTF_8));
    entries.put("a/", null);
    entries.put("a/c.md", CORPUS_TEXTS.get(1).getBytes(StandardCharsets.UTF_8));
    entries.put("b.txt", "second".getBytes(StandardCharsets.UTF_8));
    entries.put(".git/config", "hidden".getBytes(StandardCharsets.UTF_8));
    entries.put("a.txt", "first\n".getBytes(StandardCharsets.UTF_8));
    entries.put("img.png", new byte[] {1, 0, 2});
    entries.put("deep/er/latin1.txt", new byte[] {'c', 'a', 'f', (byte) 0xe9});
    Path z = tmp.resolve("corpus.ZIP");
    zip(z, entries);
    Recorder r = new Recorder();
    try (TokenDataset d = TextCorpus.prepare(z, new FakeTokenizers.Bytes(), opts("cache"), r)) {
      assertArrayEquals(expectedBytes(CORPUS_TEXTS, true), all(d));
      assertEquals(4, r.summary.documents());
      assertEquals(1, r.summary.skippedBinary());
      assertEquals(1, r.summary.skippedInvalidUtf8());
    }
    Path jar = tmp.resolve("x.jar");
    zip(jar, Map.of("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n".getBytes(StandardCharsets.UTF_8)));
    try (TokenDataset d = TextCorpus.prepare(jar, new FakeTokenizers.Bytes(), opts("cache"), null)) {
      assertEquals("Manifest-Version: 1.0\n", new FakeTokenizers.Bytes().decode(all(d)));
    }
    Path broken = Files.write(tmp.resolve("broken.zip"), "not a zip".getBytes(StandardCharsets.UTF_8));
    var e = assertThrows(IllegalArgumentException.class,
        () -> TextCorpus.prepare(broken, new FakeTokenizers.Bytes(), opts("cache"), null));
    assertTrue(e.getMessage().contains("broken.zip") && e.getMessage().contains("zip"), e.getMessage());
  }

  @Test
  void secondCallHitsTheCacheAndChangesInvalidateIt() throws IOException {
    Path in = corpusDir();
    FakeTokenizers.Counting tok = new FakeTokenizers.Counting(new FakeTokenizers.Bytes());
    int[] first;
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), null)) {
      first = all(d);
    }
    assertTrue(tok.calls.get() > 0);
    tok.calls.set(0);
    Recorder r = new Recorder();
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache").withThreads(3), r)) {  // threads: not in key
      assertArrayEquals(first, all(d));
    }
    assertEquals(0, tok.calls.get(), "cache hit must not tokenize");
    assertEquals(Source.CACHE, r.summary.source());
    assertEquals(4, r.summary.documents());
    assertEquals(1, r.summary.skippedBinary());

    // content and size change
    Files.writeString(in.resolve("b.txt"), "SECOND, longer");
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), null)) {
      assertArrayEquals(expectedBytes(List.of("first\n", CORPUS_TEXTS.get(1), "SECOND, longer",
          CORPUS_TEXTS.get(3)), true), all(d));
    }
    assertTrue(tok.calls.get() > 0);
    // same size, new modification time
    tok.calls.set(0);
    Files.writeString(in.resolve("b.txt"), "Second, LONGER");
    Files.setLastModifiedTime(in.resolve("b.txt"), FileTime.fromMillis(System.currentTimeMillis() + 5000));
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), null)) {
      assertTrue(new FakeTokenizers.Bytes().decode(all(d)).contains("Second, LONGER"));
    }
    assertTrue(tok.calls.get() > 0);
    // a new file
    tok.calls.set(0);
    Files.writeString(in.resolve("a/new.txt"), "new");
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), null)) {
      assertTrue(new FakeTokenizers.Bytes().decode(all(d)).contains("new"));
    }
    assertTrue(tok.calls.get() > 0);
    // another tokenizer id, another entry
    tok.calls.set(0);
    try (TokenDataset d = TextCorpus.prepare(in, new FakeTokenizers.Counting(new FakeTokenizers.Bytes(false)),
        opts("cache"), null)) {
      assertFalse(Arrays.stream(all(d)).anyMatch(t -> t == 256));
    }
    try (Stream<Path> s = Files.list(tmp.resolve("cache"))) {
      List<String> names = s.map(p -> p.getFileName().toString()).toList();
      assertEquals(5, names.size(), names.toString());
      assertTrue(names.stream().noneMatch(n -> n.contains(".tmp-") || n.contains(".old-")), names.toString());
    }
  }

  @Test
  void incompleteOrDamagedCacheEntriesAreRebuilt() throws IOException {
    Path in = corpusDir();
    FakeTokenizers.Counting tok = new FakeTokenizers.Counting(new FakeTokenizers.Bytes());
    Recorder r = new Recorder();
    int[] first;
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), r)) {
      first = all(d);
    }
    Path entry = r.summary.directory();
    // leftovers of dead runs: removed when more than a day old
    Path stale = Files.createDirectories(tmp.resolve("cache").resolve(entry.getFileName() + ".tmp-dead"));
    Files.writeString(stale.resolve("shard_000000.bin"), "partial");
    Files.setLastModifiedTime(stale, FileTime.fromMillis(System.currentTimeMillis() - 2 * 86_400_000L));
    Path young = Files.createDirectories(tmp.resolve("cache").resolve(entry.getFileName() + ".tmp-running"));
    // 1. no manifest: incomplete
    Files.delete(entry.resolve("done.json"));
    tok.calls.set(0);
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), r)) {
      assertArrayEquals(first, all(d));
    }
    assertTrue(tok.calls.get() > 0);
    assertEquals(Source.TOKENIZED, r.summary.source());
    assertEquals(entry, r.summary.directory());
    assertFalse(Files.exists(stale));
    assertTrue(Files.exists(young), "a recent temporary directory may belong to a running build");
    // 2. a truncated shard
    Path shard = entry.resolve("shard_000000.bin");
    byte[] b = Files.readAllBytes(shard);
    Files.write(shard, Arrays.copyOf(b, b.length - 2));
    tok.calls.set(0);
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), r)) {
      assertArrayEquals(first, all(d));
    }
    assertTrue(tok.calls.get() > 0);
    // 3. a garbled manifest
    Files.writeString(entry.resolve("done.json"), "{\"format\": ");
    tok.calls.set(0);
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), r)) {
      assertArrayEquals(first, all(d));
    }
    assertTrue(tok.calls.get() > 0);
    tok.calls.set(0);
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), r)) {
      assertArrayEquals(first, all(d));
    }
    assertEquals(0, tok.calls.get());
  }

  @Test
  void maxBytesTakesWholeDocumentsAndAtLeastOne() throws IOException {
    Path in = Files.createDirectories(tmp.resolve("m"));
    Files.writeString(in.resolve("1.txt"), "aaaa");      // 4
    Files.writeString(in.resolve("2.txt"), "bbbbbb");    // 6 -> 10
    Files.writeString(in.resolve("3.txt"), "cc");        // 2 -> 12
    Files.writeString(in.resolve("4.txt"), "d");
    FakeTokenizers.Bytes tok = new FakeTokenizers.Bytes();
    Map<Long, String> expected = Map.of(
        1L, "aaaa", 4L, "aaaa", 9L, "aaaa", 10L, "aaaa<|eos|>bbbbbb", 11L, "aaaa<|eos|>bbbbbb",
        12L, "aaaa<|eos|>bbbbbb<|eos|>cc", 100L, "aaaa<|eos|>bbbbbb<|eos|>cc<|eos|>d");
    for (var e : expected.entrySet()) {
      Recorder r = new Recorder();
      try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache").withMaxBytes(e.getKey()), r)) {
        assertEquals(e.getValue(), tok.decode(all(d)), "maxBytes " + e.getKey());
        assertTrue(r.lastTotal <= e.getKey());
      }
    }
  }

  @Test
  void inputWithoutTextIsAnErrorNamingIt() throws IOException {
    Path in = Files.createDirectories(tmp.resolve("binonly"));
    Files.write(in.resolve("x.dat"), new byte[] {1, 2, 0, 3});
    Files.write(in.resolve("y.txt"), new byte[] {(byte) 0xc3});
    Files.writeString(in.resolve("z.txt"), "");
    var e = assertThrows(IllegalArgumentException.class,
        () -> TextCorpus.prepare(in, new FakeTokenizers.Bytes(), opts("cache"), null));
    assertTrue(e.getMessage().contains("binonly") && e.getMessage().contains("no text")
        && e.getMessage().contains("1 binary") && e.getMessage().contains("1 not valid UTF-8"), e.getMessage());
    Path empty = Files.createDirectories(tmp.resolve("emptydir"));
    var e2 = assertThrows(IllegalArgumentException.class,
        () -> TextCorpus.prepare(empty, new FakeTokenizers.Bytes(), opts("cache"), null));
    assertTrue(e2.getMessage().contains("emptydir"), e2.getMessage());
    Path zip = tmp.resolve("empty.zip");
    zip(zip, Map.of("dir/", new byte[0]));
    var e3 = assertThrows(IllegalArgumentException.class,
        () -> TextCorpus.prepare(zip, new FakeTokenizers.Bytes(), opts("cache"), null));
    assertTrue(e3.getMessage().contains("empty.zip"), e3.getMessage());
    var e4 = assertThrows(IllegalArgumentException.class,
        () -> TextCorpus.prepare(tmp.resolve("nope"), new FakeTokenizers.Bytes(), opts("cache"), null));
    assertTrue(e4.getMessage().contains("nope") && e4.getMessage().contains("does not exist"), e4.getMessage());
    try (Stream<Path> s = Files.list(tmp.resolve("cache"))) {
      assertEquals(0, s.count(), "failed runs must leave no temporary directories");
    }
  }

  @Test
  void shardInputsAreUsedAsTheyAre() throws IOException {
    Path dir = Files.createDirectories(tmp.resolve("shards"));
    TokenShardTest.write(dir.resolve("t1.bin"), 50257, 3, 4);
    TokenShardTest.write(dir.resolve("t0.bin"), 50257, 1, 2);
    FakeTokenizers.Counting tok = new FakeTokenizers.Counting(new FakeTokenizers.Bytes());
    Recorder r = new Recorder();
    try (TokenDataset d = TextCorpus.prepare(dir, tok, opts("cache"), r)) {
      assertArrayEquals(new int[] {1, 2, 3, 4}, all(d));
      assertEquals(Source.SHARDS, r.summary.source());
    }
    try (TokenDataset d = TextCorpus.prepare(dir.resolve("t1.bin"), tok, opts("cache"), r)) {
      assertArrayEquals(new int[] {3, 4}, all(d));
    }
    assertEquals(0, tok.calls.get());
    assertFalse(Files.exists(tmp.resolve("cache")));
    // a cache entry is itself a shard directory
    Path in = corpusDir();
    try (TokenDataset d = TextCorpus.prepare(in, tok, opts("cache"), r)) {
      Path entry = r.summary.directory();
      try (TokenDataset again = TextCorpus.prepare(entry, tok, opts("other"), r)) {
        assertArrayEquals(all(d), all(again));
        assertEquals(Source.SHARDS, r.summary.source());
      }
    }
  }

  @Test
  void manyShardsAndPiecesAndStreamingGiveTheSameTokens() throws IOException {
    // a long document with many line breaks, and CRLF / space-only lines where no cut is allowed
    StringBuilder sb = new StringBuilder("\uFEFF");
    for (int i = 0; i < 3000; i++) {
      sb.append(i % 7 == 0 ? "  indented line " : "line ").append(i).append(i % 11 == 0 ? " \r\n" : "\n");
      if (i % 13 == 0) sb.append("\n");
    }
    String text = sb.toString();
    Path in = Files.createDirectories(tmp.resolve("long"));
    Files.writeString(in.resolve("a.txt"), text);
    Files.writeString(in.resolve("b.txt"), "tail ünï\n");
    FakeTokenizers.Counting whole = new FakeTokenizers.Counting(new FakeTokenizers.Bytes());
    int[] ref;
    try (TokenDataset d = TextCorpus.prepare(in, whole, opts("c0"), null)) {
      ref = all(d);
    }
    assertEquals(2, whole.calls.get(), "default piece size: one piece per document");
    assertEquals(text.substring(1) + "<|eos|>tail ünï\n", new FakeTokenizers.Bytes().decode(ref));
    int k = 0;
    for (int threads : new int[] {1, 3}) {
      for (Tuning t : List.of(new Tuning(100, 1 << 20), new Tuning(1, 10))) {
        FakeTokenizers.Counting tok = new FakeTokenizers.Counting(new FakeTokenizers.Bytes());
        Recorder r = new Recorder();
        try (TokenDataset d = TextCorpus.prepare(in, tok, opts("c" + (++k)).withThreads(threads)
            .withShardTokens(4999), r, t)) {
          assertArrayEquals(ref, all(d), threads + " threads, " + t);
          assertEquals((ref.length + 4998) / 4999, d.files().size());
          assertTrue(tok.calls.get() > 100, "pieces: " + tok.calls.get());
          assertEquals(r.lastTotal, r.lastDone);
        }
      }
    }
  }

  @Test
  void streamingPathSkipsLateInvalidUtf8AndNul() throws IOException {
    Path in = Files.createDirectories(tmp.resolve("s"));
    byte[] late = new byte[20_000];
    Arrays.fill(late, (byte) 'x');
    late[19_000] = (byte) 0xff;
    Files.write(in.resolve("a.txt"), late);
    byte[] nul = new byte[20_000];
    Arrays.fill(nul, (byte) 'y');
    nul[5000] = 0;
    Files.write(in.resolve("b.txt"), nul);
    nul[5000] = 'y';
    nul[9000] = 0;  // beyond the 8 KiB probe: kept (NUL is valid UTF-8)
    Files.write(in.resolve("c.txt"), nul);
    Recorder r = new Recorder();
    try (TokenDataset d = TextCorpus.prepare(in, new FakeTokenizers.Bytes(), opts("c"), r, new Tuning(1000, 100))) {
      assertArrayEquals(new FakeTokenizers.Bytes().encode(new String(nul, StandardCharsets.UTF_8)), all(d));
      assertEquals(1, r.summary.skippedBinary());
      assertEquals(1, r.summary.skippedInvalidUtf8());
      assertEquals(1, r.summary.documents());
    }
  }

  @Test
  void concurrentRunsDoNotCorruptEachOther() throws Exception {
    Path in = corpusDir();
    Files.writeString(in.resolve("big.txt"), "some text\n".repeat(20_000));
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<Future<int[]>> fs = new ArrayList<>();
      for (int i = 0; i < 4; i++) {
        fs.add(pool.submit(() -> {
          try (TokenDataset d = TextCorpus.prepare(in, new FakeTokenizers.Bytes(), opts("cache"), null,
              new Tuning(1000, 1 << 20))) {
            return all(d);
          }
        }));
      }
      int[] first = fs.get(0).get();
      for (Future<int[]> f : fs) assertArrayEquals(first, f.get());
    } finally {
      pool.shutdown();
    }
    try (Stream<Path> s = Files.list(tmp.resolve("cache"))) {
      List<Path> left = s.toList();
      assertEquals(1, left.size(), left.toString());
    }
  }

  @Test
  void optionsValidateAndNormalise() {
    Options d = Options.defaults();
    assertEquals(Long.MAX_VALUE, d.maxBytes());
    assertEquals(100_000_000L, d.shardTokens());
    assertEquals(Runtime.getRuntime().availableProcessors(), d.threads());
    assertTrue(d.extensions().isEmpty());
    String old = System.getProperty("athanor.cache.dir");
    try {
      System.setProperty("athanor.cache.dir", tmp.toString());
      assertEquals(tmp, Options.defaults().cacheDir());
      System.clearProperty("athanor.cache.dir");
      assertTrue(Options.defaults().cacheDir().endsWith(Path.of(".cache", "athanor", "tokens")));
    } finally {
      if (old != null) System.setProperty("athanor.cache.dir", old);
    }
    assertEquals(Set.of("java", "md"), d.withExtensions(Set.of(".JAVA", "md")).extensions());
    assertThrows(IllegalArgumentException.class, () -> d.withThreads(0));
    assertThrows(IllegalArgumentException.class, () -> d.withMaxBytes(0));
    assertThrows(IllegalArgumentException.class, () -> d.withShardTokens(1L << 31));
    assertThrows(IllegalArgumentException.class, () -> d.withExtensions(Set.of(".")));
    assertThrows(IllegalArgumentException.class, () -> d.withCacheDir(null));
  }

  @Test
  void aTokenizerProducingBadIdsIsReported() throws IOException {
    Path in = Files.writeString(tmp.resolve("t.txt"), "hello");
    Tokenizer bad = new FakeTokenizers.Bytes() {
      @Override
      public int vocabSize() {
        return 100;  // 'h' = 104 is out of range
      }

      @Override
      public String id() {
        return "bad";
      }
    };
    var e = assertThrows(IllegalArgumentException.class, () -> TextCorpus.prepare(in, bad, opts("cache"), null));
    assertTrue(e.getMessage().contains("104") && e.getMessage().contains("t.txt"), e.getMessage());
  }

  // ------------------------------------------------------------------------------------------ src.zip

  private static Path srcZip() {
    Path p = Path.of(System.getProperty("java.home"), "lib", "src.zip");
    Assumptions.assumeTrue(Files.isRegularFile(p), "no " + p);
    return p;
  }

  /** The first .java entries (sorted by name) whose sizes sum to at most {@code max} bytes. */
  private static List<String> firstJavaTexts(Path zip, long max) throws IOException {
    List<String> texts = new ArrayList<>();
    try (ZipFile z = new ZipFile(zip.toFile())) {
      List<? extends ZipEntry> es = z.stream()
          .filter(e -> !e.isDirectory() && e.getName().endsWith(".java"))
          .sorted(java.util.Comparator.comparing(ZipEntry::getName)).toList();
      long total = 0;
      for (ZipEntry e : es) {
        if (!texts.isEmpty() && total + e.getSize() > max) break;
        total += e.getSize();
        String s = new String(z.getInputStream(e).readAllBytes(), StandardCharsets.UTF_8);
        texts.add(s.startsWith("\uFEFF") ? s.substring(1) : s);
      }
    }
    return texts;
  }

  @Test
  void jdkSourcesWithGpt2TokensOneAndTwoThreadsAndCache() throws IOException {
    Path zip = srcZip();
    long max = 512L << 10;
    FakeTokenizers.R50k r50k = new FakeTokenizers.R50k();
    List<String> texts = firstJavaTexts(zip, max);
    // reference: every document encoded whole, joined with <|endoftext|>
    List<int[]> parts = new ArrayList<>();
    int n = 0;
    for (int i = 0; i < texts.size(); i++) {
      int[] ids = r50k.encode(texts.get(i));
      parts.add(ids);
      n += ids.length + (i > 0 ? 1 : 0);
    }
    int[] ref = new int[n];
    int at = 0;
    for (int i = 0; i < parts.size(); i++) {
      if (i > 0) ref[at++] = 50256;
      System.arraycopy(parts.get(i), 0, ref, at, parts.get(i).length);
      at += parts.get(i).length;
    }
    Options o = opts("cache").withMaxBytes(max).withExtensions(Set.of("java"));
    int[][] got = new int[2][];
    for (int threads = 1; threads <= 2; threads++) {
      FakeTokenizers.Counting tok = new FakeTokenizers.Counting(r50k);
      Recorder r = new Recorder();
      // small pieces: long sources are cut at line breaks, which must not change a single token
      try (TokenDataset d = TextCorpus.prepare(zip, tok, o.withCacheDir(tmp.resolve("c" + threads))
          .withThreads(threads), r, new Tuning(2000, 1 << 20))) {
        got[threads - 1] = all(d);
        d.checkVocab(50257);
      }
      assertTrue(tok.calls.get() > texts.size(), "pieces: " + tok.calls.get());
      assertEquals(texts.size(), r.summary.documents());
      assertTrue(r.summary.textBytes() <= max);
    }
    assertArrayEquals(ref, got[0]);
    assertArrayEquals(got[0], got[1]);
    // second call: from the cache, without tokenizing
    FakeTokenizers.Counting tok = new FakeTokenizers.Counting(r50k);
    try (TokenDataset d = TextCorpus.prepare(zip, tok, o.withCacheDir(tmp.resolve("c1")), null,
        new Tuning(2000, 1 << 20))) {
      assertArrayEquals(ref, all(d));
    }
    assertEquals(0, tok.calls.get());
    assertNotEquals(0, ref.length);
  }

  /** Not a test: tokenization throughput on ~20 MB of src.zip with r50k_base. Run with -Dathanor.bench=true. */
  @Test
  void throughputReport() throws IOException {
    Assumptions.assumeTrue(Boolean.getBoolean("athanor.bench"), "set -Dathanor.bench=true");
    Path zip = srcZip();
    int reps = Integer.getInteger("athanor.bench.reps", 1);
    for (int k = 0; k < 2 * reps; k++) {
      int threads = 1 + k % 2;
      Recorder r = new Recorder();
      long t0 = System.nanoTime();
      try (TokenDataset d = TextCorpus.prepare(zip, new FakeTokenizers.R50k(), opts("bench" + k)
          .withMaxBytes(20L << 20).withExtensions(Set.of("java")).withThreads(threads), r)) {
        double s = (System.nanoTime() - t0) / 1e9;
        System.out.printf("threads %d: %.1f MB text, %d docs, %d tokens in %.2f s = %.2f MB/s, %.0f tokens/s%n",
            threads, r.summary.textBytes() / 1e6, r.summary.documents(), d.size(), s,
            r.summary.textBytes() / 1e6 / s, d.size() / s);
      }
    }
  }
}

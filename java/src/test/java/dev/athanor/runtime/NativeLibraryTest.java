package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NativeLibraryTest {
  @TempDir Path tmp;

  private URL fakeResource(String name, byte[] content) throws Exception {
    Path p = tmp.resolve(name);
    Files.write(p, content);
    return p.toUri().toURL();
  }

  private static byte[] bytes(int n, int seed) {
    byte[] b = new byte[n];
    for (int i = 0; i < n; i++) b[i] = (byte) (i * 31 + seed);
    return b;
  }

  @Test
  void loadsTheRealLibraryFromTheOverrideOrTheJar() {
    NativeLibrary.load();
    NativeLibrary.load(); // idempotent
    assertTrue(NativeLibrary.isLoaded());
    String override = System.getProperty(NativeLibrary.LIBRARY_PATH_PROPERTY);
    if (override != null && !override.isBlank()) {
      assertEquals(Path.of(override).toAbsolutePath(), NativeLibrary.loadedFrom());
    }
    assertFalse(NativeRuntime.version().isEmpty());
  }

  @Test
  void overrideThatDoesNotExistIsNamedInTheFailure() {
    String bad = tmp.resolve("nope/libathanor.so").toString();
    var cfg = new NativeLibrary.Config(bad, null, List.of(), "0.0.0", "Linux", "amd64", true);
    AthanorException e = assertThrows(AthanorException.class, () -> NativeLibrary.loadWith(cfg, p -> {}));
    assertTrue(e.getMessage().contains(bad), e.getMessage());
    assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    assertTrue(e.getMessage().contains("athanor.library.path"), e.getMessage());
  }

  @Test
  void overrideIsLoadedWhenItExists() throws Exception {
    Path lib = Files.write(tmp.resolve("libfake.so"), bytes(10, 1));
    List<String> loaded = new ArrayList<>();
    var cfg = new NativeLibrary.Config(lib.toString(), null, List.of(tmp.resolve("never")), "0.0.0", "Linux", "amd64", true);
    assertEquals(lib.toAbsolutePath(), NativeLibrary.loadWith(cfg, loaded::add));
    assertEquals(List.of(lib.toAbsolutePath().toString()), loaded);
    assertFalse(Files.exists(tmp.resolve("never")), "nothing else is tried when the override works");
  }

  @Test
  void overrideThatFailsToLoadReportsTheLoaderError() throws Exception {
    Path lib = Files.write(tmp.resolve("libbroken.so"), bytes(10, 1));
    var cfg = new NativeLibrary.Config(lib.toString(), null, List.of(), "0.0.0", "Linux", "amd64", true);
    AthanorException e = assertThrows(AthanorException.class, () -> NativeLibrary.loadWith(cfg, p -> {
      throw new UnsatisfiedLinkError("invalid ELF header in " + p);
    }));
    assertTrue(e.getMessage().contains("invalid ELF header"), e.getMessage());
    assertTrue(e.getMessage().contains(lib.toString()), e.getMessage());
  }

  @Test
  void failureListsEveryPlaceTriedAndWhy() throws Exception {
    URL res = fakeResource("lib.so", bytes(5000, 3));
    Path a = tmp.resolve("cacheA"), b = tmp.resolve("cacheB");
    var cfg = new NativeLibrary.Config(null, res, List.of(a, b), "1.2.3", "Linux", "amd64", false);
    AthanorException e = assertThrows(AthanorException.class, () -> NativeLibrary.loadWith(cfg, p -> {
      throw new UnsatisfiedLinkError("cannot map " + p);
    }));
    String m = e.getMessage();
    assertTrue(m.contains("1. extracted copy in " + a), m);
    assertTrue(m.contains("2. extracted copy in " + b), m);
    assertTrue(m.contains("cannot map"), m);
    assertTrue(m.contains("1.2.3-"), "the versioned directory is named: " + m);
  }

  @Test
  void unwritableCacheDirFallsThroughToTheNext() throws Exception {
    URL res = fakeResource("lib.so", bytes(100, 4));
    Path file = Files.write(tmp.resolve("iAmAFile"), bytes(1, 0)); // a directory cannot be created under a file
    Path good = tmp.resolve("good");
    List<String> loaded = new ArrayList<>();
    var cfg = new NativeLibrary.Config(null, res, List.of(file.resolve("sub"), good), "1.0", "Linux", "x86_64", false);
    Path p = NativeLibrary.loadWith(cfg, loaded::add);
    assertTrue(p.startsWith(good), p.toString());
    assertArrayEquals(bytes(100, 4), Files.readAllBytes(p));
    assertEquals(List.of(p.toString()), loaded);
  }

  @Test
  void missingResourceAndForeignPlatformAreExplained() {
    var noRes = new NativeLibrary.Config(null, null, List.of(tmp), "1.0", "Linux", "amd64", false);
    AthanorException e = assertThrows(AthanorException.class, () -> NativeLibrary.loadWith(noRes, p -> {}));
    assertTrue(e.getMessage().contains(NativeLibrary.RESOURCE), e.getMessage());
    assertTrue(e.getMessage().contains("not found on the class path"), e.getMessage());

    var mac = new NativeLibrary.Config(null, null, List.of(tmp), "1.0", "Mac OS X", "aarch64", false);
    e = assertThrows(AthanorException.class, () -> NativeLibrary.loadWith(mac, p -> {}));
    assertTrue(e.getMessage().contains("Mac OS X/aarch64"), e.getMessage());
  }

  @Test
  void extractionIsVersionedAndSkippedWhenUnchanged() throws Exception {
    URL res = fakeResource("lib.so", bytes(70_000, 5));
    Path base = tmp.resolve("cache");
    NativeLibrary.Extraction first = NativeLibrary.extract(res, base, "0.1.0");
    assertTrue(first.extracted());
    assertTrue(first.path().getParent().getFileName().toString().startsWith("0.1.0-"));
    assertArrayEquals(bytes(70_000, 5), Files.readAllBytes(first.path()));
    Files.setLastModifiedTime(first.path(), FileTime.fromMillis(1_000_000L));

    NativeLibrary.Extraction second = NativeLibrary.extract(res, base, "0.1.0");
    assertFalse(second.extracted(), "unchanged: not rewritten");
    assertEquals(first.path(), second.path());
    assertEquals(FileTime.fromMillis(1_000_000L), Files.getLastModifiedTime(second.path()));

    // Same size, different bytes (a corrupted copy): rewritten.
    byte[] corrupt = bytes(70_000, 5);
    corrupt[12345] ^= 1;
    Files.write(first.path(), corrupt);
    NativeLibrary.Extraction third = NativeLibrary.extract(res, base, "0.1.0");
    assertTrue(third.extracted());
    assertArrayEquals(bytes(70_000, 5), Files.readAllBytes(third.path()));

    // A different library gets a different directory.
    URL other = fakeResource("lib2.so", bytes(70_000, 6));
    NativeLibrary.Extraction fourth = NativeLibrary.extract(other, base, "0.1.0");
    assertNotEquals(first.path().getParent(), fourth.path().getParent());
  }

  @Test
  void concurrentExtractionIsSafe() throws Exception {
    byte[] content = bytes(3_000_000, 7);
    URL res = fakeResource("big.so", content);
    Path base = tmp.resolve("concurrent");
    int n = 8;
    ExecutorService pool = Executors.newFixedThreadPool(n);
    CountDownLatch start = new CountDownLatch(1);
    try {
      List<Future<Path>> futures = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        Callable<Path> c = () -> {
          start.await();
          return NativeLibrary.extract(res, base, "0.1.0").path();
        };
        futures.add(pool.submit(c));
      }
      start.countDown();
      Path expected = null;
      for (Future<Path> f : futures) {
        Path p = f.get();
        if (expected == null) expected = p;
        assertEquals(expected, p);
      }
      assertArrayEquals(content, Files.readAllBytes(expected));
      try (Stream<Path> files = Files.list(expected.getParent())) {
        assertEquals(List.of(expected), files.toList(), "no temporary files are left behind");
      }
    } finally {
      pool.shutdownNow();
    }
  }
}

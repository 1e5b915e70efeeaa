package dev.athanor.io.data;

import dev.athanor.io.FileProblems;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.zip.ZipEntry;
import java.util.zip.ZipException;
import java.util.zip.ZipFile;

/**
 * The candidate documents of a text input, in their fixed order: a single file; the regular files under a
 * directory (recursively, sorted by '/'-separated relative path); or the file entries of a .zip/.jar archive
 * (sorted by entry name). Hidden files and directories (names starting with '.') are left out, and so are
 * files whose extension is not in the filter (when one is given; a single-file input is always taken).
 */
final class CorpusSource implements AutoCloseable {
  /** One candidate document. */
  interface Doc {
    /** A name for messages and the cache key: the relative path or entry name. */
    String name();

    /** The size in bytes, or -1 if unknown. */
    long size();

    /** A change stamp for the cache key (size, modification time, CRC...). */
    String stamp();

    /** Opens the document's bytes; may be called more than once. */
    InputStream open() throws IOException;
  }

  final Path input;
  final String kind;  // "file", "directory" or "zip"
  final List<Doc> docs;
  final String inputStamp;
  private final ZipFile zip;

  private CorpusSource(Path input, String kind, List<Doc> docs, String inputStamp, ZipFile zip) {
    this.input = input;
    this.kind = kind;
    this.docs = docs;
    this.inputStamp = inputStamp;
    this.zip = zip;
  }

  static boolean isArchive(Path p) {
    String n = p.getFileName() == null ? "" : p.getFileName().toString().toLowerCase(Locale.ROOT);
    return n.endsWith(".zip") || n.endsWith(".jar");
  }

  /** Lists the documents of {@code input}; {@code exclude} (may be null) is a directory not to descend into. */
  static CorpusSource open(Path input, Set<String> extensions, Path exclude) {
    try {
      if (Files.isDirectory(input)) return directory(input, extensions, exclude);
      String problem = FileProblems.notRegularFile(input);
      if (problem != null) {
        throw new IllegalArgumentException("text input " + input + " " + problem + " (expected a text file, a directory or a .zip)");
      }
      BasicFileAttributes a = Files.readAttributes(input, BasicFileAttributes.class);
      String stamp = a.size() + "\t" + a.lastModifiedTime().toMillis();
      if (isArchive(input)) return archive(input, extensions, stamp);
      Doc d = fileDoc(input, input.getFileName().toString(), a);
      return new CorpusSource(input, "file", List.of(d), stamp, null);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read text input " + input + ": " + FileProblems.reason(e), e);
    }
  }

  private static Doc fileDoc(Path file, String name, BasicFileAttributes a) {
    long size = a.size();
    String stamp = size + "\t" + a.lastModifiedTime().toMillis();
    return new Doc() {
      public String name() {
        return name;
      }

      public long size() {
        return size;
      }

      public String stamp() {
        return stamp;
      }

      public InputStream open() throws IOException {
        return Files.newInputStream(file);
      }

      @Override
      public String toString() {
        return file.toString();
      }
    };
  }

  private static CorpusSource directory(Path dir, Set<String> extensions, Path exclude) throws IOException {
    record Found(String rel, Path path, BasicFileAttributes attrs) {}
    List<Found> found = new ArrayList<>();
    Files.walkFileTree(dir, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes attrs) {
        if (!d.equals(dir) && (hidden(d) || (exclude != null && d.equals(exclude)))) {
          return FileVisitResult.SKIP_SUBTREE;
        }
        return FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) {
        if (attrs.isRegularFile() && !hidden(f) && accepted(f.getFileName().toString(), extensions)) {
          String rel = dir.relativize(f).toString().replace(f.getFileSystem().getSeparator(), "/");
          found.add(new Found(rel, f, attrs));
        }
        return FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult visitFileFailed(Path f, IOException e) throws IOException {
        throw new IOException("cannot read " + f + ": " + FileProblems.reason(e), e);
      }
    });
    found.sort(Comparator.comparing(Found::rel));
    List<Doc> docs = new ArrayList<>(found.size());
    for (Found f : found) docs.add(fileDoc(f.path(), f.rel(), f.attrs()));
    return new CorpusSource(dir, "directory", docs, "", null);
  }

  private static CorpusSource archive(Path file, Set<String> extensions, String stamp) throws IOException {
    ZipFile zf;
    try {
      zf = new ZipFile(file.toFile());
    } catch (ZipException e) {
      throw new IllegalArgumentException("text input " + file + " is not a readable zip archive: "
          + e.getMessage(), e);
    }
    try {
      List<ZipEntry> entries = new ArrayList<>();
      var en = zf.entries();
      while (en.hasMoreElements()) {
        ZipEntry e = en.nextElement();
        if (e.isDirectory() || hiddenEntry(e.getName())) continue;
        String base = e.getName().substring(e.getName().lastIndexOf('/') + 1);
        if (accepted(base, extensions)) entries.add(e);
      }
      entries.sort(Comparator.comparing(ZipEntry::getName));
      List<Doc> docs = new ArrayList<>(entries.size());
      for (ZipEntry e : entries) {
        String st = e.getSize() + "\t" + Long.toHexString(e.getCrc()) + "\t" + e.getTime();
        docs.add(new Doc() {
          public String name() {
            return e.getName();
          }

          public long size() {
            return e.getSize();
          }

          public String stamp() {
            return st;
          }

          public InputStream open() throws IOException {
            return zf.getInputStream(e);
          }

          @Override
          public String toString() {
            return file + "!/" + e.getName();
          }
        });
      }
      return new CorpusSource(file, "zip", docs, stamp, zf);
    } catch (RuntimeException e) {
      zf.close();
      throw e;
    }
  }

  private static boolean hidden(Path p) {
    Path n = p.getFileName();
    return n != null && n.toString().startsWith(".");
  }

  private static boolean hiddenEntry(String name) {
    for (String part : name.split("/")) if (part.startsWith(".")) return true;
    return false;
  }

  /** Whether a file name passes the extension filter (empty filter: everything). */
  static boolean accepted(String fileName, Set<String> extensions) {
    if (extensions.isEmpty()) return true;
    int dot = fileName.lastIndexOf('.');
    if (dot < 0) return false;
    return extensions.contains(fileName.substring(dot + 1).toLowerCase(Locale.ROOT));
  }

  @Override
  public void close() {
    if (zip != null) {
      try {
        zip.close();
      } catch (IOException ignored) {
        // read-only; nothing to lose
      }
    }
  }
}

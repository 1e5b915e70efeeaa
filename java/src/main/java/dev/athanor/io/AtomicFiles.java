package dev.athanor.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes files so that readers see either the old content or the complete new content, never a torn file: the
 * data goes to a hidden temporary file in the target's directory, is forced to disk, renamed over the target
 * in one atomic step, and the directory is then forced so the rename itself survives a crash. On failure the
 * temporary file is removed and the target is left as it was.
 *
 * <p>Used for safetensors files, {@code config.json}, shard indexes, token shards and checkpoints; also holds the
 * directory sync and recursive delete those writers need.
 */
public final class AtomicFiles {
  private AtomicFiles() {}

  /** Writes the content of a file to an open channel (positioned at 0). */
  @FunctionalInterface
  public interface Body {
    void writeTo(FileChannel channel) throws IOException;
  }

  /**
   * Replaces {@code target} atomically with what {@code body} writes. The parent directory must exist. The new
   * file gets the default permissions of a newly created file (subject to the umask).
   *
   * @throws IOException when writing, forcing or renaming fails (the target is then unchanged)
   */
  public static void write(Path target, Body body) throws IOException {
    Objects.requireNonNull(target, "target");
    Objects.requireNonNull(body, "body");
    Path abs = target.toAbsolutePath();
    Path dir = abs.getParent();
    if (dir == null) throw new IOException(target + ": has no parent directory");
    if (Files.isDirectory(abs)) throw new IOException(target + ": is a directory");
    Path tmp = null;
    FileChannel ch = null;
    for (int attempt = 0; ch == null; attempt++) {
      tmp = dir.resolve("." + abs.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
      try {
        ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
      } catch (FileAlreadyExistsException e) {
        if (attempt > 100) throw e;
      }
    }
    boolean done = false;
    try {
      try (FileChannel c = ch) {
        body.writeTo(c);
        c.force(true);
      }
      Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE);
      done = true;
    } finally {
      if (!done) {
        try {
          Files.deleteIfExists(tmp);
        } catch (IOException ignored) {
          // the original failure is what matters
        }
      }
    }
    forceDirectory(dir);
  }

  /** Replaces {@code target} atomically with {@code text} in UTF-8. */
  public static void writeString(Path target, String text) throws IOException {
    Objects.requireNonNull(text, "text");
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    write(target, ch -> writeFully(ch, ByteBuffer.wrap(bytes)));
  }

  /** Writes every remaining byte of {@code buf} at the channel's position. */
  public static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
    while (buf.hasRemaining()) ch.write(buf);
  }

  /** Deletes {@code file} if present and forces its directory, so the removal is durable. */
  public static void delete(Path file) throws IOException {
    Path abs = file.toAbsolutePath();
    if (Files.deleteIfExists(abs) && abs.getParent() != null) forceDirectory(abs.getParent());
  }

  /** Forces a directory's entries to disk; silently does nothing where the file system refuses. */
  public static void forceDirectory(Path dir) {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    } catch (IOException | UnsupportedOperationException ignored) {
      // some platforms and file systems cannot open or sync directories; the rename is still atomic there
    }
  }

  /** Deletes {@code root} and everything under it (symbolic links are deleted, not followed); absent is fine. */
  public static void deleteTree(Path root) throws IOException {
    if (!Files.exists(root, java.nio.file.LinkOption.NOFOLLOW_LINKS)) return;
    Files.walkFileTree(root, new java.nio.file.SimpleFileVisitor<>() {
      @Override
      public java.nio.file.FileVisitResult visitFile(Path f, java.nio.file.attribute.BasicFileAttributes a)
          throws IOException {
        Files.deleteIfExists(f);
        return java.nio.file.FileVisitResult.CONTINUE;
      }

      @Override
      public java.nio.file.FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
        if (e != null) throw e;
        Files.deleteIfExists(d);
        return java.nio.file.FileVisitResult.CONTINUE;
      }
    });
  }
}

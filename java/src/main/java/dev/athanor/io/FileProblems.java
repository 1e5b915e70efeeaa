package dev.athanor.io;

import java.io.EOFException;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;

/**
 * What is wrong with a file, in words for people: whether a path that must be a regular file is one (a FIFO, a device
 * or a directory is not: opening a FIFO blocks until a writer appears, and {@code /dev/zero} never ends), and the
 * reason of an I/O failure without the exception's class name. Shared by every reader that opens files users name.
 */
public final class FileProblems {
  private FileProblems() {}

  /**
   * Null when {@code p} is a regular file (symbolic links followed); else what it is instead, as a phrase to follow
   * the path: "does not exist", "is a directory, not a regular file", "is a FIFO (named pipe), not a regular file", ...
   * Never opens the file, so it cannot block.
   */
  public static String notRegularFile(Path p) {
    BasicFileAttributes a;
    try {
      a = Files.readAttributes(p, BasicFileAttributes.class);
    } catch (NoSuchFileException e) {
      return "does not exist";
    } catch (IOException | SecurityException e) {
      return "cannot be read (" + reason(e) + ")";
    }
    if (a.isRegularFile()) return null;
    if (a.isDirectory()) return "is a directory, not a regular file";
    return "is " + kind(p) + ", not a regular file";
  }

  /** "a FIFO (named pipe)", "a character device", "a block device", "a socket" or "a special file" (the last when unknown). */
  static String kind(Path p) {
    try {
      if (Files.getAttribute(p, "unix:mode") instanceof Integer mode) {
        return switch (mode & 0170000) {
          case 0010000 -> "a FIFO (named pipe)";
          case 0020000 -> "a character device";
          case 0060000 -> "a block device";
          case 0140000 -> "a socket";
          default -> "a special file";
        };
      }
    } catch (IOException | UnsupportedOperationException | IllegalArgumentException | SecurityException e) {
      // no unix view on this platform: say it generally
    }
    return "a special file";
  }

  /**
   * The reason of an I/O failure as a short phrase ("permission denied", "no such file or directory", "not valid UTF-8
   * text", "Read-only file system", ...), naming the other file when the failure involves two.
   */
  public static String reason(Throwable e) {
    return switch (e) {
      case NoSuchFileException x -> "no such file or directory" + other(x);
      case AccessDeniedException x -> "permission denied" + other(x);
      case FileAlreadyExistsException x -> "already exists" + other(x);
      case NotDirectoryException x -> "not a directory" + other(x);
      case DirectoryNotEmptyException x -> "directory not empty" + other(x);
      case FileSystemException x when x.getReason() != null -> x.getReason() + other(x);
      case FileSystemException x -> "file system error" + other(x);
      case CharacterCodingException x -> "not valid UTF-8 text";
      case EOFException x when x.getMessage() == null -> "unexpected end of file";
      case SecurityException x -> "not allowed by the security manager";
      default -> e.getMessage() != null && !e.getMessage().isBlank() ? e.getMessage() : words(e.getClass().getSimpleName());
    };
  }

  /** {@link #reason} after the file it concerns, when the exception names one: "runs/x: permission denied". */
  public static String describe(Throwable e) {
    return e instanceof FileSystemException x && x.getFile() != null ? x.getFile() + ": " + reason(e) : reason(e);
  }

  private static String other(FileSystemException e) {
    return e.getOtherFile() == null ? "" : " (" + e.getOtherFile() + ")";
  }

  /**
   * {@code s} with control characters (which names and values read from a file may hold) spelled as {@code \}{@code
   * uXXXX}, so that a message is one line and cannot send escape sequences to a terminal.
   */
  public static String printable(String s) {
    if (s == null || s.chars().noneMatch(Character::isISOControl)) return s;
    StringBuilder sb = new StringBuilder(s.length() + 16);
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (Character.isISOControl(c)) sb.append(String.format("\\u%04x", (int) c));
      else sb.append(c);
    }
    return sb.toString();
  }

  /** "ClosedByInterruptException" as "closed by interrupt". */
  public static String words(String className) {
    String s = className.replaceAll("(Exception|Error)$", "");
    return s.replaceAll("([a-z0-9])([A-Z])", "$1 $2").toLowerCase(java.util.Locale.ROOT);
  }
}

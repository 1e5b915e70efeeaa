package dev.athanor.cli;

import dev.athanor.io.FileProblems;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Model.CommandSpec;

/**
 * Checks, before a command does any work, that the paths it will write can be written: a directory that exists and is
 * writable, or that can be created in a writable directory; a file that is a writable regular file, or that can be
 * created. Each failure is a usage error (exit code 2) naming the flag, the path and what is wrong, so that a run
 * never trains for hours and then fails to save. Nothing is created here.
 */
final class OutputPaths {
  private OutputPaths() {}

  /** Checks the directory of {@code flag}: an existing writable directory, or one that can be created. */
  static void directory(CommandSpec spec, String flag, Path dir) {
    if (Files.isDirectory(dir)) {
      if (!Files.isWritable(dir)) throw usage(spec, flag, dir, "is a directory that is not writable");
      return;
    }
    if (Files.exists(dir)) throw usage(spec, flag, dir, notADirectory(dir));
    creatable(spec, flag, dir);
  }

  /** Checks the file of {@code flag}: an existing writable regular file, or one that can be created. */
  static void file(CommandSpec spec, String flag, Path file) {
    if (Files.exists(file)) {
      String problem = FileProblems.notRegularFile(file);
      if (problem != null) throw usage(spec, flag, file, problem);
      if (!Files.isWritable(file)) throw usage(spec, flag, file, "is a file that is not writable");
      return;
    }
    creatable(spec, flag, file);
  }

  /** Checks that {@code p}, which does not exist, can be created: its nearest existing ancestor is a writable directory. */
  private static void creatable(CommandSpec spec, String flag, Path p) {
    Path a = p.toAbsolutePath().normalize().getParent();
    while (a != null && !Files.exists(a)) a = a.getParent();
    if (a == null) throw usage(spec, flag, p, "cannot be created (no existing directory above it)");
    if (!Files.isDirectory(a)) throw usage(spec, flag, p, "cannot be created: " + a + " " + notADirectory(a));
    if (!Files.isWritable(a)) {
      throw usage(spec, flag, p, "cannot be created: the directory " + a + " is not writable (permission denied or a "
          + "read-only file system)");
    }
  }

  /** What {@code p}, which exists and is not a directory, is: "is a file, not a directory", "is a FIFO (named pipe), not a directory". */
  private static String notADirectory(Path p) {
    String problem = FileProblems.notRegularFile(p);
    return (problem == null ? "is a file" : problem.replace(", not a regular file", "")) + ", not a directory";
  }

  private static RuntimeException usage(CommandSpec spec, String flag, Path p, String problem) {
    return Options.usage(spec, flag + " " + p + " " + problem + "; give another " + flag);
  }
}

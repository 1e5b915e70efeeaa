package dev.athanor.cli;

import java.io.PrintStream;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * What the process says when a termination signal (SIGTERM, Ctrl-C) ends a command before it finished, so that
 * no command ends silently. A command names the phase it is in ({@link #phase}); the training loop, which stops
 * cleanly and reports a signal itself, marks itself as handling it ({@link #handledBy}). Only the process entry
 * point ({@link Main#main}) installs the hook: commands run in-process (tests, embedding) are unaffected.
 */
final class Termination {
  /** What the command is doing and what a stop there means, e.g. "tokenizing the data; nothing was saved". */
  private static volatile String phase;
  private static volatile boolean handled;
  private static final AtomicBoolean FINISHED = new AtomicBoolean();

  private Termination() {}

  /** Installs the hook for {@code command} (the first argument, may be null), reporting on {@code err}. */
  static void install(String command, PrintStream err) {
    String who = command == null || command.startsWith("-") ? "athanor" : "athanor " + command;
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      String p = phase;
      if (FINISHED.get() || handled || p == null) return;
      err.println(who + ": stopped by a termination signal while " + p);
      err.flush();
    }, "athanor-termination-note"));
  }

  /** The command is now {@code doing} (what a stop now means included); null: nothing worth a note. */
  static void phase(String doing) {
    phase = doing;
  }

  /** Whether a phase that reports a termination signal itself is running (true while it runs). */
  static void handledBy(boolean self) {
    handled = self;
  }

  /** The command returned: exiting now is not a stop. */
  static void finished() {
    FINISHED.set(true);
  }
}

package dev.athanor.cli;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.List;

/**
 * The {@code athanor} command line. Subcommands: {@code info} (backends, devices, CPU features,
 * kernels, memory tiers) and {@code help}. The training, generation and scoring commands arrive with
 * the model work.
 */
public final class Main {
  private Main() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  /** Runs one command and returns the process exit code (0 success, 1 failure, 2 usage error). */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    String command = args.length == 0 ? "help" : args[0];
    List<String> rest = Arrays.asList(args).subList(Math.min(1, args.length), args.length);
    try {
      switch (command) {
        case "info" -> {
          InfoCommand.run(rest, out);
          return 0;
        }
        case "help", "-h", "--help" -> {
          usage(out);
          return 0;
        }
        default -> {
          err.println("athanor: unknown command '" + command + "'");
          usage(err);
          return 2;
        }
      }
    } catch (IllegalArgumentException e) {
      err.println("athanor " + command + ": " + e.getMessage());
      return 2;
    } catch (RuntimeException e) {
      err.println("athanor " + command + ": " + e.getMessage());
      if (Boolean.getBoolean("athanor.debug")) e.printStackTrace(err);
      return 1;
    }
  }

  static void usage(PrintStream out) {
    out.println("""
        usage: athanor <command> [options]

        commands:
          info [--json]   backends, devices, CPU features, kernels available, memory tiers
          help            this text

        (the launcher also takes: ./athanor test — the whole test suite; ./athanor build)""");
  }
}

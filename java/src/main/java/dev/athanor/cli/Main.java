package dev.athanor.cli;

import dev.athanor.memory.MemoryManager;
import dev.athanor.runtime.NativeLibrary;
import dev.athanor.runtime.NativeRuntime;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.AutoComplete;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.HelpCommand;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.MissingParameterException;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.ScopeType;
import picocli.CommandLine.Spec;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * The {@code athanor} command line (picocli): {@code demo}, {@code train}, {@code generate}, {@code score},
 * {@code bench}, {@code info}, {@code completion} and {@code help}. Every command has its own {@code --help};
 * options may come from files ({@code @run.args}). Exit codes: 0 success (and {@code --help}, {@code --version}),
 * 1 failure, 2 usage error (message on stderr naming the flag, the value and what was expected).
 */
@Command(name = "athanor", scope = ScopeType.INHERIT, mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
    description = "Train and run GPT-2 and Llama models on CPUs and CUDA GPUs.",
    synopsisSubcommandLabel = "COMMAND",
    subcommands = {DemoCommand.class, TrainCommand.class, PlanCommand.class, GenerateCommand.class, ScoreCommand.class, BenchCommand.class,
        LaunchCommand.class, InfoCommand.class, Main.Completion.class, HelpCommand.class})
public final class Main implements Runnable {
  /** Exit code of a usage error. */
  public static final int USAGE = 2;

  /** The end of {@code athanor --help} (set on the root only: the other attributes are inherited). */
  private static final String[] FOOTER = {"%nEvery command has its own help: athanor COMMAND --help, or athanor help COMMAND.",
      "Options may also come from files, one or more per line (# comments): athanor train @run.args",
      "Bash completion: source <(athanor completion)",
      "The launcher also takes: ./athanor test (the whole test suite), ./athanor build."};

  final PrintStream out;
  final PrintStream err;
  @Spec CommandSpec spec;

  private Main(PrintStream out, PrintStream err) {
    this.out = out;
    this.err = err;
  }

  public static void main(String[] args) {
    Termination.install(args.length > 0 ? args[0] : null, System.err);
    int code = run(args, System.out, System.err);
    Termination.finished();
    System.exit(code);
  }

  /** Runs one command and returns the process exit code (0 success, 1 failure, 2 usage error). */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    return commandLine(out, err).execute(args);
  }

  /** The command line with its converters, range checks and error handling; writes to {@code out} and {@code err}. */
  static CommandLine commandLine(PrintStream out, PrintStream err) {
    CommandLine cl = configure(new CommandLine(new Main(out, err)));
    cl.getSubcommands().get("launch").setStopAtPositional(true);  // everything after the command is the command's
    cl.getCommandSpec().usageMessage().footer(FOOTER);
    cl.setOut(new PrintWriter(out, true));
    cl.setErr(new PrintWriter(err, true));
    cl.setExecutionStrategy(parsed -> {
      Integer help = CommandLine.executeHelpRequest(parsed);
      if (help != null) return help;
      String budgets = MemoryManager.configurationError();  // a bad -Dathanor.budget.* property: one line, before any work
      if (budgets != null) {
        CommandLine last = parsed.asCommandLineList().get(parsed.asCommandLineList().size() - 1);
        last.getErr().println(last.getCommandSpec().qualifiedName() + ": " + budgets);
        last.getErr().flush();
        return USAGE;
      }
      for (CommandLine c : parsed.asCommandLineList()) Options.check(c.getCommandSpec());
      return new CommandLine.RunLast().execute(parsed);
    });
    cl.setParameterExceptionHandler(Main::usageError);
    cl.setExecutionExceptionHandler((e, c, parsed) -> {
      PrintWriter w = c.getErr();
      w.println(c.getCommandSpec().qualifiedName() + ": " + Messages.of(e));
      if (Boolean.getBoolean("athanor.debug")) e.printStackTrace(w);
      w.flush();
      return e instanceof IllegalArgumentException ? USAGE : 1;
    });
    return cl;
  }

  /** {@code cl} with the converters of {@link Options} and enum values in any case. */
  static CommandLine configure(CommandLine cl) {
    Options.registerConverters(cl);
    cl.setCaseInsensitiveEnumValuesAllowed(true);
    cl.setUsageHelpAutoWidth(true); // the terminal's width; 80 columns elsewhere
    return cl;
  }

  /**
   * A usage error: the message, picocli's suggestion for a mistyped flag or command ("Did you mean: --steps?"), and
   * where to find help (the command list, for an unknown command).
   */
  private static int usageError(ParameterException e, String[] args) {
    CommandLine c = e.getCommandLine();
    if (e instanceof MissingParameterException && !c.getUnmatchedArguments().isEmpty()) {
      e = new UnmatchedArgumentException(c, c.getUnmatchedArguments()); // "--promt x": the typo, not the missing --prompt
    }
    PrintWriter w = c.getErr();
    String name = c.getCommandSpec().qualifiedName();
    UnmatchedArgumentException u = e instanceof UnmatchedArgumentException x ? x : null;
    boolean unknownCommand = u != null && !u.isUnknownOption() && !c.getSubcommands().isEmpty();
    if (unknownCommand) w.println(name + ": unknown command '" + u.getUnmatched().get(0) + "'");
    else w.println(name + ": " + Messages.clean(e.getMessage()));
    List<String> suggestions = u == null ? List.of() : u.getSuggestions();
    if (!suggestions.isEmpty()) {
      w.println("Did you mean: " + (unknownCommand ? name + " " : "") + String.join(" or ", suggestions) + "?");
    }
    if (unknownCommand) c.usage(w);
    else w.println("Try '" + name + " --help' for more information.");
    w.flush();
    return USAGE;
  }

  /** {@code athanor} alone: the list of commands. */
  @Override
  public void run() {
    spec.commandLine().usage(out);
  }

  /** {@code --version}: this library's version and the native library's. */
  static final class Version implements IVersionProvider {
    @Override
    public String[] getVersion() {
      String failed = NativeLibrary.tryLoad();
      return new String[] {"athanor " + NativeLibrary.javaVersion(),
          failed == null ? "libathanor " + NativeRuntime.version() + " (" + (NativeRuntime.builtWithCuda() ? "with CUDA kernels"
              : "CPU-only") + ") from " + NativeLibrary.loadedFrom() : "libathanor: not loaded: " + failed,
          "Java " + Runtime.version() + " (" + System.getProperty("java.vm.name") + ")"};
    }
  }

  /** {@code athanor completion}: a bash completion script for every command and option. */
  @Command(name = "completion", description = {"Print a bash completion script for athanor's commands and options.",
      "Use: source <(./athanor completion)   (or save it under /etc/bash_completion.d/)"})
  static final class Completion implements Callable<Integer> {
    @Spec CommandSpec spec;
    @ParentCommand Main main;

    @Override
    public Integer call() {
      main.out.print(AutoComplete.bash("athanor", spec.root().commandLine()));
      main.out.flush();
      return 0;
    }
  }
}

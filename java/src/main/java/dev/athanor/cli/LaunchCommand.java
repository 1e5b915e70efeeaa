package dev.athanor.cli;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code athanor launch}: starts one command on N processes through Open MPI's {@code mpirun}, so that a parallel run
 * is one command: {@code athanor launch train ... --dp 4}. The process count comes from the command's {@code --dp},
 * {@code --tp} and {@code --pp} (their product) or from {@code --np}; every rank runs this same Java and class path
 * with the command's arguments. On one machine each rank gets {@code --threads} = CPUs / N unless the command sets
 * it (results never depend on the thread count), and {@code --oversubscribe} when N exceeds the CPUs; as root, the
 * environment Open MPI needs for that is set. With {@code --hostfile} the same paths must exist on every machine and
 * the checkpoint directory must be shared.
 */
@Command(name = "launch", sortOptions = false,
    description = {"Run a command on N processes through mpirun (Open MPI): athanor launch train ... --dp 4.",
        "N is the product of the command's --dp, --tp and --pp, or --np. Every rank runs the same Java, class path and "
            + "arguments; on one machine each gets --threads CPUs/N unless the command gives --threads."},
    footer = {"%nExamples:",
        "  athanor launch train --model gpt2-tiny --data corpus.txt --steps 100 --dp 2",
        "  athanor launch --hostfile hosts --np 8 train @run.args --dp 8 --zero 1",
        "  athanor launch --dry-run train ... --dp 4      (print the mpirun command only)"})
final class LaunchCommand implements Callable<Integer> {
  @ParentCommand Main main;
  @Spec CommandSpec spec;

  @Option(names = {"-n", "--np"}, paramLabel = "N",
      description = "processes to start (default: the command's --dp x --tp x --pp; must match them when given)")
  @Options.Range(min = 1)
  Integer np;

  @Option(names = "--hostfile", paramLabel = "FILE",
      description = "Open MPI hostfile: the machines and their slots (the same paths must exist on each)")
  Path hostfile;

  @Option(names = "--mpirun", paramLabel = "PATH", defaultValue = "mpirun",
      description = "the mpirun to use. Default: ${DEFAULT-VALUE} (from PATH)")
  String mpirun;

  @Option(names = "--dry-run", description = "print the mpirun command line and exit")
  boolean dryRun;

  @Parameters(index = "0", paramLabel = "COMMAND", description = "the command every rank runs, e.g. train")
  String command;

  @Parameters(index = "1..*", paramLabel = "ARGS", description = "its arguments, as on its own command line")
  List<String> args = new ArrayList<>();

  /** The parallel dimensions whose product is the process count. */
  static final List<String> DIMENSIONS = List.of("--dp", "--tp", "--pp");

  @Override
  public Integer call() throws IOException, InterruptedException {
    Plan plan = plan(Runtime.getRuntime().availableProcessors(), runningAsRoot());
    if (dryRun) {
      main.out.println(String.join(" ", quoted(plan.command())));
      return 0;
    }
    Path exe = resolve(mpirun);
    if (exe == null) {
      main.err.println("athanor launch: " + mpirun + " was not found" + (mpirun.contains("/") ? "" : " on PATH")
          + "; install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or give --mpirun PATH");
      return 1;
    }
    List<String> cmd = new ArrayList<>(plan.command());
    cmd.set(0, exe.toString());
    main.err.println("athanor launch: " + plan.note() + String.join(" ", quoted(cmd)));
    main.err.flush();
    ProcessBuilder pb = new ProcessBuilder(cmd).inheritIO();
    pb.environment().putAll(plan.environment());
    Termination.handledBy(true);  // mpirun forwards a SIGTERM to the ranks, which report it themselves
    Process p = pb.start();
    Thread forward = new Thread(() -> {
      if (p.isAlive()) {
        p.destroy();  // SIGTERM to mpirun, which passes it on to every rank
        try {
          p.waitFor();
        } catch (InterruptedException ignored) {
          Thread.currentThread().interrupt();
        }
      }
    }, "athanor-launch-forward");
    Runtime.getRuntime().addShutdownHook(forward);
    int rc = p.waitFor();
    try {
      Runtime.getRuntime().removeShutdownHook(forward);
    } catch (IllegalStateException shuttingDown) {
      // the hook is running: it waits for mpirun too
    }
    return rc;
  }

  /** What to run: the mpirun command line, the environment it adds, and a note on the choices it made. */
  record Plan(List<String> command, Map<String, String> environment, String note) {}

  /** The mpirun command for {@code cpus} CPUs on this machine, as root or not (a usage error when N is unclear). */
  Plan plan(int cpus, boolean root) {
    if (command.startsWith("-")) {
      throw Options.usage(spec, "'" + command + "' is not a command: give the command to launch first, e.g. launch train ... --dp 2");
    }
    if (command.equals("launch")) throw Options.usage(spec, "launch cannot launch itself");
    boolean fromFile = args.stream().anyMatch(a -> a.startsWith("@"));
    long product = 1;
    StringBuilder dims = new StringBuilder();
    for (String d : DIMENSIONS) {
      Integer v = flagValue(d);
      if (v == null) continue;
      product *= v;
      dims.append(dims.length() == 0 ? "" : " x ").append(d).append(' ').append(v);
    }
    int n;
    if (np == null) {
      if (dims.length() == 0) {
        throw Options.usage(spec, "how many processes? give the command's --dp (or --tp/--pp), or --np N"
            + (fromFile ? " (flags inside @files are not read by launch)" : ""));
      }
      if (product > Integer.MAX_VALUE) throw Options.usage(spec, dims + " = " + product + " processes is too many");
      n = (int) product;
    } else {
      n = np;
      if (dims.length() > 0 && product != n) {
        throw Options.usage(spec, "--np " + n + " but the command asks for " + dims + " = " + product
            + " processes: give --np " + product + " or change the command's flags");
      }
    }
    List<String> cmd = new ArrayList<>(List.of(mpirun, "-np", Integer.toString(n)));
    StringBuilder note = new StringBuilder();
    if (hostfile != null) {
      if (!Files.isReadable(hostfile)) throw Options.usage(spec, "--hostfile " + hostfile + " is not a readable file");
      cmd.addAll(List.of("--hostfile", hostfile.toString()));
    } else if (n > cpus) {
      cmd.add("--oversubscribe");
      note.append(n).append(" processes on ").append(cpus).append(" CPUs (oversubscribed); ");
    }
    cmd.addAll(List.of("--bind-to", "none"));  // each rank runs several threads
    cmd.addAll(rankCommand());
    cmd.add(command);
    cmd.addAll(args);
    boolean threadsGiven = args.stream().anyMatch(a -> a.equals("--threads") || a.startsWith("--threads="));
    if (hostfile == null && !threadsGiven && !fromFile && n > 1 && takesThreads(command)) {
      int t = Math.max(1, cpus / n);
      cmd.addAll(List.of("--threads", Integer.toString(t)));
      note.append("--threads ").append(t).append(" per process; ");
    }
    Map<String, String> env = new LinkedHashMap<>();
    if (root) {  // Open MPI refuses root unless told, and containers lack the kernel's cross-memory attach
      env.put("OMPI_ALLOW_RUN_AS_ROOT", "1");
      env.put("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    if (System.getenv("OMPI_MCA_btl_vader_single_copy_mechanism") == null) {
      env.put("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    }
    return new Plan(List.copyOf(cmd), Map.copyOf(env), note.toString());
  }

  /** The value of {@code flag} in the command's arguments ({@code --dp 2} or {@code --dp=2}), or null. */
  private Integer flagValue(String flag) {
    for (int i = 0; i < args.size(); i++) {
      String a = args.get(i), v = null;
      if (a.equals(flag)) {
        if (i + 1 >= args.size()) throw Options.usage(spec, command + " " + flag + " needs a value");
        v = args.get(i + 1);
      } else if (a.startsWith(flag + "=")) {
        v = a.substring(flag.length() + 1);
      }
      if (v == null) continue;
      try {
        int x = Integer.parseInt(v.strip());
        if (x < 1) throw new NumberFormatException();
        return x;
      } catch (NumberFormatException e) {
        throw Options.usage(spec, command + " " + flag + " '" + v + "' is not a positive whole number");
      }
    }
    return null;
  }

  /** Whether {@code command} has the --threads option. */
  private boolean takesThreads(String name) {
    CommandSpec sub = spec.parent() == null ? null : spec.parent().subcommands().containsKey(name)
        ? spec.parent().subcommands().get(name).getCommandSpec() : null;
    return sub != null && sub.findOption("--threads") != null;
  }

  /** This JVM, its class path and the CLI's main class, with the {@code athanor.*} system properties passed on. */
  static List<String> rankCommand() {
    List<String> c = new ArrayList<>();
    c.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    c.add("--enable-native-access=ALL-UNNAMED");
    for (String k : System.getProperties().stringPropertyNames().stream().sorted().toList()) {
      if (k.startsWith("athanor.")) c.add("-D" + k + "=" + System.getProperty(k));
    }
    c.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
    return c;
  }

  /** Whether this process runs as root (uid 0), from /proc on Linux, else the user name. */
  static boolean runningAsRoot() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("Uid:")) return line.split("\\s+")[1].equals("0");
      }
    } catch (IOException | RuntimeException e) {
      // not Linux: fall through
    }
    return "root".equals(System.getProperty("user.name"));
  }

  /** {@code name} as an executable file: a path, or the first match on PATH; null when none. */
  static Path resolve(String name) {
    if (name.contains(File.separator)) {
      Path p = Path.of(name);
      return Files.isExecutable(p) ? p : null;
    }
    String path = System.getenv("PATH");
    if (path == null) return null;
    for (String d : path.split(File.pathSeparator)) {
      if (d.isBlank()) continue;
      Path p = Path.of(d, name);
      if (Files.isRegularFile(p) && Files.isExecutable(p)) return p;
    }
    return null;
  }

  /** The words of a command line, single-quoted where the shell would split or expand them. */
  static List<String> quoted(List<String> words) {
    return words.stream().map(w -> w.isEmpty() || !w.matches("[A-Za-z0-9_./:=,@+%-]+") ? "'" + w.replace("'", "'\\''") + "'" : w)
        .toList();
  }
}

package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonParser;
import dev.athanor.cli.Main;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.nn.ModelConfig;
import dev.athanor.report.RunSummary;
import dev.athanor.testing.ChildClassPath;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A tiny training setup for the checkpoint tests: a 2-layer GPT-2 config.json (vocab 300, hidden 64, 2 heads,
 * context 64) and a token shard of 4000 tokens in {@code dir}, the {@code train} command line over them, and
 * ways to run it in this JVM ({@link #runInProcess}) or in a child JVM ({@link #startChild}).
 */
public final class TrainFixture {
  static final int VOCAB = 300;
  static final int BATCH = 4;
  static final int SEQ = 32;
  /** 4000 tokens = 124 windows of 32: a shuffled run of 60 steps x 4 rows crosses two epoch boundaries. */
  static final int TOKENS = 4000;

  public final Path dir;
  public final Path config;
  public final Path data;

  private TrainFixture(Path dir) {
    this.dir = dir;
    this.config = dir.resolve("config.json");
    this.data = dir.resolve("data.bin");
  }

  public static ModelConfig model() {
    return ModelConfig.gpt2(VOCAB, 64, 2, 64, 2);
  }

  /** Writes config.json and data.bin into {@code dir}. */
  public static TrainFixture create(Path dir) throws IOException {
    TrainFixture f = new TrainFixture(dir);
    Files.createDirectories(dir);
    Files.writeString(f.config, HfConfig.toJson(model()));
    writeTokens(f.data, TOKENS, -1, -1);
    return f;
  }

  /**
   * A shard of {@code n} learnable tokens (a noisy linear recurrence mod the vocabulary); when {@code badAt >= 0},
   * the token at that position is {@code badId} instead (which may lie outside the model's vocabulary).
   */
  static void writeTokens(Path file, int n, int badAt, int badId) {
    SplittableRandom r = new SplittableRandom(42);
    try (TokenShardWriter w = TokenShardWriter.create(file, badId >= VOCAB ? badId + 1 : VOCAB)) {
      int prev = 1;
      for (int i = 0; i < n; i++) {
        prev = (prev * 7 + r.nextInt(4)) % VOCAB;
        w.write(i == badAt ? badId : prev);
      }
    }
  }

  /** {@code train} on the CPU with shuffling, checkpoints into {@code ckpt} every {@code every} steps, and a log. */
  List<String> trainArgs(Path ckpt, Path log, int steps, int every, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--config", config.toString(), "--data", data.toString(), "--device",
        "cpu", "--steps", Integer.toString(steps), "--batch", Integer.toString(BATCH), "--seq", Integer.toString(SEQ),
        "--shuffle", "true", "--warmup", "3", "--log", log.toString(), "--out", dir.resolve("out").toString()));
    if (ckpt != null) a.addAll(List.of("--checkpoint-dir", ckpt.toString(), "--checkpoint-every", Integer.toString(every)));
    a.addAll(Arrays.asList(extra));
    return a;
  }

  /** What an in-process run printed and returned. */
  record Run(int exitCode, String out, String err) {
    String all() {
      return out + err;
    }
  }

  /** Runs {@code dev.athanor.cli.Main.run} in this JVM. */
  static Run runInProcess(List<String> args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
    int rc;
    try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
        PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
      rc = Main.run(args.toArray(String[]::new), o, e);
    }
    return new Run(rc, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  /** Runs {@code args} in this JVM and fails with its output unless it exits with 0. */
  static Run runOk(List<String> args) {
    Run r = runInProcess(args);
    assertEquals(0, r.exitCode(), () -> "train failed:\n" + r.all());
    return r;
  }

  /**
   * Starts {@code dev.athanor.cli.Main args} in a child JVM with this JVM's class path, native access, the
   * native-library cache in {@code dir}, and {@code props} as extra {@code -D} options; stdout and stderr go to
   * {@code output}.
   */
  Process startChild(List<String> props, List<String> args, Path output) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.add("--enable-native-access=ALL-UNNAMED");
    cmd.add("-Xmx256m");
    cmd.add("-XX:TieredStopAtLevel=1");  // a short run: the C1 compiler only starts faster
    cmd.add("-Dathanor.cache.dir=" + dir.resolve("native-cache"));
    cmd.add("-Djava.awt.headless=true");
    cmd.addAll(props);
    cmd.add("-cp");
    cmd.add(ChildClassPath.forMain());
    cmd.add(Main.class.getName());
    cmd.addAll(args);
    return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(output.toFile()).start();
  }

  /** Waits up to two minutes for {@code p}; kills it and fails otherwise. Returns the exit code. */
  static int await(Process p, Path output) throws InterruptedException, IOException {
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly().waitFor();
      fail("child did not finish in 120 s; output:\n" + Files.readString(output));
    }
    return p.exitValue();
  }

  /**
   * The complete step lines of a JSON-lines log (a partial last line is not counted, nor the summary line a run ends
   * its log with); empty if it does not exist.
   */
  static List<String> logLines(Path log) throws IOException {
    if (!Files.exists(log)) return List.of();
    String s = Files.readString(log, StandardCharsets.UTF_8);
    int end = s.lastIndexOf('\n');
    return end < 0 ? List.of() : Stream.of(s.substring(0, end).split("\n")).filter(l -> !RunSummary.isSummaryLine(l)).toList();
  }

  /** The "step" and "loss" fields of each log line, as written ("3:5.6912084"). */
  static List<String> stepLosses(Path log) throws IOException {
    List<String> r = new ArrayList<>();
    for (String line : logLines(log)) {
      var o = JsonParser.parseString(line).getAsJsonObject();
      r.add(o.get("step").getAsString() + ":" + o.get("loss").getAsString());
    }
    return r;
  }

  /** The step of the newest step-* directory in {@code ckpt}. */
  static long newestStep(Path ckpt) throws IOException {
    List<Path> dirs = CheckpointManager.stepDirs(ckpt);
    assertTrue(!dirs.isEmpty(), "no checkpoint in " + ckpt);
    return Long.parseLong(dirs.get(dirs.size() - 1).getFileName().toString().substring("step-".length()));
  }

  /** The names of the step-* directories of {@code ckpt}, oldest first. */
  static List<String> stepNames(Path ckpt) throws IOException {
    return CheckpointManager.stepDirs(ckpt).stream().map(p -> p.getFileName().toString()).toList();
  }

  /** The checkpoints (all kept), log and losses of a finished run, for tests that copy and alter them. */
  record Finished(Path checkpoints, Path log, List<String> losses) {
    /** A fresh copy of the checkpoints, as {@code tmp/ck}. */
    Path copyTo(Path tmp) throws IOException {
      Path d = tmp.resolve("ck");
      copyTree(checkpoints, d);
      return d;
    }
  }

  /** Runs {@code steps} steps with a checkpoint every {@code every}, all kept, into {@code base-ck} of this fixture. */
  Finished finishedRun(int steps, int every) throws IOException {
    Path ck = dir.resolve("base-ck"), log = dir.resolve("base.jsonl");
    runOk(trainArgs(ck, log, steps, every, "--keep", "10"));
    return new Finished(ck, log, stepLosses(log));
  }

  /** The directory of step {@code s} in {@code ckpt}. */
  static Path step(Path ckpt, long s) {
    return ckpt.resolve(String.format("step-%08d", s));
  }

  /** Flips one bit in the middle of {@code f}. */
  static void flipByte(Path f) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      long at = raf.length() / 2;
      raf.seek(at);
      int b = raf.read();
      raf.seek(at);
      raf.write(b ^ 0x10);
    }
  }

  /**
   * Waits until the child {@code p} has logged {@code lines} steps into {@code log}, sends it SIGTERM and waits for it
   * to end; fails when it ends before. Returns its exit code.
   */
  static int terminateAfter(Process p, Path log, int lines, Path output) throws InterruptedException, IOException {
    long deadline = System.nanoTime() + 120_000_000_000L;
    while (p.isAlive() && logLines(log).size() < lines && System.nanoTime() < deadline) Thread.sleep(5);
    assertTrue(p.isAlive(), () -> "the child ended early:\n" + readOrWhy(output));
    p.destroy();  // SIGTERM on Linux
    return await(p, output);
  }

  /** The text of {@code f}, or why it cannot be read (for failure messages). */
  static String readOrWhy(Path f) {
    try {
      return Files.readString(f);
    } catch (IOException e) {
      return "(" + f + ": " + e.getMessage() + ")";
    }
  }

  /** Copies a directory tree. */
  static void copyTree(Path from, Path to) throws IOException {
    try (var s = Files.walk(from)) {
      for (Path p : s.toList()) {
        Path q = to.resolve(from.relativize(p).toString());
        if (Files.isDirectory(p)) Files.createDirectories(q);
        else Files.copy(p, q);
      }
    }
  }
}

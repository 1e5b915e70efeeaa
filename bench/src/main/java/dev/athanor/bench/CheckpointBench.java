package dev.athanor.bench;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.checkpoint.CheckpointManager;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * How much a checkpoint costs the training loop on the CPU, sync vs async, and how fast the background write
 * goes compared with the disk itself, for the demo model ({@code gpt2-tiny}, 16M parameters) and GPT-2 124M.
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar dev.athanor.bench.CheckpointBench \
 *       [--models gpt2-tiny,gpt2] [--saves 5] [--dir DIR] [--out FILE.md] [--note TEXT]...
 * </pre>
 *
 * <p>Per model: a real {@link Trainer} (batch x seq as in the table) after one warm-up step; then {@code saves}
 * rounds of, in this order:
 * <ol>
 *   <li><b>sync save</b> ({@link CheckpointManager} with {@code async = false}, keep 1): the time
 *       {@code save()} blocks the loop = snapshot + write + fsync + CRC32C + rename + rotation;
 *   <li><b>disk</b>: one file of the same size as that checkpoint written sequentially with a
 *       {@link FileChannel} from an 8 MiB direct buffer, then {@code force(true)}; time = write + fsync;
 *   <li><b>async save</b> (keep 1, no write in flight before it): the time {@code save()} blocks the loop =
 *       the snapshot into host memory; then training steps run while the background write goes on, until it is
 *       done (at least one step); background write time = from {@code save()} returning to the write being done.
 * </ol>
 * Bandwidths are checkpoint bytes (all files) divided by the time. Medians over the rounds are reported; the
 * first async save is also shown on its own, as it allocates the host buffers that later saves reuse.
 */
public final class CheckpointBench {
  private CheckpointBench() {}

  private record Round(double syncStall, double diskSeconds, double asyncStall, double writeSeconds, int stepsDuringWrite,
      double stepSecondsDuringWrite) {}

  private record Result(String name, ModelConfig config, int batch, int seq, long bytes, double idleStep, List<Round> rounds) {}

  public static void main(String[] args) throws Exception {
    List<String> models = List.of("gpt2-tiny", "gpt2");
    int saves = 5;
    Path dir = Path.of(System.getProperty("java.io.tmpdir"), "athanor-checkpoint-bench-" + ProcessHandle.current().pid());
    Path out = null;
    List<String> notes = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--models" -> models = List.of(args[++i].split(","));
        case "--saves" -> saves = Integer.parseInt(args[++i]);
        case "--dir" -> dir = Path.of(args[++i]);
        case "--out" -> out = Path.of(args[++i]);
        case "--note" -> notes.add(args[++i]);
        default -> {
          System.err.println("usage: CheckpointBench [--models gpt2-tiny,gpt2] [--saves N] [--dir DIR] [--out FILE.md] [--note TEXT]...");
          System.exit(2);
        }
      }
    }
    if (saves < 1) throw new IllegalArgumentException("--saves must be >= 1, got " + saves);
    Files.createDirectories(dir);
    String loadBefore = loadAverage();
    List<Result> results = new ArrayList<>();
    try {
      for (String m : models) results.add(run(m, saves, dir.resolve(m)));
    } finally {
      deleteTree(dir);
    }
    String md = render(results, dir, saves, loadBefore, loadAverage(), notes);
    System.out.print(md);
    if (out != null) {
      if (out.toAbsolutePath().getParent() != null) Files.createDirectories(out.toAbsolutePath().getParent());
      Files.writeString(out, md);
      System.err.println("CheckpointBench: wrote " + out);
    }
  }

  private static Result run(String name, int saves, Path work) throws Exception {
    ModelConfig mc = ModelConfig.preset(name);
    boolean small = mc.parameterCount() < 50_000_000L;
    int batch = small ? 8 : 1;  // gpt2-tiny: the CPU demo's batch; 124M: one sequence, to keep the CPU steps short
    int seq = 256;
    Files.createDirectories(work);
    Path shard = work.resolve("tokens.bin");
    SplittableRandom rnd = new SplittableRandom(1);
    try (TokenShardWriter w = TokenShardWriter.create(shard, mc.vocabSize())) {
      for (long i = 0; i < 64L * batch * seq + 1; i++) w.write(rnd.nextInt(mc.vocabSize()));
    }
    System.err.printf(Locale.ROOT, "CheckpointBench: %s (%.1fM parameters), batch %d x seq %d%n", name,
        mc.parameterCount() / 1e6, batch, seq);
    TrainConfig tc = TrainConfig.defaults(1_000_000, batch, seq);
    List<Round> rounds = new ArrayList<>();
    long bytes = 0;
    double idle;
    try (TokenDataset data = TokenDataset.open(shard);
        Transformer model = Transformer.create(mc, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(data, batch, seq, false, 1));
        CheckpointManager sync = new CheckpointManager(work.resolve("sync"), 1, false);
        CheckpointManager async = new CheckpointManager(work.resolve("async"), 1, true)) {
      model.initialize(1);
      async.prepare(t);  // as `train` does: the first snapshot's host buffers are allocated in the background
      t.step();  // warm-up: workspace allocated, optimizer moments non-zero
      double[] idleSteps = new double[3];
      for (int i = 0; i < idleSteps.length; i++) idleSteps[i] = t.step().seconds();
      idle = median(idleSteps);
      for (int r = 0; r < saves; r++) {
        double syncStall = sync.save(t);
        bytes = dirBytes(sync.lastWritten().orElseThrow());

        double disk = diskWrite(work.resolve("disk-test.bin"), bytes);

        async.awaitWrite();
        long t0 = System.nanoTime();
        async.save(t);
        long t1 = System.nanoTime();
        long[] done = new long[1];
        Thread waiter = Thread.ofPlatform().name("bench-await").start(() -> {
          async.awaitWrite();
          done[0] = System.nanoTime();
        });
        int steps = 0;
        double stepSeconds = 0;
        do {
          stepSeconds += t.step().seconds();
          steps++;
        } while (waiter.isAlive());
        waiter.join();
        Round round = new Round(syncStall, disk, (t1 - t0) / 1e9, (done[0] - t1) / 1e9, steps, stepSeconds / steps);
        rounds.add(round);
        System.err.printf(Locale.ROOT, "  round %d: %s%n", r + 1, round);
      }
    }
    deleteTree(work);
    return new Result(name, mc, batch, seq, bytes, idle, rounds);
  }

  /** Seconds to write {@code bytes} bytes sequentially into a new file and fsync it; the file is deleted afterwards. */
  static double diskWrite(Path file, long bytes) throws IOException {
    ByteBuffer buf = ByteBuffer.allocateDirect(8 << 20);
    SplittableRandom r = new SplittableRandom(7);
    while (buf.remaining() >= 8) buf.putLong(r.nextLong());
    long t0 = System.nanoTime();
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
        StandardOpenOption.TRUNCATE_EXISTING)) {
      long left = bytes;
      while (left > 0) {
        buf.clear().limit((int) Math.min(buf.capacity(), left));
        while (buf.hasRemaining()) left -= ch.write(buf);
      }
      ch.force(true);
    }
    double s = (System.nanoTime() - t0) / 1e9;
    Files.delete(file);
    return s;
  }

  private static long dirBytes(Path d) throws IOException {
    try (var s = Files.list(d)) {
      long n = 0;
      for (Path p : s.toList()) n += Files.size(p);
      return n;
    }
  }

  static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  private static double median(List<Round> rounds, java.util.function.ToDoubleFunction<Round> f) {
    return median(rounds.stream().mapToDouble(f).toArray());
  }

  private static String render(List<Result> results, Path dir, int saves, String loadBefore, String loadAfter,
      List<String> notes) throws IOException {
    StringBuilder sb = new StringBuilder();
    String date = ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm"));
    sb.append("# Checkpoint benchmark, ").append(date.substring(0, 10)).append("\n\n");
    sb.append("- date (UTC): ").append(date).append('\n');
    sb.append("- machine: ").append(cpuName()).append(", ").append(Runtime.getRuntime().availableProcessors())
        .append(" cores available to the JVM, ").append(NativeRuntime.cpuThreads()).append(" CPU kernel threads\n");
    FileStore fs = Files.getFileStore(dir.toAbsolutePath().getParent());
    sb.append("- checkpoint directory: ").append(dir).append(" (file system ").append(fs.name()).append(", ")
        .append(fs.type()).append(")\n");
    sb.append("- athanor ").append(NativeRuntime.version()).append(", CPU ISA ").append(NativeRuntime.cpuIsa())
        .append("; JVM ").append(System.getProperty("java.vm.name")).append(' ').append(Runtime.version()).append('\n');
    sb.append("- load average (1/5/15 min) before: ").append(loadBefore).append(", after: ").append(loadAfter).append('\n');
    sb.append("- rounds per model: ").append(saves).append(" (medians below; every round listed after the table)\n");
    for (String n : notes) sb.append("- ").append(n).append('\n');
    sb.append("\n| model | parameters | checkpoint | training step | step during the write | sync stall "
        + "| async stall (first save) | async stall | background write | write bandwidth (async) | write bandwidth (sync) "
        + "| disk write + fsync | async write / disk |\n");
    sb.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (Result r : results) {
      double sync = median(r.rounds, Round::syncStall), async = median(r.rounds, Round::asyncStall);
      double write = median(r.rounds, Round::writeSeconds), disk = median(r.rounds, Round::diskSeconds);
      double during = median(r.rounds, Round::stepSecondsDuringWrite);
      double steady = r.rounds.size() > 1 ? median(r.rounds.subList(1, r.rounds.size()), Round::asyncStall) : async;
      double mbAsync = r.bytes / write / 1e6, mbSync = r.bytes / sync / 1e6, mbDisk = r.bytes / disk / 1e6;
      sb.append(String.format(Locale.ROOT, "| %s | %.1fM | %.0f MB | %.0f ms (B=%d, T=%d) | %.0f ms | %.0f ms | %.0f ms "
          + "| %.0f ms | %.2f s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.2f |%n", r.name, r.config.parameterCount() / 1e6,
          r.bytes / 1e6, r.idleStep * 1e3, r.batch, r.seq, during * 1e3, sync * 1e3, r.rounds.get(0).asyncStall * 1e3,
          steady * 1e3, write, mbAsync, mbSync, mbDisk, mbAsync / mbDisk));
    }
    sb.append("""

        - **checkpoint**: bytes of one checkpoint (FP32 weights, AdamW m and v, manifest).
        - **training step**: median time of an optimizer step with no checkpoint activity (batch B x seq T).
        - **step during the write**: median over rounds of the mean time of the steps that ran while a background \
        write was in progress (the writer shares the CPU cores with the step's kernels).
        - **sync stall**: time `save()` blocks the loop with `--checkpoint-sync`: snapshot, write, fsync of files and \
        directory, CRC32C, rename, rotation (keep 1: the previous checkpoint is deleted).
        - **async stall**: time `save()` blocks the loop by default: the snapshot into host memory (no write was in \
        flight); median of the saves after the first. The host buffers are allocated (and first touched) in the \
        background by `prepare()` while the warm-up steps run, as `train` does; the **first save** column includes \
        waiting for that if it is not done.
        - **background write**: from `save()` returning to the write being done, while training steps run alongside \
        (they share the CPU with the writer).
        - **write bandwidth**: checkpoint bytes / background write time (async), or / sync stall (sync).
        - **disk write + fsync**: the same number of bytes written to one new file in the same directory with a \
        FileChannel (8 MiB direct buffer), then `force(true)`; no other page-cache measures.
        """);
    sb.append("\n## Rounds\n\n| model | round | sync stall | disk write + fsync | async stall | background write "
        + "| steps during the write | their mean step time |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (Result r : results) {
      for (int i = 0; i < r.rounds.size(); i++) {
        Round x = r.rounds.get(i);
        sb.append(String.format(Locale.ROOT, "| %s | %d | %.0f ms | %.2f s | %.0f ms | %.2f s | %d | %.0f ms |%n", r.name,
            i + 1, x.syncStall * 1e3, x.diskSeconds, x.asyncStall * 1e3, x.writeSeconds, x.stepsDuringWrite,
            x.stepSecondsDuringWrite * 1e3));
      }
    }
    return sb.toString();
  }

  /** The 1, 5 and 15-minute load averages, or "unknown" (also used by OffloadBench). */
  static String loadAverage() {
    try {
      String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
      return f[0] + " " + f[1] + " " + f[2];
    } catch (IOException | RuntimeException e) {
      return "unknown";
    }
  }

  private static String cpuName() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
        if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).trim();
      }
    } catch (IOException | RuntimeException e) {
      // not Linux
    }
    return System.getProperty("os.arch");
  }

  private static void deleteTree(Path p) throws IOException {
    if (!Files.exists(p)) return;
    try (var s = Files.walk(p)) {
      for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
    }
  }
}

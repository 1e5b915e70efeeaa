package dev.athanor.bench;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.NativeRuntime;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The DISK tier's bandwidth against the disk's own sequential direct-I/O speed, on the same directory, in one run
 * (issue 9: "Disk tier bandwidth against the disk's own sequential read and write speed with direct I/O").
 *
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED -cp bench/target/benchmarks.jar dev.athanor.bench.DiskBench \
 *       [--dir DIR] [--gib 4] [--file-mib 1024] [--chunk-mib 4] [--inflight 2] [--rounds 5] [--sweep-gib 1]
 *       [--sweep-chunks 1,4,16] [--sweep-inflight 1,2,4] [--fio fio|none] [--dd true|false] [--out FILE.md]
 *       [--note TEXT]... [--command TEXT]
 * </pre>
 *
 * <p><b>Athanor's side</b> goes through the path the offload uses: a set of DISK-tier files made by
 * {@link Storage#allocateFile} (sparse, sized by ftruncate, {@code --file-mib} each, {@code --gib} in all), written
 * then read with {@link Storage#write} / {@link Storage#read} in chunks of {@code --chunk-mib} from 4096-byte aligned
 * HOST staging buffers ({@link Storage#allocate}), by {@code --inflight} I/O threads that take the chunks in file
 * order, one staging buffer each, so that many requests are in flight on one sequential stream (the offload's
 * {@code ChunkStreamer} uses 4 MiB chunks and 2 I/O threads). The write pass is timed from the first request to the
 * last one's return; the fsync of the files after it is timed apart. Every chunk carries its index in its first and
 * last 8 bytes, and the read pass checks them.
 *
 * <p><b>The peer</b> is fio on the same directory, on a file set of the same size and file count: {@code direct=1},
 * {@code ioengine=libaio}, {@code bs} = the chunk, {@code iodepth} = the in-flight count, sequential write
 * ({@code fallocate=none}, like Athanor's sparse files) then sequential read; its bandwidth is fio's own figure (bytes
 * over its I/O time). Both sides' files are then fsynced by this class and that time is reported apart: "write" is
 * the requests alone (the offload never fsyncs its scratch files), "write+fsync" adds the fsync (on a disk with a
 * volatile write cache, as virtual disks often have, it holds what the requests left in that cache). With {@code --dd true}, also dd with {@code oflag=direct} /
 * {@code iflag=direct} at the main chunk size (one request in flight), timed around the process. Direct I/O bypasses
 * the page cache, so no cache dropping is needed for either side (on a virtual disk the host may still cache).
 *
 * <p>Last, the per-call cost of the path apart from the disk: small cached reads through {@link Storage#read} (which
 * opens and closes the file on each call) against the same reads on a handle held open.
 *
 * <p>Rounds alternate which side goes first. The main configuration runs {@code --rounds} times on {@code --gib};
 * the sweep (chunk x in-flight) once each on {@code --sweep-gib}. Prints Markdown on stdout (and to {@code --out}).
 */
public final class DiskBench {
  private DiskBench() {}

  /** Bandwidths of one write and one read pass, bytes per second; fsync seconds after the write (Athanor only). */
  record Pass(double write, double read, double fsyncSeconds, boolean direct) {}

  public static void main(String[] args) throws Exception {
    Path dir = Path.of("bench/target/disk-bench");
    double gib = 4;
    long fileMib = 1024, chunkMib = 4;
    int inflight = 2, rounds = 5;
    double sweepGib = 1;
    long[] sweepChunks = {1, 4, 16};
    long[] sweepInflight = {1, 2, 4};
    String fio = "fio";
    boolean dd = true;
    Path out = null;
    List<String> notes = new ArrayList<>();
    String command = null;
    for (int i = 0; i < args.length; i += 2) {
      if (i + 1 >= args.length) throw new IllegalArgumentException("missing value after " + args[i]);
      String v = args[i + 1];
      switch (args[i]) {
        case "--dir" -> dir = Path.of(v);
        case "--gib" -> gib = Double.parseDouble(v);
        case "--file-mib" -> fileMib = Long.parseLong(v);
        case "--chunk-mib" -> chunkMib = Long.parseLong(v);
        case "--inflight" -> inflight = Integer.parseInt(v);
        case "--rounds" -> rounds = Integer.parseInt(v);
        case "--sweep-gib" -> sweepGib = Double.parseDouble(v);
        case "--sweep-chunks" -> sweepChunks = longs(v);
        case "--sweep-inflight" -> sweepInflight = longs(v);
        case "--fio" -> fio = v;
        case "--dd" -> dd = Boolean.parseBoolean(v);
        case "--out" -> out = Path.of(v);
        case "--note" -> notes.add(v);
        case "--command" -> command = v;
        default -> throw new IllegalArgumentException("unknown argument " + args[i] + "; expected --dir, --gib, --file-mib,"
            + " --chunk-mib, --inflight, --rounds, --sweep-gib, --sweep-chunks, --sweep-inflight, --fio, --dd, --out, --note,"
            + " --command");
      }
    }
    if (rounds < 1 || inflight < 1 || chunkMib < 1 || fileMib < 1) throw new IllegalArgumentException("rounds, inflight, chunk and file size must be >= 1");
    Files.createDirectories(dir);
    dir = dir.toAbsolutePath();
    long total = mibAligned(gib), sweepTotal = mibAligned(sweepGib), fileBytes = fileMib << 20;
    long need = Math.max(total, sweepTotal) + (64L << 20);
    long free = Files.getFileStore(dir).getUsableSpace();
    if (free < need) {
      throw new IllegalStateException("DiskBench needs " + MemoryManager.formatBytes(need) + " free in " + dir + " (one file set at"
          + " a time, Athanor's or fio's), but only " + MemoryManager.formatBytes(free) + " is free: lower --gib or pick another --dir");
    }
    boolean haveFio = !fio.equals("none");
    if (haveFio) checkFio(fio);

    String loadBefore = CheckpointBench.loadAverage();
    List<Pass> ours = new ArrayList<>(), peer = new ArrayList<>(), ddPeer = new ArrayList<>();
    for (int r = 0; r < rounds; r++) {
      boolean peerFirst = r % 2 == 0;
      if (peerFirst && haveFio) peer.add(fio(fio, dir, total, fileBytes, chunkMib << 20, inflight));
      ours.add(athanor(dir, total, fileBytes, chunkMib << 20, inflight));
      if (!peerFirst && haveFio) peer.add(fio(fio, dir, total, fileBytes, chunkMib << 20, inflight));
      if (dd) ddPeer.add(dd(dir, total, chunkMib << 20));
    }
    List<long[]> sweepCases = new ArrayList<>();
    List<Pass[]> sweep = new ArrayList<>();
    if (sweepTotal > 0) {
      for (long c : sweepChunks) {
        for (long q : sweepInflight) {
          boolean peerFirst = sweep.size() % 2 == 0;
          Pass p = peerFirst && haveFio ? fio(fio, dir, sweepTotal, fileBytes, c << 20, (int) q) : null;
          Pass a = athanor(dir, sweepTotal, fileBytes, c << 20, (int) q);
          if (!peerFirst && haveFio) p = fio(fio, dir, sweepTotal, fileBytes, c << 20, (int) q);
          sweepCases.add(new long[] {c, q});
          sweep.add(new Pass[] {a, p});
        }
      }
    }
    double[] overhead = callOverhead(dir);
    String loadAfter = CheckpointBench.loadAverage();

    StringBuilder sb = new StringBuilder();
    sb.append("# DISK tier bandwidth against the disk's own direct-I/O speed\n\n");
    sb.append(Report.machine());
    sb.append("- memory: ").append(memTotal()).append('\n');
    sb.append("- directory: ").append(dir).append(" (").append(Files.getFileStore(dir).type()).append(", ").append(device(dir))
        .append("; ").append(MemoryManager.formatBytes(free)).append(" free before the run)\n");
    sb.append("- load average (1/5/15 min) before: ").append(loadBefore).append(", after: ").append(loadAfter).append('\n');
    sb.append("- Athanor: Storage.allocateFile file set of ").append(MemoryManager.formatBytes(total)).append(" (")
        .append(fileCount(total, fileBytes)).append(" file(s) of at most ").append(MemoryManager.formatBytes(fileBytes))
        .append("), chunks of ").append(chunkMib).append(" MiB from 4096-aligned HOST buffers, ").append(inflight)
        .append(" I/O thread(s) = requests in flight; O_DIRECT used: ").append(ours.get(0).direct() ? "yes" : "NO (buffered)")
        .append('\n');
    if (haveFio) {
      sb.append("- peer: ").append(fioVersion(fio)).append(", direct=1 ioengine=libaio bs=").append(chunkMib).append("M iodepth=")
          .append(inflight).append(", same size and file count, sequential write (fallocate=none) then read\n");
    } else {
      sb.append("- peer: fio not run (--fio none); no ratios\n");
    }
    for (String n : notes) sb.append("- ").append(n).append('\n');
    if (command != null) sb.append("- command: `").append(command).append("`\n");
    sb.append("\nGB/s = 1e9 bytes per second. Ratio = Athanor / fio in the same round; \"median\" is each column's median over the"
        + " rounds, and the last row the median of the rounds' own ratios (the paired figure; on a disk whose speed drifts"
        + " between passes it is the steadier one).\n\n");
    sb.append("| round | write fio | write Athanor | ratio | write+fsync fio | write+fsync Athanor | ratio | read fio | read Athanor | ratio |\n");
    sb.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int r = 0; r < rounds; r++) {
      sb.append("| ").append(r + 1).append(r % 2 == 0 ? " (fio first)" : " (Athanor first)").append(" | ")
          .append(row(ours.get(r), haveFio ? peer.get(r) : null, total)).append(" |\n");
    }
    if (rounds > 1) {
      sb.append("| median | ").append(row(medianPass(ours, total), haveFio ? medianPass(peer, total) : null, total)).append(" |\n");
      if (haveFio) {
        List<List<Double>> ratios = List.of(new ArrayList<>(), new ArrayList<>(), new ArrayList<>());
        for (int r = 0; r < rounds; r++) {
          Pass a = ours.get(r), p = peer.get(r);
          ratios.get(0).add(a.write() / p.write());
          ratios.get(1).add(withFsync(a, total) / withFsync(p, total));
          ratios.get(2).add(a.read() / p.read());
        }
        sb.append(String.format(Locale.ROOT, "| median of the rounds' ratios | | | **%.2f** | | | **%.2f** | | | **%.2f** |%n",
            median(ratios.get(0)), median(ratios.get(1)), median(ratios.get(2))));
      }
    }
    if (dd) {
      sb.append("\ndd, same directory and size, bs=").append(chunkMib).append("M, one request in flight (`oflag=direct conv=fsync`, ")
          .append("`iflag=direct`; timed around the process), GB/s per round: write ")
          .append(Arrays.toString(ddPeer.stream().map(p -> gbs(p.write())).toArray())).append(", read ")
          .append(Arrays.toString(ddPeer.stream().map(p -> gbs(p.read())).toArray())).append('\n');
    }
    if (!sweep.isEmpty()) {
      sb.append("\nSweep: ").append(MemoryManager.formatBytes(sweepTotal)).append(" per case, one run each, fio with bs = chunk and")
          .append(" iodepth = in flight.\n\n");
      sb.append("| chunk MiB | in flight | write fio | write Athanor | ratio | write+fsync fio | write+fsync Athanor | ratio |"
          + " read fio | read Athanor | ratio |\n");
      sb.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
      for (int i = 0; i < sweep.size(); i++) {
        sb.append("| ").append(sweepCases.get(i)[0]).append(" | ").append(sweepCases.get(i)[1]).append(" | ")
            .append(row(sweep.get(i)[0], sweep.get(i)[1], sweepTotal)).append(" |\n");
      }
    }
    sb.append(String.format(Locale.ROOT, "%nPer-call cost of the path (page-cache hits, so the disk is out of it): a 4000-byte"
        + " Storage.read, which opens and closes the file each call, takes %.1f us; the same read on a handle held open"
        + " (NativeRuntime.fileRead) %.1f us (medians of 5 x 2000 calls). The difference is what each chunk pays on top of"
        + " the disk: %.1f us, %.2f%% of a %d MiB chunk at the main run's median Athanor read speed.%n", overhead[0], overhead[1],
        overhead[0] - overhead[1], 100 * (overhead[0] - overhead[1]) * 1e-6 / ((double) (chunkMib << 20) / median(ours.stream().map(Pass::read).toList())),
        chunkMib));
    System.out.print(sb);
    if (out != null) Files.writeString(out, sb.toString(), StandardCharsets.UTF_8);
  }

  // ------------------------------------------------------------------ Athanor's side

  /** Writes then reads a fresh file set of {@code total} bytes through Storage, {@code inflight} threads at a time. */
  static Pass athanor(Path dir, long total, long fileBytes, long chunk, int inflight) throws Exception {
    int nfiles = fileCount(total, fileBytes);
    List<Storage> files = new ArrayList<>();
    List<Storage> buffers = new ArrayList<>();
    try {
      for (int f = 0; f < nfiles; f++) {
        long size = Math.min(fileBytes, total - (long) f * fileBytes);
        files.add(Storage.allocateFile(dir.resolve("athanor-disk-" + f + ".bin"), size));
      }
      for (int t = 0; t < inflight; t++) {
        Storage b = Storage.allocate(Tier.HOST, chunk);
        buffers.add(b);
        MemorySegment.ofAddress(b.address()).reinterpret(chunk).fill((byte) (0x5a + t));
      }
      boolean direct;
      long probe = NativeRuntime.fileOpen(files.get(0).path().toString(), false);
      try {
        direct = NativeRuntime.fileIsDirect(probe);
      } finally {
        NativeRuntime.fileClose(probe);
      }
      long chunksPerFile = (fileBytes + chunk - 1) / chunk;
      long t0 = System.nanoTime();
      pass(files, buffers, fileBytes, chunk, chunksPerFile, true);
      long t1 = System.nanoTime();
      fsync(files.stream().map(Storage::path).toList());
      long t2 = System.nanoTime();
      pass(files, buffers, fileBytes, chunk, chunksPerFile, false);
      long t3 = System.nanoTime();
      return new Pass(total / ((t1 - t0) / 1e9), total / ((t3 - t2) / 1e9), (t2 - t1) / 1e9, direct);
    } finally {
      for (Storage b : buffers) b.close();
      for (Storage f : files) f.close();
    }
  }

  /** One pass over every chunk of the file set in file order, by buffers.size() threads. */
  private static void pass(List<Storage> files, List<Storage> buffers, long fileBytes, long chunk, long chunksPerFile,
      boolean write) throws InterruptedException {
    long n = 0;
    for (Storage f : files) n += (f.byteSize() + chunk - 1) / chunk;
    long chunks = n;
    AtomicLong next = new AtomicLong();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    Thread[] threads = new Thread[buffers.size()];
    for (int t = 0; t < threads.length; t++) {
      Storage buf = buffers.get(t);
      MemorySegment seg = MemorySegment.ofAddress(buf.address()).reinterpret(chunk);
      threads[t] = Thread.ofPlatform().name("disk-bench-io-" + t).unstarted(() -> {
        try {
          for (long i; (i = next.getAndIncrement()) < chunks && failure.get() == null; ) {
            Storage f = files.get((int) (i / chunksPerFile));
            long off = (i % chunksPerFile) * chunk, len = Math.min(chunk, f.byteSize() - off);
            if (write) {
              seg.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, i);
              seg.set(ValueLayout.JAVA_LONG_UNALIGNED, len - 8, ~i);
              f.write(off, buf.address(), len);
            } else {
              f.read(off, buf.address(), len);
              long head = seg.get(ValueLayout.JAVA_LONG_UNALIGNED, 0), tail = seg.get(ValueLayout.JAVA_LONG_UNALIGNED, len - 8);
              if (head != i || tail != ~i) {
                throw new IllegalStateException("chunk " + i + " of " + f.path() + " at offset " + off + " read back wrong: head "
                    + head + ", tail " + tail);
              }
            }
          }
        } catch (Throwable e) {
          failure.compareAndSet(null, e);
        }
      });
      threads[t].start();
    }
    for (Thread t : threads) t.join();
    Throwable e = failure.get();
    if (e instanceof RuntimeException re) throw re;
    if (e != null) throw new IllegalStateException(e);
  }

  /** fsyncs every file (what the write passes leave in the disk's or the host's caches goes to the device). */
  private static void fsync(List<Path> files) {
    for (Path f : files) {
      long fd = NativeRuntime.fileOpen(f.toString(), false);
      try {
        NativeRuntime.fileSync(fd);
      } finally {
        NativeRuntime.fileClose(fd);
      }
    }
  }

  /**
   * Microseconds per call of a small buffered read (an unaligned host address keeps it off O_DIRECT, and the page is
   * cached after the first call) through Storage.read, and through a held native handle: medians of 5 x 2000.
   */
  static double[] callOverhead(Path dir) {
    int calls = 2000, len = 4000;
    try (Storage f = Storage.allocateFile(dir.resolve("athanor-disk-call.bin"), 4096); Storage buf = Storage.allocate(Tier.HOST, 8192)) {
      long host = buf.address() + 64;
      f.write(0, host, len);
      List<Double> viaStorage = new ArrayList<>(), held = new ArrayList<>();
      long fd = NativeRuntime.fileOpen(f.path().toString(), false);
      try {
        for (int rep = 0; rep < 6; rep++) {
          long t0 = System.nanoTime();
          for (int i = 0; i < calls; i++) f.read(0, host, len);
          long t1 = System.nanoTime();
          for (int i = 0; i < calls; i++) NativeRuntime.fileRead(fd, host, len, 0);
          long t2 = System.nanoTime();
          if (rep > 0) {  // the first is a warm-up
            viaStorage.add((t1 - t0) / 1e3 / calls);
            held.add((t2 - t1) / 1e3 / calls);
          }
        }
      } finally {
        NativeRuntime.fileClose(fd);
      }
      return new double[] {median(viaStorage), median(held)};
    }
  }

  // ------------------------------------------------------------------ peers

  private static void checkFio(String fio) {
    try {
      Process p = new ProcessBuilder(fio, "--version").redirectErrorStream(true).start();
      p.getInputStream().readAllBytes();
      if (p.waitFor() != 0) throw new IOException("exit code " + p.exitValue());
    } catch (IOException | InterruptedException e) {
      throw new IllegalStateException("fio (the peer) cannot be run as '" + fio + "': " + e.getMessage()
          + "; install it (Debian/Ubuntu: apt-get install fio) or pass --fio none to skip the peer");
    }
  }

  private static String fioVersion(String fio) throws IOException, InterruptedException {
    return run(List.of(fio, "--version")).strip();
  }

  /** fio's sequential write then read of a fresh file set like Athanor's; bandwidths as fio reports them. */
  static Pass fio(String fio, Path dir, long total, long fileBytes, long bs, int iodepth) throws IOException, InterruptedException {
    int nfiles = fileCount(total, fileBytes);
    List<String> common = List.of(fio, "--directory=" + dir, "--filename_format=fio-peer.$filenum", "--nrfiles=" + nfiles,
        "--file_service_type=sequential", "--size=" + total, "--bs=" + bs, "--direct=1", "--ioengine=libaio",
        "--iodepth=" + iodepth, "--output-format=json");
    List<Path> paths = new ArrayList<>();
    for (int f = 0; f < nfiles; f++) paths.add(dir.resolve("fio-peer." + f));
    try {
      List<String> w = new ArrayList<>(common);
      w.addAll(List.of("--name=write", "--rw=write", "--fallocate=none"));
      double write = fioBw(run(w), "write");
      long t0 = System.nanoTime();
      fsync(paths);  // timed like Athanor's (fio's end_fsync would count it inside its bandwidth)
      double fsyncSeconds = (System.nanoTime() - t0) / 1e9;
      List<String> r = new ArrayList<>(common);
      r.addAll(List.of("--name=read", "--rw=read"));
      double read = fioBw(run(r), "read");
      return new Pass(write, read, fsyncSeconds, true);
    } finally {
      for (Path p : paths) Files.deleteIfExists(p);
    }
  }

  private static double fioBw(String json, String dir) {
    // jobs[0].<dir>.bw_bytes: the first "bw_bytes" after the "<dir>" object's key
    int at = json.indexOf("\"" + dir + "\" : {");
    if (at < 0) throw new IllegalStateException("fio's JSON has no \"" + dir + "\" section: " + json);
    Matcher m = Pattern.compile("\"bw_bytes\"\\s*:\\s*(\\d+)").matcher(json);
    if (!m.find(at)) throw new IllegalStateException("fio's JSON has no bw_bytes for " + dir);
    return Double.parseDouble(m.group(1));
  }

  /** dd with direct I/O, one request in flight, timed around the process. */
  static Pass dd(Path dir, long total, long bs) throws IOException, InterruptedException {
    Path f = dir.resolve("dd-peer.bin");
    long count = (total + bs - 1) / bs;
    try {
      long t0 = System.nanoTime();
      run(List.of("dd", "if=/dev/zero", "of=" + f, "bs=" + bs, "count=" + count, "oflag=direct", "conv=fsync", "status=none"));
      long t1 = System.nanoTime();
      run(List.of("dd", "if=" + f, "of=/dev/null", "bs=" + bs, "iflag=direct", "status=none"));
      long t2 = System.nanoTime();
      return new Pass(count * bs / ((t1 - t0) / 1e9), count * bs / ((t2 - t1) / 1e9), 0, true);
    } finally {
      Files.deleteIfExists(f);
    }
  }

  private static String run(List<String> cmd) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (p.waitFor() != 0) throw new IllegalStateException(String.join(" ", cmd) + " failed (exit " + p.exitValue() + "): " + out);
    return out;
  }

  // ------------------------------------------------------------------ helpers

  private static long mibAligned(double gib) {
    return Math.round(gib * 1024) << 20;
  }

  private static int fileCount(long total, long fileBytes) {
    return (int) Math.max(1, (total + fileBytes - 1) / fileBytes);
  }

  private static long[] longs(String csv) {
    return Arrays.stream(csv.split(",")).map(String::trim).filter(s -> !s.isEmpty()).mapToLong(Long::parseLong).toArray();
  }

  private static String gbs(double bytesPerSecond) {
    return String.format(Locale.ROOT, "%.3f", bytesPerSecond / 1e9);
  }

  private static String ratio(double a, double b) {
    return String.format(Locale.ROOT, "%.2f", a / b);
  }

  /** Write, write+fsync and read GB/s of both sides with their ratios (the peer's cells empty without one). */
  private static String row(Pass a, Pass p, long bytes) {
    double[] ours = {a.write(), withFsync(a, bytes), a.read()};
    double[] peer = p == null ? null : new double[] {p.write(), withFsync(p, bytes), p.read()};
    List<String> cells = new ArrayList<>();
    for (int k = 0; k < 3; k++) {
      cells.add(peer == null ? "" : gbs(peer[k]));
      cells.add(gbs(ours[k]));
      cells.add(peer == null ? "" : ratio(ours[k], peer[k]));
    }
    return String.join(" | ", cells);
  }

  private static double withFsync(Pass p, long bytes) {
    return bytes / (bytes / p.write() + p.fsyncSeconds());
  }

  /** The medians of each figure over the rounds (each figure on its own). */
  private static Pass medianPass(List<Pass> v, long bytes) {
    double fsyncMedian = bytes / median(v.stream().map(p -> withFsync(p, bytes)).toList()) - bytes / median(v.stream().map(Pass::write).toList());
    return new Pass(median(v.stream().map(Pass::write).toList()), median(v.stream().map(Pass::read).toList()), fsyncMedian, v.get(0).direct());
  }

  private static double median(List<Double> v) {
    double[] a = v.stream().mapToDouble(Double::doubleValue).sorted().toArray();
    return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
  }

  private static String memTotal() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
        if (line.startsWith("MemTotal:")) return line.substring(9).trim() + " (MemTotal)";
      }
    } catch (IOException | RuntimeException e) {
      // not Linux
    }
    return "unknown";
  }

  /** The block device under {@code dir} (from /proc/self/mountinfo) and what /sys says about it, when known. */
  private static String device(Path dir) {
    try {
      String best = null, bestSource = null;
      for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
        String[] f = line.split(" ");
        int dash = Arrays.asList(f).indexOf("-");
        if (f.length < 5 || dash < 0 || dash + 2 >= f.length) continue;
        String mount = f[4];
        if (dir.toString().startsWith(mount) && (best == null || mount.length() > best.length())) {
          best = mount;
          bestSource = f[dash + 2];
        }
      }
      if (bestSource == null) return "device unknown";
      StringBuilder sb = new StringBuilder("device ").append(bestSource);
      if (bestSource.startsWith("/dev/")) {
        String name = bestSource.substring(5);
        Path q = Path.of("/sys/block", name, "queue");
        if (Files.isDirectory(q)) {
          sb.append(": rotational ").append(sys(q.resolve("rotational"))).append(", logical block ")
              .append(sys(q.resolve("logical_block_size"))).append(" B, max request ").append(sys(q.resolve("max_sectors_kb")))
              .append(" KiB, scheduler ").append(sys(q.resolve("scheduler")));
        }
        Path model = Path.of("/sys/block", name, "device", "model");
        if (Files.isReadable(model)) sb.append(", model ").append(sys(model));
        else if (name.startsWith("vd")) sb.append(", a virtio disk of a virtual machine");
      }
      return sb.toString();
    } catch (IOException | RuntimeException e) {
      return "device unknown";
    }
  }

  private static String sys(Path p) {
    try {
      return Files.readString(p).strip();
    } catch (IOException e) {
      return "?";
    }
  }
}

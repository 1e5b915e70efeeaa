package dev.athanor.cli;

import dev.athanor.cli.Options.Range;
import dev.athanor.io.FileProblems;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.Event;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Stream;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Option;

/**
 * {@code athanor bench --mode overlap}: host-to-device copies on a copy stream hidden behind GEMMs on the compute
 * stream, measured with timing events, against the same work serialized on one stream.
 *
 * <p><b>The work.</b> K chunks of {@code --chunk-mib} MiB in pinned host memory (HOST_PINNED) are copied into K
 * device buffers allocated ahead of time (owned by the copy stream, recorded as used by the compute stream), and
 * K GEMMs of n x n x n ({@code --gemm n}) run in one {@link ExecutionContext}. GEMM i reads chunk i: its left
 * operand is the chunk's first n*n elements viewed as an (n, n) matrix (when the chunk is smaller than that, GEMM i
 * multiplies a resident matrix and only waits for the chunk: {@code "gemm_reads_chunk": false}). Defaults on CUDA:
 * 8 chunks of 128 MiB and BF16 8192^3 GEMMs, so each chunk is exactly one 8192 x 8192 BF16 matrix; a GEMM takes
 * about 3.7 ms at Athanor's measured ~300 TFLOP/s on an H200 and a copy about 2.7 ms at 50 GB/s.
 *
 * <ul>
 *   <li><b>overlapped</b>: the copy stream copies chunk i+1 while the compute stream multiplies chunk i; the compute
 *       stream waits, on the device, for chunk i's copy-done event before GEMM i. Both streams start after one start
 *       event recorded on the compute stream.
 *   <li><b>serialized</b>: copy i then GEMM i, all on the compute stream: the baseline.
 * </ul>
 * Timing events are recorded before and after every copy and every GEMM; each op's interval is its pair's
 * {@link Event#elapsedMillis} from the run's start event, which gives a timeline across both streams.
 *
 * <p><b>Result</b> (one JSON line on stdout, also written to {@code --json PATH}): both runs' intervals and
 * totals, and {@code hidden_fraction = (copy_total + compute_total - overlapped_wall) / copy_total}, clamped to
 * [0, 1], with copy_total and compute_total the sums of the overlapped run's op intervals: the share of copy time
 * that ran while a GEMM ran, less any time both streams sat idle. It reads one run's timeline, so it is free of
 * run-to-run noise; {@code hidden_fraction_vs_serialized} uses the serialized run's op sums instead (the time
 * actually saved, which also counts ops slowing each other down), and {@code speedup} compares the wall times.
 * With {@code --repeats R} (default 3) each mode runs R times (alternating) after {@code --warmup} (default 1)
 * untimed rounds of both; the run with the median wall time of each mode is reported, every wall time is listed.
 *
 * <p><b>On the CPU</b> the same program runs (defaults: 4 chunks of 64 MiB, FP32 512^3 GEMMs): CPU streams are
 * synchronous, copies are memcpys on the calling thread and events hold the host clock, so nothing overlaps and the
 * hidden fraction is about 0. That is the honest CPU answer; the JSON says {@code "async_copies": false}.
 */
final class OverlapBench {
  private OverlapBench() {}

  /** The options of {@code bench --mode overlap} (an argument group of {@link BenchCommand}); null: the device's default. */
  static final class Args {
    @Option(names = "--chunks", paramLabel = "K", description = "host->device copies and GEMMs (default: 8 on CUDA, 4 on the CPU)")
    @Range(min = 1, max = 4096)
    Integer chunks;

    @Option(names = "--chunk-mib", paramLabel = "MIB", description = "MiB per copy (default: 128 on CUDA, 64 on the CPU)")
    @Range(min = 0, minExclusive = true, max = 1 << 20)
    Float chunkMib;

    @Option(names = "--gemm", paramLabel = "N", description = "each GEMM is N x N x N (default: 8192 on CUDA, 512 on the CPU)")
    @Range(min = 1, max = 65536)
    Integer gemm;

    @Option(names = "--dtype", paramLabel = "DTYPE",
        description = "GEMM and chunk dtype: ${COMPLETION-CANDIDATES} (default: bf16 on CUDA, f32 on the CPU)")
    Models.FloatType dtype;

    @Option(names = "--repeats", paramLabel = "R", defaultValue = "3",
        description = "timed runs of each mode, alternating; the median is reported. Default: ${DEFAULT-VALUE}")
    @Range(min = 1, max = 100)
    int repeats;

    @Option(names = "--warmup", paramLabel = "W", defaultValue = "1", description = "untimed rounds of both modes first. Default: ${DEFAULT-VALUE}")
    @Range(min = 0, max = 100)
    int warmup;

    @Option(names = "--json", paramLabel = "FILE", description = "also write the JSON line to FILE")
    Path json;

    /** The run these options describe on {@code device}. */
    Config config(Device device) {
      boolean cuda = device.isCuda();
      DType dt = (dtype != null ? dtype : cuda ? Models.FloatType.BF16 : Models.FloatType.F32).dtype();
      float mib = chunkMib != null ? chunkMib : cuda ? 128 : 64;
      long chunkBytes = Math.max(dt.byteSize(), Math.round(mib * (1 << 20) / dt.byteSize()) * dt.byteSize());
      return new Config(device, chunks != null ? chunks : cuda ? 8 : 4, chunkBytes, gemm != null ? gemm : cuda ? 8192 : 512,
          dt, repeats, warmup);
    }
  }

  /** What to run: {@code chunks} copies of {@code chunkBytes} and as many n^3 GEMMs in {@code dtype}. */
  record Config(Device device, int chunks, long chunkBytes, int n, DType dtype, int repeats, int warmup) {
    Config {
      if (chunks < 1 || chunks > 4096) throw new IllegalArgumentException("--chunks = " + chunks + " must be in [1, 4096]");
      if (chunkBytes < dtype.byteSize() || chunkBytes % dtype.byteSize() != 0) {
        throw new IllegalArgumentException("chunk of " + chunkBytes + " bytes must hold whole " + dtype + " elements");
      }
      if (n < 1 || n > 65536) throw new IllegalArgumentException("--gemm = " + n + " must be in [1, 65536]");
      if (!dtype.isFloating()) throw new IllegalArgumentException("--dtype must be f32, bf16 or f16, got " + dtype);
      if (repeats < 1 || repeats > 100) throw new IllegalArgumentException("--repeats = " + repeats + " must be in [1, 100]");
      if (warmup < 0 || warmup > 100) throw new IllegalArgumentException("--warmup = " + warmup + " must be in [0, 100]");
    }

    long flopsPerGemm() {
      return 2L * n * n * n;
    }

    /** The buffers {@link #measure} allocates: the pinned host chunks, their device copies, and the GEMM operands. */
    Footprint footprint() {
      Tier tier = device.isCuda() ? Tier.DEVICE : Tier.HOST;
      long chunk = MemoryManager.reservedSize(tier, chunkBytes);
      long matrix = MemoryManager.reservedSize(tier, (long) n * n * dtype.byteSize());
      boolean readsChunk = chunkBytes / dtype.byteSize() >= (long) n * n;
      return Footprint.of(device, List.of(
          new Footprint.Part(Footprint.Component.BUFFERS, Tier.HOST_PINNED,
              chunks * MemoryManager.reservedSize(Tier.HOST_PINNED, chunkBytes)),
          new Footprint.Part(Footprint.Component.BUFFERS, tier, chunks * chunk + (readsChunk ? 2 : 3) * matrix)));
    }
  }

  /** One op on the timeline: milliseconds from the run's start event. */
  record Interval(String stream, String op, int index, double startMs, double endMs, long bytes, long flops) {
    double ms() {
      return endMs - startMs;
    }

    Map<String, Object> json() {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("stream", stream);
      m.put("op", op);
      m.put("i", index);
      m.put("start_ms", round(startMs, 4));
      m.put("end_ms", round(endMs, 4));
      if (bytes > 0) m.put("bytes", bytes);
      if (flops > 0) m.put("flops", flops);
      return m;
    }
  }

  /** One timed run of one mode. */
  record Run(String mode, double wallMs, List<Interval> intervals) {
    double total(String op) {
      return intervals.stream().filter(x -> x.op.equals(op)).mapToDouble(Interval::ms).sum();
    }

    long sum(String op, boolean bytes) {
      return intervals.stream().filter(x -> x.op.equals(op)).mapToLong(x -> bytes ? x.bytes : x.flops).sum();
    }

    /**
     * Milliseconds during which a copy and a GEMM ran at the same time. Copies are ordered on one stream and GEMMs
     * on one stream, so within each kind intervals do not overlap and the pairwise intersections add up exactly.
     */
    double concurrentMs() {
      double t = 0;
      for (Interval c : intervals) {
        if (!c.op.equals(COPY)) continue;
        for (Interval g : intervals) {
          if (g.op.equals(GEMM)) t += Math.max(0, Math.min(c.endMs, g.endMs) - Math.max(c.startMs, g.startMs));
        }
      }
      return t;
    }

    Map<String, Object> json() {
      double copyMs = total(COPY), gemmMs = total(GEMM);
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("wall_ms", round(wallMs, 4));
      m.put("copy_ms", round(copyMs, 4));
      m.put("compute_ms", round(gemmMs, 4));
      m.put("concurrent_ms", round(concurrentMs(), 4));
      m.put("copy_gb_per_s", round(gbPerS(sum(COPY, true), copyMs), 3));
      m.put("gemm_tflops", round(tflops(sum(GEMM, false), gemmMs), 3));
      m.put("intervals", intervals.stream().map(Interval::json).toList());
      return m;
    }
  }

  static final String COPY = "h2d", GEMM = "gemm";

  /** Measures, prints the JSON line to {@code out} and writes it to --json FILE when given. */
  static void run(Args o, Device device, PrintStream out) {
    Config c = o.config(device);
    MemoryCheck.require(c.footprint(), "run this benchmark", "use fewer --chunks or a smaller --chunk-mib or --gemm", "");
    String line = Json.write(measure(c));
    if (o.json != null) {
      Path p = o.json;
      try {
        if (p.toAbsolutePath().getParent() != null) Files.createDirectories(p.toAbsolutePath().getParent());
        Files.writeString(p, line + "\n", StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException("--json " + p + ": " + FileProblems.reason(e), e);
      }
    }
    out.println(line);
  }

  /** Runs the benchmark and returns the JSON object (see the class comment). */
  static Map<String, Object> measure(Config c) {
    Device device = c.device;
    int k = c.chunks, n = c.n;
    long elems = c.chunkBytes / c.dtype.byteSize();
    boolean readsChunk = elems >= (long) n * n;
    List<Run> serialized = new ArrayList<>(), overlapped = new ArrayList<>();
    boolean pinned;
    // The scope closes first (the tensors go back to the allocator while their streams exist), then the context.
    try (ExecutionContext ctx = ExecutionContext.create(device, 1); ExecutionContext.Current current = ctx.makeCurrent();
        Scope scope = Scope.open()) {
      Stream compute = ctx.computeStream(), copy = ctx.copyStream(0);
      // Buffers ahead of time: pinned host chunks (random values), device chunks, the resident operands.
      Tensor[] host = new Tensor[k], dev = new Tensor[k], a = new Tensor[k];
      Tensor b = Tensor.empty(c.dtype, device, n, n), out = Tensor.empty(c.dtype, device, n, n);
      Ops.randNormal(b, 7, 0, 0f, 1f);
      Tensor resident = null;
      if (!readsChunk) {
        resident = Tensor.empty(c.dtype, device, n, n);
        Ops.randNormal(resident, 8, 0, 0f, 1f);
      }
      for (int i = 0; i < k; i++) {
        host[i] = Tensor.empty(c.dtype, Device.CPU, Tier.HOST_PINNED, elems);
        dev[i] = deviceBuffer(device, copy, compute, c.dtype, elems);
        Ops.randNormal(dev[i], 100 + i, 0, 0f, 1f);
        host[i].copyFrom(dev[i]); // the chunk's values, made once on the device (fast) and brought back
        a[i] = readsChunk ? dev[i].slice(0, 0, (long) n * n).view(n, n) : resident;
      }
      pinned = host[0].storage().isPinned();
      ctx.synchronize();
      Buffers bufs = new Buffers(host, dev, a, b, out);
      for (int w = 0; w < c.warmup; w++) {
        runSerialized(ctx, c, bufs);
        runOverlapped(ctx, c, bufs);
      }
      for (int r = 0; r < c.repeats; r++) {
        serialized.add(runSerialized(ctx, c, bufs));
        overlapped.add(runOverlapped(ctx, c, bufs));
      }
    }
    Run ser = median(serialized), ovl = median(overlapped);
    double copyTotal = ovl.total(COPY), computeTotal = ovl.total(GEMM);
    double raw = copyTotal > 0 ? (copyTotal + computeTotal - ovl.wallMs) / copyTotal : 0;
    double serCopy = ser.total(COPY), serCompute = ser.total(GEMM);
    double rawVsSer = serCopy > 0 ? (serCopy + serCompute - ovl.wallMs) / serCopy : 0;
    boolean async = device.isCuda() && pinned;

    Map<String, Object> m = new LinkedHashMap<>();
    m.put("impl", "athanor");
    m.put("mode", "overlap");
    m.put("device", device.toString());
    m.put("dtype", c.dtype.toString());
    m.put("async_copies", async);
    m.put("pinned", pinned);
    m.put("chunks", k);
    m.put("chunk_bytes", c.chunkBytes);
    m.put("gemm", List.of(n, n, n));
    m.put("gemm_flops", c.flopsPerGemm());
    m.put("gemm_reads_chunk", readsChunk);
    m.put("repeats", c.repeats);
    m.put("warmup", c.warmup);
    m.put("hidden_fraction", round(clamp01(raw), 4));
    m.put("hidden_fraction_unclamped", round(raw, 4));
    m.put("hidden_fraction_vs_serialized", round(clamp01(rawVsSer), 4));
    m.put("overlapped_wall_ms", round(ovl.wallMs, 4));
    m.put("serialized_wall_ms", round(ser.wallMs, 4));
    m.put("speedup", round(ovl.wallMs > 0 ? ser.wallMs / ovl.wallMs : 0, 4));
    m.put("copy_total_ms", round(copyTotal, 4));
    m.put("compute_total_ms", round(computeTotal, 4));
    m.put("copy_gb_per_s", round(gbPerS(ser.sum(COPY, true), serCopy), 3));
    m.put("copy_gb_per_s_during_compute", round(gbPerS(ovl.sum(COPY, true), copyTotal), 3));
    m.put("gemm_tflops", round(tflops(ser.sum(GEMM, false), serCompute), 3));
    m.put("copy_concurrent_fraction", round(copyTotal > 0 ? ovl.concurrentMs() / copyTotal : 0, 4));
    Map<String, Object> walls = new LinkedHashMap<>();
    walls.put("overlapped", walls(overlapped));
    walls.put("serialized", walls(serialized));
    m.put("wall_ms_all", walls);
    m.put("overlapped", ovl.json());
    m.put("serialized", ser.json());
    m.put("formula", "hidden_fraction = (copy_total_ms + compute_total_ms - overlapped_wall_ms) / copy_total_ms, "
        + "clamped to [0,1], copy_total_ms and compute_total_ms summed over the overlapped run's op intervals; "
        + "hidden_fraction_vs_serialized: the same with the serialized run's op sums (the time saved, including any "
        + "slowdown of ops running together, and run-to-run noise); speedup = serialized_wall_ms / overlapped_wall_ms; "
        + "copy_concurrent_fraction = overlapped run's copy time during a GEMM / its copy time; copy_gb_per_s and "
        + "gemm_tflops from the serialized run (each op alone), copy_gb_per_s_during_compute from the overlapped run; "
        + "GB/s = bytes / 1e9 / seconds; TFLOP/s = 2n^3 per GEMM / 1e12 / seconds");
    if (!async) {
      m.put("note", device.isCuda()
          ? "the host buffers are not page-locked, so copies are not asynchronous"
          : "on the CPU streams are synchronous: copies are memcpys on the calling thread and events read the host "
              + "clock, so nothing overlaps and the hidden fraction is about 0");
    }
    return m;
  }

  private record Buffers(Tensor[] host, Tensor[] dev, Tensor[] a, Tensor b, Tensor out) {}

  /** A chunk's destination: DEVICE memory owned by the copy stream and used by the compute stream (CPU: HOST). */
  private static Tensor deviceBuffer(Device device, Stream copy, Stream compute, DType dtype, long elems) {
    if (!device.isCuda()) return Tensor.empty(dtype, device, elems);
    try (Storage st = Storage.allocate(copy, elems * dtype.byteSize())) {
      Tensor t = Tensor.wrap(st, dtype, new long[] {elems}, new long[] {1}, 0);
      st.recordStream(compute);
      return t;
    }
  }

  /** Copy i, then GEMM i, all on the compute stream. */
  static Run runSerialized(ExecutionContext ctx, Config c, Buffers bufs) {
    Stream compute = ctx.computeStream();
    int k = c.chunks;
    List<Event> all = new ArrayList<>();
    try {
      Event start = timing(ctx, all), end = timing(ctx, all);
      Event[] cs = timings(ctx, all, k), ce = timings(ctx, all, k), gs = timings(ctx, all, k), ge = timings(ctx, all, k);
      start.record(compute);
      for (int i = 0; i < k; i++) {
        cs[i].record(compute);
        bufs.dev[i].copyFromAsync(bufs.host[i], compute);
        ce[i].record(compute);
        gs[i].record(compute);
        Ops.gemm(bufs.a[i], false, bufs.b, false, 1f, 0f, null, bufs.out);
        ge[i].record(compute);
      }
      end.record(compute);
      ctx.synchronize();
      return timeline("serialized", c, start, end, cs, ce, "compute", gs, ge);
    } finally {
      for (Event e : all) e.close();
    }
  }

  /**
   * Copies on the copy stream, GEMMs on the compute stream; GEMM i waits (on the device) for chunk i's copy-done
   * event. Enqueued as a prefetcher would: chunk i+1's copy is issued before GEMM i.
   */
  static Run runOverlapped(ExecutionContext ctx, Config c, Buffers bufs) {
    Stream compute = ctx.computeStream(), copy = ctx.copyStream(0);
    int k = c.chunks;
    List<Event> all = new ArrayList<>();
    try {
      Event start = timing(ctx, all), end = timing(ctx, all);
      Event[] cs = timings(ctx, all, k), ce = timings(ctx, all, k), gs = timings(ctx, all, k), ge = timings(ctx, all, k);
      start.record(compute);
      start.wait(copy); // both streams start at the start event
      for (int i = -1; i < k; i++) {
        int next = i + 1;
        if (next < k) {
          cs[next].record(copy);
          bufs.dev[next].copyFromAsync(bufs.host[next], copy);
          ce[next].record(copy); // also the copy-done event the compute stream waits for
        }
        if (i < 0) continue;
        ce[i].wait(compute);
        gs[i].record(compute);
        Ops.gemm(bufs.a[i], false, bufs.b, false, 1f, 0f, null, bufs.out);
        ge[i].record(compute);
      }
      end.record(compute); // after both streams' work: GEMM k-1 waited for the last copy
      ctx.synchronize();
      return timeline("overlapped", c, start, end, cs, ce, "copy", gs, ge);
    } finally {
      for (Event e : all) e.close();
    }
  }

  private static Run timeline(String mode, Config c, Event start, Event end, Event[] cs, Event[] ce, String copyStream,
      Event[] gs, Event[] ge) {
    List<Interval> iv = new ArrayList<>();
    for (int i = 0; i < c.chunks; i++) {
      iv.add(new Interval(copyStream, COPY, i, ms(start, cs[i]), ms(start, ce[i]), c.chunkBytes, 0));
    }
    for (int i = 0; i < c.chunks; i++) {
      iv.add(new Interval("compute", GEMM, i, ms(start, gs[i]), ms(start, ge[i]), 0, c.flopsPerGemm()));
    }
    iv.sort(Comparator.comparingDouble(Interval::startMs));
    double wall = ms(start, end);
    for (Interval x : iv) wall = Math.max(wall, x.endMs);
    return new Run(mode, wall, List.copyOf(iv));
  }

  private static double ms(Event from, Event to) {
    return Event.elapsedMillis(from, to);
  }

  private static Event timing(ExecutionContext ctx, List<Event> all) {
    Event e = Event.create(ctx.device(), true);
    all.add(e);
    return e;
  }

  private static Event[] timings(ExecutionContext ctx, List<Event> all, int k) {
    Event[] e = new Event[k];
    for (int i = 0; i < k; i++) e[i] = timing(ctx, all);
    return e;
  }

  private static Run median(List<Run> runs) {
    List<Run> s = new ArrayList<>(runs);
    s.sort(Comparator.comparingDouble(Run::wallMs));
    return s.get((s.size() - 1) / 2);
  }

  private static List<Double> walls(List<Run> runs) {
    return runs.stream().map(r -> round(r.wallMs, 4)).toList();
  }

  private static double gbPerS(long bytes, double ms) {
    return ms > 0 ? bytes / (ms * 1e6) : 0;
  }

  private static double tflops(long flops, double ms) {
    return ms > 0 ? flops / (ms * 1e9) : 0;
  }

  private static double clamp01(double v) {
    return Math.max(0, Math.min(1, v));
  }

  static double round(double v, int digits) {
    if (!Double.isFinite(v)) throw new IllegalStateException("not a finite number: " + v);
    double p = Math.pow(10, digits);
    return Math.round(v * p) / p;
  }
}

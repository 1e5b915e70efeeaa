package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.runtime.Cuda;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code athanor bench --mode overlap}: the JSON's fields and timelines on the CPU (no timing thresholds), and on
 * CUDA that copies on the copy stream really run while GEMMs run on the compute stream (a property of how the
 * streams are used, not a speed).
 */
class OverlapBenchTest {
  @TempDir Path tmp;

  private static final String[] TOP_NUMBERS = {"chunk_bytes", "gemm_flops", "hidden_fraction", "hidden_fraction_unclamped", "hidden_fraction_vs_serialized",
      "overlapped_wall_ms", "serialized_wall_ms", "speedup", "copy_total_ms", "compute_total_ms", "copy_gb_per_s",
      "copy_gb_per_s_during_compute", "gemm_tflops", "copy_concurrent_fraction"};
  private static final String[] RUN_NUMBERS = {"wall_ms", "copy_ms", "compute_ms", "concurrent_ms", "copy_gb_per_s",
      "gemm_tflops"};

  private JsonObject bench(String... flags) throws Exception {
    Path json = tmp.resolve("overlap.json");
    List<String> args = new ArrayList<>(List.of("bench", "--mode", "overlap"));
    args.addAll(List.of(flags));
    args.addAll(List.of("--json", json.toString()));
    ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
    int code = Main.run(args.toArray(String[]::new), new PrintStream(o, true, StandardCharsets.UTF_8),
        new PrintStream(e, true, StandardCharsets.UTF_8));
    String out = o.toString(StandardCharsets.UTF_8);
    assertEquals(0, code, "stderr: " + e.toString(StandardCharsets.UTF_8));
    assertEquals(1, out.strip().lines().count(), "one JSON line on stdout: " + out);
    JsonObject fromFile = JsonParser.parseString(Files.readString(json)).getAsJsonObject();
    JsonObject fromStdout = JsonParser.parseString(out).getAsJsonObject();
    assertEquals(fromStdout, fromFile, "--json writes what stdout shows");
    return fromFile;
  }

  /** Fields present, numbers finite, intervals well ordered and inside their run, one copy and one GEMM per chunk. */
  private static void checkShape(JsonObject r, int chunks) {
    assertEquals("overlap", r.get("mode").getAsString());
    assertEquals(chunks, r.get("chunks").getAsInt());
    for (String k : TOP_NUMBERS) finite(r, k);
    for (String k : new String[] {"hidden_fraction", "hidden_fraction_vs_serialized", "copy_concurrent_fraction"}) {
      double v = r.get(k).getAsDouble();
      assertTrue(v >= 0 && v <= 1, k + " = " + v);
    }
    assertTrue(r.get("formula").getAsString().contains("hidden_fraction ="));
    assertEquals(3, r.getAsJsonArray("gemm").size());
    for (String mode : new String[] {"overlapped", "serialized"}) {
      JsonObject run = r.getAsJsonObject(mode);
      for (String k : RUN_NUMBERS) finite(run, k);
      double wall = run.get("wall_ms").getAsDouble();
      JsonArray iv = run.getAsJsonArray("intervals");
      assertEquals(2 * chunks, iv.size(), mode + " intervals");
      int copies = 0, gemms = 0;
      double lastStart = Double.NEGATIVE_INFINITY;
      for (JsonElement el : iv) {
        JsonObject x = el.getAsJsonObject();
        double s = finite(x, "start_ms"), e = finite(x, "end_ms");
        assertTrue(0 <= s && s <= e && e <= wall, mode + ": " + x + " within [0, " + wall + "]");
        assertTrue(s >= lastStart, mode + ": intervals sorted by start");
        lastStart = s;
        String op = x.get("op").getAsString();
        String stream = x.get("stream").getAsString();
        if (op.equals("h2d")) {
          copies++;
          assertEquals(r.get("chunk_bytes").getAsLong(), x.get("bytes").getAsLong());
          assertEquals(mode.equals("overlapped") ? "copy" : "compute", stream);
        } else {
          assertEquals("gemm", op);
          gemms++;
          assertEquals(r.get("gemm_flops").getAsLong(), x.get("flops").getAsLong());
          assertEquals("compute", stream);
        }
      }
      assertEquals(chunks, copies);
      assertEquals(chunks, gemms);
      // ops of one stream never overlap each other
      for (String st : new String[] {"copy", "compute"}) {
        double end = Double.NEGATIVE_INFINITY;
        for (JsonElement el : iv) {
          JsonObject x = el.getAsJsonObject();
          if (!x.get("stream").getAsString().equals(st)) continue;
          assertTrue(x.get("start_ms").getAsDouble() >= end - 1e-3, mode + " " + st + ": " + x + " starts before " + end);
          end = x.get("end_ms").getAsDouble();
        }
      }
    }
    assertEquals(r.get("repeats").getAsInt(), r.getAsJsonObject("wall_ms_all").getAsJsonArray("overlapped").size());
  }

  private static double finite(JsonObject o, String key) {
    assertTrue(o.has(key), "missing " + key + " in " + o);
    double v = o.get(key).getAsDouble();
    assertTrue(Double.isFinite(v), key + " = " + v);
    return v;
  }

  @Test
  void cpuRunsTheSameProgramAndSaysCopiesAreSynchronous() throws Exception {
    JsonObject r = bench("--device", "cpu", "--chunks", "3", "--chunk-mib", "0.25", "--gemm", "48", "--repeats", "2");
    checkShape(r, 3);
    assertEquals("cpu", r.get("device").getAsString());
    assertEquals("F32", r.get("dtype").getAsString());
    assertFalse(r.get("async_copies").getAsBoolean());
    assertTrue(r.get("gemm_reads_chunk").getAsBoolean(), "48 x 48 floats fit in a quarter MiB");
    assertTrue(r.get("note").getAsString().contains("synchronous"));
    // On the CPU a copy and a GEMM never run at once: the timeline shows it exactly, and the hidden fraction read
    // from it is 0 (ops one after another cannot sum to more than the wall time); a structural fact, not a timing.
    assertEquals(0.0, r.getAsJsonObject("overlapped").get("concurrent_ms").getAsDouble());
    assertEquals(0.0, r.get("copy_concurrent_fraction").getAsDouble());
    assertEquals(0.0, r.get("hidden_fraction").getAsDouble());
  }

  @Test
  void aChunkSmallerThanTheMatrixIsOnlyWaitedFor() throws Exception {
    JsonObject r = bench("--device", "cpu", "--chunks", "2", "--chunk-mib", "0.01", "--gemm", "64", "--warmup", "0");
    checkShape(r, 2);
    assertFalse(r.get("gemm_reads_chunk").getAsBoolean());
  }

  @Test
  void badFlagsAreUsageErrors() {
    ByteArrayOutputStream e = new ByteArrayOutputStream();
    PrintStream err = new PrintStream(e, true, StandardCharsets.UTF_8), out = new PrintStream(new ByteArrayOutputStream());
    assertEquals(2, Main.run(new String[] {"bench", "--mode", "overlap", "--device", "cpu", "--chunks", "0"}, out, err));
    assertTrue(e.toString(StandardCharsets.UTF_8).contains("--chunks"), e.toString(StandardCharsets.UTF_8));
    assertEquals(2, Main.run(new String[] {"bench", "--mode=overlap", "--device", "cpu", "--batch", "4"}, out, err));
    assertTrue(e.toString(StandardCharsets.UTF_8).contains("option '--batch' does not apply to --mode overlap"),
        e.toString(StandardCharsets.UTF_8));
  }

  /** On CUDA with pinned memory a copy on the copy stream runs while a GEMM runs on the compute stream. */
  @Test
  void cudaCopiesRunWhileGemmsRun() throws Exception {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
    // 16 MiB copies (~0.3 ms at 50 GB/s) and BF16 2048^3 GEMMs (~0.06 ms): each copy starts when the previous one
    // ends, which is also when the GEMM waiting for that previous one may start.
    JsonObject r = bench("--device", "cuda:0", "--chunks", "4", "--chunk-mib", "16", "--gemm", "2048", "--repeats", "1");
    checkShape(r, 4);
    assertTrue(r.get("pinned").getAsBoolean(), "HOST_PINNED memory is page-locked with CUDA");
    assertTrue(r.get("async_copies").getAsBoolean());
    JsonArray iv = r.getAsJsonObject("overlapped").getAsJsonArray("intervals");
    List<JsonObject> copies = new ArrayList<>(), gemms = new ArrayList<>();
    for (JsonElement el : iv) (el.getAsJsonObject().get("op").getAsString().equals("h2d") ? copies : gemms).add(el.getAsJsonObject());
    boolean intersect = false;
    for (JsonObject c : copies) {
      for (JsonObject g : gemms) {
        double lo = Math.max(c.get("start_ms").getAsDouble(), g.get("start_ms").getAsDouble());
        double hi = Math.min(c.get("end_ms").getAsDouble(), g.get("end_ms").getAsDouble());
        intersect |= lo < hi;
      }
    }
    assertTrue(intersect, "no copy interval intersects a GEMM interval: " + iv);
    assertTrue(r.getAsJsonObject("overlapped").get("concurrent_ms").getAsDouble() > 0);
    // and the serialized baseline never overlaps: one stream
    assertEquals(0.0, r.getAsJsonObject("serialized").get("concurrent_ms").getAsDouble());
  }
}

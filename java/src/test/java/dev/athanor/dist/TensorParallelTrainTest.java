package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.cli.Main;
import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.checkpoint.TrainFixture;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train --tp 2} through real {@code mpirun} against {@code train} in one process (skipped without MPI), GPT-2 (the
 * checkpoint tests' fixture) and Llama with GQA and an untied head: the losses of 20 steps within 1e-4, the gathered
 * model.safetensors in the single-process layout (same names, same shapes, same order) with weights within 1e-4; and the
 * usage errors of {@code --tp}, each naming the flag and the numbers before any work; dp × tp and tp × pp grids bit for
 * bit against tp with accumulation.
 */
class TensorParallelTrainTest {
  static final int STEPS = 20;

  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
    MpiRunTest.tmp = tmp;  // its launcher keeps the native library cache there
  }

  private static List<String> trainArgs(Path config, Path data, Path dir, String... extra) {
    return trainArgs("--config", config, STEPS, data, dir, extra);
  }

  /** {@code model} given by {@code modelFlag} (--config FILE or --model DIR), {@code steps} steps. */
  static List<String> trainArgs(String modelFlag, Path model, int steps, Path data, Path dir, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", modelFlag, model.toString(), "--data", data.toString(), "--device",
        "cpu", "--lr", "3e-3", "--steps", Integer.toString(steps), "--batch", "2", "--seq", "32", "--shuffle", "true", "--warmup", "2", "--log",
        dir.resolve("log.jsonl").toString(), "--out", dir.resolve("model").toString()));
    a.addAll(List.of(extra));
    return a;
  }

  static TrainResult runHere(List<String> args) {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    int rc;
    try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
      rc = Main.run(args.toArray(String[]::new), ps, ps);
    }
    return new TrainResult(rc, buf.toString(StandardCharsets.UTF_8));
  }

  record TrainResult(int exitCode, String output) {}

  static List<JsonObject> steps(Path log) throws IOException {
    List<JsonObject> s = new ArrayList<>();
    for (String l : Files.readAllLines(log)) {
      if (l.contains("\"step\":")) s.add(JsonParser.parseString(l).getAsJsonObject());
    }
    return s;
  }

  /** Trains {@code config} in one process and with --tp 2; returns the measured differences (and checks them). */
  private static String compare(String name, Path config, Path data) throws Exception {
    Path one = tmp.resolve(name + "-one"), tp = tmp.resolve(name + "-tp2");
    TrainResult r = runHere(trainArgs(config, data, one));
    assertEquals(0, r.exitCode(), r.output());
    MpiRunTest.Job j = MpiRunTest.mpirun(2, Main.class.getName(), trainArgs(config, data, tp, "--tp", "2", "--threads", "1"), 300);
    assertEquals(0, j.exitCode(), j.output());
    assertEquals(1, j.output().split("tensor parallel: ", -1).length - 1, "rank 0 alone prints:\n" + j.output());

    List<JsonObject> a = steps(one.resolve("log.jsonl")), b = steps(tp.resolve("log.jsonl"));
    assertEquals(STEPS, a.size());
    assertEquals(STEPS, b.size(), j.output());
    double loss = 0, norm = 0;
    for (int i = 0; i < STEPS; i++) {
      assertEquals(a.get(i).get("tokens").getAsLong(), b.get(i).get("tokens").getAsLong(), "step " + i + " tokens");
      loss = Math.max(loss, Math.abs(a.get(i).get("loss").getAsDouble() - b.get(i).get("loss").getAsDouble()));
      double n = a.get(i).get("grad_norm").getAsDouble();
      norm = Math.max(norm, Math.abs(n - b.get(i).get("grad_norm").getAsDouble()) / n);
    }
    double weights = 0;
    try (Transformer x = HfModelDir.loadModel(one.resolve("model"), Device.CPU);
        Transformer y = HfModelDir.loadModel(tp.resolve("model"), Device.CPU)) {
      Map<String, Tensor> wx = x.weights(), wy = y.weights();
      assertEquals(List.copyOf(wx.keySet()), List.copyOf(wy.keySet()), "tensor names and order");
      for (Map.Entry<String, Tensor> e : wx.entrySet()) {
        Tensor t = wy.get(e.getKey());
        assertArrayEquals(e.getValue().shape(), t.shape(), e.getKey());
        float[] p = e.getValue().toFloatArray(), q = t.toFloatArray();
        for (int i = 0; i < p.length; i++) weights = Math.max(weights, Math.abs(p[i] - q[i]));
      }
    }
    String measured = name + " tp 2 vs one process: loss max abs diff over " + STEPS + " steps " + loss
        + ", final weights max abs diff " + weights + ", gradient norm max rel diff " + norm;
    assertTrue(loss <= 1e-4, measured);
    assertTrue(norm <= 1e-4, measured);
    assertTrue(weights <= 1e-4, measured);
    double first = 0, last = 0;
    for (int i = 0; i < 5; i++) {
      first += a.get(i).get("loss").getAsDouble();
      last += a.get(STEPS - 1 - i).get("loss").getAsDouble();
    }
    assertTrue(last < first,
        "the model trained: losses " + a.stream().map(o -> o.get("loss").getAsString()).toList());
    return measured;
  }

  @Test
  void trainTpTwoMatchesOneProcess() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    String g = compare("gpt2", f.config, f.data);
    Path llama = tmp.resolve("llama-config.json");
    Files.writeString(llama, HfConfig.toJson(ModelConfig.llama(300, 64, 2, 64, 4, 2, 96, 10000f, false)));
    String l = compare("llama", llama, f.data);
    System.out.println(g + "\n" + l);

    // a Hugging Face directory (the Llama run's saved model) loads cut per rank: the same first loss as one process
    Path saved = tmp.resolve("llama-one").resolve("model"), fromOne = tmp.resolve("from-one"), fromTp = tmp.resolve("from-tp");
    TrainResult r = runHere(trainArgs("--model", saved, 2, f.data, fromOne));
    assertEquals(0, r.exitCode(), r.output());
    MpiRunTest.Job j = MpiRunTest.mpirun(2, Main.class.getName(),
        trainArgs("--model", saved, 2, f.data, fromTp, "--tp", "2", "--threads", "1"), 300);
    assertEquals(0, j.exitCode(), j.output());
    double a = steps(fromOne.resolve("log.jsonl")).get(0).get("loss").getAsDouble();
    double b = steps(fromTp.resolve("log.jsonl")).get(0).get("loss").getAsDouble();
    assertTrue(Math.abs(a - b) <= 1e-4, "first loss from the saved model: one process " + a + ", --tp 2 " + b);
  }

  /**
   * dp 2 x tp 2 over 4 processes (the grid's process groups): each data-parallel replica is a tp 2 group, and the
   * replicas' gradients are summed over the data-parallel groups in rank order, so the run equals tp 2 with --accum 2
   * over the same micro-batches bit for bit (every logged step and the gathered final model), also while checkpointing.
   * Its checkpoints (format 3: every rank writes its part, no gathering) resume under dp 2 x tp 2 and as tp
   * 2 with --accum 2 with the uninterrupted run's steps and final weights bit for bit, and as one process with --accum 2
   * with its losses within 1e-4.
   */
  @Test
  void dataTimesTensorParallelEqualsTensorParallelWithAccumulation() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("grid-fixture"));
    Path accum = tmp.resolve("grid-tp2-accum2"), grid = tmp.resolve("grid-dp2-tp2");
    MpiRunTest.Job a = MpiRunTest.mpirun(2, Main.class.getName(),
        trainArgs("--config", f.config, 4, f.data, accum, "--tp", "2", "--accum", "2", "--threads", "1"), 300);
    assertEquals(0, a.exitCode(), a.output());
    MpiRunTest.Job b = MpiRunTest.mpirun(4, Main.class.getName(),
        trainArgs("--config", f.config, 4, f.data, grid, "--dp", "2", "--tp", "2", "--threads", "1", "--checkpoint-dir",
            grid.resolve("ck").toString(), "--checkpoint-every", "2"), 300);
    assertEquals(0, b.exitCode(), b.output());
    assertTrue(b.output().contains("tensor parallel: ") && b.output().contains("data parallel: "), b.output());
    List<JsonObject> x = steps(accum.resolve("log.jsonl")), y = steps(grid.resolve("log.jsonl"));
    assertEquals(4, x.size(), a.output());
    assertEquals(4, y.size(), b.output());
    for (int i = 0; i < 4; i++) {
      for (String k : List.of("step", "loss", "grad_norm", "lr", "tokens")) {
        assertEquals(x.get(i).get(k).getAsString(), y.get(i).get(k).getAsString(), "step " + i + " " + k + ": tp 2 accum 2 vs dp 2 x tp 2");
      }
    }
    assertEquals(-1, Files.mismatch(accum.resolve("model/model.safetensors"), grid.resolve("model/model.safetensors")),
        "final weights differ between tp 2 with --accum 2 and dp 2 x tp 2");


    Path step2 = grid.resolve("ck/step-00000002");
    assertPerRank(step2, 2, 2, 1);
    Path again = tmp.resolve("grid-resumed"), toTp = tmp.resolve("grid-to-tp"), toOne = tmp.resolve("grid-to-one");
    resume(4, f, step2, again, "--dp", "2", "--tp", "2", "--threads", "1");
    assertSameSteps(y, steps(again.resolve("log.jsonl")), 2, "dp 2 x tp 2 resumed from its own step-2 checkpoint");
    assertEquals(-1, Files.mismatch(grid.resolve("model/model.safetensors"), again.resolve("model/model.safetensors")),
        "final weights after resuming under dp 2 x tp 2");
    resume(2, f, step2, toTp, "--tp", "2", "--accum", "2", "--threads", "1");
    assertSameSteps(x, steps(toTp.resolve("log.jsonl")), 2, "tp 2 with --accum 2 resumed from dp 2 x tp 2's checkpoint");
    assertEquals(-1, Files.mismatch(accum.resolve("model/model.safetensors"), toTp.resolve("model/model.safetensors")),
        "final weights after resuming as tp 2 with --accum 2");
    resume(1, f, step2, toOne, "--accum", "2");
    assertClose(x, steps(toOne.resolve("log.jsonl")), 2, "one process with --accum 2 resumed from dp 2 x tp 2's checkpoint");
  }

  /**
   * dp 2 × tp 2 with ZeRO 1 and with ZeRO 2 (each rank's optimizer, and under ZeRO 2 its gradient, a shard of its
   * tensor-parallel part over its dp group) equal dp 2 × tp 2 without ZeRO bit for bit: every step's loss and gradient
   * norm (under ZeRO 2 put together per parameter from the dp shards), and the final weights. ZeRO 1 lowers rank 0's
   * measured peak memory (half its moments), and the planner's estimate for each layout bounds that peak.
   */
  @Test
  void dataTimesTensorParallelWithZeroEqualsWithoutBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("zero-tp-fixture"));
    int n = 3;
    Path plain = tmp.resolve("zero-tp-dp2-tp2");
    MpiRunTest.Job a = MpiRunTest.mpirun(4, Main.class.getName(), trainArgs("--config", f.config, n, f.data, plain, "--dp", "2",
        "--tp", "2", "--threads", "1"), 300);
    assertEquals(0, a.exitCode(), a.output());
    for (String z : List.of("1", "2")) {
      Path sharded = tmp.resolve("zero-tp-dp2-tp2-zero" + z);
      MpiRunTest.Job b = MpiRunTest.mpirun(4, Main.class.getName(), trainArgs("--config", f.config, n, f.data, sharded, "--dp",
          "2", "--tp", "2", "--zero", z, "--threads", "1"), 300);
      assertEquals(0, b.exitCode(), b.output());
      assertTrue(b.output().contains("ZeRO " + z + " (AdamW's moments") && b.output().contains("tensor parallel: "), b.output());
      assertSameRun(plain, sharded, n, "dp 2 x tp 2 vs dp 2 x tp 2 with --zero " + z, b.output());
      // the planner's memory per rank (2 micro-batches per step over the replicas) bounds rank 0's measured peak
      long predicted = ParallelPlanner.estimate(new ParallelPlanner.Job(TrainFixture.model(), Device.CPU, 4, 2, 32, 2, 1L << 30,
          new ParallelPlanner.Hardware(1e9, 1e9, 0)), new ParallelPlanner.Layout(2, 2, 1, Integer.parseInt(z), false)).memoryBytes();
      System.out.println("rank 0 peak HOST bytes: dp 2 x tp 2 " + hostPeak(plain) + ", with --zero " + z + " " + hostPeak(sharded)
          + " (the planner's estimate " + predicted + ")");
      assertTrue(predicted >= hostPeak(sharded), "the planner's " + predicted + " bytes do not bound the measured " + hostPeak(sharded));
      // ZeRO 1 keeps half of each rank's moments (the other replica holds the rest): rank 0's peak is lower
      if (z.equals("1")) assertTrue(hostPeak(sharded) < hostPeak(plain), "ZeRO 1 did not lower rank 0's peak memory");
    }
  }

  /** Rank 0's peak HOST bytes over the step loop, from the summary line of the run's log in {@code dir}. */
  static long hostPeak(Path dir) throws IOException {
    String summary = Files.readAllLines(dir.resolve("log.jsonl")).stream().filter(l -> l.contains("\"summary\"")).findFirst()
        .orElseThrow();
    return JsonParser.parseString(summary).getAsJsonObject().getAsJsonObject("peak_bytes").get("HOST").getAsLong();
  }

  /**
   * Trains the fixture's model for 4 steps resumed from {@code checkpoint} into {@code dir} (its checkpoints in {@code
   * dir/ck}) with {@code flags}: in this process when {@code np} is 1, else through mpirun; fails unless it succeeds.
   */
  static void resume(int np, TrainFixture f, Path checkpoint, Path dir, String... flags) throws Exception {
    List<String> args = new ArrayList<>(trainArgs("--config", f.config, 4, f.data, dir, flags));
    args.addAll(List.of("--resume", checkpoint.toString(), "--checkpoint-dir", dir.resolve("ck").toString()));
    if (np == 1) {
      TrainResult r = runHere(args);
      assertEquals(0, r.exitCode(), r.output());
    } else {
      MpiRunTest.Job j = MpiRunTest.mpirun(np, Main.class.getName(), args, 300);
      assertEquals(0, j.exitCode(), j.output());
    }
  }

  /** {@code b}'s steps from {@code from} on have {@code a}'s step, loss, norm, lr and tokens, bit for bit. */
  static void assertSameSteps(List<JsonObject> a, List<JsonObject> b, int from, String what) {
    List<JsonObject> tail = b.stream().filter(o -> o.get("step").getAsInt() >= from).toList();
    assertEquals(a.size() - from, tail.size(), what + ": steps logged");
    for (int i = 0; i < tail.size(); i++) {
      for (String k : List.of("step", "loss", "grad_norm", "lr", "tokens")) {
        assertEquals(a.get(from + i).get(k).getAsString(), tail.get(i).get(k).getAsString(), what + ": step " + (from + i) + " " + k);
      }
    }
  }

  /**
   * Tensor parallel combined with pipeline parallel: {@code --tp 2 --pp 2 --micro-batches 3} (4 processes, each of 2
   * stages split over 2 tensor-parallel ranks; 1F1B with a recomputed forward) against {@code --tp 2 --accum 3} (the same
   * split of the whole model): every logged step (loss, gradient norm, learning rate, tokens) and the final weights bit
   * for bit, for GPT-2 with tied embeddings and a 3-block Llama with GQA and an untied head (stages of 2 and 1 blocks).
   */
  @Test
  void tensorTimesPipelineEqualsTensorParallelWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("tppp-fixture"));
    Path llama = tmp.resolve("tppp-fixture/llama.json");
    Files.writeString(llama, HfConfig.toJson(ModelConfig.llama(300, 64, 3, 32, 4, 2, 48, 10000f, false)));
    int n = 3;
    for (Path config : List.of(f.config, llama)) {
      String name = config.getFileName().toString().replace(".json", "");
      Path tp = tmp.resolve("tppp-" + name + "-tp2-accum3"), grid = tmp.resolve("tppp-" + name + "-tp2-pp2");
      MpiRunTest.Job a = MpiRunTest.mpirun(2, Main.class.getName(),
          trainArgs("--config", config, n, f.data, tp, "--tp", "2", "--accum", "3", "--threads", "1"), 300);
      assertEquals(0, a.exitCode(), a.output());
      List<String> checkpoints = config.equals(f.config) ? List.of("--checkpoint-dir", grid.resolve("ck").toString(),
          "--checkpoint-every", "2") : List.of();
      List<String> gridArgs = new ArrayList<>(trainArgs("--config", config, n, f.data, grid, "--tp", "2", "--pp", "2",
          "--micro-batches", "3", "--threads", "1"));
      gridArgs.addAll(checkpoints);
      MpiRunTest.Job b = MpiRunTest.mpirun(4, Main.class.getName(), gridArgs, 300);
      assertEquals(0, b.exitCode(), b.output());
      assertEquals(1, b.output().split("pipeline parallel: 2 stages", -1).length - 1, "rank 0 alone prints:\n" + b.output());
      assertTrue(b.output().contains("tensor parallel 2"), b.output());
      assertSameRun(tp, grid, n, name + ": tp 2 with --accum 3 vs tp 2 x pp 2", b.output());
    }
    tensorTimesPipelineCheckpointsResume(f, n);
  }

  /**
   * The GPT-2 tp 2 x pp 2 run's checkpoints ({@code n} steps, one at step 2; format 3, every rank its part) resume under
   * tp 2 x pp 2 and under tp 2 with --accum 3 (the same split) bit for bit: the uninterrupted runs' steps and final
   * weights. One process's checkpoint (format 2) resumes under tp 2 x pp 2 with its losses within 1e-4.
   */
  private void tensorTimesPipelineCheckpointsResume(TrainFixture f, int n) throws Exception {
    String name = f.config.getFileName().toString().replace(".json", "");  // as the test names the runs
    Path tp = tmp.resolve("tppp-" + name + "-tp2-accum3"), grid = tmp.resolve("tppp-" + name + "-tp2-pp2");
    Path step2 = grid.resolve("ck/step-00000002");
    assertPerRank(step2, 1, 2, 2);
    Path again = tmp.resolve("tppp-resumed"), toTp = tmp.resolve("tppp-to-tp");
    List<String> args = new ArrayList<>(trainArgs("--config", f.config, n, f.data, again, "--tp", "2", "--pp", "2",
        "--micro-batches", "3", "--threads", "1", "--resume", step2.toString(), "--checkpoint-dir", again.resolve("ck").toString()));
    MpiRunTest.Job j = MpiRunTest.mpirun(4, Main.class.getName(), args, 300);
    assertEquals(0, j.exitCode(), j.output());
    assertSameSteps(steps(grid.resolve("log.jsonl")), steps(again.resolve("log.jsonl")), 2, "tp 2 x pp 2 resumed from its step 2");
    assertEquals(-1, Files.mismatch(grid.resolve("model/model.safetensors"), again.resolve("model/model.safetensors")),
        "final weights after resuming under tp 2 x pp 2");
    args = new ArrayList<>(trainArgs("--config", f.config, n, f.data, toTp, "--tp", "2", "--accum", "3", "--threads", "1",
        "--resume", step2.toString(), "--checkpoint-dir", toTp.resolve("ck").toString()));
    j = MpiRunTest.mpirun(2, Main.class.getName(), args, 300);
    assertEquals(0, j.exitCode(), j.output());
    assertSameSteps(steps(tp.resolve("log.jsonl")), steps(toTp.resolve("log.jsonl")), 2,
        "tp 2 with --accum 3 resumed from tp 2 x pp 2's step 2");
    assertEquals(-1, Files.mismatch(tp.resolve("model/model.safetensors"), toTp.resolve("model/model.safetensors")),
        "final weights after resuming under tp 2 with --accum 3");

    Path one = tmp.resolve("tppp-one"), oneToGrid = tmp.resolve("tppp-one-to-grid");
    TrainResult r = runHere(trainArgs("--config", f.config, n, f.data, one, "--accum", "3", "--checkpoint-dir",
        one.resolve("ck").toString(), "--checkpoint-every", "2"));
    assertEquals(0, r.exitCode(), r.output());
    assertTrue(Files.isRegularFile(one.resolve("ck/step-00000002/model.safetensors")), "one process: format 2");
    j = MpiRunTest.mpirun(4, Main.class.getName(), trainArgs("--config", f.config, n, f.data, oneToGrid, "--tp", "2", "--pp",
        "2", "--micro-batches", "3", "--threads", "1", "--resume", one.resolve("ck/step-00000002").toString(),
        "--checkpoint-dir", oneToGrid.resolve("ck").toString()), 300);
    assertEquals(0, j.exitCode(), j.output());
    assertClose(steps(one.resolve("log.jsonl")), steps(oneToGrid.resolve("log.jsonl")), 2,
        "tp 2 x pp 2 resumed from one process's step-2 checkpoint");
  }

  /**
   * {@code checkpoint} is format 3 written by every rank of a dp × tp × pp run: one file per rank, the layout in the
   * manifest, and pieces of split tensors cut along a dim (no rank gathers the whole model).
   */
  private static void assertPerRank(Path checkpoint, int dp, int tp, int pp) throws IOException {
    int size = dp * tp * pp;
    assertFalse(Files.exists(checkpoint.resolve("model.safetensors")), checkpoint + ": no one-process model file");
    JsonObject m = JsonParser.parseString(Files.readString(checkpoint.resolve("manifest.json"))).getAsJsonObject();
    assertEquals(3, m.get("format_version").getAsInt(), checkpoint.toString());
    JsonObject layout = m.getAsJsonObject("layout");
    assertEquals(List.of(size, dp, tp, pp), List.of(layout.get("world_size").getAsInt(), layout.get("dp").getAsInt(),
        layout.get("tp").getAsInt(), layout.get("pp").getAsInt()), "layout of " + checkpoint);
    long sliced = 0;
    for (int r = 0; r < size; r++) {
      String file = "rank-" + r + "-of-" + size + ".safetensors";
      assertTrue(Files.isRegularFile(checkpoint.resolve(file)), file + " of " + checkpoint);
      for (var p : m.getAsJsonObject("files").getAsJsonObject(file).getAsJsonArray("pieces")) {
        if (p.getAsJsonObject().has("dim")) sliced++;
      }
    }
    assertTrue(sliced > 0, checkpoint + ": no piece of a split tensor is cut along a dim");
  }

  /**
   * The full grid: dp 2 × tp 2 × pp 2 (8 processes; each pipeline stage split over 2 tensor-parallel ranks, summed with
   * the same stage part of the other pipeline) against dp 2 × tp 2 with {@code --accum 2}: every logged step and the
   * final weights bit for bit (GPT-2, tied embeddings), with ZeRO 1 as well.
   */
  @Test
  void dataTimesTensorTimesPipelineEqualsDataTensorParallelWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("dtp-fixture"));
    Path dt = tmp.resolve("dtp-dp2-tp2-accum2"), grid = tmp.resolve("dtp-dp2-tp2-pp2");
    int n = 2;
    trainMpi(4, f, n, dt, "--dp", "2", "--tp", "2", "--accum", "2");
    MpiRunTest.Job b = trainGrid(f, n, grid);
    assertTrue(b.output().contains("tensor parallel 2") && b.output().contains("data parallel 2")
        && b.output().contains("global batch 2 x 2 x 2 = 8 sequences per step"), b.output());
    assertSameRun(dt, grid, n, "dp 2 x tp 2 with --accum 2 vs dp 2 x tp 2 x pp 2", b.output());
    // ZeRO 1 over each stage's dp group (its tensor-parallel part of the stage sharded): the same bits
    Path zero = tmp.resolve("dtp-dp2-tp2-pp2-zero1");
    MpiRunTest.Job c = trainGrid(f, n, zero, "--zero", "1", "--checkpoint-dir", zero.resolve("ck").toString(),
        "--checkpoint-every", "1");
    assertTrue(c.output().contains("with ZeRO 1"), c.output());
    assertSameRun(dt, zero, n, "dp 2 x tp 2 with --accum 2 vs dp 2 x tp 2 x pp 2 with --zero 1", c.output());
    // its checkpoints (every rank its shard of its stage's tensor-parallel part) resume as one process with --accum 4
    Path step1 = zero.resolve("ck/step-00000001"), toOne = tmp.resolve("dtp-zero1-to-one");
    assertPerRank(step1, 2, 2, 2);
    TrainResult r = runHere(trainArgs("--config", f.config, n, f.data, toOne, "--accum", "4", "--resume", step1.toString(),
        "--checkpoint-dir", toOne.resolve("ck").toString()));
    assertEquals(0, r.exitCode(), r.output());
    assertClose(steps(dt.resolve("log.jsonl")), steps(toOne.resolve("log.jsonl")), 1,
        "one process with --accum 4 resumed from dp 2 x tp 2 x pp 2 x ZeRO 1's step-1 checkpoint");
  }

  /**
   * Checkpoints of dp 2 × tp 2 with ZeRO 2 and with ZeRO 1 (format 3: every rank writes its optimizer shard of its
   * tensor-parallel part, masters and moments; the pieces of a fused weight's slices are partial rows and strided whole
   * rows) describe the global tensors and resume: under dp 2 × tp 2 with either ZeRO stage, and as tp 2 with {@code
   * --accum 2}, with the uninterrupted run's steps and final weights bit for bit (these layouts equal dp 2 × tp 2 bit for
   * bit); as one process with {@code --accum 2} and as dp 2 × ZeRO 1 (across the tensor-parallel split) with its losses
   * within 1e-4. The one process's own checkpoint (format 2) resumes under dp 2 × tp 2 × ZeRO 2 within 1e-4.
   */
  @Test
  void zeroTimesTensorParallelCheckpointsResumeOnEveryLayout() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("zck-fixture"));
    Path zero2 = tmp.resolve("zck-zero2"), zero1 = tmp.resolve("zck-zero1");
    for (Path dir : List.of(zero2, zero1)) {
      String z = dir == zero2 ? "2" : "1";
      MpiRunTest.Job j = MpiRunTest.mpirun(4, Main.class.getName(), trainArgs("--config", f.config, 4, f.data, dir, "--dp", "2",
          "--tp", "2", "--zero", z, "--threads", "1", "--checkpoint-dir", dir.resolve("ck").toString(), "--checkpoint-every", "2"),
          300);
      assertEquals(0, j.exitCode(), j.output());
      assertTrue(j.output().contains("ZeRO " + z + " (AdamW's moments"), j.output());
      assertPerRank(dir.resolve("ck/step-00000002"), 2, 2, 1);
    }
    assertSameRun(zero2, zero1, 4, "dp 2 x tp 2 with --zero 2 vs with --zero 1, checkpointing", "");
    List<JsonObject> want = steps(zero2.resolve("log.jsonl"));
    Path z2 = zero2.resolve("ck/step-00000002"), z1 = zero1.resolve("ck/step-00000002");
    Path again = tmp.resolve("zck-zero2-again"), toTp = tmp.resolve("zck-zero2-to-tp"), toOne = tmp.resolve("zck-zero2-to-one");
    resume(4, f, z2, again, "--dp", "2", "--tp", "2", "--zero", "2", "--threads", "1");
    assertSameFromStep(zero2, again, 2, "dp 2 x tp 2 x ZeRO 2 resumed from its own step-2 checkpoint");
    resume(2, f, z2, toTp, "--tp", "2", "--accum", "2", "--threads", "1");
    assertSameFromStep(zero2, toTp, 2, "tp 2 with --accum 2 resumed from dp 2 x tp 2 x ZeRO 2's checkpoint");
    resume(1, f, z2, toOne, "--accum", "2", "--checkpoint-every", "3");
    assertClose(want, steps(toOne.resolve("log.jsonl")), 2, "one process with --accum 2 resumed from dp 2 x tp 2 x ZeRO 2's checkpoint");
    // and that one process's own checkpoint (format 2, whole tensors) back under dp 2 x tp 2 x ZeRO 2
    Path back = tmp.resolve("zck-one-to-zero2");
    resume(4, f, toOne.resolve("ck/step-00000003"), back, "--dp", "2", "--tp", "2", "--zero", "2", "--threads", "1");
    assertClose(want, steps(back.resolve("log.jsonl")), 3, "dp 2 x tp 2 x ZeRO 2 resumed from one process's step-3 checkpoint");
    // ZeRO 1's checkpoint: under dp 2 x tp 2 x ZeRO 2 (another stage, the same bits), and under dp 2 x ZeRO 1 (no tp)
    Path z1to2 = tmp.resolve("zck-zero1-to-zero2"), toDp = tmp.resolve("zck-zero1-to-dp");
    resume(4, f, z1, z1to2, "--dp", "2", "--tp", "2", "--zero", "2", "--threads", "1");
    assertSameFromStep(zero2, z1to2, 2, "dp 2 x tp 2 x ZeRO 2 resumed from dp 2 x tp 2 x ZeRO 1's step-2 checkpoint");
    resume(2, f, z1, toDp, "--dp", "2", "--zero", "1", "--threads", "1");
    assertClose(want, steps(toDp.resolve("log.jsonl")), 2, "dp 2 x ZeRO 1 resumed from dp 2 x tp 2 x ZeRO 1's checkpoint");
  }

  /** The run in {@code got}, resumed at step {@code from}, logged {@code want}'s steps from there and saved its model, bit for bit. */
  private static void assertSameFromStep(Path want, Path got, int from, String what) throws IOException {
    assertSameSteps(steps(want.resolve("log.jsonl")), steps(got.resolve("log.jsonl")), from, what);
    assertEquals(-1, Files.mismatch(want.resolve("model/model.safetensors"), got.resolve("model/model.safetensors")),
        what + ": final weights differ");
  }

  /**
   * The full grid with ZeRO 2: dp 2 × tp 2 × pp 2 {@code --zero 2} (each stage's tensor-parallel part of its gradient
   * reduce-scattered over its dp group after every micro-batch, the norm put together per parameter from the shards)
   * against {@code --tp 2 --accum 4} (the same split, the same 4 micro-batches per step folded in the same order): every
   * logged step (loss, gradient norm, learning rate, tokens) and the final weights bit for bit (GPT-2, tied embeddings:
   * the head's gradient folded into the first stage's shards). ZeRO 0 and 1 of the grid add each replica's two
   * micro-batches first and then the replicas, so they differ from it in the last bits (as dp × pp does): against ZeRO
   * 1 of the grid the first step's loss is the same bits and the later ones agree within 1e-5.
   */
  @Test
  void dataTimesTensorTimesPipelineZeroTwoEqualsTensorParallelWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("dtpz2-fixture"));
    Path tp = tmp.resolve("dtpz2-tp2-accum4"), grid = tmp.resolve("dtpz2-dp2-tp2-pp2-zero2");
    int n = 3;
    trainMpi(2, f, n, tp, "--tp", "2", "--accum", "4");
    long t0 = System.nanoTime();
    MpiRunTest.Job b = trainGrid(f, n, grid, "--zero", "2", "--checkpoint-dir", grid.resolve("ck").toString(),
        "--checkpoint-every", "1");
    System.out.printf("dp 2 x tp 2 x pp 2 --zero 2, %d steps through mpirun -np 8: %.1f s%n", n, (System.nanoTime() - t0) / 1e9);
    assertTrue(b.output().contains("with ZeRO 2") && b.output().contains("tensor parallel 2"), b.output());
    assertSameRun(tp, grid, n, "tp 2 with --accum 4 vs dp 2 x tp 2 x pp 2 with --zero 2", b.output());
    // its step-1 checkpoint (every rank its ZeRO 2 shard of its stage's tp part) resumes as tp 2 with --accum 4: the
    // same split, so the uninterrupted run's later steps bit for bit
    Path step1 = grid.resolve("ck/step-00000001"), resumed = tmp.resolve("dtpz2-resumed-tp2");
    assertPerRank(step1, 2, 2, 2);
    trainMpi(2, f, n, resumed, "--tp", "2", "--accum", "4", "--resume", step1.toString(), "--checkpoint-dir",
        resumed.resolve("ck").toString());
    List<JsonObject> want = steps(tp.resolve("log.jsonl")), got = steps(resumed.resolve("log.jsonl"));
    assertEquals(n - 1, got.size(), "steps 1.." + (n - 1) + " after resuming");
    for (int i = 1; i < n; i++) {
      assertEquals(want.get(i).get("loss").getAsString(), got.get(i - 1).get("loss").getAsString(), "step " + i + "'s loss");
      assertEquals(want.get(i).get("grad_norm").getAsString(), got.get(i - 1).get("grad_norm").getAsString(),
          "step " + i + "'s gradient norm");
    }
    Path zero1 = tmp.resolve("dtpz2-dp2-tp2-pp2-zero1");
    trainGrid(f, n, zero1, "--zero", "1");
    List<JsonObject> x = steps(zero1.resolve("log.jsonl")), y = steps(grid.resolve("log.jsonl"));
    assertEquals(x.get(0).get("loss").getAsString(), y.get(0).get("loss").getAsString(), "step 0's loss, ZeRO 1 vs ZeRO 2");
    for (int i = 0; i < n; i++) {
      double d = Math.abs(x.get(i).get("loss").getAsDouble() - y.get(i).get("loss").getAsDouble());
      assertTrue(d <= 1e-5, "step " + i + ": ZeRO 1 and ZeRO 2 of the grid differ by " + d + " in the loss");
    }
  }

  /**
   * Trains the fixture's model for {@code n} steps as dp 2 × tp 2 × pp 2 with 2 micro-batches (8 processes through
   * mpirun) and {@code more} flags into {@code dir}; fails unless it succeeds.
   */
  private static MpiRunTest.Job trainGrid(TrainFixture f, int n, Path dir, String... more) throws Exception {
    List<String> flags = new ArrayList<>(List.of("--dp", "2", "--tp", "2", "--pp", "2", "--micro-batches", "2"));
    flags.addAll(List.of(more));
    return trainMpi(8, f, n, dir, flags.toArray(String[]::new));
  }

  /**
   * Trains the fixture's model for {@code n} steps on {@code np} processes through mpirun with {@code flags} (and
   * {@code --threads 1}) into {@code dir}; fails unless it succeeds.
   */
  private static MpiRunTest.Job trainMpi(int np, TrainFixture f, int n, Path dir, String... flags) throws Exception {
    List<String> args = new ArrayList<>(trainArgs("--config", f.config, n, f.data, dir, flags));
    args.addAll(List.of("--threads", "1"));
    MpiRunTest.Job j = MpiRunTest.mpirun(np, Main.class.getName(), args, 300);
    assertEquals(0, j.exitCode(), j.output());
    return j;
  }

  /**
   * The runs in {@code want} and {@code got} logged the same {@code n} steps (step, loss, gradient norm, learning rate,
   * tokens: the same bits), the loss moved, and they saved byte-identical models; {@code output} is {@code got}'s.
   */
  static void assertSameRun(Path want, Path got, int n, String what, String output) throws IOException {
    List<JsonObject> x = steps(want.resolve("log.jsonl")), y = steps(got.resolve("log.jsonl"));
    assertEquals(n, x.size(), what);
    assertEquals(n, y.size(), what + "\n" + output);
    for (int i = 0; i < n; i++) {
      for (String k : List.of("step", "loss", "grad_norm", "lr", "tokens")) {
        assertEquals(x.get(i).get(k).getAsString(), y.get(i).get(k).getAsString(), what + ": step " + i + " " + k);
      }
    }
    assertTrue(x.get(0).get("loss").getAsDouble() != x.get(n - 1).get("loss").getAsDouble(), what + ": the model trained");
    assertEquals(-1, Files.mismatch(want.resolve("model/model.safetensors"), got.resolve("model/model.safetensors")),
        what + ": final weights differ");
  }

  /**
   * Checkpoints written under --tp 2 are format 3, every rank writing its part, and resume as one process with losses
   * within 1e-4 of the uninterrupted one-process run, and under --tp 2 with the --tp 2 run's steps and final weights bit
   * for bit. (One process's checkpoint resuming under tensor parallelism: {@link
   * #tensorTimesPipelineEqualsTensorParallelWithAccumulationBitForBit}.)
   */
  @Test
  void checkpointsResumeAcrossTheLayouts() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ck-fixture"));
    Path one = tmp.resolve("ck-one"), tp = tmp.resolve("ck-tp");
    List<String> a = new ArrayList<>(trainArgs("--config", f.config, 6, f.data, one, "--checkpoint-dir", one.resolve("ck").toString(),
        "--checkpoint-every", "3", "--keep", "10"));
    TrainResult r = runHere(a);
    assertEquals(0, r.exitCode(), r.output());
    MpiRunTest.Job j = MpiRunTest.mpirun(2, Main.class.getName(), trainArgs("--config", f.config, 6, f.data, tp,
        "--checkpoint-dir", tp.resolve("ck").toString(), "--checkpoint-every", "3", "--keep", "10", "--tp", "2", "--threads", "1"),
        300);
    assertEquals(0, j.exitCode(), j.output());
    List<JsonObject> reference = steps(one.resolve("log.jsonl"));
    assertClose(reference, steps(tp.resolve("log.jsonl")), 0, "--tp 2 with checkpoints");
    Path tpStep3 = tp.resolve("ck/step-00000003");
    assertPerRank(tpStep3, 1, 2, 1);

    Path toOne = tmp.resolve("ck-to-one"), toTp = tmp.resolve("ck-to-tp");
    r = runHere(trainArgs("--config", f.config, 6, f.data, toOne, "--resume", tpStep3.toString(), "--checkpoint-dir",
        toOne.resolve("ck").toString()));
    assertEquals(0, r.exitCode(), r.output());
    assertClose(reference, steps(toOne.resolve("log.jsonl")), 3, "one process resumed from --tp 2's step-3 checkpoint");
    j = MpiRunTest.mpirun(2, Main.class.getName(), trainArgs("--config", f.config, 6, f.data, toTp, "--resume",
        tpStep3.toString(), "--checkpoint-dir", toTp.resolve("ck").toString(), "--tp", "2", "--threads", "1"), 300);
    assertEquals(0, j.exitCode(), j.output());
    assertSameSteps(steps(tp.resolve("log.jsonl")), steps(toTp.resolve("log.jsonl")), 3, "--tp 2 resumed from its step-3 checkpoint");
    assertEquals(-1, Files.mismatch(tp.resolve("model/model.safetensors"), toTp.resolve("model/model.safetensors")),
        "final weights after resuming under --tp 2");
  }

  /** {@code b}'s steps from {@code from} on have {@code a}'s losses within 1e-4 (the measured difference in the message). */
  private static void assertClose(List<JsonObject> a, List<JsonObject> b, int from, String what) {
    List<JsonObject> tail = b.stream().filter(o -> o.get("step").getAsInt() >= from).toList();
    assertEquals(a.size() - from, tail.size(), what + ": steps logged");
    double d = 0;
    for (int i = 0; i < tail.size(); i++) {
      assertEquals(a.get(from + i).get("step").getAsInt(), tail.get(i).get("step").getAsInt(), what);
      d = Math.max(d, Math.abs(a.get(from + i).get("loss").getAsDouble() - tail.get(i).get("loss").getAsDouble()));
    }
    assertTrue(d <= 1e-4, what + ": loss max abs diff " + d);
  }

  @Test
  void badTpIsAUsageErrorNamingTheNumbers() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("bad-fixture"));
    Path dir = tmp.resolve("bad");
    TrainResult r = runHere(trainArgs(f.config, f.data, dir, "--tp", "3"));  // 2 heads
    assertEquals(2, r.exitCode(), r.output());
    assertTrue(r.output().contains("--tp 3 does not divide the model's 2 attention heads"), r.output());
    Path gqa = tmp.resolve("gqa-config.json");
    Files.writeString(gqa, HfConfig.toJson(ModelConfig.llama(300, 64, 2, 64, 4, 2, 96, 10000f, false)));
    r = runHere(trainArgs(gqa, f.data, dir, "--tp", "4"));
    assertEquals(2, r.exitCode(), r.output());
    assertTrue(r.output().contains("--tp 4 does not divide the model's 2 key/value heads"), r.output());
    r = runHere(trainArgs(f.config, f.data, dir, "--tp", "2", "--dp", "2"));  // no mpirun
    assertEquals(2, r.exitCode(), r.output());
    assertTrue(r.output().contains("--dp 2 --tp 2 needs 4 processes started by MPI"), r.output());
    r = runHere(trainArgs(f.config, f.data, dir, "--tp", "2", "--dp", "2", "--zero", "3"));  // ZeRO 1 and 2 work with tp
    assertEquals(2, r.exitCode(), r.output());
    assertTrue(r.output().contains("--zero 3 with --tp 2 is not supported yet"), r.output());
    r = runHere(trainArgs(f.config, f.data, dir, "--tp", "2", "--offload", "auto"));
    assertEquals(2, r.exitCode(), r.output());
    assertTrue(r.output().contains("--tp 2 with --offload"), r.output());
    r = runHere(trainArgs(f.config, f.data, dir, "--tp", "2"));  // no mpirun
    assertEquals(2, r.exitCode(), r.output());
    assertTrue(r.output().contains("--tp 2 needs 2 processes started by MPI"), r.output());
    assertTrue(!Files.exists(dir.resolve("log.jsonl")), "no work before the usage errors");
  }
}

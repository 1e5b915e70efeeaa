package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.cli.Main;
import dev.athanor.testing.ChildClassPath;
import dev.athanor.train.checkpoint.TrainFixture;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The MPI communicator and data-parallel training through real {@code mpirun} processes (skipped, with the reason,
 * when mpirun or the MPI shim is missing): every collective in every dtype on awkward sizes against a local reference
 * (2 and 3 ranks, both modes); {@code train --dp 2} against one process with {@code --accum 2} over the same
 * micro-batches, bit for bit; multi-process checkpoints (a file per rank) resumed with another layout and the other way
 * round; a --dp that
 * does not match the processes; and a rank killed with SIGKILL.
 */
class MpiRunTest {
  /** What running as root in a container needs, unless the environment already says otherwise. */
  static final Map<String, String> ENV = Map.of("OMPI_ALLOW_RUN_AS_ROOT", "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1",
      "OMPI_MCA_btl_vader_single_copy_mechanism", "none");

  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    boolean mpirun = false;
    for (String d : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
      if (!d.isBlank() && Files.isExecutable(Path.of(d, "mpirun"))) mpirun = true;
    }
    Assumptions.assumeTrue(mpirun, "mpirun is not on PATH (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)");
    Assumptions.assumeTrue(MpiRunTest.class.getClassLoader().getResource(MpiLibrary.RESOURCE) != null,
        "this build has no MPI shim (" + MpiLibrary.RESOURCE + "): CMake found no MPI when libathanor was built");
  }

  /** An mpirun job's exit code and its merged output. */
  record Job(int exitCode, String output) {}

  /** {@code mpirun -np np java ... main args}, killed (and failed) after {@code timeoutSeconds}. */
  static Job mpirun(int np, String main, List<String> args, int timeoutSeconds) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of("mpirun", "--oversubscribe", "--bind-to", "none"));
    cmd.addAll(app(np, main, args));
    return run(cmd, timeoutSeconds);
  }

  /** One application context of an mpirun command line: {@code -np np java ... main args}. */
  static List<String> app(int np, String main, List<String> args) {
    List<String> cmd = new ArrayList<>(List.of("-np", Integer.toString(np),
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "--enable-native-access=ALL-UNNAMED", "-Xmx256m",
        "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true", "-Dathanor.cache.dir=" + tmp.resolve("native-cache"),
        "-cp", ChildClassPath.forMain(), main));
    cmd.addAll(args);
    return cmd;
  }

  static Job run(List<String> cmd, int timeoutSeconds) throws IOException, InterruptedException {
    Path out = Files.createTempFile(tmp, "mpirun-", ".txt");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile());
    ENV.forEach((k, v) -> pb.environment().putIfAbsent(k, v));
    Process p = pb.start();
    if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly().waitFor();
      fail("mpirun did not finish in " + timeoutSeconds + " s; output:\n" + Files.readString(out));
    }
    return new Job(p.exitValue(), Files.readString(out));
  }

  private static void collectives(int np, String mode) throws Exception {
    Job j = mpirun(np, CollectivesMain.class.getName(), List.of(mode), 180);
    assertEquals(0, j.exitCode(), j.output());
    for (int r = 0; r < np; r++) {
      assertTrue(j.output().contains("rank " + r + " of " + np + " ("), "no report from rank " + r + ":\n" + j.output());
    }
    assertTrue(j.output().contains("checks passed"), j.output());
  }

  @Test
  void collectivesTwoRanksDeterministic() throws Exception {
    collectives(2, "deterministic");
  }

  @Test
  void collectivesThreeRanksDeterministic() throws Exception {
    collectives(3, "deterministic");
  }

  /** dp 2 x tp 2 and dp 1 x tp 2 x pp 2 over 4 processes: every group of every rank against the grid's arithmetic. */
  @Test
  void processGroupsOfAGrid() throws Exception {
    for (List<String> dims : List.of(List.of("2", "2", "1"), List.of("1", "2", "2"))) {
      Job j = mpirun(4, GridMain.class.getName(), dims, 180);
      assertEquals(0, j.exitCode(), j.output());
      assertEquals(4, j.output().split("grid checks passed", -1).length - 1, j.output());
    }
  }

  @Test
  void collectivesTwoRanksFast() throws Exception {
    collectives(2, "fast");
  }

  /** The train command line shared by both runs; {@code dir} receives the log and the model. */
  private static List<String> trainArgs(TrainFixture f, Path dir, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--config", f.config.toString(), "--data", f.data.toString(), "--device",
        "cpu", "--steps", "6", "--batch", "2", "--seq", "32", "--shuffle", "true", "--warmup", "2", "--log",
        dir.resolve("log.jsonl").toString(), "--out", dir.resolve("model").toString()));
    a.addAll(List.of(extra));
    return a;
  }

  @Test
  void dataParallelTwoEqualsOneProcessWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("dp-fixture"));
    Path one = tmp.resolve("one"), dp = tmp.resolve("dp2");
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    int rc;
    try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
      rc = Main.run(trainArgs(f, one, "--accum", "2").toArray(String[]::new), ps, ps);
    }
    assertEquals(0, rc, buf.toString(StandardCharsets.UTF_8));
    Job j = mpirun(2, Main.class.getName(), trainArgs(f, dp, "--dp", "2", "--threads", "1"), 300);
    assertEquals(0, j.exitCode(), j.output());
    assertEquals(1, j.output().split("data parallel: ", -1).length - 1, "rank 0 alone prints:\n" + j.output());

    List<String> a = stepLines(one.resolve("log.jsonl")), b = stepLines(dp.resolve("log.jsonl"));
    assertEquals(6, a.size());
    assertEquals(a.size(), b.size(), "steps logged:\n" + j.output());
    for (int i = 0; i < a.size(); i++) {
      JsonObject x = JsonParser.parseString(a.get(i)).getAsJsonObject(), y = JsonParser.parseString(b.get(i)).getAsJsonObject();
      for (String k : List.of("step", "loss", "grad_norm", "lr", "tokens")) {
        assertEquals(x.get(k).getAsString(), y.get(k).getAsString(), "step " + i + " " + k + ": one process vs dp 2");
      }
      assertTrue(y.get("comm_ms").getAsDouble() >= 0 && y.get("comm_bytes").getAsLong() > 0, "dp 2 logs its communication: " + y);
      assertFalse(x.has("comm_ms"), "one process does not communicate: " + x);
    }
    assertNotEquals(JsonParser.parseString(a.get(0)).getAsJsonObject().get("loss").getAsString(),
        JsonParser.parseString(a.get(5)).getAsJsonObject().get("loss").getAsString(), "the model trained");
    Path wa = one.resolve("model/model.safetensors"), wb = dp.resolve("model/model.safetensors");
    assertEquals(-1, Files.mismatch(wa, wb), "final weights differ between one process with --accum 2 and --dp 2");

    // ZeRO 1: each rank keeps and updates half of AdamW's moments; the same bits again
    Path zero = tmp.resolve("dp2-zero1");
    Job z = mpirun(2, Main.class.getName(), trainArgs(f, zero, "--dp", "2", "--zero", "1", "--threads", "1"), 300);
    assertEquals(0, z.exitCode(), z.output());
    assertTrue(z.output().contains("ZeRO 1"), z.output());
    List<String> zl = stepLines(zero.resolve("log.jsonl")).stream().map(MpiRunTest::withoutTimes).toList();
    assertEquals(a.stream().map(MpiRunTest::withoutTimes).toList(), zl, "--zero 1 vs one process: every logged step");
    assertEquals(-1, Files.mismatch(wa, zero.resolve("model/model.safetensors")), "final weights differ with --zero 1");
  }

  /**
   * {@code bench --mode train --dp 2} (and {@code --tp 2}) under mpirun: rank 0 alone prints one JSON line, counting both
   * processes' tokens under --dp,
   * and the bytes it reports per step are exactly what plain data parallel hands to collectives a step: the flat F32
   * gradient (one all-reduce) and its micro-batch's loss (one F32, all-gathered for the log); it says whether --overlap
   * was on, the bucket size and what ran on the communication thread (the all-reduce's buckets; under --zero 2 the unit
   * folds, under --zero 3 the gathers read ahead and the folds, nothing with --overlap off); --zero 3 runs ZeRO 3 (its
   * gathers add to the bytes of ZeRO 2's folds).
   */
  @Test
  void benchDataParallelReportsTheStepsAllReduce() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("bench-fixture"));
    JsonObject o = bench(f, "--dp", "2");
    assertEquals(2, o.get("dp").getAsInt());
    assertEquals(0, o.get("zero").getAsInt());
    assertEquals(4, o.get("batch").getAsInt(), "the batch counts both processes: " + o);
    assertEquals(2, o.get("batch_per_process").getAsInt());
    long gradientBytes;
    try (dev.athanor.nn.Transformer m = dev.athanor.nn.Transformer.create(TrainFixture.model(), dev.athanor.runtime.Device.CPU)) {
      gradientBytes = 4 * m.parameters().numel();
    }
    assertEquals(gradientBytes + 4, o.get("comm_bytes_per_step").getAsLong(), "the gradient and the loss a step: " + o);
    assertTrue(o.get("tokens_per_s").getAsDouble() > 0 && o.get("comm_ms_median").getAsDouble() >= 0, o.toString());
    // delivered to the other rank: half the gradient in the all-to-all, the summed half in the all-gather, and the loss
    assertEquals(gradientBytes + 4, o.get("comm_sent_bytes_per_step").getAsLong(), o.toString());
    assertEquals("on", o.get("overlap").getAsString(), "--overlap on by default, as train: " + o);
    assertEquals(25, o.get("bucket_mb").getAsDouble(), o.toString());
    assertTrue(o.get("overlapped").getAsString().startsWith("gradient all-reduce in "), o.toString());
    // ZeRO 2 as train runs it: each unit's fold on the communication thread with --overlap on, on the training thread off
    JsonObject z = bench(f, "--dp", "2", "--zero", "2", "--bucket-mb", "0.5");
    assertEquals(0.5, z.get("bucket_mb").getAsDouble(), z.toString());
    assertTrue(z.get("overlapped").getAsString().startsWith("ZeRO 2 unit folds"), z.toString());
    JsonObject zo = bench(f, "--dp", "2", "--zero", "2", "--overlap", "off");
    assertEquals("off", zo.get("overlap").getAsString(), zo.toString());
    assertEquals("nothing", zo.get("overlapped").getAsString(), zo.toString());
    // ZeRO 3 as train runs it (ShardedWeights), not ZeRO 2's trainer: besides the folds of the gradient (ZeRO 2's bytes),
    // every step gathers each unit's weights at least once, rank 0 handing its shard of the masters (numel / 2
    // elements) to the all-gathers at least once; with --overlap on the gathers read ahead and the folds on the
    // communication thread
    JsonObject z3 = bench(f, "--dp", "2", "--zero", "3");
    assertEquals(3, z3.get("zero").getAsInt(), z3.toString());
    assertTrue(z3.get("overlapped").getAsString().startsWith("ZeRO 3 gathers read ahead and unit folds"), z3.toString());
    long zero2Bytes = z.get("comm_bytes_per_step").getAsLong(), zero3Bytes = z3.get("comm_bytes_per_step").getAsLong();
    assertTrue(zero3Bytes - zero2Bytes >= 4 * Communicator.partStart(gradientBytes / 4, 1, 2), "ZeRO 3 gathers the "
        + "weights: " + zero3Bytes + " bytes a step vs ZeRO 2's " + zero2Bytes);
    JsonObject z3o = bench(f, "--dp", "2", "--zero", "3", "--overlap", "off");
    assertEquals("nothing", z3o.get("overlapped").getAsString(), z3o.toString());
    assertEquals(zero3Bytes, z3o.get("comm_bytes_per_step").getAsLong(), "the same collectives with --overlap off: " + z3o);

    // tensor parallel: both ranks read the same batch and hold half of each block
    JsonObject t = bench(f, "--tp", "2");
    assertEquals(1, t.get("dp").getAsInt());
    assertEquals(2, t.get("tp").getAsInt());
    assertEquals(2, t.get("batch").getAsInt(), "the tensor-parallel ranks share one batch: " + t);
    assertTrue(t.get("comm_sent_bytes_per_step").getAsLong() > 0 && t.get("tokens_per_s").getAsDouble() > 0, t.toString());
  }

  /**
   * {@code bench --mode train --pp 2 --micro-batches 2}: two stages over mpirun, rank 0 (stage 0) reports the global
   * batch (2 micro-batches of 2), positive tokens/s, every step's delivered bytes equal to the planner's prediction for
   * stage 0 of {@code --pp 2} (the hidden states' gradients it sends, the tied embedding's sum, the norm's partials),
   * the 1F1B bubble (pp-1)/(M+pp-1) = 1/3 and a blocked share of its step between 0 and 1.
   */
  @Test
  void benchPipelineReportsThePlannersTraffic() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("bench-pp-fixture"));
    JsonObject o = bench(f, "--pp", "2", "--micro-batches", "2");
    assertEquals(2, o.get("pp").getAsInt(), o.toString());
    assertEquals(1, o.get("dp").getAsInt(), o.toString());
    assertEquals(2, o.get("micro_batches").getAsInt(), o.toString());
    assertEquals(4, o.get("batch").getAsInt(), "the batch counts both micro-batches: " + o);
    dev.athanor.nn.ModelConfig mc = TrainFixture.model();
    assertEquals(new dev.athanor.dist.pipeline.PipelineLayout(mc, 2).stage(0).blocks(), o.get("stage_blocks").getAsInt());
    var job = new dev.athanor.dist.plan.ParallelPlanner.Job(mc, dev.athanor.runtime.Device.CPU, 2, 2, 16, 2, 1L << 30,
        new dev.athanor.dist.plan.ParallelPlanner.Hardware(1e9, 1e9, 0));
    long predicted = dev.athanor.dist.plan.ParallelPlanner.sentBytes(job,
        new dev.athanor.dist.plan.ParallelPlanner.Layout(1, 1, 2, 0, false), 0, 0, 0);
    assertTrue(predicted > 0);
    assertEquals(predicted, o.get("comm_sent_bytes_per_step").getAsLong(), "the planner's bytes for stage 0: " + o);
    assertTrue(o.get("comm_bytes_per_step").getAsLong() >= predicted, o.toString());
    assertTrue(o.get("tokens_per_s").getAsDouble() > 0 && o.get("comm_ms_median").getAsDouble() >= 0, o.toString());
    assertEquals(0.3333, o.get("bubble_1f1b_theory").getAsDouble(), 1e-9, o.toString());
    double blocked = o.get("stage0_comm_fraction_median").getAsDouble();
    assertTrue(blocked >= 0 && blocked <= 1, o.toString());
  }

  /** {@code bench --mode train} of {@code f}'s model on 2 processes with {@code flags}: the one JSON line rank 0 prints. */
  private static JsonObject bench(TrainFixture f, String... flags) throws Exception {
    List<String> a = new ArrayList<>(List.of("bench", "--mode", "train", "--config", f.config.toString(), "--device", "cpu",
        "--batch", "2", "--seq", "16", "--steps", "2", "--warmup-steps", "1", "--threads", "1"));
    a.addAll(List.of(flags));
    Job j = mpirun(2, Main.class.getName(), a, 300);
    assertEquals(0, j.exitCode(), j.output());
    List<String> lines = j.output().lines().filter(l -> l.startsWith("{")).toList();
    assertEquals(1, lines.size(), "rank 0 alone prints:\n" + j.output());
    return JsonParser.parseString(lines.get(0)).getAsJsonObject();
  }

  /**
   * {@code train --pp 2 --micro-batches 3} (two stages: 1F1B with a steady phase, stage 0 keeping two micro-batches' activations) against one
   * process with {@code --accum 3} over the same micro-batches: every logged step (loss, norm, lr, tokens) and the
   * final weights bit for bit, for GPT-2 with tied embeddings (the first and last stage each hold the embedding) and
   * for a 3-block Llama without (stages of 2 and 1 blocks; and --pp 3, one block each).
   */
  @Test
  void pipelineTwoEqualsOneProcessWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("pp-fixture"));
    Path llama = tmp.resolve("pp-fixture/llama.json");
    Files.writeString(llama, dev.athanor.io.hf.HfConfig.toJson(dev.athanor.nn.ModelConfig.llama(300, 64, 3, 32, 4, 2, 48,
        10000f, false)));
    for (Path config : List.of(f.config, llama)) {
      String name = config.getFileName().toString().replace(".json", "");
      Path one = tmp.resolve("pp-one-" + name), pp = tmp.resolve("pp-two-" + name);
      List<String> a1 = new ArrayList<>(trainArgs(f, one, "--accum", "3"));
      a1.set(a1.indexOf("--config") + 1, config.toString());
      a1.set(a1.indexOf("--steps") + 1, "4");
      trainHere(a1);
      List<String> a2 = new ArrayList<>(trainArgs(f, pp, "--pp", "2", "--micro-batches", "3", "--threads", "1"));
      a2.set(a2.indexOf("--config") + 1, config.toString());
      a2.set(a2.indexOf("--steps") + 1, "4");
      Job j = mpirun(2, Main.class.getName(), a2, 300);
      assertEquals(0, j.exitCode(), j.output());
      assertEquals(1, j.output().split("pipeline parallel: 2 stages", -1).length - 1, "rank 0 alone prints:\n" + j.output());
      assertTrue(j.output().contains("bubble (pp-1)/(M+pp-1) = 0.250"), j.output());
      List<String> want = steps(one), got = steps(pp);
      assertEquals(4, want.size(), name);
      assertEquals(want, got, name + ": every logged step, one process with --accum 3 vs --pp 2 --micro-batches 3");
      assertNotEquals(JsonParser.parseString(want.get(0)).getAsJsonObject().get("loss").getAsString(),
          JsonParser.parseString(want.get(3)).getAsJsonObject().get("loss").getAsString(), name + ": the model trained");
      Path model = Path.of("model", "model.safetensors");
      assertEquals(-1, Files.mismatch(one.resolve(model), pp.resolve(model)), name + ": final weights");
      if (config == llama) {  // three stages of one block: a middle stage, and the norm's chunk assembled from three
        Path pp3 = tmp.resolve("pp-three-" + name);
        List<String> a3 = new ArrayList<>(a2);
        a3.set(a3.indexOf("--out") + 1, pp3.resolve("model").toString());
        a3.set(a3.indexOf("--log") + 1, pp3.resolve("log.jsonl").toString());
        a3.set(a3.indexOf("--pp") + 1, "3");
        Job k = mpirun(3, Main.class.getName(), a3, 300);
        assertEquals(0, k.exitCode(), k.output());
        assertTrue(k.output().contains("pipeline parallel: 3 stages (blocks [0, 1) [1, 2) [2, 3))"), k.output());
        assertEquals(want, steps(pp3), name + ": every logged step, --pp 3 --micro-batches 3");
        assertEquals(-1, Files.mismatch(one.resolve(model), pp3.resolve(model)), name + ": final weights with --pp 3");
      }
    }
  }

  /**
   * dp 2 × pp 2 (4 processes in the grid's order: ranks 0, 1 are stage 0 of pipelines 0, 1) against dp 2 with {@code
   * --accum 2}, each replica of which runs the same micro-batches through the whole model: every logged step and the
   * final weights bit for bit (GPT-2, tied embeddings: the pipeline's tied reduction comes before the data-parallel
   * sum of each stage over its dp group).
   */
  @Test
  void dataTimesPipelineEqualsDataParallelWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("dpp-fixture"));
    Path dp = tmp.resolve("dpp-dp2"), grid = tmp.resolve("dpp-dp2-pp2");
    List<String> a1 = new ArrayList<>(trainArgs(f, dp, "--dp", "2", "--accum", "2", "--threads", "1"));
    a1.set(a1.indexOf("--steps") + 1, "3");
    trainMpi(a1);
    List<String> a2 = new ArrayList<>(trainArgs(f, grid, "--dp", "2", "--pp", "2", "--micro-batches", "2", "--threads", "1"));
    a2.set(a2.indexOf("--steps") + 1, "3");
    Job j = mpirun(4, Main.class.getName(), a2, 300);
    assertEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("global batch 2 x 2 x 2 = 8 sequences per step"), j.output());
    List<String> want = steps(dp);
    assertEquals(3, want.size());
    assertEquals(want, steps(grid), "every logged step, --dp 2 --accum 2 vs --dp 2 --pp 2 --micro-batches 2");
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(dp.resolve(model), grid.resolve(model)), "final weights");

    // ZeRO 1 over each stage's dp group: each replica updates half of its stage; the same bits again
    Path zero = tmp.resolve("dpp-dp2-pp2-zero1");
    List<String> a3 = new ArrayList<>(trainArgs(f, zero, "--dp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "1",
        "--threads", "1"));
    a3.set(a3.indexOf("--steps") + 1, "3");
    Job z = mpirun(4, Main.class.getName(), a3, 300);
    assertEquals(0, z.exitCode(), z.output());
    assertTrue(z.output().contains("ZeRO 1"), z.output());
    assertEquals(want, steps(zero), "every logged step, --dp 2 --accum 2 vs --dp 2 --pp 2 --micro-batches 2 --zero 1");
    assertEquals(-1, Files.mismatch(dp.resolve(model), zero.resolve(model)), "final weights with --zero 1");
  }

  /**
   * dp 2 × pp 2 × ZeRO 2 (each stage's micro-batch gradient reduce-scattered over its dp group into the stage's shard;
   * tied embeddings: the first stage adds the last stage's head gradient per micro-batch before folding it, and the
   * last stage's copy is given the first's folded sum; the clipping norm from the shards of both stages) against one
   * process with {@code --accum 4}: every logged step and the final weights bit for bit, also while saving a checkpoint
   * at every step, whose step-2 one resumes as that one process with its bits. (dp × pp × ZeRO 1 adds each
   * replica's micro-batches first, as plain dp does, so it differs from both in the last bits at 2 micro-batches.)
   */
  @Test
  void dataTimesPipelineZeroTwoEqualsOneProcessWithAccumulationBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("dppz2-fixture"));
    Path one = tmp.resolve("dppz2-one"), grid = tmp.resolve("dppz2-dp2-pp2-zero2");
    trainHere(threeSteps(trainArgs(f, one, "--accum", "4")));
    Job j = mpirun(4, Main.class.getName(), threeSteps(concat(trainArgs(f, grid, "--dp", "2", "--pp", "2", "--micro-batches",
        "2", "--zero", "2", "--threads", "1", "--checkpoint-dir", grid.resolve("ck").toString()),
        List.of("--checkpoint-every", "1", "--keep", "10"))), 300);
    assertTrue(j.exitCode() == 0 && j.output().contains("with ZeRO 2"), j.output());
    assertSameTraining(one, grid, 3, "one process with --accum 4 vs --dp 2 --pp 2 --micro-batches 2 --zero 2");

    // its step-2 checkpoint (format 3, each stage's dp ranks their shards) resumes as one process
    Path resumed = tmp.resolve("dppz2-resume-one");
    trainHere(threeSteps(trainArgs(f, resumed, "--accum", "4", "--resume", grid.resolve("ck/step-00000002").toString())));
    assertEquals(steps(one).subList(2, 3), steps(resumed), "step 2 resumed as one process from dp 2 x pp 2 x ZeRO 2's checkpoint");
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(one.resolve(model), resumed.resolve(model)), "final weights after resuming as one process");
  }

  /** {@code got} logged the same {@code n} steps as {@code want} and saved byte-identical final weights. */
  private static void assertSameTraining(Path want, Path got, int n, String what) throws IOException {
    List<String> w = steps(want);
    assertEquals(n, w.size(), what);
    assertEquals(w, steps(got), "every logged step, " + what);
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(want.resolve(model), got.resolve(model)), "final weights, " + what);
  }

  /** {@code args} with {@code --steps 3}. */
  private static List<String> threeSteps(List<String> args) {
    List<String> a = new ArrayList<>(args);
    a.set(a.indexOf("--steps") + 1, "3");
    return a;
  }

  /** Runs {@code train} in this JVM (one process); fails with its output unless it succeeds. */
  static void trainHere(List<String> args) {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    int rc;
    try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
      rc = Main.run(args.toArray(String[]::new), ps, ps);
    }
    assertEquals(0, rc, buf.toString(StandardCharsets.UTF_8));
  }

  private static void trainMpi(List<String> args) throws Exception {
    Job j = mpirun(2, Main.class.getName(), args, 300);
    assertEquals(0, j.exitCode(), j.output());
  }

  /** A run's step lines without their timing fields. */
  private static List<String> steps(Path run) throws IOException {
    return stepLines(run.resolve("log.jsonl")).stream().map(MpiRunTest::withoutTimes).toList();
  }

  /**
   * Checkpoints resume with any layout: dp 2 × ZeRO 1 saving at every step (format 3: each rank writes its shard into its
   * own file, rank 0 the manifest listing both) trains exactly as without checkpoints and as one process with --accum 2;
   * its step-3 checkpoint resumes as one process and under dp 2 × ZeRO 0, whose format-3 checkpoint (each rank its cut of
   * the flat state) resumes under dp 2 × ZeRO 1 and as one process; the one process's (format 2) resumes under dp 2 ×
   * ZeRO 1. Each finishes with the same losses and byte-identical final weights. A missing or corrupted rank file is an
   * error naming it. The checkpoints written in the background (the default) hold the same rank files, byte for byte, and
   * the same manifest pieces as those of a --checkpoint-sync run.
   */
  @Test
  void zeroOneCheckpointsResumeWithAnyLayout() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ck-fixture"));
    Path one = tmp.resolve("ck-one"), zero = tmp.resolve("ck-zero"), plain = tmp.resolve("ck-zero-plain");
    Path zeroSync = tmp.resolve("ck-zero-sync");
    List<String> keepAll = List.of("--checkpoint-every", "1", "--keep", "10");
    List<String> zeroFlags = List.of("--dp", "2", "--zero", "1", "--threads", "1");
    trainHere(concat(trainArgs(f, one, "--accum", "2", "--checkpoint-dir", one.resolve("ck").toString()), keepAll));
    trainMpi(concat(trainArgs(f, zero, "--checkpoint-dir", zero.resolve("ck").toString()), keepAll, zeroFlags));
    trainMpi(concat(trainArgs(f, zeroSync, "--checkpoint-dir", zeroSync.resolve("ck").toString(), "--checkpoint-sync"), keepAll,
        zeroFlags));
    trainMpi(concat(trainArgs(f, plain), zeroFlags));

    // background writes (the default) and --checkpoint-sync write the same checkpoints, every step
    List<Path> background = dev.athanor.train.checkpoint.CheckpointManager.stepDirs(zero.resolve("ck"));
    List<Path> sync = dev.athanor.train.checkpoint.CheckpointManager.stepDirs(zeroSync.resolve("ck"));
    assertEquals(sync.stream().map(p -> p.getFileName().toString()).toList(),
        background.stream().map(p -> p.getFileName().toString()).toList(), "the same steps saved");
    assertEquals(6, background.size(), "a checkpoint per step (--keep 10)");
    for (int i = 0; i < sync.size(); i++) {
      for (String file : List.of("rank-0-of-2.safetensors", "rank-1-of-2.safetensors")) {
        assertEquals(-1, Files.mismatch(sync.get(i).resolve(file), background.get(i).resolve(file)),
            background.get(i) + "/" + file + ": background vs --checkpoint-sync");
      }
      JsonObject a = JsonParser.parseString(Files.readString(sync.get(i).resolve("manifest.json"))).getAsJsonObject();
      JsonObject b = JsonParser.parseString(Files.readString(background.get(i).resolve("manifest.json"))).getAsJsonObject();
      for (String k : List.of("files", "tensors", "layout", "step", "adam_step", "data_loader")) {
        assertEquals(a.get(k), b.get(k), background.get(i) + " manifest " + k + ": background vs --checkpoint-sync");
      }
    }

    // (a) saving (every step, every rank its own file) changes nothing
    List<String> reference = steps(one);
    assertEquals(6, reference.size());
    assertEquals(reference, steps(zero), "dp 2 × ZeRO 1 with checkpoints vs one process with --accum 2");
    assertEquals(reference, steps(plain), "dp 2 × ZeRO 1 without checkpoints vs one process with --accum 2");
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(one.resolve(model), zero.resolve(model)), "final weights: dp 2 × ZeRO 1 with checkpoints");
    assertEquals(-1, Files.mismatch(one.resolve(model), plain.resolve(model)), "final weights: dp 2 × ZeRO 1 without");
    Path oneStep3 = one.resolve("ck/step-00000003"), zeroStep3 = zero.resolve("ck/step-00000003");
    assertTrue(Files.isRegularFile(oneStep3.resolve("model.safetensors")), "one process: format 2");
    try (var files = Files.list(zeroStep3)) {
      assertEquals(List.of("manifest.json", "rank-0-of-2.safetensors", "rank-1-of-2.safetensors"),
          files.map(p -> p.getFileName().toString()).sorted().toList(), "dp 2: a file per rank and the manifest");
    }
    JsonObject mf = JsonParser.parseString(Files.readString(zeroStep3.resolve("manifest.json"))).getAsJsonObject();
    assertEquals(3, mf.get("format_version").getAsInt());
    assertEquals(2, mf.getAsJsonObject("layout").get("world_size").getAsInt());
    assertEquals(1, mf.getAsJsonObject("layout").get("zero").getAsInt());
    for (String file : List.of("rank-0-of-2.safetensors", "rank-1-of-2.safetensors")) {
      assertFalse(mf.getAsJsonObject("files").getAsJsonObject(file).getAsJsonArray("pieces").isEmpty(), file + " lists pieces");
    }
    assertTrue(Files.isDirectory(zero.resolve("ck/step-00000006")), "the final save");
    try (var left = Files.list(zero.resolve("ck"))) {
      assertTrue(left.noneMatch(p -> p.getFileName().toString().startsWith(".tmp")), "no temporary left");
    }

    // a missing or corrupted rank file: Checkpoint.open names it
    Path broken = tmp.resolve("ck-broken");
    Files.createDirectories(broken);
    for (String file : List.of("manifest.json", "rank-0-of-2.safetensors")) Files.copy(zeroStep3.resolve(file), broken.resolve(file));
    String missing = assertThrowsCheckpoint(broken);
    assertTrue(missing.contains("rank-1-of-2.safetensors is missing"), missing);
    byte[] b = Files.readAllBytes(zeroStep3.resolve("rank-1-of-2.safetensors"));
    b[b.length - 3] ^= 1;
    Files.write(broken.resolve("rank-1-of-2.safetensors"), b);
    String corrupt = assertThrowsCheckpoint(broken);
    assertTrue(corrupt.contains("rank-1-of-2.safetensors fails its checksum"), corrupt);

    // (b) the dp 2 × ZeRO 1 checkpoint resumes as one process with --accum 2
    Path toOne = tmp.resolve("ck-resume-one");
    trainHere(trainArgs(f, toOne, "--accum", "2", "--resume", zeroStep3.toString(), "--checkpoint-dir",
        toOne.resolve("ck").toString()));
    assertEquals(reference.subList(3, 6), steps(toOne), "steps 3..5 resumed as one process from dp 2 × ZeRO 1's checkpoint");
    assertEquals(-1, Files.mismatch(zero.resolve(model), toOne.resolve(model)), "final weights after resuming as one process");

    // (c) the one process's checkpoint resumes under dp 2 × ZeRO 1, each rank cutting its shard out of the moments
    Path toZero = tmp.resolve("ck-resume-zero");
    trainMpi(concat(trainArgs(f, toZero, "--resume", oneStep3.toString(), "--checkpoint-dir", toZero.resolve("ck").toString()),
        zeroFlags));
    assertEquals(reference.subList(3, 6), steps(toZero), "steps 3..5 resumed under dp 2 × ZeRO 1 from one process's checkpoint");
    assertEquals(-1, Files.mismatch(one.resolve(model), toZero.resolve(model)), "final weights after resuming under ZeRO 1");

    // (d) the dp 2 × ZeRO 1 checkpoint resumes under dp 2 × ZeRO 0 (every rank reads every moment), saving every step
    Path toPlain = tmp.resolve("ck-resume-plain");
    trainMpi(concat(trainArgs(f, toPlain, "--resume", zeroStep3.toString(), "--checkpoint-dir", toPlain.resolve("ck").toString()),
        keepAll, List.of("--dp", "2", "--threads", "1")));
    assertEquals(reference.subList(3, 6), steps(toPlain), "steps 3..5 resumed under dp 2 × ZeRO 0 from dp 2 × ZeRO 1's");
    assertEquals(-1, Files.mismatch(one.resolve(model), toPlain.resolve(model)), "final weights after resuming under ZeRO 0");

    // (e) dp 2 × ZeRO 0's own checkpoint (each rank its cut of the flat state) resumes under dp 2 × ZeRO 1 and as one process
    Path plainStep4 = toPlain.resolve("ck/step-00000004");
    assertEquals(0, JsonParser.parseString(Files.readString(plainStep4.resolve("manifest.json"))).getAsJsonObject()
        .getAsJsonObject("layout").get("zero").getAsInt());
    Path backToZero = tmp.resolve("ck-resume-back");
    trainMpi(concat(trainArgs(f, backToZero, "--resume", plainStep4.toString(), "--checkpoint-dir",
        backToZero.resolve("ck").toString()), zeroFlags));
    assertEquals(reference.subList(4, 6), steps(backToZero), "steps 4..5 resumed under dp 2 × ZeRO 1 from dp 2 × ZeRO 0's");
    assertEquals(-1, Files.mismatch(one.resolve(model), backToZero.resolve(model)), "final weights: ZeRO 0 to ZeRO 1");
    Path plainToOne = tmp.resolve("ck-resume-plain-one");
    trainHere(trainArgs(f, plainToOne, "--accum", "2", "--resume", plainStep4.toString(), "--checkpoint-dir",
        plainToOne.resolve("ck").toString()));
    assertEquals(reference.subList(4, 6), steps(plainToOne), "steps 4..5 resumed as one process from dp 2 × ZeRO 0's");
    assertEquals(-1, Files.mismatch(one.resolve(model), plainToOne.resolve(model)), "final weights: ZeRO 0 to one process");
  }

  /**
   * Pipeline checkpoints (format 3: each stage's rank writes its stage's tensors, the first stage the tied embedding
   * once, and the manifest lists the whole model's tensors as one process names them) resume with any layout, and any
   * layout's resume under pp 2: pp 2 × 2 micro-batches saving every 2 steps trains as one process with --accum 2 (bit for
   * bit); its step-2 checkpoint resumes as one process and as dp 2 (whose step-3 checkpoint resumes under pp 2), and one
   * process's (format 2) resumes under pp 2. Every resumed run logs the uninterrupted run's steps and ends with its
   * weights, byte for byte.
   */
  @Test
  void pipelineCheckpointsResumeWithAnyLayout() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ppck-fixture"));
    Path one = tmp.resolve("ppck-one"), pp = tmp.resolve("ppck-pp2");
    List<String> ppFlags = List.of("--pp", "2", "--micro-batches", "2", "--threads", "1");
    List<String> every2 = List.of("--checkpoint-every", "2", "--keep", "10");
    trainHere(concat(args4(f, one, "--accum", "2", "--checkpoint-dir", one.resolve("ck").toString()), every2));
    trainMpi(concat(args4(f, pp, "--checkpoint-dir", pp.resolve("ck").toString()), every2, ppFlags));
    List<String> reference = steps(one);
    assertEquals(4, reference.size());
    assertResumed(reference, 0, one, pp, "pp 2 with checkpoints vs one process with --accum 2");

    Path oneStep2 = one.resolve("ck/step-00000002"), ppStep2 = pp.resolve("ck/step-00000002");
    JsonObject mf = JsonParser.parseString(Files.readString(ppStep2.resolve("manifest.json"))).getAsJsonObject();
    assertEquals(3, mf.get("format_version").getAsInt());
    assertEquals(2, mf.getAsJsonObject("layout").get("pp").getAsInt());
    List<String> names = new ArrayList<>();
    mf.getAsJsonArray("tensors").forEach(t -> names.add(t.getAsJsonObject().get("name").getAsString()));
    try (var x = dev.athanor.io.safetensors.SafetensorsFile.open(oneStep2.resolve("model.safetensors"))) {
      assertEquals(x.entries().keySet().stream().sorted().toList(), names.stream().sorted().toList(),
          "the manifest lists the whole model's tensors, each once, as one process names them");
    }
    for (int r = 0; r < 2; r++) {  // each stage writes its own tensors: the embedding (tied with the head) by stage 0 only
      String file = "rank-" + r + "-of-2.safetensors";
      List<String> held = new ArrayList<>();
      mf.getAsJsonObject("files").getAsJsonObject(file).getAsJsonArray("pieces")
          .forEach(p -> held.add(p.getAsJsonObject().get("tensor").getAsString()));
      assertEquals(r == 0, held.contains("transformer.wte.weight"), file + " holds " + held);
      assertEquals(r == 0, held.contains("transformer.h.0.attn.c_attn.weight"), file + " holds " + held);
      assertEquals(r == 1, held.contains("transformer.h.1.attn.c_attn.weight"), file + " holds " + held);
      assertEquals(r == 1, held.contains("transformer.ln_f.weight"), file + " holds " + held);
    }

    // (a) pp 2's checkpoint resumes as one process with --accum 2
    Path toOne = tmp.resolve("ppck-to-one");
    trainHere(args4(f, toOne, "--accum", "2", "--resume", ppStep2.toString(), "--checkpoint-dir", toOne.resolve("ck").toString()));
    assertResumed(reference, 2, one, toOne, "steps 2..3 resumed as one process from pp 2's checkpoint");

    // (b) and as dp 2 (each replica one micro-batch: one process with --accum 2), which saves a format-3 checkpoint of its own
    Path toDp = tmp.resolve("ppck-to-dp");
    trainMpi(args4(f, toDp, "--resume", ppStep2.toString(), "--checkpoint-dir", toDp.resolve("ck").toString(),
        "--checkpoint-every", "1", "--keep", "10", "--dp", "2", "--threads", "1"));
    assertResumed(reference, 2, one, toDp, "steps 2..3 resumed under dp 2 from pp 2's checkpoint");

    // (c) one process's checkpoint (format 2) resumes under pp 2
    Path fromOne = tmp.resolve("ppck-from-one");
    trainMpi(concat(args4(f, fromOne, "--resume", oneStep2.toString(), "--checkpoint-dir", fromOne.resolve("ck").toString()),
        ppFlags));
    assertResumed(reference, 2, one, fromOne, "steps 2..3 resumed under pp 2 from one process's checkpoint");

    // (d) dp 2's checkpoint (format 3, each rank its cut of the whole model) resumes under pp 2
    Path fromDp = tmp.resolve("ppck-from-dp");
    trainMpi(concat(args4(f, fromDp, "--resume", toDp.resolve("ck/step-00000003").toString(), "--checkpoint-dir",
        fromDp.resolve("ck").toString()), ppFlags));
    assertResumed(reference, 3, one, fromDp, "step 3 resumed under pp 2 from dp 2's checkpoint");
  }

  /**
   * dp 2 × pp 2 with ZeRO 1 (each stage's moments sharded over its two replicas, which write their shards' pieces)
   * checkpoints, and its step-2 checkpoint resumes as dp 2 with --accum 2 (which trains as dp 2 × pp 2 × 2 micro-batches
   * bit for bit), whose own step-3 checkpoint resumes under dp 2 × pp 2 × ZeRO 1 again: each resumed run logs the grid's
   * steps and ends with its weights. The grid's checkpoint also resumes under --tp 2 (format 3 read by tensor-parallel
   * ranks), with the grid's losses within 1e-4.
   */
  @Test
  void dataTimesPipelineZeroOneCheckpointResumesWithOtherLayouts() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("dppck-fixture"));
    Path grid = tmp.resolve("dppck-grid"), toDp = tmp.resolve("dppck-to-dp");
    Job j = mpirun(4, Main.class.getName(), args4(f, grid, "--checkpoint-dir", grid.resolve("ck").toString(),
        "--checkpoint-every", "2", "--dp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "1", "--threads", "1"), 300);
    assertEquals(0, j.exitCode(), j.output());
    List<String> reference = steps(grid);
    assertEquals(4, reference.size());
    Path step2 = grid.resolve("ck/step-00000002");
    JsonObject layout = JsonParser.parseString(Files.readString(step2.resolve("manifest.json"))).getAsJsonObject()
        .getAsJsonObject("layout");
    assertEquals(List.of(4, 2, 2, 1), List.of(layout.get("world_size").getAsInt(), layout.get("dp").getAsInt(),
        layout.get("pp").getAsInt(), layout.get("zero").getAsInt()), "the writer's layout: " + layout);
    trainMpi(args4(f, toDp, "--resume", step2.toString(), "--checkpoint-dir", toDp.resolve("ck").toString(),
        "--checkpoint-every", "1", "--dp", "2", "--accum", "2", "--threads", "1"));
    assertResumed(reference, 2, grid, toDp, "resumed as dp 2 × accum 2 from dp 2 × pp 2 × ZeRO 1's checkpoint");

    // dp 2's step-3 checkpoint resumes under dp 2 × pp 2 × ZeRO 1: each stage replica reads its shard of its stage's
    // moments (the last stage's of its tied copy from the embedding's pieces)
    Path back = tmp.resolve("dppck-back");
    Job k = mpirun(4, Main.class.getName(), args4(f, back, "--resume", toDp.resolve("ck/step-00000003").toString(),
        "--checkpoint-dir", back.resolve("ck").toString(), "--dp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "1",
        "--threads", "1"), 300);
    assertEquals(0, k.exitCode(), k.output());
    assertResumed(reference, 3, grid, back, "resumed under dp 2 × pp 2 × ZeRO 1 from dp 2's checkpoint");

    // and under --tp 2 with --accum 4 (the same micro-batches): each rank reads the whole tensors' pieces and keeps its
    // part; the split changes the order of the sums, so the losses agree within 1e-4
    Path toTp = tmp.resolve("dppck-to-tp");
    trainMpi(args4(f, toTp, "--resume", step2.toString(), "--checkpoint-dir", toTp.resolve("ck").toString(), "--tp", "2",
        "--accum", "4", "--threads", "1"));
    List<String> tp = steps(toTp);
    assertEquals(2, tp.size(), "steps 2..3 under --tp 2: " + tp);
    for (int i = 0; i < 2; i++) {
      JsonObject want = JsonParser.parseString(reference.get(2 + i)).getAsJsonObject(), got = JsonParser.parseString(tp.get(i))
          .getAsJsonObject();
      assertEquals(want.get("step").getAsInt(), got.get("step").getAsInt());
      double d = Math.abs(want.get("loss").getAsDouble() - got.get("loss").getAsDouble());
      assertTrue(d <= 1e-4, "step " + (2 + i) + " under --tp 2 from dp 2 × pp 2 × ZeRO 1's checkpoint: loss differs by " + d);
    }
  }

  /** {@code run}, resumed at step {@code from} (0: not resumed), logged {@code reference}'s steps from there on and ended with {@code want}'s weights. */
  private static void assertResumed(List<String> reference, int from, Path want, Path run, String what) throws IOException {
    assertEquals(reference.subList(from, reference.size()), steps(run), what + ": every logged step from " + from);
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(want.resolve(model), run.resolve(model)), what + ": final weights");
  }

  /** {@link #trainArgs} with 4 steps. */
  private static List<String> args4(TrainFixture f, Path dir, String... extra) {
    List<String> a = new ArrayList<>(trainArgs(f, dir, extra));
    a.set(a.indexOf("--steps") + 1, "4");
    return a;
  }

  /** The message of the {@code CheckpointException} that opening {@code dir} throws. */
  private static String assertThrowsCheckpoint(Path dir) {
    return org.junit.jupiter.api.Assertions.assertThrows(dev.athanor.train.checkpoint.CheckpointException.class,
        () -> dev.athanor.train.checkpoint.Checkpoint.open(dir)).getMessage();
  }

  /**
   * ZeRO 2 (gradients sharded, each micro-batch's gradient reduce-scattered and folded into its owner's shard): at
   * accum 1 dp 2 × ZeRO 2 equals one process with --accum 2 (and so plain dp and ZeRO 1, which the tests above hold to
   * the same reference) in every logged step and the final weights, also while saving a checkpoint at every step; at
   * accum 2 it equals one process with --accum 4 (the fold order is the one process's); its step-3 checkpoint holds one
   * process's bytes and resumes as one process, and one process's resumes under dp 2 × ZeRO 2.
   */
  @Test
  void zeroTwoEqualsOneProcessAndItsCheckpointsResumeWithAnyLayout() throws Exception {
    zeroStageEqualsOneProcessAndResumes(2, "z2");
  }

  /**
   * ZeRO 3 (the parameters sharded too: each unit's weights all-gathered before it runs and freed after, each unit's
   * micro-batch gradient folded into its owners' shards as its backward ends): dp 2 × ZeRO 3 equals one process with
   * --accum 2 (and so plain dp, ZeRO 1 and 2) in every logged step and the final weights, also while saving a
   * checkpoint at every step; its step-3 checkpoint (format 3, each rank its shard of the masters and moments) resumes
   * as one process and one process's resumes under dp 2 × ZeRO 3; at accum 2 it equals one process with --accum 4; and
   * with 3 ranks (shards that cut the embeddings and a block mid-way) it equals one process with --accum 3.
   */
  @Test
  void zeroThreeEqualsOneProcessAndItsCheckpointsResumeWithAnyLayout() throws Exception {
    TrainFixture f = zeroStageEqualsOneProcessAndResumes(3, "z3");
    // 3 ranks: the shard boundaries fall inside units, so gathers and folds take pieces from two owners
    Path one3 = tmp.resolve("z3-one-accum3"), three = tmp.resolve("z3-dp3");
    trainHere(trainArgs(f, one3, "--accum", "3"));
    Job j3 = mpirun(3, Main.class.getName(), trainArgs(f, three, "--dp", "3", "--zero", "3", "--threads", "1"), 300);
    assertEquals(0, j3.exitCode(), j3.output());
    assertEquals(steps(one3), steps(three), "dp 3 × ZeRO 3 vs one process with --accum 3: every logged step");
    assertEquals(-1, Files.mismatch(one3.resolve(Path.of("model", "model.safetensors")),
        three.resolve(Path.of("model", "model.safetensors"))), "final weights: dp 3 × ZeRO 3");
  }

  /**
   * dp 2 × ZeRO {@code zero} (2 or 3) against one process: at accum 1 with a checkpoint at every step, equal to --accum 2
   * in every logged step and the final weights; its step-3 checkpoint (format 3: a file per rank, the manifest recording
   * the stage) resumes as one process and one process's resumes under it; at accum 2 equal to one process with --accum 4.
   * Returns the fixture, whose runs are in {@code prefix}-named directories.
   */
  private static TrainFixture zeroStageEqualsOneProcessAndResumes(int zero, String prefix) throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve(prefix + "-fixture"));
    String name = "dp 2 × ZeRO " + zero;
    Path one = tmp.resolve(prefix + "-one"), sharded = tmp.resolve(prefix + "-zero");
    List<String> keepAll = List.of("--checkpoint-every", "1", "--keep", "10");
    List<String> zeroFlags = List.of("--dp", "2", "--zero", Integer.toString(zero), "--threads", "1");
    trainHere(concat(trainArgs(f, one, "--accum", "2", "--checkpoint-dir", one.resolve("ck").toString()), keepAll));
    Job j = mpirun(2, Main.class.getName(), concat(trainArgs(f, sharded, "--checkpoint-dir", sharded.resolve("ck").toString()),
        keepAll, zeroFlags), 300);
    assertEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("ZeRO " + zero), j.output());

    List<String> reference = steps(one);
    assertEquals(6, reference.size());
    assertEquals(reference, steps(sharded), name + " vs one process with --accum 2: every logged step");
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(one.resolve(model), sharded.resolve(model)), "final weights: " + name);
    Path oneStep3 = one.resolve("ck/step-00000003"), zeroStep3 = sharded.resolve("ck/step-00000003");
    for (String file : List.of("rank-0-of-2.safetensors", "rank-1-of-2.safetensors", "manifest.json")) {
      assertTrue(Files.isRegularFile(zeroStep3.resolve(file)), file + " of " + name + "'s step-3 checkpoint (format 3)");
    }
    JsonObject mf = JsonParser.parseString(Files.readString(zeroStep3.resolve("manifest.json"))).getAsJsonObject();
    assertEquals(zero, mf.getAsJsonObject("layout").get("zero").getAsInt(), "the manifest records the ZeRO stage");

    Path toOne = tmp.resolve(prefix + "-resume-one");
    trainHere(trainArgs(f, toOne, "--accum", "2", "--resume", zeroStep3.toString()));
    assertEquals(reference.subList(3, 6), steps(toOne), "steps 3..5 resumed as one process from " + name + "'s checkpoint");
    assertEquals(-1, Files.mismatch(sharded.resolve(model), toOne.resolve(model)), "final weights after resuming as one process");

    Path toZero = tmp.resolve(prefix + "-resume-zero");
    trainMpi(concat(trainArgs(f, toZero, "--resume", oneStep3.toString()), zeroFlags));
    assertEquals(reference.subList(3, 6), steps(toZero), "steps 3..5 resumed under " + name + " from one process's checkpoint");
    assertEquals(-1, Files.mismatch(one.resolve(model), toZero.resolve(model)), "final weights after resuming under " + name);

    // accum 2 per rank: the shard accumulator folds (acc + g_{k,0}) + g_{k,1}, one process's order over 4 micro-batches
    Path one4 = tmp.resolve(prefix + "-one-accum4"), zero2 = tmp.resolve(prefix + "-zero-accum2");
    trainHere(trainArgs(f, one4, "--accum", "4"));
    trainMpi(concat(trainArgs(f, zero2, "--accum", "2"), zeroFlags));
    assertEquals(steps(one4), steps(zero2), name + " × accum 2 vs one process with --accum 4: every logged step");
    assertEquals(-1, Files.mismatch(one4.resolve(model), zero2.resolve(model)), "final weights: " + name + " × accum 2");
    return f;
  }

  /**
   * SIGTERM to rank 1 of a dp 2 × ZeRO 1 run: every rank stops after the same step, and the final save (a collective:
   * the other rank sends its moments) writes a checkpoint of that step that verifies, without hanging.
   */
  @Test
  void sigtermToOneRankUnderZeroOneSavesTheStoppedStep() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("term-fixture"));
    Path dir = tmp.resolve("term"), ck = dir.resolve("ck"), log = dir.resolve("log.jsonl");
    List<String> args = new ArrayList<>(trainArgs(f, dir, "--dp", "2", "--zero", "1", "--threads", "1", "--checkpoint-dir",
        ck.toString(), "--checkpoint-every", "5"));
    args.set(args.indexOf("--steps") + 1, "100000");  // far more than it gets to do
    Path out = Files.createTempFile(tmp, "mpirun-term-", ".txt");
    Process p = startMpirun(app(2, Main.class.getName(), args), out);
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
      while ((!Files.exists(log) || Files.readAllLines(log).size() < 6) && p.isAlive() && System.nanoTime() < deadline) {
        Thread.sleep(50);
      }
      assertTrue(p.isAlive() && Files.exists(log), "the run did not get to step 6:\n" + Files.readString(out));
      List<ProcessHandle> ranks = p.descendants().filter(h -> h.info().command().orElse("").endsWith("java")).toList();
      assertEquals(2, ranks.size(), "the ranks' java processes: " + ranks);
      ProcessHandle rank1 = ranks.stream().filter(h -> rankOf(h) == 1).findFirst().orElseThrow(
          () -> new AssertionError("no rank 1 among " + ranks));
      assertTrue(rank1.destroy(), "SIGTERM sent");  // to rank 1 only, which writes nothing itself
      if (!p.waitFor(120, TimeUnit.SECONDS)) fail("the ranks did not stop after SIGTERM:\n" + Files.readString(out));
    } finally {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
    }
    String text = Files.readString(out);
    assertNotEquals(0, p.exitValue(), text);
    int steps = stepLines(log).size();
    assertTrue(text.contains("stopped by a termination signal at step " + steps), text);
    List<Path> dirs = dev.athanor.train.checkpoint.CheckpointManager.stepDirs(ck);
    Path last = dirs.get(dirs.size() - 1);
    assertEquals(String.format("step-%08d", steps), last.getFileName().toString(), "the final save holds the stopped step");
    assertEquals(steps, dev.athanor.train.checkpoint.Checkpoint.open(last).step(), "it verifies");
  }

  /**
   * SIGKILL of a dp 2 × ZeRO 1 job while its ranks write the step-3 checkpoint in the background (each rank's writer held
   * after its rank file by a test hook) leaves that step invisible: the checkpoints of steps 1 and 2, committed before,
   * verify, step 3 is only a {@code .tmp-*} directory without a manifest, and the next run removes it and resumes from step
   * 2 exactly as an uninterrupted run continues.
   */
  @Test
  void killDuringABackgroundWriteLeavesNoPartialCheckpoint() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("kill-fixture"));
    Path dir = tmp.resolve("kill"), ck = dir.resolve("ck"), pending = ck.resolve(".tmp-step-00000003-of-2");
    List<String> app = new ArrayList<>(app(2, Main.class.getName(), trainArgs(f, dir, "--dp", "2", "--zero", "1",
        "--threads", "1", "--checkpoint-dir", ck.toString(), "--checkpoint-every", "1", "--keep", "10")));
    app.add(app.indexOf("-cp"), "-Dathanor.checkpoint.pauseAfterRankFile=3");
    Path out = Files.createTempFile(tmp, "mpirun-kill-", ".txt");
    Process p = startMpirun(app, out);
    try {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
      while (!(Files.isRegularFile(pending.resolve("rank-0-of-2.safetensors"))
          && Files.isRegularFile(pending.resolve("rank-1-of-2.safetensors"))) && p.isAlive() && System.nanoTime() < deadline) {
        Thread.sleep(20);
      }
      assertTrue(p.isAlive(), "the job ended before its step-3 write:\n" + Files.readString(out));
      assertTrue(Files.isRegularFile(pending.resolve("rank-1-of-2.safetensors")), "no step-3 rank files:\n" + Files.readString(out));
    } finally {
      p.descendants().forEach(ProcessHandle::destroyForcibly);  // SIGKILL: no hook, no cleanup
      p.destroyForcibly();
      p.waitFor(60, TimeUnit.SECONDS);
    }
    List<String> visible = dev.athanor.train.checkpoint.CheckpointManager.stepDirs(ck).stream()
        .map(d -> d.getFileName().toString()).toList();
    assertEquals(List.of("step-00000001", "step-00000002"), visible, "only the checkpoints committed before the kill");
    assertEquals(2, dev.athanor.train.checkpoint.Checkpoint.open(ck.resolve("step-00000002")).step(), "step 2 verifies");
    assertTrue(Files.isDirectory(pending) && !Files.exists(pending.resolve("manifest.json")), "step 3 stays a temporary");

    Path one = tmp.resolve("kill-one"), resumed = tmp.resolve("kill-resumed");
    trainHere(trainArgs(f, one, "--accum", "2"));
    trainHere(trainArgs(f, resumed, "--accum", "2", "--resume", "auto", "--checkpoint-dir", ck.toString()));
    assertEquals(steps(one).subList(2, 6), steps(resumed), "steps 2..5 resumed from step 2 as the uninterrupted run's");
    try (var left = Files.list(ck)) {
      assertTrue(left.noneMatch(q -> q.getFileName().toString().startsWith(".tmp")), "the next run removed the temporary");
    }
  }

  /** Starts {@code mpirun} with one application context ({@link #app}), its output merged into {@code out}. */
  private static Process startMpirun(List<String> app, Path out) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("mpirun", "--oversubscribe", "--bind-to", "none"));
    cmd.addAll(app);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile());
    ENV.forEach((k, v) -> pb.environment().putIfAbsent(k, v));
    return pb.start();
  }

  /** The MPI rank of a process started by Open MPI's mpirun (from its environment, Linux), or -1. */
  private static int rankOf(ProcessHandle h) {
    try {
      for (String kv : Files.readString(Path.of("/proc", Long.toString(h.pid()), "environ")).split("\0")) {
        if (kv.startsWith("OMPI_COMM_WORLD_RANK=")) return Integer.parseInt(kv.substring(kv.indexOf('=') + 1));
      }
    } catch (IOException | RuntimeException e) {
      // not readable: unknown
    }
    return -1;
  }

  @SafeVarargs
  static List<String> concat(List<String>... parts) {
    List<String> all = new ArrayList<>();
    for (List<String> p : parts) all.addAll(p);
    return all;
  }

  /** The step lines of a log (its summary line, which holds run-dependent peaks and totals, left out). */
  private static List<String> stepLines(Path log) throws java.io.IOException {
    return Files.readAllLines(log).stream().filter(l -> !dev.athanor.report.RunSummary.isSummaryLine(l)).toList();
  }

  /**
   * A log line without its timing and communication fields (tokens_per_s, step_ms, comm_*), which differ from run to
   * run and between layouts.
   */
  private static String withoutTimes(String line) {
    JsonObject o = JsonParser.parseString(line).getAsJsonObject();
    o.remove("tokens_per_s");
    o.remove("step_ms");
    o.remove("comm_ms");
    o.remove("comm_bytes");
    o.remove("comm_sent_bytes");
    o.remove("comm_wait_ms");  // --overlap on (the default with --dp)
    o.remove("comm_buckets");
    o.remove("gather_wait_ms");  // ZeRO 3
    o.remove("gathers_ahead");
    return o.toString();
  }

  @Test
  void dpThatDoesNotMatchTheProcessesIsAClearError() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("mismatch-fixture"));
    Job j = mpirun(2, Main.class.getName(), trainArgs(f, tmp.resolve("mismatch"), "--dp", "3"), 120);
    assertNotEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("--dp 3 but MPI started 2 processes"), j.output());
    assertFalse(Files.exists(tmp.resolve("mismatch/log.jsonl")), "nothing was trained");

    Job k = mpirun(2, Main.class.getName(), trainArgs(f, tmp.resolve("mismatch1")), 120);
    assertNotEquals(0, k.exitCode(), k.output());
    assertTrue(k.output().contains("mpirun started 2 processes but --dp is 1"), k.output());

    Job p = mpirun(2, Main.class.getName(), trainArgs(f, tmp.resolve("mismatch-pp"), "--dp", "2", "--pp", "2"), 120);
    assertNotEquals(0, p.exitCode(), p.output());
    assertTrue(p.output().contains("--dp 2 --pp 2 = 4 processes but MPI started 2 processes")
        && p.output().contains("run mpirun -np 4 with --dp 2 --pp 2"), p.output());
    assertFalse(Files.exists(tmp.resolve("mismatch-pp/log.jsonl")), "nothing was trained");

    // the memory check counts one process's share and says what sharding would do
    Job m = mpirun(2, Main.class.getName(), trainArgs(f, tmp.resolve("small-budget"), "--dp", "2", "--mem-host", "1m"), 120);
    assertNotEquals(0, m.exitCode(), m.output());
    assertTrue(m.output().contains("not enough memory to train this model as one of 2 processes (dp 2 x tp 1 x pp 1, zero 0)")
        && m.output().contains("or a higher --zero"), m.output());
    assertFalse(Files.exists(tmp.resolve("small-budget/log.jsonl")), "nothing was trained");
  }

  @Test
  void ranksStartedWithDifferentFlagsAreRefusedBeforeAnyStep() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("flags-fixture"));
    Path dir = tmp.resolve("flags");
    List<String> cmd = new ArrayList<>(List.of("mpirun", "--oversubscribe", "--bind-to", "none"));
    cmd.addAll(app(1, Main.class.getName(), trainArgs(f, dir, "--dp", "2")));
    cmd.add(":");
    cmd.addAll(app(1, Main.class.getName(), trainArgs(f, dir, "--dp", "2", "--seed", "7")));
    Job j = run(cmd, 120);
    assertNotEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("the ranks differ in their flags"), j.output());
    assertTrue(j.output().matches("(?s).*rank [01] of 2: .*"), "the error names its rank:\n" + j.output());
    assertFalse(Files.exists(dir.resolve("log.jsonl")) && !Files.readString(dir.resolve("log.jsonl")).isEmpty(), "no step ran");
  }

  /**
   * Data parallel with the all-reduce overlapped with the backward, in buckets on a communication thread ({@link
   * OverlappedReduction}), against the reduction after the backward: under dp 2 and dp 3, GPT-2 and Llama, accum 1 and
   * 2, ZeRO 0 (one unit per bucket, and several) and ZeRO 1, and ZeRO 2 with each unit's fold on the communication
   * thread ({@link UnitGradientFold}) against on the training thread, every step's loss and norm and the final weights
   * are the same bits ({@link OverlapMain}); and through {@code train}: {@code --overlap on} (the default) with small
   * buckets against {@code --overlap off}, every logged step and the saved weights; and the same for {@code --zero 2},
   * whose step lines count its unit folds on the communication thread in {@code comm_buckets}.
   */
  @Test
  void overlappedReductionEqualsTheReductionAfterTheBackwardBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("overlap-fixture"));
    for (int np : new int[] {2, 3}) {
      Job j = mpirun(np, OverlapMain.class.getName(), List.of(f.data.toString()), 600);
      assertEquals(0, j.exitCode(), j.output());
      assertTrue(j.output().contains("overlap: dp " + np + ", 16 runs equal to overlap off bit for bit"), j.output());
    }
    Path off = tmp.resolve("overlap-off"), on = tmp.resolve("overlap-on");
    Job a = mpirun(2, Main.class.getName(), trainArgs(f, off, "--dp", "2", "--accum", "2", "--threads", "1", "--overlap",
        "off"), 300);
    assertEquals(0, a.exitCode(), a.output());
    assertFalse(a.output().contains("overlapped with the backward"), a.output());
    int buckets;  // the head with the last block, the first block, the embeddings
    try (dev.athanor.nn.Transformer m = dev.athanor.nn.Transformer.create(TrainFixture.model(), dev.athanor.runtime.Device.CPU)) {
      buckets = GradientBuckets.of(m.parameters().units(), 4, 1L << 18).buckets().size();
    }
    assertTrue(buckets > 1, "buckets: " + buckets);
    Job b = mpirun(2, Main.class.getName(), trainArgs(f, on, "--dp", "2", "--accum", "2", "--threads", "1", "--zero", "1",
        "--bucket-mb", "0.25"), 300);
    assertEquals(0, b.exitCode(), b.output());
    assertTrue(b.output().contains("gradient all-reduce overlapped with the backward: " + buckets + " buckets"), b.output());
    assertEquals(steps(off), steps(on), "every logged step, --overlap off vs on");
    for (String line : stepLines(on.resolve("log.jsonl"))) {
      JsonObject o = JsonParser.parseString(line).getAsJsonObject();
      assertEquals(buckets, o.get("comm_buckets").getAsInt(), line);
      assertTrue(o.get("comm_wait_ms").getAsDouble() >= 0, line);
    }
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(off.resolve(model), on.resolve(model)), "final weights, --overlap off vs on");

    // ZeRO 2: each unit's fold of each micro-batch on the communication thread (on) or the training thread (off)
    Path off2 = tmp.resolve("overlap-zero2-off"), on2 = tmp.resolve("overlap-zero2-on");
    List<String> zero2 = List.of("--dp", "2", "--zero", "2", "--accum", "2", "--threads", "1");
    Job c = mpirun(2, Main.class.getName(), concat(trainArgs(f, off2), zero2, List.of("--overlap", "off")), 300);
    assertEquals(0, c.exitCode(), c.output());
    assertFalse(c.output().contains("overlapped with the backward"), c.output());
    Job e = mpirun(2, Main.class.getName(), concat(trainArgs(f, on2), zero2), 300);
    assertEquals(0, e.exitCode(), e.output());
    int units;
    try (dev.athanor.nn.Transformer m = dev.athanor.nn.Transformer.create(TrainFixture.model(), dev.athanor.runtime.Device.CPU)) {
      units = m.parameters().units().size();
    }
    // (rank 1's progress lines may cut into rank 0's line)
    assertTrue(e.output().contains("ZeRO 2 gradient reduce-scatter overlapped with the backward: each of the ")
        && e.output().contains(units + " units' folds on the communication thread"), e.output());
    assertEquals(steps(off2), steps(on2), "every logged step, ZeRO 2 --overlap off vs on");
    for (String line : stepLines(off2.resolve("log.jsonl"))) assertFalse(line.contains("comm_buckets"), line);
    for (String line : stepLines(on2.resolve("log.jsonl"))) {
      JsonObject o = JsonParser.parseString(line).getAsJsonObject();
      assertEquals(2 * units, o.get("comm_buckets").getAsInt(), "a fold per unit and micro-batch: " + line);
      assertTrue(o.get("comm_wait_ms").getAsDouble() >= 0, line);
    }
    assertEquals(-1, Files.mismatch(off2.resolve(model), on2.resolve(model)), "final weights, ZeRO 2 --overlap off vs on");
  }

  /**
   * A rank killed by SIGKILL in the middle of a step's backward while its peers' communication threads all-reduce the
   * buckets already started, or (ZeRO 2, ZeRO 3) fold the units already handed over ({@link OverlapDieMain}): the job ends with
   * an error naming the lost rank, not a hang.
   */
  @Test
  void aRankThatDiesMidBackwardWithOverlapEndsTheJobNamingTheLostRank() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("overlap-die-fixture"));
    // ZeRO 0's buckets, then ZeRO 2's and ZeRO 3's unit folds on the communication thread
    for (List<String> a : List.of(List.of(f.data.toString()), List.of(f.data.toString(), "zero2"),
        List.of(f.data.toString(), "zero3fold"))) {
      Job j = mpirun(2, OverlapDieMain.class.getName(), a, 120);  // fails the test if it hangs
      assertNotEquals(0, j.exitCode(), a + ": " + j.output());
      assertTrue(j.output().contains("rank 0 of 2: step 0 done"), a + ": " + j.output());
      assertFalse(j.output().contains("without the lost rank"), a + ": " + j.output());
      assertTrue(j.output().matches("(?s).*rank 1 with PID.*signal 9.*"), a + ": " + j.output());
    }
  }

  /**
   * ZeRO 3 with each next unit's gather read ahead and each unit's gradient fold on the communication thread ({@link
   * ShardedWeights} with overlap) against the gathers when each unit is about to run and the folds on the training
   * thread: under dp 2 and dp 3 (shards that cut units mid-way), GPT-2 and Llama, accum
   * 1 and 2, the shard in memory and on DISK, every step's loss and norm and the final weights are the same bits ({@link
   * ZeroReadAheadMain}); and through {@code train}: {@code --zero 3} with {@code --overlap on} (the default: read-ahead)
   * against {@code --overlap off}, at accum 2, every logged step and the saved weights, each step line saying how many
   * gathers were read ahead (none with it off) and, with it on, the unit folds on the communication thread.
   */
  @Test
  void zeroThreeReadAheadEqualsGatheringWhenEachUnitRunsBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ahead-fixture"));
    for (int np : new int[] {2, 3}) {
      Job j = mpirun(np, ZeroReadAheadMain.class.getName(), List.of(f.data.toString(), tmp.resolve("ahead-" + np).toString()),
          600);
      assertEquals(0, j.exitCode(), j.output());
      assertTrue(j.output().contains("zero 3 overlap: dp " + np + ", 8 runs equal to overlap off bit for bit"), j.output());
    }
    Path off = tmp.resolve("ahead-off"), on = tmp.resolve("ahead-on");
    List<String> flags = List.of("--dp", "2", "--zero", "3", "--accum", "2", "--threads", "1");
    Job a = mpirun(2, Main.class.getName(), concat(trainArgs(f, off), flags, List.of("--overlap", "off")), 300);
    assertEquals(0, a.exitCode(), a.output());
    Job b = mpirun(2, Main.class.getName(), concat(trainArgs(f, on), flags), 300);
    assertEquals(0, b.exitCode(), b.output());
    assertFalse(a.output().contains("overlapped with the backward"), a.output());
    int units;
    try (dev.athanor.nn.Transformer m = dev.athanor.nn.Transformer.create(TrainFixture.model(), dev.athanor.runtime.Device.CPU)) {
      units = m.parameters().units().size();
    }
    assertTrue(b.output().contains("ZeRO 3 gathers read ahead and gradient reduce-scatter overlapped with the backward: "
        + "each of the ") && b.output().contains(units + " units' folds on the communication thread"), b.output());
    assertEquals(steps(off), steps(on), "every logged step, ZeRO 3 --overlap off vs on");
    for (Path run : List.of(off, on)) {
      for (String line : stepLines(run.resolve("log.jsonl"))) {
        JsonObject o = JsonParser.parseString(line).getAsJsonObject();
        assertEquals(run == on, o.get("gathers_ahead").getAsLong() > 0, line);
        assertTrue(o.get("gather_wait_ms").getAsDouble() >= 0, line);
        // with overlap, each unit's fold of each micro-batch on the communication thread, as ZeRO 2's
        if (run == off) {
          assertFalse(line.contains("comm_buckets"), line);
        } else {
          assertEquals(2 * units, o.get("comm_buckets").getAsInt(), "a fold per unit and micro-batch: " + line);
          assertTrue(o.get("comm_wait_ms").getAsDouble() >= 0, line);
        }
      }
    }
    Path model = Path.of("model", "model.safetensors");
    assertEquals(-1, Files.mismatch(off.resolve(model), on.resolve(model)), "final weights, ZeRO 3 --overlap off vs on");
  }

  /**
   * Under ZeRO 3 with read-ahead, a rank killed by SIGKILL in a forward while every rank's communication thread gathers
   * the next unit ({@link OverlapDieMain} {@code zero3}): the job ends with an error naming the lost rank, not a hang.
   */
  @Test
  void aRankThatDiesWhileAGatherIsReadAheadEndsTheJobNamingTheLostRank() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ahead-die-fixture"));
    Job j = mpirun(2, OverlapDieMain.class.getName(), List.of(f.data.toString(), "zero3"), 120);  // fails the test if it hangs
    assertNotEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("rank 0 of 2: step 0 done"), j.output());
    assertFalse(j.output().contains("without the lost rank"), j.output());
    assertTrue(j.output().matches("(?s).*rank 1 with PID.*signal 9.*"), j.output());
  }

  @Test
  void aRankThatDiesEndsTheJobNamingTheLostRank() throws Exception {
    Job j = mpirun(2, DieMain.class.getName(), List.of(), 120);  // fails the test if the survivor hangs
    assertNotEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("rank 0 of 2: first all-reduce done"), j.output());
    // Open MPI's mpirun ends the survivors and names the lost rank: "process rank 1 with PID ... exited on signal 9"
    assertTrue(j.output().matches("(?s).*rank 1 with PID.*signal 9.*"), j.output());
  }
}

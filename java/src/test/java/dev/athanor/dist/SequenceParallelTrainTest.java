package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.athanor.cli.Main;
import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.nn.ModelConfig;
import dev.athanor.runtime.Device;
import dev.athanor.train.checkpoint.TrainFixture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train --tp 2 --sequence-parallel} through real {@code mpirun} (skipped without MPI) against {@code --tp 2}
 * alone: every logged step (loss, gradient norm, learning rate, tokens) and the final weights bit for bit for GPT-2
 * (tied embeddings, LayerNorm with biases) and Llama (GQA, untied head, RMSNorm, with recomputation), and dp 2 x tp 2
 * with and without it; an uneven token cut (B*T not divisible by tp) trains to the same first loss and close later
 * ones; rank 0's measured peak HOST memory is lower with it; tp × pp with and without it, bit for bit. The refusals
 * are in {@link ParallelFlagsTest}.
 */
class SequenceParallelTrainTest {
  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
    MpiRunTest.tmp = tmp;  // its launcher keeps the native library cache there
  }

  private static List<String> args(Path config, int steps, Path data, Path dir, String... extra) {
    return TensorParallelTrainTest.trainArgs("--config", config, steps, data, dir, extra);
  }

  /** {@code args} with --batch {@code batch} and --seq {@code seq} instead of theirs. */
  private static List<String> shape(List<String> args, String batch, String seq) {
    List<String> a = new ArrayList<>(args);
    a.set(a.indexOf("--batch") + 1, batch);
    a.set(a.indexOf("--seq") + 1, seq);
    return a;
  }

  private static String train(int np, List<String> args) throws Exception {
    MpiRunTest.Job j = MpiRunTest.mpirun(np, Main.class.getName(), args, 300);
    assertEquals(0, j.exitCode(), j.output());
    return j.output();
  }

  /** B*T = 2 x 32 = 64 rows, 32 per rank: the norms' gradients add their rows in the order of --tp 2 alone. */
  @Test
  void sequenceParallelEqualsTensorParallelBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    Path llama = Files.writeString(tmp.resolve("llama.json"),
        HfConfig.toJson(ModelConfig.llama(300, 64, 2, 64, 4, 2, 96, 10000f, false)));
    StringBuilder peaks = new StringBuilder();
    int n = 4;
    for (String name : List.of("gpt2", "llama")) {
      Path config = name.equals("llama") ? llama : f.config;
      String[] extra = config.equals(llama) ? new String[] {"--recompute"} : new String[0];
      Path tp = tmp.resolve(name + "-tp2"), sp = tmp.resolve(name + "-tp2-sp");
      List<String> a = new ArrayList<>(args(config, n, f.data, tp, "--tp", "2", "--threads", "1"));
      a.addAll(List.of(extra));
      train(2, a);
      List<String> b = new ArrayList<>(args(config, n, f.data, sp, "--tp", "2", "--threads", "1", "--sequence-parallel"));
      b.addAll(List.of(extra));
      String out = train(2, b);
      assertTrue(out.contains("sequence parallel: each holds 1/2 of the 2 x 32 token rows"), out);
      TensorParallelTrainTest.assertSameRun(tp, sp, n, name + ": --tp 2 vs --tp 2 --sequence-parallel", out);
      long without = TensorParallelTrainTest.hostPeak(tp), with = TensorParallelTrainTest.hostPeak(sp);
      // the planner's estimate per rank (tp 2, one micro-batch of 2 x 32) with and without it bounds each measured peak
      ModelConfig mc = name.equals("llama") ? ModelConfig.llama(300, 64, 2, 64, 4, 2, 96, 10000f, false) : TrainFixture.model();
      ParallelPlanner.Job job = new ParallelPlanner.Job(mc, Device.CPU, 2, 2, 32, 1, 1L << 30, new ParallelPlanner.Hardware(1e9, 1e9, 0));
      long[] planned = new long[2];
      for (int k = 0; k < 2; k++) {
        planned[k] = ParallelPlanner.estimate(job, new ParallelPlanner.Layout(1, 2, 1, 0, extra.length > 0, k == 1)).memoryBytes();
      }
      peaks.append(name).append(extra.length > 0 ? " (--recompute)" : "").append(": rank 0 peak HOST bytes --tp 2 ")
          .append(without).append(", with --sequence-parallel ").append(with).append(" (planner estimates ").append(planned[0])
          .append(", ").append(planned[1]).append(")\n");
      if (extra.length == 0) assertTrue(with < without, "sequence parallelism did not lower the peak: " + peaks);
      assertTrue(planned[1] < planned[0] && planned[0] >= without && planned[1] >= with, "planner estimates: " + peaks);
    }
    System.out.print(peaks);
  }

  /**
   * dp 2 x tp 2 (4 processes, the tp groups of the grid) with and without sequence parallelism: the same bits; with
   * ZeRO 1 over the dp groups as well.
   */
  @Test
  void dataTimesTensorParallelWithSequenceParallelBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("grid-fixture"));
    int n = 3;
    Path plain = tmp.resolve("grid-dp2-tp2"), sp = tmp.resolve("grid-dp2-tp2-sp"), zero = tmp.resolve("grid-dp2-tp2-sp-zero1");
    train(4, args(f.config, n, f.data, plain, "--dp", "2", "--tp", "2", "--threads", "1"));
    String out = train(4, args(f.config, n, f.data, sp, "--dp", "2", "--tp", "2", "--threads", "1", "--sequence-parallel"));
    assertTrue(out.contains("data parallel: ") && out.contains("sequence parallel: "), out);
    TensorParallelTrainTest.assertSameRun(plain, sp, n, "dp 2 x tp 2 vs dp 2 x tp 2 --sequence-parallel", out);
    out = train(4, args(f.config, n, f.data, zero, "--dp", "2", "--tp", "2", "--zero", "1", "--threads", "1",
        "--sequence-parallel"));
    TensorParallelTrainTest.assertSameRun(plain, zero, n, "dp 2 x tp 2 vs dp 2 x tp 2 --zero 1 --sequence-parallel", out);
  }

  /**
   * tp 2 × pp 2 (4 processes) with and without sequence parallelism, 2 micro-batches of 2 × 32 rows (32 per tp rank):
   * each tp rank sends the next stage only its token rows of the hidden states (and the previous one only its rows of
   * their gradient), and the run equals tp 2 × pp 2 without it bit for bit, every logged step and the final weights, for
   * GPT-2 (tied) and a 3-block Llama (GQA, untied head, stages of 2 and 1 blocks, with recomputation). The planner's
   * prediction of rank 0's (stage 0, tp rank 0) bytes per step is its measured bytes, with and without it: the
   * pipeline's sends halve, while the blocks' all-gathers and reduce-scatters move more than their all-reduces did (the
   * backward gathers the column-parallel inputs again, and the norms' partial gradients).
   */
  @Test
  void tensorTimesPipelineWithSequenceParallelBitForBit() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("pp-fixture"));
    ModelConfig llamaConfig = ModelConfig.llama(300, 64, 3, 32, 4, 2, 48, 10000f, false);
    Path llama = Files.writeString(tmp.resolve("pp-llama.json"), HfConfig.toJson(llamaConfig));
    int n = 3;
    StringBuilder bytes = new StringBuilder();
    for (String name : List.of("gpt2", "llama")) {
      Path config = name.equals("llama") ? llama : f.config;
      List<String> extra = name.equals("llama") ? List.of("--recompute") : List.of();
      Path plain = tmp.resolve("pp-" + name + "-tp2-pp2"), sp = tmp.resolve("pp-" + name + "-tp2-pp2-sp");
      List<String> a = new ArrayList<>(args(config, n, f.data, plain, "--tp", "2", "--pp", "2", "--micro-batches", "2",
          "--threads", "1"));
      a.addAll(extra);
      train(4, a);
      List<String> b = new ArrayList<>(a);
      b.set(b.indexOf(plain.resolve("log.jsonl").toString()), sp.resolve("log.jsonl").toString());
      b.set(b.indexOf(plain.resolve("model").toString()), sp.resolve("model").toString());
      b.add("--sequence-parallel");
      String out = train(4, b);
      assertTrue(out.contains("sequence parallel (each holds and passes on 1/2 of the 2 x 32 token rows"), out);
      TensorParallelTrainTest.assertSameRun(plain, sp, n, name + ": --tp 2 --pp 2 vs the same with --sequence-parallel", out);
      long without = sentBytes(plain), with = sentBytes(sp);
      ParallelPlanner.Job job = new ParallelPlanner.Job(name.equals("llama") ? llamaConfig : TrainFixture.model(), Device.CPU,
          4, 2, 32, 2, 1L << 30, new ParallelPlanner.Hardware(1e9, 1e9, 0));
      long[] predicted = new long[2];
      for (int k = 0; k < 2; k++) {
        ParallelPlanner.Layout layout = new ParallelPlanner.Layout(1, 2, 2, 0, !extra.isEmpty(), k == 1);
        predicted[k] = ParallelPlanner.sentBytes(job, layout, 0, 0, 0);
        long memory = ParallelPlanner.estimate(job, layout).memoryBytes(), peak = TensorParallelTrainTest.hostPeak(k == 1 ? sp : plain);
        assertTrue(memory >= peak, name + ": the planner's " + memory + " bytes per rank for " + layout + " < rank 0's peak " + peak);
      }
      bytes.append(name).append(": rank 0 sends ").append(without).append(" bytes a step under --tp 2 --pp 2, ").append(with)
          .append(" with --sequence-parallel (the planner: ").append(predicted[0]).append(", ").append(predicted[1]).append(")\n");
      // exact: the pipeline's hidden states and gradients at 1/2 of the rows (whole ones would be 2 x 8 KiB more), the
      // token-row collectives of the stage's blocks, embedding and head in place of its all-reduces
      assertEquals(predicted[0], without, "the planner's bytes for rank 0 without --sequence-parallel: " + bytes);
      assertEquals(predicted[1], with, "the planner's bytes for rank 0 with --sequence-parallel: " + bytes);
    }
    System.out.print(bytes);
  }

  /** The bytes rank 0 delivered to the other ranks in each step of the run in {@code dir}: the same every step. */
  private static long sentBytes(Path dir) throws Exception {
    List<Long> sent = TensorParallelTrainTest.steps(dir.resolve("log.jsonl")).stream()
        .map(o -> o.get("comm_sent_bytes").getAsLong()).distinct().toList();
    assertEquals(1, sent.size(), dir + ": bytes per step " + sent);
    return sent.get(0);
  }

  /**
   * Checkpoints of a --tp 2 --sequence-parallel run (format 3: sequence parallelism changes no parameter's layout, the
   * norms are whole and identical on every rank) resume with and without --sequence-parallel to the uninterrupted run's
   * steps and final weights bit for bit.
   */
  @Test
  void checkpointsResumeWithAndWithoutSequenceParallel() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ck-fixture"));
    Path run = tmp.resolve("ck-tp2-sp");
    List<String> a = new ArrayList<>(args(f.config, 4, f.data, run, "--tp", "2", "--threads", "1", "--sequence-parallel"));
    a.addAll(List.of("--checkpoint-dir", run.resolve("ck").toString(), "--checkpoint-every", "2"));
    train(2, a);
    Path step2 = run.resolve("ck/step-00000002");
    List<JsonObject> want = TensorParallelTrainTest.steps(run.resolve("log.jsonl"));
    for (boolean sp : List.of(true, false)) {
      Path again = tmp.resolve("ck-resumed-" + sp);
      if (sp) {
        TensorParallelTrainTest.resume(2, f, step2, again, "--tp", "2", "--threads", "1", "--sequence-parallel");
      } else {
        TensorParallelTrainTest.resume(2, f, step2, again, "--tp", "2", "--threads", "1");
      }
      String what = "--tp 2 --sequence-parallel resumed from its step 2 " + (sp ? "with" : "without") + " it";
      TensorParallelTrainTest.assertSameSteps(want, TensorParallelTrainTest.steps(again.resolve("log.jsonl")), 2, what);
      assertEquals(-1, Files.mismatch(run.resolve("model/model.safetensors"), again.resolve("model/model.safetensors")),
          what + ": final weights");
    }
  }

  /**
   * B*T = 3 x 11 = 33 rows: rank 0 holds 17, rank 1 16. The forward is the same (the first loss bit for bit); the norms'
   * gradients add the two ranks' rows in another grouping, so later steps agree within rounding, not bit for bit.
   */
  @Test
  void unevenTokenCutTrainsLikeTensorParallel() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("uneven-fixture"));
    int n = 4;
    Path plain = tmp.resolve("uneven-tp2"), sp = tmp.resolve("uneven-tp2-sp");
    train(2, shape(args(f.config, n, f.data, plain, "--tp", "2", "--threads", "1"), "3", "11"));
    String out = train(2, shape(args(f.config, n, f.data, sp, "--tp", "2", "--threads", "1", "--sequence-parallel"), "3", "11"));
    assertTrue(out.contains("of the 3 x 11 token rows"), out);
    List<JsonObject> x = TensorParallelTrainTest.steps(plain.resolve("log.jsonl")), y = TensorParallelTrainTest.steps(sp.resolve("log.jsonl"));
    assertEquals(n, x.size());
    assertEquals(n, y.size(), out);
    assertEquals(x.get(0).get("loss").getAsString(), y.get(0).get("loss").getAsString(), "first loss: the same forward");
    double worst = 0;
    for (int i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(x.get(i).get("loss").getAsDouble() - y.get(i).get("loss").getAsDouble()));
    }
    System.out.println("uneven cut (17 + 16 rows): loss max abs diff over " + n + " steps " + worst);
    assertTrue(worst <= 1e-5, "losses differ by " + worst);
    assertNotEquals(x.get(0).get("loss").getAsString(), x.get(n - 1).get("loss").getAsString(), "the model trained");
  }
}

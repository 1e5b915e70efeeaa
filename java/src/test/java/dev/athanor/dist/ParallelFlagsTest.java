package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.cli.Main;
import dev.athanor.train.checkpoint.TrainFixture;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** train's data- and pipeline-parallel flags refused before any work, without MPI: usage errors (exit code 2) naming the flags. */
class ParallelFlagsTest {
  @TempDir Path tmp;

  private String refused(String... extra) throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    List<String> args = new ArrayList<>(List.of("train", "--config", f.config.toString(), "--data", f.data.toString(),
        "--device", "cpu", "--steps", "2", "--out", tmp.resolve("out").toString()));
    args.addAll(List.of(extra));
    return run(args.toArray(String[]::new));
  }

  /** The output of the CLI given {@code args}, which must end in a usage error (exit code 2). */
  private static String run(String... args) {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    int rc;
    try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
      rc = Main.run(args, ps, ps);
    }
    String out = buf.toString(StandardCharsets.UTF_8);
    assertEquals(2, rc, out);
    return out;
  }

  @Test
  void bucketSizeMustBePositiveAndOverlapTakesOnOrOff() throws Exception {
    for (String mb : new String[] {"0", "-1", "NaN"}) {
      String out = refused("--dp", "2", "--bucket-mb", mb);
      assertTrue(out.contains("--bucket-mb " + (mb.equals("NaN") ? "NaN" : Double.parseDouble(mb))
          + ": expected a positive size in MiB"), out);
      assertFalse(out.contains("needs 2 processes"), "refused before MPI is asked: " + out);
    }
    String out = refused("--dp", "2", "--overlap", "sometimes");
    assertTrue(out.contains("'sometimes' is not a boolean"), out);
    assertTrue(refused("--dp", "2", "--overlap", "off", "--bucket-mb", "0.5").contains("--dp 2 needs 2 processes"));
  }

  @Test
  void dpWithoutMpirunSaysHowToStartIt() throws Exception {
    String out = refused("--dp", "2");
    assertTrue(out.contains("--dp 2 needs 2 processes started by MPI: mpirun -np 2"), out);
  }

  @Test
  void benchTakesDpUnderMpirunAndOnlyInTrainMode() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    String out = run("bench", "--mode", "train", "--config", f.config.toString(), "--device", "cpu", "--dp", "2");
    assertTrue(out.contains("--dp 2 needs 2 processes started by MPI: mpirun -np 2 ./athanor bench"), out);
    out = run("bench", "--mode", "decode", "--config", f.config.toString(), "--device", "cpu", "--dp", "2");
    assertTrue(out.contains("option '--dp' does not apply to --mode decode"), out);
    out = run("bench", "--mode", "train", "--config", f.config.toString(), "--device", "cpu", "--zero", "1");
    assertTrue(out.contains("with --dp 1 there is nothing to shard"), out);
    // --overlap and --bucket-mb as train takes them, checked before MPI is asked
    out = run("bench", "--mode", "train", "--config", f.config.toString(), "--device", "cpu", "--dp", "2", "--bucket-mb", "0");
    assertTrue(out.contains("--bucket-mb 0.0: expected a positive size in MiB") && !out.contains("needs 2 processes"), out);
    out = run("bench", "--mode", "train", "--config", f.config.toString(), "--device", "cpu", "--dp", "2", "--overlap", "maybe");
    assertTrue(out.contains("'maybe' is not a boolean"), out);
    out = run("bench", "--mode", "decode", "--config", f.config.toString(), "--device", "cpu", "--overlap", "off");
    assertTrue(out.contains("option '--overlap' does not apply to --mode decode"), out);
  }

  @Test
  void zeroOneNeedsDp() throws Exception {
    assertTrue(refused("--zero", "1").contains("with --dp 1 there is nothing to shard"));
    // checkpoints work with ZeRO 1: what is refused here is only the missing mpirun
    String out = refused("--dp", "2", "--zero", "1", "--checkpoint-dir", tmp.resolve("ck").toString());
    assertTrue(out.contains("--dp 2 needs 2 processes started by MPI"), out);
    assertFalse(out.contains("not supported"), out);
    assertTrue(refused("--zero", "2").contains("--zero"));
  }

  @Test
  void zeroTwoAndThreeAreRefusedWhereTheyCannotRun() throws Exception {
    String two = refused("--zero", "2");
    assertTrue(two.contains("--zero 2 shards") && two.contains("with --dp 1 there is nothing to shard"), two);
    // ZeRO 1, 2 and 3 run with --offload (each rank's shard of the moments): what is refused here is only the missing mpirun
    for (String z : List.of("1", "2", "3")) {
      String off = refused("--dp", "2", "--zero", z, "--offload", "auto");
      assertTrue(off.contains("--dp 2 needs 2 processes started by MPI"), off);
      assertFalse(off.contains("not supported"), off);
    }
    // ZeRO 3 runs with --dp alone: what is refused without flags beside it is only the missing mpirun
    String three = refused("--dp", "2", "--zero", "3");
    assertTrue(three.contains("--dp 2 needs 2 processes started by MPI"), three);
    assertTrue(refused("--zero", "3").contains("with --dp 1 there is nothing to shard"));
    String threeTp = refused("--dp", "2", "--tp", "2", "--zero", "3");
    assertTrue(threeTp.contains("--zero 3 with --tp 2 is not supported yet"), threeTp);
    String threePp = refused("--dp", "2", "--pp", "2", "--micro-batches", "2", "--zero", "3");
    assertTrue(threePp.contains("--zero 3 with --pp 2 is not supported yet"), threePp);
    String four = refused("--dp", "2", "--zero", "4");
    assertTrue(four.contains("--zero"), four);
  }

  @Test
  void sequenceParallelNeedsTensorParallelAndIsRefusedWhereItCannotRun() throws Exception {
    String out = refused("--sequence-parallel");
    assertTrue(out.contains("--sequence-parallel needs --tp 2 or more") && out.contains("this run has --tp 1"), out);
    out = refused("--sequence-parallel", "--dp", "2");
    assertTrue(out.contains("--sequence-parallel needs --tp 2 or more"), out);
    out = refused("--sequence-parallel", "--tp", "2", "--pp", "2");  // runs: what is refused is only the missing mpirun
    assertTrue(out.contains("--tp 2 --pp 2 needs 4 processes started by MPI"), out);
    out = refused("--sequence-parallel", "--parallel", "auto");
    assertTrue(out.contains("--sequence-parallel with --parallel auto is not supported"), out);
    out = refused("--sequence-parallel", "--tp", "2", "--batch", "1", "--seq", "1");
    assertTrue(out.contains("--sequence-parallel cuts the --batch 1 x --seq 1 = 1 token rows over the --tp 2 ranks"), out);
    // with --tp 2 it runs: what is refused here is only the missing mpirun
    out = refused("--sequence-parallel", "--tp", "2");
    assertTrue(out.contains("--tp 2 needs 2 processes started by MPI"), out);
    assertFalse(out.contains("--sequence-parallel"), out);
  }

  @Test
  void zeroWithTensorParallelRunsAndCheckpoints() throws Exception {
    for (String z : List.of("1", "2")) {  // dp x tp x ZeRO 1 and 2 run: what is refused here is only the missing mpirun
      String out = refused("--dp", "2", "--tp", "2", "--zero", z);
      assertTrue(out.contains("--dp 2 --tp 2 needs 4 processes started by MPI"), out);
      assertFalse(out.contains("not supported"), out);
      // and checkpoint (format 3, each rank its shard of its part): the same refusal only
      out = refused("--dp", "2", "--tp", "2", "--zero", z, "--checkpoint-dir", tmp.resolve("ck").toString());
      assertTrue(out.contains("--dp 2 --tp 2 needs 4 processes started by MPI"), out);
      assertFalse(out.contains("not supported"), out);
    }
  }

  @Test
  void pipelineFlagsAreCheckedBeforeAnyWork() throws Exception {
    String out = refused("--pp", "3");  // the fixture has 2 blocks
    assertTrue(out.contains("--pp 3 exceeds the model's 2 blocks"), out);
    out = refused("--pp", "2", "--micro-batches", "1");
    assertTrue(out.contains("--micro-batches 1 is fewer than the --pp 2 stages"), out);
    out = refused("--pp", "2", "--accum", "4");
    assertTrue(out.contains("--accum 4 with --pp 2") && out.contains("--micro-batches 4"), out);
    // pipelines checkpoint (format 3): what is refused here is only the missing mpirun
    out = refused("--pp", "2", "--checkpoint-dir", tmp.resolve("ck").toString());
    assertTrue(out.contains("--pp 2 needs 2 processes started by MPI"), out);
    assertFalse(out.contains("not supported"), out);
    out = refused("--dp", "2", "--tp", "2", "--checkpoint-dir", tmp.resolve("ck").toString());
    assertTrue(out.contains("--dp 2 --tp 2 needs 4 processes started by MPI"), out);
    assertFalse(out.contains("not supported"), out);
    out = refused("--pp", "2", "--offload", "auto");
    assertTrue(out.contains("--pp 2 with --offload is not supported yet"), out);
    out = refused("--micro-batches", "4");
    assertTrue(out.contains("--micro-batches 4 needs --pp 2 or more"), out);
    out = refused("--tp", "2", "--pp", "2");  // runs as a grid now: what is refused here is only the missing mpirun
    assertTrue(out.contains("--tp 2 --pp 2 needs 4 processes started by MPI: mpirun -np 4"), out);
    out = refused("--tp", "2", "--pp", "2", "--checkpoint-dir", tmp.resolve("ck").toString());  // tp x pp checkpoints too
    assertTrue(out.contains("--tp 2 --pp 2 needs 4 processes started by MPI"), out);
    assertFalse(out.contains("not supported"), out);
    out = refused("--tp", "2", "--pp", "2", "--dp", "2", "--zero", "1");  // runs: what is refused is the missing mpirun
    assertTrue(out.contains("needs 8 processes started by MPI"), out);
    out = refused("--tp", "2", "--pp", "2", "--dp", "2", "--zero", "2");  // runs too (ZeRO 2 over each stage's dp group)
    assertTrue(out.contains("needs 8 processes started by MPI"), out);
    assertFalse(out.contains("not supported"), out);
    out = refused("--dp", "2", "--pp", "2");  // no mpirun: how many processes to start
    assertTrue(out.contains("--dp 2 --pp 2 needs 4 processes started by MPI: mpirun -np 4"), out);
  }
}

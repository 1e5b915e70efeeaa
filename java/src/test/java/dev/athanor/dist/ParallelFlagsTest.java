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

/** train's data-parallel flags refused before any work, without MPI: usage errors (exit code 2) naming the flags. */
class ParallelFlagsTest {
  @TempDir Path tmp;

  private String refused(String... extra) throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    List<String> args = new ArrayList<>(List.of("train", "--config", f.config.toString(), "--data", f.data.toString(),
        "--device", "cpu", "--steps", "2", "--out", tmp.resolve("out").toString()));
    args.addAll(List.of(extra));
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    int rc;
    try (PrintStream ps = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
      rc = Main.run(args.toArray(String[]::new), ps, ps);
    }
    String out = buf.toString(StandardCharsets.UTF_8);
    assertEquals(2, rc, out);
    return out;
  }

  @Test
  void dpWithoutMpirunSaysHowToStartIt() throws Exception {
    String out = refused("--dp", "2");
    assertTrue(out.contains("--dp 2 needs 2 processes started by MPI: mpirun -np 2"), out);
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
    String off = refused("--dp", "2", "--zero", "2", "--offload", "auto");
    assertTrue(off.contains("--zero 2 with --offload is not supported yet"), off);
    String three = refused("--dp", "2", "--zero", "3");
    assertTrue(three.contains("--zero 3") && three.contains("not built yet"), three);
    String four = refused("--dp", "2", "--zero", "4");
    assertTrue(four.contains("--zero"), four);
  }
}

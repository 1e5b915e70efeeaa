package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Incompatible or unusable input gives a clear error and loses no checkpoint: a newer format version, another
 * model, another batch or seq, a checkpoint directory that cannot be written.
 */
class BadInputTest {
  @TempDir static Path shared;
  static TrainFixture fx;
  static Path base;  // step-2 and step-4 of a 4-step run

  @BeforeAll
  static void train() throws IOException {
    fx = TrainFixture.create(shared);
    base = shared.resolve("base-ck");
    TrainFixture.runOk(fx.trainArgs(base, shared.resolve("base.jsonl"), 4, 2));
  }

  private Path ck;
  private Map<String, String> before;
  private String altered;  // a checkpoint the test made unloadable on purpose

  private Path copy(Path tmp) throws IOException {
    ck = tmp.resolve("ck");
    TrainFixture.copyTree(base, ck);
    before = snapshot(ck);
    return ck;
  }

  /** Every file under {@code dir} with its CRC32C. */
  private static Map<String, String> snapshot(Path dir) throws IOException {
    Map<String, String> m = new TreeMap<>();
    try (var s = Files.walk(dir)) {
      for (Path p : s.filter(Files::isRegularFile).toList()) m.put(dir.relativize(p).toString(), Checkpoint.crc32c(p));
    }
    return m;
  }

  /** No checkpoint was lost or changed by the failed command. */
  @AfterEach
  void noCheckpointLost() throws IOException {
    if (ck == null) return;
    ck.toFile().setWritable(true);
    assertEquals(before, snapshot(ck), "the checkpoints are untouched");
    for (String n : TrainFixture.stepNames(ck)) if (!n.equals(altered)) Checkpoint.open(ck.resolve(n));
  }

  private static List<String> resumeArgs(Path ck, Path log, String... extra) {
    List<String> a = new ArrayList<>(fx.trainArgs(ck, log, 6, 2, extra));
    a.addAll(List.of("--resume", "auto"));
    return a;
  }

  @Test
  void aNewerFormatVersionIsRefusedWithAnUpgradeHint(@TempDir Path tmp) throws IOException {
    Path c = copy(tmp);
    Path mf = c.resolve("step-00000004").resolve(Checkpoint.MANIFEST);
    Files.writeString(mf, Files.readString(mf).replace("\"format_version\": " + Checkpoint.SINGLE_PROCESS_FORMAT_VERSION + ",", "\"format_version\": 99,"));
    before = snapshot(c);
    altered = "step-00000004";
    String msg = assertThrows(CheckpointException.class, () -> Checkpoint.open(c.resolve("step-00000004"))).getMessage();
    assertTrue(msg.contains("format version 99 is newer than this library reads (" + Checkpoint.FORMAT_VERSION + ")")
        && msg.contains("upgrade") && msg.contains(mf.toString()), msg);
    List<String> warnings = new ArrayList<>();
    assertEquals(2, CheckpointManager.latestValid(c, warnings::add).orElseThrow().step());
    assertTrue(warnings.size() == 1 && warnings.get(0).contains("newer"), warnings::toString);
    TrainFixture.Run r = TrainFixture.runInProcess(List.of("train", "--config", fx.config.toString(), "--data",
        fx.data.toString(), "--resume", c.resolve("step-00000004").toString(), "--steps", "6"));
    assertEquals(1, r.exitCode(), r.all());
    assertTrue(r.err().contains("is newer than this library reads"), r.err());
  }

  @Test
  void anotherModelConfigIsRefusedNamingBoth(@TempDir Path tmp) throws IOException {
    Path c = copy(tmp);
    Path other = tmp.resolve("other.json");
    ModelConfig small = ModelConfig.gpt2(TrainFixture.VOCAB, 64, 2, 32, 2);
    Files.writeString(other, HfConfig.toJson(small));
    List<String> args = resumeArgs(c, tmp.resolve("log.jsonl"));
    args.set(args.indexOf("--config") + 1, other.toString());
    TrainFixture.Run r = TrainFixture.runInProcess(args);
    assertEquals(2, r.exitCode(), r.all());
    assertTrue(r.err().contains("different model") && r.err().contains("hidden=64") && r.err().contains("hidden=32")
        && r.err().contains("step-00000004"), r.err());

    // the same through the Java API
    Checkpoint cp = Checkpoint.open(c.resolve("step-00000004"));
    TrainConfig tc = cp.trainConfig();
    try (TokenDataset data = TokenDataset.open(fx.data);
        Transformer model = Transformer.create(small, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(data, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()))) {
      String msg = assertThrows(CheckpointException.class, () -> cp.restore(t)).getMessage();
      assertTrue(msg.contains("different model") && msg.contains("hidden=64") && msg.contains("hidden=32"), msg);
      assertEquals(0, t.nextStep(), "nothing restored");
    }
  }

  @Test
  void anotherBatchOrSeqIsRefused(@TempDir Path tmp) throws IOException {
    Path c = copy(tmp);
    for (String[] change : new String[][] {{"--batch", "2", "batch 4 vs 2"}, {"--seq", "16", "seq 32 vs 16"},
        {"--shuffle", "false", "shuffle true vs false"}, {"--seed", "7", "seed 1337 vs 7"}}) {
      List<String> args = resumeArgs(c, tmp.resolve("log.jsonl"));
      if (args.contains(change[0])) args.set(args.indexOf(change[0]) + 1, change[1]);
      else args.addAll(List.of(change[0], change[1]));
      TrainFixture.Run r = TrainFixture.runInProcess(args);
      assertEquals(1, r.exitCode(), r.all());
      assertTrue(r.err().contains("cannot resume this run exactly") && r.err().contains(change[2])
          && r.err().contains("step-00000004"), r.err());
    }
    // other data of another size
    Path data2 = tmp.resolve("data2.bin");
    TrainFixture.writeTokens(data2, 3000, -1, -1);
    List<String> args = resumeArgs(c, tmp.resolve("log.jsonl"));
    args.set(args.indexOf("--data") + 1, data2.toString());
    TrainFixture.Run r = TrainFixture.runInProcess(args);
    assertEquals(1, r.exitCode(), r.all());
    assertTrue(r.err().contains("data tokens 4000 vs 3000"), r.err());
  }

  @Test
  void aCheckpointDirectoryThatIsAFileOrUnderAFileIsAClearError(@TempDir Path tmp) throws IOException {
    Path file = tmp.resolve("plain-file");
    Files.writeString(file, "x");
    for (Path bad : List.of(file, file.resolve("ck"))) {
      TrainFixture.Run r = TrainFixture.runInProcess(fx.trainArgs(bad, tmp.resolve("log.jsonl"), 4, 2));
      assertEquals(2, r.exitCode(), r.all());  // checked before any work, as a bad flag value
      assertTrue(r.err().contains("--checkpoint-dir " + bad + (bad.equals(file) ? " is a file, not a directory"
          : " cannot be created: " + file + " is a file, not a directory")), r.err());
    }
    assertEquals("x", Files.readString(file));
  }

  @Test
  void aReadOnlyCheckpointDirectoryIsAClearErrorAndItsCheckpointsStay(@TempDir Path tmp) throws IOException {
    Path c = copy(tmp);
    Files.setPosixFilePermissions(c, PosixFilePermissions.fromString("r-xr-xr-x"));
    assumeFalse(Files.isWritable(c), "running as root: a read-only directory is still writable");
    String msg = assertThrows(CheckpointException.class, () -> new CheckpointManager(c, 3, true)).getMessage();
    assertTrue(msg.contains("not writable") && msg.contains(c.toString()), msg);
    TrainFixture.Run r = TrainFixture.runInProcess(resumeArgs(c, tmp.resolve("log.jsonl")));
    assertEquals(2, r.exitCode(), r.all());  // checked before any work, as a bad flag value
    assertTrue(r.err().contains("--checkpoint-dir " + c + " is a directory that is not writable"), r.err());
  }
}

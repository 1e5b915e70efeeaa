package dev.athanor.train.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code train --resume DIR} with a checkpoint named directly, without {@code --checkpoint-dir}. */
class ResumeCommandLineTest {
  @Test
  void resumeFromANamedCheckpointWithoutCheckpointDirContinuesExactlyAndKeepsCheckpointingThere(@TempDir Path tmp)
      throws IOException {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    Path logA = tmp.resolve("a.jsonl");
    TrainFixture.runOk(fx.trainArgs(ck, logA, 6, 2));
    List<String> a = TrainFixture.stepLosses(logA);

    Path other = tmp.resolve("other");
    Files.createDirectories(other);
    TrainFixture.copyTree(ck.resolve("step-00000002"), other.resolve("step-00000002"));
    Path logB = tmp.resolve("b.jsonl");
    List<String> args = new ArrayList<>(fx.trainArgs(null, logB, 6, 0));
    args.addAll(List.of("--resume", other.resolve("step-00000002").toString(), "--checkpoint-every", "2"));
    TrainFixture.Run r = TrainFixture.runOk(args);
    assertTrue(r.out().contains("resuming from " + other.resolve("step-00000002") + " (step 2)"), r.out());
    assertEquals(a.subList(2, 6), TrainFixture.stepLosses(logB), "steps 2..5 as in the uninterrupted run");
    assertEquals(List.of("step-00000002", "step-00000004", "step-00000006"), TrainFixture.stepNames(other),
        "checkpointing continues next to the checkpoint it resumed from");
  }

  @Test
  void theResumeHintOfSuchARunNamesTheCheckpointDirectory(@TempDir Path tmp) throws IOException {
    TrainFixture fx = TrainFixture.create(tmp);
    Path ck = tmp.resolve("ck");
    TrainFixture.runOk(fx.trainArgs(ck, tmp.resolve("a.jsonl"), 2, 2));
    List<String> args = new ArrayList<>(fx.trainArgs(null, tmp.resolve("b.jsonl"), 20, 0, "--lr", "1e30", "--grad-clip", "0"));
    args.addAll(List.of("--resume", ck.resolve("step-00000002").toString()));
    TrainFixture.Run r = TrainFixture.runInProcess(args);
    assertEquals(1, r.exitCode(), r.all());
    assertTrue(r.err().contains("--checkpoint-dir " + ck + " --resume auto"), r.err());
    assertTrue(!r.err().contains("--resume " + ck.resolve("step-00000002")), "the old --resume is replaced: " + r.err());
  }
}

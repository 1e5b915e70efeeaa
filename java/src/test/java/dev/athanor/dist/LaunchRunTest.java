package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.athanor.cli.Main;
import dev.athanor.testing.ChildClassPath;
import dev.athanor.train.checkpoint.TrainFixture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code athanor launch} through a real mpirun: one command, without the Open MPI environment a root container needs
 * (launch sets it), starts a two-process data-parallel run that trains and writes its log once.
 */
class LaunchRunTest {
  @TempDir static Path tmp;

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
  }

  @Test
  void launchStartsADataParallelRun() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    Path run = tmp.resolve("run"), out = tmp.resolve("launch.txt");
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "--enable-native-access=ALL-UNNAMED", "-Xmx256m", "-Dathanor.cache.dir=" + tmp.resolve("native-cache"),
        "-cp", ChildClassPath.forMain(), Main.class.getName(),
        "launch", "train", "--config", f.config.toString(), "--data", f.data.toString(), "--device", "cpu", "--steps", "3",
        "--batch", "2", "--seq", "32", "--log", run.resolve("log.jsonl").toString(), "--out", run.resolve("model").toString(),
        "--dp", "2"));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile());
    for (String k : List.of("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")) pb.environment().remove(k);
    Process p = pb.start();
    if (!p.waitFor(300, TimeUnit.SECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly().waitFor();
      fail("launch did not finish in 300 s:\n" + Files.readString(out));
    }
    String text = Files.readString(out);
    assertEquals(0, p.exitValue(), text);
    assertTrue(text.contains("athanor launch: ") && text.contains("-np 2"), "launch says what it runs:\n" + text);
    assertEquals(1, text.split("data parallel: ", -1).length - 1, "rank 0 alone prints:\n" + text);
    List<String> steps = Files.readAllLines(run.resolve("log.jsonl")).stream().filter(l -> l.contains("\"step\"")
        && !l.contains("\"summary\"")).toList();
    assertEquals(3, steps.size(), text);
    assertTrue(Files.exists(run.resolve("model/model.safetensors")), text);
  }
}

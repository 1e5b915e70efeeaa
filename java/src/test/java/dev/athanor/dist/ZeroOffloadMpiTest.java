package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.cli.Main;
import dev.athanor.cli.ShardOffloadBudget;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.params.Role;
import dev.athanor.report.RunSummary;
import dev.athanor.train.checkpoint.TrainFixture;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * ZeRO 1, 2 and 3 with {@code --offload} through real {@code mpirun} (skipped without MPI): under a {@code --mem-host} that
 * leaves no room for a rank's shard of AdamW's moments, {@code --offload auto} puts that shard (and only it) on DISK, in
 * each rank's own folder of {@code --offload-dir}, and dp 2 × ZeRO 1, 2 and 3 train exactly as without offload (every
 * logged step, the final weights) with a lower HOST peak; a checkpoint of dp 2 × ZeRO 2 with its moments on DISK
 * resumes without offload and as one process, and one written without offload resumes with it, exactly; one of ZeRO 3
 * with its moments on DISK resumes with them there and as one process. Under ZeRO 3 a plan that puts the rank's whole
 * shard on DISK (its masters, gradient and moments) trains exactly as in memory at dp 2 and 3 (where the shards cut
 * units mid-way), with the DISK traffic the planner predicts and a lower HOST peak than the moments alone on DISK
 * ({@code --offload auto} chooses it under a budget the moments alone do not fit), and its checkpoints resume with it
 * and as one process. Resident units under ZeRO 1, 2 and 3 (a plan file that keeps some units of each role on DISK in
 * memory) train exactly as in memory and as every unit on DISK, with the planned DISK bytes and within the planned HOST
 * bytes; {@code --offload auto} keeps units resident when the budget has room; a plan that no longer fits is refused
 * before training; their checkpoints resume with another resident set and as one process.
 */
class ZeroOffloadMpiTest {
  @TempDir static Path tmp;

  /** The bytes of a role per chunk: a few thousand elements, so a shard streams in many chunks that cut its tensors. */
  private static final long CHUNK = 4000;
  private static final Path MODEL = Path.of("model", "model.safetensors");

  @BeforeAll
  static void requireMpi() {
    MpiRunTest.requireMpi();
    MpiRunTest.tmp = tmp;  // its launcher keeps the native library cache there
  }

  private static List<String> trainArgs(TrainFixture f, Path dir, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--config", f.config.toString(), "--data", f.data.toString(), "--device",
        "cpu", "--steps", "6", "--batch", "2", "--seq", "32", "--shuffle", "true", "--warmup", "2", "--threads", "1", "--log",
        dir.resolve("log.jsonl").toString(), "--out", dir.resolve("model").toString()));
    a.addAll(List.of(extra));
    return a;
  }

  /**
   * {@code --offload auto} under a HOST budget that sends both moments of a rank's ZeRO {@code zero} shard to DISK (with
   * {@code checkpoints}: counting a background save's copy of the rank's part).
   */
  private static List<String> offloadFlags(int zero, Path offloadDir, boolean checkpoints) {
    long budget = ShardOffloadBudget.bothMomentsOnDisk(TrainFixture.model(), 2, 32, 1, 2, zero, CHUNK, checkpoints);
    return List.of("--offload", "auto", "--offload-chunk", Long.toString(CHUNK), "--mem-host", Long.toString(budget),
        "--offload-dir", offloadDir.toString());
  }

  private static MpiRunTest.Job trainMpi(List<String> args) throws Exception {
    return trainMpi(2, args);
  }

  private static MpiRunTest.Job trainMpi(int np, List<String> args) throws Exception {
    MpiRunTest.Job j = MpiRunTest.mpirun(np, Main.class.getName(), args, 300);
    assertEquals(0, j.exitCode(), j.output());
    return j;
  }

  /** A run's step lines without the fields that differ from run to run or with offload (timings, traffic). */
  private static List<String> steps(Path run) throws IOException {
    List<String> out = new ArrayList<>();
    for (JsonObject o : stepLines(run)) {
      for (String k : List.of("tokens_per_s", "step_ms", "comm_ms", "comm_bytes", "comm_sent_bytes", "comm_wait_ms",
          "comm_buckets", "gather_wait_ms", "gathers_ahead", "disk_read_bytes",
          "disk_write_bytes", "stall_ms", "overlap")) {
        o.remove(k);
      }
      out.add(o.toString());
    }
    return out;
  }

  /** The log's summary line: the peaks of rank 0 (which writes the log) per tier. */
  private static JsonObject peaks(Path run) throws IOException {
    for (String line : Files.readAllLines(run.resolve("log.jsonl"))) {
      if (RunSummary.isSummaryLine(line)) return JsonParser.parseString(line).getAsJsonObject().getAsJsonObject("peak_bytes");
    }
    throw new AssertionError("no summary line in " + run.resolve("log.jsonl"));
  }

  private static void assertShardOffloaded(MpiRunTest.Job j, int zero, Path offloadDir, Path run) throws IOException {
    assertTrue(j.output().contains("offload plan (ZeRO " + zero + ", per rank): its 1/2 shard of AdamW's moments (adam_m, "
        + "adam_v) on DISK"), j.output());
    for (int r = 0; r < 2; r++) {
      assertTrue(Files.isDirectory(offloadDir.resolve("rank-" + r)), "rank " + r + "'s own offload folder in " + offloadDir);
    }
    try (var left = Files.walk(offloadDir)) {
      assertEquals(List.of(), left.filter(Files::isRegularFile).toList(), "the offload files are deleted at the end");
    }
    // the step lines carry the DISK traffic of the moments' shard: read and written once per step
    JsonObject first = JsonParser.parseString(Files.readAllLines(run.resolve("log.jsonl")).get(0)).getAsJsonObject();
    assertTrue(first.get("disk_read_bytes").getAsLong() > 0 && first.get("disk_write_bytes").getAsLong() > 0, first.toString());
  }

  /**
   * dp 2 × ZeRO 1, 2 and 3 with the shard's moments on DISK equal the same without offload: every logged step and
   * the final weights, bit for bit; rank 0's HOST peak drops and its DISK peak is at most the shard's two moments (less
   * the units the planner keeps resident in the room left).
   */
  @Test
  void zeroOneTwoAndThreeWithTheirMomentsOnDiskTrainExactlyAsInMemory() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("fixture"));
    for (int zero : new int[] {1, 2, 3}) {
      Path mem = tmp.resolve("z" + zero + "-memory"), off = tmp.resolve("z" + zero + "-offload");
      Path dir = tmp.resolve("z" + zero + "-dir");
      List<String> zeroFlags = List.of("--dp", "2", "--zero", Integer.toString(zero));
      trainMpi(MpiRunTest.concat(trainArgs(f, mem), zeroFlags));
      MpiRunTest.Job j = trainMpi(MpiRunTest.concat(trainArgs(f, off), zeroFlags, offloadFlags(zero, dir, false)));
      assertShardOffloaded(j, zero, dir, off);
      List<String> want = steps(mem);
      assertEquals(6, want.size());
      assertEquals(want, steps(off), "dp 2 × ZeRO " + zero + " with the moments' shard on DISK vs in memory: every logged step");
      assertEquals(-1, Files.mismatch(mem.resolve(MODEL), off.resolve(MODEL)), "final weights, ZeRO " + zero + " with offload");
      JsonObject pm = peaks(mem), po = peaks(off);
      long hostMem = pm.get("HOST").getAsLong(), hostOff = po.get("HOST").getAsLong(), disk = po.get("DISK").getAsLong();
      System.out.printf("dp 2 x ZeRO %d, rank 0 peak HOST: %d bytes in memory, %d with offload (DISK %d)%n", zero, hostMem,
          hostOff, disk);
      assertEquals(0, pm.get("DISK").getAsLong(), "nothing on DISK without offload");
      long shardMoments = 2L * 4 * (TrainFixture.model().parameterCount() / 2);  // about: the padding adds a little
      // the shard's two moments but the units --offload auto keeps resident in the room the budget leaves
      assertTrue(disk > 0 && disk < 2 * shardMoments, "DISK peak " + disk + ": at most the shard's two moments, ~"
          + shardMoments);
      assertTrue(hostOff < hostMem, "HOST peak with the moments' shard on DISK " + hostOff + " vs in memory " + hostMem);
    }
  }

  /**
   * dp 2 × ZeRO {@code zero} with a checkpoint every step, in {@code mem} without offload and in {@code off} with the
   * moments' shard on DISK (in {@code offloadDir}): the same logged steps and final weights; returns the steps.
   */
  private static List<String> checkpointedWithAndWithoutOffload(TrainFixture f, int zero, Path mem, Path off, Path offloadDir)
      throws Exception {
    List<String> keepAll = List.of("--checkpoint-every", "1", "--keep", "10");
    List<String> zeroFlags = List.of("--dp", "2", "--zero", Integer.toString(zero));
    trainMpi(MpiRunTest.concat(trainArgs(f, mem, "--checkpoint-dir", mem.resolve("ck").toString()), keepAll, zeroFlags));
    MpiRunTest.Job j = trainMpi(MpiRunTest.concat(trainArgs(f, off, "--checkpoint-dir", off.resolve("ck").toString()),
        keepAll, zeroFlags, offloadFlags(zero, offloadDir, true)));
    assertShardOffloaded(j, zero, offloadDir, off);
    List<String> reference = steps(mem);
    assertEquals(reference, steps(off), "dp 2 × ZeRO " + zero + " with checkpoints, with and without offload");
    assertEquals(-1, Files.mismatch(mem.resolve(MODEL), off.resolve(MODEL)), "final weights with checkpoints, ZeRO " + zero);
    return reference;
  }

  /**
   * Checkpoints of dp 2 × ZeRO 2 with the moments' shard on DISK (a file per rank, written from the DISK shard) resume
   * under dp 2 × ZeRO 2 without offload and as one process with --accum 2, and a checkpoint written without offload
   * resumes with it: each continues with the same steps and final weights as the uninterrupted runs.
   */
  @Test
  void checkpointsOfZeroTwoWithOffloadResumeWithAndWithoutIt() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("ck-fixture"));
    List<String> zeroFlags = List.of("--dp", "2", "--zero", "2");
    Path mem = tmp.resolve("ck-memory"), off = tmp.resolve("ck-offload");
    List<String> reference = checkpointedWithAndWithoutOffload(f, 2, mem, off, tmp.resolve("ck-offload-dir"));
    Path offStep3 = off.resolve("ck/step-00000003"), memStep3 = mem.resolve("ck/step-00000003");
    for (String file : List.of("rank-0-of-2.safetensors", "rank-1-of-2.safetensors")) {
      assertEquals(-1, Files.mismatch(memStep3.resolve(file), offStep3.resolve(file)), file + " of step 3: the same bytes "
          + "written from the moments on DISK as from memory");
    }

    assertResumes(f, "ck-resume-memory", 2, MpiRunTest.concat(List.of("--resume", offStep3.toString()), zeroFlags), reference,
        mem, "resumed without offload from the offloaded checkpoint");

    assertResumes(f, "ck-resume-one", 1, List.of("--accum", "2", "--resume", offStep3.toString()), reference, mem,
        "resumed as one process from the offloaded checkpoint");

    assertResumes(f, "ck-resume-offload", 2, MpiRunTest.concat(List.of("--resume", memStep3.toString()), zeroFlags,
        offloadFlags(2, tmp.resolve("ck-resume-offload-dir"), true)), reference, mem,
        "resumed with offload from a checkpoint without it");
  }

  /**
   * dp 2 × ZeRO 3 with the moments' shard on DISK and a checkpoint every step: the same steps and weights as without
   * offload; its step-3 checkpoint resumes with the moments on DISK again and as one process with --accum 2, each
   * continuing with the uninterrupted run's steps 3..5 and final weights.
   */
  @Test
  void checkpointsOfZeroThreeWithOffloadResume() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("z3ck-fixture"));
    List<String> zeroFlags = List.of("--dp", "2", "--zero", "3");
    Path mem = tmp.resolve("z3ck-memory"), off = tmp.resolve("z3ck-offload");
    List<String> reference = checkpointedWithAndWithoutOffload(f, 3, mem, off, tmp.resolve("z3ck-offload-dir"));
    Path offStep3 = off.resolve("ck/step-00000003");

    assertResumes(f, "z3ck-resume-offload", 2, MpiRunTest.concat(List.of("--resume", offStep3.toString()), zeroFlags,
        offloadFlags(3, tmp.resolve("z3ck-resume-offload-dir"), true)), reference, mem, "resumed with the moments on DISK");

    assertResumes(f, "z3ck-resume-one", 1, List.of("--accum", "2", "--resume", offStep3.toString()), reference, mem,
        "resumed as one process from the ZeRO 3 checkpoint");
  }

  /**
   * A plan file that puts the gradients on DISK is refused under ZeRO before any work, naming the file, the stage and
   * the role; one that puts the moments there is followed (the shard's moments on DISK).
   */
  @Test
  void underZeroAPlanFileMayPutOnlyTheMomentsOnDisk() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("plan-fixture"));
    Path inMemory = tmp.resolve("in-memory.json");
    MpiRunTest.trainHere(List.of("plan", "--config", f.config.toString(), "--device", "cpu", "--batch", "2", "--seq", "32",
        "--json", inMemory.toString()));
    String text = Files.readString(inMemory);
    Path grads = tmp.resolve("grads.json"), moments = tmp.resolve("moments.json");
    Files.writeString(grads, text.replaceAll("(\"role\": \"grad\",\\s*\"tier\": \")HOST", "$1DISK"));
    Files.writeString(moments, text.replaceAll("(\"role\": \"adam_(m|v)\",\\s*\"tier\": \")HOST", "$1DISK"));
    assertNotEquals(text, Files.readString(grads), "the plan names the gradients' tier");
    MpiRunTest.Job j = MpiRunTest.mpirun(2, Main.class.getName(), MpiRunTest.concat(trainArgs(f, tmp.resolve("refused")),
        List.of("--dp", "2", "--zero", "1", "--offload", grads.toString())), 120);
    assertNotEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("--offload " + grads + " with --zero 1: under ZeRO 1 and 2 only AdamW's moments (a rank's shard of "
        + "them) can be on DISK, not grad"), j.output());
    assertTrue(Files.notExists(tmp.resolve("refused/log.jsonl")), "nothing was trained");

    Path run = tmp.resolve("from-plan"), dir = tmp.resolve("from-plan-dir");
    MpiRunTest.Job ok = trainMpi(MpiRunTest.concat(trainArgs(f, run), List.of("--dp", "2", "--zero", "1", "--offload",
        moments.toString(), "--offload-dir", dir.toString())));
    assertShardOffloaded(ok, 1, dir, run);
  }

  /**
   * Trains {@code f}'s model into {@code tmp/name} with {@code np} processes (1: in this JVM) and {@code flags} (a
   * --resume among them, checkpoints into its own directory), and checks that it continues with {@code reference}'s
   * steps 3..5 and ends with {@code mem}'s final weights ({@code what}: how it resumed).
   */
  private static void assertResumes(TrainFixture f, String name, int np, List<String> flags, List<String> reference, Path mem,
      String what) throws Exception {
    Path run = tmp.resolve(name);
    List<String> args = MpiRunTest.concat(trainArgs(f, run, "--checkpoint-dir", run.resolve("ck").toString()), flags);
    if (np == 1) {
      MpiRunTest.trainHere(args);
    } else {
      trainMpi(np, args);
    }
    assertEquals(reference.subList(3, 6), steps(run), "steps 3..5 " + what);
    assertEquals(-1, Files.mismatch(mem.resolve(MODEL), run.resolve(MODEL)), "final weights " + what);
  }

  /**
   * A plan file for {@code f}'s model with chunks of {@link #CHUNK} whose {@code roles} (plan names, e.g. "master") are on
   * DISK for every unit, the rest in memory.
   */
  private static Path planWith(TrainFixture f, Path file, String... roles) throws IOException {
    Path base = file.resolveSibling(file.getFileName() + ".base.json");
    MpiRunTest.trainHere(List.of("plan", "--config", f.config.toString(), "--device", "cpu", "--batch", "2", "--seq", "32",
        "--offload-chunk", Long.toString(CHUNK), "--json", base.toString()));
    String text = Files.readString(base);
    String edited = text.replaceAll("(\"role\": \"(" + String.join("|", roles) + ")\",\\s*\"tier\": \")HOST", "$1DISK");
    assertNotEquals(text, edited, "the plan names the roles' tiers");
    Files.writeString(file, edited);
    return file;
  }

  /** Whether a boundary of the {@code np} shards of the flat layout lies strictly inside a unit. */
  private static boolean shardsCutAUnit(int np) {
    long n = OffloadPlan.layoutElements(TrainFixture.model());
    for (int r = 1; r < np; r++) {
      long cut = n * r / np, at = 0;
      for (OffloadPlan.UnitSize u : OffloadPlan.units(TrainFixture.model())) {
        if (cut > at && cut < at + u.elements()) return true;
        at += u.elements();
      }
    }
    return false;
  }

  /** The step lines of {@code run}'s log (not its summary), parsed. */
  private static List<JsonObject> stepLines(Path run) throws IOException {
    List<JsonObject> out = new ArrayList<>();
    for (String line : Files.readAllLines(run.resolve("log.jsonl"))) {
      if (!RunSummary.isSummaryLine(line)) out.add(JsonParser.parseString(line).getAsJsonObject());
    }
    return out;
  }

  /** Every step line's DISK bytes (read + written) of {@code run}'s log. */
  private static List<Long> diskBytesPerStep(Path run) throws IOException {
    List<Long> out = new ArrayList<>();
    for (JsonObject o : stepLines(run)) out.add(o.get("disk_read_bytes").getAsLong() + o.get("disk_write_bytes").getAsLong());
    return out;
  }

  private static void assertNoFilesLeft(Path offloadDir) throws IOException {
    try (var left = Files.walk(offloadDir)) {
      assertEquals(List.of(), left.filter(Files::isRegularFile).toList(), "the offload files are deleted at the end");
    }
  }

  private static final java.util.Set<Role> WHOLE_SHARD = java.util.EnumSet.of(Role.MASTER, Role.GRAD, Role.ADAM_M, Role.ADAM_V);

  /**
   * dp 2 and 3 × ZeRO 3 (--accum 2: the gradient's shard read back and added to) with the rank's whole shard on DISK
   * equal the same run in memory (every logged step, the final weights), with each unit's fold on the communication
   * thread (--overlap on, the default) and on the training thread (--overlap off); each step moves the DISK bytes the planner
   * predicts for rank 0; rank 0's HOST peak is below that of the moments alone on DISK, and its DISK peak holds the
   * shard's four roles.
   */
  @Test
  void zeroThreeWithItsWholeShardOnDiskTrainsExactlyAsInMemory() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("z3all-fixture"));
    Path moments = planWith(f, tmp.resolve("z3-moments.json"), "adam_m", "adam_v");
    Path all = planWith(f, tmp.resolve("z3-all.json"), "master", "grad", "adam_m", "adam_v");
    assertTrue(shardsCutAUnit(3), "the test needs dp 3's shards to cut a unit mid-way");
    for (int np : new int[] {2, 3}) {
      String tag = "z3all-np" + np;
      Path mem = tmp.resolve(tag + "-memory"), mom = tmp.resolve(tag + "-moments"), off = tmp.resolve(tag + "-offload");
      Path momDir = tmp.resolve(tag + "-moments-dir"), dir = tmp.resolve(tag + "-dir");
      List<String> zeroFlags = List.of("--dp", Integer.toString(np), "--zero", "3", "--accum", "2");
      trainMpi(np, MpiRunTest.concat(trainArgs(f, mem), zeroFlags));
      trainMpi(np, MpiRunTest.concat(trainArgs(f, mom), zeroFlags, List.of("--offload", moments.toString(), "--offload-dir",
          momDir.toString())));
      MpiRunTest.Job j = trainMpi(np, MpiRunTest.concat(trainArgs(f, off), zeroFlags, List.of("--offload", all.toString(),
          "--offload-dir", dir.toString())));
      assertTrue(j.output().contains("shard roles: master DISK, grad DISK, adam_m DISK, adam_v DISK"), j.output());
      List<String> want = steps(mem);
      assertEquals(6, want.size());
      assertEquals(want, steps(off), "dp " + np + " × ZeRO 3 with the whole shard on DISK vs in memory: every logged step");
      assertEquals(want, steps(mom), "dp " + np + " × ZeRO 3 with the moments' shard on DISK vs in memory");
      assertEquals(-1, Files.mismatch(mem.resolve(MODEL), off.resolve(MODEL)), "final weights, dp " + np + ", whole shard on DISK");
      // --overlap on (the default): each unit's fold of each micro-batch ran on the communication thread, through the
      // gradient's shard on DISK; --overlap off folds (and gathers) on the training thread: the same bits
      for (JsonObject o : stepLines(off)) {
        assertEquals(2 * (TrainFixture.model().layers() + 2), o.get("comm_buckets").getAsInt(), "unit folds: " + o);
      }
      Path sync = tmp.resolve(tag + "-offload-overlap-off");
      trainMpi(np, MpiRunTest.concat(trainArgs(f, sync), zeroFlags, List.of("--offload", all.toString(), "--offload-dir",
          tmp.resolve(tag + "-overlap-off-dir").toString(), "--overlap", "off")));
      assertEquals(want, steps(sync), "dp " + np + " × ZeRO 3 with the whole shard on DISK, --overlap off");
      assertEquals(-1, Files.mismatch(off.resolve(MODEL), sync.resolve(MODEL)), "final weights, dp " + np
          + ", whole shard on DISK, --overlap on vs off");
      long predicted = OffloadPlanner.shardTrafficPerStep(TrainFixture.model(), np, 0, 2, WHOLE_SHARD);
      for (long b : diskBytesPerStep(off)) assertEquals(predicted, b, "rank 0's DISK bytes per step, dp " + np);
      JsonObject pm = peaks(mom), po = peaks(off);
      long hostMoments = pm.get("HOST").getAsLong(), hostAll = po.get("HOST").getAsLong(), disk = po.get("DISK").getAsLong();
      System.out.printf("dp %d x ZeRO 3 (accum 2), rank 0 peak HOST: %d bytes with the moments' shard on DISK, %d with the "
          + "whole shard (DISK %d vs %d)%n", np, hostMoments, hostAll, disk, pm.get("DISK").getAsLong());
      long shard = 4 * (OffloadPlan.layoutElements(TrainFixture.model()) / np);  // rank 0's
      assertTrue(disk >= 4 * shard && disk < 8 * shard, "DISK peak " + disk + ": the shard's four roles, ~" + 4 * shard);
      assertTrue(hostAll < hostMoments, "HOST peak with the whole shard on DISK " + hostAll + " vs the moments only "
          + hostMoments);
      for (int r = 0; r < np; r++) assertTrue(Files.isDirectory(dir.resolve("rank-" + r)), "rank " + r + "'s offload folder");
      assertNoFilesLeft(dir);
      if (np != 2) continue;
      // --offload auto under a budget that the moments alone on DISK do not fit: the planner puts the whole shard there
      long budget = ShardOffloadBudget.wholeZeroThreeShardOnDisk(TrainFixture.model(), 2, 32, 2, np, CHUNK);
      Path auto = tmp.resolve(tag + "-auto");
      MpiRunTest.Job a = trainMpi(np, MpiRunTest.concat(trainArgs(f, auto), zeroFlags, List.of("--offload", "auto",
          "--offload-chunk", Long.toString(CHUNK), "--mem-host", Long.toString(budget), "--offload-dir",
          tmp.resolve(tag + "-auto-dir").toString())));
      assertTrue(a.output().contains("shard roles: master DISK, grad DISK, adam_m DISK, adam_v DISK"), a.output());
      assertEquals(want, steps(auto), "dp 2 × ZeRO 3 with --offload auto's whole shard on DISK");
      assertEquals(-1, Files.mismatch(mem.resolve(MODEL), auto.resolve(MODEL)), "final weights with --offload auto");
    }
  }

  /**
   * dp 3 × ZeRO 3 with the whole shard on DISK and a checkpoint every step writes the rank files of the same run in
   * memory, byte for byte, and its step-3 checkpoint resumes with the whole shard on DISK again and as one process with
   * --accum 3, each continuing with the in-memory run's steps 3..5 and final weights.
   */
  @Test
  void checkpointsOfZeroThreeWithItsWholeShardOnDiskResume() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("z3allck-fixture"));
    Path all = planWith(f, tmp.resolve("z3ck-all.json"), "master", "grad", "adam_m", "adam_v");
    List<String> keepAll = List.of("--checkpoint-every", "1", "--keep", "10");
    List<String> zeroFlags = List.of("--dp", "3", "--zero", "3");
    Path mem = tmp.resolve("z3allck-memory"), off = tmp.resolve("z3allck-offload");
    trainMpi(3, MpiRunTest.concat(trainArgs(f, mem, "--checkpoint-dir", mem.resolve("ck").toString()), keepAll, zeroFlags));
    trainMpi(3, MpiRunTest.concat(trainArgs(f, off, "--checkpoint-dir", off.resolve("ck").toString()), keepAll, zeroFlags,
        List.of("--offload", all.toString(), "--offload-dir", tmp.resolve("z3allck-dir").toString())));
    List<String> reference = steps(mem);
    assertEquals(reference, steps(off), "dp 3 × ZeRO 3 with checkpoints, whole shard on DISK vs in memory");
    assertEquals(-1, Files.mismatch(mem.resolve(MODEL), off.resolve(MODEL)), "final weights with checkpoints");
    assertNoFilesLeft(tmp.resolve("z3allck-dir"));
    Path offStep3 = off.resolve("ck/step-00000003");
    for (int r = 0; r < 3; r++) {
      String file = "rank-" + r + "-of-3.safetensors";
      assertEquals(-1, Files.mismatch(mem.resolve("ck/step-00000003").resolve(file), offStep3.resolve(file)), file
          + " of step 3: the same bytes written from the shard on DISK as from memory");
    }

    assertResumes(f, "z3allck-resume-offload", 3, MpiRunTest.concat(List.of("--resume", offStep3.toString()), zeroFlags,
        List.of("--offload", all.toString(), "--offload-dir", tmp.resolve("z3allck-resume-dir").toString())), reference, mem,
        "resumed with the whole shard on DISK");

    assertResumes(f, "z3allck-resume-one", 1, List.of("--accum", "3", "--resume", offStep3.toString()), reference, mem,
        "resumed as one process from the offloaded checkpoint");
  }

  /**
   * Data parallel with the optimizer on the host ({@link HostOffloadMain} under dp 2 on a BF16 CPU model): every variant
   * equal bit for bit to data parallel without the host optimizer and (one micro-batch per rank) to one process with
   * accum 2 and the host optimizer.
   */
  @Test
  void dataParallelWithTheOptimizerOnTheHostEqualsOneProcessAndDataParallelInMemory() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("host-fixture"));
    MpiRunTest.Job j = MpiRunTest.mpirun(2, HostOffloadMain.class.getName(),
        List.of(f.data.toString(), tmp.resolve("host-off").toString()), 600);
    assertEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("host offload: dp 2, 18 runs equal bit for bit"), j.output());
  }

  /**
   * ZeRO 1 with the optimizer on the host ({@link HostOffloadMain} {@code zero1} under dp 2 on a BF16 CPU model): each
   * rank only its shard's masters and moments, the units' new weights all-gathered; every variant (streamed, at once,
   * moments on DISK, through the slots; accum 2 with the sum on the host and on the device) equal bit for bit to ZeRO 0
   * with the optimizer on the host and to dp in memory, for GPT-2 and Llama; its step-2 checkpoint resumes as one process
   * and under dp 2 × ZeRO 1 on the host.
   */
  @Test
  void zeroOneWithTheOptimizerOnTheHostEqualsZeroZeroAndResumesAsOneProcess() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("host1-fixture"));
    MpiRunTest.Job j = MpiRunTest.mpirun(2, HostOffloadMain.class.getName(),
        List.of(f.data.toString(), tmp.resolve("host1-off").toString(), "zero1"), 600);
    assertEquals(0, j.exitCode(), j.output());
    assertTrue(j.output().contains("host offload zero 1: dp 2, 18 runs equal bit for bit"), j.output());
  }

  /**
   * A plan file for {@code f}'s model with chunks of {@link #CHUNK} whose {@code roles} (plan names) are on DISK for every
   * unit but those {@code resident} names for the role (kept in memory), the other roles in memory.
   */
  private static Path planWithResident(TrainFixture f, Path file, Set<Role> roles, Map<Role, Set<String>> resident)
      throws IOException {
    Path base = file.resolveSibling(file.getFileName() + ".base.json");
    MpiRunTest.trainHere(List.of("plan", "--config", f.config.toString(), "--device", "cpu", "--batch", "2", "--seq", "32",
        "--offload-chunk", Long.toString(CHUNK), "--json", base.toString()));
    JsonObject plan = JsonParser.parseString(Files.readString(base)).getAsJsonObject();
    for (var e : plan.getAsJsonArray("placements")) {
      JsonObject p = e.getAsJsonObject();
      Role r = Role.valueOf(p.get("role").getAsString().toUpperCase(java.util.Locale.ROOT));
      if (roles.contains(r) && !resident.getOrDefault(r, Set.of()).contains(p.get("unit").getAsString())) {
        p.addProperty("tier", "DISK");
      }
    }
    Files.writeString(file, plan.toString());
    return file;
  }

  private static final Set<Role> MOMENTS = java.util.EnumSet.of(Role.ADAM_M, Role.ADAM_V);

  /** The mixed resident set the tests use under ZeRO {@code zero}: some units of each role on DISK resident, some not. */
  private static Map<Role, Set<String>> mixed(int zero) {
    return zero == 3
        ? Map.of(Role.MASTER, Set.of("block.0", "head"), Role.GRAD, Set.of("embedding", "block.1"), Role.ADAM_M,
            Set.of("block.1"))
        : Map.of(Role.ADAM_M, Set.of("embedding", "block.1"), Role.ADAM_V, Set.of("head"));
  }

  /**
   * dp 2 × ZeRO 1, 2 and 3 (--accum 2) with a mixed set of resident units (per role, some units' parts of the shard in
   * memory, the others on DISK) equal the same run in memory and with every unit on DISK, bit for bit (every logged step,
   * the final weights); each of rank 0's steps moves the DISK bytes the planner predicts for its shard with those units
   * resident (less than every unit on DISK), and its HOST peak is within the planned HOST bytes. Under ZeRO 3 a budget
   * with room for some units makes --offload auto keep them resident (same bits), and the mixed plan under a budget it
   * no longer fits (the whole shard on DISK would) exits 1 before any training.
   */
  @Test
  void residentUnitsUnderZeroTrainExactlyAsInMemoryAndOnDisk() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("res-fixture"));
    for (int zero : new int[] {1, 2, 3}) {
      String tag = "res-z" + zero;
      Set<Role> roles = zero == 3 ? WHOLE_SHARD : MOMENTS;
      Map<Role, Set<String>> resident = mixed(zero);
      Path allPlan = planWithResident(f, tmp.resolve(tag + "-all.json"), roles, Map.of());
      Path mixedPlan = planWithResident(f, tmp.resolve(tag + "-mixed.json"), roles, resident);
      Path mem = tmp.resolve(tag + "-memory"), all = tmp.resolve(tag + "-all"), mix = tmp.resolve(tag + "-mixed");
      List<String> zeroFlags = List.of("--dp", "2", "--zero", Integer.toString(zero), "--accum", "2");
      trainMpi(MpiRunTest.concat(trainArgs(f, mem), zeroFlags));
      trainMpi(MpiRunTest.concat(trainArgs(f, all), zeroFlags, List.of("--offload", allPlan.toString(), "--offload-dir",
          tmp.resolve(tag + "-all-dir").toString())));
      Path dir = tmp.resolve(tag + "-mixed-dir");
      MpiRunTest.Job j = trainMpi(MpiRunTest.concat(trainArgs(f, mix), zeroFlags, List.of("--offload", mixedPlan.toString(),
          "--offload-dir", dir.toString())));
      assertTrue(j.output().contains("per unit, rank 0's part of its shard"), j.output());
      List<String> want = steps(mem);
      assertEquals(6, want.size());
      assertEquals(want, steps(all), "dp 2 × ZeRO " + zero + ", every unit on DISK vs in memory");
      assertEquals(want, steps(mix), "dp 2 × ZeRO " + zero + ", resident units " + resident + " vs in memory");
      assertEquals(-1, Files.mismatch(mem.resolve(MODEL), all.resolve(MODEL)), "final weights, ZeRO " + zero + ", all on DISK");
      assertEquals(-1, Files.mismatch(mem.resolve(MODEL), mix.resolve(MODEL)), "final weights, ZeRO " + zero + ", resident");
      long planned = OffloadPlanner.shardTrafficPerStep(TrainFixture.model(), 2, 0, 2, roles, resident);
      long whole = OffloadPlanner.shardTrafficPerStep(TrainFixture.model(), 2, 0, 2, roles);
      assertTrue(planned > 0 && planned < whole, "resident units save DISK traffic: " + planned + " vs " + whole);
      for (long b : diskBytesPerStep(mix)) assertEquals(planned, b, "rank 0's DISK bytes per step, ZeRO " + zero + " resident");
      for (long b : diskBytesPerStep(all)) assertEquals(whole, b, "rank 0's DISK bytes per step, ZeRO " + zero + " all on DISK");
      long plannedHost = ShardOffloadBudget.hostBytes(TrainFixture.model(), 2, 32, 2, 2, zero, CHUNK, roles, resident);
      long host = peaks(mix).get("HOST").getAsLong();
      System.out.printf("dp 2 x ZeRO %d (accum 2), resident %s: rank 0 peak HOST %d bytes (planned %d, all on DISK %d), "
          + "DISK %d bytes per step (all on DISK %d)%n", zero, resident, host, plannedHost, peaks(all).get("HOST").getAsLong(),
          planned, whole);
      assertTrue(host <= plannedHost, "rank 0's HOST peak " + host + " within the planned " + plannedHost);
      assertNoFilesLeft(dir);
      if (zero != 3) continue;

      // --offload auto under a budget with room for some of the whole shard's units: it keeps them resident
      long budget = ShardOffloadBudget.wholeZeroThreeShardOnDisk(TrainFixture.model(), 2, 32, 2, 2, CHUNK);
      Path auto = tmp.resolve(tag + "-auto");
      MpiRunTest.Job a = trainMpi(MpiRunTest.concat(trainArgs(f, auto), zeroFlags, List.of("--offload", "auto",
          "--offload-chunk", Long.toString(CHUNK), "--mem-host", Long.toString(budget), "--offload-dir",
          tmp.resolve(tag + "-auto-dir").toString())));
      assertTrue(a.output().contains("shard roles: master DISK, grad DISK, adam_m DISK, adam_v DISK"), a.output());
      assertTrue(a.output().contains("units stays in memory"), "auto keeps some units resident: " + a.output());
      assertEquals(want, steps(auto), "dp 2 × ZeRO 3 with --offload auto's resident units");
      assertEquals(-1, Files.mismatch(mem.resolve(MODEL), auto.resolve(MODEL)), "final weights with --offload auto");
      long autoBytes = diskBytesPerStep(auto).get(0);
      assertTrue(autoBytes < whole, "auto's resident units save DISK traffic: " + autoBytes + " vs " + whole);

      // the mixed plan under a budget only the whole shard on DISK fits: refused before training
      long allHost = ShardOffloadBudget.hostBytes(TrainFixture.model(), 2, 32, 2, 2, 3, CHUNK, roles, Map.of());
      long tight = (allHost + plannedHost) / 2;
      assertTrue(allHost < tight && tight < plannedHost, allHost + " < " + tight + " < " + plannedHost);
      MpiRunTest.Job refused = MpiRunTest.mpirun(2, Main.class.getName(), MpiRunTest.concat(trainArgs(f,
          tmp.resolve(tag + "-refused")), zeroFlags, List.of("--offload", mixedPlan.toString(), "--mem-host",
          Long.toString(tight), "--offload-dir", tmp.resolve(tag + "-refused-dir").toString())), 120);
      assertEquals(1, refused.exitCode(), refused.output());
      assertTrue(refused.output().contains("HOST"), refused.output());
      assertTrue(Files.notExists(tmp.resolve(tag + "-refused/log.jsonl")), "nothing was trained");
    }
  }

  /**
   * dp 2 × ZeRO 3 with a mixed resident set and a checkpoint every step writes the rank files of the run in memory byte
   * for byte (the manifest unchanged); its step-3 checkpoint resumes with another resident set, and as one process with
   * --accum 2, each continuing with the in-memory run's steps 3..5 and final weights.
   */
  @Test
  void checkpointsWithResidentUnitsResumeWithAnotherSetAndAsOneProcess() throws Exception {
    TrainFixture f = TrainFixture.create(tmp.resolve("resck-fixture"));
    Path mixedPlan = planWithResident(f, tmp.resolve("resck-mixed.json"), WHOLE_SHARD, mixed(3));
    Path otherPlan = planWithResident(f, tmp.resolve("resck-other.json"), WHOLE_SHARD, Map.of(Role.MASTER,
        Set.of("embedding", "block.1"), Role.ADAM_V, Set.of("block.0", "head")));
    List<String> keepAll = List.of("--checkpoint-every", "1", "--keep", "10");
    List<String> zeroFlags = List.of("--dp", "2", "--zero", "3");
    Path mem = tmp.resolve("resck-memory"), off = tmp.resolve("resck-offload");
    trainMpi(MpiRunTest.concat(trainArgs(f, mem, "--checkpoint-dir", mem.resolve("ck").toString()), keepAll, zeroFlags));
    trainMpi(MpiRunTest.concat(trainArgs(f, off, "--checkpoint-dir", off.resolve("ck").toString()), keepAll, zeroFlags,
        List.of("--offload", mixedPlan.toString(), "--offload-dir", tmp.resolve("resck-dir").toString())));
    List<String> reference = steps(mem);
    assertEquals(reference, steps(off), "dp 2 × ZeRO 3 with checkpoints, resident units vs in memory");
    Path offStep3 = off.resolve("ck/step-00000003"), memStep3 = mem.resolve("ck/step-00000003");
    try (var files = Files.list(memStep3)) {
      for (Path p : files.toList()) {
        if (!Files.isRegularFile(p)) continue;
        String name = p.getFileName().toString();
        if (!name.startsWith("rank-")) continue;
        assertEquals(-1, Files.mismatch(p, offStep3.resolve(name)), name + " of step 3: the same bytes with resident units");
      }
    }
    assertResumes(f, "resck-resume-other", 2, MpiRunTest.concat(List.of("--resume", offStep3.toString()), zeroFlags,
        List.of("--offload", otherPlan.toString(), "--offload-dir", tmp.resolve("resck-other-dir").toString())), reference, mem,
        "resumed with another set of resident units");
    assertResumes(f, "resck-resume-one", 1, List.of("--accum", "2", "--resume", offStep3.toString()), reference, mem,
        "resumed as one process from the checkpoint with resident units");
  }
}

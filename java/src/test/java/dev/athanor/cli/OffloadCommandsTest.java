package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.train.TrainConfig;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Issue 9: --offload off|auto|PLAN.json on train, and the plan command. */
class OffloadCommandsTest {
  private static final MemoryManager MM = MemoryManager.global();
  static final ModelConfig MODEL = ModelConfig.gpt2(300, 64, 8, 64, 2);  // 8 blocks: moments well above the staging
  /** 1000 elements per chunk: staging far smaller than the moments of this small model. */
  static final long CHUNK = 4000;

  @TempDir Path tmp;
  Path config, data;
  long hostBudget;

  @BeforeEach
  void fixture() throws IOException {
    hostBudget = MM.budgetBytes(Tier.HOST);
    config = tmp.resolve("config.json");
    Files.writeString(config, HfConfig.toJson(MODEL));
    data = tmp.resolve("data.bin");
    SplittableRandom r = new SplittableRandom(42);
    try (TokenShardWriter w = TokenShardWriter.create(data, 300)) {
      int prev = 1;
      for (int i = 0; i < 4000; i++) w.write(prev = (prev * 7 + r.nextInt(4)) % 300);
    }
  }

  @AfterEach
  void restoreBudget() {
    MM.setBudget(Tier.HOST, hostBudget);  // --mem-host sets the process's budget
  }

  List<String> shape() {
    return List.of("--config", config.toString(), "--device", "cpu", "--steps", "4", "--batch", "4", "--seq", "32",
        "--warmup", "1");
  }

  List<String> train(String out, String... extra) {
    List<String> a = new ArrayList<>(List.of("train", "--data", data.toString(), "--out", tmp.resolve(out).toString(),
        "--shuffle", "true"));
    a.addAll(shape());
    a.addAll(Arrays.asList(extra));
    return a;
  }

  List<String> plan(String... extra) {
    List<String> a = new ArrayList<>(List.of("plan"));
    a.addAll(shape());
    a.addAll(Arrays.asList(extra));
    return a;
  }

  static CliTest.Out run(List<String> args) {
    return CliTest.run(args.toArray(String[]::new));
  }

  /** The job the command lines above describe, for the expected sizes. */
  OffloadPlanner.Job job(long chunk) {
    TrainConfig tc = CliTest.parseTrain(train("x").toArray(String[]::new)).trainConfig(MODEL);
    return new OffloadPlanner.Job(MODEL, Device.CPU, tc, false, false, false, chunk);
  }

  /** A --mem-host value (bytes) between the HOST needs of both moments on DISK and of only the first one. */
  String tightBudget(long chunk) {
    OffloadPlanner.Job j = job(chunk);
    long both = OffloadPlanner.place(j, EnumSet.of(Role.ADAM_M, Role.ADAM_V)).bytes(Tier.HOST);
    long one = OffloadPlanner.place(j, Set.of(Role.ADAM_M)).bytes(Tier.HOST);
    assertTrue(both < one && one < j.inMemory().bytes(Tier.HOST), both + " " + one + " " + j.inMemory() + " live " + MM.liveBytes(Tier.HOST));
    return Long.toString(MM.liveBytes(Tier.HOST) + (both + one) / 2);
  }

  static List<String> losses(Path log) throws IOException {
    List<String> out = new ArrayList<>();
    Matcher m = Pattern.compile("\"loss\":([^,]+),").matcher(Files.readString(log, StandardCharsets.UTF_8));
    while (m.find()) out.add(m.group(1));
    return out;
  }

  @Test
  void autoTrainsUnderABudgetOnlyOffloadFitsAndMatchesTheRunInMemory() throws IOException {
    CliTest.Out mem = run(train("mem"));
    assertEquals(0, mem.code(), mem.err());
    assertFalse(mem.out().contains("offload plan"), mem.out());
    String budget = tightBudget(dev.athanor.offload.OffloadConfig.DEFAULT_CHUNK_BYTES);

    CliTest.Out refused = run(train("refused", "--mem-host", budget));
    assertEquals(1, refused.code(), refused.err());
    assertTrue(refused.err().contains("not enough memory to train this model") && refused.err().contains(
        "or --offload auto (AdamW's moments (adam_m, adam_v) then go to DISK: "), refused.err());
    MM.setBudget(Tier.HOST, hostBudget);

    Path offDir = tmp.resolve("offload-files");
    CliTest.Out auto = run(train("auto", "--mem-host", budget, "--offload", "auto", "--offload-dir", offDir.toString()));
    assertEquals(0, auto.code(), auto.err());
    String o = auto.out();
    assertTrue(o.contains("offload plan: AdamW's moments (adam_m, adam_v) on DISK"), o);
    assertTrue(o.contains("block.1") && o.contains("adam_v") && o.contains("total HOST") && o.contains("total DISK")
        && o.contains("DISK traffic per step: "), o);
    List<String> want = losses(tmp.resolve("mem/train-log.jsonl"));
    assertEquals(4, want.size());
    assertEquals(want, losses(tmp.resolve("auto/train-log.jsonl")), "per-step losses bit for bit");
    assertTrue(Files.isDirectory(offDir), "the files went to --offload-dir");
    try (var s = Files.list(offDir)) {
      assertEquals(0, s.count(), "the run's offload files are removed when it ends");
    }
  }

  @Test
  void aPlanFileRoundTripsThroughTrain() throws IOException {
    String budget = tightBudget(CHUNK);
    Path file = tmp.resolve("plans/p.json");
    CliTest.Out p = run(plan("--mem-host", budget, "--json", file.toString(), "--offload-chunk", "4000"));
    assertEquals(0, p.code(), p.err());
    assertTrue(p.out().contains("plan written to " + file) && p.out().contains("offload plan: AdamW's moments"), p.out());
    MM.setBudget(Tier.HOST, hostBudget);
    CliTest.Out stdout = run(plan("--mem-host", budget, "--json", "-", "--offload-chunk", "4000"));
    assertEquals(Files.readString(file), stdout.out(), "--json - writes the same plan, and only it");
    MM.setBudget(Tier.HOST, hostBudget);

    CliTest.Out t = run(train("fromfile", "--mem-host", budget, "--offload", file.toString()));
    assertEquals(0, t.code(), t.err());
    assertTrue(t.out().contains("offload plan: AdamW's moments (adam_m, adam_v) on DISK"), t.out());
    MM.setBudget(Tier.HOST, hostBudget);
    CliTest.Out mem = run(train("mem"));
    assertEquals(losses(tmp.resolve("mem/train-log.jsonl")), losses(tmp.resolve("fromfile/train-log.jsonl")));

    // without a budget the planner keeps everything in memory, and that plan file trains too
    CliTest.Out none = run(plan("--json", "-"));
    assertEquals(0, none.code(), none.err());
    Path inMemory = tmp.resolve("none.json");
    Files.writeString(inMemory, none.out());
    assertFalse(none.out().contains("\"DISK\""), none.out());
    CliTest.Out t2 = run(train("none", "--offload", inMemory.toString()));
    assertEquals(0, t2.code(), t2.err());
    assertTrue(t2.out().contains("offload plan: everything in memory"), t2.out());
  }

  /** The JSON text of this model's plan (as {@code plan --json} writes it) with every role of every unit on DISK. */
  String allOnDiskPlan() {
    CliTest.Out p = run(plan("--json", "-"));
    assertEquals(0, p.code(), p.err());
    return p.out().replace("\"HOST\"", "\"DISK\"").replace("\"totals\": {\n    \"DISK\"", "\"totals\": {\n    \"HOST\"");
  }

  /** {@code plan} (JSON text) with {@code unit}'s {@code role} placed on {@code tier}. */
  static String placed(String plan, String unit, String role, String tier) {
    String edited = plan.replaceFirst("(\"unit\": \"" + Pattern.quote(unit) + "\",\\s*\"role\": \"" + role + "\",\\s*\"tier\": )\"\\w+\"",
        "$1\"" + tier + "\"");
    assertFalse(edited.equals(plan), unit + " " + role + " placed on " + tier);
    return edited;
  }

  /**
   * A hand-edited plan that keeps some units' gradients and moments in memory (HOST) while the rest of each role is on
   * DISK trains with the in-memory run's losses and says so in its table; a plan of the first format, where only the
   * weights are placed unit by unit, still reads and trains; the same plan under a budget it no longer fits is refused
   * before anything is written.
   */
  @Test
  void aHandEditedPlanWithSomeUnitsInMemoryTrainsLikeMemory() throws IOException {
    String all = allOnDiskPlan();
    String edited = placed(placed(placed(placed(all, "block.0", "adam_m", "HOST"), "block.0", "adam_v", "HOST"),
        "block.3", "grad", "HOST"), "head", "adam_v", "HOST");
    Path f = tmp.resolve("edited.json");
    Files.writeString(f, edited);
    CliTest.Out mem = run(train("mem"));
    assertEquals(0, mem.code(), mem.err());
    List<String> want = losses(tmp.resolve("mem/train-log.jsonl"));
    assertEquals(4, want.size());
    CliTest.Out t = run(train("edited", "--offload", f.toString()));
    assertEquals(0, t.code(), t.err());
    assertTrue(t.out().contains("grad of 1 of 10 units stays in memory") && t.out().contains("adam_v of 2 of 10 units stays"),
        t.out());
    assertTrue(Pattern.compile("block\\.0\\s+adam_m\\s+HOST").matcher(t.out()).find()
        && Pattern.compile("block\\.1\\s+adam_m\\s+DISK").matcher(t.out()).find(), t.out());
    assertEquals(want, losses(tmp.resolve("edited/train-log.jsonl")), "per-step losses bit for bit");

    // the first format: every role on one tier for every unit, but the weights of some units in memory
    Path old = tmp.resolve("old.json");
    Files.writeString(old, placed(placed(all, "embedding", "master", "HOST"), "block.1", "master", "HOST"));
    CliTest.Out o = run(train("old", "--offload", old.toString()));
    assertEquals(0, o.code(), o.err());
    assertTrue(o.out().contains("master of 2 of 10 units stays in memory"), o.out());
    assertEquals(want, losses(tmp.resolve("old/train-log.jsonl")), "per-step losses bit for bit");

    // a budget the plan no longer fits: refused, naming the plan, before anything is written
    CliTest.Out r = run(train("tight", "--offload", f.toString(), "--mem-host", "64k"));
    assertEquals(1, r.code(), r.err());
    assertTrue(r.err().contains("not enough memory to train this model with the plan " + f), r.err());
    assertFalse(Files.exists(tmp.resolve("tight")), "nothing written");
  }

  /** A plan file that puts every role on DISK trains through the CLI with the in-memory run's losses. */
  @Test
  void aPlanWithEverythingOnDiskTrainsLikeMemory() throws IOException {
    String all = allOnDiskPlan();
    Path f = tmp.resolve("all.json");
    Files.writeString(f, all);
    Path offDir = tmp.resolve("offload-all");
    CliTest.Out t = run(train("all", "--offload", f.toString(), "--offload-dir", offDir.toString()));
    assertEquals(0, t.code(), t.err());
    assertTrue(t.out().contains("offload plan: weights (master), gradients (grad) and AdamW's moments (adam_m, adam_v) on DISK"),
        t.out());
    assertTrue(t.out().contains("weights and gradients paged through host windows"), t.out());
    CliTest.Out mem = run(train("mem"));
    assertEquals(0, mem.code(), mem.err());
    List<String> want = losses(tmp.resolve("mem/train-log.jsonl"));
    assertFalse(want.isEmpty());
    assertEquals(want, losses(tmp.resolve("all/train-log.jsonl")), "per-step losses bit for bit");
    try (var s = Files.list(offDir)) {
      assertEquals(0, s.count(), "the run's offload files are removed when it ends");
    }
  }

  /**
   * A plan file with {@code "activations": "disk"} trains through the CLI with the in-memory run's losses, says where the
   * activations are, and logs per step the DISK bytes the plan estimates; a file without the key (older) still reads;
   * a bad value, a contradicting {@code "recompute"}, or {@code --recompute} with it are usage errors.
   */
  @Test
  void aPlanWithActivationsOnDiskTrainsLikeMemory() throws IOException {
    CliTest.Out p = run(plan("--json", "-"));
    assertEquals(0, p.code(), p.err());
    assertTrue(p.out().contains("\"activations\": \"memory\"") && p.out().contains("\"activation_traffic_per_step\": 0"), p.out());
    String acts = p.out().replace("\"activations\": \"memory\"", "\"activations\": \"disk\"");
    Path f = tmp.resolve("acts.json");
    Files.writeString(f, acts);
    Path offDir = tmp.resolve("offload-acts");
    CliTest.Out t = run(train("acts", "--offload", f.toString(), "--offload-dir", offDir.toString()));
    assertEquals(0, t.code(), t.err());
    assertTrue(t.out().contains("offload plan: the weights, gradients and AdamW's moments in memory")
        && t.out().contains("activations: on DISK (tier DISK), 6 of 8 blocks'"), t.out());
    CliTest.Out mem = run(train("mem"));
    assertEquals(0, mem.code(), mem.err());
    List<String> want = losses(tmp.resolve("mem/train-log.jsonl"));
    assertEquals(4, want.size());
    assertEquals(want, losses(tmp.resolve("acts/train-log.jsonl")), "per-step losses bit for bit");
    long estimate = OffloadPlanner.place(job(dev.athanor.offload.OffloadConfig.DEFAULT_CHUNK_BYTES).withActivationsOnDisk(true),
        Set.of()).diskTrafficPerStep();
    assertTrue(estimate > 0);
    Pattern traffic = Pattern.compile("\"disk_read_bytes\":(\\d+),\"disk_write_bytes\":(\\d+)");
    List<Long> perLine = new ArrayList<>();
    for (String line : Files.readAllLines(tmp.resolve("acts/train-log.jsonl"), StandardCharsets.UTF_8)) {
      Matcher m = traffic.matcher(line);
      if (m.find()) perLine.add(Long.parseLong(m.group(1)) + Long.parseLong(m.group(2)));
    }
    // the 4 step lines, each the plan's estimate, then the summary line with the loop's total
    assertEquals(List.of(estimate, estimate, estimate, estimate, 4 * estimate), perLine, "DISK bytes against the plan");
    try (var s = Files.list(offDir)) {
      assertEquals(0, s.count(), "the run's offload files are removed when it ends");
    }
    // a plan written before "activations" existed reads as before
    Path old = tmp.resolve("old.json");
    Files.writeString(old, p.out().replace("  \"activations\": \"memory\",\n", ""));
    CliTest.Out o = run(train("old", "--offload", old.toString()));
    assertEquals(0, o.code(), o.err());
    assertTrue(o.out().contains("offload plan: everything in memory"), o.out());
    String[][] bad = {
        {acts.replace("\"activations\": \"disk\"", "\"activations\": \"ssd\""), "\"activations\" must be one of \"memory\", "
            + "\"recompute\", \"disk\", got \"ssd\""},
        {acts.replace("\"recompute\": false", "\"recompute\": true"), "\"activations\" is \"disk\" but \"recompute\" is true"},
    };
    for (int i = 0; i < bad.length; i++) {
      Path b = tmp.resolve("bad-acts-" + i + ".json");
      Files.writeString(b, bad[i][0]);
      CliTest.Out r = run(train("badacts" + i, "--offload", b.toString()));
      assertEquals(2, r.code(), r.err());
      assertTrue(r.err().contains(bad[i][1]), bad[i][1] + " in: " + r.err());
    }
    CliTest.Out both = run(train("both", "--offload", f.toString(), "--recompute"));
    assertEquals(2, both.code(), both.err());
    assertTrue(both.err().contains("puts the activations on DISK") && both.err().contains("give one"), both.err());
  }

  /**
   * Under a budget that the activations kept in memory exceed, {@code plan} on a model of wide blocks puts them on DISK
   * (its cost model's cheaper way there) rather than recomputing them, in the table and in the JSON.
   */
  @Test
  void planPutsTheActivationsOfWideBlocksOnDisk() throws IOException {
    ModelConfig wide = ModelConfig.gpt2(300, 64, 6, 320, 4);
    Path wideConfig = tmp.resolve("wide.json");
    Files.writeString(wideConfig, HfConfig.toJson(wide));
    List<String> args = List.of("plan", "--config", wideConfig.toString(), "--device", "cpu", "--batch", "4", "--seq", "64");
    TrainConfig tc = CliTest.parseTrain("train", "--data", data.toString(), "--out", tmp.resolve("w").toString(), "--config",
        wideConfig.toString(), "--batch", "4", "--seq", "64").trainConfig(wide);
    OffloadPlanner.Job j = new OffloadPlanner.Job(wide, Device.CPU, tc, false, false, false);
    Set<Role> light = EnumSet.of(Role.ADAM_M, Role.ADAM_V, Role.GRAD);
    long room = OffloadPlanner.place(j.withActivationsOnDisk(true), light).bytes(Tier.HOST);
    assertTrue(OffloadPlanner.place(j, light).bytes(Tier.HOST) > room, "kept, the activations do not fit");
    String budget = Long.toString(MM.liveBytes(Tier.HOST) + room);
    CliTest.Out json = run(concat(args, "--mem-host", budget, "--json", "-"));
    assertEquals(0, json.code(), json.err());
    assertTrue(json.out().contains("\"activations\": \"disk\"") && json.out().contains("\"recompute\": false"), json.out());
    MM.setBudget(Tier.HOST, hostBudget);
    CliTest.Out table = run(concat(args, "--mem-host", budget));
    assertEquals(0, table.code(), table.err());
    assertTrue(table.out().contains("activations: on DISK (tier DISK), 4 of 6 blocks'"), table.out());
  }

  /**
   * {@code bench --mode train --offload PLAN.json} times offloaded steps and reports their DISK traffic and the units
   * each role keeps in memory.
   */
  @Test
  void benchTrainReportsTheOffloadsTraffic() throws IOException {
    Path f = tmp.resolve("bench-all.json");
    Files.writeString(f, placed(allOnDiskPlan(), "block.0", "grad", "HOST"));
    List<String> bench = List.of("bench", "--mode", "train", "--config", config.toString(), "--device", "cpu", "--batch", "2",
        "--seq", "16", "--steps", "2", "--warmup-steps", "1");
    CliTest.Out r = run(concat(bench, "--offload", f.toString(), "--offload-dir", tmp.resolve("bench-off").toString()));
    assertEquals(0, r.code(), r.err());
    assertTrue(r.err().contains("offload plan: weights (master), gradients (grad) and AdamW's moments"), r.err());
    com.google.gson.JsonObject o = com.google.gson.JsonParser.parseString(r.out().trim()).getAsJsonObject().getAsJsonObject("offload");
    assertEquals(List.of("adam_m", "adam_v", "grad", "master"),
        o.getAsJsonArray("disk_roles").asList().stream().map(com.google.gson.JsonElement::getAsString).toList());
    assertEquals("{\"adam_m\":0,\"adam_v\":0,\"grad\":1,\"master\":0}", o.get("resident_units").toString(), o.toString());
    assertTrue(o.get("disk_read_bytes_per_step").getAsLong() > 0 && o.get("disk_write_bytes_per_step").getAsLong() > 0, o.toString());
    CliTest.Out plain = run(bench);
    assertEquals(0, plain.code(), plain.err());
    assertFalse(plain.out().contains("\"offload\""), plain.out());
    CliTest.Out bad = run(List.of("bench", "--mode", "decode", "--config", config.toString(), "--offload", "auto"));
    assertEquals(2, bad.code(), bad.err());
    assertTrue(bad.err().contains("option '--offload' does not apply to --mode decode"), bad.err());
  }

  static List<String> concat(List<String> a, String... more) {
    List<String> all = new ArrayList<>(a);
    all.addAll(Arrays.asList(more));
    return all;
  }

  @Test
  void badPlanFilesAreUsageErrorsNamingTheProblem() throws IOException {
    String good = allOnDiskPlan();
    String[][] cases = {
        {"{ not json", "is not valid JSON"},
        {"[]", "expected a JSON object"},
        {good.replace("\"format\": \"athanor-offload-plan\"", "\"format\": \"other\""), "format is \"other\""},
        {good.replace("\"version\": 1", "\"version\": 7"), "version 7 is not supported"},
        {good.replace("\"chunk_bytes\"", "\"extra\": 1,\n  \"chunk_bytes\""), "unknown key \"extra\""},
        {good.replaceFirst("\"unit\": \"block.1\"", "\"unit\": \"block.19\""), "placement 9 (block.19 master): unknown unit \"block.19\""},
        {good.replaceFirst("\"role\": \"adam_v\"", "\"role\": \"weight\""), "placement 4 (embedding weight): role weight cannot be placed by a plan"},
        {good.replaceFirst("\"role\": \"adam_v\"", "\"role\": \"momentum\""), "unknown role \"momentum\""},
        {good.replaceFirst("\"tier\": \"DISK\"", "\"tier\": \"DEVICE\""), "placement 1 (embedding master): tier DEVICE is not supported"},
        {good.replaceFirst("\"tier\": \"DISK\"", "\"tier\": \"SSD\""), "placement 1 (embedding master): unknown tier \"SSD\""},
        {good.replaceFirst("\"role\": \"adam_v\"", "\"role\": \"adam_m\""), "embedding adam_m is placed twice"},
        {good.replaceFirst("\"bytes\": \\d+", "\"bytes\": 12"), "bytes 12, but this model's embedding master is"},
        {good.replaceFirst("\"chunk_bytes\": \\d+", "\"chunk_bytes\": 6"), "chunk_bytes 6 must be a positive multiple of 4"},
        {good.replaceFirst("\"chunk_bytes\": \\d+", "\"chunk_bytes\": 1.5"), "\"chunk_bytes\" must be a whole number"},
    };
    for (int i = 0; i < cases.length; i++) {
      Path f = tmp.resolve("bad-" + i + ".json");
      Files.writeString(f, cases[i][0]);
      CliTest.Out r = run(train("bad" + i, "--offload", f.toString()));
      assertEquals(2, r.code(), cases[i][1] + ": " + r.err());
      assertTrue(r.err().startsWith("athanor train: --offload " + f), r.err());
      assertTrue(r.err().contains(cases[i][1]), cases[i][1] + " in: " + r.err());
      assertFalse(Files.exists(tmp.resolve("bad" + i)), "nothing written");
    }
    // a plan missing a unit's entry
    String cut = good.replaceFirst("(?s)\\{\\s*\"unit\": \"head\",\\s*\"role\": \"adam_v\",[^}]*},?", "")
        .replaceFirst(",(\\s*])", "$1");
    Path f = tmp.resolve("missing.json");
    Files.writeString(f, cut);
    CliTest.Out r = run(train("missing", "--offload", f.toString()));
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("no placement for head adam_v"), r.err());
    Path absent = tmp.resolve("absent.json");
    r = run(train("absent", "--offload", absent.toString()));
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("--offload " + absent + ": cannot read the plan"), r.err());
    r = run(train("dir", "--offload-dir", tmp.toString()));
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("--offload-dir " + tmp + " needs --offload auto"), r.err());
    r = run(train("chunk", "--offload", "auto", "--offload-chunk", "6"));
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("--offload-chunk 6 must be a positive multiple of 4 bytes"), r.err());
    r = run(train("chunk", "--offload-chunk", "4k"));
    assertEquals(2, r.code(), r.err());
    assertTrue(r.err().contains("--offload-chunk 4096 needs --offload auto"), r.err());
  }

  @Test
  void planRefusesAJobThatCannotFitEvenWithOffload() {
    OffloadPlan closest = null;
    for (EnumSet<Role> roles : List.of(EnumSet.noneOf(Role.class), EnumSet.of(Role.ADAM_M), EnumSet.of(Role.ADAM_M, Role.ADAM_V),
        EnumSet.of(Role.ADAM_M, Role.ADAM_V, Role.GRAD), EnumSet.of(Role.ADAM_M, Role.ADAM_V, Role.GRAD, Role.MASTER))) {
      for (boolean recompute : new boolean[] {false, true}) {
        OffloadPlan p = OffloadPlanner.place(job(CHUNK).withRecompute(recompute), roles);
        if (closest == null || p.bytes(Tier.HOST) < closest.bytes(Tier.HOST)) closest = p;
      }
    }
    CliTest.Out r = run(plan("--mem-host", Long.toString(MM.liveBytes(Tier.HOST) + closest.bytes(Tier.HOST) - 1000), "--offload-chunk", "4000"));
    assertEquals(1, r.code(), r.err());
    assertTrue(r.err().startsWith("athanor plan: not enough memory to train this model: no offload plan fits: the closest, with "
        + OffloadPlan.describe(closest.diskRoles()) + " on DISK" + (closest.recompute() ? " and activations recomputed" : "")
        + ", leaves the HOST tier 1000 B short"), r.err());
    assertTrue(r.err().contains("the windows of the units being computed. What still helps: a smaller "
        + "--batch or --seq, --recompute, a smaller model, or a larger budget (--mem-host)."), r.err());
    MM.setBudget(Tier.HOST, hostBudget);
    CliTest.Out h = run(List.of("plan", "--help"));
    assertEquals(0, h.code());
    for (String flag : List.of("--preset", "--batch", "--seq", "--accum", "--recompute", "--mem-host", "--json")) {
      assertTrue(h.out().contains(flag), flag);
    }
  }
}

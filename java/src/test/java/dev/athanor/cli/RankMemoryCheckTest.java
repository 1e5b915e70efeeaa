package dev.athanor.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.dist.plan.ParallelPlanner.Layout;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.nn.ModelConfig;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import java.util.EnumSet;
import org.junit.jupiter.api.Test;

/**
 * The memory check before a parallel run counts one process's share ({@link MemoryCheck#rankFootprint}): ZeRO's shards
 * and a pipeline stage's blocks, not the whole model's state.
 */
class RankMemoryCheckTest {
  private static final ModelConfig MODEL = ModelConfig.gpt2(300, 64, 4, 64, 2);  // vocab, context, layers, hidden, heads

  private static OffloadPlanner.Job job(int accum) {
    TrainConfig tc = new TrainConfig(3, 2, 16, accum, 1e-3f, 1e-3f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
    return new OffloadPlanner.Job(MODEL, Device.CPU, tc, false, false, false);
  }

  private static long bytes(Footprint f, Component c) {
    return f.bytes(c, EnumSet.of(Tier.HOST));
  }

  @Test
  void zeroStagesShardWhatTheyShardAndPipelineStagesHoldTheirBlocks() {
    OffloadPlanner.Job j = job(2);
    Footprint whole = j.inMemory();
    Footprint z0 = MemoryCheck.rankFootprint(j, new Layout(2, 1, 1, 0, false), 2);
    Footprint z1 = MemoryCheck.rankFootprint(j, new Layout(2, 1, 1, 1, false), 2);
    Footprint z2 = MemoryCheck.rankFootprint(j, new Layout(2, 1, 1, 2, false), 2);
    // plain dp holds what one process holds, plus the sums' receive buffers
    assertEquals(bytes(whole, Component.OPTIMIZER), bytes(z0, Component.OPTIMIZER), "dp 2 keeps every moment");
    assertEquals(bytes(z0, Component.OPTIMIZER), 2 * bytes(z1, Component.OPTIMIZER), "ZeRO 1 keeps half of them");
    assertEquals(bytes(z0, Component.GRADIENTS), bytes(z1, Component.GRADIENTS), "ZeRO 1 keeps the whole gradient");
    assertTrue(bytes(z2, Component.GRADIENTS) < bytes(z1, Component.GRADIENTS), "ZeRO 2 keeps a shard of the step's sum");
    assertTrue(z1.total() < z0.total() && z1.total() < whole.total() + bytes(z1, Component.BUFFERS),
        "dp 2 x ZeRO 1 needs less than plain dp 2: " + z1.total() + " vs " + z0.total());
    Footprint pp = MemoryCheck.rankFootprint(job(2), new Layout(1, 1, 2, 0, false), 2);
    assertTrue(bytes(pp, Component.WEIGHTS) < bytes(whole, Component.WEIGHTS) * 3 / 4,
        "a stage of 2 of the 4 blocks (and the embeddings) holds less than the whole model: " + bytes(pp, Component.WEIGHTS)
            + " of " + bytes(whole, Component.WEIGHTS));
  }

  /**
   * ZeRO with offload: a rank's plan moves its shard of the moments (half of its AdamW state each) to DISK, adding only
   * the staging slots to HOST; the planner takes the first placement that fits (nothing, the first moment, both), says
   * why none does when even both do not, and refuses the gradients or weights on DISK.
   */
  @Test
  void aZeroRanksOffloadPlanMovesItsShardOfTheMoments() {
    OffloadPlanner.Job j = new OffloadPlanner.Job(MODEL, Device.CPU, job(1).train(), false, false, false, 4000);
    Footprint z1 = MemoryCheck.rankFootprint(j, new Layout(2, 1, 1, 1, false), 2);
    long moments = bytes(z1, Component.OPTIMIZER);
    var both = OffloadPlanner.placeShard(j, z1, EnumSet.of(dev.athanor.params.Role.ADAM_M, dev.athanor.params.Role.ADAM_V));
    long staging = new dev.athanor.offload.OffloadConfig(both.diskRoles(), null, 4000)
        .stagingBytes(dev.athanor.offload.OffloadPlan.largestUnit(MODEL));
    assertEquals(moments, both.bytes(Tier.DISK), "the rank's shard of both moments on DISK");
    assertEquals(z1.bytes(Tier.HOST) - moments + staging, both.bytes(Tier.HOST), "HOST: the rest, plus the staging slots");
    var first = OffloadPlanner.placeShard(j, z1, java.util.Set.of(dev.athanor.params.Role.ADAM_M));
    assertEquals(moments / 2, first.bytes(Tier.DISK));

    dev.athanor.memory.MemoryManager mm = dev.athanor.memory.MemoryManager.global();
    long budget = mm.budgetBytes(Tier.HOST), live = mm.liveBytes(Tier.HOST);  // the budget less what is in use must fit
    try {
      mm.setBudget(Tier.HOST, live + (both.bytes(Tier.HOST) + first.bytes(Tier.HOST)) / 2);
      var r = OffloadPlanner.planShard(j, z1, mm);
      assertEquals(both.diskRoles(), r.plan().diskRoles(), "a budget between the two: both moments");
      mm.setBudget(Tier.HOST, live + z1.bytes(Tier.HOST) + 1);
      assertTrue(OffloadPlanner.planShard(j, z1, mm).plan().diskRoles().isEmpty(), "everything fits: nothing on DISK");
      mm.setBudget(Tier.HOST, live + both.bytes(Tier.HOST) - 1);
      String why = OffloadPlanner.planShard(j, z1, mm).failure();
      assertTrue(why.contains("with its shard of AdamW's moments (adam_m, adam_v) on DISK, the HOST tier is")
          && why.contains("under ZeRO 1 and 2 only AdamW's moments go to DISK"), why);
    } finally {
      mm.setBudget(Tier.HOST, budget);
    }
    IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> OffloadPlanner.placeShard(j, z1, java.util.Set.of(dev.athanor.params.Role.GRAD)));
    assertTrue(e.getMessage().contains("not grad"), e.getMessage());
  }

  /**
   * ZeRO 3 with offload (a GPT-2 small rank of dp 4): after the shard's moments, its gradient and then its masters go to
   * DISK, each taking its shard (4 n / dp bytes) out of HOST for a buffer of one unit's part (the gradient: or of a norm
   * chunk); the planner takes the first that fits the budget, says which tier is short and by how much when none does,
   * and the DISK traffic per step is each role's reads and writes of the shard.
   */
  @Test
  void aZeroThreeRanksOffloadPlanPutsItsShardOfTheGradientAndTheMastersOnDisk() {
    ModelConfig gpt2 = ModelConfig.presets().get("gpt2");
    OffloadPlanner.Job j = gpt2Job(2);
    Footprint z3 = MemoryCheck.rankFootprint(j, new Layout(4, 1, 1, 3, false), 4);
    var M = dev.athanor.params.Role.ADAM_M;
    var V = dev.athanor.params.Role.ADAM_V;
    var G = dev.athanor.params.Role.GRAD;
    var W = dev.athanor.params.Role.MASTER;
    var moments = OffloadPlanner.placeShard(j, z3, EnumSet.of(M, V), 3, 4);
    var grads = OffloadPlanner.placeShard(j, z3, EnumSet.of(M, V, G), 3, 4);
    var all = OffloadPlanner.placeShard(j, z3, EnumSet.of(M, V, G, W), 3, 4);
    long n = dev.athanor.offload.OffloadPlan.layoutElements(gpt2), shard = 4 * ((n + 3) / 4);
    assertEquals(moments.bytes(Tier.DISK) + shard, grads.bytes(Tier.DISK), "the gradient's shard on DISK");
    assertEquals(grads.bytes(Tier.DISK) + shard, all.bytes(Tier.DISK), "the masters' shard on DISK");
    assertTrue(grads.bytes(Tier.HOST) < moments.bytes(Tier.HOST) && all.bytes(Tier.HOST) < grads.bytes(Tier.HOST),
        "each role on DISK leaves HOST lower: " + moments.bytes(Tier.HOST) + ", " + grads.bytes(Tier.HOST) + ", "
            + all.bytes(Tier.HOST));
    IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> OffloadPlanner.placeShard(j, z3, java.util.Set.of(G), 2, 4));
    assertTrue(e.getMessage().contains("--zero 3 can put its shard of them there"), e.getMessage());

    dev.athanor.memory.MemoryManager mm = dev.athanor.memory.MemoryManager.global();
    long budget = mm.budgetBytes(Tier.HOST), live = mm.liveBytes(Tier.HOST);
    try {
      mm.setBudget(Tier.HOST, live + (grads.bytes(Tier.HOST) + all.bytes(Tier.HOST)) / 2);
      assertEquals(all.diskRoles(), OffloadPlanner.planShard(j, z3, mm, 3, 4).plan().diskRoles(), "the whole shard");
      mm.setBudget(Tier.HOST, live + (moments.bytes(Tier.HOST) + grads.bytes(Tier.HOST)) / 2);
      assertEquals(grads.diskRoles(), OffloadPlanner.planShard(j, z3, mm, 3, 4).plan().diskRoles(), "the masters stay");
      assertEquals(moments.diskRoles(), OffloadPlanner.placeShard(j, z3, EnumSet.of(M, V)).diskRoles());
      mm.setBudget(Tier.HOST, live + all.bytes(Tier.HOST) - 12345);
      String why = OffloadPlanner.planShard(j, z3, mm, 3, 4).failure();
      assertTrue(why.contains("with its shard of weights (master), gradients (grad) and AdamW's moments (adam_m, adam_v) on "
          + "DISK, the HOST tier is " + Footprint.size(12345) + " short"), why);
    } finally {
      mm.setBudget(Tier.HOST, budget);
    }

    // traffic of rank 0 (its shard: the embeddings and the first blocks, none of the head): moments 2 S each, the
    // gradient (2 accum + 1) S, the masters 2 S per micro-batch and 2 S by the optimizer
    long s0 = 4 * (n / 4);
    assertEquals(4 * s0 + 5 * s0 + 6 * s0, OffloadPlanner.shardTrafficPerStep(gpt2, 4, 0, 2, all.diskRoles()));
    long head = 4 * dev.athanor.params.ParameterStore.layoutNumel(gpt2.headSpecs()), s3 = 4 * (n - 3 * n / 4);
    assertEquals(4 * s3 + 5 * s3 + 2 * (2 * s3 - head) + 2 * s3, OffloadPlanner.shardTrafficPerStep(gpt2, 4, 3, 2,
        all.diskRoles()), "the last rank gathers the head once per micro-batch");
  }

  /**
   * A ZeRO rank's plan keeps units resident in the HOST room left, as one process's does: under a budget between the
   * whole shard on DISK and its masters in memory, {@code planShard} keeps some (unit, role) pairs in memory, fits, and
   * moves them out of DISK and into HOST (the busiest rank's part); each rank's DISK traffic drops by exactly the resident
   * parts' traffic; {@code plan} prints the per-unit tiers with rank 0's bytes.
   */
  @Test
  void aZeroRanksPlanKeepsUnitsResidentInTheRoomLeft() {
    ModelConfig gpt2 = ModelConfig.presets().get("gpt2");
    OffloadPlanner.Job j = gpt2Job(2);
    Footprint z3 = MemoryCheck.rankFootprint(j, new Layout(4, 1, 1, 3, false), 4);
    var roles = EnumSet.of(dev.athanor.params.Role.MASTER, dev.athanor.params.Role.GRAD, dev.athanor.params.Role.ADAM_M,
        dev.athanor.params.Role.ADAM_V);
    var all = OffloadPlanner.placeShard(j, z3, roles, 3, 4);
    var grads = OffloadPlanner.placeShard(j, z3, EnumSet.complementOf(EnumSet.of(dev.athanor.params.Role.MASTER,
        dev.athanor.params.Role.WEIGHT, dev.athanor.params.Role.GRAD_ACC)), 3, 4);
    dev.athanor.memory.MemoryManager mm = dev.athanor.memory.MemoryManager.global();
    long budget = mm.budgetBytes(Tier.HOST), live = mm.liveBytes(Tier.HOST);
    long room = (grads.bytes(Tier.HOST) + all.bytes(Tier.HOST)) / 2;
    dev.athanor.offload.OffloadPlan p;
    try {
      mm.setBudget(Tier.HOST, live + room);
      p = OffloadPlanner.planShard(j, z3, mm, 3, 4).plan();
    } finally {
      mm.setBudget(Tier.HOST, budget);
    }
    assertEquals(roles, p.diskRoles());
    assertTrue(!p.residentUnits().isEmpty(), "some units resident: " + p.residentUnits());
    long kept = p.bytes(Tier.HOST) - all.bytes(Tier.HOST);
    assertTrue(kept > 0 && p.bytes(Tier.HOST) <= room, "HOST " + p.bytes(Tier.HOST) + " within " + room);
    assertEquals(all.bytes(Tier.DISK) - p.bytes(Tier.DISK), kept, "what leaves DISK is what HOST holds more");
    for (int r = 0; r < 4; r++) {  // each rank saves exactly its parts of the resident units' traffic
      long[] parts = dev.athanor.offload.OffloadPlan.shardUnitElements(gpt2, 4, r);
      var units = dev.athanor.offload.OffloadPlan.units(gpt2);
      long saved = 0;
      for (var e : p.residentUnits().entrySet()) {
        for (int i = 0; i < units.size(); i++) {
          if (!e.getValue().contains(units.get(i).name())) continue;
          long b = 4 * parts[i];
          saved += switch (e.getKey()) {
            case ADAM_M, ADAM_V -> 2 * b;
            case GRAD -> 5 * b;
            default -> (units.get(i).name().equals("head") ? 4 : 6) * b;
          };
        }
      }
      assertEquals(OffloadPlanner.shardTrafficPerStep(gpt2, 4, r, 2, roles) - saved,
          OffloadPlanner.shardTrafficPerStep(gpt2, 4, r, 2, roles, p.residentUnits()), "rank " + r + "'s DISK traffic");
    }
    String printed = runPlan("--mem-host", Long.toString(live + room), "--accum", "2");
    assertTrue(printed.contains("per unit, rank 0's part of its shard") && printed.contains("units stays in memory (HOST "
        + "below)"), printed);
  }

  /** {@code plan --dp 4 --zero 3 --offload auto} prints the rank's shard roles on DISK and their traffic, or the shortfall. */
  @Test
  void planPrintsAZeroThreeRanksShardRoles() {
    ModelConfig gpt2 = ModelConfig.presets().get("gpt2");
    OffloadPlanner.Job j = gpt2Job(1);
    Footprint z3 = MemoryCheck.rankFootprint(j, new Layout(4, 1, 1, 3, false), 4);
    var all = OffloadPlanner.placeShard(j, z3, EnumSet.allOf(dev.athanor.params.Role.class).stream()
        .filter(r -> dev.athanor.offload.OffloadPlan.ROLES.contains(r)).collect(java.util.stream.Collectors.toSet()), 3, 4);
    long live = dev.athanor.memory.MemoryManager.global().liveBytes(Tier.HOST);
    String fits = runPlan("--mem-host", Long.toString(live + all.bytes(Tier.HOST) + (1 << 20)));
    assertTrue(fits.contains("shard roles: master DISK, grad DISK, adam_m DISK, adam_v DISK"), fits);
    assertTrue(fits.contains("DISK traffic per step (busiest rank): " + Footprint.size(OffloadPlanner.shardTrafficPerStep(gpt2, 4,
        1, all.diskRoles()))), fits);
    String refused = runPlan("--mem-host", Long.toString(live + all.bytes(Tier.HOST) / 2));
    assertTrue(refused.contains("no offload plan fits this rank") && refused.contains("the HOST tier is"), refused);
  }

  /** GPT-2 small on the CPU, micro-batches of 1 x 128 tokens, {@code accum} per step. */
  private static OffloadPlanner.Job gpt2Job(int accum) {
    TrainConfig tc = new TrainConfig(3, 1, 128, accum, 1e-3f, 1e-3f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
    return new OffloadPlanner.Job(ModelConfig.presets().get("gpt2"), Device.CPU, tc, false, false, false);
  }

  private static String runPlan(String... extra) {
    java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
    java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("plan", "--preset", "gpt2", "--device", "cpu",
        "--batch", "1", "--seq", "128", "--dp", "4", "--zero", "3", "--offload", "auto"));
    args.addAll(java.util.List.of(extra));
    try (java.io.PrintStream ps = new java.io.PrintStream(buf, true, java.nio.charset.StandardCharsets.UTF_8)) {
      Main.run(args.toArray(String[]::new), ps, ps);
    }
    return buf.toString(java.nio.charset.StandardCharsets.UTF_8);
  }
}

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
          && why.contains("under ZeRO only AdamW's moments go to DISK"), why);
    } finally {
      mm.setBudget(Tier.HOST, budget);
    }
    IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> OffloadPlanner.placeShard(j, z1, java.util.Set.of(dev.athanor.params.Role.GRAD)));
    assertTrue(e.getMessage().contains("not grad"), e.getMessage());
  }
}

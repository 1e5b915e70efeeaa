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
}

package dev.athanor.cli;

import dev.athanor.dist.plan.ParallelPlanner.Layout;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import java.util.EnumSet;
import java.util.Set;

/**
 * For the tests of ZeRO with offload in other packages: the HOST budget (a {@code --mem-host} value) under which a
 * rank of a dp × ZeRO run plans both moments of its shard on DISK, from the same rank estimate {@code train} plans with
 * ({@link MemoryCheck#rankFootprint}).
 */
public final class ShardOffloadBudget {
  private ShardOffloadBudget() {}

  /**
   * Half way between the HOST needs of one rank ({@code dp} processes, ZeRO {@code zero}, micro-batches of {@code batch}
   * x {@code seq}, {@code accum} per rank, chunks of {@code chunkBytes}, writing checkpoints or not) with both of its
   * shard's moments on DISK and with only the first: a budget that the first does not fit and the second does, with
   * room either side.
   */
  public static long bothMomentsOnDisk(ModelConfig mc, int batch, int seq, int accum, int dp, int zero, long chunkBytes,
      boolean checkpoints) {
    TrainConfig tc = new TrainConfig(1, batch, seq, accum, 1e-3f, 1e-3f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
    OffloadPlanner.Job job = new OffloadPlanner.Job(mc, Device.CPU, tc, false, false, checkpoints, chunkBytes);
    Footprint rank = MemoryCheck.rankFootprint(job, new Layout(dp, 1, 1, zero, false), dp);
    long both = OffloadPlanner.placeShard(job, rank, EnumSet.of(Role.ADAM_M, Role.ADAM_V)).bytes(Tier.HOST);
    long first = OffloadPlanner.placeShard(job, rank, Set.of(Role.ADAM_M)).bytes(Tier.HOST);
    if (first <= both) {
      throw new IllegalStateException("the second moment's shard does not outweigh its staging: " + first + " vs " + both);
    }
    return (both + first) / 2;
  }

  /**
   * Half way between the HOST needs of one rank of dp × ZeRO 3 (as {@link #bothMomentsOnDisk}) with its whole shard on
   * DISK (masters, gradient, moments) and with its moments only: a budget under which {@code --offload auto} puts the
   * whole shard there.
   */
  public static long wholeZeroThreeShardOnDisk(ModelConfig mc, int batch, int seq, int accum, int dp, long chunkBytes) {
    TrainConfig tc = new TrainConfig(1, batch, seq, accum, 1e-3f, 1e-3f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
    OffloadPlanner.Job job = new OffloadPlanner.Job(mc, Device.CPU, tc, false, false, false, chunkBytes);
    Footprint rank = MemoryCheck.rankFootprint(job, new Layout(dp, 1, 1, 3, false), dp);
    long all = OffloadPlanner.placeShard(job, rank, EnumSet.of(Role.MASTER, Role.GRAD, Role.ADAM_M, Role.ADAM_V), 3, dp)
        .bytes(Tier.HOST);
    long moments = OffloadPlanner.placeShard(job, rank, EnumSet.of(Role.ADAM_M, Role.ADAM_V), 3, dp).bytes(Tier.HOST);
    if (moments <= all) throw new IllegalStateException("the shard's masters and gradient do not outweigh their buffers");
    return (all + moments) / 2;
  }

  /**
   * The HOST bytes a rank of dp × ZeRO {@code zero} (as {@link #bothMomentsOnDisk}, without checkpoints) plans with its
   * shard of {@code roles} on DISK but the units {@code resident} names per role in memory.
   */
  public static long hostBytes(ModelConfig mc, int batch, int seq, int accum, int dp, int zero, long chunkBytes,
      Set<Role> roles, java.util.Map<Role, Set<String>> resident) {
    TrainConfig tc = new TrainConfig(1, batch, seq, accum, 1e-3f, 1e-3f, 0, Schedule.CONSTANT, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 1);
    OffloadPlanner.Job job = new OffloadPlanner.Job(mc, Device.CPU, tc, false, false, false, chunkBytes);
    Footprint rank = MemoryCheck.rankFootprint(job, new Layout(dp, 1, 1, zero, false), dp);
    return OffloadPlanner.placeShard(job, rank, roles, zero, dp, resident).bytes(Tier.HOST);
  }
}

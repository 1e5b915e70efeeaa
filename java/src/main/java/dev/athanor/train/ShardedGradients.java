package dev.athanor.train;

import dev.athanor.offload.UnitFiles;
import dev.athanor.params.Range;
import dev.athanor.tensor.Tensor;

/**
 * ZeRO 2's and 3's step gradient as the {@link Trainer} sees it when it is formed unit by unit: this replica keeps only
 * its shard of the step's gradient; something among the model's hooks (e.g. {@code dev.athanor.dist.UnitGradientFold})
 * forms each unit's micro-batch gradient in a window and folds it into the owners' gradient shards as soon as the
 * unit's backward is done, so no whole-model gradient exists. The optimizer updates the shard from it.
 */
public interface ShardedGradients {
  /** This replica's part of the flat parameters. */
  Range shard();

  /**
   * The step's gradient of the shard (F32, 1-D, element 0 at {@code shard().start()}; owned by this object), or null
   * when it is on DISK ({@link #shardFiles()} holds {@link dev.athanor.params.Role#GRAD}).
   */
  Tensor gradient();

  /**
   * The shard's roles kept on DISK (ZeRO 3 with offload: {@link dev.athanor.params.Role#GRAD} and/or {@link
   * dev.athanor.params.Role#MASTER}) in files of {@link #shard()}'s range (owned by this object), or null when they are
   * all in memory. The optimizer streams them chunk by chunk.
   */
  default UnitFiles shardFiles() {
    return null;
  }

  /** Waits until what the micro-batches wrote of the shard (on DISK) is there; nothing when it is in memory. */
  default void flush() {}

  /**
   * The trainer starts micro-batch {@code index} (0-based) of a step: the first one's unit gradients overwrite the
   * shard's gradient, later ones are added to it.
   */
  void beginMicroBatch(int index);

  /** Forgets a step that failed part-way: frees every window still mapped (its transfers are over). */
  void discard();
}

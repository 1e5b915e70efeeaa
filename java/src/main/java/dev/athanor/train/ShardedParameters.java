package dev.athanor.train;

import dev.athanor.params.Range;
import dev.athanor.tensor.Tensor;

/**
 * ZeRO stage 3 as the {@link Trainer} sees it: this replica keeps only its shard of the flat parameters' masters and
 * of the step's gradient; something among the model's hooks (e.g. {@code dev.athanor.dist.ShardedWeights}) gathers each
 * unit's weights from the replicas before it runs and frees them after, and folds each unit's micro-batch gradient into
 * the owners' gradient shards as soon as the unit's backward is done ({@link ShardedGradients}). The optimizer then
 * updates the shard's masters in place ({@link AdamW#AdamW(dev.athanor.params.ParameterStore, Range, Tensor)}); the
 * next forward gathers them again.
 */
public interface ShardedParameters extends ShardedGradients {
  /**
   * The shard's masters (F32, 1-D, element 0 at {@code shard().start()}; owned by this object), or null when they are
   * on DISK ({@link #shardFiles()} holds {@link dev.athanor.params.Role#MASTER}).
   */
  Tensor masters();
}

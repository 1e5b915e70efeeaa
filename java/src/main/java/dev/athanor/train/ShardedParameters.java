package dev.athanor.train;

import dev.athanor.params.Range;
import dev.athanor.tensor.Tensor;

/**
 * ZeRO stage 3 as the {@link Trainer} sees it: this replica keeps only its shard of the flat parameters' masters and
 * of the step's gradient; something among the model's hooks (e.g. {@code dev.athanor.dist.ShardedWeights}) gathers each
 * unit's weights from the replicas before it runs and frees them after, and folds each unit's micro-batch gradient into
 * the owners' gradient shards as soon as the unit's backward is done. The optimizer then updates the shard's masters in
 * place ({@link AdamW#AdamW(dev.athanor.params.ParameterStore, Range, Tensor)}); the next forward gathers them again.
 */
public interface ShardedParameters {
  /** This replica's part of the flat parameters. */
  Range shard();

  /** The shard's masters (F32, 1-D, element 0 at {@code shard().start()}; owned by this object). */
  Tensor masters();

  /** The step's gradient of the shard (F32, 1-D, as {@link #masters()}; owned by this object). */
  Tensor gradient();

  /**
   * The trainer starts micro-batch {@code index} (0-based) of a step: the first one's unit gradients overwrite the
   * shard's gradient, later ones are added to it.
   */
  void beginMicroBatch(int index);

  /** Forgets a step that failed part-way: frees every gathered window (its transfers are over). */
  void discard();
}

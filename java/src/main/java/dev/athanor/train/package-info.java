/**
 * Training: {@link dev.athanor.train.TrainConfig} (hyperparameters and the learning-rate schedule),
 * {@link dev.athanor.train.AdamW} (FP32 moments in the parameter store, one fused kernel call per tensor of a
 * range, decay on matrices only) and {@link dev.athanor.train.Trainer} (one optimizer step in explicit phases:
 * micro-batches whose gradients are each formed alone and then added once, gradient reduction across replicas
 * ({@link dev.athanor.train.GradientReducer}), global-norm clipping from fixed-order partial sums, the update).
 * The trainer never applies a partial update: a non-finite loss or gradient norm throws before the optimizer
 * runs, and {@link dev.athanor.train.Trainer#consistentState()} always names the step and data-loader position
 * that match the parameters, which is what an exception save writes.
 */
package dev.athanor.train;

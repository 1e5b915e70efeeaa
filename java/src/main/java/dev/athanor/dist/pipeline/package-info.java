/**
 * Pipeline parallelism: a model cut into contiguous stages ({@link dev.athanor.dist.pipeline.PipelineLayout}), one per
 * process of a pipeline group, trained with the 1F1B schedule ({@link dev.athanor.dist.pipeline.OneFOneB}) by {@link
 * dev.athanor.dist.pipeline.PipelineStage}, bit for bit as one process with as many accumulated micro-batches.
 */
package dev.athanor.dist.pipeline;

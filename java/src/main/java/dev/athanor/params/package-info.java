/**
 * The parameter store: a model's (or a pipeline stage's) parameters in flat buffers, one per
 * {@link dev.athanor.params.Role} (compute weights, FP32 masters, micro-batch gradients, accumulated gradients,
 * AdamW moments), all with one layout. Each parameter sits at a fixed, aligned element offset; parameters are
 * grouped into {@link dev.athanor.params.Unit}s (embeddings, blocks, head) that are contiguous
 * {@link dev.athanor.params.Range}s. A range is what sharding (ZeRO) and offload cut, what the optimizer updates
 * and what the gradient norm sums in fixed-size chunks. Each role has a {@link dev.athanor.params.Placement} (a
 * device and tier) that can change while the model lives.
 */
package dev.athanor.params;

/**
 * Generation: {@link dev.athanor.infer.Generator} (prompts grouped by length into batches, one prefill
 * forward, then one cached forward per new token, streaming each token to a {@link
 * dev.athanor.infer.TokenListener}) and {@link dev.athanor.infer.Sampler} (greedy, temperature, top-k, top-p,
 * seeded; the sample op runs where the logits are, so on CUDA only token ids reach the host).
 */
package dev.athanor.infer;

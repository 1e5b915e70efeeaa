/**
 * Decoder-only transformers of the GPT-2 and Llama families, written the explicit way (llm.c's).
 *
 * <p>{@link dev.athanor.nn.ModelConfig} is the architecture (a record; Hugging Face names and layouts for
 * every parameter come from {@link dev.athanor.nn.ModelConfig#parameterSpecs()}). {@link
 * dev.athanor.nn.Parameters} holds, per parameter, the FP32 master, the compute-dtype copy the kernels read
 * (the master itself on the CPU; BF16 on CUDA) and the FP32 gradient. {@link dev.athanor.nn.Transformer}
 * runs one block at a time: each block's forward names every activation its backward needs as a buffer of
 * {@code Workspace}, allocated once per (batch, seq) shape, so lifetimes and the execution order are known
 * before a step runs (what offload planning and recomputation build on: with {@code setRecompute(true)} one
 * block's buffers are shared and refilled from the saved block input just before that block's backward).
 * Weight layouts stay as Hugging Face stores them (GPT-2's {@code Conv1D} (in, out), Llama's {@code nn.Linear}
 * (out, in)); the GEMM's transpose flags absorb the difference, so loading and saving never transposes.
 *
 * <p>Inference ({@link dev.athanor.nn.KvCache}): the key/value projection GEMMs write straight into the
 * cache's (B, capacity, KV, D) buffers through strided output views, attention reads all cached positions
 * with bottom-right causal alignment, and only the last position of each sequence goes through the head.
 * Step buffers are kept per step shape, so decoding allocates nothing per token.
 */
package dev.athanor.nn;

/**
 * Decoder-only transformers of the GPT-2 and Llama families, written the explicit way (llm.c's).
 *
 * <p>{@link dev.athanor.nn.ModelConfig} is the architecture (a record; Hugging Face names and layouts for every
 * parameter, grouped into units: the embeddings, one per block, the head). The parameters live in one
 * {@link dev.athanor.params.ParameterStore}: flat buffers per role (compute weights, FP32 masters, gradients,
 * optimizer moments), each parameter a named view. {@link dev.athanor.nn.Transformer} runs a whole model or one
 * {@link dev.athanor.nn.Stage} (a contiguous range of blocks, with or without the embeddings and the head, as a
 * pipeline stage runs it). One block implementation per family ({@code Gpt2Block}, {@code LlamaBlock}) holds its
 * weights and gradients as typed fields resolved once from the store, and serves training forward, training
 * backward and cached decoding. Each block's forward names every activation its backward needs as a buffer of
 * {@link dev.athanor.nn.BlockActs}, allocated once per (batch, seq) shape, so lifetimes and the execution order
 * are known before a step runs (what offload planning and recomputation build on: with
 * {@code setRecompute(true)} one block's buffers are shared and refilled from the saved block input just before
 * that block's backward). {@link dev.athanor.nn.BlockHooks} are called at every unit boundary in execution order:
 * the seams offload, sharded and pipelined training plug into. Weight layouts stay as Hugging Face stores them
 * (GPT-2's {@code Conv1D} (in, out), Llama's {@code nn.Linear} (out, in)); the GEMM's transpose flags absorb the
 * difference, so loading and saving never transposes.
 *
 * <p>Inference ({@link dev.athanor.nn.KvCache}): the block's new keys and values are copied into the cache's
 * (B, capacity, KV, D) buffers, attention reads all cached positions with bottom-right causal alignment, and only
 * the last position of each sequence goes through the head. Step buffers are kept per step shape, so decoding
 * allocates nothing per token.
 */
package dev.athanor.nn;

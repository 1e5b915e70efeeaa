/**
 * Hugging Face model directories: {@code config.json} to and from {@link dev.athanor.nn.ModelConfig}
 * ({@link dev.athanor.io.hf.HfConfig}), and weights ({@link dev.athanor.io.hf.HfModelDir}) from a single
 * {@code model.safetensors} or a sharded index, accepting the names of files as published on the hub (GPT-2
 * without the {@code transformer.} prefix, attention-mask buffers, RoPE caches) as well as what
 * {@code save_pretrained} writes today.
 */
package dev.athanor.io.hf;

/**
 * Tokenizers: text to token ids and back.
 *
 * <ul>
 *   <li>{@link dev.athanor.io.tokenizer.Tokenizer}: the interface every model uses; {@link
 *       dev.athanor.io.tokenizer.StreamDecoder} turns generated ids into text without splitting characters.
 *   <li>{@link dev.athanor.io.tokenizer.Gpt2Tokenizer}: GPT-2's r50k_base through JTokkit.
 *   <li>{@link dev.athanor.io.tokenizer.HfTokenizer}: BPE tokenizers read from a Hugging Face
 *       {@code tokenizer.json}, byte-level (GPT-2, Llama 3, Qwen) or SentencePiece-style (Llama 2, Mistral).
 *   <li>{@link dev.athanor.io.tokenizer.Tokenizers#forModelDir}: the tokenizer of a model directory.
 * </ul>
 */
package dev.athanor.io.tokenizer;

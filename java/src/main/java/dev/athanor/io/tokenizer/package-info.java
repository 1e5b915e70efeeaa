/**
 * Tokenizers: text to token ids and back.
 *
 * <ul>
 *   <li>{@link dev.athanor.io.tokenizer.Tokenizer}: the interface every model uses; {@link
 *       dev.athanor.io.tokenizer.StreamDecoder} turns generated ids into text as they come, decoded in the context of
 *       the prompt and without splitting characters.
 *   <li>{@link dev.athanor.io.tokenizer.Gpt2Tokenizer}: GPT-2's r50k_base through JTokkit.
 *   <li>{@link dev.athanor.io.tokenizer.HfTokenizer}: any Hugging Face {@code tokenizer.json}, run by Hugging Face's
 *       own tokenizers library (Rust, through DJL's JNI binding), so it behaves exactly as in Python.
 *   <li>{@link dev.athanor.io.tokenizer.Tokenizers#forModelDir}: the tokenizer of a model directory.
 * </ul>
 */
package dev.athanor.io.tokenizer;

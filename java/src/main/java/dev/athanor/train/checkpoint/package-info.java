/**
 * Checkpoints that survive crashes and resume exactly.
 *
 * <p>Format: {@code step-NNNNNNNN/} with {@code model.safetensors} (FP32 masters by Hugging Face name),
 * {@code optimizer.safetensors} ({@code m.<name>}, {@code v.<name>}) and {@code manifest.json} (format and
 * library versions, run id, next step, AdamW step, model and training configs, data-loader state, size and CRC32C
 * of every file, and the CRC32C of the manifest itself). Training draws no random numbers after initialization and shuffling is a pure function of
 * (seed, epoch), so the loader state is the whole RNG state. A run of several processes writes format version 3
 * instead: a {@code rank-<r>-of-<N>.safetensors} per rank with the pieces it owns, and a manifest of the global tensors
 * and every piece ({@code Shards}); the ranks write in parallel into one temporary
 * directory, then after a barrier rank 0 writes the manifest and renames it.
 *
 * <p>Write protocol: temporary directory, every file and the directory fsynced, atomic rename, parent
 * fsynced, then rotation of the run's own checkpoints only; verification on load (the manifest's checksum, sizes,
 * checksums, every field the restore needs). The step
 * loop pays for a snapshot into reused host buffers; one background thread writes, one write in flight.
 * Exactness rests on the CPU kernels being deterministic (bit-identical for any thread count, for a
 * fixed ISA).
 */
package dev.athanor.train.checkpoint;

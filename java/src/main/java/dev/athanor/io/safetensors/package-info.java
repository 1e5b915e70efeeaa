/**
 * The safetensors format: a little-endian header length, a JSON header of names, dtypes, shapes and byte
 * ranges, then the data. {@link dev.athanor.io.safetensors.SafetensorsFile} validates the whole header before
 * any read and reads straight into tensors' native memory; {@link dev.athanor.io.safetensors.SafetensorsWriter}
 * writes atomically (temporary file, fsync, rename).
 */
package dev.athanor.io.safetensors;

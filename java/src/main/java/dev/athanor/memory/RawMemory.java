package dev.athanor.memory;

import dev.athanor.runtime.Stream;

/**
 * The native calls behind a {@link CachingAllocator}: allocate and free memory, and mark the end of a stream's
 * work so a freed block is not reused before that work has finished. {@link NativeMemory} has the real ones
 * (cudaMalloc, cudaHostAlloc, CUDA events); tests use a fake to check the allocator's policy on the CPU.
 */
interface RawMemory {
  /**
   * Allocates {@code bytes} natively and returns the address.
   *
   * @throws dev.athanor.runtime.NativeException with status OOM when the memory is exhausted (the allocator then
   *     empties its cache and retries once); any other failure propagates
   */
  long allocate(long bytes);

  void free(long address);

  /**
   * A marker recorded at the current end of {@code stream}'s work, or null when there is nothing to wait for (a
   * CPU stream, a closed stream, whose work has finished).
   */
  Object record(Stream stream);

  /** Whether the work before {@code marker} has finished (never blocks). */
  boolean isComplete(Object marker);

  /** Gives a marker back (it may be reused by {@link #record}). */
  void release(Object marker);

  /** Waits for all work that may use this memory (before the cache is freed). */
  void synchronize();

  /** Whether allocations are page-locked host memory (for {@link Storage#isPinned()}). */
  boolean pinned();

  /** Extra words for a failure message, e.g. "; the driver reports 1.2 GiB free of 80 GiB" ("" when none). */
  default String pressure() {
    return "";
  }
}

package dev.athanor.offload;

import dev.athanor.tensor.Tensor;

/**
 * The copies an optimizer on the host makes between a device's memory and host staging slots, ordered with the
 * device's compute stream: a unit's gradient to the host after the computation that formed it, and the unit's updated
 * weights back to the device before the computation that reads them. Each copy returns a ticket at once; {@link
 * #await} blocks the host until that copy has run, after which the host may read the slot a copy to the host filled,
 * or overwrite the slot a copy to the device read.
 *
 * <p>{@link StreamCopies} is the implementation: a copy stream and events (on CUDA truly asynchronous; on the CPU every
 * copy has run when it returns). Tests drive the same callers with copies that run only when awaited (by the host, or
 * by the compute stream through {@link #computeWaits}), which proves the callers never touch a slot before its copy
 * has run, nor let the computation read weights before their copy has run. Implementations are safe for two threads:
 * the one computing and one worker enqueueing a deferred update's copies.
 */
public interface UnitCopies extends AutoCloseable {
  /**
   * Enqueues a copy of {@code src} (the device's memory) into {@code dst} (host memory; contiguous, same shape and dtype)
   * after the work queued on the compute stream so far. The host must not read {@code dst} before {@link #await}.
   */
  long toHost(Tensor dst, Tensor src);

  /**
   * Enqueues a copy of {@code src} (host memory) into {@code dst} (the device's memory) after the work queued on the
   * compute stream so far; work queued on the compute stream afterwards sees it. The host must not modify {@code src}
   * before {@link #await}.
   */
  long toDevice(Tensor dst, Tensor src);

  /**
   * The copies enqueued from now on run after the work queued on the calling thread's compute stream so far (what a
   * deferred update's copies, enqueued later from another thread by {@link #queueToHost} and {@link #queueToDevice},
   * are ordered behind: the backward that formed the gradients and last read the weights).
   */
  void afterCompute();

  /**
   * Enqueues a copy of {@code src} (the device's memory) into {@code dst} (host memory) behind the copies enqueued so
   * far, with no new ordering with the compute stream (see {@link #afterCompute}): callable from a thread other than
   * the one computing. The host must not read {@code dst} before {@link #await}.
   */
  long queueToHost(Tensor dst, Tensor src);

  /**
   * Enqueues a copy of {@code src} (host memory) into {@code dst} (the device's memory) behind the copies enqueued so
   * far, with no new ordering with the compute stream: the computation that reads {@code dst} must first {@link
   * #computeWaits} for it. Callable from a thread other than the one computing. The host must not modify {@code src}
   * before {@link #await}.
   */
  long queueToDevice(Tensor dst, Tensor src);

  /**
   * Work queued on the calling thread's compute stream from now on sees the copy of {@code ticket} (on a device the
   * host does not block; nothing when that copy was awaited already).
   */
  void computeWaits(long ticket);

  /** Blocks until the copy of {@code ticket} has run (at once when it has, or was awaited before). */
  void await(long ticket);

  /** Bytes copied to the host so far. */
  long bytesToHost();

  /** Bytes copied to the device so far. */
  long bytesToDevice();

  /** Waits for every copy enqueued and frees what the copies hold (streams, events); idempotent. */
  @Override
  void close();
}

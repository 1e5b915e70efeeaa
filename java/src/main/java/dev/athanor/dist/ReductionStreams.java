package dev.athanor.dist;

/**
 * The stream operations of a {@link StreamOverlappedReduction}, apart so that a test can record them: the compute
 * stream is the calling thread's current one for the device; the communication stream is this object's. {@link
 * CommunicationStream} implements them with CUDA streams and events. Every call is made by the training thread; none
 * blocks the host (the waits are on the device).
 */
interface ReductionStreams extends AutoCloseable {
  /** The communication stream waits for the work enqueued on the compute stream so far (an event recorded there). */
  void commWaitsForCompute();

  /**
   * Runs {@code work} on the calling thread with the communication stream current, so that the ops and collectives it
   * enqueues go on that stream, in order after the waits before.
   */
  void onComm(Runnable work);

  /** The compute stream waits for the work enqueued on the communication stream so far (an event recorded there). */
  void computeWaitsForComm();

  /**
   * Nanoseconds the compute stream stood waiting at the {@link #computeWaitsForComm} calls so far (0 where nothing
   * measures it); may block until the communication stream's last work has run.
   */
  long waitedNanos();

  /** Waits for the communication stream and releases it. */
  @Override
  void close();
}

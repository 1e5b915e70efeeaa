package dev.athanor.offload;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Running totals of an offloaded job's DISK traffic and of the time its computation waited for it: bytes read from
 * DISK into host memory, bytes written from host memory to DISK, the time the I/O threads spent transferring, and the
 * time the computing thread stalled waiting for a transfer. Updated from the I/O threads and the computing thread;
 * {@link #snapshot()} gives consistent-enough totals to subtract per step.
 */
public final class TransferStats {
  private final AtomicLong read = new AtomicLong();
  private final AtomicLong written = new AtomicLong();
  private final AtomicLong ioNanos = new AtomicLong();
  private final AtomicLong stallNanos = new AtomicLong();

  void transferred(boolean write, long bytes, long nanos) {
    (write ? written : read).addAndGet(bytes);
    ioNanos.addAndGet(nanos);
  }

  void stalled(long nanos) {
    stallNanos.addAndGet(nanos);
  }

  /** The totals so far. */
  public Snapshot snapshot() {
    return new Snapshot(read.get(), written.get(), ioNanos.get(), stallNanos.get());
  }

  /**
   * Totals at one moment, or the difference of two (one step's traffic).
   *
   * @param diskToHost bytes read from DISK into host memory
   * @param hostToDisk bytes written from host memory to DISK
   * @param ioNanos time the I/O threads spent in transfers (summed over threads)
   * @param stallNanos time the computing thread waited for transfers
   */
  public record Snapshot(long diskToHost, long hostToDisk, long ioNanos, long stallNanos) {
    public static final Snapshot ZERO = new Snapshot(0, 0, 0, 0);

    /** This minus {@code earlier}. */
    public Snapshot minus(Snapshot earlier) {
      return new Snapshot(diskToHost - earlier.diskToHost, hostToDisk - earlier.hostToDisk, ioNanos - earlier.ioNanos,
          stallNanos - earlier.stallNanos);
    }

    /** This plus {@code other}. */
    public Snapshot plus(Snapshot other) {
      return new Snapshot(diskToHost + other.diskToHost, hostToDisk + other.hostToDisk, ioNanos + other.ioNanos,
          stallNanos + other.stallNanos);
    }

    /**
     * The share of transfer time hidden behind computation: 1 - stall / transfer time, within [0, 1]; 1 when nothing
     * was transferred.
     */
    public double overlap() {
      if (ioNanos <= 0) return 1.0;
      return Math.max(0.0, Math.min(1.0, 1.0 - (double) stallNanos / ioNanos));
    }
  }
}

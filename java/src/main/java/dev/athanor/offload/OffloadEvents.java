package dev.athanor.offload;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/**
 * JDK Flight Recorder events of the offload: one per transfer between host memory and an offload file (on the I/O
 * thread that ran it) and one per wait of the computing thread for a transfer. A recording
 * ({@code -XX:StartFlightRecording} or {@code jcmd PID JFR.start}) shows them on a timeline next to the GC and the
 * threads; they cost nothing when no recording is on.
 */
final class OffloadEvents {
  private OffloadEvents() {}

  /**
   * Waits for {@code f} (errors propagate, see {@link ChunkStreamer#await}); when it was not done yet, the wait counts
   * as a stall in {@code stats} and is recorded as a {@link Stall} event naming {@code unit}, {@code role} and
   * {@code reason}.
   */
  static void awaitStalling(java.util.concurrent.Future<?> f, TransferStats stats, String unit, String role, String reason) {
    if (f == null) return;
    if (f.isDone()) {
      ChunkStreamer.await(f);
      return;
    }
    Stall ev = new Stall();
    ev.begin();
    long t0 = System.nanoTime();
    try {
      ChunkStreamer.await(f);
    } finally {
      stats.stalled(System.nanoTime() - t0);
      if (ev.shouldCommit()) {
        ev.unit = unit;
        ev.role = role;
        ev.reason = reason;
        ev.commit();
      }
    }
  }

  @Name("dev.athanor.offload.Transfer")
  @Label("Offload Transfer")
  @Category({"Athanor", "Offload"})
  @Description("Bytes moved between host memory and an offload file on the DISK tier")
  static final class Transfer extends Event {
    @Label("Unit") String unit;
    @Label("Role") String role;
    @Label("Direction") String direction;
    @Label("Bytes") @DataAmount long bytes;
  }

  @Name("dev.athanor.offload.Stall")
  @Label("Offload Stall")
  @Category({"Athanor", "Offload"})
  @Description("The computing thread waited for an offload transfer")
  static final class Stall extends Event {
    @Label("Unit") String unit;
    @Label("Role") String role;
    @Label("Waiting For") String reason;
  }
}

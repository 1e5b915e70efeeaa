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

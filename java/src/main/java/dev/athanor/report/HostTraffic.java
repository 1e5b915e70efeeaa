package dev.athanor.report;

import dev.athanor.offload.HostTransfers;

/**
 * The figures of the optimizer on the host (CUDA {@code --offload}: {@link dev.athanor.offload.HostOffload}) that
 * {@code train} adds to each step's {@code --log} line and to the summary line: bytes copied from host memory to the
 * device ({@code h2d_bytes}: the units' new compute weights), from the device to host memory ({@code d2h_bytes}: the
 * units' gradients), and the time the training thread waited for the host's update and those copies ({@code
 * host_wait_ms}: the forward waiting for a unit's new weights, the copies still running). A step's deferred update
 * runs behind it, so its copies to the device count partly in the next step's line; the lines add up to the summary.
 *
 * @param h2dBytes bytes copied from host memory to the device
 * @param d2hBytes bytes copied from the device to host memory
 * @param waitMs milliseconds the training thread waited (resolution 1 microsecond)
 */
public record HostTraffic(long h2dBytes, long d2hBytes, double waitMs) {
  /** The figures of {@code moved}, a difference of the optimizer's totals (a step's, or a run's). */
  public static HostTraffic of(HostTransfers moved) {
    return new HostTraffic(moved.hostToDevice(), moved.deviceToHost(), StepTraffic.millis(moved.waitNanos()));
  }

  /** {@code line} (one JSON object, as a step or summary line) with these members added before its closing brace. */
  public String appendTo(String line) {
    return line.substring(0, line.length() - 1) + ",\"h2d_bytes\":" + h2dBytes + ",\"d2h_bytes\":" + d2hBytes
        + ",\"host_wait_ms\":" + waitMs + "}";
  }
}

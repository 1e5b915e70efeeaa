package dev.athanor.offload;

/**
 * Totals of an optimizer on the host ({@link HostOffload}) at one moment, or the difference of two (one step's): the
 * bytes copied from host memory to the device (the units' new compute weights) and from the device to host memory
 * (the units' gradients), and the time the training thread waited for the optimizer's work: a unit's update and the
 * copy of its weights that a pass needed, or copies to complete.
 *
 * @param hostToDevice bytes copied from host memory to the device
 * @param deviceToHost bytes copied from the device to host memory
 * @param waitNanos nanoseconds the training thread waited
 */
public record HostTransfers(long hostToDevice, long deviceToHost, long waitNanos) {
  public static final HostTransfers ZERO = new HostTransfers(0, 0, 0);

  /** This minus {@code earlier}. */
  public HostTransfers minus(HostTransfers earlier) {
    return new HostTransfers(hostToDevice - earlier.hostToDevice, deviceToHost - earlier.deviceToHost,
        waitNanos - earlier.waitNanos);
  }

  /** This plus {@code other}. */
  public HostTransfers plus(HostTransfers other) {
    return new HostTransfers(hostToDevice + other.hostToDevice, deviceToHost + other.deviceToHost,
        waitNanos + other.waitNanos);
  }
}

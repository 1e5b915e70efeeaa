package dev.athanor.runtime;

/**
 * The experimental-CUDA switch: {@code ATHANOR_CUDA_HOPPER=1} in the environment (read once) turns on the CUDA paths
 * that no GPU check has run yet (the fused GEMM epilogues, the wgmma kernels the native library picks under the same
 * variable, the training step without host synchronisation). Off by default.
 */
public final class HopperSwitch {
  private static final boolean ON = "1".equals(System.getenv("ATHANOR_CUDA_HOPPER"));

  private HopperSwitch() {}

  /** Whether {@code ATHANOR_CUDA_HOPPER=1} is set. */
  public static boolean on() {
    return ON;
  }
}

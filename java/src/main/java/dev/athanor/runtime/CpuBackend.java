package dev.athanor.runtime;

/**
 * The native CPU kernels ({@code ath_cpu_*}): run on the library's shared thread pool (sized by
 * default to the CPUs of the process's affinity mask), with results bit-identical for any thread
 * count and run to run (for a fixed ISA): reductions sum fixed-size chunks in a fixed order, and
 * accumulated gradients receive their contribution formed first and added once. Every op has
 * finished when its method returns.
 */
public final class CpuBackend implements Backend {
  /** The one CPU backend. */
  public static final CpuBackend INSTANCE = new CpuBackend();

  private CpuBackend() {}

  @Override
  public Device device() {
    return Device.CPU;
  }

  @Override
  public int nativeDevice() {
    return NativeKernels.CPU;
  }

  @Override
  public long stream() {
    return 0;
  }

  @Override
  public void synchronize() {
    // CPU ops are synchronous.
  }

  @Override
  public String toString() {
    return "CpuBackend[" + NativeRuntime.cpuIsa() + ", " + NativeRuntime.cpuThreads() + " threads]";
  }
}

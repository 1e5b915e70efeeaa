package dev.athanor.ops;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.provider.Arguments;

/**
 * Shared test data for the op tests: the devices every test runs on (CUDA ones skip with the
 * reason when CUDA is unavailable), random data, upload and read-back, per-dtype tolerances and
 * the CPU ISAs the kernels can be forced to.
 */
final class Fixtures {
  private Fixtures() {}

  /** The floating dtypes every op is tested in. */
  static final DType[] FLOATS = {DType.F32, DType.BF16, DType.F16};

  /** The devices tests are parameterized over; CUDA is always listed and skipped when absent. */
  static Stream<Device> devices() {
    return Stream.of(Device.CPU, Device.cuda(0));
  }

  /** Every device with every floating dtype. */
  static Stream<Arguments> devicesAndFloats() {
    return devices().flatMap(d -> Stream.of(FLOATS).map(t -> Arguments.of(d, t)));
  }

  /** Skips the test (with CUDA's own reason) when the device is CUDA and CUDA is unavailable. */
  static void assumeDevice(Device device) {
    if (device.isCuda()) {
      assumeTrue(Cuda.isAvailable(), "CUDA unavailable: " + Cuda.unavailableReason());
      assumeTrue(device.index() < Cuda.deviceCount(), device + " is not present");
    }
  }

  static float[] uniform(Random r, int n, double lo, double hi) {
    float[] x = new float[n];
    for (int i = 0; i < n; i++) x[i] = (float) (lo + (hi - lo) * r.nextDouble());
    return x;
  }

  static float[] normal(Random r, int n, double std) {
    float[] x = new float[n];
    for (int i = 0; i < n; i++) x[i] = (float) (r.nextGaussian() * std);
    return x;
  }

  /** Integers in [lo, hi], as floats. */
  static float[] ints(Random r, int n, int lo, int hi) {
    float[] x = new float[n];
    for (int i = 0; i < n; i++) x[i] = lo + r.nextInt(hi - lo + 1);
    return x;
  }

  /** Uploads data rounded to dtype onto device. */
  static Tensor upload(float[] data, DType dtype, Device device, long... shape) {
    return Tensor.fromFloats(data, dtype, device, shape);
  }

  static Tensor uploadInts(int[] data, Device device, long... shape) {
    return Tensor.fromInts(data, device, shape);
  }

  /** The tensor's values as doubles (BF16/F16 widened exactly); synchronizes for CUDA tensors. */
  static double[] read(Tensor t) {
    return Check.toDouble(t.toFloatArray());
  }

  /** A view's values in logical row-major order (copies through contiguous()). */
  static double[] readLogical(Tensor t) {
    try (Tensor c = t.contiguous()) {
      return read(c);
    }
  }

  static float[] nans(int n) {
    float[] x = new float[n];
    java.util.Arrays.fill(x, Float.NaN);
    return x;
  }

  static double rms(double[] x) {
    double s = 0;
    for (double v : x) s += v * v;
    return x.length == 0 ? 0 : Math.sqrt(s / x.length);
  }

  static double maxAbs(double[] x) {
    double m = 0;
    for (double v : x) m = Math.max(m, Math.abs(v));
    return m;
  }

  /** Spacing of the dtype's values at 1.0 (the unit in the last place). */
  static double ulp(DType dtype) {
    return switch (dtype) {
      case F32 -> 0x1p-23;
      case BF16 -> 0x1p-7;
      case F16 -> 0x1p-10;
      default -> throw new IllegalArgumentException(dtype.toString());
    };
  }

  /**
   * Tolerance for an op whose inputs are exact in their dtype, which computes in F32 and rounds its
   * output to the dtype: {@code ulps} units in the last place of the dtype, relative, plus the same
   * amount scaled by {@code scale} (the typical output magnitude) as the absolute floor for values
   * near zero produced by cancellation.
   */
  static Check.Tol tol(DType dtype, double ulps, double scale) {
    double u = ulps * ulp(dtype);
    return new Check.Tol(u * scale, u);
  }

  /**
   * The usual tolerance of a compound op (reductions inside): F32 64 ulps (~7.6e-6), BF16 2 ulps
   * (~1.6e-2), F16 4 ulps (~3.9e-3), relative and scaled by the output's magnitude.
   */
  static Check.Tol compound(DType dtype, double scale) {
    return switch (dtype) {
      case F32 -> tol(dtype, 64, scale);
      case BF16 -> tol(dtype, 2, scale);
      case F16 -> tol(dtype, 4, scale);
      default -> throw new IllegalArgumentException(dtype.toString());
    };
  }

  /** The CPU ISAs this machine supports among avx512, avx2 and scalar (the CPU kernels can be forced to each). */
  static List<String> cpuIsas() {
    String saved = NativeRuntime.cpuIsa();
    List<String> isas = new ArrayList<>();
    try {
      for (String isa : new String[] {"avx512", "avx2", "scalar"}) {
        try {
          NativeRuntime.setCpuIsa(isa);
          isas.add(isa);
        } catch (NativeException e) {
          // not supported by this CPU
        }
      }
    } finally {
      NativeRuntime.setCpuIsa(saved);
    }
    return isas;
  }

  /** Runs body with the CPU kernels forced to isa, restoring the previous choice afterwards. */
  static void withIsa(String isa, Runnable body) {
    String saved = NativeRuntime.cpuIsa();
    NativeRuntime.setCpuIsa(isa);
    try {
      body.run();
    } finally {
      NativeRuntime.setCpuIsa(saved);
    }
  }

  /** The ISAs to run a CPU test under ("native" for a CUDA device: one pass). */
  static List<String> isasFor(Device device) {
    return device.isCuda() ? List.of("native") : cpuIsas();
  }

  /** Runs body under each ISA of {@link #isasFor}. */
  static void forEachIsa(Device device, java.util.function.Consumer<String> body) {
    for (String isa : isasFor(device)) {
      if (device.isCuda()) body.accept(isa);
      else withIsa(isa, () -> body.accept(isa));
    }
  }

  static int[] randomIds(Random r, int n, int vocab) {
    int[] ids = new int[n];
    for (int i = 0; i < n; i++) ids[i] = r.nextInt(vocab);
    return ids;
  }
}

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;

/**
 * The CPU AdamW kernel's rate over N parameters (what the optimizer on the host runs per unit), for sizing
 * bench/gpu/scale/check.sh's runs: F32 params, grads, m and v plus the BF16 copy, random values (not zeros), one untimed
 * update, then REPS timed updates; prints the median seconds, parameters per second and the bytes moved per second
 * (30 bytes per parameter: four F32 reads, three F32 writes, one BF16 write). Run from the repository root:
 *
 *   java --enable-native-access=ALL-UNNAMED -cp java/target/athanor-0.1.0.jar bench/gpu/scale/AdamWRate.java [N] [REPS]
 */
public class AdamWRate {
  public static void main(String[] a) {
    long n = a.length > 0 ? Long.parseLong(a[0]) : 64L << 20;
    int reps = a.length > 1 ? Integer.parseInt(a[1]) : 5;
    try (Tensor p = Tensor.empty(DType.F32, Device.CPU, n); Tensor g = Tensor.empty(DType.F32, Device.CPU, n);
        Tensor m = Tensor.empty(DType.F32, Device.CPU, n); Tensor v = Tensor.empty(DType.F32, Device.CPU, n);
        Tensor low = Tensor.empty(DType.BF16, Device.CPU, n)) {
      Ops.randNormal(p, 1, 0, 0f, 0.02f);
      Ops.randNormal(g, 2, 0, 0f, 0.01f);
      Ops.randNormal(m, 3, 0, 0f, 0.001f);
      Ops.randUniform(v, 4, 0, 1e-8f, 1e-6f);
      Ops.adamw(p, g, m, v, low, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1f, 1);
      double[] s = new double[reps];
      for (int i = 0; i < reps; i++) {
        long t0 = System.nanoTime();
        Ops.adamw(p, g, m, v, low, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1f, i + 2);
        s[i] = (System.nanoTime() - t0) / 1e9;
      }
      double[] sorted = s.clone();
      Arrays.sort(sorted);
      double med = sorted[reps / 2];
      System.out.printf("AdamW over %d parameters, %d cores: median %.4f s of %s; %.3g parameters/s, %.2f GB/s%n", n,
          Runtime.getRuntime().availableProcessors(), med, Arrays.toString(s), n / med, n * 30.0 / med / 1e9);
    }
  }
}

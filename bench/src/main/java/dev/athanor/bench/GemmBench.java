package dev.athanor.bench;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.openblas.global.openblas;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * CPU FP32 GEMM, Athanor ({@link Ops#gemm}, one JNI call into {@code ath_cpu_gemm}) against OpenBLAS
 * ({@code cblas_sgemm}) on the same shapes, the same data and the same thread count (all cores unless
 * {@code threads} says otherwise; both libraries are set to it).
 *
 * <p>{@code shape} is {@code MxNxK:LAYOUT}: C (M, N) = op(A) @ op(B) with op(A) (M, K) and op(B) (K, N),
 * all row-major; LAYOUT {@code NN} stores A as (M, K) and B as (K, N); {@code NT} stores B as (N, K),
 * the layout of a linear layer's weight (out_features, in_features) in the forward pass; {@code TN}
 * stores A as (K, M), as in a weight gradient {@code dW = X^T dY}. FLOPs = 2 M N K per operation; the
 * score is operations per second, so GFLOP/s = score * 2MNK / 1e9 ({@link Report} prints that).
 *
 * <p>Before timing, each trial runs both libraries once on the same inputs and fails if their results
 * differ by more than 1e-4 relative to the largest |C| (FP32 sums of 768..3072 products in different
 * orders differ by ~1e-6): a benchmark of a wrong result is worthless.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx4g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class GemmBench {
  @Param({"512x512x512:NN", "1024x1024x1024:NN", "2048x2048x2048:NN", "4096x3072x768:NN", "4096x768x3072:NN",
      "4096x3072x768:NT", "768x3072x4096:TN"})
  public String shape;

  /** Threads for both libraries; 0 = every available core. */
  @Param({"0"})
  public int threads;

  private Shape s;
  private Tensor a, b, c;
  private FloatPointer pa, pb, pc;

  /** Parsed {@code MxNxK:LAYOUT}. */
  record Shape(int m, int n, int k, boolean transA, boolean transB) {
    static Shape parse(String spec) {
      String[] parts = spec.split(":");
      String[] d = parts[0].split("x");
      if (d.length != 3) throw new IllegalArgumentException("shape '" + spec + "' is not MxNxK[:NN|NT|TN|TT]");
      String layout = parts.length > 1 ? parts[1] : "NN";
      if (!layout.matches("[NT][NT]")) throw new IllegalArgumentException("layout '" + layout + "' is not NN, NT, TN or TT");
      return new Shape(Integer.parseInt(d[0]), Integer.parseInt(d[1]), Integer.parseInt(d[2]),
          layout.charAt(0) == 'T', layout.charAt(1) == 'T');
    }

    double flops() {
      return 2.0 * m * n * k;
    }

    long[] aShape() {
      return transA ? new long[] {k, m} : new long[] {m, k};
    }

    long[] bShape() {
      return transB ? new long[] {n, k} : new long[] {k, n};
    }
  }

  /** FLOPs of one operation for a {@code shape} parameter value (used by {@link Report}). */
  public static double flops(String shape) {
    return Shape.parse(shape).flops();
  }

  /** Sets both libraries to {@code threads} (0: all cores) and returns the count used. */
  static int setThreads(int threads) {
    int n = threads > 0 ? threads : Runtime.getRuntime().availableProcessors();
    NativeRuntime.setCpuThreads(n);
    openblas.blas_set_num_threads(n);
    if (NativeRuntime.cpuThreads() != n || openblas.blas_get_num_threads() != n) {
      throw new IllegalStateException("thread counts differ: athanor " + NativeRuntime.cpuThreads() + ", openblas "
          + openblas.blas_get_num_threads() + ", wanted " + n);
    }
    return n;
  }

  /** n values uniform in [-1, 1) from a fixed seed (random data: zeros can time faster than real data). */
  static float[] uniform(long n, long seed) {
    if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(n + " elements do not fit a Java array");
    SplittableRandom r = new SplittableRandom(seed);
    float[] x = new float[(int) n];
    for (int i = 0; i < x.length; i++) x[i] = (float) (r.nextDouble() * 2 - 1);
    return x;
  }

  @Setup(Level.Trial)
  public void setup() {
    s = Shape.parse(shape);
    setThreads(threads);
    a = Tensor.empty(DType.F32, Device.CPU, s.aShape());
    b = Tensor.empty(DType.F32, Device.CPU, s.bShape());
    c = Tensor.empty(DType.F32, Device.CPU, s.m, s.n);
    float[] ha = uniform(a.numel(), 1), hb = uniform(b.numel(), 2);
    a.copyFrom(ha);
    b.copyFrom(hb);
    pa = new FloatPointer(ha);
    pb = new FloatPointer(hb);
    pc = new FloatPointer((long) s.m * s.n);
    athanor();
    openblas();
    float[] ours = c.toFloatArray();
    float[] ref = new float[ours.length];
    pc.get(ref);
    double maxRef = 0, maxDiff = 0;
    for (int i = 0; i < ref.length; i++) {
      maxRef = Math.max(maxRef, Math.abs(ref[i]));
      double d = Math.abs(ours[i] - ref[i]);
      if (!(d <= maxDiff)) maxDiff = Double.isNaN(d) ? Double.POSITIVE_INFINITY : d;
    }
    if (!(maxDiff <= 1e-4 * maxRef)) {
      throw new IllegalStateException("athanor and OpenBLAS disagree on " + shape + ": max |diff| " + maxDiff
          + " vs max |C| " + maxRef);
    }
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    for (Tensor t : new Tensor[] {a, b, c}) {
      if (t != null) t.close();
    }
    for (FloatPointer p : new FloatPointer[] {pa, pb, pc}) {
      if (p != null) p.close();
    }
  }

  @Benchmark
  public void athanor() {
    Ops.gemm(a, s.transA, b, s.transB, 1f, 0f, null, c);
  }

  @Benchmark
  public void openblas() {
    int lda = s.transA ? s.m : s.k;
    int ldb = s.transB ? s.k : s.n;
    openblas.cblas_sgemm(openblas.CblasRowMajor, s.transA ? openblas.CblasTrans : openblas.CblasNoTrans,
        s.transB ? openblas.CblasTrans : openblas.CblasNoTrans, s.m, s.n, s.k, 1f, pa, lda, pb, ldb, 0f, pc, s.n);
  }
}

package dev.athanor.bench;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.concurrent.TimeUnit;
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
 * CPU scaled dot-product attention through {@link Ops#attention} / {@link Ops#attentionBackward}
 * (one JNI call into {@code ath_cpu_attention_fwd} / {@code _bwd}), all cores.
 *
 * <p>{@code shape} is {@code BxHxTxD[:causal]}: q, k, v, out (B, H, T, D) contiguous, self-attention
 * (Tq = Tk = T, Hq = Hkv = H), scale 1/sqrt(D). FLOPs per forward = 4 B H T T D (two matrix products
 * of 2 B H T T D each), halved when causal; backward = 2.5 x forward (the FlashAttention convention:
 * five T x T x D products instead of two). The score is operations per second; {@link Report} prints
 * GFLOP/s = score * FLOPs / 1e9. There is no peer in this run (OpenBLAS has no attention).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx4g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class AttentionBench {
  @Param({"1x12x1024x64:causal", "1x12x1024x64", "1x8x2048x128:causal"})
  public String shape;

  @Param({"F32"})
  public String dtype;

  /** Threads for the CPU backend; 0 = every available core. */
  @Param({"0"})
  public int threads;

  private boolean causal;
  private float scale;
  private Tensor q, k, v, out, lse, dout, dq, dk, dv;

  /** Parsed {@code BxHxTxD[:causal]}: {b, h, t, d, causal ? 1 : 0}. */
  static long[] parse(String spec) {
    String[] parts = spec.split(":");
    String[] d = parts[0].split("x");
    if (d.length != 4) throw new IllegalArgumentException("shape '" + spec + "' is not BxHxTxD[:causal]");
    boolean causal = parts.length > 1 && parts[1].equals("causal");
    if (parts.length > 1 && !causal) throw new IllegalArgumentException("shape '" + spec + "': only ':causal' may follow");
    return new long[] {Long.parseLong(d[0]), Long.parseLong(d[1]), Long.parseLong(d[2]), Long.parseLong(d[3]),
        causal ? 1 : 0};
  }

  /** FLOPs of one forward ({@code backward == false}) or backward pass for a {@code shape} value. */
  public static double flops(String shape, boolean backward) {
    long[] p = parse(shape);
    double fwd = 4.0 * p[0] * p[1] * p[2] * p[2] * p[3] * (p[4] == 1 ? 0.5 : 1.0);
    return backward ? 2.5 * fwd : fwd;
  }

  @Setup(Level.Trial)
  public void setup() {
    long[] p = parse(shape);
    causal = p[4] == 1;
    scale = (float) (1 / Math.sqrt(p[3]));
    GemmBench.setThreads(threads);
    DType dt = DType.valueOf(dtype);
    long[] dims = {p[0], p[1], p[2], p[3]};
    q = Tensor.empty(dt, Device.CPU, dims);
    k = Tensor.empty(dt, Device.CPU, dims);
    v = Tensor.empty(dt, Device.CPU, dims);
    dout = Tensor.empty(dt, Device.CPU, dims);
    out = Tensor.empty(dt, Device.CPU, dims);
    dq = Tensor.empty(dt, Device.CPU, dims);
    dk = Tensor.empty(dt, Device.CPU, dims);
    dv = Tensor.empty(dt, Device.CPU, dims);
    lse = Tensor.empty(DType.F32, Device.CPU, p[0], p[1], p[2]);
    q.copyFrom(GemmBench.uniform(q.numel(), 1)); // rounded to dtype
    k.copyFrom(GemmBench.uniform(k.numel(), 2));
    v.copyFrom(GemmBench.uniform(v.numel(), 3));
    dout.copyFrom(GemmBench.uniform(dout.numel(), 4));
    forward(); // out and lse for the backward benchmark
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    for (Tensor t : new Tensor[] {q, k, v, out, lse, dout, dq, dk, dv}) {
      if (t != null) t.close();
    }
  }

  @Benchmark
  public void forward() {
    Ops.attention(q, k, v, out, lse, causal, scale);
  }

  @Benchmark
  public void backward() {
    Ops.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, causal, scale);
  }
}

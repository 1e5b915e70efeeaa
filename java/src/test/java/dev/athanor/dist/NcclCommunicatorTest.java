package dev.athanor.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.memory.Tier;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * The NCCL communicator and host staging of CUDA tensors. Without a GPU: the refusals (a CPU device, a missing
 * library). With one (the GPU check): every collective of one rank, NCCL and staged, in both modes and every dtype on
 * awkward sizes, against the single-process communicator on host copies of the same data, bit for bit; skipped with
 * the reason when there is no CUDA device or no NCCL.
 */
class NcclCommunicatorTest {
  private static final Device GPU = Device.cuda(0);
  private static final long[] SIZES = {1, 7, 1000, 100_003};

  @Test
  void refusesADeviceThatIsNotCuda() {
    var e = assertThrows(IllegalArgumentException.class,
        () -> Communicator.nccl(Communicator.single(), Device.CPU, ReduceMode.DETERMINISTIC));
    assertTrue(e.getMessage().contains("cpu") && e.getMessage().contains("not one"), e.getMessage());
  }

  @Test
  void aMissingLibraryFileIsNamed() {
    assumeTrue(!NcclNative.loaded(), "NCCL is already loaded in this JVM (a GPU test ran first)");
    String key = NcclNative.LIBRARY_PATH_PROPERTY, old = System.getProperty(key);
    System.setProperty(key, "/nonexistent/libnccl.so.2");
    try {
      var e = assertThrows(CommunicatorException.class,
          () -> Communicator.nccl(Communicator.single(), Device.cuda(0), ReduceMode.FAST));
      assertTrue(e.getMessage().contains("/nonexistent/libnccl.so.2") && e.getMessage().contains("no such file"), e.getMessage());
    } finally {
      if (old == null) System.clearProperty(key);
      else System.setProperty(key, old);
    }
  }

  @Test
  void versionStrings() {
    assertEquals("2.27.3", NcclNative.versionString(22703));
    assertEquals("2.8.4", NcclNative.versionString(2804));
  }

  @Test
  void ncclCollectivesOfOneRankEqualTheHostCommunicator() {
    assumeTrue(Cuda.isAvailable(), () -> "no CUDA device: " + Cuda.unavailableReason());
    for (ReduceMode mode : ReduceMode.values()) {
      Communicator nccl;
      try {
        nccl = Communicator.nccl(Communicator.single(), GPU, mode);
      } catch (CommunicatorException e) {
        assumeTrue(false, "NCCL not loadable here: " + e.getMessage());
        return;
      }
      try (nccl) {
        assertTrue(nccl.describe().startsWith("NCCL "), nccl.describe());
        checkAll(nccl);
      }
    }
  }

  @Test
  void stagedCollectivesOfOneRankEqualTheHostCommunicator() {
    assumeTrue(Cuda.isAvailable(), () -> "no CUDA device: " + Cuda.unavailableReason());
    try (Communicator staged = Communicator.staged(Communicator.single())) {
      checkAll(staged);
    }
  }

  /** Every collective on CUDA tensors through {@code c} against {@link Communicator#single()} on the host. */
  private static void checkAll(Communicator c) {
    Communicator host = Communicator.single();
    Random rnd = new Random(7);
    for (DType dt : new DType[] {DType.F32, DType.BF16, DType.F16, DType.I32}) {
      for (long n : SIZES) {
        float[] a = random(rnd, n, dt), b = random(rnd, n, dt);
        String what = c.describe() + " " + dt + " n=" + n;
        same(what + " allReduceSum", dt, a, t -> { c.allReduceSum(t); return t; }, t -> { host.allReduceSum(t); return t; });
        same(what + " broadcast", dt, a, t -> { c.broadcast(t, 0); return t; }, t -> t);
        sameInOut(what + " allGather", dt, a, n, (i, o) -> c.allGather(i, o), (i, o) -> host.allGather(i, o));
        sameInOut(what + " allGatherV", dt, a, n, (i, o) -> c.allGatherV(i, o, new long[] {n}),
            (i, o) -> host.allGatherV(i, o, new long[] {n}));
        sameInOut(what + " reduceScatter", dt, a, n, (i, o) -> c.reduceScatter(i, o), (i, o) -> host.reduceScatter(i, o));
        if (dt == DType.F32) {
          for (boolean first : new boolean[] {true, false}) {
            float[] got, want;
            try (Scope s = Scope.open()) {
              Tensor in = Tensor.fromFloats(a, dt, GPU, n), acc = Tensor.fromFloats(b, dt, GPU, n);
              c.reduceScatterAccumulate(in, acc, first);
              Tensor acc2 = Tensor.fromFloats(b, dt, GPU, n);
              c.reduceScatterAccumulateV(in, acc2, new long[] {n}, first);
              got = acc.toFloatArray();
              assertArrayEquals(bits(got), bits(acc2.toFloatArray()), what + " V fold vs fold, first " + first);
              Tensor hin = Tensor.fromFloats(a, dt, Device.CPU, n), hacc = Tensor.fromFloats(b, dt, Device.CPU, n);
              host.reduceScatterAccumulate(hin, hacc, first);
              want = hacc.toFloatArray();
            }
            assertArrayEquals(bits(want), bits(got), what + " reduceScatterAccumulate, first " + first);
          }
        }
      }
    }
    c.barrier();
    // host tensors go to the bootstrap / pass through
    try (Tensor t = Tensor.of(new float[] {1, 2, 3}, 3)) {
      c.allReduceSum(t);
      assertArrayEquals(new float[] {1, 2, 3}, t.toFloatArray());
    }
    // a tensor on the wrong device is named
    if (c instanceof NcclCommunicator) {
      try (Tensor a = Tensor.zeros(DType.F32, GPU, 4); Tensor h = Tensor.zeros(DType.F32, Device.CPU, 4)) {
        var e = assertThrows(IllegalArgumentException.class, () -> c.allGather(a, h));
        assertTrue(e.getMessage().contains("allGather"), e.getMessage());
      }
    }
  }

  private static float[] random(Random rnd, long n, DType dt) {
    float[] x = new float[(int) n];
    for (int i = 0; i < x.length; i++) x[i] = dt == DType.I32 ? rnd.nextInt(2001) - 1000 : (float) rnd.nextGaussian();
    return x;
  }

  private static Tensor make(float[] x, DType dt, Device d, long n) {
    if (dt != DType.I32) return Tensor.fromFloats(x, dt, d, n);
    int[] v = new int[x.length];
    for (int i = 0; i < v.length; i++) v[i] = (int) x[i];
    return Tensor.fromInts(v, d, n);
  }

  private static int[] values(Tensor t) {
    if (t.dtype() == DType.I32) return t.toIntArray();
    return bits(t.toFloatArray());
  }

  private static int[] bits(float[] x) {
    int[] b = new int[x.length];
    for (int i = 0; i < x.length; i++) b[i] = Float.floatToRawIntBits(x[i]);
    return b;
  }

  private static void same(String what, DType dt, float[] x, Function<Tensor, Tensor> gpu, Function<Tensor, Tensor> cpu) {
    try (Scope s = Scope.open()) {
      Tensor g = make(x, dt, GPU, x.length), h = make(x, dt, Device.CPU, x.length);
      assertEquals(Tier.DEVICE, g.tier());
      assertArrayEquals(values(cpu.apply(h)), values(gpu.apply(g)), what);
    }
  }

  private interface InOut {
    void run(Tensor in, Tensor out);
  }

  private static void sameInOut(String what, DType dt, float[] x, long n, InOut gpu, InOut cpu) {
    try (Scope s = Scope.open()) {
      Tensor gi = make(x, dt, GPU, n), go = Tensor.zeros(dt, GPU, Tier.DEVICE, n);
      Tensor hi = make(x, dt, Device.CPU, n), ho = Tensor.zeros(dt, Device.CPU, n);
      gpu.run(gi, go);
      cpu.run(hi, ho);
      assertArrayEquals(values(ho), values(go), what);
    }
  }
}

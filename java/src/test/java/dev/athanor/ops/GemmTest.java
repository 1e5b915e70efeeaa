package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.upload;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * GEMM against the scalar reference: random data on awkward shapes (1, 7, 33, 127 and sizes that
 * cross the CPU kernels' register tiles and cache blocks), every transpose combination, batches,
 * bias, alpha and beta, both output dtypes, on every CPU ISA and on CUDA; and exact results on
 * small-integer inputs.
 */
class GemmTest {
  /** Inputs dtype x output dtype pairs of the C ABI. */
  static Stream<Arguments> devicesAndTypes() {
    return Fixtures.devices().flatMap(d -> Stream.of(Fixtures.FLOATS).flatMap(ab ->
        Stream.of(DType.F32, ab).distinct().map(c -> Arguments.of(d, ab, c))));
  }

  /** (M, N, K) shapes: awkward sizes, and ones crossing the CPU blocking (kc 256, nc 384, mr 6/12, nr 16/32). */
  static final int[][] SHAPES = {
      {1, 1, 1}, {1, 7, 33}, {7, 1, 127}, {33, 127, 7}, {127, 33, 1}, {7, 7, 7}, {33, 33, 33},
      {13, 17, 300}, {5, 400, 19}, {129, 65, 257}, {2, 131, 64},
  };

  /** Runs one GEMM case natively and compares it with the reference. */
  private static void check(Device device, DType ab, DType cType, int m, int n, int k, int batch, boolean ta,
      boolean tb, boolean withBias, float alpha, float beta, Random r, String isa) {
    try (Scope _ = Scope.open()) {
      long[] aShape = batch > 1 ? (ta ? new long[] {batch, k, m} : new long[] {batch, m, k})
          : (ta ? new long[] {k, m} : new long[] {m, k});
      long[] bShape = batch > 1 ? (tb ? new long[] {batch, n, k} : new long[] {batch, k, n})
          : (tb ? new long[] {n, k} : new long[] {k, n});
      long[] cShape = batch > 1 ? new long[] {batch, m, n} : new long[] {m, n};
      Tensor a = upload(Fixtures.uniform(r, batch * m * k, -1, 1), ab, device, aShape);
      Tensor b = upload(Fixtures.uniform(r, batch * k * n, -1, 1), ab, device, bShape);
      Tensor c = upload(Fixtures.uniform(r, batch * m * n, -1, 1), cType, device, cShape);
      Tensor bias = withBias ? upload(Fixtures.uniform(r, n, -1, 1), cType, device, n) : null;
      double[] expect = read(c);
      Reference.gemm(m, n, k, batch, ta, tb, read(a), ta ? m : k, (long) m * k, read(b), tb ? k : n, (long) k * n,
          expect, n, (long) m * n, bias == null ? null : read(bias), alpha, beta);
      if (beta == 0) c.copyFrom(Fixtures.nans(batch * m * n));  // must not be read
      Ops.gemm(a, ta, b, tb, alpha, beta, bias, c);
      // Inputs are exact in their dtype and products accumulate in F32, so only the accumulation
      // order and the final rounding to the output dtype differ from the reference.
      double scale = Math.max(Fixtures.rms(expect), 1e-3);
      Check.Tol tol = cType == DType.F32
          ? Fixtures.tol(DType.F32, 16 * Math.sqrt(k), scale)
          : Fixtures.tol(cType, 1, scale);
      Check.close("gemm " + device + "/" + isa + " " + ab + "->" + cType + " m=" + m + " n=" + n + " k=" + k
          + " batch=" + batch + " transA=" + ta + " transB=" + tb + " bias=" + withBias + " alpha=" + alpha
          + " beta=" + beta, expect, read(c), tol, cShape);
    }
  }

  @ParameterizedTest(name = "{0} {1}->{2}")
  @MethodSource("devicesAndTypes")
  void randomAwkwardShapesAllTransposes(Device device, DType ab, DType cType) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(11);
      for (int[] s : SHAPES) {
        for (int t = 0; t < 4; t++) {
          check(device, ab, cType, s[0], s[1], s[2], 1, (t & 1) != 0, (t & 2) != 0, false, 1f, 0f, r, isa);
        }
      }
    });
  }

  @ParameterizedTest(name = "{0} {1}->{2}")
  @MethodSource("devicesAndTypes")
  void batchBiasAlphaBeta(Device device, DType ab, DType cType) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(12);
      int[][] shapes = {{7, 33, 17}, {1, 5, 127}, {33, 1, 9}};
      for (int[] s : shapes) {
        for (int t = 0; t < 4; t++) {
          boolean ta = (t & 1) != 0, tb = (t & 2) != 0;
          check(device, ab, cType, s[0], s[1], s[2], 3, ta, tb, true, 0.5f, 0f, r, isa);
          check(device, ab, cType, s[0], s[1], s[2], 3, ta, tb, false, 1.5f, 1f, r, isa);
          check(device, ab, cType, s[0], s[1], s[2], 1, ta, tb, true, -1f, 0.25f, r, isa);
        }
      }
    });
  }

  /**
   * Integer inputs small enough that every product, sum and the final rounding are exact: the
   * result must equal the reference bit for bit.
   */
  @ParameterizedTest(name = "{0} {1}->{2}")
  @MethodSource("devicesAndTypes")
  void smallIntegersAreExact(Device device, DType ab, DType cType) {
    assumeDevice(device);
    // Largest integer every value of the output dtype represents exactly.
    double exactLimit = switch (cType) {
      case BF16 -> 256;
      case F16 -> 2048;
      default -> 1 << 24;
    };
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(13);
      int[][] shapes = {{7, 33, 17}, {33, 7, 64}, {1, 127, 3}, {65, 17, 300}};
      for (int[] s : shapes) {
        int m = s[0], n = s[1], k = s[2], batch = 2;
        int range = cType == DType.BF16 ? 1 : 3;
        for (int t = 0; t < 4; t++) {
          boolean ta = (t & 1) != 0, tb = (t & 2) != 0;
          try (Scope _ = Scope.open()) {
            long[] aShape = ta ? new long[] {batch, k, m} : new long[] {batch, m, k};
            long[] bShape = tb ? new long[] {batch, n, k} : new long[] {batch, k, n};
            float[] av = Fixtures.ints(r, batch * m * k, -range, range);
            // Keep |sum| within the exact range of the output dtype for BF16 (k up to 300).
            if (cType == DType.BF16) for (int i = 0; i < av.length; i++) if (r.nextInt(4) != 0) av[i] = 0;
            Tensor a = upload(av, ab, device, aShape);
            Tensor b = upload(Fixtures.ints(r, batch * k * n, -range, range), ab, device, bShape);
            Tensor c = upload(Fixtures.ints(r, batch * m * n, -4, 4), cType, device, batch, m, n);
            Tensor bias = upload(Fixtures.ints(r, n, -8, 8), cType, device, n);
            double[] expect = read(c);
            Reference.gemm(m, n, k, batch, ta, tb, read(a), ta ? m : k, (long) m * k, read(b), tb ? k : n,
                (long) k * n, expect, n, (long) m * n, read(bias), 2, -1);
            assertTrue(Fixtures.maxAbs(expect) <= exactLimit, "test setup: results must be exact in " + cType);
            Ops.gemm(a, ta, b, tb, 2f, -1f, bias, c);
            double[] got = read(c);
            if (!Arrays.equals(expect, got)) {
              Check.close("exact integer gemm " + device + "/" + isa + " " + ab + "->" + cType + " m=" + m + " n="
                  + n + " k=" + k + " transA=" + ta + " transB=" + tb, expect, got, new Check.Tol(0, 0),
                  batch, m, n);
            }
          }
        }
      }
    });
  }

  /** Strided views: row strides larger than the width (slices), transposed views, a shared 2-D B. */
  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void stridedAndTransposedViews(Device device, DType dtype) {
    assumeDevice(device);
    Random r = new Random(14);
    int m = 9, n = 20, k = 35;
    try (Scope _ = Scope.open()) {
      // a is the left 35 columns of a (9, 50) tensor: lda = 50.
      Tensor aWide = upload(Fixtures.uniform(r, m * 50, -1, 1), dtype, device, m, 50);
      Tensor a = aWide.slice(1, 0, k);
      // b is given as the transpose view of a (n, k) tensor.
      Tensor bT = upload(Fixtures.uniform(r, n * k, -1, 1), dtype, device, n, k);
      Tensor b = bT.transpose(0, 1);
      // out is the middle of a wider (9, 31) F32 buffer.
      Tensor outWide = Tensor.zeros(DType.F32, device, m, 31);
      Tensor out = outWide.slice(1, 5, 5 + n);
      Ops.gemm(a, false, b, false, 1f, 0f, null, out);
      double[] expect = new double[m * 31];
      double[] ab = read(aWide), bb = read(bT);
      // expected: columns 5..25 of a (9, 31) zero matrix
      double[] part = new double[m * n];
      Reference.gemm(m, n, k, 1, false, true, Arrays.copyOf(ab, ab.length), 50, 0, bb, k, 0, part, n, 0, null, 1, 0);
      for (int i = 0; i < m; i++) System.arraycopy(part, i * n, expect, i * 31 + 5, n);
      Check.close("gemm on views " + device + " " + dtype, expect, read(outWide),
          Fixtures.tol(DType.F32, 16 * Math.sqrt(k), Fixtures.rms(part)), m, 31);

      // matmul: batched a (3, m, k) times a shared 2-D b, both given as views.
      Tensor a3 = upload(Fixtures.uniform(r, 3 * m * k, -1, 1), dtype, device, 3, m, k);
      Tensor prod = Ops.matmul(a3, b);
      assertArrayEquals(new long[] {3, m, n}, prod.shape());
      double[] e3 = new double[3 * m * n];
      Reference.gemm(m, n, k, 3, false, true, read(a3), k, (long) m * k, bb, k, 0, e3, n, (long) m * n, null, 1, 0);
      Check.close("matmul batched x shared " + device + " " + dtype, e3, read(prod),
          Fixtures.tol(dtype, dtype == DType.F32 ? 16 * Math.sqrt(k) : 1, Fixtures.rms(e3)), 3, m, n);

      // matmul with transposes expressed by flags on a transposed view: a3^T^T = a3.
      Tensor a3t = a3.transpose(1, 2);
      Tensor prod2 = Ops.matmul(a3t, true, bT, true);
      Check.close("matmul flags on views " + device + " " + dtype, e3, read(prod2),
          Fixtures.tol(dtype, dtype == DType.F32 ? 16 * Math.sqrt(k) : 1, Fixtures.rms(e3)), 3, m, n);
    }
  }
}

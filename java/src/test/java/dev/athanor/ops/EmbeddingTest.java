package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.upload;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Embedding lookup (exact) and its backward (accumulated into an F32 table, repeated ids). */
class EmbeddingTest {
  /** {n, vocab, dim}. */
  static final int[][] SHAPES = {{1, 1, 1}, {7, 7, 33}, {33, 5, 7}, {127, 1000, 128}, {64, 3, 129}};

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("dev.athanor.ops.Fixtures#devicesAndFloats")
  void forwardAndBackwardMatchReference(Device device, DType dt) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(61);
      for (int[] s : SHAPES) {
        int n = s[0], vocab = s[1], dim = s[2];
        String what = "embedding " + device + "/" + isa + " " + dt + " n=" + n + " vocab=" + vocab + " dim=" + dim;
        try (Scope _ = Scope.open()) {
          int[] ids = Fixtures.randomIds(r, n, vocab);
          ids[n - 1] = vocab - 1;  // the last row of the table is reachable
          Tensor idt = Fixtures.uploadInts(ids, device, n);
          Tensor table = upload(Fixtures.normal(r, vocab * dim, 1), dt, device, vocab, dim);
          double[] tv = read(table);
          Tensor out = Ops.embedding(idt, table);
          assertArrayEquals(new long[] {n, dim}, out.shape());
          Check.close(what + " out", Reference.embedding(vocab, dim, ids, tv), read(out), new Check.Tol(0, 0), n, dim);

          Tensor dout = upload(Fixtures.normal(r, n * dim, 1), dt, device, n, dim);
          double[] dt0 = Check.toDouble(Fixtures.uniform(r, vocab * dim, -1, 1));
          Tensor dtable = upload(NormTest.toFloat(dt0), DType.F32, device, vocab, dim);
          double[] expect = dt0.clone();
          Reference.embeddingBackward(dim, ids, read(dout), expect);
          Ops.embeddingBackward(idt, dout, dtable);
          Check.close(what + " dtable (accumulated)", expect, read(dtable),
              Fixtures.tol(DType.F32, 8 * Math.sqrt((double) n / vocab + 1), Fixtures.rms(expect)), vocab, dim);
        }
      }
    });
  }

  /** ids of any shape: (B, T) ids give (B, T, dim) outputs. */
  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void idsOfAnyShape(Device device) {
    assumeDevice(device);
    Random r = new Random(62);
    try (Scope _ = Scope.open()) {
      int[] ids = Fixtures.randomIds(r, 6, 11);
      Tensor idt = Fixtures.uploadInts(ids, device, 2, 3);
      Tensor table = upload(Fixtures.normal(r, 11 * 5, 1), DType.F32, device, 11, 5);
      Tensor out = Ops.embedding(idt, table);
      assertArrayEquals(new long[] {2, 3, 5}, out.shape());
      Check.close("embedding (2, 3) ids " + device, Reference.embedding(11, 5, ids, read(table)), read(out),
          new Check.Tol(0, 0));
    }
  }
}

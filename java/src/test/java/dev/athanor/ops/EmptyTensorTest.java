package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Ops on tensors with a zero-sized dimension return empty results (and the reductions their
 * identity) on every backend, without launching anything; GEMM with K = 0 is beta * C + bias.
 */
class EmptyTensorTest {
  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void emptyInputsGiveEmptyOutputs(Device d) {
    assumeDevice(d);
    try (Scope _ = Scope.open()) {
      Tensor e = Tensor.zeros(DType.F32, d, 0, 8);
      Tensor w = Tensor.zeros(DType.F32, d, 8);
      assertArrayEquals(new long[] {0, 5}, Ops.matmul(e, Tensor.zeros(DType.F32, d, 8, 5)).shape());
      assertArrayEquals(new long[] {0, 8}, Ops.gelu(e).shape());
      assertArrayEquals(new long[] {0, 8}, Ops.add(e, e).shape());
      assertArrayEquals(new long[] {0, 8}, Ops.layerNorm(e, w, w, 1e-5f).out().shape());
      assertArrayEquals(new long[] {0}, Ops.rmsNorm(e, w, 1e-5f).rstd().shape());
      assertArrayEquals(new long[] {0}, Ops.crossEntropy(e, Tensor.zeros(DType.I32, d, 0)).losses().shape());
      assertArrayEquals(new long[] {0, 8}, Ops.embedding(Tensor.zeros(DType.I32, d, 0), Tensor.zeros(DType.F32, d, 3, 8))
          .shape());
      assertArrayEquals(new long[] {1, 0, 2, 8}, Ops.rope(Tensor.zeros(DType.F32, d, 1, 0, 2, 8), 0, 1e4f).shape());
      Tensor cols = Tensor.zeros(DType.F32, d, 8);
      Ops.sumRows(e, cols);
      assertArrayEquals(new float[8], cols.toFloatArray());
      assertEquals(0f, Ops.sum(e).toFloatArray()[0]);
      assertEquals(0f, Ops.sumSquares(e).toFloatArray()[0]);
      assertEquals(0f, Ops.globalNorm(List.of(e)));
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void gemmWithEmptyInnerDimensionIsBetaCPlusBias(Device d) {
    assumeDevice(d);
    try (Scope _ = Scope.open()) {
      Tensor c = Tensor.fromFloats(new float[] {1, 2, 3, 4, 5, 6}, DType.F32, d, 2, 3);
      Tensor bias = Tensor.fromFloats(new float[] {10, 20, 30}, DType.F32, d, 3);
      Ops.gemm(Tensor.zeros(DType.F32, d, 2, 0), false, Tensor.zeros(DType.F32, d, 0, 3), false, 1f, 2f, bias, c);
      assertArrayEquals(new float[] {12, 24, 36, 18, 30, 42}, c.toFloatArray());
    }
  }
}

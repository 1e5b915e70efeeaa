package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.upload;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The GEMM's GELU epilogues through JNI against the two-op sequences they replace: on the CPU bit for bit (every
 * ISA), on CUDA within the rounding of the pre-activation (skipped without a GPU). Awkward shapes with bias, beta,
 * a shared-weight batch (folded into rows) and both output dtypes; plus the argument checks.
 */
class GemmEpilogueTest {
  /** (batch, M, N, K): batch 0 means a plain matrix. */
  static final int[][] SHAPES = {{0, 7, 300, 33}, {0, 1, 1100, 5}, {0, 33, 127, 64}, {3, 5, 77, 31}, {0, 64, 2048, 48}};

  private static void check(Device device, DType ab, DType cType, int[] s, float beta, boolean backward, Random r) {
    try (Scope _ = Scope.open()) {
      int batch = Math.max(1, s[0]), m = s[1], n = s[2], k = s[3];
      long[] aShape = s[0] > 0 ? new long[] {batch, m, k} : new long[] {m, k};
      long[] cShape = s[0] > 0 ? new long[] {batch, m, n} : new long[] {m, n};
      Tensor a = upload(Fixtures.uniform(r, batch * m * k, -1.5, 1.5), ab, device, aShape);
      Tensor w = upload(Fixtures.uniform(r, k * n, -1.5, 1.5), ab, device, k, n);
      Tensor bias = upload(Fixtures.uniform(r, n, -2, 2), cType, device, n);
      float[] c0 = Fixtures.uniform(r, batch * m * n, -2, 2);
      float[] aux0 = Fixtures.uniform(r, batch * m * n, -4, 4);
      String what = device + " " + ab + "->" + cType + " " + Arrays.toString(s) + " beta=" + beta
          + (backward ? " GELU_BACKWARD" : " GELU");

      // unfused: the GEMM, then the activation op
      Tensor plain = upload(c0, cType, device, cShape);
      Tensor refAux = upload(aux0, cType, device, cShape);
      Tensor ref = Tensor.empty(cType, device, cShape);
      Ops.gemm(a, false, w, false, 1f, beta, bias, plain);
      if (backward) {
        Ops.geluBackward(refAux, plain, ref);
      } else {
        Ops.gelu(plain, ref);
        refAux.copyFrom(plain);
      }
      // fused
      Tensor out = upload(c0, cType, device, cShape);
      Tensor aux = upload(aux0, cType, device, cShape);
      Ops.gemm(a, false, w, false, 1f, beta, bias, out, backward ? GemmEpilogue.GELU_BACKWARD : GemmEpilogue.GELU,
          aux);
      float[] got = out.toFloatArray(), want = ref.toFloatArray();
      float[] gotAux = aux.toFloatArray(), wantAux = refAux.toFloatArray();
      assertFalse(Arrays.equals(got, plain.toFloatArray()), what + ": the epilogue changed nothing");
      if (device.isCuda()) {
        // one rounding of the pre-activation apart at most, moved by |gelu'| <= 1.13, plus the output's rounding
        double eps = Fixtures.ulp(cType);
        float[] pres = backward ? plain.toFloatArray() : wantAux;
        for (int i = 0; i < got.length; i++) {
          double pre = pres[i];
          double bound = 1.2 * (2 * eps * Math.abs(pre) + 1e-4 * Math.sqrt(k)) + 2 * eps * Math.abs(want[i]) + 1e-6;
          assertTrue(Math.abs(got[i] - want[i]) <= bound, what + " element " + i + ": " + got[i] + " vs " + want[i]);
          if (!backward) {
            assertTrue(Math.abs(gotAux[i] - wantAux[i]) <= 2 * eps * Math.abs(wantAux[i]) + 1e-4 * Math.sqrt(k),
                what + " aux element " + i);
          }
        }
        if (backward) assertArrayEquals(wantAux, gotAux, what + ": aux must stay as it was");
      } else {
        assertArrayEquals(want, got, what + ": C differs from GEMM + activation op");
        assertArrayEquals(wantAux, gotAux, what + ": aux");
      }
    }
  }

  @ParameterizedTest(name = "{0} {1}->{2}")
  @MethodSource("dev.athanor.ops.GemmTest#devicesAndTypes")
  void geluAndGeluBackwardMatchTheGemmThenTheActivationOp(Device device, DType ab, DType cType) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(5);
      for (int[] s : SHAPES) {
        for (float beta : new float[] {0f, 0.5f}) check(device, ab, cType, s, beta, false, r);
        check(device, ab, cType, s, 0f, true, r);
      }
    });
  }

  @Test
  void badAuxIsRejectedWithItsName() {
    try (Scope _ = Scope.open()) {
      Tensor a = Tensor.zeros(DType.F32, Device.CPU, 4, 3);
      Tensor b = Tensor.zeros(DType.F32, Device.CPU, 3, 5);
      Tensor out = Tensor.zeros(DType.F32, Device.CPU, 4, 5);
      var e = assertThrows(IllegalArgumentException.class,
          () -> Ops.gemm(a, false, b, false, 1f, 0f, null, out, GemmEpilogue.GELU_BACKWARD, null));
      assertTrue(e.getMessage().contains("aux"), e.getMessage());
      Tensor wrongShape = Tensor.zeros(DType.F32, Device.CPU, 5, 4);
      e = assertThrows(IllegalArgumentException.class,
          () -> Ops.gemm(a, false, b, false, 1f, 0f, null, out, GemmEpilogue.GELU, wrongShape));
      assertTrue(e.getMessage().contains("aux"), e.getMessage());
      Tensor wrongType = Tensor.zeros(DType.BF16, Device.CPU, 4, 5);
      e = assertThrows(IllegalArgumentException.class,
          () -> Ops.gemm(a, false, b, false, 1f, 0f, null, out, GemmEpilogue.GELU, wrongType));
      assertTrue(e.getMessage().contains("aux"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class,
          () -> Ops.gemm(a, false, b, false, 1f, 0f, null, out, GemmEpilogue.GELU, out));
      assertTrue(e.getMessage().contains("aux must not be out"), e.getMessage());
      e = assertThrows(IllegalArgumentException.class,
          () -> Ops.gemm(a, false, b, false, 1f, 0f, null, out, null, null));
      assertTrue(e.getMessage().contains("epilogue"), e.getMessage());
    }
  }
}

package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Kernel;
import dev.athanor.runtime.KernelArgs;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * The Java BF16/F16 rounding must agree bit for bit with the native CONVERT (native/common/dtype.h), since
 * tensors written from Java and by kernels meet in the same buffers. Skipped while the CPU elementwise op is
 * not built.
 */
@SuppressWarnings("restricted")
class NativeConvertTest {
  @Test
  void javaRoundingMatchesNativeConvert() {
    int n = 1 << 20;
    float[] values = new float[n];
    java.util.Random rnd = new java.util.Random(1);
    for (int i = 0; i < n; i++) {
      // Random bit patterns (all exponents, ties included via the low bits) and NaN-free.
      int bits = i < 65536 ? (0x3f800000 | i) ^ (i << 16) : rnd.nextInt();
      float f = Float.intBitsToFloat(bits);
      values[i] = Float.isNaN(f) ? i : f;
    }
    try (Scope scope = Scope.open()) {
      assertEquals(scope, Scope.current());
      Tensor src = Tensor.of(values);
      for (DType d : new DType[] {DType.BF16, DType.F16}) {
        Tensor dst = Tensor.empty(d, Device.CPU, n);
        try {
          ExecutionContext.current(Device.CPU).run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(n,
              KernelArgs.EW_CONVERT, DType.F32.code(), d.code(), src.address(), 0, dst.address(), 0f));
        } catch (NativeException e) {
          assumeTrue(e.status() != NativeException.UNSUPPORTED, "native CONVERT unavailable: " + e.getMessage());
          throw e;
        }
        MemorySegment m = MemorySegment.ofAddress(dst.address()).reinterpret(dst.byteSize());
        for (int i = 0; i < n; i++) {
          short want = d == DType.BF16 ? HalfFloats.floatToBf16(values[i]) : HalfFloats.floatToF16(values[i]);
          short got = m.getAtIndex(ValueLayout.JAVA_SHORT, i);
          if (want != got) {
            assertEquals(want, got, d + " of " + values[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(values[i])) + ")");
          }
        }
      }
    }
  }
}

package dev.athanor.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.athanor.ops.AttentionResult;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import org.junit.jupiter.api.Test;

/** The README's "Using the library" snippet, kept compiling and correct. */
class ReadmeExampleTest {
  @Test
  void readmeSnippetRuns() {
    // --- README snippet begins
    Device device = Cuda.isAvailable() ? Device.cuda(0) : Device.CPU;
    try (Scope scope = Scope.open()) {                 // closes every tensor made inside
      Tensor a = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3).to(device);
      Tensor b = Tensor.of(new float[] {1, 0, 0, 1, 1, 1}, 3, 2).to(device);
      Tensor c = Ops.matmul(a, b);                     // (2, 3) @ (3, 2) -> (2, 2), on a's device
      float[] result = c.to(Device.CPU).toFloatArray(); // {4, 5, 10, 11}

      Tensor q = Tensor.empty(DType.F32, device, 1, 4, 128, 64); // (B, H, T, D)
      Ops.randNormal(q, 42, 0, 0f, 1f);
      AttentionResult att = Ops.attention(q, q, q, true);        // causal self-attention
      // --- README snippet ends
      assertArrayEquals(new float[] {4, 5, 10, 11}, result);
      assertEquals(4, att.out().rank());
    }
  }
}

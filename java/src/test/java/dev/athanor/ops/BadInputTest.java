package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.upload;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.Tier;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeException;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.runtime.Kernel;
import dev.athanor.runtime.KernelArgs;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * Bad input gives a clear exception naming the problem, never a JVM crash: mismatched shapes,
 * dtypes and devices, bad layouts, out-of-range token ids and targets (rejected in Java for host
 * tensors, and by the native CPU ops themselves), closed tensors, DISK tensors, bad scalars.
 */
class BadInputTest {
  private static final Device CPU = Device.CPU;

  /** Asserts that body throws type with a message containing every fragment. */
  private static <T extends Throwable> T fails(Class<T> type, Executable body, String... fragments) {
    T e = assertThrows(type, body);
    String msg = String.valueOf(e.getMessage());
    for (String f : fragments) {
      assertTrue(msg.contains(f), "message \"" + msg + "\" should mention \"" + f + "\"");
    }
    return e;
  }

  private static Tensor f32(long... shape) {
    return Tensor.zeros(DType.F32, CPU, shape);
  }

  @Test
  void gemmShapeDtypeAndLayoutErrors() {
    try (Scope _ = Scope.open()) {
      Tensor a = f32(3, 4), b = f32(5, 6), out = f32(3, 6);
      fails(IllegalArgumentException.class, () -> Ops.matmul(a, b), "matmul", "inner dimensions", "(3, 4)", "(5, 6)");
      fails(IllegalArgumentException.class, () -> Ops.gemm(a, false, f32(4, 6), false, 1, 0, null, f32(3, 5)),
          "gemm", "out (3, 5)", "(3, 6)");
      Tensor bf = Tensor.zeros(DType.BF16, CPU, 4, 6);
      fails(IllegalArgumentException.class, () -> Ops.gemm(a, false, bf, false, 1, 0, null, out),
          "gemm", "b (4, 6) BF16", "F32");
      fails(IllegalArgumentException.class, () -> Ops.gemm(a, false, f32(4, 6), false, 1, 0, f32(5), out),
          "bias (5)", "(6)");
      fails(IllegalArgumentException.class, () -> Ops.gemm(a, false, f32(4, 6), false, 1, 0, null,
          Tensor.zeros(DType.F16, CPU, 3, 6)), "out (3, 6) F16", "F32 or the inputs' dtype");
      Tensor ints = Tensor.zeros(DType.I32, CPU, 3, 4);
      fails(IllegalArgumentException.class, () -> Ops.matmul(ints, f32(4, 6)), "floating");
      fails(IllegalArgumentException.class, () -> Ops.matmul(f32(2, 3, 4), f32(3, 4, 6)), "batch sizes differ");
      fails(IllegalArgumentException.class, () -> Ops.matmul(f32(4), f32(4, 6)), "a (4)", "matrix");
      Tensor outT = f32(6, 3).transpose(0, 1);
      fails(IllegalArgumentException.class, () -> Ops.gemm(a, false, f32(4, 6), false, 1, 0, null, outT),
          "out (3, 6)", "contiguous last dimension");
      fails(IllegalArgumentException.class, () -> Ops.gemm(a, false, f32(4, 6), false, Float.NaN, 0, null, out),
          "alpha");
      fails(IllegalArgumentException.class, () -> Ops.matmul(null, b), "a is null");
    }
  }

  @Test
  void elementwiseAndNormErrors() {
    try (Scope _ = Scope.open()) {
      fails(IllegalArgumentException.class, () -> Ops.add(f32(3, 4), f32(4, 3)), "add", "b (4, 3)", "a (3, 4)");
      fails(IllegalArgumentException.class, () -> Ops.mul(f32(5), Tensor.zeros(DType.BF16, CPU, 5)),
          "mul", "BF16", "F32");
      Tensor t = f32(4, 3).transpose(0, 1);
      fails(IllegalArgumentException.class, () -> Ops.gelu(t), "gelu", "contiguous");
      fails(IllegalArgumentException.class, () -> Ops.layerNorm(f32(2, 8), f32(7), null, 1e-5f),
          "layerNorm", "weight (7)", "(8)");
      fails(IllegalArgumentException.class, () -> Ops.rmsNorm(f32(2, 8), f32(8), -1f), "eps");
      fails(IllegalArgumentException.class, () -> Ops.layerNormBackward(f32(2, 8), f32(2, 8), f32(8), f32(3), f32(2),
          f32(8), null), "mean (3)", "2 values");
      fails(IllegalArgumentException.class, () -> Ops.rmsNormBackward(f32(2, 8), f32(2, 8), f32(8), f32(2),
          Tensor.zeros(DType.BF16, CPU, 8)), "dweight (8) BF16", "F32");
      fails(IllegalArgumentException.class, () -> Ops.swiglu(f32(6), f32(7)), "swiglu", "up (7)", "gate (6)");
      fails(IllegalArgumentException.class, () -> Ops.sumRows(f32(3, 4), f32(3)), "sumRows", "out (3)", "(4)");
      fails(IllegalArgumentException.class, () -> Ops.adamw(f32(4), f32(4), f32(4), f32(4), null, 1e-3f, 0.9f, 0.99f,
          1e-8f, 0f, 1f, 0), "step = 0");
      fails(IllegalArgumentException.class, () -> Ops.adamw(f32(4), f32(5), f32(4), f32(4), null, 1e-3f, 0.9f, 0.99f,
          1e-8f, 0f, 1f, 1), "grads (5)", "params (4)");
      fails(IllegalArgumentException.class, () -> Ops.randUniform(f32(3), 1, 0, 2f, 1f), "lo = 2.0", "hi = 1.0");
      fails(IllegalArgumentException.class, () -> Ops.globalNorm(List.of(f32(2), Tensor.zeros(DType.I32, CPU, 2))),
          "tensors[1]", "floating");
    }
  }

  @Test
  void attentionAndRopeErrors() {
    try (Scope _ = Scope.open()) {
      Tensor q = f32(1, 3, 4, 8), k = f32(1, 2, 4, 8), v = f32(1, 2, 4, 8);
      fails(IllegalArgumentException.class, () -> Ops.attention(q, k, v, false), "query heads 3", "kv heads 2");
      fails(IllegalArgumentException.class, () -> Ops.attention(f32(1, 2, 4, 8), f32(1, 2, 4, 7), f32(1, 2, 4, 7), false),
          "k (1, 2, 4, 7)", "head dimension");
      fails(IllegalArgumentException.class, () -> Ops.attention(f32(2, 4, 8), k, v, false), "q (2, 4, 8)", "rank 4");
      fails(IllegalArgumentException.class, () -> Ops.attention(f32(1, 2, 4, 8), k, f32(1, 2, 5, 8), false),
          "v (1, 2, 5, 8)", "k (1, 2, 4, 8)");
      Tensor qq = f32(1, 2, 4, 8);
      AttentionResult res = Ops.attention(qq, k, v, false);
      Tensor dq = f32(1, 2, 8, 4).transpose(2, 3);  // right shape, wrong strides
      fails(IllegalArgumentException.class, () -> Ops.attentionBackward(qq, k, v, res.out(), res.lse(), f32(1, 2, 4, 8),
          dq, f32(1, 2, 4, 8), f32(1, 2, 4, 8), false, 0.3f), "dq (1, 2, 4, 8)", "strides");
      fails(IllegalArgumentException.class, () -> Ops.rope(f32(1, 2, 3, 5), 0, 10000f), "rope", "head dimension 5",
          "even");
      fails(IllegalArgumentException.class, () -> Ops.rope(f32(1, 2, 3, 4), -1, 10000f), "pos0 = -1");
    }
  }

  @Test
  void outOfRangeIdsAndTargetsAreRejectedInJava() {
    try (Scope _ = Scope.open()) {
      Tensor table = f32(10, 4);
      Tensor ids = Tensor.of(new int[] {1, 2, 10, 3}, 4);
      fails(IllegalArgumentException.class, () -> Ops.embedding(ids, table), "token id 10", "position 2", "[0, 10)");
      Tensor neg = Tensor.of(new int[] {-1}, 1);
      fails(IllegalArgumentException.class, () -> Ops.embedding(neg, table), "token id -1", "position 0");
      fails(IllegalArgumentException.class, () -> Ops.embeddingBackward(ids, f32(4, 4), f32(10, 4)), "token id 10");
      Tensor floatIds = f32(4);
      fails(IllegalArgumentException.class, () -> Ops.embedding(floatIds, table), "ids (4) F32", "I32");

      Tensor logits = f32(3, 5);
      Tensor targets = Tensor.of(new int[] {0, 5, -1}, 3);
      fails(IllegalArgumentException.class, () -> Ops.crossEntropy(logits, targets), "target 5", "position 1",
          "vocab 5");
      fails(IllegalArgumentException.class, () -> Ops.crossEntropy(logits, Tensor.of(new int[] {0, 1}, 2)),
          "targets (2)", "3 rows");
    }
  }

  /** The native CPU ops reject bad ids and targets themselves (status INVALID), for callers below Ops. */
  @Test
  void nativeCpuOpsRejectOutOfRangeIdsAndTargets() {
    try (Scope _ = Scope.open()) {
      Tensor table = f32(10, 4), out = f32(3, 4);
      Tensor ids = Tensor.of(new int[] {1, 12, 3}, 3);
      ExecutionContext cpu = ExecutionContext.current(Device.CPU);
      NativeException e = fails(NativeException.class, () -> cpu.run(Kernel.EMBEDDING_FWD, new KernelArgs.Embedding(3,
          10, 4, DType.F32.code(), ids.address(), table.address(), out.address(), 0, 0)), "12");
      assertEquals(NativeException.INVALID, e.status());
      Tensor logits = f32(3, 5), losses = f32(3);
      Tensor targets = Tensor.of(new int[] {0, 7, 1}, 3);
      e = fails(NativeException.class, () -> cpu.run(Kernel.CROSS_ENTROPY_FWD, new KernelArgs.CrossEntropy(3, 5, 5,
          DType.F32.code(), logits.address(), targets.address(), losses.address(), 0, 0, 0)), "7");
      assertEquals(NativeException.INVALID, e.status());
      // and a plain bad argument: a null output pointer
      e = fails(NativeException.class, () -> cpu.run(Kernel.ELEMENTWISE, new KernelArgs.Elementwise(3,
          KernelArgs.EW_ADD, DType.F32.code(), DType.F32.code(), losses.address(), losses.address(), 0, 0f)));
      assertEquals(NativeException.INVALID, e.status());
    }
  }

  @Test
  void closedTensorsThrowIllegalState() {
    Tensor a = f32(2, 2);
    Tensor b = f32(2, 2);
    a.close();
    fails(IllegalStateException.class, () -> Ops.add(a, b), "add", "a is closed");
    fails(IllegalStateException.class, () -> Ops.matmul(b, a), "matmul", "b is closed");
    fails(IllegalStateException.class, () -> Ops.fill(a, 1f), "fill", "out is closed");
    AttentionResult[] holder = new AttentionResult[1];
    try (Tensor q = f32(1, 1, 2, 4)) {
      holder[0] = Ops.attention(q, q, q, false);
    }
    holder[0].close();
    holder[0].close();  // idempotent
    fails(IllegalStateException.class, () -> Ops.gelu(holder[0].out()), "gelu", "x is closed");
    b.close();
  }

  @Test
  void diskTensorsAreRejected() {
    Tensor d;
    try {
      d = Tensor.zeros(DType.F32, CPU, Tier.DISK, 4);
    } catch (RuntimeException e) {
      Assumptions.abort("cannot create a DISK tensor here: " + e.getMessage());
      return;
    }
    try (d; Tensor h = f32(4)) {
      fails(IllegalArgumentException.class, () -> Ops.add(d, h, h), "add", "DISK", "Tier.HOST");
    }
  }

  @Test
  void mismatchedDevicesAreRejected() {
    Assumptions.assumeTrue(Cuda.isAvailable(), "CUDA unavailable: " + Cuda.unavailableReason());
    try (Scope _ = Scope.open()) {
      Tensor h = f32(3, 3);
      Tensor g = Tensor.zeros(DType.F32, Device.cuda(0), 3, 3);
      fails(IllegalArgumentException.class, () -> Ops.add(h, g), "add", "different devices", "cpu", "cuda:0");
      fails(IllegalArgumentException.class, () -> Ops.matmul(g, h), "matmul", "different devices");
    }
  }

  @Test
  void cudaTensorsWithoutCudaFailClearly() {
    Assumptions.assumeFalse(Cuda.isAvailable(), "CUDA is available");
    RuntimeException e = assertThrows(RuntimeException.class, () -> Tensor.zeros(DType.F32, Device.cuda(0), 3));
    assertTrue(String.valueOf(e.getMessage()).toLowerCase().contains("cuda"), e.getMessage());
  }
}

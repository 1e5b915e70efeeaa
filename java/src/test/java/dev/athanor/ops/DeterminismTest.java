package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.upload;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * CPU ops are deterministic for a fixed thread count: the same op on the same inputs twice gives
 * bit-identical results. Sizes are large enough to split the work over every thread of the pool.
 */
class DeterminismTest {
  private static final Device CPU = Device.CPU;

  /** Runs op twice on freshly made inputs and compares all outputs bit for bit. */
  private static void twice(String name, Function<Random, List<Tensor>> op) {
    List<float[]> first = run(op);
    List<float[]> second = run(op);
    for (int i = 0; i < first.size(); i++) Check.identical(name + " output " + i, first.get(i), second.get(i));
  }

  private static List<float[]> run(Function<Random, List<Tensor>> op) {
    try (Scope _ = Scope.open()) {
      List<float[]> out = new ArrayList<>();
      for (Tensor t : op.apply(new Random(7))) out.add(t.toFloatArray());
      return out;
    }
  }

  private static Tensor rand(Random r, DType dt, long... shape) {
    long n = 1;
    for (long s : shape) n *= s;
    return upload(Fixtures.normal(r, (int) n, 1), dt, CPU, shape);
  }

  @Test
  void gemm() {
    for (DType dt : Fixtures.FLOATS) {
      twice("gemm " + dt, r -> {
        Tensor a = rand(r, dt, 257, 513), b = rand(r, dt, 513, 301);
        Tensor c = rand(r, DType.F32, 257, 301), bias = rand(r, DType.F32, 301);
        Ops.gemm(a, false, b, false, 1f, 0.5f, bias, c);
        return List.of(c, Ops.matmul(a, false, b.transpose(0, 1).contiguous(), true));
      });
    }
  }

  @Test
  void attention() {
    for (DType dt : Fixtures.FLOATS) {
      twice("attention " + dt, r -> {
        Tensor q = rand(r, dt, 2, 4, 97, 64), k = rand(r, dt, 2, 2, 97, 64), v = rand(r, dt, 2, 2, 97, 64);
        AttentionResult res = Ops.attention(q, k, v, true);
        Tensor dout = rand(r, dt, 2, 4, 97, 64);
        AttentionGrads g = Ops.attentionBackward(q, k, v, res.out(), res.lse(), dout, true, 0.125f);
        return List.of(res.out(), res.lse(), g.dq(), g.dk(), g.dv());
      });
    }
  }

  @Test
  void normsActivationsLoss() {
    twice("layerNorm, rmsNorm", r -> {
      Tensor x = rand(r, DType.BF16, 333, 1024), w = rand(r, DType.BF16, 1024), b = rand(r, DType.BF16, 1024);
      Tensor dout = rand(r, DType.BF16, 333, 1024);
      NormResult ln = Ops.layerNorm(x, w, b, 1e-5f);
      Tensor dw = Tensor.zeros(DType.F32, CPU, 1024), db = Tensor.zeros(DType.F32, CPU, 1024);
      Tensor dx = Ops.layerNormBackward(dout, x, w, ln.mean(), ln.rstd(), dw, db);
      NormResult rn = Ops.rmsNorm(x, w, 1e-6f);
      Tensor dw2 = Tensor.zeros(DType.F32, CPU, 1024);
      Tensor dx2 = Ops.rmsNormBackward(dout, x, w, rn.rstd(), dw2);
      return List.of(ln.out(), ln.mean(), ln.rstd(), dx, dw, db, rn.out(), dx2, dw2);
    });
    twice("activations", r -> {
      Tensor x = rand(r, DType.F32, 100_003), y = rand(r, DType.F32, 100_003);
      GluGrads g = Ops.swigluBackward(x, y, y);
      return List.of(Ops.gelu(x), Ops.geluBackward(x, y), Ops.swiglu(x, y), g.dgate(), g.dup());
    });
    twice("crossEntropy", r -> {
      Tensor logits = rand(r, DType.BF16, 64, 5003);
      int[] t = Fixtures.randomIds(r, 64, 5003);
      Tensor targets = Fixtures.uploadInts(t, CPU, 64);
      CrossEntropyResult res = Ops.crossEntropy(logits, targets);
      Tensor dl = rand(r, DType.F32, 64);
      return List.of(res.losses(), res.lse(), Ops.crossEntropyBackward(logits, targets, res.lse(), dl));
    });
  }

  @Test
  void embeddingRopeReductionsAdamwRand() {
    twice("embedding backward with repeated ids", r -> {
      int n = 8192;
      Tensor ids = Fixtures.uploadInts(Fixtures.randomIds(r, n, 50), CPU, n);
      Tensor dout = rand(r, DType.F32, n, 64);
      Tensor dtable = Tensor.zeros(DType.F32, CPU, 50, 64);
      Ops.embeddingBackward(ids, dout, dtable);
      return List.of(dtable);
    });
    twice("rope", r -> List.of(Ops.rope(rand(r, DType.F32, 4, 128, 8, 64), 3, 10000f)));
    twice("reductions", r -> {
      Tensor x = rand(r, DType.F32, 1000, 1001);
      Tensor cols = Tensor.zeros(DType.F32, CPU, 1001);
      Ops.sumRows(x, cols);
      return List.of(Ops.sum(x), Ops.sumSquares(x), cols);
    });
    twice("adamw", r -> {
      Tensor p = rand(r, DType.F32, 100_003), g = rand(r, DType.F32, 100_003);
      Tensor m = Tensor.zeros(DType.F32, CPU, 100_003), v = Tensor.zeros(DType.F32, CPU, 100_003);
      Tensor low = Tensor.zeros(DType.BF16, CPU, 100_003);
      Ops.adamw(p, g, m, v, low, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1f, 1);
      return List.of(p, m, v, low);
    });
    twice("rand", r -> {
      Tensor u = Tensor.empty(DType.F32, CPU, 100_003), n = Tensor.empty(DType.BF16, CPU, 100_003);
      Ops.randUniform(u, 5, 0, 0f, 1f);
      Ops.randNormal(n, 5, 0, 0f, 1f);
      return List.of(u, n);
    });
  }
}

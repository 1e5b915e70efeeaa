package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.upload;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * CPU ops give bit-identical results for any thread count, and run to run: each op runs on the
 * same inputs twice at the pool's own thread count and then at 1, 2 and 3 threads, and every output
 * must match the first run bit for bit. Shapes are awkward (odd row counts, widths off the vector
 * width) and large enough to split the work over the threads; accumulated outputs (parameter
 * gradients, row sums) start from non-zero values.
 */
class DeterminismTest {
  private static final Device CPU = Device.CPU;
  private static final int[] THREADS = {1, 2, 3};

  /**
   * Runs op on freshly made inputs twice at the current thread count, then at each count of
   * THREADS, and compares all outputs bit for bit with the first run. Restores the thread count.
   */
  private static void acrossThreads(String name, Function<Random, List<Tensor>> op) {
    int saved = NativeRuntime.cpuThreads();
    try {
      List<float[]> first = run(op);
      compare(name + " (run to run, " + saved + " threads)", first, run(op));
      for (int t : THREADS) {
        NativeRuntime.setCpuThreads(t);
        compare(name + " (" + saved + " threads vs " + t + ")", first, run(op));
      }
    } finally {
      NativeRuntime.setCpuThreads(saved);
    }
  }

  private static void compare(String what, List<float[]> first, List<float[]> other) {
    for (int i = 0; i < first.size(); i++) Check.identical(what + " output " + i, first.get(i), other.get(i));
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
      acrossThreads("gemm " + dt, r -> {
        Tensor a = rand(r, dt, 257, 513), b = rand(r, dt, 513, 301);
        Tensor c = rand(r, DType.F32, 257, 301), bias = rand(r, DType.F32, 301);
        Ops.gemm(a, false, b, false, 1f, 0.5f, bias, c);
        return List.of(c, Ops.matmul(a, false, b.transpose(0, 1).contiguous(), true));
      });
      acrossThreads("gemm small M " + dt, r -> {  // the skinny path: B read in place, columns split
        Tensor x = rand(r, dt, 5, 517), w = rand(r, dt, 3001, 517), b = rand(r, dt, 517, 3001);
        Tensor one = rand(r, dt, 1, 517);
        return List.of(Ops.matmul(x, false, w, true), Ops.matmul(x, b), Ops.matmul(one, false, w, true));
      });
      acrossThreads("gemm batched " + dt, r -> {
        Tensor a = rand(r, dt, 3, 70, 90), b = rand(r, dt, 3, 90, 111);
        return List.of(Ops.matmul(a, b));
      });
    }
  }

  @Test
  void attention() {
    for (DType dt : Fixtures.FLOATS) {
      acrossThreads("attention " + dt, r -> {
        Tensor q = rand(r, dt, 2, 4, 97, 64), k = rand(r, dt, 2, 2, 97, 64), v = rand(r, dt, 2, 2, 97, 64);
        AttentionResult res = Ops.attention(q, k, v, true);
        Tensor dout = rand(r, dt, 2, 4, 97, 64);
        AttentionGrads g = Ops.attentionBackward(q, k, v, res.out(), res.lse(), dout, true, 0.125f);
        return List.of(res.out(), res.lse(), g.dq(), g.dk(), g.dv());
      });
    }
    acrossThreads("attention F32 Tq != Tk, not causal, D 40", r -> {
      Tensor q = rand(r, DType.F32, 1, 3, 37, 40), k = rand(r, DType.F32, 1, 1, 101, 40);
      Tensor v = rand(r, DType.F32, 1, 1, 101, 40);
      AttentionResult res = Ops.attention(q, k, v, false);
      Tensor dout = rand(r, DType.F32, 1, 3, 37, 40);
      AttentionGrads g = Ops.attentionBackward(q, k, v, res.out(), res.lse(), dout, false, 0.2f);
      return List.of(res.out(), res.lse(), g.dq(), g.dk(), g.dv());
    });
  }

  @Test
  void norms() {
    for (DType dt : List.of(DType.BF16, DType.F32)) {
      int rows = dt == DType.BF16 ? 333 : 97, cols = dt == DType.BF16 ? 1024 : 771;
      acrossThreads("layerNorm, rmsNorm " + dt + " " + rows + "x" + cols, r -> {
        Tensor x = rand(r, dt, rows, cols), w = rand(r, dt, cols), b = rand(r, dt, cols);
        Tensor dout = rand(r, dt, rows, cols);
        NormResult ln = Ops.layerNorm(x, w, b, 1e-5f);
        Tensor dw = rand(r, DType.F32, cols), db = rand(r, DType.F32, cols);  // accumulated into
        Tensor dx = Ops.layerNormBackward(dout, x, w, ln.mean(), ln.rstd(), dw, db);
        NormResult rn = Ops.rmsNorm(x, w, 1e-6f);
        Tensor dw2 = rand(r, DType.F32, cols);
        Tensor dx2 = Ops.rmsNormBackward(dout, x, w, rn.rstd(), dw2);
        return List.of(ln.out(), ln.mean(), ln.rstd(), dx, dw, db, rn.out(), dx2, dw2);
      });
    }
  }

  @Test
  void activationsAndLoss() {
    acrossThreads("activations", r -> {
      Tensor x = rand(r, DType.F32, 100_003), y = rand(r, DType.F32, 100_003);
      GluGrads g = Ops.swigluBackward(x, y, y);
      return List.of(Ops.gelu(x), Ops.geluBackward(x, y), Ops.swiglu(x, y), g.dgate(), g.dup());
    });
    for (DType dt : List.of(DType.BF16, DType.F32)) {
      acrossThreads("crossEntropy " + dt, r -> {
        int rows = 67, vocab = 5003;
        Tensor logits = rand(r, dt, rows, vocab);
        int[] t = Fixtures.randomIds(r, rows, vocab);
        t[3] = -1;  // ignored row
        Tensor targets = Fixtures.uploadInts(t, CPU, rows);
        CrossEntropyResult res = Ops.crossEntropy(logits, targets);
        Tensor dl = rand(r, DType.F32, rows);
        return List.of(res.losses(), res.lse(), Ops.crossEntropyBackward(logits, targets, res.lse(), dl));
      });
    }
  }

  @Test
  void embeddingRopeReductionsAdamwRand() {
    for (DType dt : List.of(DType.F32, DType.BF16)) {
      acrossThreads("embedding backward with repeated ids into a non-zero table " + dt, r -> {
        int n = 8191, vocab = 50, dim = 67;
        Tensor ids = Fixtures.uploadInts(Fixtures.randomIds(r, n, vocab), CPU, n);
        Tensor dout = rand(r, dt, n, dim);
        Tensor dtable = rand(r, DType.F32, vocab, dim);
        Ops.embeddingBackward(ids, dout, dtable);
        return List.of(dtable);
      });
    }
    acrossThreads("embedding backward, wide rows, large vocabulary", r -> {
      int n = 1031, vocab = 50257, dim = 300;
      int[] id = Fixtures.randomIds(r, n, vocab);
      for (int i = 0; i < n; i += 3) id[i] = 17;  // one frequent id
      Tensor ids = Fixtures.uploadInts(id, CPU, n);
      Tensor dout = rand(r, DType.F32, n, dim);
      Tensor dtable = rand(r, DType.F32, vocab, dim);
      Ops.embeddingBackward(ids, dout, dtable);
      return List.of(dtable);
    });
    acrossThreads("rope", r -> List.of(Ops.rope(rand(r, DType.F32, 4, 128, 8, 64), 3, 10000f)));
    acrossThreads("reductions", r -> {
      Tensor x = rand(r, DType.F32, 1000, 1001);
      Tensor cols = rand(r, DType.F32, 1001);  // accumulated into
      Ops.sumRows(x, cols);
      Tensor narrow = rand(r, DType.BF16, 4099, 17);
      Tensor cols2 = rand(r, DType.F32, 17);
      Ops.sumRows(narrow, cols2);
      return List.of(Ops.sum(x), Ops.sumSquares(x), cols, Ops.sum(narrow), Ops.sumSquares(narrow), cols2);
    });
    acrossThreads("adamw", r -> {
      Tensor p = rand(r, DType.F32, 100_003), g = rand(r, DType.F32, 100_003);
      Tensor m = Tensor.zeros(DType.F32, CPU, 100_003), v = Tensor.zeros(DType.F32, CPU, 100_003);
      Tensor low = Tensor.zeros(DType.BF16, CPU, 100_003);
      Ops.adamw(p, g, m, v, low, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1f, 1);
      Ops.adamw(p, g, m, v, low, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 2);
      return List.of(p, m, v, low);
    });
    acrossThreads("rand", r -> {
      Tensor u = Tensor.empty(DType.F32, CPU, 100_003), n = Tensor.empty(DType.BF16, CPU, 100_003);
      Ops.randUniform(u, 5, 0, 0f, 1f);
      Ops.randNormal(n, 5, 0, 0f, 1f);
      return List.of(u, n);
    });
  }

  /**
   * The embedding backward adds each row's token sum once: into a table already holding H (say a
   * tied head's gradient), row v ends as exactly H[v] + (g_1 + g_2 + ...), the gradient rows of
   * v's tokens summed in token order from the first of them (not ((H[v] + g_1) + g_2) + ...).
   */
  @Test
  void embeddingBackwardAddsTokenOrderSumOnce() {
    int saved = NativeRuntime.cpuThreads();
    try {
      for (DType dt : List.of(DType.F32, DType.BF16)) {
        for (int threads : THREADS) {
          NativeRuntime.setCpuThreads(threads);
          Random r = new Random(11);
          int n = 2053, vocab = 97, dim = 45;
          int[] ids = Fixtures.randomIds(r, n, vocab);
          float[] h = new float[vocab * dim];
          for (int i = 0; i < h.length; i++) h[i] = (float) (r.nextGaussian() * Math.scalb(1.0, r.nextInt(41) - 20));
          try (Scope _ = Scope.open()) {
            Tensor dout = rand(r, dt, n, dim);
            float[] g = dout.toFloatArray();  // exact: BF16 widens to F32 exactly
            float[] sum = new float[vocab * dim];
            boolean[] seen = new boolean[vocab];
            for (int i = 0; i < n; i++) {
              for (int c = 0; c < dim; c++) {
                int e = ids[i] * dim + c;
                sum[e] = seen[ids[i]] ? sum[e] + g[i * dim + c] : g[i * dim + c];
              }
              seen[ids[i]] = true;
            }
            float[] expect = h.clone();
            for (int v = 0; v < vocab; v++) {
              if (!seen[v]) continue;
              for (int c = 0; c < dim; c++) expect[v * dim + c] = h[v * dim + c] + sum[v * dim + c];
            }
            Tensor dtable = upload(h, DType.F32, CPU, vocab, dim);
            Ops.embeddingBackward(Fixtures.uploadInts(ids, CPU, n), dout, dtable);
            Check.identical("embedding backward " + dt + " at " + threads + " threads vs H + token-order sums", expect,
                dtable.toFloatArray());
          }
        }
      }
    } finally {
      NativeRuntime.setCpuThreads(saved);
    }
  }
}

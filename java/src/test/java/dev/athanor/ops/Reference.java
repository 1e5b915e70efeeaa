package dev.athanor.ops;

/**
 * Plain scalar reference of every op of the C ABI, written from the math in
 * {@code native/include/athanor/athanor.h} and nothing else: straightforward loops in double
 * precision over contiguous row-major arrays (logical layouts, no strides except where the op's
 * contract is about strides, as in GEMM). The tests feed it exactly the values the native op sees
 * (inputs already rounded to the op's dtype) and compare the native result against it.
 *
 * <p>Backward functions follow the header's convention: input gradients are returned (written),
 * parameter gradients are accumulated into the arrays passed in.
 */
final class Reference {
  private Reference() {}

  // ------------------------------------------------------------------ dtype rounding

  /** Rounds to the nearest bfloat16 (ties to even) and back; NaN stays NaN. */
  static float roundBf16(float f) {
    if (Float.isNaN(f)) return f;
    int u = Float.floatToRawIntBits(f);
    u += 0x7fff + ((u >>> 16) & 1);
    return Float.intBitsToFloat(u & 0xffff0000);
  }

  /** Rounds to the nearest IEEE half (ties to even, overflow to infinity) and back. */
  static float roundF16(float f) {
    return Float.float16ToFloat(Float.floatToFloat16(f));
  }

  /** Rounds {@code v} to the precision of the dtype named by its ath_dtype code (0 F32, 1 BF16, 2 F16). */
  static float round(double v, int dtypeCode) {
    float f = (float) v;
    return switch (dtypeCode) {
      case 1 -> roundBf16(f);
      case 2 -> roundF16(f);
      default -> f;
    };
  }

  // ------------------------------------------------------------------ GEMM

  /**
   * For each batch b: C_b = alpha op(A_b) op(B_b) + beta C_b (+ bias over rows), in place on c.
   * A_b is (M, K) (or (K, M) when transA) with row stride lda at offset b * strideA; likewise B, C.
   * beta == 0 means C is not read.
   */
  static void gemm(int m, int n, int k, int batch, boolean transA, boolean transB,
      double[] a, int lda, long strideA, double[] b, int ldb, long strideB,
      double[] c, int ldc, long strideC, double[] bias, double alpha, double beta) {
    for (int bi = 0; bi < batch; bi++) {
      long oa = bi * strideA, ob = bi * strideB, oc = bi * strideC;
      for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
          double acc = 0;
          for (int p = 0; p < k; p++) {
            double av = transA ? a[(int) (oa + (long) p * lda + i)] : a[(int) (oa + (long) i * lda + p)];
            double bv = transB ? b[(int) (ob + (long) j * ldb + p)] : b[(int) (ob + (long) p * ldb + j)];
            acc += av * bv;
          }
          int ci = (int) (oc + (long) i * ldc + j);
          double r = alpha * acc + (beta == 0 ? 0 : beta * c[ci]);
          if (bias != null) r += bias[j];
          c[ci] = r;
        }
      }
    }
  }

  // ------------------------------------------------------------------ attention

  /** Whether query i may attend key j (bottom-right aligned causal mask). */
  static boolean visible(boolean causal, int i, int j, int tq, int tk) {
    return !causal || j <= i + (tk - tq);
  }

  /** Result of the attention forward: o (B, Hq, Tq, D) and lse (B, Hq, Tq). */
  record AttentionOut(double[] o, double[] lse) {}

  /** q (B, Hq, Tq, D), k and v (B, Hkv, Tk, D), all contiguous. */
  static AttentionOut attention(int batch, int hq, int hkv, int tq, int tk, int d, boolean causal, double scale,
      double[] q, double[] k, double[] v) {
    double[] o = new double[batch * hq * tq * d];
    double[] lse = new double[batch * hq * tq];
    int group = hq / hkv;
    double[] s = new double[tk];
    for (int b = 0; b < batch; b++) {
      for (int h = 0; h < hq; h++) {
        int kh = h / group;
        for (int i = 0; i < tq; i++) {
          int qo = ((b * hq + h) * tq + i) * d;
          double max = Double.NEGATIVE_INFINITY;
          for (int j = 0; j < tk; j++) {
            if (!visible(causal, i, j, tq, tk)) { s[j] = Double.NEGATIVE_INFINITY; continue; }
            int ko = ((b * hkv + kh) * tk + j) * d;
            double dot = 0;
            for (int x = 0; x < d; x++) dot += q[qo + x] * k[ko + x];
            s[j] = dot * scale;
            max = Math.max(max, s[j]);
          }
          int li = (b * hq + h) * tq + i;
          if (max == Double.NEGATIVE_INFINITY) { lse[li] = Double.NEGATIVE_INFINITY; continue; }
          double sum = 0;
          for (int j = 0; j < tk; j++) if (s[j] != Double.NEGATIVE_INFINITY) sum += Math.exp(s[j] - max);
          lse[li] = max + Math.log(sum);
          for (int j = 0; j < tk; j++) {
            if (s[j] == Double.NEGATIVE_INFINITY) continue;
            double p = Math.exp(s[j] - lse[li]);
            int vo = ((b * hkv + kh) * tk + j) * d;
            for (int x = 0; x < d; x++) o[qo + x] += p * v[vo + x];
          }
        }
      }
    }
    return new AttentionOut(o, lse);
  }

  /** Gradients of the attention: dq like q, dk and dv like k and v (summed over the query heads of a group). */
  record AttentionGrads(double[] dq, double[] dk, double[] dv) {}

  static AttentionGrads attentionBackward(int batch, int hq, int hkv, int tq, int tk, int d, boolean causal,
      double scale, double[] q, double[] k, double[] v, double[] dout) {
    return attentionBackward(batch, hq, hkv, tq, tk, d, causal, scale, q, k, v, dout, null);
  }

  /**
   * As above; when {@code savedOut} is non-null it is used as the forward output in the
   * {@code rowsum(dO * O)} term, as the C ABI's backward uses the saved (dtype-rounded) output.
   */
  static AttentionGrads attentionBackward(int batch, int hq, int hkv, int tq, int tk, int d, boolean causal,
      double scale, double[] q, double[] k, double[] v, double[] dout, double[] savedOut) {
    AttentionOut fwd = attention(batch, hq, hkv, tq, tk, d, causal, scale, q, k, v);
    double[] o = savedOut != null ? savedOut : fwd.o;
    double[] dq = new double[q.length], dk = new double[k.length], dv = new double[v.length];
    int group = hq / hkv;
    double[] p = new double[tk], dp = new double[tk];
    for (int b = 0; b < batch; b++) {
      for (int h = 0; h < hq; h++) {
        int kh = h / group;
        for (int i = 0; i < tq; i++) {
          int qo = ((b * hq + h) * tq + i) * d;
          double lse = fwd.lse[(b * hq + h) * tq + i];
          if (lse == Double.NEGATIVE_INFINITY) continue;  // no visible key: output 0, no gradient
          double rowDot = 0;  // sum_x dO * O
          for (int x = 0; x < d; x++) rowDot += dout[qo + x] * o[qo + x];
          for (int j = 0; j < tk; j++) {
            p[j] = 0;
            dp[j] = 0;
            if (!visible(causal, i, j, tq, tk)) continue;
            int ko = ((b * hkv + kh) * tk + j) * d;
            double dot = 0, dpj = 0;
            for (int x = 0; x < d; x++) {
              dot += q[qo + x] * k[ko + x];
              dpj += dout[qo + x] * v[ko + x];
            }
            p[j] = Math.exp(dot * scale - lse);
            dp[j] = dpj;
          }
          for (int j = 0; j < tk; j++) {
            if (p[j] == 0) continue;
            int ko = ((b * hkv + kh) * tk + j) * d;
            double ds = p[j] * (dp[j] - rowDot);
            for (int x = 0; x < d; x++) {
              dq[qo + x] += scale * ds * k[ko + x];
              dk[ko + x] += scale * ds * q[qo + x];
              dv[ko + x] += p[j] * dout[qo + x];
            }
          }
        }
      }
    }
    return new AttentionGrads(dq, dk, dv);
  }

  // ------------------------------------------------------------------ normalization

  /** out (rows, cols), mean and rstd (rows). */
  record NormOut(double[] out, double[] mean, double[] rstd) {}

  static NormOut layerNorm(int rows, int cols, double eps, double[] x, double[] w, double[] bias) {
    double[] out = new double[rows * cols], mean = new double[rows], rstd = new double[rows];
    for (int r = 0; r < rows; r++) {
      double mu = 0;
      for (int c = 0; c < cols; c++) mu += x[r * cols + c];
      mu /= cols;
      double var = 0;
      for (int c = 0; c < cols; c++) { double t = x[r * cols + c] - mu; var += t * t; }
      var /= cols;
      double rs = 1 / Math.sqrt(var + eps);
      mean[r] = mu;
      rstd[r] = rs;
      for (int c = 0; c < cols; c++) {
        out[r * cols + c] = (x[r * cols + c] - mu) * rs * w[c] + (bias == null ? 0 : bias[c]);
      }
    }
    return new NormOut(out, mean, rstd);
  }

  /** Returns dx; accumulates dweight and (when non-null) dbias. */
  static double[] layerNormBackward(int rows, int cols, double eps, double[] x, double[] w, double[] dout,
      double[] dweight, double[] dbias) {
    NormOut f = layerNorm(rows, cols, eps, x, w, null);
    double[] dx = new double[rows * cols];
    for (int r = 0; r < rows; r++) {
      double mu = f.mean[r], rs = f.rstd[r];
      double meanDy = 0, meanDyXhat = 0;
      for (int c = 0; c < cols; c++) {
        int i = r * cols + c;
        double xhat = (x[i] - mu) * rs;
        double dy = dout[i] * w[c];
        meanDy += dy;
        meanDyXhat += dy * xhat;
        dweight[c] += dout[i] * xhat;
        if (dbias != null) dbias[c] += dout[i];
      }
      meanDy /= cols;
      meanDyXhat /= cols;
      for (int c = 0; c < cols; c++) {
        int i = r * cols + c;
        double xhat = (x[i] - mu) * rs;
        dx[i] = rs * (dout[i] * w[c] - meanDy - xhat * meanDyXhat);
      }
    }
    return dx;
  }

  /** RMSNorm; the returned mean is null. */
  static NormOut rmsNorm(int rows, int cols, double eps, double[] x, double[] w) {
    double[] out = new double[rows * cols], rstd = new double[rows];
    for (int r = 0; r < rows; r++) {
      double ms = 0;
      for (int c = 0; c < cols; c++) ms += x[r * cols + c] * x[r * cols + c];
      ms /= cols;
      double rs = 1 / Math.sqrt(ms + eps);
      rstd[r] = rs;
      for (int c = 0; c < cols; c++) out[r * cols + c] = x[r * cols + c] * rs * w[c];
    }
    return new NormOut(out, null, rstd);
  }

  static double[] rmsNormBackward(int rows, int cols, double eps, double[] x, double[] w, double[] dout,
      double[] dweight) {
    NormOut f = rmsNorm(rows, cols, eps, x, w);
    double[] dx = new double[rows * cols];
    for (int r = 0; r < rows; r++) {
      double rs = f.rstd[r];
      double meanDyXhat = 0;
      for (int c = 0; c < cols; c++) {
        int i = r * cols + c;
        double xhat = x[i] * rs;
        meanDyXhat += dout[i] * w[c] * xhat;
        dweight[c] += dout[i] * xhat;
      }
      meanDyXhat /= cols;
      for (int c = 0; c < cols; c++) {
        int i = r * cols + c;
        dx[i] = rs * (dout[i] * w[c] - x[i] * rs * meanDyXhat);
      }
    }
    return dx;
  }

  // ------------------------------------------------------------------ activations

  static final double GELU_C = Math.sqrt(2 / Math.PI);

  static double gelu(double x) {
    return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
  }

  static double geluGrad(double x) {
    double t = Math.tanh(GELU_C * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
  }

  static double sigmoid(double x) {
    return 1 / (1 + Math.exp(-x));
  }

  static double silu(double x) {
    return x * sigmoid(x);
  }

  static double siluGrad(double x) {
    double s = sigmoid(x);
    return s * (1 + x * (1 - s));
  }

  /** act: 0 GELU (tanh), 1 SiLU, 2 SwiGLU (silu(x) * y). */
  static double[] activation(int act, double[] x, double[] y) {
    double[] out = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      out[i] = switch (act) {
        case 0 -> gelu(x[i]);
        case 1 -> silu(x[i]);
        case 2 -> silu(x[i]) * y[i];
        default -> throw new IllegalArgumentException("act " + act);
      };
    }
    return out;
  }

  /** Returns {dx, dy} (dy null unless SwiGLU). */
  static double[][] activationBackward(int act, double[] x, double[] y, double[] dout) {
    double[] dx = new double[x.length];
    double[] dy = act == 2 ? new double[x.length] : null;
    for (int i = 0; i < x.length; i++) {
      switch (act) {
        case 0 -> dx[i] = dout[i] * geluGrad(x[i]);
        case 1 -> dx[i] = dout[i] * siluGrad(x[i]);
        case 2 -> {
          dx[i] = dout[i] * y[i] * siluGrad(x[i]);
          dy[i] = dout[i] * silu(x[i]);
        }
        default -> throw new IllegalArgumentException("act " + act);
      }
    }
    return new double[][] {dx, dy};
  }

  // ------------------------------------------------------------------ cross-entropy

  /** losses (rows) and lse (rows). */
  record XentOut(double[] losses, double[] lse) {}

  /** logits (rows, vocab) contiguous; a target < 0 is ignored (loss 0). */
  static XentOut crossEntropy(int rows, int vocab, double[] logits, int[] targets) {
    double[] losses = new double[rows], lse = new double[rows];
    for (int r = 0; r < rows; r++) {
      double max = Double.NEGATIVE_INFINITY;
      for (int j = 0; j < vocab; j++) max = Math.max(max, logits[r * vocab + j]);
      double sum = 0;
      for (int j = 0; j < vocab; j++) sum += Math.exp(logits[r * vocab + j] - max);
      lse[r] = max + Math.log(sum);
      losses[r] = targets[r] < 0 ? 0 : lse[r] - logits[r * vocab + targets[r]];
    }
    return new XentOut(losses, lse);
  }

  /** dlogits (rows, vocab) = dlosses[r] (softmax - onehot(target)); zero rows for ignored targets. */
  static double[] crossEntropyBackward(int rows, int vocab, double[] logits, int[] targets, double[] dlosses) {
    XentOut f = crossEntropy(rows, vocab, logits, targets);
    double[] d = new double[rows * vocab];
    for (int r = 0; r < rows; r++) {
      if (targets[r] < 0) continue;
      for (int j = 0; j < vocab; j++) {
        double p = Math.exp(logits[r * vocab + j] - f.lse[r]);
        d[r * vocab + j] = dlosses[r] * (p - (j == targets[r] ? 1 : 0));
      }
    }
    return d;
  }

  // ------------------------------------------------------------------ embedding

  static double[] embedding(int vocab, int dim, int[] ids, double[] table) {
    double[] out = new double[ids.length * dim];
    for (int i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= vocab) throw new IllegalArgumentException("id " + ids[i]);
      System.arraycopy(table, ids[i] * dim, out, i * dim, dim);
    }
    return out;
  }

  /** Accumulates dout rows into dtable (vocab, dim). */
  static void embeddingBackward(int dim, int[] ids, double[] dout, double[] dtable) {
    for (int i = 0; i < ids.length; i++) {
      for (int c = 0; c < dim; c++) dtable[ids[i] * dim + c] += dout[i * dim + c];
    }
  }

  // ------------------------------------------------------------------ rotary position embedding

  /**
   * x (B, T, H, D) contiguous; rotates the pairs (i, i + D/2) by (pos0 + t) theta^(-2i/D), the
   * negative angle when inverse.
   */
  static double[] rope(int batch, int seq, int heads, int d, boolean inverse, long pos0, double theta, double[] x) {
    double[] out = new double[x.length];
    int half = d / 2;
    for (int b = 0; b < batch; b++) {
      for (int t = 0; t < seq; t++) {
        for (int h = 0; h < heads; h++) {
          int o = ((b * seq + t) * heads + h) * d;
          for (int i = 0; i < half; i++) {
            double angle = (pos0 + t) * Math.pow(theta, -2.0 * i / d);
            if (inverse) angle = -angle;
            double c = Math.cos(angle), s = Math.sin(angle);
            double x1 = x[o + i], x2 = x[o + i + half];
            out[o + i] = x1 * c - x2 * s;
            out[o + i + half] = x2 * c + x1 * s;
          }
        }
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ elementwise and reductions

  static double[] add(double[] a, double[] b) {
    double[] o = new double[a.length];
    for (int i = 0; i < a.length; i++) o[i] = a[i] + b[i];
    return o;
  }

  static double[] mul(double[] a, double[] b) {
    double[] o = new double[a.length];
    for (int i = 0; i < a.length; i++) o[i] = a[i] * b[i];
    return o;
  }

  static double[] scale(double alpha, double[] a) {
    double[] o = new double[a.length];
    for (int i = 0; i < a.length; i++) o[i] = alpha * a[i];
    return o;
  }

  /** out + alpha * a. */
  static double[] axpy(double[] out, double alpha, double[] a) {
    double[] o = new double[a.length];
    for (int i = 0; i < a.length; i++) o[i] = out[i] + alpha * a[i];
    return o;
  }

  static double sum(double[] x) {
    double s = 0;
    for (double v : x) s += v;
    return s;
  }

  static double sumSquares(double[] x) {
    double s = 0;
    for (double v : x) s += v * v;
    return s;
  }

  /** out (cols) += column sums of x (rows, cols). */
  static void sumRows(int rows, int cols, double[] x, double[] out) {
    for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) out[c] += x[r * cols + c];
  }

  // ------------------------------------------------------------------ AdamW

  /** One AdamW step in place on params, m, v (the header's formula, in double). */
  static void adamw(double[] params, double[] grads, double[] m, double[] v, double lr, double beta1, double beta2,
      double eps, double weightDecay, double gradScale, long step) {
    double bc1 = 1 - Math.pow(beta1, step), bc2 = 1 - Math.pow(beta2, step);
    for (int i = 0; i < params.length; i++) {
      double g = grads[i] * gradScale;
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      double mhat = m[i] / bc1, vhat = v[i] / bc2;
      params[i] -= lr * (mhat / (Math.sqrt(vhat) + eps) + weightDecay * params[i]);
    }
  }

  // ------------------------------------------------------------------ Philox random fill

  /** Philox-4x32-10 of (counter, key), written from the algorithm's definition. */
  static int[] philox(long counter, long key) {
    int c0 = (int) counter, c1 = (int) (counter >>> 32), c2 = 0, c3 = 0;
    int k0 = (int) key, k1 = (int) (key >>> 32);
    for (int r = 0; r < 10; r++) {
      long p0 = (0xD2511F53L) * (c0 & 0xffffffffL);
      long p1 = (0xCD9E8D57L) * (c2 & 0xffffffffL);
      int hi0 = (int) (p0 >>> 32), lo0 = (int) p0, hi1 = (int) (p1 >>> 32), lo1 = (int) p1;
      int n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
      c0 = n0; c1 = n1; c2 = n2; c3 = n3;
      k0 += 0x9E3779B9;
      k1 += 0xBB67AE85;
    }
    return new int[] {c0, c1, c2, c3};
  }

  /** Uniform in [0, 1) from the top 24 bits of a word. */
  static double uniform01(int bits) {
    return (bits >>> 8) / 16777216.0;
  }

  /** Uniform in (0, 1] from the top 24 bits of a word. */
  static double uniform01Open0(int bits) {
    return ((bits >>> 8) + 1) / 16777216.0;
  }

  /** Element i of a uniform fill in [lo, hi): counter i + offset, word 0. */
  static double randUniform(long i, long seed, long offset, double lo, double hi) {
    return lo + (hi - lo) * uniform01(philox(i + offset, seed)[0]);
  }

  /** Element i of a normal fill (Box-Muller on words 0 and 1 of counter i + offset). */
  static double randNormal(long i, long seed, long offset, double mean, double std) {
    int[] w = philox(i + offset, seed);
    double u1 = uniform01Open0(w[0]), u2 = uniform01(w[1]);
    return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}

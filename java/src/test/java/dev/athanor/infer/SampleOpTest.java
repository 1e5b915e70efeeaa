package dev.athanor.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.math.BigInteger;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The sample op ({@link Ops#sample}) on the CPU against a plain Java implementation of its algorithm (written from
 * {@code native/cpu/sample.cpp}'s opening comment: a full sort instead of a selection, BigInteger masses), on
 * awkward shapes: vocabularies 1, 7, 50257 (in 50304 columns) and 128256; 1, 3 and 16 rows with a row stride
 * beyond the columns; top-k 1, 40 and off; top-p 0.1, 0.9 and 1; temperatures 0, 0.7 and 1.3; ties, -inf and NaN
 * logits. Then CUDA against the CPU (skipped without a GPU).
 */
class SampleOpTest {
  static final float[] TEMPERATURES = {0f, 0.7f, 1.3f};
  static final int[] TOP_K = {1, 40, 0};
  static final float[] TOP_P = {0.1f, 0.9f, 1f};

  // ------------------------------------------------------------------ the plain reference

  /** The rank key: a larger unsigned value ranks first (larger logit, then lower id; -0 as +0). */
  static long key(float l, int i) {
    int b = Float.floatToRawIntBits(l == 0f ? 0f : l);
    long ordered = (b < 0 ? ~b : b | 0x80000000) & 0xffffffffL;
    return (ordered << 32) | (0xffffffffL - i);
  }

  static float exp(float z) {
    if (!(z >= -80f)) return 0f;
    float k = (float) Math.floor(z * 1.44269502162933349609f + 0.5f);
    float r = (z - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
    float p = r * (1f / 5040f);
    p = r * (p + 1f / 720f);
    p = r * (p + 1f / 120f);
    p = r * (p + 1f / 24f);
    p = r * (p + 1f / 6f);
    p = r * (p + 0.5f);
    p = r * (p + 1f);
    p = p + 1f;
    return p * Math.scalb(1f, (int) k);
  }

  /** The id chosen from {@code x[off, off + cols)}, sampling among [0, vocab) with the draw u. */
  static int reference(float[] x, int off, int cols, int vocab, float t, int topK, float topP, float u) {
    for (int i = 0; i < cols; i++) {
      float v = x[off + i];
      if (Float.isNaN(v) || v == Float.POSITIVE_INFINITY) return -1 - i;
    }
    long[] keys = new long[vocab];  // sign flipped: a signed sort is the unsigned order
    for (int i = 0; i < vocab; i++) keys[i] = key(x[off + i], i) ^ Long.MIN_VALUE;
    Arrays.sort(keys);
    int[] order = new int[vocab];  // ids, best first
    for (int j = 0; j < vocab; j++) order[j] = (int) (0xffffffffL - (keys[vocab - 1 - j] & 0xffffffffL));
    float m = x[off + order[0]];
    if (m == Float.NEGATIVE_INFINITY) return -1;
    if (t == 0f) return order[0];
    float inv = 1f / t;
    long[] q = new long[vocab];
    for (int i = 0; i < vocab; i++) {
      float d = x[off + i] - m;
      q[i] = (long) (exp(d == 0f ? 0f : d * inv) * 4294967296f);
    }
    int k = topK > 0 ? Math.min(topK, vocab) : vocab;
    BigInteger massC = BigInteger.ZERO;
    for (int j = 0; j < k; j++) massC = massC.add(BigInteger.valueOf(q[order[j]]));
    float scaled = topP * 16777216f;
    long frac = (long) Math.ceil(scaled);
    int n = k;
    BigInteger two24 = BigInteger.ONE.shiftLeft(24);
    if (frac < (1L << 24)) {
      BigInteger[] qr = massC.multiply(BigInteger.valueOf(frac)).divideAndRemainder(two24);
      BigInteger target = qr[1].signum() > 0 ? qr[0].add(BigInteger.ONE) : qr[0];
      BigInteger acc = BigInteger.ZERO;
      for (int j = 0; j < k; j++) {
        acc = acc.add(BigInteger.valueOf(q[order[j]]));
        if (acc.compareTo(target) >= 0) {
          n = j + 1;
          break;
        }
      }
    }
    boolean[] in = new boolean[vocab];
    BigInteger massN = BigInteger.ZERO;
    for (int j = 0; j < n; j++) {
      in[order[j]] = true;
      massN = massN.add(BigInteger.valueOf(q[order[j]]));
    }
    long uf = Math.min((long) Math.floor(u * 16777216f), (1L << 24) - 1);
    BigInteger draw = massN.multiply(BigInteger.valueOf(uf)).shiftRight(24);
    BigInteger acc = BigInteger.ZERO;
    for (int i = 0; i < vocab; i++) {
      if (!in[i]) continue;
      acc = acc.add(BigInteger.valueOf(q[i]));
      if (acc.compareTo(draw) > 0) return i;
    }
    throw new AssertionError("no token for draw " + draw + " of " + massN);
  }

  // ------------------------------------------------------------------ inputs

  /** kind 0: Gaussian; 1: four distinct values (ties); 2: a third -inf; 3: peaked; 4: one NaN per row. */
  static float[] logits(Random r, int rows, int ld, int cols, int kind) {
    float[] x = new float[rows * ld];
    Arrays.fill(x, Float.NaN);  // between rows: never read
    for (int row = 0; row < rows; row++) {
      for (int i = 0; i < cols; i++) {
        float v = (float) (3 * r.nextGaussian());
        if (kind == 1) v = r.nextInt(4) - 1;
        if (kind == 2 && r.nextInt(3) == 0) v = Float.NEGATIVE_INFINITY;
        if (kind == 3 && i == (row * 7919) % cols) v = 25f;
        x[row * ld + i] = v;
      }
      if (kind == 4) x[row * ld + r.nextInt(cols)] = Float.NaN;
    }
    return x;
  }

  static float[] uniforms(Random r, int rows) {
    float[] u = new float[rows];
    for (int i = 0; i < rows; i++) u[i] = (r.nextInt() >>> 8) * 0x1p-24f;
    return u;
  }

  /** The op's ids for (rows, cols) logits held with row stride ld in x, on {@code dev}. */
  static int[] op(Device dev, float[] x, int rows, int ld, int cols, int vocab, float[] u, float t, int k, float p) {
    try (Tensor all = Tensor.fromFloats(x, DType.F32, dev, rows, ld);
        Tensor lg = all.slice(1, 0, cols);
        Tensor us = Tensor.fromFloats(u, DType.F32, dev, rows);
        Tensor ids = Tensor.empty(DType.I32, dev, rows)) {
      Ops.sample(lg, vocab, us, t, k, p, ids);
      return ids.toIntArray();
    }
  }

  record Shape(int rows, int vocab, int cols, int kinds) {}

  static final Shape[] SHAPES = {new Shape(1, 1, 1, 5), new Shape(3, 7, 9, 5), new Shape(16, 7, 7, 5),
      new Shape(1, 50257, 50304, 5), new Shape(3, 50257, 50304, 2), new Shape(16, 50257, 50304, 1),
      new Shape(1, 128256, 128256, 3), new Shape(3, 128256, 128256, 1)};

  /** One case: rows of logits x (row stride ld) of a shape and kind, a configuration and the draws u. */
  interface Case {
    void check(Shape sh, int ld, int kind, float[] x, float t, int k, float p, float[] u);
  }

  /** Every kind of logits of every shape under every configuration (greedy once: it ignores top-k and top-p). */
  static void forEachCase(Random r, Shape[] shapes, Case c) {
    for (Shape sh : shapes) {
      int ld = sh.rows > 1 ? sh.cols + 3 : sh.cols;
      for (int kind = 0; kind < sh.kinds; kind++) {
        float[] x = logits(r, sh.rows, ld, sh.cols, kind);
        for (float t : TEMPERATURES) {
          for (int k : TOP_K) {
            for (float p : TOP_P) {
              if (t == 0 && (k != 0 || p != 1f)) continue;
              c.check(sh, ld, kind, x, t, k, p, uniforms(r, sh.rows));
            }
          }
        }
      }
    }
  }

  @Test
  void theCpuOpMatchesThePlainReference() {
    int[] rowsChecked = {0};
    forEachCase(new Random(5), SHAPES, (sh, ld, kind, x, t, k, p, u) -> {
      int[] got = op(Device.CPU, x, sh.rows, ld, sh.cols, sh.vocab, u, t, k, p);
      for (int row = 0; row < sh.rows; row++) {
        int want = reference(x, row * ld, sh.cols, sh.vocab, t, k, p, u[row]);
        assertEquals(want, got[row], sh + " kind " + kind + " T " + t + " k " + k + " p " + p + " row " + row);
        rowsChecked[0]++;
      }
    });
    assertTrue(rowsChecked[0] > 1000, "rows checked: " + rowsChecked[0]);
  }

  @Test
  void topKKeepsTheLowerIdAmongTiesAndTopPTheShortestPrefix() {
    // ids 1 and 3 tie at the top, 4 just below; a draw near 1 reaches the last candidate kept
    float[] x = {0f, 2f, -1f, 2f, 1.9f, Float.NEGATIVE_INFINITY};
    float near1 = 1f - 0x1p-24f;
    assertArrayEquals(new int[] {1}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {near1}, 1f, 1, 1f));
    assertArrayEquals(new int[] {3}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {near1}, 1f, 2, 1f));
    assertArrayEquals(new int[] {4}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {near1}, 1f, 3, 1f));
    // the draw picks the first id whose running mass EXCEEDS u * mass: u = 1/2 between two equal candidates is
    // exactly the first one's mass, so the second is chosen; just below 1/2 the first
    assertArrayEquals(new int[] {3}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {0.5f}, 1f, 2, 1f));
    assertArrayEquals(new int[] {1}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {0.5f - 0x1p-24f}, 1f, 2, 1f));
    // the top two hold about 0.64 of the mass: top-p 0.5 keeps them, 0.7 adds id 4
    assertArrayEquals(new int[] {3}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {near1}, 1f, 0, 0.5f));
    assertArrayEquals(new int[] {4}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {near1}, 1f, 0, 0.7f));
    // -inf is never drawn; greedy is the lowest id of the largest logit
    assertArrayEquals(new int[] {1}, op(Device.CPU, x, 1, 6, 6, 6, new float[] {0.5f}, 0f, 0, 1f));
    assertTrue(op(Device.CPU, x, 1, 6, 6, 6, new float[] {near1}, 50f, 0, 1f)[0] != 5);
  }

  @Test
  void badArgumentsAreRejected() {
    try (Tensor lg = Tensor.zeros(DType.F32, Device.CPU, 2, 5); Tensor u = Tensor.zeros(DType.F32, Device.CPU, 2);
        Tensor ids = Tensor.zeros(DType.I32, Device.CPU, 2); Tensor ids1 = Tensor.zeros(DType.I32, Device.CPU, 1)) {
      var e = assertThrows(IllegalArgumentException.class, () -> Ops.sample(lg, 6, u, 1f, 0, 1f, ids));
      assertTrue(e.getMessage().contains("vocab = 6"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> Ops.sample(lg, 5, u, -1f, 0, 1f, ids));
      assertThrows(IllegalArgumentException.class, () -> Ops.sample(lg, 5, u, 1f, -2, 1f, ids));
      assertThrows(IllegalArgumentException.class, () -> Ops.sample(lg, 5, u, 1f, 0, 0f, ids));
      assertThrows(IllegalArgumentException.class, () -> Ops.sample(lg, 5, u, 1f, 0, 1f, ids1));
    }
  }

  @Test
  void cudaChoosesWhatTheCpuChooses() {
    assumeTrue(Cuda.isAvailable(), Cuda.unavailableReason());
    Device gpu = Device.cuda(0);
    Shape[] shapes = {new Shape(1, 7, 9, 5), new Shape(16, 7, 7, 5), new Shape(1, 50257, 50304, 5),
        new Shape(16, 50257, 50304, 5), new Shape(1, 128256, 128256, 5), new Shape(16, 128256, 128256, 5)};
    forEachCase(new Random(6), shapes, (sh, ld, kind, x, t, k, p, u) -> {
      int[] cpu = op(Device.CPU, x, sh.rows, ld, sh.cols, sh.vocab, u, t, k, p);
      int[] cuda = op(gpu, x, sh.rows, ld, sh.cols, sh.vocab, u, t, k, p);
      assertArrayEquals(cpu, cuda, sh + " kind " + kind + " T " + t + " k " + k + " p " + p);
    });
  }
}

package dev.athanor.ops;

import static dev.athanor.ops.Fixtures.assumeDevice;
import static dev.athanor.ops.Fixtures.read;
import static dev.athanor.ops.Fixtures.upload;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * RMSNorm, RoPE and SwiGLU in BF16 round once: every output element is the exact result (from the BF16 inputs)
 * rounded to BF16, within half a BF16 ulp plus a small FP32 allowance. This is where Athanor's BF16 is more precise
 * than the usual BF16 formulations (Hugging Face Llama in BF16 rounds x * rstd before multiplying by the weight,
 * rotates with cos/sin rounded to BF16, rounds silu(gate) before multiplying by up), and it is one reason the Llama
 * model fixture's BF16 errors stay at PyTorch autocast's (bench/results/2026-12-04-llama-bf16-precision.md). The
 * ops' own tests allow 2 ulps of the tensor's rms, which a second rounding passes; this test does not (see
 * {@link #theCheckRejectsASecondRounding}).
 */
class Bf16SingleRoundingTest {
  /** FP32 arithmetic's allowance, relative to the magnitude of the terms: far below BF16's half ulp (2^-9). */
  static final double F32_SLACK = 0x1p-16;

  /** Half a BF16 ulp at |v| (normal numbers): 2^(exponent - 8). */
  static double halfUlp(double v) {
    double a = Math.abs(v);
    if (a == 0) return 0;
    return Math.scalb(1.0, Math.getExponent(a) - 8);
  }

  /**
   * The elements where got is farther from exact than half a BF16 ulp plus F32_SLACK * scale[i] (the magnitude of
   * the terms that formed element i).
   */
  static int violations(double[] exact, double[] scale, double[] got) {
    assertEquals(exact.length, got.length);
    int bad = 0;
    for (int i = 0; i < exact.length; i++) {
      double bound = halfUlp(Math.max(Math.abs(exact[i]), Math.abs(got[i]))) + F32_SLACK * scale[i];
      if (Math.abs(got[i] - exact[i]) > bound) bad++;
    }
    return bad;
  }

  static void assertRoundedOnce(String what, double[] exact, double[] scale, double[] got) {
    int bad = violations(exact, scale, got);
    assertTrue(bad == 0, what + ": " + bad + " of " + exact.length + " elements are more than half a BF16 ulp from the"
        + " exact result (a second rounding, or BF16 intermediates)");
  }

  /** v rounded to F32, then to BF16. */
  static float bf16(double v) {
    return Reference.roundBf16((float) v);
  }

  static double[] abs(double[] x) {
    double[] a = new double[x.length];
    for (int i = 0; i < x.length; i++) a[i] = Math.abs(x[i]);
    return a;
  }

  static final int ROWS = 44, COLS = 96;

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void rmsNormRoundsOnce(Device device) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      try (Scope _ = Scope.open()) {
        Random r = new Random(12);
        Tensor xt = upload(Fixtures.normal(r, ROWS * COLS, 1.5), DType.BF16, device, ROWS, COLS);
        Tensor wt = upload(Fixtures.uniform(r, COLS, 0.9, 1.1), DType.BF16, device, COLS);
        double[] exact = Reference.rmsNorm(ROWS, COLS, 1e-6, read(xt), read(wt)).out();
        double[] got = read(Ops.rmsNorm(xt, wt, 1e-6f).out());
        assertRoundedOnce("rmsNorm " + device + "/" + isa, exact, abs(exact), got);
      }
    });
  }

  /**
   * RoPE from BF16 inputs with the angle as the kernels form it (F32 inverse frequency and product, HF's convention):
   * {out, scale} with cos/sin and the arithmetic exact; with {@code hfBf16}, {out, null} as HF's BF16 Llama computes
   * it (cos and sin rounded to BF16, each product and the sum rounded to BF16).
   */
  static double[][] rope(int b, int t, int h, int d, long pos0, float theta, double[] x, boolean hfBf16) {
    double[] out = new double[x.length], scale = new double[x.length];
    int half = d / 2;
    for (int bt = 0; bt < b * t; bt++) {
      float pos = (float) (pos0 + bt % t);
      for (int hh = 0; hh < h; hh++) {
        int o = (bt * h + hh) * d;
        for (int i = 0; i < half; i++) {
          double angle = pos * (float) Math.pow(theta, -2.0f * i / d);
          double c = Math.cos(angle), s = Math.sin(angle), x1 = x[o + i], x2 = x[o + i + half];
          if (hfBf16) {
            c = bf16(c);
            s = bf16(s);
            out[o + i] = Reference.roundBf16(bf16(x1 * c) - bf16(x2 * s));
            out[o + i + half] = Reference.roundBf16(bf16(x2 * c) + bf16(x1 * s));
          } else {
            out[o + i] = x1 * c - x2 * s;
            out[o + i + half] = x2 * c + x1 * s;
          }
          scale[o + i] = scale[o + i + half] = Math.abs(x1) + Math.abs(x2);
        }
      }
    }
    return new double[][] {out, hfBf16 ? null : scale};
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void ropeRoundsOnce(Device device) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      int b = 2, t = 11, h = 3, d = 32;
      try (Scope _ = Scope.open()) {
        Tensor x = upload(Fixtures.normal(new Random(13), b * t * h * d, 3), DType.BF16, device, b, t, h, d);
        double[][] e = rope(b, t, h, d, 5, 10000f, read(x), false);
        assertRoundedOnce("rope " + device + "/" + isa, e[0], e[1], read(Ops.rope(x, 5, 10000f)));
      }
    });
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("dev.athanor.ops.Fixtures#devices")
  void swigluRoundsOnce(Device device) {
    assumeDevice(device);
    Fixtures.forEachIsa(device, isa -> {
      Random r = new Random(14);
      int n = ROWS * 200;
      try (Scope _ = Scope.open()) {
        Tensor gate = upload(Fixtures.normal(r, n, 3), DType.BF16, device, ROWS, 200);
        Tensor up = upload(Fixtures.normal(r, n, 3), DType.BF16, device, ROWS, 200);
        double[] g = read(gate), u = read(up), exact = new double[n];
        for (int i = 0; i < n; i++) exact[i] = Reference.silu(g[i]) * u[i];
        assertRoundedOnce("swiglu " + device + "/" + isa, exact, abs(exact), read(Ops.swiglu(gate, up)));
      }
    });
  }

  /**
   * The check has the power to see a second rounding: the formulations of Hugging Face's BF16 Llama (computed here
   * in Java from the same inputs) fail it on many elements.
   */
  @Test
  void theCheckRejectsASecondRounding() {
    Random r = new Random(12);
    float[] xf = Fixtures.normal(r, ROWS * COLS, 1.5), wf = Fixtures.uniform(r, COLS, 0.9, 1.1);
    double[] x = new double[xf.length], w = new double[COLS];
    for (int i = 0; i < x.length; i++) x[i] = Reference.roundBf16(xf[i]);
    for (int i = 0; i < COLS; i++) w[i] = Reference.roundBf16(wf[i]);
    var ref = Reference.rmsNorm(ROWS, COLS, 1e-6, x, w);
    double[] twice = new double[x.length];
    for (int i = 0; i < x.length; i++) {  // weight * (x * rstd).to(bf16), in BF16
      twice[i] = bf16(w[i % COLS] * bf16(x[i] * ref.rstd()[i / COLS]));
    }
    assertTrue(violations(ref.out(), abs(ref.out()), twice) > x.length / 20, "rmsNorm rounded twice");

    double[] q = new double[2 * 11 * 3 * 32];
    for (int i = 0; i < q.length; i++) q[i] = Reference.roundBf16((float) (r.nextGaussian() * 3));
    double[][] e = rope(2, 11, 3, 32, 5, 10000f, q, false);
    double[] bf16Trig = rope(2, 11, 3, 32, 5, 10000f, q, true)[0];
    assertTrue(violations(e[0], e[1], bf16Trig) > q.length / 20, "rope with cos/sin in BF16");

    double[] exact = new double[x.length], once = new double[x.length], swTwice = new double[x.length];
    for (int i = 0; i < x.length; i++) {  // gate x, up w: silu(gate) * up
      double s = Reference.silu(x[i]);
      exact[i] = s * w[i % COLS];
      once[i] = bf16(exact[i]);
      swTwice[i] = bf16(bf16(s) * w[i % COLS]);
    }
    assertEquals(0, violations(exact, abs(exact), once), "swiglu rounded once passes");
    assertTrue(violations(exact, abs(exact), swTwice) > x.length / 20, "swiglu rounded twice");
  }
}
